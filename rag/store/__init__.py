"""The knowledge base's store: its records, its format and every read and write of it.

- `records`: the typed records (`ChunkRecord`, `DocRecord`, `ChunkPoint`, `StoreMeta`, ...)
  and the ids; nothing else in kb knows how they are laid out as Qdrant payloads.
- `core`: `Store` (reads, the hybrid query, the crash-safe write protocol), `open_store`,
  `SharedStore`, the embedded store's lock.
- `edge`: the embedded engine (Qdrant Edge shards and a sidecar in `KB_QDRANT_PATH`).
- `client`: the server engine (qdrant-client, `QDRANT_URL`).
- `convert`: converting a store made by an earlier kb (qdrant-client's local mode).
- `reembed`: one kind of vectors per store: the check before a query, re-embedding in place.
- `upkeep`: building the embedded store's search index without stopping search; disk use.

A chunk is visible to search only when its `doc_hash` equals the `doc_hash` of its document's
registry record; flipping that one record makes a new version of a document appear at once,
whole.
"""

from rag.store.core import (
    REMOVED_HASH,
    FolderLock,
    SharedStore,
    Store,
    connect,
    docs_collection,
    open_store,
    server_unreachable,
)
from rag.store.records import (
    CHUNK_KEYS,
    DENSE,
    PAGE,
    SCHEMA_VERSION,
    SLIDE,
    SPARSE,
    TEXT_FIELD,
    ChunkFilter,
    ChunkPoint,
    ChunkRecord,
    DocRecord,
    ScoredChunk,
    SparseVector,
    StoreMeta,
    chunk_id_for,
    doc_id_for,
)
from rag.store.upkeep import disk_bytes

__all__ = [
    "CHUNK_KEYS",
    "DENSE",
    "PAGE",
    "REMOVED_HASH",
    "SCHEMA_VERSION",
    "SLIDE",
    "SPARSE",
    "TEXT_FIELD",
    "ChunkFilter",
    "ChunkPoint",
    "ChunkRecord",
    "DocRecord",
    "FolderLock",
    "ScoredChunk",
    "SharedStore",
    "SparseVector",
    "Store",
    "StoreMeta",
    "chunk_id_for",
    "connect",
    "disk_bytes",
    "doc_id_for",
    "docs_collection",
    "open_store",
    "server_unreachable",
]
