"""Runs inside text files that are not prose: base64 attachments, long hex strings, hex dumps
and binary bytes. They become junk chunks that crowd the store, so readers skip them and
count them (`ParsedDocument.junk_runs`, summed in the ingest report)."""

from __future__ import annotations

import re

MIN_ENCODED_CHARS = 256  # a SHA-512 in hex is 128: digests in prose stay
MIN_DISTINCT_CHARS = 16  # "=====" rules and "-----" separators are not encoded data

# Whole lines (or one long token) of the base64/hex alphabet; a last, shorter base64 line
# is taken only when it holds a digit or base64's own punctuation, not a word.
_ENCODED = re.compile(
    r"[A-Za-z0-9+/=_-]{40,}(?:[ \t]*\r?\n[ \t]*[A-Za-z0-9+/=_-]{40,})*"
    r"(?:\r?\n[A-Za-z0-9+/]*[0-9+/=][A-Za-z0-9+/=]*(?=\r?\n|\Z))?"
)
# xxd and hexdump -C output: an offset, then groups of hex digits; four lines or more.
_HEX_DUMP = re.compile(
    r"(?:^[0-9a-fA-F]{6,8}:?(?:[ \t]+[0-9a-fA-F]{2,8}){4,}[^\n]*(?:\n|\Z)){4,}", re.M
)
# Binary bytes decoded as text: eight or more control or replacement characters close together.
_BINARY = re.compile(
    r"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f\ufffd](?:[^\n]{0,8}?[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f\ufffd]){7,}"
)
_SUSPECT = re.compile(r"[A-Za-z0-9+/=_-]{40}|[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f\ufffd]")


def drop_junk(text: str) -> tuple[str, int]:
    """`text` without the junk runs in it, and how many runs were dropped."""
    if _SUSPECT.search(text) is None:  # the common case costs one scan
        return text, 0
    dropped = 0

    def drop(match: re.Match[str]) -> str:
        nonlocal dropped
        dropped += 1
        return ""

    def drop_encoded(match: re.Match[str]) -> str:
        run = match.group(0)
        if len(run) < MIN_ENCODED_CHARS or len(set(run)) < MIN_DISTINCT_CHARS:
            return run
        return drop(match)

    text = _HEX_DUMP.sub(drop, text)
    text = _ENCODED.sub(drop_encoded, text)
    text = _BINARY.sub(drop, text)
    return text, dropped
