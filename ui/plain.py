"""Text from documents and models, shown as text and never as page content.

A passage or an answer may hold `![x](http://…)`, `<img src=…>`, a bare URL or Streamlit's own
markdown extensions (`:red[…]`, `$…$`). Rendered as markdown, any of these could make the
browser load something remote or show a link. `escape_markdown` turns every such character into
one that markdown prints literally: `&`, `<` and `>` become HTML entities, every other ASCII
punctuation character is backslash-escaped (CommonMark prints an escaped punctuation character
as itself, and an escaped `:` or `.` also breaks GFM's autolinking of `http://…` and `www.…`).
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Iterator

import streamlit as st

_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_TABLE = str.maketrans(
    {c: _ENTITIES.get(c, "\\" + c) for c in string.punctuation}
    # A line break inside a paragraph would be lost; two spaces before it keep it.
    | {"\n": "  \n"}
)


def escape_markdown(text: str) -> str:
    """`text` as markdown that renders as exactly this text: no image, link, HTML or markup.

    Works character by character, so escaping the pieces of a stream one by one gives the same
    result as escaping the whole."""
    return text.translate(_TABLE)


def escaped_stream(pieces: Iterable[str]) -> Iterator[str]:
    for piece in pieces:
        yield escape_markdown(piece)


def show_text(text: str) -> None:
    """Document or model text, safely, in the page's normal font."""
    st.markdown(escape_markdown(text))


def show_caption(text: str) -> None:
    st.caption(escape_markdown(text))


def show_error(err: BaseException) -> None:
    """A `KBError` (or any one-sentence message) as an error box, never a traceback."""
    st.error(escape_markdown(str(err)))
