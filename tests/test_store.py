"""The store module: both engines (Qdrant Edge embedded, qdrant-client for a server) answer the
same hybrid query with the same filters and visibility rule; the embedded store's lock names
its holder; a store made by an earlier kb (qdrant-client's local mode) is converted.

A real Qdrant server cannot run here: the server engine is tested through qdrant-client's
local mode (`QdrantClient(":memory:")` or a path), which speaks the same client API.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from eval.synthetic import RandomProjection
from rag.errors import StoreLockedError
from rag.settings import Settings
from rag.sparse import Bm25Encoder
from rag.store import (
    ChunkFilter,
    ChunkPoint,
    ChunkRecord,
    DocRecord,
    Store,
    StoreMeta,
    connect,
    doc_id_for,
    open_store,
)
from rag.store.client import ClientEngine
from rag.store.edge import EdgeEngine, edge_dir

DIM = 32
TOPICS = ["harbour lighthouse keeper", "kitchen dinner mess hall", "weather wind knots birds"]
META = StoreMeta(embed_model="test-model", embed_dim=DIM, embed_identity="test-model|fake")


def settings_for(path: Path) -> Settings:
    return Settings(qdrant_path=path, qdrant_url=None, collection="kb", store_lock_wait_s=0.2)


def documents(n_docs: int = 6, per_doc: int = 5) -> list[tuple[DocRecord, list[ChunkPoint]]]:
    projection, bm25 = RandomProjection(DIM), Bm25Encoder(avg_len=20)
    made = []
    for d in range(n_docs):
        folder = f"/corpus/{'a' if d % 2 else 'b'}"
        abs_path = f"{folder}/doc-{d}.md"
        doc_hash = hashlib.sha256(abs_path.encode()).hexdigest()
        record = DocRecord(doc_id_for(abs_path), f"doc-{d}.md", abs_path, f"Doc {d}", doc_hash,
                           per_doc, 100, "2026-01-01T00:00:00+00:00")  # fmt: skip
        texts = [f"{TOPICS[(d + i) % 3]} note {d} {i} " * 3 for i in range(per_doc)]
        points = [
            ChunkPoint(
                ChunkRecord(
                    record.doc_id,
                    record.path,
                    abs_path,
                    (folder, "/corpus", "/"),
                    record.title,
                    None,
                    ("Part",),
                    i,
                    0,
                    len(text),
                    doc_hash,
                    text,
                    9,
                ),
                vector,
                bm25.document(text),
            )
            for i, (text, vector) in enumerate(zip(texts, projection.vectors(texts), strict=True))
        ]
        made.append((record, points))
    return made


def fill(store: Store) -> list[tuple[DocRecord, list[ChunkPoint]]]:
    store.create(META)
    made = documents()
    for record, points in made:
        store.begin(record, None)
        store.write_chunks(points)
        store.commit(record, None)
    return made


def ranked(
    store: Store, query: str, chunk_filter: ChunkFilter | None = None
) -> list[tuple[float, str]]:
    """(fused score, chunk) best first; chunks of equal score (ties) in a fixed order."""
    dense = RandomProjection(DIM).vectors([query])[0]
    found = store.search(dense, Bm25Encoder(avg_len=20).query(query), chunk_filter, 100, 40)
    hits = [(round(s.score, 3), f"{s.chunk.path}#{s.chunk.chunk_index}") for s in found]
    return sorted(hits, key=lambda hit: (-hit[0], hit[1]))


def test_embedded_and_server_engines_answer_alike(tmp_path: Path) -> None:
    from qdrant_client import QdrantClient

    settings = settings_for(tmp_path / "q")
    edge = Store(EdgeEngine(edge_dir(settings.qdrant_path, "kb")), settings)
    server = Store(ClientEngine(QdrantClient(":memory:"), "kb"), settings)
    try:
        made = fill(edge)
        fill(server)
        for store in (edge, server):
            assert store.count_chunks() == 30
            assert store.metadata() == META.as_dict()
        first = made[0][0]
        filters = [None, ChunkFilter(folder="/corpus/a"), ChunkFilter(doc_ids=(first.doc_id,))]
        for query in ("lighthouse keeper", "wind birds", "dinner"):
            for chunk_filter in filters:
                assert ranked(edge, query, chunk_filter) == ranked(server, query, chunk_filter)
        only_a = ranked(edge, "note", ChunkFilter(folder="/corpus/a"))
        assert only_a and all(int(hit.split("-")[1][0]) % 2 for _, hit in only_a)
        # the visibility rule: a new version written but not committed stays invisible
        for store in (edge, server):
            record, points = made[1]
            new = DocRecord(**{**record.to_payload(), "doc_hash": "v2"})
            store.begin(new, record)
            store.write_chunks([ChunkPoint(
                ChunkRecord(**{**p.chunk.to_payload(), "doc_hash": "v2",
                               "dirs": p.chunk.dirs, "headings": p.chunk.headings}),
                p.dense, p.sparse) for p in points])  # fmt: skip
            assert store.count_chunks() == 35
            assert {c.doc_hash for c in store.chunks_of(record.doc_id)} == {record.doc_hash}
            hits = store.search(points[0].dense, points[0].sparse, None, 100, 40)
            assert all(h.chunk.doc_hash != "v2" for h in hits)
            store.commit(new, record)  # the flip, then the old version's clean-up
            assert store.count_chunks() == 30
            assert {c.doc_hash for c in store.chunks_of(record.doc_id)} == {"v2"}
            store.remove(new)
            assert store.document(record.doc_id) is None and store.count_chunks() == 25
    finally:
        edge.close()
        server.close()


def test_a_held_store_names_its_holder_in_one_sentence(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "q")
    with open_store(settings) as store:
        fill(store)
        with pytest.raises(StoreLockedError) as locked:  # even in the same process
            connect(settings, lock_wait_s=0)
        message = str(locked.value)
        assert message.count(". ") == 0 and message.endswith(".")
        assert str(settings.qdrant_path) in message and "process " in message
        other = subprocess.run(
            [sys.executable, "-c",
             "from rag.store import connect; from tests.test_store import settings_for;\n"
             f"connect(settings_for(__import__('pathlib').Path({str(settings.qdrant_path)!r})))"],
            capture_output=True, text=True, cwd=Path(__file__).parents[1],
        )  # fmt: skip
        assert other.returncode != 0 and "is open in another process" in other.stderr
    with open_store(settings) as store:  # let go: open again, cheaply, with everything there
        assert store.count_chunks() == 30 and len(store.documents()) == 6


def test_an_interrupted_creation_is_created_again(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "q")
    with open_store(settings) as store:
        fill(store)
    folder = edge_dir(settings.qdrant_path, "kb")
    (folder / "store.json").unlink()  # as if killed before the sidecar was written
    with open_store(settings) as store:
        assert not store.exists() and store.count_chunks() == 0
        store.create(META)
        assert store.exists() and store.count_chunks() == 0


def test_a_store_of_the_earlier_kb_is_converted_from_what_it_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from qdrant_client import QdrantClient

    settings = settings_for(tmp_path / "q")
    settings.qdrant_path.mkdir()
    legacy = Store(ClientEngine(QdrantClient(path=str(settings.qdrant_path)), "kb"), settings)
    legacy_meta = StoreMeta(embed_model="test-model", embed_dim=DIM, schema=1)
    legacy.create(legacy_meta)
    made = fill(legacy)
    before_docs = legacy.documents()
    before_chunks = sorted(c.id for c in legacy.all_chunks())
    before_hits = ranked(legacy, "lighthouse keeper")
    legacy.close()

    with open_store(settings) as store:
        assert store.kind == "embedded"
        assert store.documents() == before_docs
        assert sorted(c.id for c in store.all_chunks()) == before_chunks
        assert ranked(store, "lighthouse keeper") == before_hits
        assert store.metadata()["embed_model"] == "test-model"
        vectors = {p.id: p for p in store.all_points()}
        for _, points in made:
            for p in points:
                assert vectors[p.id].sparse == p.sparse
                assert (
                    max(abs(a - b) for a, b in zip(vectors[p.id].dense, p.dense, strict=True))
                    < 1e-5
                )
    err = capsys.readouterr().err
    assert "Converting the knowledge base in" in err and "the old store stays in place" in err
    assert (settings.qdrant_path / "collection" / "kb" / "storage.sqlite").exists()
    with open_store(settings) as store:  # converted once: the next open does not convert
        assert len(store.documents()) == 6
    assert "Converting" not in capsys.readouterr().err


def test_the_index_is_built_on_a_copy_while_others_can_search(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rag.store import upkeep

    settings = settings_for(tmp_path / "q")
    real_optimize = upkeep._optimize
    seen: dict[str, object] = {}

    def optimize_and_look(folder: Path, say: object, started: float) -> None:
        with open_store(settings) as other:  # the store is let go meanwhile: the app can search
            seen["hits"] = ranked(other, "lighthouse keeper")
        real_optimize(folder, say, started)  # type: ignore[arg-type]

    monkeypatch.setattr(upkeep, "_optimize", optimize_and_look)
    with open_store(settings) as store:
        fill(store)
        before = ranked(store, "lighthouse keeper")
        figures = upkeep.build_index(store)
        assert figures["swapped"] is True
        assert ranked(store, "lighthouse keeper") == before == seen["hits"]
        assert store.count_chunks() == 30
    folder = edge_dir(settings.qdrant_path, "kb")
    assert sorted(p.name for p in folder.iterdir()) == ["chunks", "docs", "store.json"]
    with open_store(settings) as store:
        assert ranked(store, "lighthouse keeper") == before


def test_an_index_built_while_the_store_changed_is_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rag.store import upkeep

    settings = settings_for(tmp_path / "q")
    real_optimize = upkeep._optimize

    def optimize_while_another_writes(folder: Path, say: object, started: float) -> None:
        with open_store(settings) as other:
            other.remove(other.documents()[0])
        real_optimize(folder, say, started)  # type: ignore[arg-type]

    monkeypatch.setattr(upkeep, "_optimize", optimize_while_another_writes)
    with open_store(settings) as store:
        fill(store)
        assert upkeep.build_index(store)["swapped"] is False
        assert store.count_chunks() == 25 and len(store.documents()) == 5
    assert not (edge_dir(settings.qdrant_path, "kb") / "chunks.building").exists()


@pytest.mark.parametrize(
    ("argv", "program"),
    [
        (["/repo/rag/__main__.py", "ask", "Who?"], "python -m rag ask"),
        (["/repo/ingest/__main__.py", "./docs"], "python -m ingest ./docs"),
        (["/venv/bin/streamlit", "run", "ui/app.py"], "streamlit run"),
    ],
)
def test_the_lock_names_its_holder_as_the_command_its_user_typed(
    argv: list[str], program: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rag.store.core import _program

    monkeypatch.setattr(sys, "argv", argv)
    assert _program() == program
