"""One kind of vectors per store (fp32 or int8): a store is never queried with vectors of
another kind, and a store whose embedder changed kind is re-embedded from the chunks it holds,
when an earlier kb's store is converted and, in place, by `python -m ingest`.

Most tests use a fake embedder (a fixed random projection) on tiny stores; the in-place tests
use the shared packaged embedder on a small corpus.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from eval.synthetic import RandomProjection
from ingest import pipeline
from ingest.pipeline import ingest
from rag import cli as rag_cli
from rag.embeddings import Embedder, backend_for, chunk_input, identity_parts, vector_kind
from rag.errors import EmbedderMismatchError
from rag.retrieve import Retriever
from rag.settings import DEFAULT_EMBED_MODEL
from rag.store import ChunkRecord, Store, StoreMeta, open_store
from rag.store import reembed as reembed_module
from rag.store.client import ClientEngine
from rag.store.edge import edge_dir, read_sidecar
from rag.store.reembed import reembed_store
from tests.ingest_fixtures import cli_runner, make_settings
from tests.test_store import DIM, fill, settings_for

INT8 = "test-model|onnx-int8-avx2"


class ProjectionEmbedder:
    """A fake embedder: a fixed random projection of the words, of the given identity."""

    def __init__(self, identity: str, seed: int = 7) -> None:
        self.identity = identity
        self.dim = DIM
        self.projection = RandomProjection(DIM, seed)
        self.embedded = 0

    def embed_chunks(self, chunks: Sequence[ChunkRecord]) -> list[list[float]]:
        self.embedded += len(chunks)
        return self.projection.vectors([c.text for c in chunks])

    def embed_query(self, text: str) -> list[float]:
        return self.projection.vectors([text])[0]


def close(a: Sequence[float], b: Sequence[float], tolerance: float = 1e-4) -> bool:
    return max(abs(x - y) for x, y in zip(a, b, strict=True)) < tolerance


def one_sentence(message: str) -> bool:
    return "\n" not in message and message.endswith(".") and ". " not in message


# -- the kind of an identity -------------------------------------------------------------------


def test_the_kind_is_fp32_for_torch_and_onnx_fp32_and_int8_for_every_instruction_set() -> None:
    model = DEFAULT_EMBED_MODEL
    assert vector_kind(f"{model}|torch") == vector_kind(f"{model}|onnx-fp32") == "fp32"
    assert vector_kind(model) == "fp32"  # an earlier kb recorded the model alone: torch
    assert identity_parts(model) == (model, "torch")
    for isa in ("avx2", "avx512", "avx512_vnni", "arm64"):
        assert vector_kind(f"{model}|onnx-int8-{isa}") == "int8"
    assert vector_kind("test-model|fake") == "fake"  # unknown: a kind of its own
    assert backend_for(f"{model}|onnx-int8-avx512") == "onnx-int8"
    assert backend_for(f"{model}|onnx-fp32") == "onnx"
    assert backend_for(model) == "torch"


# -- converting a store of an earlier kb -----------------------------------------------------


def legacy_store(settings: Any) -> dict[str, list[float]]:
    """A store as an earlier kb left it (qdrant-client local mode, the model name alone
    recorded); returns its dense vectors by chunk id."""
    from qdrant_client import QdrantClient

    settings.qdrant_path.mkdir()
    legacy = Store(ClientEngine(QdrantClient(path=str(settings.qdrant_path)), "kb"), settings)
    legacy.create(StoreMeta(embed_model="test-model", embed_dim=DIM, schema=1))
    fill(legacy)
    vectors = {p.id: p.dense for p in legacy.all_points()}
    legacy.close()
    return vectors


def test_converting_an_old_store_for_an_int8_embedder_re_embeds_its_chunks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(tmp_path / "q")
    old_vectors = legacy_store(settings)
    embedder = ProjectionEmbedder(INT8)
    with open_store(settings, embedder=embedder) as store:
        before_listing = [(r.abs_path, r.chunk_count) for r in store.documents()]
        points = {p.id: p for p in store.all_points()}
        assert sorted(points) == sorted(old_vectors)
        for point in points.values():
            assert close(point.dense, embedder.embed_chunks([point.chunk])[0])
            assert not close(point.dense, old_vectors[point.id], 0.1)  # new vectors
        assert store.metadata()["embed_identity"] == INT8
        assert len(before_listing) == 6
        hits = Retriever(store, embedder).search("lighthouse keeper")  # type: ignore[arg-type]
        assert hits and "lighthouse keeper" in hits[0].text
    err = capsys.readouterr().err
    assert "re-embedding its chunks with onnx-int8-avx2" in err and "Converted: 30 chunks" in err


def test_converting_an_old_store_for_an_fp32_embedder_copies_its_vectors(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "q")
    old_vectors = legacy_store(settings)
    embedder = ProjectionEmbedder("test-model|onnx-fp32")
    with open_store(settings, embedder=embedder) as store:
        for point in store.all_points():
            assert close(point.dense, old_vectors[point.id], 1e-5)
        assert store.metadata()["embed_identity"] == "test-model|torch"
        assert Retriever(store, embedder).search("wind birds")  # type: ignore[arg-type]
    assert embedder.embedded == 0


# -- refusing a query of another kind -----------------------------------------------------------


def test_a_query_of_another_kind_or_model_is_refused_in_one_sentence(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "q")
    with open_store(settings) as store:
        store.create(StoreMeta(embed_model="test-model", embed_dim=DIM, embed_identity=INT8))
        fill(store)
        fp32 = ProjectionEmbedder("test-model|torch")
        with pytest.raises(EmbedderMismatchError) as refused:
            Retriever(store, fp32).search("lighthouse keeper")  # type: ignore[arg-type]
        message = str(refused.value)
        assert one_sentence(message)
        assert "holds int8 vectors" in message and "python -m ingest" in message
        assert "KB_EMBED_BACKEND=onnx-int8" in message
        other = ProjectionEmbedder("other-model|onnx-int8-avx2")
        with pytest.raises(EmbedderMismatchError) as refused:
            Retriever(store, other).search("lighthouse keeper")  # type: ignore[arg-type]
        assert one_sentence(str(refused.value)) and "KB_EMBED_MODEL=test-model" in str(
            refused.value
        )
        same_kind = ProjectionEmbedder("test-model|onnx-int8-avx512_vnni")  # another CPU
        assert Retriever(store, same_kind).search("lighthouse keeper")  # type: ignore[arg-type]


def test_the_server_engine_re_embeds_in_place_too() -> None:
    from qdrant_client import QdrantClient

    settings = settings_for(Path("unused"))
    store = Store(ClientEngine(QdrantClient(":memory:"), "kb"), settings)
    try:
        store.create(
            StoreMeta(embed_model="test-model", embed_dim=DIM, embed_identity="test-model")
        )
        made = fill(store)
        embedder = ProjectionEmbedder(INT8)
        assert reembed_store(store, embedder, lambda _: None) == 30
        assert store.metadata()["embed_identity"] == INT8
        sparse = {p.id: p.sparse for _, points in made for p in points}
        for point in store.all_points():
            assert close(point.dense, embedder.embed_chunks([point.chunk])[0])
            assert point.sparse == sparse[point.id]
    finally:
        store.close()


# -- re-embedding in place on ingest -------------------------------------------------------------


def write_docs(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "boats.md").write_text(
        "# Boat Handbook\n\n## Engines\n\nEach engine is serviced every spring by Ole Brandt.\n\n"
        "## Safety\n\nLifejackets are worn at all times on the water.\n",
        encoding="utf-8",
    )
    (root / "meals.md").write_text(
        "# Meals\n\nBreakfast is served at seven. Dinner is at six in the mess hall.\n",
        encoding="utf-8",
    )
    return root


def as_if_made_by_torch(settings: Any) -> dict[str, list[float]]:
    """Give every chunk a vector unlike the embedder's and record torch as its maker, as a
    store built on a GPU (or by an earlier kb) is; returns the vectors given."""
    with open_store(settings) as store:
        chunks = list(store.all_chunks())
        scrambled = dict(
            zip(
                [c.id for c in chunks],
                RandomProjection(384, seed=3).vectors([c.text for c in chunks]),
                strict=True,
            )
        )
        store.update_dense(scrambled)
        meta = store.meta()
        assert meta is not None
        store.set_meta(
            StoreMeta(**{**meta.as_dict(), "embed_identity": f"{meta.embed_model}|torch"})
        )
    return scrambled


def assert_vectors_are_the_embedders(settings: Any, embedder: Embedder) -> None:
    with open_store(settings) as store:
        points = list(store.all_points())
        fresh = embedder.embed_chunks([p.chunk for p in points])
        for point, vector in zip(points, fresh, strict=True):
            # int8 activations are quantized per batch, so a chunk embedded among other chunks
            # differs a little (cosine 0.995 seen); a scrambled vector is near 0
            cosine = sum(a * b for a, b in zip(point.dense, vector, strict=True))
            assert cosine > 0.98, (point.chunk.path, cosine)


def test_ingest_re_embeds_a_store_of_another_kind_in_place(
    tmp_path: Path,
    embedder: Embedder,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import rag.service

    docs = write_docs(tmp_path / "docs")
    store_dir = tmp_path / "store"
    monkeypatch.setattr(rag.service, "Embedder", lambda settings: embedder)
    run = cli_runner(tmp_path, store_dir, embedder, monkeypatch, capsys)
    assert run(str(docs))[0] == 0
    settings = make_settings(store_dir)
    listing = run("--list")[1]
    with open_store(settings) as store:
        before = {p.id: p for p in store.all_points()}
    scrambled = as_if_made_by_torch(settings)
    capsys.readouterr()
    assert rag_cli.main(["ask", "--search", "Who services the engines?"]) != 0
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and "Traceback" not in err and not out
    assert "holds fp32 vectors (torch)" in err and "run `python -m ingest`" in err
    assert "KB_EMBED_BACKEND=torch" in err

    code, out, err = run(str(docs))
    assert code == 0 and "0 added, 0 updated, 2 unchanged" in out
    assert "Re-embedding the 3 chunks" in err and "Re-embedded 3 chunks" in err
    assert run("--list")[1] == listing
    with open_store(settings) as store:
        assert read_sidecar(edge_dir(store_dir, "kb")).embed_identity == embedder.identity  # type: ignore[union-attr]
        after = {p.id: p for p in store.all_points()}
        assert sorted(after) == sorted(before)
        for point_id, point in after.items():
            assert point.chunk == before[point_id].chunk
            assert point.sparse == before[point_id].sparse
            assert not close(point.dense, scrambled[point_id], 0.1)
        hits = Retriever(store, embedder).search("Who services the engines?")
        assert hits and "Ole Brandt" in hits[0].text
    assert_vectors_are_the_embedders(settings, embedder)
    assert "Re-embedding" not in run(str(docs))[2]  # once


def test_an_ingest_killed_while_re_embedding_re_embeds_again_on_the_next_run(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = write_docs(tmp_path / "docs")
    settings = make_settings(tmp_path / "store")
    ingest(settings, [docs], embedder=embedder)
    with open_store(settings) as store:
        listing = store.documents()
    as_if_made_by_torch(settings)

    monkeypatch.setattr(reembed_module, "BATCH", 2)
    real_update = Store.update_dense
    calls: list[int] = []

    def killed_after_one_batch(store: Store, vectors: dict[str, list[float]]) -> None:
        calls.append(len(vectors))
        if len(calls) > 1:
            raise KeyboardInterrupt  # as a kill would stop it: between two batches
        real_update(store, vectors)

    monkeypatch.setattr(Store, "update_dense", killed_after_one_batch)
    with pytest.raises(KeyboardInterrupt):
        ingest(settings, [docs], embedder=embedder)
    monkeypatch.setattr(Store, "update_dense", real_update)
    assert calls == [2, 1]
    with open_store(settings) as store:
        assert store.metadata()["embed_identity"].endswith("|torch")  # not recorded yet
        assert store.documents() == listing
        with pytest.raises(EmbedderMismatchError):
            Retriever(store, embedder).search("Who services the engines?")

    report = ingest(settings, [docs], embedder=embedder)
    assert report.reembedded == 3 and report.unchanged == 2 and report.chunks_written == 0
    assert_vectors_are_the_embedders(settings, embedder)
    with open_store(settings) as store:
        assert store.metadata()["embed_identity"] == embedder.identity
        assert store.documents() == listing
        assert Retriever(store, embedder).search("When is dinner?")


# -- what a stored chunk was embedded from -------------------------------------------------------


def test_a_stored_chunk_is_re_embedded_from_what_ingest_embedded(embedder: Embedder) -> None:
    from ingest.chunking import ChunkLimits, chunk_document
    from ingest.readers import ParsedDocument, Section

    long_heading = "A heading that runs on " * 40  # over half of what the model reads: cut
    document = ParsedDocument(
        "Station Handbook",
        [Section("Dinner is at six.", ["Meals", "Times"]), Section("Quiet.", [long_heading])],
    )
    limits = ChunkLimits(128, 16, embedder.max_tokens)
    chunks = chunk_document(document, limits, embedder.count_tokens, embedder.token_offsets)
    assert len(chunks) == 2
    for chunk in chunks:
        stored = ChunkRecord(
            "d", "p", "/p", ("/",), document.title, None, chunk.headings, chunk.index,
            chunk.char_start, chunk.char_end, "h", chunk.text, chunk.n_tokens,
        )  # fmt: skip
        assert chunk_input(stored, embedder) == chunk.embed_text
    assert len(chunks[1].embed_text) < len(long_heading)


def test_pipeline_opens_the_store_with_its_embedder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ingest()` without a store hands its embedder to `open_store` (for a conversion)."""
    seen: list[Any] = []
    real_open = pipeline.open_store

    def spy(settings: Any, lock_wait_s: Any = None, embedder: Any = None) -> Any:
        seen.append(embedder)
        return real_open(settings, lock_wait_s, embedder)

    monkeypatch.setattr(pipeline, "open_store", spy)
    fake = ProjectionEmbedder(INT8)
    ingest(make_settings(tmp_path / "store"), [], embedder=fake)  # type: ignore[arg-type]
    assert seen == [fake]
