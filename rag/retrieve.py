"""Hybrid retrieval: dense and BM25 fused in one Qdrant query, then passages.

One query (`Store.search`) carries two prefetches (dense on `dense`, BM25 on `bm25`) and
distribution-based score fusion, so the embedded store and a server answer alike. The
candidates are checked against the document registry (only the committed version of a document
is visible) and near-duplicates are dropped. Adjacent chunks are merged when packed
(`rag/context.py`), so that merging never pulls unpacked neighbours into the context.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rag.embeddings import Embedder
from rag.sparse import Bm25Encoder
from rag.store import PAGE, SLIDE, ChunkFilter, ScoredChunk, Store
from rag.store.reembed import check_query_embedder


@dataclass(frozen=True)
class RetrievalParams:
    """How candidates are found and fused; the defaults were chosen with `python -m eval
    retrieval` (see ARCHITECTURE.md, "Retrieval")."""

    prefetch: int = 100  # candidates each of dense and BM25 hands to the fusion
    candidates: int = 40  # fused chunks kept
    duplicate_overlap: float = 0.9  # share of shingles two passages share to count as one


@dataclass(frozen=True)
class SearchFilters:
    doc_ids: tuple[str, ...] = ()
    path_prefix: str | None = None  # an absolute folder: only documents under it


@dataclass
class Passage:
    """One or more adjacent chunks of a document, as retrieved and then packed."""

    doc_id: str
    path: str
    abs_path: str
    title: str
    headings: list[str]
    page: int | None
    chunk_indexes: list[int]
    char_start: int
    char_end: int
    text: str
    score: float
    pages: list[int] = field(default_factory=list)
    page_kind: str = PAGE  # what `page` and `pages` count: PAGE or SLIDE
    ocr: bool = False  # some of its text was read off a page image by OCR

    @classmethod
    def from_scored(cls, scored: ScoredChunk) -> Passage:
        c = scored.chunk
        return cls(
            doc_id=c.doc_id,
            path=c.path,
            abs_path=c.abs_path,
            title=c.title,
            headings=list(c.headings),
            page=c.page,
            chunk_indexes=[c.chunk_index],
            char_start=c.char_start,
            char_end=c.char_end,
            text=c.text,
            score=float(scored.score),
            pages=[c.page] if c.page is not None else [],
            page_kind=c.page_kind,
            ocr=c.ocr,
        )

    def source_label(self) -> str:
        """`path, p. 3, Heading > Sub` (`slide 3` in a deck) — how a passage is named in the
        prompt and the UI."""
        parts = [self.path]
        if self.pages:
            parts.append(place_label(self.page_kind, min(self.pages), max(self.pages)))
        if self.headings:
            parts.append(" > ".join(self.headings))
        if self.ocr:
            parts.append("OCR text")  # read off a scanned page: it may hold misread words
        return ", ".join(parts)


def place_label(page_kind: str, first: int, last: int) -> str:
    """The place as cited: `p. 3`, `pp. 3-4`, `slide 3`, `slides 3-4`."""
    if page_kind == SLIDE:
        return f"slide {first}" if first == last else f"slides {first}-{last}"
    return f"p. {first}" if first == last else f"pp. {first}-{last}"


class Retriever:
    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        params: RetrievalParams | None = None,
        bm25: Bm25Encoder | None = None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.params = params or RetrievalParams()
        self.bm25 = bm25  # None: the encoder the store records, read at the first search
        self._embedder_checked = False

    def _query_encoder(self) -> Bm25Encoder:
        """Queries are tokenized as the store's chunks were (its recorded BM25 settings); read
        once, since a server-mode store answers each metadata read with a request."""
        if self.bm25 is None:
            self.bm25 = Bm25Encoder.recorded(self.store.metadata().get("bm25"))
        return self.bm25

    def search(self, query: str, filters: SearchFilters | None = None) -> list[Passage]:
        """Passages for `query`, best first. Raises `EmbedderMismatchError` when the store holds
        vectors of another model or kind than the embedder makes (see `rag.store.reembed`)."""
        if not self.store.exists():
            return []
        self._check_embedder()
        p = self.params
        # Distribution-based score fusion keeps how sure each retriever is (a clear dense
        # winner survives many middling BM25 matches), where rank fusion flattens it.
        found = self.store.search(
            self.embedder.embed_query(query),
            self._query_encoder().query(query),
            chunk_filter(filters),
            prefetch=p.prefetch,
            limit=p.candidates,
        )
        passages = [Passage.from_scored(scored) for scored in found]
        return drop_near_duplicates(passages, self.params.duplicate_overlap)

    def _check_embedder(self) -> None:
        """Once per retriever: a store's identity changes only when ingest re-embeds it."""
        if not self._embedder_checked:
            check_query_embedder(self.store.meta(), self.embedder.identity, self.store.chunks)
            self._embedder_checked = True


