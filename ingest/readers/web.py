"""HTML pages: the text a reader of the page reads, under its heading path.

Navigation, cookie banners, footers, sidebars, forms and hidden elements are left out (by
element, ARIA role, and class or id names such as `cookie-banner`); text is read in document
order as blocks, also text directly inside `<div>`s; table rows keep each cell with its column
header. Measured against trafilatura (see ARCHITECTURE.md): on small pages it kept the
navigation and glued headings and list items into one paragraph, so kb keeps its own reader.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from lxml import etree

from ingest.readers.base import (
    ParsedDocument,
    SectionBuilder,
    UnreadableFile,
    clean_line,
    table_lines,
)
from ingest.readers.text import BOMS, decode_text, decode_text_guessed

_HEADING_TAGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_BLOCK_TAGS = {
    "address", "article", "aside", "blockquote", "body", "br", "caption", "center", "dd",
    "details", "dialog", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer",
    "form", "header", "hgroup", "hr", "html", "legend", "li", "main", "nav", "ol", "p", "pre",
    "section", "summary", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
}  # fmt: skip
_NEVER_TEXT = {
    "script", "style", "noscript", "template", "svg", "math", "head", "iframe", "object",
    "canvas", "button", "select", "textarea", "input", "nav", "footer", "aside", "form",
    "dialog", "menu",
}  # fmt: skip
_BOILERPLATE_ROLES = {
    "navigation", "banner", "contentinfo", "complementary", "search", "dialog", "alertdialog",
    "menu", "menubar",
}  # fmt: skip
# Class and id names of page furniture, matched as whole words of the name.
_BOILERPLATE_NAME = re.compile(
    r"(?:^|[\s_-])(?:cookies?|consent|gdpr|navbar|navigation|nav|breadcrumbs?|social|share|"
    r"sharing|newsletter|sidebar|footer|skip-link|skiplink|advert|advertisement|ads|popup|"
    r"modal|masthead|site-header)(?:$|[\s_-])",
    re.IGNORECASE,
)
_CONTAINERS = {"html", "body", "main", "article"}
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
_FILE_NAME = re.compile(r"\S+\.(?:png|jpe?g|gif|svg|webp|bmp|ico)", re.IGNORECASE)
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")


def read_html(path: Path, data: bytes) -> ParsedDocument:
    markup, guessed = _decode_markup(data)
    parsed = html_sections(markup, default_title=path.stem)
    parsed.notes.guessed_encoding = guessed
    return parsed


def _decode_markup(data: bytes) -> tuple[str, str | None]:
    """(the page's text, the encoding's name when it was guessed: not UTF-8, no byte-order
    mark and no charset declared in the page, and `decode_text_guessed` was unsure; else
    None). Raises `UnreadableFile` for binary content or bytes no encoding explains."""
    if data.startswith(BOMS):
        return decode_text(data), None
    if b"\x00" in data[:8192]:
        raise UnreadableFile("binary content behind a text file extension")
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        pass
    # HTML may declare another charset; BeautifulSoup's detector reads the declaration.
    from bs4 import UnicodeDammit

    declared = UnicodeDammit(data, is_html=True)
    if declared.unicode_markup is not None and (
        declared.original_encoding == declared.declared_html_encoding
    ):
        return declared.unicode_markup, None
    return decode_text_guessed(data)


def html_sections(markup: str, default_title: str) -> ParsedDocument:
    """Sections of an HTML page (or an EPUB chapter) under their heading paths."""
    from lxml import html

    markup = _XML_DECLARATION.sub("", markup, count=1)
    if not markup.strip():
        return ParsedDocument(default_title, [])
    try:
        root = html.document_fromstring(markup)
    except (etree.ParserError, ValueError):
        return ParsedDocument(default_title, [])
    title = clean_line(root.findtext(".//head/title") or "")
    _drop_boilerplate(root)
    builder = SectionBuilder()
    _Blocks(builder).read(root)
    parsed = builder.build(title or default_title)
    if title:
        parsed.title = title
    return parsed


def _drop_boilerplate(root: Any) -> None:
    doomed = []
    for element in root.iter():
        if not isinstance(element.tag, str):
            doomed.append(element)  # comments and processing instructions
        elif _is_boilerplate(element) and not _holds_main_content(element):
            doomed.append(element)
    for element in doomed:
        if element.getparent() is not None:
            element.drop_tree()  # keeps the element's tail text


def _is_boilerplate(element: Any) -> bool:
    tag = element.tag.lower()
    if tag in _NEVER_TEXT or element.get("hidden") is not None:
        return True
    if element.get("aria-hidden") == "true" or element.get("aria-modal") == "true":
        return True
    if (element.get("role") or "").lower() in _BOILERPLATE_ROLES:
        return True
    if _HIDDEN_STYLE.search(element.get("style") or ""):
        return True
    if tag == "header" and element.find(".//h1") is None:
        return True
    if tag in _CONTAINERS:  # their class names describe the page ("has-sidebar"), not them
        return False
    names = f"{element.get('class') or ''} {element.get('id') or ''}"
    return _BOILERPLATE_NAME.search(names) is not None


def _holds_main_content(element: Any) -> bool:
    """A wrapper named like furniture that holds the page's main content is kept."""
    if element.tag.lower() in {"script", "style", "template", "head"}:
        return False
    return next(element.iter("main", "article", "h1"), None) is not None


class _Blocks:
    """Walks the tree once, in document order, collecting inline text into blocks."""

    def __init__(self, builder: SectionBuilder) -> None:
        self.builder = builder
        self.inline: list[str] = []

    def read(self, root: Any) -> None:
        walk = etree.iterwalk(root, events=("start", "end"))
        for event, element in walk:
            tag = element.tag.lower() if isinstance(element.tag, str) else ""
            if event == "start":
                if tag in _HEADING_TAGS:
                    self.flush()
                    self.builder.heading(_HEADING_TAGS[tag], element.text_content())
                    walk.skip_subtree()
                elif tag == "table":
                    self.flush()
                    for line in _table_lines(element):
                        self.builder.add(line + "\n")
                    walk.skip_subtree()
                elif tag == "img":
                    alt = clean_line(element.get("alt") or "")
                    if alt and not _FILE_NAME.fullmatch(alt):
                        self.flush()
                        self.builder.add(f"Image: {alt}\n")
                elif tag == "pre":
                    self.flush()
                    self.builder.add(element.text_content().strip("\n") + "\n")
                    walk.skip_subtree()
                else:
                    if tag in _BLOCK_TAGS:
                        self.flush()
                    if element.text:
                        self.inline.append(element.text)
            else:
                if tag in _BLOCK_TAGS:
                    self.flush()
                if element.tail:
                    self.inline.append(element.tail)
        self.flush()

    def flush(self) -> None:
        text = " ".join("".join(self.inline).split())
        self.inline = []
        if text:
            self.builder.add(text + "\n")


def _table_lines(table: Any) -> list[str]:
    """Rows of this table (not of tables nested in it), spanned columns kept aligned."""
    rows = []
    for row in table.iter("tr"):
        if next(row.iterancestors("table"), None) is not table:
            continue
        cells: list[str] = []
        for cell in row:
            if not isinstance(cell.tag, str) or cell.tag.lower() not in {"td", "th"}:
                continue
            cells.append(cell.text_content())
            span = cell.get("colspan") or "1"
            cells += [""] * (min(int(span), 50) - 1 if span.isdigit() else 0)
        rows.append(cells)
    return table_lines(rows)
