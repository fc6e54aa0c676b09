"""Plain text and Markdown."""

from __future__ import annotations

import codecs
import re
from pathlib import Path

from ingest.readers.base import ParsedDocument, Section, SectionBuilder, UnreadableFile
from ingest.readers.junk import drop_junk

# Longest first: the UTF-32 little-endian BOM starts with the UTF-16 one.
_ENCODING_BY_BOM = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


BOMS = tuple(bom for bom, _ in _ENCODING_BY_BOM)


def decode_text(data: bytes) -> str:
    """The text of `data`: by its byte-order mark, else UTF-8, else the encoding
    charset-normalizer finds (Windows-1252 from Notepad's "ANSI", Latin-1, Shift JIS, ...).

    Raises `UnreadableFile` for binary content or bytes no encoding explains.
    """
    return decode_text_guessed(data)[0]


def decode_text_guessed(data: bytes) -> tuple[str, str | None]:
    """(`decode_text(data)`, the encoding's name when it was an unsure guess: a legacy 8-bit
    code page picked from little text, or beside another that reads as well; else None).
    Raises `UnreadableFile` as `decode_text` does."""
    for bom, encoding in _ENCODING_BY_BOM:
        if data.startswith(bom):
            try:
                return data.decode(encoding), None
            except UnicodeDecodeError:
                raise UnreadableFile(
                    f"the file starts with a {encoding.upper()} byte-order mark but is not "
                    f"{encoding.upper()} text; save it again as UTF-8"
                ) from None
    if b"\x00" in data[:8192]:
        text = _utf16_without_bom(data)
        if text is None:
            raise UnreadableFile("binary content behind a text file extension")
        return text, None
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        pass
    western = _as_windows_1252(data)
    if western is not None:
        # ð ý þ are rare outside Icelandic; in Turkish Windows-1254 the same bytes are ğ ı ş
        return western, ("cp1252" if _ICELANDIC_OR_TURKISH.search(western) else None)
    from charset_normalizer import from_bytes

    matches = from_bytes(data)
    best = matches.best()
    if best is None:
        raise UnreadableFile(
            "binary content or an unknown text encoding behind a text file extension; "
            "save it as UTF-8"
        )
    text = str(best)
    unsure = best.coherence < SURE_COHERENCE or any(
        abs(other.chaos - best.chaos) < 0.02
        and abs(other.coherence - best.coherence) < 0.05
        and str(other) != text
        for other in matches
        if other is not best
    )
    return text, (best.encoding if unsure else None)


# charset-normalizer's coherence (0..1: how well the text's letters fit a language) below
# which its pick among 8-bit code pages is a guess worth naming
SURE_COHERENCE = 0.2
_ICELANDIC_OR_TURKISH = re.compile("[ðýþÐÝÞ]")


def _utf16_without_bom(data: bytes) -> str | None:
    """UTF-16 text written without a byte-order mark: mostly Latin text has a zero byte in
    nearly every other position (the high byte of each character), binary files do not."""
    sample = data[:4096]
    even, odd = sample[0::2], sample[1::2]
    for zeros, other, encoding in ((odd, even, "utf-16-le"), (even, odd, "utf-16-be")):
        if zeros.count(0) >= 0.9 * len(zeros) and other.count(0) <= 0.02 * len(other):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError:
                return None
    return None


# Non-ASCII characters that Windows-1252 text holds: accented letters beside ASCII letters
# (café, Größe, crème) and typographic punctuation from Word and Notepad.
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_WESTERN = re.compile(
    r"(?<=[A-Za-z])[\xc0-\xff]|[\xc0-\xff](?=[A-Za-z])|[–—‘’‚“”„…€•™°§£©®±×«»‹›¡¿]"
)


def _as_windows_1252(data: bytes) -> str | None:
    """`data` as Windows-1252 when that reads as Western European text, else None.

    charset-normalizer alone misreads short Western text: it took "crème brûlée" for
    Windows-1250 ("crčme brűlée") and a German sentence for Mac Turkish. Other single-byte
    encodings seen through Windows-1252 give runs of accented letters with no ASCII letter
    beside them (Cyrillic, Greek) or symbols inside words (Polish in Windows-1250: "za¿ó³æ").
    """
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:  # five bytes are undefined in Windows-1252
        return None
    non_ascii = len(_NON_ASCII.findall(text))
    if len(_WESTERN.findall(text)) >= 0.8 * non_ascii:
        return text
    return None


def read_text(path: Path, data: bytes) -> ParsedDocument:
    decoded, guessed = decode_text_guessed(data)
    text, junk_runs = drop_junk(decoded)
    parsed = ParsedDocument(path.stem, [Section(text)], junk_runs=junk_runs)
    parsed.notes.guessed_encoding = guessed
    return parsed


_ATX_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def read_markdown(path: Path, data: bytes) -> ParsedDocument:
    decoded, guessed = decode_text_guessed(data)
    text, junk_runs = drop_junk(decoded)
    parsed = markdown_sections(text, default_title=path.stem)
    parsed.junk_runs = junk_runs
    parsed.notes.guessed_encoding = guessed
    return parsed


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
