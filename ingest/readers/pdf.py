"""PDF text layers: one section per page, ligatures and other compatibility characters
normalized (NFKC), running headers and footers kept once and page numbers dropped, filled
form fields and comments (annotations) read on their page; a placeholder metadata title
("untitled") ignored."""

from __future__ import annotations

import io
import math
import re
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

from ingest.readers.base import (
    ParsedDocument,
    Section,
    UnreadableFile,
    meaningful_title,
    short_reason,
)

FORM_FIELDS_HEADING = "Form fields"


def read_pdf(path: Path, data: bytes) -> ParsedDocument:
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise UnreadableFile("the PDF is encrypted; save an unprotected copy to ingest it")
        title = meaningful_title(reader.metadata.title if reader.metadata else None)
        raw_pages = [_page_lines(page) for page in reader.pages]
        pages = drop_running_lines(raw_pages)
        marks_only = marks_only_pages(raw_pages, pages)
        fields, unplaced = _form_fields(reader)
        sections = [
            Section("\n".join(lines + fields.get(number, [])).strip(), page=number)
            for number, lines in enumerate(pages, start=1)
        ]
        if unplaced:
            sections.append(Section("\n".join(unplaced), [FORM_FIELDS_HEADING]))
    except UnreadableFile:
        raise
    except Exception as err:  # pypdf also raises LimitReachedError, NotImplementedError, ...
        raise UnreadableFile(f"not a readable PDF ({short_reason(err)})") from None
    parsed = ParsedDocument(title or path.stem, sections)
    parsed.notes.marks_only_pages = sorted(marks_only)
    return parsed


def _page_lines(page: Any) -> list[str]:
    # NFKC: ligatures (ﬁ, ﬂ), full-width forms and the like become the letters search expects.
    text = unicodedata.normalize("NFKC", page.extract_text() or "")
    return [line.rstrip() for line in text.strip().splitlines()]


# -- running headers and footers --------------------------------------------------------------

EDGE_LINES = 2  # lines at the top and at the bottom of a page that may be running lines
MIN_PAGES = 2  # one page has no running lines to tell apart
MIN_REPEATS = 3  # a running line recurs on this many pages at least, or on all of fewer
_DIGITS = re.compile(r"\d+")
_PAGE_NUMBER = re.compile(
    r"[\W_]*(?:(?:page|p\.|pg\.?|seite|side|sida|página|pagina)\s*)?#"
    r"(?:\s*(?:of|/|von|af|av|de|di)\s*#)?[\W_]*",
    re.IGNORECASE,
)


def drop_running_lines(pages: list[list[str]]) -> list[list[str]]:
    """Pages without their running lines: a line at a page's top or bottom edge that recurs
    (digits aside) on at least half of the pages, and on `MIN_REPEATS` of them or on all of
    a shorter document, is a running header or footer. It is kept once, where it first
    appears; a page number ("- 3 -", "Page 3 of 9") is dropped."""
    if len(pages) < MIN_PAGES:
        return pages
    counts: Counter[str] = Counter()
    for lines in pages:
        counts.update({_line_key(line) for line in _edges(lines)})
    needed = max(min(MIN_REPEATS, len(pages)), math.ceil(len(pages) / 2))
    running = {key for key, count in counts.items() if count >= needed and key}
    if not running:
        return pages
    kept: set[str] = set()
    result = []
    for lines in pages:
        edge = set(range(min(EDGE_LINES, len(lines)))) | set(
            range(max(0, len(lines) - EDGE_LINES), len(lines))
        )
        page = []
        for index, line in enumerate(lines):
            key = _line_key(line)
            if index in edge and key in running:
                if key in kept or _PAGE_NUMBER.fullmatch(key):
                    continue
                kept.add(key)
            page.append(line)
        result.append(page)
    return result


def marks_only_pages(raw_pages: list[list[str]], pages: list[list[str]]) -> set[int]:
    """1-based numbers of the pages whose text layer (`raw_pages`) held text, but only page
    numbers or running lines (nothing left in `pages` but a page number)."""
    return {
        number
        for number, (raw, kept) in enumerate(zip(raw_pages, pages, strict=True), start=1)
        if any(line.strip() for line in raw)
        and all(_PAGE_NUMBER.fullmatch(_line_key(line)) for line in kept if line.strip())
    }


def _edges(lines: list[str]) -> list[str]:
    if len(lines) <= 2 * EDGE_LINES:
        return lines
    return lines[:EDGE_LINES] + lines[-EDGE_LINES:]


def _line_key(line: str) -> str:
    return _DIGITS.sub("#", " ".join(line.split()).lower())


# -- form fields ------------------------------------------------------------------------------


# Annotations whose /Contents a person wrote: sticky notes, text boxes, marked-up text.
_COMMENT_TYPES = {
    "/Text", "/FreeText", "/Highlight", "/Underline", "/StrikeOut", "/Squiggly", "/Square",
    "/Circle", "/Ink", "/Stamp",
}  # fmt: skip


def _form_fields(reader: Any) -> tuple[dict[int, list[str]], list[str]]:
    """Filled fields as `name: value` lines and comments as `Comment: ...` lines by page
    number, and the filled fields on no page."""
    by_page: dict[int, list[str]] = {}
    placed: set[str] = set()
    for number, page in enumerate(reader.pages, start=1):
        for annotation in page.get("/Annots") or []:
            widget = annotation.get_object()
            if widget.get("/Subtype") in _COMMENT_TYPES and widget.get("/Contents"):
                comment = " ".join(str(widget["/Contents"]).split())
                by_page.setdefault(number, []).append(f"Comment: {comment}")
                continue
            if widget.get("/Subtype") != "/Widget":
                continue
            name, value = _field_name(widget), _field_value(widget)
            if name and value and name not in placed:
                placed.add(name)
                by_page.setdefault(number, []).append(f"{name}: {value}")
    unplaced = []
    for name, field in (reader.get_fields() or {}).items():
        value = _clean_value(field.get("/V"))
        if value and name not in placed and field.get("/FT") is not None:
            unplaced.append(f"{name}: {value}")
    return by_page, unplaced


def _field_name(widget: Any) -> str:
    """The field's label for people (/TU) if it has one, else its full name (parent.child)."""
    parts = []
    node = widget
    while node is not None:
        if "/TU" in node and not parts:
            return str(node["/TU"]).strip()
        if "/T" in node:
            parts.append(str(node["/T"]))
        parent = node.get("/Parent")
        node = parent.get_object() if parent is not None else None
    return ".".join(reversed(parts)).strip()


def _field_value(widget: Any) -> str:
    node = widget
    while node is not None:
        if "/V" in node:
            return _clean_value(node["/V"])
        parent = node.get("/Parent")
        node = parent.get_object() if parent is not None else None
    return ""


def _clean_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(filter(None, (_clean_value(item) for item in value)))
    text = str(value).strip()
    if text.startswith("/"):  # a check box or radio button state
        return "" if text == "/Off" else text[1:]
    return " ".join(text.split())
