"""The output of an answers run, and every table shown on the terminal.

An answers run folder holds:

- `results.jsonl`: one JSON object per model and question (the `QuestionRecord` fields of
  `eval.metrics`, plus the chain's figures, the passages and the judge's scores); `model` is
  the model id (`name@server`), or a bare name in runs written before servers had names;
- `run.json`: what was run (dataset, models, servers, skipped models and why, judge,
  settings);
- `summary.csv`: one row per model, computed from `results.jsonl` by `summarize_run`;
- `report.md` and the PNG charts (`eval/charts.py`).

Every figure of `summary.csv`, `report.md` and the charts is computed from the records read
back from `results.jsonl`, so each can be traced to per-question records.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from eval.metrics import ModelSummary, QuestionRecord, summarize
from rag.errors import KBError

RESULTS_FILE = "results.jsonl"
RUN_FILE = "run.json"
SUMMARY_FILE = "summary.csv"
REPORT_FILE = "report.md"
RECORD_KEYS = tuple(f.name for f in fields(QuestionRecord))


# -- reading a run back --------------------------------------------------------------------


@dataclass(frozen=True)
class ModelFigures:
    """A model's `ModelSummary` and the figures beyond it, all from its records."""

    summary: ModelSummary
    errors: int  # questions the chain could not answer (timeout, broken stream)
    prompt_cut: int  # prompts Ollama cut silently (the chain's `truncated`)
    repacked: int  # prompts a server rejected as too long, sent again with fewer passages
    judge_correctness: float | None
    judge_faithfulness: float | None
    judge_unscored: int | None  # None when no judge ran

    def row(self) -> dict[str, Any]:
        extra = {k: v for k, v in asdict(self).items() if k != "summary"}
        return {**asdict(self.summary), **extra}


@dataclass(frozen=True)
class Run:
    folder: Path
    meta: dict[str, Any]
    rows: list[dict[str, Any]]  # results.jsonl, as read
    figures: dict[str, ModelFigures]


def read_results(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                rows.append(json.loads(line))
    return rows


def question_record(row: dict[str, Any]) -> QuestionRecord:
    """The record of a row. Rows written before citations were written or attributed lack the
    later keys (their defaults stand) and their `citation_precision` was the document check."""
    if "citations_written" not in row:
        row = {**row, "citation_doc_precision": row.get("citation_precision")}
        row["citation_precision"] = None
    return QuestionRecord(**{key: row[key] for key in RECORD_KEYS if key in row})


def summarize_run(rows: Sequence[dict[str, Any]], judged: bool) -> dict[str, ModelFigures]:
    """Per-model figures from the records of results.jsonl."""
    summaries = summarize(question_record(row) for row in rows)
    figures = {}
    for model, summary in summaries.items():
        mine = [row for row in rows if row["model"] == model]
        figures[model] = ModelFigures(
            summary=summary,
            errors=sum(row.get("error") is not None for row in mine),
            prompt_cut=sum(bool(row.get("prompt_cut")) for row in mine),
            repacked=sum(bool(row.get("repacked")) for row in mine),  # absent in older runs
            judge_correctness=_judge_mean(mine, "correctness") if judged else None,
            judge_faithfulness=_judge_mean(mine, "faithfulness") if judged else None,
            judge_unscored=_unscored(mine) if judged else None,
        )
    return figures


def _judge_mean(rows: Iterable[dict[str, Any]], key: str) -> float | None:
    scores = [row["judge"][key] for row in rows if (row.get("judge") or {}).get(key) is not None]
    return sum(scores) / len(scores) if scores else None


def _unscored(rows: Iterable[dict[str, Any]]) -> int:
    return sum((row.get("judge") or {}).get("correctness") is None for row in rows)


def load_run(folder: Path) -> Run:
    """Read an answers run folder and recompute its figures from results.jsonl."""
    try:
        meta = json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
        rows = read_results(folder / RESULTS_FILE)
    except (OSError, ValueError) as err:
        raise KBError(f"The folder {folder} does not hold a readable eval run ({err}).") from None
    return Run(folder, meta, rows, summarize_run(rows, judged=bool(meta.get("judge"))))


# -- writing ---------------------------------------------------------------------------------


def write_summary_csv(path: Path, figures: dict[str, ModelFigures]) -> None:
    rows = [f.row() for f in figures.values()]
    if not rows:
        path.write_text("", encoding="utf-8")
        return
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})


