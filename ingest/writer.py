"""Ingest's side of the store: checks before writing, and the writer thread's typed steps.

The order of writes that makes ingest crash-safe is `Store`'s (see `rag/store/core.py` and
ARCHITECTURE.md, "The store"): `Begin` a document, write its `Chunks` (invisible), `Commit`
it (one registry flip, then clean-up of the old version). The pipeline hands these steps to
`WriterThread`, which applies them in order while the next batch is embedded.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

from rag.errors import EmbedderMismatchError
from rag.store import REMOVED_HASH, ChunkPoint, DocRecord, Store, StoreMeta

__all__ = [
    "REMOVED_HASH",
    "Begin",
    "Chunks",
    "Commit",
    "WriterThread",
    "apply",
    "check_dimension",
    "check_embedder",
    "ensure_collections",
    "finish_pending",
    "remove_document",
]


def check_embedder(store: Store, model_name: str) -> None:
    """Refuse to mix embedding models in one store."""
    recorded = store.metadata().get("embed_model")
    if recorded and recorded != model_name:
        raise EmbedderMismatchError(
            f"The knowledge base {store.chunks!r} was built with the embedding model "
            f"{recorded!r}, not {model_name!r}; set KB_EMBED_MODEL={recorded} to add to it, "
            "or set KB_COLLECTION to a new name to build one with the new model."
        )


def check_dimension(store: Store, model_name: str, dim: int) -> None:
    recorded = store.metadata().get("embed_dim")
    if recorded and int(recorded) != dim:
        raise EmbedderMismatchError(
            f"The knowledge base {store.chunks!r} holds {recorded}-dimensional vectors but "
            f"{model_name!r} makes {dim}-dimensional ones; set KB_COLLECTION to a new name."
        )


def ensure_collections(
    store: Store,
    model_name: str,
    dim: int,
    identity: str | None = None,
    bm25: dict[str, Any] | None = None,
) -> None:
    """Create the store, recording how it is built, unless it exists."""
    store.create(
        StoreMeta(
            embed_model=model_name,
            embed_dim=dim,
            embed_identity=identity or model_name,
            bm25=dict(bm25 or {}),
        )
    )


def remove_document(store: Store, record: DocRecord) -> None:
    """Hide the document at once (one registry write), then delete its chunks and record."""
    store.remove(record)


def finish_pending(store: Store) -> int:
    """Complete the clean-up a killed run left behind; returns how many."""
    return store.finish_pending()


# -- the writer thread's steps ------------------------------------------------------------------


@dataclass(frozen=True)
class Begin:
    record: DocRecord
    previous: DocRecord | None


@dataclass(frozen=True)
class Chunks:
    points: list[ChunkPoint]


@dataclass(frozen=True)
class Commit:
    record: DocRecord
    previous: DocRecord | None


Step = Begin | Chunks | Commit


def apply(store: Store, step: Step) -> None:
    if isinstance(step, Chunks):
        store.write_chunks(step.points)
    elif isinstance(step, Begin):
        store.begin(step.record, step.previous)
    elif isinstance(step, Commit):
        store.commit(step.record, step.previous)
    else:  # pragma: no cover - a programming error
        raise TypeError(f"not a write step: {step!r}")


# For the crash tests, which watch a running ingest from outside: a file that gets one JSON
# line per applied step, and a pause after each step, so that a kill can land between any two.
TRACE_ENV = "KB_WRITE_TRACE"
TRACE_PAUSE_ENV = "KB_WRITE_TRACE_PAUSE_S"


def _trace_line(step: Step) -> str:
    if isinstance(step, Chunks):
        return json.dumps({"step": "chunks", "n": len(step.points)})
    assert isinstance(step, Begin | Commit)
    flipped = isinstance(step, Commit) or step.previous is None
    doc_hash = step.record.doc_hash if isinstance(step, Commit) else REMOVED_HASH
    return json.dumps(
        {
            "step": type(step).__name__.lower(),
            "abs_path": step.record.abs_path,
            "doc_hash": doc_hash if flipped else step.previous.doc_hash,  # type: ignore[union-attr]
        }
    )


class WriterThread:
    """Applies write steps in order on a background thread; re-raises its error on close."""

    def __init__(self, store: Store) -> None:
        self.store = store
        trace = os.environ.get(TRACE_ENV)
        self.trace = open(trace, "a", encoding="utf-8") if trace else None  # noqa: SIM115
        self.pause_s = float(os.environ.get(TRACE_PAUSE_ENV) or 0) if trace else 0.0
        self.steps: queue.Queue[Step | None] = queue.Queue(maxsize=8)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, name="kb-writer", daemon=True)
        self.thread.start()

    def put(self, step: Step) -> None:
        if self.error is not None:
            raise self.error
        self.steps.put(step)

    def drain(self) -> None:
        """Wait until every step put so far is applied."""
        self.steps.join()
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.steps.put(None)
        self.thread.join()
        if self.trace is not None:
            self.trace.close()
        if self.error is not None:
            raise self.error

    def _loop(self) -> None:
        while True:
            step = self.steps.get()
            try:
                if step is None:
                    return
                if self.error is None:
                    try:
                        apply(self.store, step)
                        if self.trace is not None:
                            self.trace.write(_trace_line(step) + "\n")
                            self.trace.flush()
                            time.sleep(self.pause_s)
                    except BaseException as err:  # handed to the main thread
                        self.error = err
            finally:
                self.steps.task_done()
