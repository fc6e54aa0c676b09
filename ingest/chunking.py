"""Cut a parsed document into chunks measured in tokens of the embedding model.

A chunk never crosses a section (heading or page) boundary, ends on a sentence boundary
unless one sentence alone is too long, and overlaps the previous chunk by whole sentences.
The text that is embedded is `title > headings` followed by the chunk, and the whole of it
stays within what the embedding model reads (it silently drops everything past that).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from ingest.readers import ParsedDocument, Section

TokenCounter = Callable[[str], int]
TokenOffsets = Callable[[str], list[tuple[int, int]]]
SECTION_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class Chunk:
    index: int
    text: str
    headings: tuple[str, ...]
    page: int | None
    char_start: int
    char_end: int
    n_tokens: int
    embed_text: str


@dataclass(frozen=True)
class ChunkLimits:
    chunk_tokens: int
    overlap_tokens: int
    model_max_tokens: int  # what the embedder reads, special tokens included


@cache
def _sentence_splitter() -> Any:
    # Punkt with its default parameters needs no downloaded data (unlike nltk's trained model).
    from nltk.tokenize import PunktSentenceTokenizer

    return PunktSentenceTokenizer()


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Sentence spans; a blank line always ends a sentence (lists, tables, headings)."""
    spans = []
    offset = 0
    for block in text.split("\n\n"):
        for start, end in _sentence_splitter().span_tokenize(block):
            spans.append((offset + start, offset + end))
        offset += len(block) + 2
    return spans


def embed_prefix(title: str, headings: tuple[str, ...]) -> str:
    return " > ".join([title, *headings]) + "\n"


def chunk_document(
    document: ParsedDocument,
    limits: ChunkLimits,
    count_tokens: TokenCounter,
    token_offsets: TokenOffsets,
) -> list[Chunk]:
    chunks: list[Chunk] = []
    section_start = 0
    for section in document.sections:
        headings = tuple(section.headings)
        # two special tokens ([CLS], [SEP]) are added by the model to every input; a title and
        # heading path may take at most half of what is left, so the chunk itself always fits
        usable = limits.model_max_tokens - 2
        prefix = _fit_prefix(
            embed_prefix(document.title, headings), usable // 2, count_tokens, token_offsets
        )
        room = usable - count_tokens(prefix)
        budget = max(8, min(limits.chunk_tokens, room))
        overlap = min(limits.overlap_tokens, budget // 2)
        for start, end, n_tokens in _pack_section(
            section, budget, overlap, count_tokens, token_offsets
        ):
            text = section.text[start:end]
            chunks.append(
                Chunk(
                    index=len(chunks),
                    text=text,
                    headings=headings,
                    page=section.page,
                    char_start=section_start + start,
                    char_end=section_start + end,
                    n_tokens=n_tokens,
                    embed_text=prefix + text,
                )
            )
        section_start += len(section.text) + len(SECTION_SEPARATOR)
    return chunks


def _fit_prefix(
    prefix: str, limit: int, count_tokens: TokenCounter, token_offsets: TokenOffsets
) -> str:
    """The prefix, cut to its first `limit` tokens when longer (a heading that is a paragraph)."""
    if count_tokens(prefix) <= limit:
        return prefix
    offsets = token_offsets(prefix)
    keep = limit
    while True:
        cut = prefix[: offsets[keep - 1][1]].rstrip() + "\n"
        if count_tokens(cut) <= limit or keep == 1:
            return cut
        keep -= 1


def document_text(document: ParsedDocument) -> str:
    """The document's text that chunk character spans refer to."""
    return SECTION_SEPARATOR.join(section.text for section in document.sections)


def _pack_section(
    section: Section,
    budget: int,
    overlap: int,
    count_tokens: TokenCounter,
    token_offsets: TokenOffsets,
) -> Iterator[tuple[int, int, int]]:
    """(start, end, tokens) of each chunk of one section, greedy over sentences."""
    pieces = list(_sentence_pieces(section.text, budget, count_tokens, token_offsets))
    first = 0
    while first < len(pieces):
        last, total = first, pieces[first][2]
        while last + 1 < len(pieces) and total + pieces[last + 1][2] <= budget:
            last += 1
            total += pieces[last][2]
        yield pieces[first][0], pieces[last][1], total
        if last + 1 >= len(pieces):
            return
        first = _overlap_start(pieces, first, last, overlap)


def _overlap_start(pieces: list[tuple[int, int, int]], first: int, last: int, overlap: int) -> int:
    """The first piece of the next chunk: step back over whole sentences within `overlap`."""
    start, carried = last + 1, 0
    while start - 1 > first and carried + pieces[start - 1][2] <= overlap:
        start -= 1
        carried += pieces[start][2]
    return start


def _sentence_pieces(
    text: str, budget: int, count_tokens: TokenCounter, token_offsets: TokenOffsets
) -> Iterator[tuple[int, int, int]]:
    """Sentences as (start, end, tokens); a sentence over the budget is cut by tokens."""
    for start, end in sentence_spans(text):
        n_tokens = count_tokens(text[start:end])
        if n_tokens <= budget:
            yield start, end, n_tokens
        else:
            yield from _cut_by_tokens(text, start, end, budget, count_tokens, token_offsets)


def _cut_by_tokens(
    text: str,
    start: int,
    end: int,
    budget: int,
    count_tokens: TokenCounter,
    token_offsets: TokenOffsets,
) -> Iterator[tuple[int, int, int]]:
    """Windows of at most `budget` tokens, ending between words where the window allows.

    A window that starts or ends inside a word is tokenized differently on its own (a word
    piece becomes a word start), so each window is counted again and shrunk until it fits.
    """
    offsets = token_offsets(text[start:end])
    first = 0
    while first < len(offsets):
        last = min(first + budget, len(offsets)) - 1
        if last + 1 < len(offsets):
            for cut in range(last, first + budget // 2, -1):
                if offsets[cut + 1][0] > offsets[cut][1]:  # whitespace follows: a word ends
                    last = cut
                    break
        piece_start = start + offsets[first][0]
        n_tokens = count_tokens(text[piece_start : start + offsets[last][1]])
        while n_tokens > budget and last > first:
            last -= 1
            n_tokens = count_tokens(text[piece_start : start + offsets[last][1]])
        yield piece_start, start + offsets[last][1], n_tokens
        first = last + 1
