"""Text from documents and models, shown as text and never as page content.

A passage or an answer may hold `![x](http://…)`, `<img src=…>`, a bare URL or Streamlit's own
markdown extensions (`:red[…]`, `$…$`). Rendered as markdown, any of these could make the
browser load something remote or show a link. `escape_markdown` turns every such character into
one that markdown prints literally: `&`, `<` and `>` become HTML entities, every other ASCII
punctuation character is backslash-escaped (CommonMark prints an escaped punctuation character
as itself). Escapes do not stop GFM's autolinking of `http://…`, `www.…` and `a@b.c`, which
Streamlit's renderer applies to the text after escapes are resolved; an invisible WORD JOINER
inside `://`, between `www` and `.`, and after `@` breaks those patterns without changing
what is seen.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterable, Iterator

import streamlit as st

WORD_JOINER = "\u2060"
_ESCAPED = {c: "\\" + c for c in string.punctuation} | {
    "&": "&amp;",
    "<": "&lt;",
    ">": "&gt;",
    "@": "\\@" + WORD_JOINER,
    # A line break inside a paragraph would be lost; two spaces before it keep it.
    "\n": "  \n",
}


class MarkdownEscaper:
    """Escapes a text given in pieces (a stream) exactly as `escape_markdown` escapes the whole:
    the only context it needs is the last few characters already seen."""

    def __init__(self) -> None:
        self._tail = ""

    def feed(self, piece: str) -> str:
        out = []
        for char in piece:
            if (char == "/" and self._tail.endswith(":")) or (
                char == "." and self._tail.lower().endswith("www")
            ):
                out.append(WORD_JOINER)
            out.append(_ESCAPED.get(char, char))
            self._tail = (self._tail + char)[-3:]
        return "".join(out)


def escape_markdown(text: str) -> str:
    """`text` as markdown that renders as exactly this text: no image, link, HTML or markup."""
    return MarkdownEscaper().feed(text)


def escaped_stream(pieces: Iterable[str]) -> Iterator[str]:
    escaper = MarkdownEscaper()
    for piece in pieces:
        yield escaper.feed(piece)


def show_text(text: str) -> None:
    """Document or model text, safely, in the page's normal font."""
    st.markdown(escape_markdown(text))


def show_caption(text: str) -> None:
    st.caption(escape_markdown(text))


_CITATION = re.compile(r"\[(\d{1,3})\]")
# A web address in one of kb's messages (a server's), without the sentence's punctuation after it
_ADDRESS = re.compile(r"https?://[^\s`<>\"']*[^\s`<>\"'.,;:!?)]")


def message_markdown(message: str) -> str:
    """One of kb's own messages as markdown: what it quotes in backticks (a command, a
    setting) and the web addresses it names (a server's) as code, the rest escaped like any
    text. A code span shows its content literally, so a path inside one stays text too, and an
    address copies as it is (escaped text keeps an invisible character inside `://`, see
    `escape_markdown`)."""
    parts = message.split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: the last one is text
        parts[-2:] = ["`".join(parts[-2:])]
    return "".join(
        f"`{part}`" if index % 2 and part.strip() else _text_with_addresses(part)
        for index, part in enumerate(parts)
    )


def _text_with_addresses(text: str) -> str:
    return _escaped_around(text, _ADDRESS, lambda match: f"`{match.group()}`")


def _escaped_around(
    text: str, pattern: re.Pattern[str], shown: Callable[[re.Match[str]], str | None]
) -> str:
    """`text` escaped as `escape_markdown` does, but for each match of `pattern` that `shown`
    turns into markdown of kb's own (a match it gives None for stays text)."""
    pieces, last = [], 0
    for match in pattern.finditer(text):
        markdown = shown(match)
        if markdown is None:
            continue
        pieces += [escape_markdown(text[last : match.start()]), markdown]
        last = match.end()
    pieces.append(escape_markdown(text[last:]))
    return "".join(pieces)


def linked_citations(text: str, link: Callable[[int], str | None]) -> str:
    """`text` escaped as `escape_markdown` does, each `[n]` for which `link(n)` gives an anchor
    (`kb-a1-2`, letters, digits and dashes) made a link to `#anchor`: the only markup in the
    result is those links, built here from a number and an anchor of kb's."""

    def linked(match: re.Match[str]) -> str | None:
        anchor = link(int(match.group(1)))
        if anchor is None or not re.fullmatch(r"[A-Za-z0-9-]+", anchor):
            return None
        return f"[\\[{int(match.group(1))}\\]](#{anchor})"

    return _escaped_around(text, _CITATION, linked)


def show_error(err: BaseException) -> None:
    """A `KBError` (or any one-sentence message) as an error box, never a traceback; commands
    it quotes in backticks are shown as code."""
    st.error(message_markdown(str(err)))
