"""The typed records of the store: a chunk, a document's registry record, vectors, metadata.

These are the only shapes `ingest/`, `eval/` and `rag/` exchange with the store; how they are
laid out in Qdrant payloads is private to `rag.store`.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field, fields
from typing import Any

DENSE = "dense"
SPARSE = "bm25"
TEXT_FIELD = "text"
SCHEMA_VERSION = 2  # 1: qdrant-client collection metadata; 2: the same records, sidecar file
PAGE, SLIDE = "page", "slide"  # the kinds of place `ChunkRecord.page` counts
_ID_NAMESPACE = uuid.UUID("6f2b1d4e-5c1a-4f7e-9a51-3c9d2f0b8e11")


def doc_id_for(abs_path: str) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, abs_path))


def chunk_id_for(doc_id: str, doc_hash: str, chunk_index: int) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, f"{doc_id}:{doc_hash}:{chunk_index}"))


@dataclass(frozen=True)
class DocRecord:
    """A document's registry record: which version (`doc_hash`) search may show."""

    doc_id: str
    path: str
    abs_path: str
    title: str
    doc_hash: str
    chunk_count: int
    size_bytes: int
    ingested_at: str
    pending_gc: bool = False

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> DocRecord:
        return cls(**{k: payload[k] for k in cls.__dataclass_fields__ if k in payload})

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ChunkRecord:
    """One chunk of one version of a document, as stored and as retrieved."""

    doc_id: str
    path: str
    abs_path: str
    dirs: tuple[str, ...]  # every ancestor folder of abs_path, for the folder filter
    title: str
    page: int | None
    headings: tuple[str, ...]
    chunk_index: int
    char_start: int
    char_end: int
    doc_hash: str
    text: str
    n_tokens: int
    page_kind: str = PAGE  # what `page` counts: PAGE or SLIDE (stores before it: pages)
    ocr: bool = False  # the text was read off a page image by OCR (stores before it: False)

    @property
    def id(self) -> str:
        return chunk_id_for(self.doc_id, self.doc_hash, self.chunk_index)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> ChunkRecord:
        values = {f.name: payload.get(f.name) for f in fields(cls)}
        values["page_kind"] = payload.get("page_kind") or PAGE
        values["dirs"] = tuple(payload.get("dirs") or ())
        values["headings"] = tuple(payload.get("headings") or ())
        values["ocr"] = bool(payload.get("ocr"))
        return cls(**values)

    def to_payload(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["dirs"] = list(self.dirs)
        payload["headings"] = list(self.headings)
        return payload

    @property
    def payload(self) -> dict[str, Any]:
        """The stored payload as a dict (for readers written against the point layout)."""
        return self.to_payload()


CHUNK_KEYS = tuple(f.name for f in fields(ChunkRecord))


@dataclass(frozen=True)
class SparseVector:
    indices: tuple[int, ...]
    values: tuple[float, ...]


@dataclass(frozen=True)
class ChunkPoint:
    """A chunk with its vectors, on its way into the store (or read back for a conversion)."""

    chunk: ChunkRecord
    dense: list[float]
    sparse: SparseVector

    @property
    def id(self) -> str:
        return self.chunk.id


@dataclass(frozen=True)
class ScoredChunk:
    chunk: ChunkRecord
    score: float

    @property
    def payload(self) -> dict[str, Any]:
        return self.chunk.to_payload()


@dataclass(frozen=True)
class StoreMeta:
    """What a store records about how it was built; a store refuses another embedder."""

    embed_model: str
    embed_dim: int
    embed_identity: str = ""
    bm25: dict[str, Any] = field(default_factory=dict)  # tokenizer: language, avg_len
    schema: int = SCHEMA_VERSION

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StoreMeta:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


@dataclass(frozen=True)
class ChunkFilter:
    """Which chunks a query or scroll considers; empty = all."""

    doc_ids: tuple[str, ...] = ()
    folder: str | None = None  # an absolute folder (matched against `dirs`)
    doc_hash: str | None = None
    chunk_indexes: tuple[int, ...] | None = None