# -- tables ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One figure of a model: its short table header, and its chart title when it is charted."""

    header: str
    key: str
    kind: str  # "share" (0-1), "seconds", "number", "count", "score" (1-5)
    title: str | None = None


ANSWER_COLUMNS = (
    Column("EM", "exact_match", "share", "Exact match"),
    Column("F1", "f1", "share", "Token F1"),
    Column("contains", "contains", "share", "Contains the answer"),
    Column("cited", "cited_rate", "share", "Answers with a citation"),
    Column("written", "written_rate", "share", "Answers with a citation the model wrote"),
    Column("attributed", "attributed_rate", "share", "Answers with a citation kb attributed"),
    Column("cite prec", "citation_precision", "share", "Citation precision (gold passage)"),
    Column("written prec", "written_precision", "share", "Written citations: precision"),
    Column("attrib prec", "attributed_precision", "share", "Attributed citations: precision"),
    Column("doc prec", "citation_doc_precision", "share", "Citation precision (document)"),
    Column("uncited", "uncited_answers", "count"),
    Column("uncited sent", "uncited_sentences", "count"),
    Column("overruled", "overruled", "count"),
    Column("refusal acc", "refusal_accuracy", "share", "Refusal accuracy"),
    Column("hit rate", "retrieval_hit_rate", "share", "Retrieval hit rate"),
    Column("p50 s", "latency_p50_s", "seconds", "Latency p50 (s)"),
    Column("p95 s", "latency_p95_s", "seconds", "Latency p95 (s)"),
    Column("TTFT p50 s", "ttft_p50_s", "seconds", "Time to first token, median (s)"),
    Column("TTFT mean s", "mean_ttft_s", "seconds", "Time to first token, mean (s)"),
    Column("tok/s", "tokens_per_s", "number", "Tokens per second"),
    Column("prompt tok", "mean_prompt_tokens", "number", "Prompt tokens (mean)"),
    Column("truncated", "truncated", "count"),
    Column("prompt cut", "prompt_cut", "count"),
    Column("repacked", "repacked", "count"),
    Column("errors", "errors", "count"),
)
JUDGE_COLUMNS = (
    Column("judge correct", "judge_correctness", "score", "Judge: correctness (1-5)"),
    Column("judge faithful", "judge_faithfulness", "score", "Judge: faithfulness (1-5)"),
    Column("unscored", "judge_unscored", "count"),
)


def shown(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "share":
        return f"{value:.3f}"
    if kind == "seconds":
        return f"{value:.3f}" if value < 10 else f"{value:.1f}"
    if kind in ("number", "score"):
        return f"{value:,.1f}"
    return f"{value:,}"


def answer_columns(judged: bool) -> tuple[Column, ...]:
    return (Column("questions", "questions", "count"), *ANSWER_COLUMNS) + (
        JUDGE_COLUMNS if judged else ()
    )


def figures_table(run: Run) -> tuple[list[str], list[list[str]]]:
    """The header (`figure`, then one column per model) and one row per figure: read down a
    column for a model, across a row to compare the models on one figure."""
    rows = {model: figures.row() for model, figures in run.figures.items()}
    header = ["figure", *rows]
    table = [
        [column.header, *(shown(row[column.key], column.kind) for row in rows.values())]
        for column in answer_columns(bool(run.meta.get("judge")))
    ]
    return header, table


def print_answers_table(run: Run) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    header, rows = figures_table(run)
    table = Table(title=f"Answers: {run.meta.get('dataset', '')}", title_justify="left")
    table.add_column(header[0], no_wrap=True)
    for model in header[1:]:
        table.add_column(escape(model), justify="right")
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    Console().print(table)


def print_retrieval_table(reports: Sequence[Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Retrieval (packed context, no model)", title_justify="left")
    for header in ("budget", "hit rate", "MRR", "context tokens", "context chars", "n"):
        table.add_column(header, justify="right")
    for report in reports:
        table.add_row(
            f"{report.budget:,}",
            shown(report.hit_rate, "share"),
            shown(report.mrr, "share"),
            shown(report.mean_context_tokens, "number"),
            shown(report.mean_context_chars, "number"),
            f"{len(report.answerable)}/{len(report.records)}",
        )
    Console().print(table)
