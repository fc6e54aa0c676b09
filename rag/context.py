"""Token estimates and packing passages into a context budget.

Ollama has no tokenize endpoint, so tokens are estimated from text, conservatively, and the
estimate is calibrated per model from the prompt tokens servers counted for earlier answers
(`rag/calibration.py`).
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, replace

from rag.retrieve import Passage, merge_adjacent

# English prose runs about 4 characters per token in Llama/Mistral/Qwen tokenizers; 3.2
# overestimates on purpose so an uncalibrated model is not overfilled.
DEFAULT_CHARS_PER_TOKEN = 3.2
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


@dataclass(frozen=True)
class TokenEstimator:
    chars_per_token: float = DEFAULT_CHARS_PER_TOKEN

    def estimate(self, text: str) -> int:
        # non-ASCII characters (accents, CJK, symbols) often cost a token each, or more
        ascii_chars = len(text) - len(_NON_ASCII.findall(text))
        return math.ceil(ascii_chars / self.chars_per_token) + (len(text) - ascii_chars)

    def messages(self, messages: list[dict[str, str]]) -> int:
        # a few tokens of chat template around each message
        return sum(self.estimate(m.get("content", "")) + 8 for m in messages)


@dataclass
class PackedContext:
    passages: list[Passage]  # numbered 1..n in this order
    text: str  # what goes between <passages> and </passages>
    tokens: int  # estimated
    cut: bool  # the last passage was shortened to fit


def format_passage(number: int, passage: Passage) -> str:
    """`[n] source` on a line of its own, then the passage's text, neutralized: a document
    cannot start a line that reads as a passage header nor write the block's tags."""
    label = neutralize(" ".join(passage.source_label().split()))
    return f"[{number}] {label}\n{neutralize(passage.text.strip())}"


# What document text must not pass for: a passage header at a line start (`[1]`, `[ 1 ]`,
# `［１］` once NFKC-normalized, `【1】`, after blanks, invisible characters, list bullets or a
# quote mark) and the block's tags.
_FORGED_HEADER = re.compile(r"^([\s>*•-]*)[\[【〔〖]\s*(\d+)\s*[\]】〕〗]")
_BLOCK_TAG = re.compile(r"<\s*/?\s*passages\b[^>]*>", re.IGNORECASE)
_LINE_BREAKS = re.compile(r"\r\n?|[\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")


def _canonical(line: str) -> str:
    """NFKC (full-width and other compatibility forms to ASCII), invisible format characters
    (zero-width spaces, direction marks) dropped."""
    normal = unicodedata.normalize("NFKC", line)
    return "".join(ch for ch in normal if unicodedata.category(ch) != "Cf")


def neutralize(text: str) -> str:
    """Document text as it goes into the prompt. A line that would read as a passage header
    gets its number in parentheses, `(1) other.md`, and a passages tag loses its angle
    brackets; such lines are shown NFKC-normalized. Every other line is unchanged."""
    lines = _LINE_BREAKS.sub("\n", text).split("\n")
    for index, line in enumerate(lines):
        canonical = _canonical(line)
        if not (_FORGED_HEADER.match(canonical) or _BLOCK_TAG.search(canonical)):
            continue
        canonical = _FORGED_HEADER.sub(r"\1(\2)", canonical)
        lines[index] = _BLOCK_TAG.sub(lambda m: f"({m.group(0)[1:-1].strip()})", canonical)
    return "\n".join(lines)


def pack(passages: list[Passage], budget: int, estimator: TokenEstimator) -> PackedContext:
    """Passages in rank order until `budget` tokens are used.

    A passage that touches or overlaps one already packed (adjacent chunks of one document)
    is merged into it, which saves its header and the overlapping text. The first passage
    that does not fit whole is cut at a sentence boundary, when at least one sentence fits,
    and packing stops there.
    """
    chosen: list[Passage] = []
    used = 0
    cut = False
    for passage in passages:
        trial = merge_into(chosen, passage)
        cost = _cost(trial, estimator)
        if cost <= budget:
            chosen, used = trial, cost
            continue
        if len(trial) > len(chosen):  # a new passage: try a shortened copy of it
            shortened = _cut_to_fit(len(chosen) + 1, passage, budget - used, estimator)
            if shortened is not None:
                chosen = [*chosen, shortened]
                used = _cost(chosen, estimator)
                cut = True
                break
        # A merge that does not fit is skipped; a later, smaller passage may still fit.
    text = "\n\n".join(format_passage(n, p) for n, p in enumerate(chosen, start=1))
    return PackedContext(chosen, text, used, cut)


def _cost(passages: list[Passage], estimator: TokenEstimator) -> int:
    # one more token per passage for the blank line between them
    return sum(estimator.estimate(format_passage(n, p)) + 1 for n, p in enumerate(passages, 1))


def merge_into(chosen: list[Passage], passage: Passage) -> list[Passage]:
    """`chosen` with `passage` merged into the packed passage it touches, or appended."""
    return merge_adjacent([replace(p) for p in chosen] + [replace(passage)])


_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n+")


def _cut_to_fit(
    number: int, passage: Passage, room: int, estimator: TokenEstimator
) -> Passage | None:
    """The longest run of whole sentences from the passage's start that fits in `room`."""
    header = estimator.estimate(format_passage(number, replace(passage, text=""))) + 1
    if room - header < 16:
        return None
    ends = [m.end() for m in _SENTENCE_END.finditer(passage.text)]
    best = None
    for end in ends:
        if header + estimator.estimate(passage.text[:end]) > room:
            break
        best = end
    if not best:
        return None
    text = passage.text[:best].rstrip()
    return replace(passage, text=text, char_end=passage.char_start + len(text))
