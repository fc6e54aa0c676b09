"""`eval.answers.run_answers` against the fake Ollama on the ingested sample set: the files of a
run, figures that trace back to the per-question records, model ids and skipped models, models
on several servers, runs written before model ids, the judge."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from eval.answers import run_answers, write_outputs
from eval.dataset import load_eval_set
from eval.fake_ollama import FakeOllama
from eval.judge import MalformedVerdict, parse_verdict
from eval.metrics import QuestionRecord, is_gold_passage, retrieval_hit, summarize
from eval.report import load_run
from rag.errors import KBError
from rag.service import Services, build_services
from rag.settings import Settings

SAMPLE = Path(__file__).resolve().parents[1] / "eval" / "sample"
MODELS = ["fake-llama3:8b", "fake-mistral:7b"]  # bare names, as a user may give them
IDS = [f"{model}@ollama" for model in MODELS]  # what the run records
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
def make_services(
    make_settings: Callable[..., Settings], embedder: Any
) -> Iterator[Callable[..., Services]]:
    """`make_services(**overrides)`: the composition root on the fake Ollama (the only model
    server) with the session's embedder; every one built is closed after the module."""
    built: list[Services] = []

    def make(**overrides: Any) -> Services:
        services = build_services(make_settings(**overrides), embedder=embedder)
        built.append(services)
        return services

    yield make
    for services in built:
        services.close()


