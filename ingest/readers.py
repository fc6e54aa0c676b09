"""Turn one file into a title and a list of sections (text with its page and heading path).

Each format uses the library behind llama-index's reader for it (pypdf, python-docx,
python-pptx, BeautifulSoup, ebooklib, csv), read directly so that page numbers and heading
paths survive. A file that cannot be read raises `UnreadableFile` with a one-line reason.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

TEXT_SUFFIXES = {".txt", ".text", ".log", ".rst"}
MARKDOWN_SUFFIXES = {".md", ".markdown", ".mdx"}
HTML_SUFFIXES = {".html", ".htm", ".xhtml"}


class UnreadableFile(Exception):
    """A file that cannot be ingested; `str()` is the one-line reason."""


@dataclass
class Section:
    text: str
    headings: list[str] = field(default_factory=list)
    page: int | None = None


@dataclass
class ParsedDocument:
    title: str
    sections: list[Section]


def supported_suffixes() -> set[str]:
    return set(_READERS)


def read_document(path: Path, data: bytes) -> ParsedDocument:
    """Parse `data` (the bytes of `path`) by the file's suffix."""
    if not data.strip():
        raise UnreadableFile("the file is empty")
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise UnreadableFile(f"files of type {path.suffix or '(none)'} are not supported")
    parsed = reader(path, data)
    parsed.sections = [s for s in parsed.sections if s.text.strip()]
    if not parsed.sections:
        raise UnreadableFile("no text could be extracted (a scanned document needs OCR first)")
    parsed.title = _clean_line(parsed.title) or path.stem
    return parsed


# -- plain text formats ---------------------------------------------------------------------


