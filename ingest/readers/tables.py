"""CSV, TSV and XLSX files as tables: one row per paragraph, each cell as `header: value`.

Rows are kept whole (see `ingest.chunking`): a section of a table carries its rows, so the
chunker never splits a row between chunks and every chunk's rows name their columns.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ingest.readers.base import (
    ParsedDocument,
    ReadNotes,
    Section,
    TableRow,
    UnreadableFile,
    table_text,
)
from ingest.readers.text import decode_text_guessed

SNIFF_CHARS = 8192


def read_csv(path: Path, data: bytes) -> ParsedDocument:
    """A CSV or TSV file (any delimiter of `,;<tab>|`, in any encoding `decode_text` reads,
    such as German Excel's Windows-1252) as one table. A row that cannot be parsed (a field over
    the csv module's 128 KiB limit) is left out and named in the notes; raises
    `UnreadableFile` when no row can be read."""
    text, guessed = decode_text_guessed(data)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else _sniff_delimiter(text)
    notes = ReadNotes(guessed_encoding=guessed)
    records = list(_records(text, delimiter, notes))
    if not records:
        failures = "; ".join(f"{row}: {why}" for row, why in notes.failed_rows.items())
        raise UnreadableFile(f"no row of the CSV file could be read ({failures or 'no rows'})")
    header, body = records[0][1], records[1:]
    if not body and notes.failed_rows:
        failures = "; ".join(f"{row}: {why}" for row, why in notes.failed_rows.items())
        raise UnreadableFile(f"no row of the CSV file could be read ({failures})")
    if not body:
        return ParsedDocument(path.stem, [Section(", ".join(header))], notes=notes)
    rows = table_rows(header, body)
    return ParsedDocument(path.stem, [Section(table_text(rows), rows=rows)], notes=notes)


def _sniff_delimiter(text: str) -> str:
    try:
        return csv.Sniffer().sniff(text[:SNIFF_CHARS], delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _records(text: str, delimiter: str, notes: ReadNotes) -> Iterator[tuple[int, list[str]]]:
    """(row number, fields) of each record, the header being row 1; a record the csv module
    refuses is noted and skipped (the reader resumes at the next line)."""
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    number = 0
    while True:
        number += 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            notes.failed_rows[f"row {number}"] = _csv_reason(err)
            continue
        if any(field.strip() for field in fields):
            yield number, fields
        elif number == 1:
            number = 0  # blank lines before the header do not count


def _csv_reason(err: csv.Error) -> str:
    if "field larger than field limit" in str(err):
        return f"a field is over {csv.field_size_limit() // 1024} KiB, the most a cell can hold"
    return f"not readable as CSV ({str(err)[:80]})"


def table_rows(header: Sequence[Any], body: Iterable[tuple[int, Sequence[Any]]]) -> list[TableRow]:
    """Rows as `header: value` cells (empty values left out, whitespace made single spaces);
    columns without a header are named by their position."""
    names = [_cell(name) or f"column {i}" for i, name in enumerate(header, start=1)]
    rows = []
    for number, values in body:
        cells = tuple(
            f"{names[i] if i < len(names) else f'column {i + 1}'}: {text}"
            for i, value in enumerate(values)
            if (text := _cell(value))
        )
        if cells:
            rows.append(TableRow(number, cells))
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        value = value.date() if value.time() == dt.time() else value.replace(microsecond=0)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return " ".join(str(value).split())


def read_xlsx(path: Path, data: bytes) -> ParsedDocument:
    """An Excel workbook: one section per worksheet (its heading `sheet <name>`), its first
    non-empty row as the header; formula cells by the value Excel last computed (a file
    never opened in a spreadsheet program has none: such cells are counted in the notes).
    Raises `UnreadableFile`."""
    import openpyxl

    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        formulas = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=False)
    except Exception as err:  # zipfile, KeyError and openpyxl's own errors alike
        raise UnreadableFile(f"not a readable XLSX file ({str(err)[:120]})") from None
    notes = ReadNotes()
    sections = []
    try:
        for sheet, formula_sheet in zip(book.worksheets, formulas.worksheets, strict=True):
            values = list(sheet.iter_rows(values_only=True))
            unsaved = _unsaved_formulas(values, formula_sheet.iter_rows(values_only=True))
            if unsaved:
                notes.skipped_parts.append(
                    f"sheet {sheet.title}: {unsaved} formula cell(s) with no saved value "
                    "(open and save the file in a spreadsheet program to store them)"
                )
            filled = [
                (number, row)
                for number, row in enumerate(values, start=1)
                if any(_cell(value) for value in row)
            ]
            rows = table_rows(filled[0][1], filled[1:]) if len(filled) > 1 else []
            if rows:
                sections.append(Section(table_text(rows), [f"sheet {sheet.title}"], rows=rows))
            elif filled:
                header = ", ".join(c for c in map(_cell, filled[0][1]) if c)
                sections.append(Section(header, [f"sheet {sheet.title}"]))
            elif not unsaved:
                notes.skipped_parts.append(f"sheet {sheet.title}: empty")
    finally:
        book.close()
        formulas.close()
    title = (book.properties.title or "").strip() or path.stem
    return ParsedDocument(title, sections, notes=notes)


def _unsaved_formulas(values: Sequence[Sequence[Any]], formulas: Iterable[Sequence[Any]]) -> int:
    """How many cells hold a formula (in `formulas`, the same sheet read without cached
    values) but no value (in `values`): a workbook written by a program that never computed
    them."""
    from openpyxl.worksheet.formula import ArrayFormula

    count = 0
    for value_row, formula_row in zip(values, formulas, strict=False):
        for value, formula in zip(value_row, formula_row, strict=False):
            is_formula = isinstance(formula, ArrayFormula) or (
                isinstance(formula, str) and formula.startswith("=")
            )
            count += value is None and is_formula
    return count