@pytest.fixture(scope="module")
def baseline(
    make_services: Callable[..., Services], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Both fake models over all 30 sample questions, default settings."""
    out = tmp_path_factory.mktemp("baseline") / "run"
    return run_answers(make_services(), SAMPLE, MODELS, out=out)


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def csv_rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return {row["model"]: row for row in csv.DictReader(handle)}


# -- the files of a run -------------------------------------------------------------------


def test_results_jsonl_holds_one_parsable_record_per_model_and_question(baseline: Path) -> None:
    rows = jsonl(baseline / "results.jsonl")
    ids = [item.id for item in load_eval_set(SAMPLE).items]
    for model in IDS:
        assert [row["item_id"] for row in rows if row["model"] == model] == ids
    assert len(rows) == len(IDS) * len(ids)
    for row in rows:
        assert set(RECORD_KEYS) <= set(row)
        assert {"question", "citations", "passages", "prompt_cut", "judge", "error"} <= set(row)


def test_each_record_carries_the_chains_figures_from_the_server(baseline: Path) -> None:
    for row in jsonl(baseline / "results.jsonl"):
        assert row["server"] == "ollama"
        # the fake models' trained windows (131072, 32768) capped by KB_CONTEXT_CAP
        assert (row["window"], row["window_source"]) == (8192, "trained")
        assert row["counted_by"] == "server" and row["finish_reason"] == "stop"
        assert row["prompt_tokens"] > 0 and row["output_tokens"] == row["completion_tokens"] > 0
        assert row["prompt_cut"] is False and row["repacked"] is False
        assert row["truncated"] is False and row["error"] is None
        assert row["ttft_s"] is not None and row["ttft_s"] <= row["latency_s"]
        for old_key in ("num_ctx", "done_reason", "prompt_eval_count", "eval_count"):
            assert old_key not in row


def test_summary_csv_equals_the_summary_recomputed_from_results_jsonl(baseline: Path) -> None:
    rows = jsonl(baseline / "results.jsonl")
    recomputed = summarize(QuestionRecord(**{k: row[k] for k in RECORD_KEYS}) for row in rows)
    written = csv_rows(baseline / "summary.csv")
    assert list(written) == IDS
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
    rows = [row for row in jsonl(baseline / "results.jsonl") if row["model"] == IDS[0]]
    answerable = [row for row in rows if not row["unanswerable"]]
    f1 = sum(row["f1"] for row in answerable) / len(answerable)
    assert float(csv_rows(baseline / "summary.csv")[IDS[0]]["f1"]) == pytest.approx(f1)
    items = {item.id: item for item in load_eval_set(SAMPLE).items}
    for row in rows:
        texts = [passage["text"] for passage in row["passages"]]
        assert row["retrieval_hit"] == retrieval_hit(texts, items[row["item_id"]])


def test_citations_are_counted_by_kind_and_checked_against_the_gold_passage(
    baseline: Path,
) -> None:
    """The fake writes its `[n]`: every citation is written; a written citation is correct when
    its passage holds a reference answer and overlaps the evidence."""
    rows = [row for row in jsonl(baseline / "results.jsonl") if row["model"] == IDS[0]]
    items = {item.id: item for item in load_eval_set(SAMPLE).items}
    answerable = [row for row in rows if not row["unanswerable"]]
    written = correct = 0
    for row in answerable:
        assert all(c["kind"] == "written" for c in row["citations"]) and row["uncited"] == []
        for citation in row["citations"]:
            text = row["passages"][citation["n"] - 1]["text"]
            written += 1
            correct += is_gold_passage(text, items[row["item_id"]])
    summary = csv_rows(baseline / "summary.csv")[IDS[0]]
    assert written > 0 and float(summary["written_precision"]) == pytest.approx(correct / written)
    cited = sum(bool(row["citations"]) for row in answerable) / len(answerable)
    assert float(summary["written_rate"]) == float(summary["cited_rate"]) == pytest.approx(cited)
    assert float(summary["attributed_rate"]) == 0.0 and summary["attributed_precision"] == ""
    report = (baseline / "report.md").read_text(encoding="utf-8")
    for header in ("written prec", "attrib prec", "doc prec"):
        assert f"| {header} |" in report


def test_a_run_written_before_citation_kinds_keeps_its_document_precision(
    baseline: Path, tmp_path: Path
) -> None:
    old_run = tmp_path / "old"
    old_run.mkdir()
    new_keys = {
        "citation_doc_precision",
        "citations_written",
        "citations_written_correct",
        "citations_attributed",
        "citations_attributed_correct",
        "uncited_sentences",
        "citations_overruled",
    }
    lines = []
    for row in jsonl(baseline / "results.jsonl"):
        old = {k: v for k, v in row.items() if k not in new_keys}
        old["citation_precision"] = row["citation_doc_precision"]  # what it meant then
        lines.append(json.dumps(old))
    (old_run / "results.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (old_run / "run.json").write_text((baseline / "run.json").read_text(), encoding="utf-8")

    write_outputs(old_run)
    now, before = load_run(baseline).figures[IDS[0]], load_run(old_run).figures[IDS[0]]
    assert before.summary.citation_doc_precision == now.summary.citation_doc_precision
    assert before.summary.citation_precision is None  # not measured then
    assert before.summary.written_precision is None


def test_charts_are_png_images(baseline: Path) -> None:
    import matplotlib.image

    for name in ("quality_vs_latency.png", "metrics.png"):
        path = baseline / name
        assert path.read_bytes()[:8] == PNG_MAGIC
        height, width = matplotlib.image.imread(path).shape[:2]
        assert height > 200 and width > 300


def test_report_md_shows_the_figures_and_links_the_charts(baseline: Path, fake: FakeOllama) -> None:
    report = (baseline / "report.md").read_text(encoding="utf-8")
    written = csv_rows(baseline / "summary.csv")
    for model in IDS:
        assert f"`{model}`" in report
    f1_row = next(line for line in report.splitlines() if line.startswith("| F1 |"))
    assert f1_row == "| F1 | " + " | ".join(f"{float(written[m]['f1']):.3f}" for m in IDS) + " |"
    assert "(quality_vs_latency.png)" in report and "(metrics.png)" in report
    assert f"- model servers: Ollama at {fake.url}" in report
    meta = json.loads((baseline / "run.json").read_text(encoding="utf-8"))
    assert meta["models"] == IDS and meta["skipped"] == [] and meta["finished_at"]
    assert meta["servers"] == f"Ollama at {fake.url}"


def test_a_run_written_before_model_ids_still_loads_and_reports(
    baseline: Path, tmp_path: Path
) -> None:
    """Bare model names and Ollama's keys (num_ctx, done_reason), no window/counted_by/repacked:
    the figures are the same as those of the same records under ids."""
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    bare = dict(zip(IDS, MODELS, strict=True))
    new_keys = ("server", "window", "window_source", "output_tokens", "counted_by", "prompt_ms",
                "finish_reason", "repacked", "notice")  # fmt: skip
    lines = []
    for row in jsonl(baseline / "results.jsonl"):
        old = {k: v for k, v in row.items() if k not in new_keys}
        old.update(model=bare[row["model"]], num_ctx=row["window"], done_reason="stop")
        lines.append(json.dumps(old))
    (legacy / "results.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    meta = json.loads((baseline / "run.json").read_text(encoding="utf-8"))
    meta = {k: v for k, v in meta.items() if k != "servers"} | {"models": MODELS}
    (legacy / "run.json").write_text(json.dumps(meta), encoding="utf-8")

    write_outputs(legacy)
    now, before = load_run(baseline), load_run(legacy)
    assert list(before.figures) == MODELS
    for model_id, name in bare.items():
        assert before.figures[name].row() == now.figures[model_id].row() | {"model": name}
    assert before.figures[MODELS[0]].repacked == 0
    assert list(csv_rows(legacy / "summary.csv")) == MODELS
    report = (legacy / "report.md").read_text(encoding="utf-8")
    assert f"`{MODELS[0]}`" in report and "model servers" not in report


# -- answer metrics follow retrieval quality ------------------------------------------------


@pytest.mark.slow
def test_a_tiny_context_budget_gives_lower_answer_and_retrieval_scores(
    baseline: Path, make_services: Callable[..., Services], tmp_path: Path
) -> None:
    starved = run_answers(
        make_services(context_tokens=64), SAMPLE, MODELS[:1], out=tmp_path / "run"
    )
    good = csv_rows(baseline / "summary.csv")[IDS[0]]
    bad = csv_rows(starved / "summary.csv")[IDS[0]]
    for figure in ("retrieval_hit_rate", "f1", "contains"):
        assert float(bad[figure]) < float(good[figure]), figure


def test_a_budget_sweep_runs_each_budget_as_a_lane_with_questions_interleaved(
    make_services: Callable[..., Services], tmp_path: Path
) -> None:
    services = make_services(first_token_target_s=0.001)  # would cap every lane if left on
    out = run_answers(
        services, SAMPLE, MODELS[:1], limit=4, out=tmp_path / "run", budgets=[120, None]
    )
    rows = jsonl(out / "results.jsonl")
    small, whole = f"{IDS[0]} · 120 tokens", f"{IDS[0]} · whole window"
    assert [row["model"] for row in rows] == [small, whole] * 4
    assert {row["model_id"] for row in rows} == {IDS[0]}
    assert [row["item_id"] for row in rows][::2] == [row["item_id"] for row in rows][1::2]
    by_lane = {lane: [r for r in rows if r["model"] == lane] for lane in (small, whole)}
    assert all(r["context_tokens"] <= 120 for r in by_lane[small])
    assert all(r["notice"] is None or "KB_FIRST_TOKEN_TARGET_S" not in r["notice"] for r in rows)
    assert sum(r["context_tokens"] for r in by_lane[whole]) > 4 * 120
    assert list(csv_rows(out / "summary.csv")) == [small, whole]
    meta = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert meta["budgets"] == ["120 tokens", "whole window"]


# -- models that are not there ------------------------------------------------------------


def one_sentence(text: str) -> None:
    assert text.endswith(".") and ". " not in text and "\n" not in text, text


def test_a_missing_model_is_skipped_in_one_sentence_naming_the_server(
    make_services: Callable[..., Services], fake: FakeOllama, tmp_path: Path
) -> None:
    said: list[str] = []
    out = run_answers(
        make_services(), SAMPLE, ["fake-phi3:3.8b", "fake-mistral:7b"], limit=3,
        out=tmp_path / "run", notify=said.append,
    )  # fmt: skip
    assert len(said) == 1
    sentence = said[0]
    assert sentence == (
        f"Model fake-phi3:3.8b is on none of the model servers (Ollama at {fake.url}), so it "
        "was skipped; pull it or start the server that has it."
    )
    one_sentence(sentence)
    assert {row["model"] for row in jsonl(out / "results.jsonl")} == {"fake-mistral:7b@ollama"}
    assert list(csv_rows(out / "summary.csv")) == ["fake-mistral:7b@ollama"]
    assert sentence in (out / "report.md").read_text(encoding="utf-8")
    meta = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert meta["skipped"] == [{"model": "fake-phi3:3.8b", "reason": sentence}]


def test_a_model_id_naming_a_server_that_lacks_it_names_that_server(
    make_services: Callable[..., Services], fake: FakeOllama, tmp_path: Path
) -> None:
    said: list[str] = []
    run_answers(
        make_services(), SAMPLE, ["fake-phi3:3.8b@ollama", "fake-mistral:7b@ollama"], limit=1,
        out=tmp_path / "run", notify=said.append,
    )  # fmt: skip
    assert said == [
        f"Model fake-phi3:3.8b@ollama is not on Ollama at {fake.url}, so it was skipped; pull "
        "it or start the server that has it."
    ]


def test_no_model_available_is_one_sentence_and_writes_nothing(
    make_services: Callable[..., Services], fake: FakeOllama, tmp_path: Path
) -> None:
    with pytest.raises(KBError) as raised:
        run_answers(make_services(), SAMPLE, ["fake-phi3:3.8b"], out=tmp_path / "run")
    assert str(raised.value) == (
        f"None of the models fake-phi3:3.8b is on a model server that answers (Ollama at "
        f"{fake.url}); pull one or start the server that has it."
    )
    assert not (tmp_path / "run").exists()


def test_no_server_answering_is_one_sentence_and_writes_nothing(
    make_settings: Callable[..., Settings], embedder: Any, tmp_path: Path
) -> None:
    from eval.fake_ollama import unused_loopback_url

    settings = make_settings(ollama_host=unused_loopback_url())
    with build_services(settings, embedder=embedder) as services, pytest.raises(KBError) as err:
        run_answers(services, SAMPLE, MODELS, out=tmp_path / "run")
    one_sentence(str(err.value))
    assert settings.ollama_host in str(err.value)
    assert not (tmp_path / "run").exists()


# -- models on several servers ----------------------------------------------------------------


def test_models_on_two_servers_run_under_their_ids_and_a_bare_name_finds_its_server(
    make_settings: Callable[..., Settings],
    services_factory: Callable[[Settings], Services],
    fake_model: Any,
    fake: FakeOllama,
    tmp_path: Path,
) -> None:
    """The fake Ollama (HTTP) and the in-process fake server `fake` behind one hub."""
    services = services_factory(make_settings())
    said: list[str] = []
    wanted = ["fake-echo", "fake-mistral:7b", "fake-mistral:7b@ollama", "fake-phi3:3.8b"]
    out = run_answers(services, SAMPLE, wanted, limit=2, out=tmp_path / "run", notify=said.append)
    rows = jsonl(out / "results.jsonl")
    assert [row["model"] for row in rows] == ["fake-echo@fake", "fake-mistral:7b@ollama"] * 2
    assert [row["server"] for row in rows] == ["fake", "ollama"] * 2
    asked = [call for call in fake_model.calls if call.schema is None]
    assert [call.model for call in asked] == ["fake-echo", "fake-echo"]
    assert {call.window for call in asked} == {8192}  # fake-echo's stated window
    meta = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert meta["models"] == ["fake-echo@fake", "fake-mistral:7b@ollama"]
    assert meta["servers"] == services.models.describe()
    [sentence] = said
    one_sentence(sentence)
    assert sentence.startswith("Model fake-phi3:3.8b is on none of the model servers (")
    assert f"Ollama at {fake.url}" in sentence and fake_model.describe() in sentence


@pytest.mark.parametrize(
    ("break_server", "expected"),
    [
        (
            lambda backend: setattr(backend, "reachable", False),
            "The server of model fake-echo@fake does not answer, so its remaining questions "
            "were skipped; start it or check its address in the settings.",
        ),
        (
            lambda backend: backend.models.pop("fake-echo"),
            "Model fake-echo@fake is not on the fake model server fake (in-process, for tests), "
            "so its remaining questions were skipped; pull it or start the server that has it.",
        ),
    ],
    ids=["server-down", "model-removed"],
)
def test_a_model_lost_midway_is_skipped_in_one_sentence_and_the_others_run(
    make_settings: Callable[..., Settings],
    services_factory: Callable[[Settings], Services],
    fake_model: Any,
    tmp_path: Path,
    break_server: Callable[[Any], None],
    expected: str,
) -> None:
    services = services_factory(make_settings())
    said: list[str] = []
    progress: list[tuple[int, int]] = []

    def on_progress(done: int, total: int) -> None:
        progress.append((done, total))
        if done == 1:  # after the first answer of fake-echo
            break_server(fake_model)

    out = run_answers(
        services, SAMPLE, ["fake-echo@fake", "fake-mistral:7b"], limit=3, out=tmp_path / "run",
        on_progress=on_progress, notify=said.append,
    )  # fmt: skip
    assert said == [expected]
    rows = jsonl(out / "results.jsonl")
    # questions interleaved: each asked of every model before the next
    assert [row["model"] for row in rows] == ["fake-echo@fake"] + ["fake-mistral:7b@ollama"] * 3
    assert [row["item_id"] for row in rows][:2] == [rows[0]["item_id"]] * 2
    assert progress == [(1, 6), (2, 6), (4, 6), (5, 6), (6, 6)]
    meta = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert meta["skipped"] == [{"model": "fake-echo@fake", "reason": expected}]
    assert meta["finished_at"] and expected in (out / "report.md").read_text(encoding="utf-8")


def test_a_judge_on_another_server_judges_with_its_own_window(
    make_settings: Callable[..., Settings],
    services_factory: Callable[[Settings], Services],
    fake_model: Any,
    tmp_path: Path,
) -> None:
    services = services_factory(make_settings())
    out = run_answers(
        services, SAMPLE, MODELS[:1], limit=2, judge="fake-small", out=tmp_path / "run"
    )
    judged = [call for call in fake_model.calls if call.schema is not None]
    assert [(call.model, call.window) for call in judged] == [("fake-small", 1024)] * 2
    assert all(call.schema["required"][:2] == ["correctness", "faithfulness"] for call in judged)
    for row in jsonl(out / "results.jsonl"):
        assert (row["judge"]["correctness"], row["judge"]["faithfulness"]) == (3, 3)
    meta = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert meta["judge"] == "fake-small@fake"


# -- the judge ------------------------------------------------------------------------------


def test_a_judge_that_always_answers_malformed_leaves_answers_unscored(
    fake: FakeOllama, make_services: Callable[..., Services], tmp_path: Path
) -> None:
    fake.clear_log()
    out = run_answers(
        make_services(), SAMPLE, MODELS[:1], limit=2, judge="fake-broken:1b",
        out=tmp_path / "run",
    )  # fmt: skip
    rows = jsonl(out / "results.jsonl")
    assert len(rows) == 2
    for row in rows:
        assert row["judge"]["correctness"] is None and row["judge"]["faithfulness"] is None
        assert "malformed" in row["judge"]["error"] and row["judge"]["attempts"] == 2
    judged = [r for r in fake.requests_to("/api/chat") if r.body["model"] == "fake-broken:1b"]
    assert len(judged) == 4  # asked twice per answer, then given up
    assert csv_rows(out / "summary.csv")[IDS[0]]["judge_unscored"] == "2"


def test_a_missing_judge_is_one_sentence_and_the_answers_go_unjudged(
    fake: FakeOllama, make_services: Callable[..., Services], tmp_path: Path
) -> None:
    said: list[str] = []
    out = run_answers(
        make_services(), SAMPLE, MODELS[:1], limit=1, judge="fake-phi3:3.8b",
        out=tmp_path / "run", notify=said.append,
    )  # fmt: skip
    assert said == [
        f"The judge model fake-phi3:3.8b is on none of the model servers (Ollama at {fake.url}), "
        "so answers are not judged; pull it or start the server that has it."
    ]
    assert [row["judge"] for row in jsonl(out / "results.jsonl")] == [None]
    assert json.loads((out / "run.json").read_text(encoding="utf-8"))["judge"] is None


def test_a_working_judge_scores_with_a_schema_and_the_judges_window(
    fake: FakeOllama, make_services: Callable[..., Services], tmp_path: Path
) -> None:
    fake.clear_log()
    out = run_answers(
        make_services(), SAMPLE, MODELS[:1], limit=2, judge="fake-tiny:1b",
        out=tmp_path / "run",
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
        assert request.options["temperature"] == 0
    summary = csv_rows(out / "summary.csv")[IDS[0]]
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
