"""The Qdrant store: how it is opened, and the schema that `ingest/` writes and `rag/` reads.

Two collections per knowledge base:
- `<collection>`: one point per chunk, a named dense vector (`dense`), a BM25 sparse vector
  (`bm25`, IDF applied by Qdrant) and a payload (see `ChunkPayload` keys below) with a
  full-text index on `text`.
- `<collection>__docs`: one point per document, its registry record. A chunk is visible to
  search only when its `doc_hash` equals the `doc_hash` of its document's record; flipping that
  one record is what makes a new version of a document appear at once, whole.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from rag.errors import StoreLockedError, StoreUnavailableError
from rag.settings import Settings

DENSE = "dense"
SPARSE = "bm25"
TEXT_FIELD = "text"
SCHEMA_VERSION = 1
_ID_NAMESPACE = uuid.UUID("6f2b1d4e-5c1a-4f7e-9a51-3c9d2f0b8e11")

# Payload keys of a chunk point.
CHUNK_KEYS = (
    "doc_id", "path", "abs_path", "dirs", "title", "page", "headings", "chunk_index",
    "char_start", "char_end", "doc_hash", "text", "n_tokens",
)  # fmt: skip


def docs_collection(settings: Settings) -> str:
    return f"{settings.collection}__docs"


def doc_id_for(abs_path: str) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, abs_path))


def chunk_id_for(doc_id: str, doc_hash: str, chunk_index: int) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, f"{doc_id}:{doc_hash}:{chunk_index}"))


@dataclass(frozen=True)
class DocRecord:
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


def _connect(settings: Settings) -> Any:
    from qdrant_client import QdrantClient

    if settings.uses_server:
        key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        return QdrantClient(url=settings.qdrant_url, api_key=key, timeout=30)
    settings.qdrant_path.mkdir(parents=True, exist_ok=True)
    client = QdrantClient(path=str(settings.qdrant_path))
    use_write_ahead_log(client)
    return client


def use_write_ahead_log(client: Any) -> None:
    """Put the embedded store's SQLite files in write-ahead-log mode.

    qdrant-client's embedded mode commits every point as its own transaction; with SQLite's
    default rollback journal each commit costs several syncs (ingest spent a fifth of its time
    there, competing with the embedder for the CPU). In WAL mode a commit is one append and
    one sync, about 3x cheaper, and as durable: each commit is still synced, so the order of
    writes that makes ingest crash-safe holds across the store's files even on power loss.
    The mode is a property of the file and stays once set. The connections are private to
    qdrant-client: if their shape changes, nothing is tuned and everything still works.
    """
    local = getattr(client, "_client", None)
    for collection in dict(getattr(local, "collections", None) or {}).values():
        connection = getattr(getattr(collection, "storage", None), "storage", None)
        if isinstance(connection, sqlite3.Connection):
            connection.execute("PRAGMA journal_mode=WAL")


def _is_lock_error(err: Exception) -> bool:
    return "already accessed by another instance" in str(err)


def connect(settings: Settings, lock_wait_s: float | None = None) -> Any:
    """A QdrantClient; a locked embedded store is retried for a moment, then explained."""
    wait = settings.store_lock_wait_s if lock_wait_s is None else lock_wait_s
    deadline = time.monotonic() + wait
    while True:
        try:
            return _connect(settings)
        except RuntimeError as err:
            if not _is_lock_error(err):
                raise
            if time.monotonic() >= deadline:
                raise StoreLockedError(
                    f"The knowledge base in {settings.qdrant_path} is open in another process "
                    "(the app or another ingest); close it and retry, or set QDRANT_URL to "
                    "share a Qdrant server between them."
                ) from None
            time.sleep(0.2)
        except OSError as err:
            raise StoreUnavailableError(
                f"Cannot open the knowledge base in {settings.qdrant_path} ({err.strerror}); "
                "set KB_QDRANT_PATH to a folder you can write."
            ) from None


@contextmanager
def open_store(settings: Settings, lock_wait_s: float | None = None) -> Iterator[Store]:
    """Open the store for one operation and release it (the embedded lock) afterwards."""
    client = connect(settings, lock_wait_s)
    try:
        yield Store(client, settings)
    finally:
        client.close()


class SharedStore:
    """One open store per process for a long-running consumer (the app).

    Opening the embedded store reads every point into memory (about a second per 7,000
    chunks), too slow to do per question; holding it forever would lock `python -m ingest` out.
    So it is opened on first use and closed again after `idle_s` seconds without use, which
    lets a command-line ingest take the lock while the app is idle. A server store stays open.
    """

    def __init__(self, settings: Settings, idle_s: float = 30.0) -> None:
        self.settings = settings
        self.idle_s = idle_s
        self._lock = threading.RLock()
        self._client: Any = None
        self._users = 0
        self._last_used = 0.0
        self._timer: threading.Timer | None = None

    @contextmanager
    def use(self, lock_wait_s: float | None = None) -> Iterator[Store]:
        with self._lock:
            if self._client is None:
                self._client = connect(self.settings, lock_wait_s)
            self._users += 1
            client = self._client
        try:
            yield Store(client, self.settings)
        finally:
            with self._lock:
                self._users -= 1
                self._last_used = time.monotonic()
                self._schedule_release()

    def _schedule_release(self) -> None:
        if self.settings.uses_server or self._timer is not None:
            return
        self._timer = threading.Timer(self.idle_s, self._release_if_idle)
        self._timer.daemon = True
        self._timer.start()

    def _release_if_idle(self) -> None:
        with self._lock:
            self._timer = None
            idle_for = time.monotonic() - self._last_used
            if self._users or self._client is None:
                return
            if idle_for < self.idle_s:
                self._schedule_release()
                return
            self._client.close()
            self._client = None

    @property
    def is_open(self) -> bool:
        return self._client is not None

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._client is not None:
                self._client.close()
                self._client = None


def server_unreachable(settings: Settings) -> StoreUnavailableError:
    return StoreUnavailableError(
        f"The Qdrant server at {settings.qdrant_url} does not answer; start it "
        "(docker compose up qdrant) or unset QDRANT_URL to use the embedded store."
    )


class Store:
    """Read access to the knowledge base, shared by ingest, the chain, the app and eval."""

    def __init__(self, client: Any, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.chunks = settings.collection
        self.docs = docs_collection(settings)

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from qdrant_client.http.exceptions import ResponseHandlingException

        try:
            return fn(*args, **kwargs)
        except ResponseHandlingException:
            raise server_unreachable(self.settings) from None

    def exists(self) -> bool:
        return bool(
            self.call(self.client.collection_exists, self.chunks)
            and self.call(self.client.collection_exists, self.docs)
        )

    def metadata(self) -> dict[str, Any]:
        """What the collection records about itself: embedding model, dimension, schema."""
        if not self.exists():
            return {}
        return dict(self.call(self.client.get_collection, self.chunks).config.metadata or {})

    def count_chunks(self) -> int:
        if not self.exists():
            return 0
        return int(self.call(self.client.count, self.chunks, exact=True).count)

    def documents(self) -> list[DocRecord]:
        if not self.exists():
            return []
        records = [DocRecord.from_payload(p.payload or {}) for p in self._scroll(self.docs)]
        return sorted(records, key=lambda r: r.abs_path)

    def document(self, doc_id: str) -> DocRecord | None:
        if not self.exists():
            return None
        found = self.call(self.client.retrieve, self.docs, [doc_id], with_payload=True)
        return DocRecord.from_payload(found[0].payload or {}) if found else None

    def active_hashes(self, doc_ids: Iterable[str]) -> dict[str, str]:
        """doc_id -> the doc_hash whose chunks search may show (one read of the registry)."""
        ids = list(dict.fromkeys(doc_ids))
        if not ids:
            return {}
        found = self.call(self.client.retrieve, self.docs, ids, with_payload=["doc_hash"])
        return {str(p.id): (p.payload or {}).get("doc_hash", "") for p in found}

    def chunks_of(self, doc_id: str, indexes: Iterable[int] | None = None) -> list[Any]:
        """The visible chunks of one document (optionally only some chunk indexes), in order."""
        from qdrant_client import models

        record = self.document(doc_id)
        if record is None:
            return []
        must: list[Any] = [
            models.FieldCondition(key="doc_id", match=models.MatchValue(value=doc_id)),
            models.FieldCondition(key="doc_hash", match=models.MatchValue(value=record.doc_hash)),
        ]
        if indexes is not None:
            wanted = sorted(set(indexes))
            if not wanted:
                return []
            must.append(models.FieldCondition(key="chunk_index", match=models.MatchAny(any=wanted)))
        points = list(self._scroll(self.chunks, models.Filter(must=must)))
        return sorted(points, key=lambda p: p.payload["chunk_index"])

    def _scroll(self, collection: str, scroll_filter: Any = None) -> Iterator[Any]:
        offset = None
        while True:
            points, offset = self.call(
                self.client.scroll,
                collection,
                scroll_filter=scroll_filter,
                limit=512,
                offset=offset,
                with_payload=True,
                with_vectors=False,
            )
            yield from points
            if offset is None:
                return
