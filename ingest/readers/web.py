"""HTML pages."""

from __future__ import annotations

from pathlib import Path

from ingest.readers.base import ParsedDocument, SectionBuilder, UnreadableFile

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
    builder = SectionBuilder()
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
