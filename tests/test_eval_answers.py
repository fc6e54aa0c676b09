"""`eval.answers.run_answers` against the fake Ollama on the ingested sample set: the files of a
run, figures that trace back to the per-question records, skipped models, the judge."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from eval.answers import run_answers
from eval.dataset import load_eval_set
from eval.judge import MalformedVerdict, parse_verdict
from eval.metrics import QuestionRecord, retrieval_hit, summarize
from rag.errors import KBError
from rag.settings import Settings
from tests.fake_ollama import FakeOllama

SAMPLE = Path(__file__).resolve().parents[1] / "eval" / "sample"
MODELS = ["fake-llama3:8b", "fake-mistral:7b"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RECORD_KEYS = [f.name for f in fields(QuestionRecord)]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOllama]:
    with FakeOllama() as server:
        yield server


@pytest.fixture(scope="module")
def make_settings(
    fake: FakeOllama,
    eval_settings: Callable[..., Settings],
    eval_sample_store: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        return eval_settings(fake.url, tmp_path_factory.mktemp("data"), **overrides)

    return make


@pytest.fixture(scope="module")
def baseline(
    make_settings: Callable[..., Settings], embedder: Any, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Both fake models over all 30 sample questions, default settings."""
    out = tmp_path_factory.mktemp("baseline") / "run"
    return run_answers(make_settings(), SAMPLE, MODELS, out=out, embedder=embedder)


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def csv_rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return {row["model"]: row for row in csv.DictReader(handle)}


# -- the files of a run -------------------------------------------------------------------


def test_results_jsonl_holds_one_parsable_record_per_model_and_question(baseline: Path) -> None:
    rows = jsonl(baseline / "results.jsonl")
    ids = [item.id for item in load_eval_set(SAMPLE).items]
    for model in MODELS:
        assert [row["item_id"] for row in rows if row["model"] == model] == ids
    for row in rows:
        assert set(RECORD_KEYS) <= set(row)
        assert {"question", "citations", "passages", "prompt_cut", "judge", "error"} <= set(row)


def test_summary_csv_equals_the_summary_recomputed_from_results_jsonl(baseline: Path) -> None:
    rows = jsonl(baseline / "results.jsonl")
    recomputed = summarize(QuestionRecord(**{k: row[k] for k in RECORD_KEYS}) for row in rows)
    written = csv_rows(baseline / "summary.csv")
    assert list(written) == MODELS
    for model, summary in recomputed.items():
        for field in fields(summary):
            expected, cell = getattr(summary, field.name), written[model][field.name]
            if expected is None:
                assert cell == "", field.name
            elif isinstance(expected, str):
                assert cell == expected
            else:
                assert float(cell) == pytest.approx(expected), field.name


def test_answer_figures_trace_to_the_records_by_hand(baseline: Path) -> None:
    """F1 is the mean over answerable records; each record's hit is that of its passages."""
    rows = [row for row in jsonl(baseline / "results.jsonl") if row["model"] == MODELS[0]]
    answerable = [row for row in rows if not row["unanswerable"]]
    f1 = sum(row["f1"] for row in answerable) / len(answerable)
    assert float(csv_rows(baseline / "summary.csv")[MODELS[0]]["f1"]) == pytest.approx(f1)
    items = {item.id: item for item in load_eval_set(SAMPLE).items}
    for row in rows:
        texts = [passage["text"] for passage in row["passages"]]
        assert row["retrieval_hit"] == retrieval_hit(texts, items[row["item_id"]])


def test_charts_are_png_images(baseline: Path) -> None:
    import matplotlib.image

    for name in ("quality_vs_latency.png", "metrics.png"):
        path = baseline / name
        assert path.read_bytes()[:8] == PNG_MAGIC
        height, width = matplotlib.image.imread(path).shape[:2]
        assert height > 200 and width > 300


def test_report_md_shows_the_figures_and_links_the_charts(baseline: Path) -> None:
    report = (baseline / "report.md").read_text(encoding="utf-8")
    written = csv_rows(baseline / "summary.csv")
    for model in MODELS:
        assert f"`{model}`" in report
    f1_row = next(line for line in report.splitlines() if line.startswith("| F1 |"))
    assert f1_row == "| F1 | " + " | ".join(f"{float(written[m]['f1']):.3f}" for m in MODELS) + " |"
    assert "(quality_vs_latency.png)" in report and "(metrics.png)" in report
    meta = json.loads((baseline / "run.json").read_text(encoding="utf-8"))
    assert meta["models"] == MODELS and meta["skipped"] == [] and meta["finished_at"]


# -- answer metrics follow retrieval quality ------------------------------------------------


