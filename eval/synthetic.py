"""A synthetic knowledge base of any size, for latency at scale without embedding every chunk.

Chunks are the store's own records (`rag.store.ChunkRecord`), written through `Store` as ingest
writes them (the store made by `ingest.writer.ensure_collections`, a registry record per
document so that every chunk is visible):
- chunk texts are real sentences, sampled with a fixed seed and joined to the length of real
  chunks;
- dense vectors are a fixed random projection of each text's hashed bag of words, normalised,
  so that texts sharing words get nearby vectors (as with a real embedder) at no model cost;
- BM25 vectors come from the real encoder (`rag.sparse.Bm25Encoder`, as the pipeline uses it).
Search quality on such a store means nothing; its speed is what it is measured for.
"""

from __future__ import annotations

import hashlib
import re
import warnings
import zlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from ingest.writer import ensure_collections
from rag.sparse import Bm25Encoder
from rag.store import ChunkPoint, ChunkRecord, DocRecord, Store, doc_id_for

CHUNKS_PER_DOC = 100
HASH_BUCKETS = 4096
BATCH = 1024
SYNTHETIC_ROOT = "/synthetic"
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n\s*\n")
_WORD = re.compile(r"\w+")
ProgressHook = Callable[[int, int], None]


def sentences_of(texts: Sequence[str], min_chars: int = 20) -> list[str]:
    """The sentences of some texts, white space collapsed, short fragments left out."""
    found = []
    for text in texts:
        for part in _SENTENCE.split(text):
            sentence = " ".join(part.split())
            if len(sentence) >= min_chars:
                found.append(sentence)
    return found


class RandomProjection:
    """Hashed bag of words -> `dim` floats through a fixed Gaussian matrix, unit length."""

    def __init__(self, dim: int, seed: int = 0) -> None:
        import numpy as np

        rng = np.random.default_rng(seed)
        self.matrix = rng.standard_normal((HASH_BUCKETS, dim)).astype("float32")

    def vectors(self, texts: Sequence[str]) -> list[list[float]]:
        import numpy as np

        counts = np.zeros((len(texts), HASH_BUCKETS), dtype="float32")
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                counts[row, zlib.crc32(word.encode()) % HASH_BUCKETS] += 1.0
        dense = counts @ self.matrix
        norms = np.linalg.norm(dense, axis=1, keepdims=True)
        return (dense / np.maximum(norms, 1e-9)).tolist()


class SyntheticCorpus:
    """Deterministic chunk texts of about `chunk_chars` characters from real sentences."""

    def __init__(self, sentences: Sequence[str], chunk_chars: int, seed: int = 0) -> None:
        import random

        if not sentences:
            raise ValueError("a synthetic corpus needs at least one sentence")
        self.sentences = list(sentences)
        self.chunk_chars = chunk_chars
        self.rng = random.Random(seed)

    def text(self) -> str:
        parts: list[str] = []
        length = 0
        while length < self.chunk_chars:
            sentence = self.rng.choice(self.sentences)
            parts.append(sentence)
            length += len(sentence) + 1
        return " ".join(parts)


def build_synthetic_store(
    store: Store,
    n_chunks: int,
    corpus: SyntheticCorpus,
    *,
    embed_model: str,
    embed_identity: str,
    dim: int,
    bm25_avg_len: float,
    seed: int = 0,
    on_progress: ProgressHook | None = None,
) -> None:
    """Fill an empty store with `n_chunks` visible chunks in documents of CHUNKS_PER_DOC,
    recorded as made by `embed_identity`: the embedder that will query it (random projections
    are of no kind, and a store refuses queries of another kind than it records)."""
    bm25 = Bm25Encoder(avg_len=bm25_avg_len)
    ensure_collections(store, embed_model, dim, embed_identity, bm25.describe())
    projection = RandomProjection(dim, seed)
    records: list[DocRecord] = []
    for start in range(0, n_chunks, BATCH):
        indexes = range(start, min(start + BATCH, n_chunks))
        texts = [corpus.text() for _ in indexes]
        vectors = projection.vectors(texts)
        points = []
        for index, text, vector in zip(indexes, texts, vectors, strict=True):
            if index % CHUNKS_PER_DOC == 0:
                records.append(_record(index // CHUNKS_PER_DOC, n_chunks))
            points.append(_point(records[-1], index % CHUNKS_PER_DOC, text, vector, bm25))
        with warnings.catch_warnings():
            # the embedded Qdrant's advice against 20,000+ points: measuring that is the point
            warnings.filterwarnings("ignore", message="Local mode is not recommended")
            store.write_chunks(points)
        if on_progress is not None:
            on_progress(indexes.stop, n_chunks)
    _commit_all(store, records)


def _record(number: int, n_chunks: int) -> DocRecord:
    abs_path = f"{SYNTHETIC_ROOT}/doc-{number:05d}.md"
    count = min(CHUNKS_PER_DOC, n_chunks - number * CHUNKS_PER_DOC)
    return DocRecord(
        doc_id=doc_id_for(abs_path),
        path=f"doc-{number:05d}.md",
        abs_path=abs_path,
        title=f"Synthetic document {number}",
        doc_hash=hashlib.sha256(abs_path.encode()).hexdigest(),
        chunk_count=count,
        size_bytes=0,
        ingested_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def _point(
    record: DocRecord, index: int, text: str, vector: list[float], bm25: Bm25Encoder
) -> ChunkPoint:
    chunk = ChunkRecord(
        doc_id=record.doc_id,
        path=record.path,
        abs_path=record.abs_path,
        dirs=(SYNTHETIC_ROOT, "/"),
        title=record.title,
        page=None,
        headings=(),
        chunk_index=index,
        char_start=0,
        char_end=len(text),
        doc_hash=record.doc_hash,
        text=text,
        n_tokens=len(_WORD.findall(text)),
    )
    return ChunkPoint(chunk, vector, bm25.document(text))


def _commit_all(store: Store, records: Sequence[DocRecord]) -> None:
    for start in range(0, len(records), BATCH):
        store.put_records(list(records[start : start + BATCH]))
