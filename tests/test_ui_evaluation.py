"""The Evaluation page: earlier runs (tables and charts, newest first), and a run started from
the page through `eval.answers.run_answers` on a two-question eval set."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from tests.ui_helpers import (
    CORPUS,
    LIGHTHOUSE_Q,
    AppEnv,
    elements,
    new_app,
    no_exception,
    ollama_id,
    switch,
    write_corpus,
)


def plant_run(runs: Path, name: str, model: str, f1: str, finished: int) -> None:
    folder = runs / name
    folder.mkdir(parents=True)
    (folder / "summary.csv").write_text(f"model,token_f1\n{model},{f1}\n", encoding="utf-8")
    (folder / "results.jsonl").write_text(
        json.dumps({"model": model, "question": "q?", "answer": "![x](http://example.invalid/)"})
        + "\n",
        encoding="utf-8",
    )
    (folder / "report.md").write_text(f"# Run {name}\n", encoding="utf-8")
    Image.new("RGB", (4, 4)).save(folder / "metrics.png")
    for path in folder.iterdir():
        os.utime(path, (finished, finished))


def test_runs_are_shown_newest_first_with_tables_and_charts(ui_app_env: AppEnv) -> None:
    runs = ui_app_env.settings.data_dir / "eval-runs"
    plant_run(runs, "20250101-090000", "fake-mistral:7b", "0.41", 1_000)
    plant_run(runs, "20250102-090000", "fake-llama3:8b", "0.62", 2_000)
    app = switch(new_app(), "evaluation")
    no_exception(app)
    run_choice = app.selectbox[-1]
    assert run_choice.options == ["20250102-090000", "20250101-090000"]
    [summary, results, history] = [d.value for d in app.dataframe]
    assert summary.to_dict("records") == [{"model": "fake-llama3:8b", "token_f1": 0.62}]
    assert results["answer"].tolist() == ["![x](http://example.invalid/)"]  # a cell, as text
    assert history["run"].tolist() == ["20250102-090000", "20250101-090000"]
    assert [c.value.strip() for c in app.code] == ["# Run 20250102-090000"]
    assert len(elements(app, "image")) == 1  # the run's chart, a local file
    run_choice.set_value("20250101-090000").run()
    assert app.dataframe[0].value.to_dict("records")[0]["model"] == "fake-mistral:7b"


def test_an_evaluation_runs_from_the_page(ui_app_env: AppEnv, tmp_path: Path) -> None:
    pytest.importorskip("eval.answers")
    eval_set = tmp_path / "eval-set"
    write_corpus(eval_set / "docs", CORPUS)
    items = [
        {
            "id": "q1",
            "question": LIGHTHOUSE_Q,
            "answers": ["1871"],
            "doc": "harbour/lighthouse.md",
            "evidence": "The Tarnwick lighthouse was built in 1871",
        },
        {"id": "q2", "question": "What is the harbour master's name?", "answers": [],
         "doc": None, "unanswerable": True},
    ]  # fmt: skip
    (eval_set / "qa.jsonl").write_text("\n".join(json.dumps(i) for i in items) + "\n")
    app = switch(new_app(), "evaluation")
    [models] = app.multiselect
    assert models.value == [ollama_id("fake-llama3:8b")]  # KB_MODEL first, chosen
    assert models.options[:2] == ["fake-llama3:8b · ollama", "fake-mistral:7b · ollama"]
    assert app.selectbox[0].options[:2] == ["(no judge)", "fake-llama3:8b · ollama"]
    app.text_input[0].set_value(str(eval_set))
    app.button(key="FormSubmitter:evaluate-Run evaluation").click().run()
    no_exception(app)
    assert not app.error
    assert any("evaluation finished" in s.value for s in app.success)
    [run] = list((ui_app_env.settings.data_dir / "eval-runs").iterdir())
    assert (run / "summary.csv").is_file() and (run / "results.jsonl").is_file()
    assert app.selectbox[-1].value.startswith(run.name)
    summary = app.dataframe[0].value.to_dict("records")
    assert [row["model"] for row in summary] == [ollama_id("fake-llama3:8b")]
