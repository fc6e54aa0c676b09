"""`Store`: every read and write of the knowledge base, over one of two engines.

Embedded (default): Qdrant Edge shards in `KB_QDRANT_PATH` (`rag/store/edge.py`), held by one
process at a time through a lock file that names its holder. Server (`QDRANT_URL`):
qdrant-client (`rag/store/client.py`). Both hold the same records and answer the same hybrid
query; the crash-safe write protocol (begin, invisible chunks, one registry flip, clean-up)
is implemented here, once, over either.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from pathlib import Path
from typing import Any

from rag.errors import StoreLockedError, StoreUnavailableError
from rag.settings import Settings
from rag.store.client import ClientEngine
from rag.store.edge import EdgeEngine, edge_dir
from rag.store.records import (
    ChunkFilter,
    ChunkPoint,
    ChunkRecord,
    DocRecord,
    ScoredChunk,
    SparseVector,
    StoreMeta,
)
from rag.store.reembed import ChunkEmbedder

REMOVED_HASH = ""  # the registry hash of a document no version of which is visible
LOCK_FILE = ".lock"  # the same file qdrant-client's local mode locks: old and new exclude
HOLDER_FILE = ".holder"


def docs_collection(settings: Settings) -> str:
    return f"{settings.collection}__docs"


def server_unreachable(settings: Settings) -> StoreUnavailableError:
    return StoreUnavailableError(
        f"The Qdrant server at {settings.qdrant_url} does not answer; start it "
        "(docker compose up qdrant) or unset QDRANT_URL to use the embedded store."
    )


# -- the embedded store's lock ----------------------------------------------------------------


def _program() -> str:
    """The holder's command as its user typed it: `python -m rag ask`, `streamlit run ...`."""
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("python")
    if script.name == "__main__.py":  # python -m PACKAGE
        first = f"python -m {script.parent.name}"
    elif script.name.endswith("-m"):
        first = "python -m"
    else:
        first = script.name
    return " ".join([first, *sys.argv[1:2]])[:80]


