"""The embedded store: Qdrant's own engine in-process (Qdrant Edge), two shards in a folder.

`<KB_QDRANT_PATH>/edge/<collection>/` holds `chunks/` (one point per chunk: dense `dense`,
sparse `bm25` with the IDF modifier, keyword indexes on `doc_id`, `doc_hash`, `dirs` and an
integer index on `chunk_index`), `docs/` (one point per document, its registry record) and
`store.json`, the sidecar with what Qdrant Edge has no place for (embedding model and its
identity, dimension, BM25 tokenizer, schema). The sidecar is written last, atomically, after
both shards exist and are flushed: a folder without it is an interrupted creation and is
created again.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from rag.store.records import DENSE, SPARSE, ChunkFilter, ChunkPoint, SparseVector, StoreMeta

SIDECAR = "store.json"
SCROLL_PAGE = 1024


def edge_dir(qdrant_path: Path, collection: str) -> Path:
    return qdrant_path / "edge" / collection


def read_sidecar(folder: Path) -> StoreMeta | None:
    try:
        return StoreMeta.from_dict(json.loads((folder / SIDECAR).read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _filter(f: ChunkFilter | None, must_not_hash: str | None = None) -> Any:
    import qdrant_edge as q

    if f is None and must_not_hash is None:
        return None
    f = f or ChunkFilter()
    must: list[Any] = []
    if f.doc_ids:
        must.append(q.FieldCondition(key="doc_id", match=q.MatchAny(any=list(f.doc_ids))))
    if f.folder:
        must.append(q.FieldCondition(key="dirs", match=q.MatchValue(value=f.folder)))
    if f.doc_hash is not None:
        must.append(q.FieldCondition(key="doc_hash", match=q.MatchValue(value=f.doc_hash)))
    if f.chunk_indexes is not None:
        wanted = list(f.chunk_indexes)
        must.append(q.FieldCondition(key="chunk_index", match=q.MatchAny(any=wanted)))
    must_not = []
    if must_not_hash is not None:
        must_not.append(q.FieldCondition(key="doc_hash", match=q.MatchValue(value=must_not_hash)))
    if not must and not must_not:
        return None
    return q.Filter(must=must or None, must_not=must_not or None)


class EdgeEngine:
    """Two Qdrant Edge shards and a sidecar; the caller holds the folder's lock."""

    kind = "embedded"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._meta = read_sidecar(folder)
        self.chunks_shard: Any = None
        self.docs_shard: Any = None
        if self._meta is not None:
            self._load()

    # -- lifecycle ------------------------------------------------------------------------

    def _load(self) -> None:
        import qdrant_edge as q

        self._finish_swap()
        self.chunks_shard = q.EdgeShard.load(str(self.folder / "chunks"))
        self.docs_shard = q.EdgeShard.load(str(self.folder / "docs"))

    def reopen(self) -> None:
        self._meta = read_sidecar(self.folder)
        if self._meta is not None:
            self._load()

    def swap_chunks(self, optimized: Path) -> None:
        """Put an optimized copy of the chunk shard in place of the shard (same content)."""
        import qdrant_edge as q

        self.chunks_shard.flush()
        self.chunks_shard.close()
        self.chunks_shard = None
        os.replace(optimized, self.folder / "chunks.new")
        self._finish_swap()
        self.chunks_shard = q.EdgeShard.load(str(self.folder / "chunks"))

    def _finish_swap(self) -> None:
        """Complete a swap a kill interrupted: `chunks.new` is whole once it has its name."""
        new, old, live = (self.folder / n for n in ("chunks.new", "chunks.old", "chunks"))
        if new.exists():
            if live.exists():
                shutil.rmtree(old, ignore_errors=True)
                os.replace(live, old)
            os.replace(new, live)
        shutil.rmtree(old, ignore_errors=True)

    def exists(self) -> bool:
        return self._meta is not None

    def meta(self) -> StoreMeta | None:
        return self._meta

    def create(self, meta: StoreMeta, layout: dict[str, Any]) -> None:
        import qdrant_edge as q

        if self._meta is not None:
            return
        for part in ("chunks", "docs"):  # leftovers of an interrupted creation
            shutil.rmtree(self.folder / part, ignore_errors=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        chunks = q.EdgeShard.create(
            str(self.folder / "chunks"),
            q.EdgeConfig(
                vectors={
                    DENSE: q.EdgeVectorParams(size=meta.embed_dim, distance=q.Distance.Cosine)
                },
                sparse_vectors={SPARSE: q.EdgeSparseVectorParams(modifier=q.Modifier.Idf)},
            ),
        )
        for name, schema in (
            ("doc_id", q.PayloadSchemaType.Keyword),
            ("doc_hash", q.PayloadSchemaType.Keyword),
            ("dirs", q.PayloadSchemaType.Keyword),
            ("chunk_index", q.PayloadSchemaType.Integer),
        ):
            chunks.update(q.UpdateOperation.create_field_index(name, schema))
        # Edge needs some vector in a shard's config; registry points carry none.
        docs = q.EdgeShard.create(
            str(self.folder / "docs"),
            q.EdgeConfig(sparse_vectors={"unused": q.EdgeSparseVectorParams()}),
        )
        chunks.flush()
        docs.flush()
        self.chunks_shard, self.docs_shard = chunks, docs
        self.set_meta(meta)

    def set_meta(self, meta: StoreMeta) -> None:
        """Record `meta` in place of the sidecar's (atomically: the old or the new one)."""
        write_atomically(self.folder / SIDECAR, json.dumps(meta.as_dict(), indent=2) + "\n")
        self._meta = meta

    def close(self) -> None:
        for shard in (self.chunks_shard, self.docs_shard):
            if shard is not None:
                try:
                    shard.flush()
                finally:
                    shard.close()
        self.chunks_shard = self.docs_shard = None

    def flush(self) -> None:
        for shard in (self.chunks_shard, self.docs_shard):
            if shard is not None:
                shard.flush()

    # -- chunks ---------------------------------------------------------------------------

    def count_chunks(self) -> int:
        import qdrant_edge as q

        return int(self.chunks_shard.count(q.CountRequest(exact=True)))

    def upsert_chunks(self, points: list[ChunkPoint]) -> None:
        import qdrant_edge as q

        self.chunks_shard.update(
            q.UpdateOperation.upsert_points(
                [
                    q.Point(
                        p.id,
                        {
                            DENSE: list(p.dense),
                            SPARSE: q.SparseVector(list(p.sparse.indices), list(p.sparse.values)),
                        },
                        p.chunk.to_payload(),
                    )
                    for p in points
                ]
            )
        )

    def update_dense(self, vectors: dict[str, list[float]]) -> None:
        """New dense vectors for existing chunk points (id -> vector); the rest unchanged."""
        import qdrant_edge as q

        self.chunks_shard.update(
            q.UpdateOperation.update_vectors(
                [q.PointVectors(point_id, {DENSE: list(v)}) for point_id, v in vectors.items()]
            )
        )

    def delete_chunks_except(self, doc_id: str, keep_hash: str) -> None:
        import qdrant_edge as q

        selector = _filter(ChunkFilter(doc_ids=(doc_id,)), must_not_hash=keep_hash)
        self.chunks_shard.update(q.UpdateOperation.delete_points_by_filter(selector))

    def scroll_chunks(
        self, chunk_filter: ChunkFilter | None = None, with_vectors: bool = False
    ) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
        import qdrant_edge as q

        selector = _filter(chunk_filter)
        offset = None
        while True:
            records, offset = self.chunks_shard.scroll(
                q.ScrollRequest(
                    offset=offset,
                    limit=SCROLL_PAGE,
                    filter=selector,
                    with_payload=True,
                    with_vector=with_vectors,
                )
            )
            for record in records:
                yield record.payload or {}, _vectors(record.vector) if with_vectors else None
            if offset is None:
                return

    def hybrid(
        self,
        dense: list[float],
        sparse: SparseVector | None,
        chunk_filter: ChunkFilter | None,
        prefetch: int,
        limit: int,
    ) -> list[tuple[dict[str, Any], float]]:
        import qdrant_edge as q

        selector = _filter(chunk_filter)
        stages = [
            q.Prefetch(limit=prefetch, query=q.Query.Nearest(dense, using=DENSE), filter=selector)
        ]
        if sparse is not None and sparse.indices:
            vector = q.SparseVector(list(sparse.indices), list(sparse.values))
            stages.append(
                q.Prefetch(
                    limit=prefetch, query=q.Query.Nearest(vector, using=SPARSE), filter=selector
                )
            )
        found = self.chunks_shard.query(
            q.QueryRequest(limit=limit, prefetches=stages, query=q.Fusion.Dbsf(), with_payload=True)
        )
        return [(p.payload or {}, float(p.score)) for p in found]

    def single(
        self, dense: list[float] | None, sparse: SparseVector | None, limit: int
    ) -> list[tuple[dict[str, Any], float]]:
        """One retriever alone (dense or BM25), for the benchmarks."""
        import qdrant_edge as q

        if dense is not None:
            query = q.Query.Nearest(dense, using=DENSE)
        else:
            assert sparse is not None
            vector = q.SparseVector(list(sparse.indices), list(sparse.values))
            query = q.Query.Nearest(vector, using=SPARSE)
        found = self.chunks_shard.query(q.QueryRequest(limit=limit, query=query, with_payload=True))
        return [(p.payload or {}, float(p.score)) for p in found]

    # -- the registry ---------------------------------------------------------------------

    def put_records(self, payloads: list[dict[str, Any]]) -> None:
        import qdrant_edge as q

        points = [q.Point(p["doc_id"], {}, p) for p in payloads]
        self.docs_shard.update(q.UpdateOperation.upsert_points(points))

    def set_record_fields(self, doc_id: str, values: dict[str, Any]) -> None:
        import qdrant_edge as q

        self.docs_shard.update(q.UpdateOperation.set_payload([doc_id], values))

    def delete_records(self, doc_ids: list[str]) -> None:
        import qdrant_edge as q

        self.docs_shard.update(q.UpdateOperation.delete_points(list(doc_ids)))

    def retrieve_records(self, doc_ids: Iterable[str]) -> list[dict[str, Any]]:
        ids = list(doc_ids)
        if not ids:
            return []
        return [r.payload or {} for r in self.docs_shard.retrieve(ids, True, False)]

    def scroll_records(self) -> Iterator[dict[str, Any]]:
        import qdrant_edge as q

        offset = None
        while True:
            records, offset = self.docs_shard.scroll(
                q.ScrollRequest(offset=offset, limit=SCROLL_PAGE, with_payload=True)
            )
            for record in records:
                yield record.payload or {}
            if offset is None:
                return

    # -- index upkeep ---------------------------------------------------------------------

    def info(self) -> dict[str, int]:
        info = self.chunks_shard.info()
        return {
            "segments": int(info.segments_count),
            "points": int(info.points_count),
            "indexed_vectors": int(info.indexed_vectors_count),
        }

    def optimize(self) -> bool:
        return bool(self.chunks_shard.optimize())


def _vectors(vector: Any) -> dict[str, Any]:
    found = dict(vector or {})
    sparse = found.get(SPARSE)
    if sparse is not None:
        found[SPARSE] = SparseVector(
            tuple(int(i) for i in sparse.indices), tuple(float(v) for v in sparse.values)
        )
    return found
