"""`eval.synthetic` (a store of any size without the model) and `eval.bench` end to end, small."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from eval.bench import format_bench, run_bench_all
from eval.synthetic import (
    CHUNKS_PER_DOC,
    RandomProjection,
    SyntheticCorpus,
    build_synthetic_store,
    sentences_of,
)
from rag.retrieve import Retriever
from rag.service import build_services
from rag.settings import Settings
from rag.store import open_store

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "eval" / "sample"
SENTENCES = sentences_of(
    [
        "The boat watch is kept from the radio room. Every boat carries a VHF radio and flares.\n\n"
        "Freezer FRZ-80A alarms at minus 65 C. Samples are logged before they are moved.",
        "Field parties file a travel plan two hours before departure. Huts hold food for a week.",
    ]
)


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_random_projection_is_fixed_unit_length_and_keeps_shared_words_close() -> None:
    texts = ["boat radio watch flares", "boat radio watch", "freezer samples alarm"]
    first = RandomProjection(64, seed=3).vectors(texts)
    again = RandomProjection(64, seed=3).vectors(texts)
    assert first == again
    assert all(math.isclose(cosine(v, v), 1.0, rel_tol=1e-5) for v in first)
    assert cosine(first[0], first[1]) > cosine(first[0], first[2])


def test_a_synthetic_store_has_the_schema_and_every_chunk_is_visible(
    eval_settings: Callable[..., Settings], embedder: Any, tmp_path: Path
) -> None:
    settings = eval_settings("http://127.0.0.1:9", tmp_path / "data", qdrant_path=tmp_path / "q")
    with open_store(settings) as store:
        build_synthetic_store(
            store, 250, SyntheticCorpus(SENTENCES, chunk_chars=200),
            embed_model=settings.embed_model, embed_identity=embedder.identity,
            dim=embedder.dim, bm25_avg_len=32.0,
        )  # fmt: skip
        assert store.count_chunks() == 250
        assert [r.chunk_count for r in store.documents()] == [CHUNKS_PER_DOC, CHUNKS_PER_DOC, 50]
        assert store.metadata()["embed_model"] == settings.embed_model
        passages = Retriever(store, embedder).search("When does the freezer alarm go off?")
        # visible (a chunk without its registry record is dropped), near-duplicates aside
        assert len(passages) >= 20
        assert all(p.abs_path.startswith("/synthetic/") for p in passages)


@pytest.mark.slow
def test_bench_reports_every_figure_for_every_store(
    eval_settings: Callable[..., Settings],
    eval_sample_store: Path,
    isolated_env: None,
    embedder: Any,
    tmp_path: Path,
) -> None:
    # no model server is configured at all: the bench times the chain on its own fake Ollama
    settings = eval_settings("http://127.0.0.1:9", tmp_path / "data", ollama_enabled=False)
    said: list[str] = []
    with build_services(settings, embedder=embedder) as services:
        results = run_bench_all(
            services, SAMPLE, large_chunks=300, chain_chunks=200, questions=3,
            notify=said.append, search_every_s=0.05,
        )  # fmt: skip
    json.dumps(results)  # what --json writes
    assert results["ingest"]["chunks"] == results["ingest"]["ingest"]["chunks_written"] > 0
    stores = results["stores"]
    assert [s["store"] for s in stores] == ["evaluation store", "synthetic 200", "synthetic 300"]
    assert [s["chunks"] for s in stores[1:]] == [200, 300]
    for store in stores:
        for part in ("retrieval", "query_embedding", "qdrant_dense", "qdrant_bm25"):
            assert store[part]["n"] == 3 and store[part]["p50_ms"] <= store[part]["p95_ms"]
    for store in stores[1:]:  # searched from another opener while its index was built
        assert store["index_swapped"] is True
        during = store["search_during_index"]
        assert during["failed"] == 0, during["errors"]
        assert during["n"] >= 1 and during["p95_ms"] <= during["max_ms"]
    for store in stores:
        overhead = store["chain_overhead"]
        assert overhead["overhead"]["n"] == overhead["direct_first_delta"]["n"] == 3
        assert overhead["chain_first_delta"]["n"] == 3
        assert (
            0 < overhead["direct_first_delta"]["p50_ms"] < overhead["chain_first_delta"]["p50_ms"]
        )
    table = format_bench(results)
    assert "synthetic 300" in table and "overhead" in table and "QDRANT_URL" in table
    assert "while the search index was built" in table
    assert any("Synthetic store of 300 chunks" in message for message in said)


def test_ingest_bench_refuses_a_folder_that_is_not_kb(
    isolated_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from eval.bench_ingest import main

    assert main(["--dataset", str(SAMPLE), "--against", str(tmp_path)]) == 2
    assert "is not a checkout of kb" in capsys.readouterr().err


@pytest.mark.slow
def test_ingest_bench_runs_another_checkout_round_for_round(
    isolated_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from eval.bench_ingest import main

    figures = tmp_path / "figures.json"
    argv = ["--dataset", str(SAMPLE), "--against", str(ROOT), "--rounds", "2"]
    assert main([*argv, "--json", str(figures), "--store", str(tmp_path / "store")]) == 0
    results = json.loads(figures.read_text(encoding="utf-8"))
    other = results["against"]
    assert len(other["all_chunks_per_s"]) == 2 and other["chunks"] == results["chunks"]
    assert results["ingest_to_against_ratio"] == pytest.approx(
        results["ingest"]["chunks_per_s"] / other["chunks_per_s"], rel=0.01
    )
    assert "other checkout" in capsys.readouterr().out