@pytest.mark.slow
def test_a_tiny_context_budget_gives_lower_answer_and_retrieval_scores(
    baseline: Path, make_settings: Callable[..., Settings], embedder: Any, tmp_path: Path
) -> None:
    starved = run_answers(
        make_settings(context_tokens=64), SAMPLE, MODELS[:1], out=tmp_path / "run",
        embedder=embedder,
    )  # fmt: skip
    good = csv_rows(baseline / "summary.csv")[MODELS[0]]
    bad = csv_rows(starved / "summary.csv")[MODELS[0]]
    for figure in ("retrieval_hit_rate", "f1", "contains"):
        assert float(bad[figure]) < float(good[figure]), figure


# -- models that are not there ------------------------------------------------------------


def test_a_missing_model_is_skipped_in_one_sentence_while_the_other_runs(
    make_settings: Callable[..., Settings], embedder: Any, tmp_path: Path
) -> None:
    said: list[str] = []
    out = run_answers(
        make_settings(), SAMPLE, ["fake-phi3:3.8b", "fake-mistral:7b"], limit=3,
        out=tmp_path / "run", embedder=embedder, notify=said.append,
    )  # fmt: skip
    assert len(said) == 1
    sentence = said[0]
    assert "fake-phi3:3.8b" in sentence and "not pulled" in sentence
    assert sentence.endswith(".") and ". " not in sentence and "\n" not in sentence
    assert {row["model"] for row in jsonl(out / "results.jsonl")} == {"fake-mistral:7b"}
    assert list(csv_rows(out / "summary.csv")) == ["fake-mistral:7b"]
    assert sentence in (out / "report.md").read_text(encoding="utf-8")


def test_no_model_available_is_one_sentence_and_writes_nothing(
    make_settings: Callable[..., Settings], embedder: Any, tmp_path: Path
) -> None:
    with pytest.raises(KBError, match=r"None of the models fake-phi3:3\.8b is pulled"):
        run_answers(make_settings(), SAMPLE, ["fake-phi3:3.8b"], out=tmp_path / "run",
                    embedder=embedder)  # fmt: skip
    assert not (tmp_path / "run").exists()


# -- the judge ------------------------------------------------------------------------------


def test_a_judge_that_always_answers_malformed_leaves_answers_unscored(
    fake: FakeOllama, make_settings: Callable[..., Settings], embedder: Any, tmp_path: Path
) -> None:
    fake.clear_log()
    out = run_answers(
        make_settings(), SAMPLE, MODELS[:1], limit=2, judge="fake-broken:1b",
        out=tmp_path / "run", embedder=embedder,
    )  # fmt: skip
    rows = jsonl(out / "results.jsonl")
    assert len(rows) == 2
    for row in rows:
        assert row["judge"]["correctness"] is None and row["judge"]["faithfulness"] is None
        assert "malformed" in row["judge"]["error"] and row["judge"]["attempts"] == 2
    judged = [r for r in fake.requests_to("/api/chat") if r.body["model"] == "fake-broken:1b"]
    assert len(judged) == 4  # asked twice per answer, then given up
    assert csv_rows(out / "summary.csv")[MODELS[0]]["judge_unscored"] == "2"


def test_a_working_judge_scores_with_a_schema_and_the_judges_window(
    fake: FakeOllama, make_settings: Callable[..., Settings], embedder: Any, tmp_path: Path
) -> None:
    fake.clear_log()
    out = run_answers(
        make_settings(), SAMPLE, MODELS[:1], limit=2, judge="fake-tiny:1b",
        out=tmp_path / "run", embedder=embedder,
    )  # fmt: skip
    for row in jsonl(out / "results.jsonl"):
        # the fake fills a schema's integers with 3
        assert (row["judge"]["correctness"], row["judge"]["faithfulness"]) == (3, 3)
    judged = [r for r in fake.requests_to("/api/chat") if r.body["model"] == "fake-tiny:1b"]
    assert len(judged) == 2
    for request in judged:
        assert request.body["stream"] is False
        assert request.body["format"]["required"][:2] == ["correctness", "faithfulness"]
        assert request.options["num_ctx"] == 2048  # fake-tiny's trained context
    summary = csv_rows(out / "summary.csv")[MODELS[0]]
    assert float(summary["judge_correctness"]) == 3.0 and summary["judge_unscored"] == "0"


def test_parse_verdict_reads_scores_and_rejects_malformed_replies() -> None:
    verdict = parse_verdict('{"correctness": 4, "faithfulness": 5.0, "reason": "ok"}')
    assert (verdict.correctness, verdict.faithfulness, verdict.reason) == (4, 5, "ok")
    assert parse_verdict('{"correctness": "2", "faithfulness": 1}').correctness == 2
    for reply in (
        'Sure! Here is the JSON you asked for:\n{"answer": "When',
        "[4, 5]",
        '{"correctness": 6, "faithfulness": 5}',
        '{"correctness": true, "faithfulness": 5}',
        '{"correctness": "high", "faithfulness": 5}',
        '{"faithfulness": 5}',
        "",
    ):
        with pytest.raises(MalformedVerdict):
            parse_verdict(reply)
