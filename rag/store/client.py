"""The server store: qdrant-client against a Qdrant server (`QDRANT_URL`).

Two collections, `<collection>` (chunks) and `<collection>__docs` (the registry), with the
same points, payloads and queries as the embedded store; the metadata lives in the chunk
collection's own metadata. The same class reads a store made by an earlier version of kb
(qdrant-client's local mode in `KB_QDRANT_PATH`) when it is converted, and the tests run it
against local mode as a stand-in for a server.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from typing import Any

from rag.store.records import (
    DENSE,
    SPARSE,
    TEXT_FIELD,
    ChunkFilter,
    ChunkPoint,
    SparseVector,
    StoreMeta,
)

SCROLL_PAGE = 512


def _filter(f: ChunkFilter | None, must_not_hash: str | None = None) -> Any:
    from qdrant_client import models

    f = f or ChunkFilter()
    must: list[Any] = []
    if f.doc_ids:
        must.append(models.FieldCondition(key="doc_id", match=models.MatchAny(any=list(f.doc_ids))))
    if f.folder:
        must.append(models.FieldCondition(key="dirs", match=models.MatchValue(value=f.folder)))
    if f.doc_hash is not None:
        must.append(
            models.FieldCondition(key="doc_hash", match=models.MatchValue(value=f.doc_hash))
        )
    if f.chunk_indexes is not None:
        must.append(
            models.FieldCondition(
                key="chunk_index", match=models.MatchAny(any=list(f.chunk_indexes))
            )
        )
    must_not = []
    if must_not_hash is not None:
        must_not.append(
            models.FieldCondition(key="doc_hash", match=models.MatchValue(value=must_not_hash))
        )
    if not must and not must_not:
        return None
    return models.Filter(must=must or None, must_not=must_not or None)


def _sparse(vector: SparseVector) -> Any:
    from qdrant_client import models

    return models.SparseVector(indices=list(vector.indices), values=list(vector.values))


class ClientEngine:
    kind = "server"

    def __init__(self, client: Any, collection: str, on_unreachable: Any = None) -> None:
        self.client = client
        self.chunks = collection
        self.docs = f"{collection}__docs"
        self.on_unreachable = on_unreachable

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from qdrant_client.http.exceptions import ResponseHandlingException

        try:
            return fn(*args, **kwargs)
        except ResponseHandlingException:
            if self.on_unreachable is None:
                raise
            raise self.on_unreachable() from None

    def exists(self) -> bool:
        return bool(
            self.call(self.client.collection_exists, self.chunks)
            and self.call(self.client.collection_exists, self.docs)
        )

    def meta(self) -> StoreMeta | None:
        if not self.exists():
            return None
        data = dict(self.call(self.client.get_collection, self.chunks).config.metadata or {})
        if "embed_model" not in data:
            return None
        return StoreMeta.from_dict(data)

    def create(self, meta: StoreMeta, layout: dict[str, Any]) -> None:
        from qdrant_client import models

        client = self.client
        if not self.call(client.collection_exists, self.chunks):
            client.create_collection(
                self.chunks,
                **layout,
                vectors_config={
                    DENSE: models.VectorParams(size=meta.embed_dim, distance=models.Distance.COSINE)
                },
                sparse_vectors_config={
                    SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)
                },
                metadata=meta.as_dict(),
            )
            _create_payload_indexes(client, self.chunks)
        if not client.collection_exists(self.docs):
            client.create_collection(self.docs, vectors_config={}, **layout)

    def set_meta(self, meta: StoreMeta) -> None:
        self.call(self.client.update_collection, self.chunks, metadata=meta.as_dict())

    def close(self) -> None:
        self.client.close()

    def flush(self) -> None:
        pass

    def count_chunks(self) -> int:
        return int(self.call(self.client.count, self.chunks, exact=True).count)

    def upsert_chunks(self, points: list[ChunkPoint]) -> None:
        from qdrant_client import models

        structs = [
            models.PointStruct(
                id=p.id,
                vector={DENSE: list(p.dense), SPARSE: _sparse(p.sparse)},
                payload=p.chunk.to_payload(),
            )
            for p in points
        ]
        self.call(self.client.upsert, self.chunks, points=structs, wait=True)

    def update_dense(self, vectors: dict[str, list[float]]) -> None:
        from qdrant_client import models

        points = [models.PointVectors(id=i, vector={DENSE: list(v)}) for i, v in vectors.items()]
        self.call(self.client.update_vectors, self.chunks, points=points, wait=True)

    def delete_chunks_except(self, doc_id: str, keep_hash: str) -> None:
        from qdrant_client import models

        stale = _filter(ChunkFilter(doc_ids=(doc_id,)), must_not_hash=keep_hash)
        self.call(
            self.client.delete,
            self.chunks,
            points_selector=models.FilterSelector(filter=stale),
            wait=True,
        )

    def scroll_chunks(
        self, chunk_filter: ChunkFilter | None = None, with_vectors: bool = False
    ) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
        for point in self._scroll(self.chunks, _filter(chunk_filter), with_vectors):
            yield point.payload or {}, _vectors(point.vector) if with_vectors else None

    def hybrid(
        self,
        dense: list[float],
        sparse: SparseVector | None,
        chunk_filter: ChunkFilter | None,
        prefetch: int,
        limit: int,
    ) -> list[tuple[dict[str, Any], float]]:
        from qdrant_client import models

        selector = _filter(chunk_filter)
        stages = [models.Prefetch(query=dense, using=DENSE, limit=prefetch, filter=selector)]
        if sparse is not None and sparse.indices:
            stages.append(
                models.Prefetch(
                    query=_sparse(sparse), using=SPARSE, limit=prefetch, filter=selector
                )
            )
        response = self.call(
            self.client.query_points,
            self.chunks,
            prefetch=stages,
            query=models.FusionQuery(fusion=models.Fusion.DBSF),
            limit=limit,
            with_payload=True,
        )
        return [(p.payload or {}, float(p.score)) for p in response.points]

    def single(
        self, dense: list[float] | None, sparse: SparseVector | None, limit: int
    ) -> list[tuple[dict[str, Any], float]]:
        if dense is not None:
            query, using = dense, DENSE
        else:
            assert sparse is not None
            query, using = _sparse(sparse), SPARSE
        response = self.call(
            self.client.query_points, self.chunks, query=query, using=using, limit=limit
        )
        return [(p.payload or {}, float(p.score)) for p in response.points]

    def put_records(self, payloads: list[dict[str, Any]]) -> None:
        from qdrant_client import models

        points = [models.PointStruct(id=p["doc_id"], vector={}, payload=p) for p in payloads]
        self.call(self.client.upsert, self.docs, points=points, wait=True)

    def set_record_fields(self, doc_id: str, values: dict[str, Any]) -> None:
        self.call(self.client.set_payload, self.docs, payload=values, points=[doc_id], wait=True)

    def delete_records(self, doc_ids: list[str]) -> None:
        from qdrant_client import models

        self.call(
            self.client.delete,
            self.docs,
            points_selector=models.PointIdsList(points=list(doc_ids)),
            wait=True,
        )

    def retrieve_records(self, doc_ids: Iterable[str]) -> list[dict[str, Any]]:
        ids = list(doc_ids)
        if not ids:
            return []
        found = self.call(self.client.retrieve, self.docs, ids, with_payload=True)
        return [p.payload or {} for p in found]

    def scroll_records(self) -> Iterator[dict[str, Any]]:
        for point in self._scroll(self.docs, None, False):
            yield point.payload or {}

    def info(self) -> dict[str, int]:
        return {"points": self.count_chunks()}

    def optimize(self) -> bool:
        return False  # a server builds its indexes itself

    def _scroll(self, collection: str, selector: Any, with_vectors: bool) -> Iterator[Any]:
        offset = None
        while True:
            points, offset = self.call(
                self.client.scroll,
                collection,
                scroll_filter=selector,
                limit=SCROLL_PAGE,
                offset=offset,
                with_payload=True,
                with_vectors=with_vectors,
            )
            yield from points
            if offset is None:
                return


def _vectors(vector: Any) -> dict[str, Any]:
    found = dict(vector or {})
    sparse = found.get(SPARSE)
    if sparse is not None:
        found[SPARSE] = SparseVector(
            tuple(int(i) for i in sparse.indices), tuple(float(v) for v in sparse.values)
        )
    return found


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
        # Local mode (the tests' stand-in) warns that it ignores keyword indexes.
        warnings.simplefilter("ignore", UserWarning)
        for field, schema in indexes.items():
            client.create_payload_index(collection, field, field_schema=schema, wait=True)
