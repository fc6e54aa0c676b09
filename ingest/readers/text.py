"""Plain text and Markdown."""

from __future__ import annotations

import re
from pathlib import Path

from ingest.readers.base import ParsedDocument, Section, SectionBuilder, UnreadableFile


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
    builder = SectionBuilder()
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
