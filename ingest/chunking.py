"""Cut a parsed document into chunks measured in tokens of the embedding model.

A chunk never crosses a section (heading or page) boundary, ends on a sentence boundary
unless one sentence alone is too long, and overlaps the previous chunk by whole sentences.
The text that is embedded is `title > headings` followed by the chunk, and the whole of it
stays within what the embedding model reads (it silently drops everything past that).

A table section (`Section.rows`) is packed by whole rows, never splitting one between chunks;
a row longer than the window alone is split between its cells, each part carrying the row's
key cell in its heading path (and so in what is embedded).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from ingest.readers import ParsedDocument, Section
from ingest.readers.base import ROW_CELL_SEPARATOR, ROW_SEPARATOR, TableRow

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
    ocr: bool = False  # read off a page image
    split_row: int | None = None  # the table row this chunk is a part of, when split by cells


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


# A Chinese or Japanese sentence ends at 。！？ (closing quotes kept with it); no space follows,
# so Punkt, which looks for a period and a space, does not see the end.
_CJK_SENTENCE = re.compile(r"[^。！？]+(?:[。！？]+[」』”）]*|$)")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Sentence spans; a blank line always ends a sentence (lists, tables, headings)."""
    spans = []
    offset = 0
    for block in text.split("\n\n"):
        for start, end in _sentence_splitter().span_tokenize(block):
            spans += _cjk_sentences(block, offset, start, end)
        offset += len(block) + 2
    return spans


def _cjk_sentences(block: str, offset: int, start: int, end: int) -> list[tuple[int, int]]:
    piece = block[start:end]
    if not any(mark in piece for mark in "。！？"):
        return [(offset + start, offset + end)]
    spans = []
    for match in _CJK_SENTENCE.finditer(piece):
        text = match.group(0)
        lead = len(text) - len(text.lstrip())
        trimmed = text.strip()
        if trimmed:
            begin = offset + start + match.start() + lead
            spans.append((begin, begin + len(trimmed)))
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

        def fit(extra: tuple[str, ...], headings: tuple[str, ...] = headings) -> Prefixed:
            return _prefixed(
                embed_prefix(document.title, headings + extra), limits, count_tokens, token_offsets
            )

        plain = fit(())
        if section.rows is not None:
            spans = list(_pack_rows(section.rows, plain, fit, count_tokens, token_offsets))
        else:
            overlap = min(limits.overlap_tokens, plain.budget // 2)
            spans = [
                Span(start, end, n_tokens, (), plain.prefix)
                for start, end, n_tokens in _pack_section(
                    section, plain.budget, overlap, count_tokens, token_offsets
                )
            ]
        for span in spans:
            text = section.text[span.start : span.end]
            chunks.append(
                Chunk(
                    index=len(chunks),
                    text=text,
                    headings=headings + span.extra_headings,
                    page=section.page,
                    char_start=section_start + span.start,
                    char_end=section_start + span.end,
                    n_tokens=span.n_tokens,
                    embed_text=span.prefix + text,
                    ocr=section.ocr,
                    split_row=span.split_row,
                )
            )
        section_start += len(section.text) + len(SECTION_SEPARATOR)
    return chunks


@dataclass(frozen=True)
class Span:
    """Where one chunk lies in its section's text, and what is embedded before it."""

    start: int
    end: int
    n_tokens: int
    extra_headings: tuple[str, ...]
    prefix: str
    split_row: int | None = None


@dataclass(frozen=True)
class Prefixed:
    """What is embedded before a chunk, and the tokens left for the chunk itself."""

    prefix: str
    budget: int


def _prefixed(
    prefix: str, limits: ChunkLimits, count_tokens: TokenCounter, token_offsets: TokenOffsets
) -> Prefixed:
    # two special tokens ([CLS], [SEP]) are added by the model to every input; a title and
    # heading path may take at most half of what is left, so the chunk itself always fits
    usable = limits.model_max_tokens - 2
    fitted = _fit_prefix(prefix, usable // 2, count_tokens, token_offsets)
    room = usable - count_tokens(fitted)
    return Prefixed(fitted, max(8, min(limits.chunk_tokens, room)))


def _pack_rows(
    rows: list[TableRow],
    plain: Prefixed,
    fit: Callable[[tuple[str, ...]], Prefixed],
    count_tokens: TokenCounter,
    token_offsets: TokenOffsets,
) -> Iterator[Span]:
    """Chunks of whole rows within the budget; a row over it alone is split by cells."""
    group: list[tuple[int, int, int]] = []  # (start, end, tokens) of the rows packed so far
    offset = 0
    for row in rows:
        text = row.text
        n_tokens = count_tokens(text)
        if group and sum(g[2] for g in group) + n_tokens > plain.budget:
            yield _rows_span(group, plain)
            group = []
        if n_tokens <= plain.budget:
            group.append((offset, offset + len(text), n_tokens))
        else:
            if group:
                yield _rows_span(group, plain)
                group = []
            yield from _split_row(row, offset, fit, count_tokens, token_offsets)
        offset += len(text) + len(ROW_SEPARATOR)
    if group:
        yield _rows_span(group, plain)


def _rows_span(group: list[tuple[int, int, int]], plain: Prefixed) -> Span:
    return Span(group[0][0], group[-1][1], sum(g[2] for g in group), (), plain.prefix)


def _split_row(
    row: TableRow,
    offset: int,
    fit: Callable[[tuple[str, ...]], Prefixed],
    count_tokens: TokenCounter,
    token_offsets: TokenOffsets,
) -> Iterator[Span]:
    """Parts of a row too long for one chunk: its cells after the key, packed greedily; the
    key cell (and its header) goes into each part's heading path."""
    key = (f"row {row.number}: {row.cells[0]}",)
    keyed = fit(key)
    cells: list[tuple[int, int, int]] = []
    start = offset
    for cell in row.cells:
        cells.append((start, start + len(cell), count_tokens(cell)))
        start += len(cell) + len(ROW_CELL_SEPARATOR)
    text = row.text
    group: list[tuple[int, int, int]] = []
    pieces: list[tuple[int, int, int]] = []
    for cell in cells[1:] or cells:
        if cell[2] > keyed.budget:
            local = list(
                _cut_by_tokens(text, cell[0] - offset, cell[1] - offset, keyed.budget,
                               count_tokens, token_offsets)
            )  # fmt: skip
            pieces += [(offset + a, offset + b, n) for a, b, n in local]
        else:
            pieces.append(cell)
    for piece in pieces:
        if group and sum(g[2] for g in group) + piece[2] > keyed.budget:
            yield Span(
                group[0][0], group[-1][1], sum(g[2] for g in group), key, keyed.prefix, row.number
            )
            group = []
        group.append(piece)
    if group:
        yield Span(
            group[0][0], group[-1][1], sum(g[2] for g in group), key, keyed.prefix, row.number
        )


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