def chunk_filter(filters: SearchFilters | None) -> ChunkFilter | None:
    if filters is None or not (filters.doc_ids or filters.path_prefix):
        return None
    folder = None
    if filters.path_prefix:
        folder = filters.path_prefix.rstrip("/") or "/"
    return ChunkFilter(doc_ids=tuple(filters.doc_ids), folder=folder)


def merge_adjacent(passages: list[Passage]) -> list[Passage]:
    """Join chunks of one document that touch or overlap. A merged passage takes the place of
    the earlier of its parts, so merging never moves a passage down the list."""
    merged: list[Passage] = []
    for passage in passages:
        target, placed = passage, False
        while (neighbour := _touching(_same_doc(merged, target), target)) is not None:
            if placed:
                keep, drop = sorted((neighbour, target), key=merged.index)
                _absorb(keep, drop)
                merged.remove(drop)
                target = keep
            else:
                _absorb(neighbour, target)
                target, placed = neighbour, True
        if not placed:
            merged.append(target)
    return merged


def _same_doc(passages: list[Passage], passage: Passage) -> list[Passage]:
    return [p for p in passages if p is not passage and p.doc_id == passage.doc_id]


def _touching(candidates: list[Passage], passage: Passage) -> Passage | None:
    for other in candidates:
        same_heading = other.headings == passage.headings and other.pages == passage.pages
        adjacent = (
            min(passage.chunk_indexes) - max(other.chunk_indexes) == 1
            or min(other.chunk_indexes) - max(passage.chunk_indexes) == 1
        )
        overlapping = passage.char_start < other.char_end and other.char_start < passage.char_end
        if overlapping or (adjacent and same_heading):
            return other
    return None


def _absorb(keeper: Passage, part: Passage) -> None:
    """Grow `keeper` by `part`'s text, in document order, without repeating overlap."""
    first, second = sorted((keeper, part), key=lambda p: p.char_start)
    if second.char_start < first.char_end:
        tail = second.text[first.char_end - second.char_start :]
        text = first.text + tail if second.char_end > first.char_end else first.text
    else:
        text = first.text + "\n\n" + second.text
    keeper.text = text
    keeper.char_start = first.char_start
    keeper.char_end = max(first.char_end, second.char_end)
    keeper.chunk_indexes = sorted(set(keeper.chunk_indexes + part.chunk_indexes))
    keeper.pages = sorted(set(keeper.pages + part.pages))
    keeper.page = keeper.pages[0] if keeper.pages else keeper.page
    keeper.score = max(keeper.score, part.score)
    keeper.ocr = keeper.ocr or part.ocr


_WORD = re.compile(r"\w+")


def _shingles(text: str, size: int = 5) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    return {tuple(words[i : i + size]) for i in range(max(1, len(words) - size + 1))}


def drop_near_duplicates(passages: list[Passage], threshold: float) -> list[Passage]:
    """Keep the first of passages whose texts are the same but for small differences
    (a file copied into two folders, repeated boilerplate)."""
    kept: list[tuple[Passage, set[tuple[str, ...]]]] = []
    for passage in passages:
        shingles = _shingles(passage.text)
        if all(_containment(shingles, other) < threshold for _, other in kept):
            kept.append((passage, shingles))
    return [passage for passage, _ in kept]


def _containment(a: set[tuple[str, ...]], b: set[tuple[str, ...]]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / min(len(a), len(b))