class FolderLock:
    """An exclusive lock on the store folder for this process, naming its holder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._handle: Any = None

    def try_acquire(self) -> bool:
        handle = (self.folder / LOCK_FILE).open("a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._handle = handle
        holder = {"pid": os.getpid(), "program": _program(), "since": time.time()}
        with suppress(OSError):
            (self.folder / HOLDER_FILE).write_text(json.dumps(holder), encoding="utf-8")
        return True

    def release(self) -> None:
        if self._handle is not None:
            with suppress(OSError):
                (self.folder / HOLDER_FILE).unlink()
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def holder(self) -> str:
        """Who holds the folder, as a phrase: `process 123 (python -m ingest)`."""
        try:
            info = json.loads((self.folder / HOLDER_FILE).read_text(encoding="utf-8"))
            os.kill(int(info["pid"]), 0)  # a holder file left by a process that is gone
            return f"process {info['pid']}, {info['program']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "the app, another ingest or an older kb"


def _locked_error(settings: Settings, lock: FolderLock) -> StoreLockedError:
    return StoreLockedError(
        f"The knowledge base in {settings.qdrant_path} is open in another process "
        f"({lock.holder()}); close it and retry, or set QDRANT_URL to share a Qdrant server "
        "between them."
    )


# -- opening ----------------------------------------------------------------------------------


def _server_engine(settings: Settings) -> ClientEngine:
    from qdrant_client import QdrantClient

    key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
    client = QdrantClient(url=settings.qdrant_url, api_key=key, timeout=30)
    return ClientEngine(client, settings.collection, lambda: server_unreachable(settings))


def connect(
    settings: Settings,
    lock_wait_s: float | None = None,
    embedder: ChunkEmbedder | None = None,
) -> Store:
    """The store, open; a locked embedded store is retried for a moment, then explained.
    The caller closes it (`Store.close`); `open_store` does that for a block. A store of an
    earlier kb is converted first; `embedder` re-embeds its chunks when its vectors are of
    another kind (without one they are copied)."""
    if settings.uses_server:
        return Store(_server_engine(settings), settings)
    wait = settings.store_lock_wait_s if lock_wait_s is None else lock_wait_s
    try:
        settings.qdrant_path.mkdir(parents=True, exist_ok=True)
        lock = _acquire(settings, wait)
    except OSError as err:
        raise StoreUnavailableError(
            f"Cannot open the knowledge base in {settings.qdrant_path} "
            f"({err.strerror or err}); set KB_QDRANT_PATH to a folder you can write."
        ) from None
    try:
        from rag.store.convert import convert_if_needed

        if convert_if_needed(settings, lock, embedder):
            lock = _acquire(settings, wait)
        return Store(_edge_engine(settings, lock), settings, lock)
    except BaseException:
        lock.release()
        raise


def _edge_engine(settings: Settings, lock: FolderLock) -> EdgeEngine:
    try:
        return EdgeEngine(edge_dir(settings.qdrant_path, settings.collection))
    except Exception as err:
        if "WouldBlock" in str(err):  # a shard of ours held by this very process
            raise _locked_error(settings, lock) from None
        raise


def _acquire(settings: Settings, wait: float) -> FolderLock:
    lock = FolderLock(settings.qdrant_path)
    deadline = time.monotonic() + wait
    while not lock.try_acquire():
        if time.monotonic() >= deadline:
            raise _locked_error(settings, lock)
        time.sleep(0.1)
    return lock


@contextmanager
def open_store(
    settings: Settings,
    lock_wait_s: float | None = None,
    embedder: ChunkEmbedder | None = None,
) -> Iterator[Store]:
    """Open the store for one operation and release it (the embedded lock) afterwards."""
    store = connect(settings, lock_wait_s, embedder)
    try:
        yield store
    finally:
        store.close()


class SharedStore:
    """One open store per process for a long-running consumer (the app).

    Opening the embedded store takes a fraction of a second, so the app holds it only while
    in use and lets go after `idle_s` seconds without use; `python -m ingest` waits a few
    seconds for the lock and gets it. A server store stays open.
    """

    def __init__(
        self, settings: Settings, idle_s: float = 2.0, embedder: ChunkEmbedder | None = None
    ) -> None:
        self.settings = settings
        self.idle_s = idle_s
        self.embedder = embedder  # for converting a store of an earlier kb (`connect`)
        self._lock = threading.RLock()
        self._store: Store | None = None
        self._users = 0
        self._last_used = 0.0
        self._timer: threading.Timer | None = None

    @contextmanager
    def use(self, lock_wait_s: float | None = None) -> Iterator[Store]:
        with self._lock:
            if self._store is None:
                self._store = connect(self.settings, lock_wait_s, self.embedder)
                self._store.shared = True
            self._users += 1
            store = self._store
        try:
            yield store
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
            if self._users or self._store is None:
                return
            if idle_for < self.idle_s:
                self._schedule_release()
                return
            self._store.close()
            self._store = None

    @property
    def is_open(self) -> bool:
        return self._store is not None

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._store is not None:
                self._store.close()
                self._store = None


# -- the store ----------------------------------------------------------------------------------

ProgressHook = Callable[[str], None]


class Store:
    """Every read and write of the knowledge base, shared by ingest, the chain, the app, eval."""

    def __init__(self, engine: Any, settings: Settings, lock: FolderLock | None = None) -> None:
        self.engine = engine
        self.settings = settings
        self.chunks = settings.collection
        self.docs = docs_collection(settings)
        self.shared = False  # held by a `SharedStore` for several users: never let go
        self._lock = lock
        self._guard = threading.RLock()  # close vs. writes of an in-app ingest

    @property
    def can_let_go(self) -> bool:
        """Whether this process may close the store for a moment and open it again."""
        return self._lock is not None and not self.shared

    @contextmanager
    def released(self, wait_s: float = 120.0) -> Iterator[None]:
        """Let go of the embedded store for the block (another process may open it), then
        hold it again, waiting up to `wait_s` for the lock; a server store is not let go."""
        if not self.can_let_go:
            yield
            return
        with self._guard:
            assert self._lock is not None
            folder_lock = self._lock
            self.engine.close()
            folder_lock.release()
            try:
                yield
            finally:
                self._lock = _acquire(self.settings, wait_s)
                self.engine.reopen()

    def let_others_in(self, pause_s: float = 0.3) -> None:
        """Let go for a moment, so that the app can search during a long ingest. Should
        another process write meanwhile (another ingest, a deletion in the app), what this
        process knows of the registry is stale: it stops, as a kill would, and says so."""
        from rag.store.upkeep import stamp

        before = stamp(self)
        with self.released():
            time.sleep(pause_s)
        if stamp(self) != before:
            raise StoreLockedError(
                f"Another process wrote to the knowledge base in {self.settings.qdrant_path} "
                "while this ingest let go of it for a moment; run the ingest again to finish "
                "(nothing is lost)."
            )

    @property
    def kind(self) -> str:
        return str(self.engine.kind)

    def close(self) -> None:
        with self._guard:
            try:
                self.engine.close()
            finally:
                if self._lock is not None:
                    self._lock.release()
                    self._lock = None

    # -- reads ------------------------------------------------------------------------------

    def exists(self) -> bool:
        return bool(self.engine.exists())

    def meta(self) -> StoreMeta | None:
        return self.engine.meta() if self.exists() else None

    def metadata(self) -> dict[str, Any]:
        """What the store records about itself: embedding model, dimension, schema."""
        meta = self.meta()
        return meta.as_dict() if meta is not None else {}

    def count_chunks(self) -> int:
        return int(self.engine.count_chunks()) if self.exists() else 0

    def documents(self) -> list[DocRecord]:
        if not self.exists():
            return []
        records = [DocRecord.from_payload(p) for p in self.engine.scroll_records()]
        return sorted(records, key=lambda r: r.abs_path)

    def document(self, doc_id: str) -> DocRecord | None:
        if not self.exists():
            return None
        found = self.engine.retrieve_records([doc_id])
        return DocRecord.from_payload(found[0]) if found else None

    def active_hashes(self, doc_ids: Iterable[str]) -> dict[str, str]:
        """doc_id -> the doc_hash whose chunks search may show (one read of the registry)."""
        ids = list(dict.fromkeys(doc_ids))
        if not ids or not self.exists():
            return {}
        return {p["doc_id"]: p.get("doc_hash", "") for p in self.engine.retrieve_records(ids)}

    def chunks_of(self, doc_id: str, indexes: Iterable[int] | None = None) -> list[ChunkRecord]:
        """The visible chunks of one document (optionally only some chunk indexes), in order."""
        record = self.document(doc_id)
        if record is None:
            return []
        wanted = None
        if indexes is not None:
            wanted = tuple(sorted(set(indexes)))
            if not wanted:
                return []
        selector = ChunkFilter(doc_ids=(doc_id,), doc_hash=record.doc_hash, chunk_indexes=wanted)
        chunks = [ChunkRecord.from_payload(p) for p, _ in self.engine.scroll_chunks(selector)]
        return sorted(chunks, key=lambda c: c.chunk_index)

    def all_chunks(self) -> Iterator[ChunkRecord]:
        """Every chunk point, visible or not (for checks and tests)."""
        if self.exists():
            for payload, _ in self.engine.scroll_chunks():
                yield ChunkRecord.from_payload(payload)

    def all_points(self) -> Iterator[ChunkPoint]:
        """Every chunk with its vectors (for a conversion)."""
        if self.exists():
            for payload, vectors in self.engine.scroll_chunks(with_vectors=True):
                vectors = vectors or {}
                yield ChunkPoint(
                    ChunkRecord.from_payload(payload),
                    list(vectors.get("dense") or []),
                    vectors.get("bm25") or SparseVector((), ()),
                )

    def search(
        self,
        dense: list[float],
        sparse: SparseVector | None,
        chunk_filter: ChunkFilter | None = None,
        prefetch: int = 100,
        limit: int = 40,
        visible_only: bool = True,
    ) -> list[ScoredChunk]:
        """The hybrid query: dense and BM25 prefetches fused by DBSF, best first; then only
        chunks of the committed version of their document (the visibility rule)."""
        if not self.exists():
            return []
        found = [
            ScoredChunk(ChunkRecord.from_payload(payload), score)
            for payload, score in self.engine.hybrid(dense, sparse, chunk_filter, prefetch, limit)
        ]
        if not visible_only:
            return found
        active = self.active_hashes(s.chunk.doc_id for s in found)
        return [s for s in found if active.get(s.chunk.doc_id) == s.chunk.doc_hash]

    def search_one(
        self, dense: list[float] | None, sparse: SparseVector | None, limit: int
    ) -> list[ScoredChunk]:
        """Dense alone or BM25 alone, without the registry check (benchmarks)."""
        if not self.exists():
            return []
        return [
            ScoredChunk(ChunkRecord.from_payload(payload), score)
            for payload, score in self.engine.single(dense, sparse, limit)
        ]

    # -- writes: the crash-safe protocol ----------------------------------------------------
    #
    # Per changed document: `begin` (a placeholder record for a new document; deletion of
    # invisible leftovers for a known one), its chunks (invisible: no record points at their
    # hash), `commit` (one registry upsert, the atomic switch to the new version, marked
    # `pending_gc` when an old version remains), then `collect_garbage`. A kill anywhere leaves
    # a state `finish_pending` and the next comparison of hashes repair.

    def create(self, meta: StoreMeta) -> None:
        """Make the (empty) store if it does not exist yet."""
        # Sharding and replication only mean something on a Qdrant cluster.
        layout = {
            "shard_number": self.settings.shard_number,
            "replication_factor": self.settings.replication_factor,
        }
        with self._guard:
            self.engine.create(meta, layout)

    def write_chunks(self, points: list[ChunkPoint]) -> None:
        if points:
            with self._guard:
                self.engine.upsert_chunks(points)

    def update_dense(self, vectors: dict[str, list[float]]) -> None:
        """New dense vectors for existing chunks (id -> vector); payloads and BM25 unchanged."""
        if vectors:
            with self._guard:
                self.engine.update_dense(vectors)

    def set_meta(self, meta: StoreMeta) -> None:
        """Record how the existing store is built now (after re-embedding it)."""
        with self._guard:
            self.engine.set_meta(meta)

    def begin(self, record: DocRecord, previous: DocRecord | None) -> None:
        with self._guard:
            if previous is None:
                # A placeholder record lets the next run find and clear what a kill leaves
                # behind. Nothing to discard: a document without a record has no chunks (they
                # are written only under a record and deleted before it).
                placeholder = replace(record, doc_hash=REMOVED_HASH, chunk_count=0)
                self.put_record(placeholder)
                return
            self.engine.delete_chunks_except(record.doc_id, previous.doc_hash)

    def commit(self, record: DocRecord, previous: DocRecord | None) -> None:
        """The one write that switches search to this version, then the old one's clean-up."""
        with self._guard:
            if previous is None:
                # A new document has only this version's chunks: no clean-up is pending.
                self.put_record(replace(record, pending_gc=False))
                return
            marked = replace(record, pending_gc=True)
            self.put_record(marked)
            self.collect_garbage(marked)

    def put_record(self, record: DocRecord) -> None:
        with self._guard:
            self.engine.put_records([record.to_payload()])

    def put_records(self, records: list[DocRecord]) -> None:
        if records:
            with self._guard:
                self.engine.put_records([r.to_payload() for r in records])

    def collect_garbage(self, record: DocRecord) -> None:
        """Delete the chunks of every other version of the document, then clear the mark."""
        with self._guard:
            self.engine.delete_chunks_except(record.doc_id, record.doc_hash)
            if record.doc_hash == REMOVED_HASH:
                self.engine.delete_records([record.doc_id])
            elif record.pending_gc:
                self.engine.set_record_fields(record.doc_id, {"pending_gc": False})

    def remove(self, record: DocRecord) -> None:
        """Hide the document at once (one registry write), then delete its chunks and record."""
        hidden = replace(record, doc_hash=REMOVED_HASH, chunk_count=0, pending_gc=True)
        with self._guard:
            self.put_record(hidden)
            self.collect_garbage(hidden)

    def finish_pending(self) -> int:
        """Complete the clean-up a killed run left behind; returns how many documents."""
        pending = [record for record in self.documents() if record.pending_gc]
        for record in pending:
            self.collect_garbage(record)
        return len(pending)

    def flush(self) -> None:
        with self._guard:
            self.engine.flush()

    # -- index upkeep -----------------------------------------------------------------------

    def index_info(self) -> dict[str, int]:
        return dict(self.engine.info()) if self.exists() else {}

    def optimize(self) -> bool:
        with self._guard:
            return bool(self.engine.optimize()) if self.exists() else False