def decode_text(data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise UnreadableFile("binary content behind a text file extension")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise UnreadableFile(
            f"not valid UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); "
            "save it as UTF-8"
        ) from None


def read_text(path: Path, data: bytes) -> ParsedDocument:
    return ParsedDocument(path.stem, [Section(decode_text(data))])


_ATX_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def read_markdown(path: Path, data: bytes) -> ParsedDocument:
    return markdown_sections(decode_text(data), default_title=path.stem)


def markdown_sections(text: str, default_title: str) -> ParsedDocument:
    builder = _SectionBuilder()
    in_fence = False
    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        heading = None if in_fence else _ATX_HEADING.match(line)
        if heading:
            builder.heading(len(heading.group(1)), heading.group(2))
        else:
            builder.add(line)
    return builder.build(default_title)


class _SectionBuilder:
    """Collects lines under a heading stack; the first level-1 heading becomes the title."""

    def __init__(self) -> None:
        self.title: str | None = None
        self.stack: list[tuple[int, str]] = []
        self.lines: list[str] = []
        self.sections: list[Section] = []

    def heading(self, level: int, text: str, can_be_title: bool = True) -> None:
        self.flush()
        text = _clean_line(text)
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


def read_csv(path: Path, data: bytes) -> ParsedDocument:
    text = decode_text(data)
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    try:
        rows = list(csv.reader(io.StringIO(text), dialect))
    except csv.Error as err:  # e.g. a field over the csv module's 128 KiB limit
        raise UnreadableFile(f"not a readable CSV file ({_short(err)})") from None
    if not rows:
        raise UnreadableFile("the CSV file has no rows")
    header, body = rows[0], rows[1:]
    lines = [
        "; ".join(f"{name}: {value}" for name, value in zip(header, row, strict=False) if value)
        for row in body
    ]
    return ParsedDocument(path.stem, [Section("\n".join(lines) if body else ", ".join(header))])


# -- markup formats -------------------------------------------------------------------------

_HEADING_TAGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_BLOCK_TAGS = {"p", "li", "pre", "blockquote", "td", "th", "dt", "dd", "figcaption", "caption"}


def read_html(path: Path, data: bytes) -> ParsedDocument:
    return html_sections(_decode_markup(data), default_title=path.stem)


def _decode_markup(data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise UnreadableFile("binary content behind a text file extension")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # HTML may declare another charset; BeautifulSoup's detector reads the declaration.
        from bs4 import UnicodeDammit

        guess = UnicodeDammit(data, is_html=True)
        if guess.unicode_markup is None:
            raise UnreadableFile("the HTML file has an unknown text encoding") from None
        return guess.unicode_markup


def html_sections(markup: str, default_title: str) -> ParsedDocument:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(markup, "html.parser")
    for tag in soup(["script", "style", "noscript", "template", "svg", "head"]):
        if tag.name == "head":
            title = tag.find("title")
            default_title = title.get_text(" ", strip=True) if title else default_title
        tag.decompose()
    builder = _SectionBuilder()
    for element in soup.find_all([*_HEADING_TAGS, *_BLOCK_TAGS]):
        if element.find_parent([*_BLOCK_TAGS]) is not None:
            continue  # its text is in the enclosing block already
        text = element.get_text(" ", strip=True)
        if element.name in _HEADING_TAGS:
            builder.heading(_HEADING_TAGS[element.name], text)
        elif text:
            builder.add(text + "\n")
    parsed = builder.build(default_title)
    if builder.title and default_title and default_title != builder.title:
        parsed.title = default_title
    return parsed


# -- binary formats -------------------------------------------------------------------------


def read_pdf(path: Path, data: bytes) -> ParsedDocument:
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise UnreadableFile("the PDF is encrypted; save an unprotected copy to ingest it")
        title = (reader.metadata.title if reader.metadata else None) or path.stem
        sections = [
            Section(_tidy_pdf_text(page.extract_text() or ""), page=number)
            for number, page in enumerate(reader.pages, start=1)
        ]
    except UnreadableFile:
        raise
    except Exception as err:  # pypdf also raises LimitReachedError, NotImplementedError, ...
        raise UnreadableFile(f"not a readable PDF ({_short(err)})") from None
    return ParsedDocument(str(title), sections)


def _tidy_pdf_text(text: str) -> str:
    return re.sub(r"[ \t]+\n", "\n", text).strip()


def read_docx(path: Path, data: bytes) -> ParsedDocument:
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, ValueError, KeyError, OSError) as err:
        raise UnreadableFile(f"not a readable DOCX file ({_short(err)})") from None
    except Exception as err:  # zipfile.BadZipFile and lxml errors have no common base
        raise UnreadableFile(f"not a readable DOCX file ({_short(err)})") from None
    builder = _SectionBuilder()
    for paragraph in document.paragraphs:
        style = paragraph.style.name if paragraph.style else ""
        level = _docx_heading_level(style)
        if level is not None:
            # Only the Title style names the document; a Heading 1 starts a section.
            builder.heading(level, paragraph.text, can_be_title=style == "Title")
        elif paragraph.text.strip():
            builder.add(paragraph.text + "\n")
    for table in document.tables:
        for row in table.rows:
            builder.add(" | ".join(cell.text.strip() for cell in row.cells) + "\n")
    parsed = builder.build(path.stem)
    core_title = (document.core_properties.title or "").strip()
    if core_title:
        parsed.title = core_title
    return parsed


def _docx_heading_level(style_name: str) -> int | None:
    if style_name == "Title":
        return 1
    match = re.match(r"Heading (\d)", style_name)
    return int(match.group(1)) if match else None


def read_pptx(path: Path, data: bytes) -> ParsedDocument:
    from pptx import Presentation

    try:
        deck = Presentation(io.BytesIO(data))
    except Exception as err:  # python-pptx raises zipfile, KeyError and lxml errors alike
        raise UnreadableFile(f"not a readable PPTX file ({_short(err)})") from None
    sections = []
    for number, slide in enumerate(deck.slides, start=1):
        title_shape = slide.shapes.title
        slide_title = title_shape.text_frame.text.strip() if title_shape is not None else ""
        title_id = title_shape.shape_id if title_shape is not None else None
        texts = [
            shape.text_frame.text
            for shape in slide.shapes  # new proxy objects: compare ids, not identity
            if shape.has_text_frame and shape.shape_id != title_id
        ]
        if slide.has_notes_slide:
            texts.append(slide.notes_slide.notes_text_frame.text)
        sections.append(Section("\n".join(texts), [slide_title] if slide_title else [], number))
    title = (deck.core_properties.title or "").strip() or path.stem
    return ParsedDocument(title, sections)


def read_epub(path: Path, data: bytes) -> ParsedDocument:
    import tempfile

    import ebooklib
    from ebooklib import epub

    # ebooklib reads only from a path.
    with tempfile.NamedTemporaryFile(suffix=".epub") as handle:
        handle.write(data)
        handle.flush()
        try:
            book = epub.read_epub(handle.name, options={"ignore_ncx": True})
        except Exception as err:  # ebooklib raises zipfile, KeyError and its own errors
            raise UnreadableFile(f"not a readable EPUB file ({_short(err)})") from None
    titles = book.get_metadata("DC", "title")
    # Chapters in reading (spine) order; the navigation document is a table of contents.
    spine = [entry[0] if isinstance(entry, tuple) else entry for entry in book.spine]
    order = {idref: number for number, idref in enumerate(spine)}
    chapters = [i for i in book.get_items_of_type(ebooklib.ITEM_DOCUMENT) if i.is_chapter()]
    chapters.sort(key=lambda item: order.get(item.get_id(), len(order)))
    sections: list[Section] = []
    for item in chapters:
        chapter = html_sections(item.get_content().decode("utf-8", "replace"), "")
        prefix = [chapter.title] if chapter.title else []
        sections += [Section(s.text, prefix + s.headings) for s in chapter.sections]
    return ParsedDocument(titles[0][0] if titles else path.stem, sections)


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:120]


def _clean_line(text: str) -> str:
    return " ".join(text.split())


def _register() -> dict[str, Callable[[Path, bytes], ParsedDocument]]:
    table: dict[str, Callable[[Path, bytes], ParsedDocument]] = {}

    def add(suffixes: Iterable[str], reader: Callable[[Path, bytes], ParsedDocument]) -> None:
        table.update(dict.fromkeys(suffixes, reader))

    add(TEXT_SUFFIXES, read_text)
    add(MARKDOWN_SUFFIXES, read_markdown)
    add(HTML_SUFFIXES, read_html)
    add({".csv", ".tsv"}, read_csv)
    add({".pdf"}, read_pdf)
    add({".docx"}, read_docx)
    add({".pptx"}, read_pptx)
    add({".epub"}, read_epub)
    return table


_READERS = _register()
