"""Evaluation: run `eval.answers.run_answers` (the code of `python -m eval answers`) on an eval
set, and show the tables and charts of the newest and earlier runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from ingest.estimate import counted
from rag.errors import KBError
from rag.settings import Settings
from ui.eval_charts import show_charts
from ui.eval_runs import EvalRun, find_runs, history_rows
from ui.models_choice import model_choices, model_label, no_model_message
from ui.plain import escape_markdown, message_markdown, show_error
from ui.resources import listed_models, models_reachable, page_start, ready_services

NO_JUDGE = "(no judge)"
DEFAULT_LIMIT = 5
# The summary's columns a reader looks at first, left, so they show without scrolling.
FIRST_FIGURES = (
    "model", "questions", "exact_match", "f1", "contains", "cited_rate", "citation_precision",
    "retrieval_hit_rate", "refusal_accuracy", "latency_p95_s", "mean_ttft_s", "errors",
)  # fmt: skip


def figure_names() -> dict[str, str]:
    """summary.csv's column -> its name in words (`exact_match` -> `Exact match`)."""
    from eval.report import ANSWER_COLUMNS, JUDGE_COLUMNS

    names = {column.key: column.title or column.header for column in ANSWER_COLUMNS}
    names |= {column.key: column.title or column.header for column in JUDGE_COLUMNS}
    return names | {"questions": "Questions", "model": "Model"}


def readable_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The summary's rows, the important columns first, every column named in words."""
    names = figure_names()
    shown = []
    for row in rows:
        ordered = {key: row[key] for key in FIRST_FIGURES if key in row} | row
        shown.append({names.get(key, key.replace("_", " ")): v for key, v in ordered.items()})
    return shown


def show_report_markdown(text: str) -> None:
    """report.md rendered, and still safe: its headings, lists and sentences as markdown
    whose every character but the code spans is escaped (the report quotes questions, which
    are document data), its tables as tables, its chart links left out (the charts are
    shown above)."""
    block: list[str] = []
    table: list[list[str]] = []

    def flush() -> None:
        if block:
            st.markdown("\n".join(block))
            block.clear()
        if table:
            header, *rows = table
            st.dataframe([dict(zip(header, row, strict=False)) for row in rows], hide_index=True)
            table.clear()

    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|"):
            if block:
                flush()
            cells = [c.strip().strip("`") for c in stripped.strip("|").split(" | ")]
            if not all(set(c) <= set("-: ") for c in cells):
                table.append(cells)
            continue
        if table:
            flush()
        if stripped.startswith("!["):
            continue
        heading = len(stripped) - len(stripped.lstrip("#"))
        if 0 < heading <= 6 and stripped[heading : heading + 1] == " ":
            flush()
            level = "#" * min(heading + 2, 6)  # under the page's own headings
            st.markdown(f"{level} {message_markdown(stripped[heading + 1 :])}")
        elif stripped.startswith("- "):
            block.append("- " + message_markdown(stripped[2:]))
        else:
            block.append(message_markdown(line) + ("  " if line else ""))
    flush()


def sample_set() -> Path:
    """The eval set shipped in the `eval` package (`eval/sample`)."""
    from importlib.util import find_spec

    spec = find_spec("eval")
    folders = list(spec.submodule_search_locations or []) if spec else []
    return Path(folders[0]) / "sample" if folders else Path("eval/sample")


def judge_label(option: str) -> str:
    return option if option == NO_JUDGE else model_label(option)


def eval_store_note(settings: Settings) -> str:
    """Where an evaluation puts its eval set's documents: never the knowledge base."""
    from eval.corpus import describe_eval_store

    where = escape_markdown(describe_eval_store(settings))
    return f"Evaluations ingest their eval set into {where}: your knowledge base is not changed."


def run_form(choices: list[str]) -> dict[str, Any] | None:
    with st.form("evaluate"):
        dataset = st.text_input("Eval set folder (docs/ and qa.jsonl)", str(sample_set()))
        models = st.multiselect("Models", choices, default=choices[:1], format_func=model_label)
        limit = st.number_input("Questions (0 = all)", min_value=0, value=DEFAULT_LIMIT, step=1)
        judge = st.selectbox("Judge model", [NO_JUDGE, *choices], format_func=judge_label)
        submitted = st.form_submit_button("Run evaluation")
    if not submitted:
        return None
    if not models:
        st.warning("Choose at least one model.")
        return None
    return {
        "dataset": Path(dataset.strip()).expanduser(),
        "models": models,
        "limit": int(limit) or None,
        "judge": None if judge == NO_JUDGE else judge,
    }


def run_evaluation(settings: Settings, request: dict[str, Any]) -> Path | None:
    from eval.answers import run_answers

    bar = st.progress(0.0, text="Ingesting the eval set…")

    def on_progress(done: int, total: int) -> None:
        bar.progress(min(1.0, done / total) if total else 1.0, text=f"{done} of {total} answers")

    def on_ingest(shown: str, files_done: int, chunks: int) -> None:
        done = f"{counted(files_done, 'file')} read, {counted(chunks, 'chunk')} written"
        bar.progress(0.0, text=f"Ingesting the eval set (only what changed): {done}")

    try:
        return run_answers(
            ready_services(settings),  # models and embedder; the store: the evaluation one
            request["dataset"],
            request["models"],
            request["limit"],
            request["judge"],
            None,  # the run's folder: under <data_dir>/eval-runs
            on_progress=on_progress,
            on_ingest=on_ingest,
            notify=lambda message: st.info(escape_markdown(message)),
        )
    except KBError as err:
        show_error(err)
        return None


def run_label(run: EvalRun) -> str:
    meta = run.meta()
    models = ", ".join(meta.get("models") or [])
    started = meta.get("started_at") or ""
    return " · ".join(part for part in (run.name, started, models) if part)


def show_run(run: EvalRun) -> None:
    summary = run.summary()
    if summary:
        st.dataframe(readable_summary(summary), hide_index=True)
    else:
        st.caption("This run has no summary.csv.")
    show_charts(summary)  # drawn from the figures: an image would be a password-free URL
    results = run.results()
    with st.expander(f"Per-question results ({len(results)})"):
        st.dataframe(results, hide_index=True)
    report = run.report()
    if report is not None:
        with st.expander("Report (report.md)"):
            show_report_markdown(report)


def show_runs(settings: Settings) -> None:
    runs = find_runs(settings.data_dir)
    if not runs:
        st.info(
            "No evaluation run yet. Run one above, or with "
            f"`python -m eval answers --dataset DIR --models A,B` "
            f"(runs are read from {escape_markdown(str(settings.data_dir / 'eval-runs'))})."
        )
        return
    labels = {run_label(run): run for run in runs}
    chosen = st.selectbox("Run (newest first)", list(labels))
    show_run(labels[chosen])
    if len(runs) > 1:
        st.subheader("All runs")
        st.dataframe(readable_summary(history_rows(runs)), hide_index=True)


def main() -> None:
    settings = page_start(needs_models=True)
    st.title("Evaluation")
    st.caption(eval_store_note(settings))
    if models_reachable(settings):
        listed = listed_models(settings)
        choices = model_choices(settings, listed)
        if not choices:
            st.info(no_model_message(settings, listed))
        request = run_form(choices) if choices else None
        if request is not None and run_evaluation(settings, request) is not None:
            st.success("The evaluation finished; its run is shown below.")
    else:
        st.info("Running an evaluation needs a model server; earlier runs are shown below.")
    st.subheader("Runs")
    show_runs(settings)


if __name__ == "__main__":
    main()
