"""What ingest writes to the store: named vectors, the store's model record, the refusal to
mix embedding models, and the visibility rule (search sees one whole version at a time)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from ingest import cli, pipeline, writer
from ingest.pipeline import ingest, version_hash
from rag.embeddings import Embedder
from rag.errors import EmbedderMismatchError, StoreLockedError
from rag.settings import DEFAULT_EMBED_MODEL, Settings
from rag.store import SCHEMA_VERSION, Store, doc_id_for, open_store
from tests.ingest_fixtures import (
    NoModelEmbedder,
    assert_store_consistent,
    make_settings,
    snapshot,
    write_markdown_corpus,
)


def write_doc(path: Path, version: str, paragraphs: int = 3) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "\n\n".join(
        f"## Part {n}\n\nThis is part {n} of version {version}. "
        f"It says {version} things about part {n} of the harbour."
        for n in range(paragraphs)
    )
    path.write_text(f"# Harbour Notes\n\n{body}\n", encoding="utf-8")
    return path


def test_points_have_named_dense_and_bm25_vectors_and_collection_records_model(
    tmp_path: Path, embedder: Embedder
) -> None:
    write_doc(tmp_path / "docs" / "notes.md", "one")
    settings = make_settings(tmp_path / "store")
    ingest(settings, [tmp_path / "docs"], embedder=embedder)
    with open_store(settings) as store:
        assert store.kind == "embedded"
        meta = store.metadata()
        assert meta["embed_model"] == DEFAULT_EMBED_MODEL and meta["embed_dim"] == 384
        assert meta["embed_identity"] == getattr(embedder, "identity", DEFAULT_EMBED_MODEL)
        assert meta["schema"] == SCHEMA_VERSION and meta["bm25"]["language"] == "english"
        points = list(store.all_points())
    assert len(points) == 3
    for point in points:
        assert len(point.dense) == 384
        assert len(point.sparse.indices) == len(point.sparse.values) > 3
        assert all(value > 0 for value in point.sparse.values)


def test_another_embedding_model_is_refused_before_any_model_loads(
    tmp_path: Path, embedder: Embedder
) -> None:
    docs = tmp_path / "docs"
    write_doc(docs / "notes.md", "one")
    settings = make_settings(tmp_path / "store")
    ingest(settings, [docs], embedder=embedder)
    before = snapshot(settings)

    write_doc(docs / "more.md", "two")  # a changed corpus, so there would be work to do
    other = make_settings(tmp_path / "store", embed_model="BAAI/bge-small-en-v1.5")
    refusing = NoModelEmbedder(other)
    with pytest.raises(EmbedderMismatchError) as caught:
        ingest(other, [docs], embedder=refusing)
    message = str(caught.value)
    assert "\n" not in message and message.endswith(".") and ". " not in message
    assert DEFAULT_EMBED_MODEL in message and "BAAI/bge-small-en-v1.5" in message
    assert not refusing.model_touched
    after = snapshot(settings)
    assert [r.doc_hash for r in after.records] == [r.doc_hash for r in before.records]
    assert len(after.points) == len(before.points)


def test_cli_reports_the_model_mismatch_in_one_sentence(
    tmp_path: Path,
    embedder: Embedder,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    docs = tmp_path / "docs"
    write_doc(docs / "notes.md", "one")
    ingest(make_settings(tmp_path / "store"), [docs], embedder=embedder)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KB_QDRANT_PATH", str(tmp_path / "store"))
    monkeypatch.setenv("KB_COLLECTION", "kb")
    monkeypatch.setenv("KB_EMBED_MODEL", "some-other-model")
    monkeypatch.setattr(pipeline, "Embedder", NoModelEmbedder)  # a load would fail the test
    code = cli.main([str(docs)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "some-other-model" in err and "Traceback" not in err


class _Observer:
    """Wraps `Store.put_record` (the registry write) to look at the store just before and
    after the flip."""

    def __init__(self, doc_id: str, new_hash: str) -> None:
        self.doc_id = doc_id
        self.new_hash = new_hash
        self.seen: dict[str, dict[str, Any]] = {}
        self.real = Store.put_record

    def patch(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def put_record(store: Store, record: Any) -> None:
            watching = record.doc_id == self.doc_id and record.doc_hash == self.new_hash
            if watching:
                self.seen["before"] = self.look(store)
            self.real(store, record)
            if watching:
                self.seen["after"] = self.look(store)

        monkeypatch.setattr(Store, "put_record", put_record)

    def look(self, store: Store) -> dict[str, Any]:
        active = store.active_hashes([self.doc_id])[self.doc_id]
        every = [c.payload for c in store.all_chunks() if c.doc_id == self.doc_id]
        return {
            "active": active,
            "matching": sorted(c["text"] for c in every if c["doc_hash"] == active),
            "hashes": {c["doc_hash"] for c in every},
            "visible": sorted(p.payload["text"] for p in store.chunks_of(self.doc_id)),
        }


def test_search_sees_the_old_version_until_the_flip_and_only_the_new_one_after(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = tmp_path / "docs"
    path = write_doc(docs / "notes.md", "one")
    settings = make_settings(tmp_path / "store")
    ingest(settings, [docs], embedder=embedder)
    old_hash = version_hash(path.read_bytes(), settings)

    write_doc(path, "two", paragraphs=4)
    new_hash = version_hash(path.read_bytes(), settings)
    doc_id = doc_id_for(str(path.resolve()))
    observer = _Observer(doc_id, new_hash)
    observer.patch(monkeypatch)
    report = ingest(settings, [docs], embedder=embedder)
    assert report.updated == 1

    before, after = observer.seen["before"], observer.seen["after"]
    # New chunks are all written, yet the registry still points at the old version...
    assert before["active"] == old_hash
    assert before["hashes"] == {old_hash, new_hash}
    assert len(before["matching"]) == 3
    assert all("version one" in text for text in before["matching"])
    assert before["visible"] == before["matching"]
    # ...and right after the one registry write, only the new version matches.
    assert after["active"] == new_hash
    assert len(after["matching"]) == 4
    assert all("version two" in text for text in after["matching"])
    assert after["visible"] == after["matching"]
    assert_store_consistent(snapshot(settings), {str(path.resolve())})


def test_a_failure_just_before_the_flip_leaves_the_old_version_whole(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = tmp_path / "docs"
    path = write_doc(docs / "notes.md", "one")
    settings = make_settings(tmp_path / "store")
    ingest(settings, [docs], embedder=embedder)
    old_hash = version_hash(path.read_bytes(), settings)
    write_doc(path, "two", paragraphs=5)
    new_hash = version_hash(path.read_bytes(), settings)
    doc_id = doc_id_for(str(path.resolve()))

    real = Store.put_record

    def fail_on_new_version(store: Store, record: Any) -> None:
        if record.doc_hash == new_hash:
            raise OSError("disk pulled out")
        real(store, record)

    monkeypatch.setattr(Store, "put_record", fail_on_new_version)
    with pytest.raises(OSError, match="disk pulled out"):
        ingest(settings, [docs], embedder=embedder)
    with open_store(settings) as store:
        assert store.active_hashes([doc_id]) == {doc_id: old_hash}
        assert all("version one" in p.payload["text"] for p in store.chunks_of(doc_id))
        assert len(store.chunks_of(doc_id)) == 3
        assert store.count_chunks() == 3 + 5  # the new chunks are there, invisible

    monkeypatch.setattr(Store, "put_record", real)
    report = ingest(settings, [docs], embedder=embedder)
    assert report.updated == 1 and report.chunks_written == 5
    snap = snapshot(settings)
    assert_store_consistent(snap, {str(path.resolve())})
    assert all("version two" in p.payload["text"] for p in snap.points)


def test_a_document_is_invisible_until_its_first_version_is_committed(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = tmp_path / "docs"
    path = write_doc(docs / "notes.md", "one")
    settings: Settings = make_settings(tmp_path / "store")
    new_hash = version_hash(path.read_bytes(), settings)
    observer = _Observer(doc_id_for(str(path.resolve())), new_hash)
    observer.patch(monkeypatch)
    ingest(settings, [docs], embedder=embedder)
    before, after = observer.seen["before"], observer.seen["after"]
    assert before["active"] == writer.REMOVED_HASH  # a placeholder: no version visible yet
    assert before["matching"] == [] and before["visible"] == []
    assert before["hashes"] == {new_hash}
    assert after["active"] == new_hash and len(after["visible"]) == 3


def test_a_long_ingest_lets_go_of_the_store_between_batches(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = tmp_path / "docs"
    write_markdown_corpus(docs, 40, 8)
    settings = make_settings(tmp_path / "store", chunk_size=32, chunk_overlap=4)
    monkeypatch.setattr(pipeline, "LET_GO_EVERY_S", 0.0)
    seen: list[int] = []
    real = Store.let_others_in

    def let_others_in(store: Store, pause_s: float = 0.3) -> None:
        # another process (here: another opener) gets the store meanwhile
        with store.released(), open_store(settings, lock_wait_s=0) as other:
            seen.append(len(other.documents()))

    monkeypatch.setattr(Store, "let_others_in", let_others_in)
    report = ingest(settings, [docs], embedder=embedder)
    monkeypatch.setattr(Store, "let_others_in", real)
    assert report.added == 40 and report.chunks_written > 2 * pipeline.EMBED_BATCH_CHUNKS
    assert len(seen) >= 2 and seen == sorted(seen)  # it saw the documents committed so far
    assert_store_consistent(snapshot(settings), {str(p.resolve()) for p in docs.iterdir()})


def test_an_ingest_that_finds_another_writer_after_letting_go_stops_and_a_rerun_finishes(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = tmp_path / "docs"
    write_markdown_corpus(docs, 40, 8)
    other_doc = write_doc(tmp_path / "other" / "notes.md", "one")
    settings = make_settings(tmp_path / "store", chunk_size=32, chunk_overlap=4)
    monkeypatch.setattr(pipeline, "LET_GO_EVERY_S", 0.0)
    real = Store.released

    @contextmanager
    def released_to_another_ingest(store: Store, wait_s: float = 120.0) -> Iterator[None]:
        with real(store, wait_s):
            monkeypatch.setattr(Store, "released", real)
            ingest(settings, [other_doc.parent], embedder=embedder)  # another writer
            yield

    monkeypatch.setattr(Store, "released", released_to_another_ingest)
    with pytest.raises(StoreLockedError, match="run the ingest again"):
        ingest(settings, [docs], embedder=embedder)
    monkeypatch.setattr(Store, "released", real)
    ingest(settings, [docs], embedder=embedder)
    expected = {str(p.resolve()) for p in docs.iterdir()} | {str(other_doc.resolve())}
    assert_store_consistent(snapshot(settings), expected)
