"""One kind of vectors per store: the check before a query, and re-embedding a store in place.

A store records the identity of the embedder that made its dense vectors
(`StoreMeta.embed_identity`, e.g. `all-MiniLM-L6-v2|onnx-int8-avx2`). A query must come from the
same model and the same kind of vectors (`rag.embeddings.vector_kind`: fp32 or int8). When only
the kind differs, the store is re-embedded from the chunk texts it holds: same point ids,
payloads and BM25 vectors, new dense vectors, and the new identity recorded last, so that a
run killed midway leaves the old identity and the next run re-embeds again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from itertools import islice
from typing import TYPE_CHECKING, Protocol, TypeVar

from rag.embeddings import backend_for, identity_parts, vector_kind
from rag.errors import EmbedderMismatchError
from rag.store.records import ChunkPoint, ChunkRecord, StoreMeta

if TYPE_CHECKING:
    from rag.store.core import Store

BATCH = 256  # chunks embedded and written at a time
Say = Callable[[str], None]
T = TypeVar("T")


class ChunkEmbedder(Protocol):
    """What re-embedding needs of an embedder (`rag.embeddings.Embedder` is one)."""

    @property
    def identity(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed_chunks(self, chunks: Sequence[ChunkRecord]) -> list[list[float]]: ...


def recorded_identity(meta: StoreMeta) -> str:
    """The store's identity; a store of an earlier kb recorded only the model name (torch)."""
    return meta.embed_identity or meta.embed_model


def kind_differs(meta: StoreMeta, identity: str) -> bool:
    """Whether a store of the same model holds vectors of another kind than `identity` makes:
    what re-embedding fixes (another model is refused, never re-embedded)."""
    recorded = recorded_identity(meta)
    same_model = identity_parts(identity)[0] == meta.embed_model
    return same_model and vector_kind(recorded) != vector_kind(identity)


def check_query_embedder(meta: StoreMeta | None, identity: str, collection: str) -> None:
    """Refuse to query a store with vectors of another model or kind than it holds. Raises
    `EmbedderMismatchError` (one sentence: what to do)."""
    if meta is None:
        return
    model = identity_parts(identity)[0]
    if model != meta.embed_model:
        raise EmbedderMismatchError(
            f"The knowledge base {collection!r} was built with the embedding model "
            f"{meta.embed_model!r}, not {model!r}; set KB_EMBED_MODEL={meta.embed_model} to "
            "search it."
        )
    recorded = recorded_identity(meta)
    if vector_kind(recorded) != vector_kind(identity):
        raise EmbedderMismatchError(
            f"The knowledge base {collection!r} holds {vector_kind(recorded)} vectors "
            f"({identity_parts(recorded)[1]}) but this embedder makes "
            f"{vector_kind(identity)} ones ({identity_parts(identity)[1]}); run "
            "`python -m ingest` on your documents to re-embed it, or set "
            f"KB_EMBED_BACKEND={backend_for(recorded)} to search it as it is."
        )


def reembedded(points: Sequence[ChunkPoint], embedder: ChunkEmbedder) -> list[ChunkPoint]:
    """The same points (ids, payloads, BM25 vectors) with new dense vectors."""
    vectors = embedder.embed_chunks([p.chunk for p in points])
    return [
        ChunkPoint(p.chunk, vector, p.sparse) for p, vector in zip(points, vectors, strict=True)
    ]


def reembed_store(store: Store, embedder: ChunkEmbedder, say: Say) -> int:
    """Re-embed every chunk of `store` in place (new dense vectors under the same ids), then
    record `embedder`'s identity: last, so that a kill before it leaves the old identity and
    the next run re-embeds again. Returns the chunks re-embedded. Payloads, BM25 vectors and
    the registry (what `--list` shows) are not written."""
    meta = store.meta()
    assert meta is not None, "re-embedding needs an existing store"
    recorded = recorded_identity(meta)
    total = store.count_chunks()
    say(
        f"Re-embedding the {total:,} chunks of the knowledge base {store.chunks!r} with "
        f"{identity_parts(embedder.identity)[1]} (it holds {vector_kind(recorded)} vectors of "
        f"{identity_parts(recorded)[1]}); a run stopped midway starts again."
    )

    def update(batch: list[ChunkRecord]) -> None:
        vectors = embedder.embed_chunks(batch)
        store.update_dense({c.id: v for c, v in zip(batch, vectors, strict=True)})

    # The scroll pages by point id and updating vectors keeps the ids: each chunk is met once.
    done = in_batches(store.all_chunks(), BATCH, update, total, "Re-embedding", say)
    store.flush()
    store.set_meta(replace(meta, embed_identity=embedder.identity))
    kind = vector_kind(embedder.identity)
    say(f"Re-embedded {done:,} chunks; the knowledge base now holds {kind} vectors.")
    return done


def in_batches(
    items: Iterable[T],
    size: int,
    handle: Callable[[list[T]], None],
    total: int,
    verb: str,
    say: Say,
) -> int:
    """Hand `items` to `handle` `size` at a time, saying `<verb>: n of total chunks` about
    every tenth of `total`; returns how many were handled."""
    done, step = 0, max(size, total // 10)
    for batch in _chunked(items, size):
        handle(batch)
        now = done + len(batch)
        if now // step > done // step and now < total:
            say(f"{verb}: {now:,} of {total:,} chunks")
        done = now
    return done


def _chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch
