"""Text safe to store and to print: terminal escape sequences and control characters removed.

Documents can hold them (a saved terminal log, a pasted colour prompt); left in, they reach the
user's terminal verbatim through `rag ask` and can clear it, retitle it or hide text.
"""

from __future__ import annotations

import re

# CSI (colours, cursor moves, clearing), OSC (titles, hyperlinks; ended by BEL or ST), DCS,
# SOS, PM and APC strings, two-character escapes, and the 8-bit CSI.
_ESCAPE_SEQUENCE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"
    r"|\x1b[ -/]*[0-~]"
    r"|\x9b[0-?]*[ -/]*[@-~]"
)
# C0 controls but tab, line feed and carriage return; DEL; C1 controls.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]+")
_PAGE_BREAKS = re.compile(r"[\x0b\x0c]")


def strip_control(text: str) -> str:
    """`text` without escape sequences and control characters (tab and line breaks stay;
    form feeds and vertical tabs become line breaks)."""
    if "\x1b" in text or "\x9b" in text:
        text = _ESCAPE_SEQUENCE.sub("", text)
    if _CONTROL.search(text) is None:
        return text
    return _CONTROL.sub("", _PAGE_BREAKS.sub("\n", text))
