"""The Evaluation page: earlier runs (tables and charts, newest first), and a run started from
the page through `eval.answers.run_answers` on a two-question eval set."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from eval.corpus import eval_store_settings
from rag.settings import Settings
from rag.store import open_store
from tests.ui_helpers import (
    CORPUS,
    IMAGE_MD,
    LIGHTHOUSE_Q,
    AppEnv,
    all_text,
    elements,
    new_app,
    no_exception,
    ollama_id,
    page_text,
    switch,
    walk,
    write_corpus,
)
from ui.eval_charts import SCATTER_TITLE, SHARE_CHART_TITLE


def documents(settings: Settings) -> list[str]:
    with open_store(settings) as store:
        return sorted(record.abs_path for record in store.documents())


def plant_run(runs: Path, name: str, model: str, f1: str, finished: int) -> None:
    folder = runs / name
    folder.mkdir(parents=True)
    summary = f"model,f1,latency_p50_s\n{model},{f1},1.5\n"
    (folder / "summary.csv").write_text(summary, encoding="utf-8")
    (folder / "results.jsonl").write_text(
        json.dumps({"model": model, "question": "q?", "answer": "![x](http://example.invalid/)"})
        + "\n",
        encoding="utf-8",
    )
    report = f"# Run {name}\n\n- models: `{model}`\n\n| figure | `{model}` |\n| --- | ---: |\n"
    report += f"| F1 | {f1} |\n\n![metrics](metrics.png)\n\n- `q1` {IMAGE_MD} (retrieved: no)\n"
    (folder / "report.md").write_text(report, encoding="utf-8")
    Image.new("RGB", (4, 4)).save(folder / "metrics.png")
    for path in folder.iterdir():
        os.utime(path, (finished, finished))


def vega_charts(app: AppTest) -> list[tuple[str, list[dict[str, Any]]]]:
    """Each Vega-Lite chart on the page: its title and the rows it draws (sent as Arrow)."""
    import pyarrow as pa

    charts = []
    for node in walk(app._tree):
        if getattr(node, "type", None) == "vega_lite_chart":
            rows = pa.ipc.open_stream(node.proto.data.data).read_pandas().to_dict("records")
            charts.append((json.loads(node.proto.spec)["description"], rows))
    return charts


def test_runs_are_shown_newest_first_with_tables_and_charts(ui_app_env: AppEnv) -> None:
    runs = ui_app_env.settings.data_dir / "eval-runs"
    plant_run(runs, "20250101-090000", "fake-mistral:7b", "0.41", 1_000)
    plant_run(runs, "20250102-090000", "fake-llama3:8b", "0.62", 2_000)
    app = switch(new_app(), "evaluation")
    no_exception(app)
    run_choice = app.selectbox[-1]
    assert run_choice.options == ["20250102-090000", "20250101-090000"]
    [summary, results, report_table, history] = [d.value for d in app.dataframe]
    assert summary.to_dict("records") == [
        {"Model": "fake-llama3:8b", "Token F1": 0.62, "Latency p50 (s)": 1.5}
    ]
    assert results["answer"].tolist() == ["![x](http://example.invalid/)"]  # a cell, as text
    assert history["run"].tolist() == ["20250102-090000", "20250101-090000"]
    # report.md rendered: its heading and list as markdown, its table as a table, the
    # question it quotes as text
    text = all_text(app)
    assert "### Run 20250102\\-090000" in text and "- models\\: `fake-llama3:8b`" in text
    assert report_table.to_dict("records") == [{"figure": "F1", "fake-llama3:8b": "0.62"}]
    assert IMAGE_MD not in text and "!\\[x\\]" in text
    assert not app.code
    # the run's PNG stays in its folder: an image would be served at a password-free URL
    assert not elements(app, "image")
    assert vega_charts(app) == [
        (SCATTER_TITLE, [{"model": "fake-llama3:8b", "f1": 0.62, "latency_s": 1.5}]),
        (SHARE_CHART_TITLE, [{"model": "fake-llama3:8b", "figure": "Token F1", "value": 0.62}]),
    ]
    run_choice.set_value("20250101-090000").run()
    assert app.dataframe[0].value.to_dict("records")[0]["Model"] == "fake-mistral:7b"


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
    knowledge_base = documents(ui_app_env.settings)
    app = switch(new_app(), "evaluation")
    evaluation = eval_store_settings(ui_app_env.settings)
    assert str(evaluation.qdrant_path) in page_text(app)  # the page says where
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
    assert [row["Model"] for row in summary] == [ollama_id("fake-llama3:8b")]
    assert list(summary[0])[:4] == ["Model", "Questions", "Exact match", "Token F1"]
    assert vega_charts(app) and not elements(app, "image")  # charts drawn, not served
    assert documents(ui_app_env.settings) == knowledge_base  # the knowledge base: as it was
    eval_docs = documents(evaluation)  # the eval set went into the evaluation store
    assert eval_docs == sorted(str((eval_set / "docs" / rel).resolve()) for rel in CORPUS)
