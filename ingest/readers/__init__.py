"""Turn one file into a title and a list of sections (text with its place and heading path).

One module per format, each reading with a well-kept library (pypdf, python-docx, python-pptx,
BeautifulSoup, ebooklib, csv, openpyxl, email) directly, so that places (page, slide) and
heading paths survive. A file that cannot be read raises `UnreadableFile` with a one-line reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.readers.base import (
    ParsedDocument,
    Section,
    TableRow,
    UnreadableFile,
    clean_line,
    table_text,
)
from ingest.readers.ebook import read_epub
from ingest.readers.mail import read_eml
from ingest.readers.pdf import read_pdf
from ingest.readers.slides import read_pptx
from ingest.readers.tables import read_csv, read_xlsx
from ingest.readers.text import decode_text, markdown_sections, read_markdown, read_text
from ingest.readers.web import html_sections, read_html
from ingest.readers.word import read_docx
from rag.control_chars import strip_control

if TYPE_CHECKING:
    from ingest.ocr import OcrEngine

__all__ = [
    "READER_VERSION",
    "ParsedDocument",
    "Section",
    "UnreadableFile",
    "decode_text",
    "html_sections",
    "markdown_sections",
    "read_document",
    "supported_suffixes",
]

# Part of the pipeline's signature: raise it when readers change what they read from a file,
# so the next ingest reads every file again (2: encodings, reading order, notes, slides,
# boilerplate, running headers, junk; 3: table rows, XLSX, e-mail; 4: a table's rows as
# paragraphs; 5: a two-page PDF's running header once, guillemets as Western text).
READER_VERSION = "readers-5"

TEXT_SUFFIXES = {".txt", ".text", ".log", ".rst"}
MARKDOWN_SUFFIXES = {".md", ".markdown", ".mdx"}
HTML_SUFFIXES = {".html", ".htm", ".xhtml"}

Reader = Callable[[Path, bytes], ParsedDocument]


def supported_suffixes() -> set[str]:
    return set(_READERS)


def read_document(path: Path, data: bytes, ocr: OcrEngine | None = None) -> ParsedDocument:
    """Parse `data` (the bytes of `path`) by the file's suffix; PDF pages without a text
    layer are read by `ocr` (none: they are noted as unread)."""
    if not data.strip():
        raise UnreadableFile("the file is empty")
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise UnreadableFile(f"files of type {path.suffix or '(none)'} are not supported")
    parsed = reader(path, data)
    if path.suffix.lower() == ".pdf":
        from ingest.ocr import add_scanned_pages

        add_scanned_pages(parsed, data, ocr)
    for section in parsed.sections:
        if section.rows is not None:  # the text is the rows' lines; keep them in step
            section.rows = [
                TableRow(row.number, tuple(strip_control(cell) for cell in row.cells))
                for row in section.rows
            ]
            section.text = table_text(section.rows)
        section.text = strip_control(section.text)
        section.headings = [strip_control(heading) for heading in section.headings]
    parsed.sections = [s for s in parsed.sections if s.text.strip()]
    if not parsed.sections:
        reasons = sorted(set(parsed.notes.unread_pages.values()))
        raise UnreadableFile(f"no text could be read ({reasons[0] if reasons else 'none found'})")
    parsed.title = clean_line(strip_control(parsed.title)) or path.stem
    return parsed


def _register() -> dict[str, Reader]:
    table: dict[str, Reader] = {}

    def add(suffixes: Iterable[str], reader: Reader) -> None:
        table.update(dict.fromkeys(suffixes, reader))

    add(TEXT_SUFFIXES, read_text)
    add(MARKDOWN_SUFFIXES, read_markdown)
    add(HTML_SUFFIXES, read_html)
    add({".csv", ".tsv"}, read_csv)
    add({".xlsx", ".xlsm"}, read_xlsx)
    add({".eml"}, read_eml)
    add({".pdf"}, read_pdf)
    add({".docx"}, read_docx)
    add({".pptx"}, read_pptx)
    add({".epub"}, read_epub)
    return table


_READERS = _register()
