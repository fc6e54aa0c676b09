"""Every write to the store: collections, chunk points, registry flips and garbage collection.

The order of writes is what makes ingest crash-safe (see ARCHITECTURE.md, "The store"):
chunks of a new version go in first, invisible; one registry upsert makes them visible; only
then are the old version's chunks deleted. A record with `pending_gc` marks that last step as
not yet done, and `finish_pending()` completes it on the next run.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from rag.errors import EmbedderMismatchError
from rag.store import (
    DENSE,
    SCHEMA_VERSION,
    SPARSE,
    TEXT_FIELD,
    DocRecord,
    Store,
    use_write_ahead_log,
)

REMOVED_HASH = ""


def check_embedder(store: Store, model_name: str) -> None:
    """Refuse to mix embedding models in one collection."""
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


def ensure_collections(store: Store, model_name: str, dim: int) -> None:
    from qdrant_client import models

    client = store.client
    # Sharding and replication only mean something on a Qdrant cluster; unset = its defaults.
    layout = {
        "shard_number": store.settings.shard_number,
        "replication_factor": store.settings.replication_factor,
    }
    if not client.collection_exists(store.chunks):
        client.create_collection(
            store.chunks,
            **layout,
            vectors_config={DENSE: models.VectorParams(size=dim, distance=models.Distance.COSINE)},
            sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
            metadata={"embed_model": model_name, "embed_dim": dim, "schema": SCHEMA_VERSION},
        )
        _create_payload_indexes(client, store.chunks)
    if not client.collection_exists(store.docs):
        client.create_collection(store.docs, vectors_config={}, **layout)
    use_write_ahead_log(client)


def _create_payload_indexes(client: Any, collection: str) -> None:
    from qdrant_client import models

    text_index = models.TextIndexParams(
        type=models.TextIndexType.TEXT,
        tokenizer=models.TokenizerType.WORD,
        lowercase=True,
        scoring=models.TextScoringParams(type=models.TextScoringType.BM25),
    )
    indexes: dict[str, Any] = {
        TEXT_FIELD: text_index,
        "doc_id": models.PayloadSchemaType.KEYWORD,
        "doc_hash": models.PayloadSchemaType.KEYWORD,
        "dirs": models.PayloadSchemaType.KEYWORD,
        "chunk_index": models.PayloadSchemaType.INTEGER,
    }
    with warnings.catch_warnings():
        # The embedded store warns that it ignores keyword indexes; a server uses them.
        warnings.simplefilter("ignore", UserWarning)
        for field, schema in indexes.items():
            client.create_payload_index(collection, field, field_schema=schema, wait=True)


def upsert_chunks(store: Store, points: Sequence[Any]) -> None:
    if points:
        store.client.upsert(store.chunks, points=list(points), wait=True)


def commit_document(store: Store, record: DocRecord) -> None:
    """The one write that switches search to this version of the document."""
    from qdrant_client import models

    store.client.upsert(
        store.docs,
        points=[models.PointStruct(id=record.doc_id, vector={}, payload=asdict(record))],
        wait=True,
    )


def discard_invisible(store: Store, doc_id: str, visible_hash: str) -> None:
    """Delete every chunk of the document that search cannot see (other versions, leftovers)."""
    from qdrant_client import models

    stale = models.Filter(
        must=[models.FieldCondition(key="doc_id", match=models.MatchValue(value=doc_id))],
        must_not=[
            models.FieldCondition(key="doc_hash", match=models.MatchValue(value=visible_hash))
        ],
    )
    store.client.delete(
        store.chunks, points_selector=models.FilterSelector(filter=stale), wait=True
    )


def collect_garbage(store: Store, record: DocRecord) -> None:
    """Delete the chunks of every other version of the document, then clear the mark."""
    from qdrant_client import models

    discard_invisible(store, record.doc_id, record.doc_hash)
    if record.doc_hash == REMOVED_HASH:
        store.client.delete(
            store.docs, points_selector=models.PointIdsList(points=[record.doc_id]), wait=True
        )
    elif record.pending_gc:
        store.client.set_payload(
            store.docs, payload={"pending_gc": False}, points=[record.doc_id], wait=True
        )


def remove_document(store: Store, record: DocRecord) -> None:
    """Hide the document at once (one registry write), then delete its chunks and record."""
    from dataclasses import replace

    hidden = replace(record, doc_hash=REMOVED_HASH, chunk_count=0, pending_gc=True)
    commit_document(store, hidden)
    collect_garbage(store, hidden)


def finish_pending(store: Store) -> int:
    """Complete the garbage collection a killed run left behind; returns how many."""
    pending = [record for record in store.documents() if record.pending_gc]
    for record in pending:
        collect_garbage(store, record)
    return len(pending)
