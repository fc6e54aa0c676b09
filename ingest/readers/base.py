"""What every reader returns (`ParsedDocument` of `Section`s) and the helpers readers share."""

from __future__ import annotations

import re
from dataclasses import dataclass, field


class UnreadableFile(Exception):
    """A file that cannot be ingested; `str()` is the one-line reason."""


@dataclass(frozen=True)
class TableRow:
    """One table row as `header: value` cells; `number` is the row's line in its sheet or file
    (the header row is 1). The first cell is the row's key, repeated in every part of a row
    that has to be split by cells."""

    number: int
    cells: tuple[str, ...]

    @property
    def text(self) -> str:
        return ROW_CELL_SEPARATOR.join(self.cells)


ROW_CELL_SEPARATOR = "; "
# A blank line between rows: each row reads as a paragraph of its own where passages are shown
# as Markdown (the app's sources) or with their lines joined (`rag ask --search`); with one
# line break, rows ran together ("count: 12 item: radios").
ROW_SEPARATOR = "\n\n"


def table_text(rows: list[TableRow]) -> str:
    """The section text of a table: one paragraph per row (cells hold no line breaks)."""
    return ROW_SEPARATOR.join(row.text for row in rows)


@dataclass
class ReadNotes:
    """What reading one file did besides producing text, for the ingest report."""

    ocr_pages: list[int] = field(default_factory=list)  # pages read by OCR
    unread_pages: dict[int, str] = field(default_factory=dict)  # page -> why nothing was read
    failed_rows: dict[str, str] = field(default_factory=dict)  # "sheet row 12" -> reason
    skipped_parts: list[str] = field(default_factory=list)  # e.g. attachments not read
    # PDF pages whose text layer held only page numbers or running lines: blank pages, not
    # scans, unless a page-sized image lies under them
    marks_only_pages: list[int] = field(default_factory=list)
    guessed_encoding: str | None = None  # a legacy code page that was an unsure guess
    ocr_seconds: float = 0.0


@dataclass
class Section:
    text: str
    headings: list[str] = field(default_factory=list)
    page: int | None = None
    ocr: bool = False  # read off a page image
    rows: list[TableRow] | None = None  # a table, one paragraph of `text` per row


@dataclass
class ParsedDocument:
    title: str
    sections: list[Section]
    page_kind: str = "page"  # what `Section.page` counts: "page" or "slide"
    junk_runs: int = 0  # runs of encoded or binary data skipped (`ingest.readers.junk`)
    notes: ReadNotes = field(default_factory=ReadNotes)


class SectionBuilder:
    """Collects lines under a heading stack; the first level-1 heading becomes the title."""

    def __init__(self) -> None:
        self.title: str | None = None
        self.stack: list[tuple[int, str]] = []
        self.lines: list[str] = []
        self.sections: list[Section] = []

    def heading(self, level: int, text: str, can_be_title: bool = True) -> None:
        self.flush()
        text = clean_line(text)
        if can_be_title and level == 1 and self.title is None and not self.sections:
            self.title = text
            return
        while self.stack and self.stack[-1][0] >= level:
            self.stack.pop()
        self.stack.append((level, text))

    def add(self, line: str) -> None:
        self.lines.append(line)

    def flush(self) -> None:
        text = "\n".join(self.lines).strip()
        if text:
            self.sections.append(Section(text, [h for _, h in self.stack]))
        self.lines = []

    def build(self, default_title: str) -> ParsedDocument:
        self.flush()
        return ParsedDocument(self.title or default_title, self.sections)


def short_reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:120]


def clean_line(text: str) -> str:
    return " ".join(text.split())


def table_lines(rows: list[list[str]]) -> list[str]:
    """Table rows as lines that keep each cell with its column header.

    With a header row (its first row holding two or more distinct names) each later row reads
    `Header: value; Header: value` (empty cells left out); a row with one value (a merged
    cell spanning the row) reads as that value. Without one, cells are joined by ` | `.
    Cells are single lines; a repeated cell (merged) is expected as an empty string.
    """
    rows = [[" ".join(cell.split()) for cell in row] for row in rows]
    rows = [row for row in rows if any(row)]
    if not rows:
        return []
    header = rows[0]
    names = [name for name in header if name]
    if len(rows) < 2 or len(names) < 2 or len(set(names)) != len(names):
        return [" | ".join(cell for cell in row if cell) for row in rows]
    lines = [" | ".join(names)]
    for row in rows[1:]:
        values = [cell for cell in row if cell]
        if len(values) == 1 and len(header) > 1 and row.count("") == len(row) - 1:
            lines.append(values[0])
            continue
        pairs = [
            f"{name}: {value}" if name else value
            for name, value in zip(header, row, strict=False)
            if value
        ]
        lines.append("; ".join(pairs))
    return lines


# Titles that authoring tools write when the author gave none.
_PLACEHOLDER_TITLE = re.compile(
    r"(untitled[ -]?\d*|untitled document|document ?\d*|title|no title|presentation ?\d*|"
    r"slide ?\d+|powerpoint presentation|microsoft (word|powerpoint|excel) - .*|"
    r"\S*\.(docx?|pptx?|pdf|rtf|odt|txt|indd|qxd|tex|dvi))",
    re.IGNORECASE,
)


def meaningful_title(title: str | None) -> str | None:
    """A metadata title, or None when it is empty or a placeholder ("untitled",
    "Microsoft Word - draft.docx", "Untitled-1", a file name)."""
    title = clean_line(title or "")
    if not title or _PLACEHOLDER_TITLE.fullmatch(title):
        return None
    return title
