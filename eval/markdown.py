"""`report.md` of an answers run: what was run, the figures per model, the charts, the misses.

Everything here is read from the run folder (`eval.report.load_run`): the figures come from
`results.jsonl`, the description from `run.json`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eval.report import (
    REPORT_FILE,
    RESULTS_FILE,
    SUMMARY_FILE,
    Run,
    figures_table,
)

MAX_MISSES = 15


def write_report(run: Run, charts: Sequence[Path]) -> Path:
    parts = [
        _heading(run),
        _skipped(run),
        _figures(run),
        _charts(charts),
        _misses(run),
        _files(),
    ]
    path = run.folder / REPORT_FILE
    path.write_text("\n\n".join(p for p in parts if p) + "\n", encoding="utf-8")
    return path


def _heading(run: Run) -> str:
    meta = run.meta
    retrieval = meta.get("retrieval", {})
    settings = meta.get("settings", {})
    budget = settings.get("context_tokens") or "sized to each model's window"
    scope = "the whole store" if meta.get("whole_store") else "the eval set's documents only"
    lines = [
        f"# Eval run {run.folder.name}",
        "",
        f"- dataset: `{meta.get('dataset')}`, {meta.get('questions')} questions "
        f"({meta.get('answerable')} answerable)",
        f"- models: {', '.join(meta.get('models', [])) or 'none'}",
        f"- judge: {meta.get('judge') or 'none'}",
        *([f"- model servers: {meta['servers']}"] if meta.get("servers") else []),
        f"- started {meta.get('started_at')}, finished {meta.get('finished_at') or 'not finished'}",
        f"- retrieval: prefetch {retrieval.get('prefetch')}, candidates "
        f"{retrieval.get('candidates')}, searching {scope}; context budget: {budget}; chunks "
        f"of {settings.get('chunk_size')} tokens ({settings.get('embed_model')})",
    ]
    return "\n".join(lines)


def _skipped(run: Run) -> str:
    notes = [s["reason"] for s in run.meta.get("skipped", [])]
    return "\n".join(["## Skipped", "", *(f"- {note}" for note in notes)]) if notes else ""


def _figures(run: Run) -> str:
    header, rows = figures_table(run)
    table = [_md_row([header[0], *(f"`{m}`" for m in header[1:])])]
    table += [_md_row(["---"] + ["---:"] * (len(header) - 1))]
    table += [_md_row(row) for row in rows]
    return "\n".join(
        [
            "## Figures",
            "",
            *table,
            "",
            "EM, F1, contains, the citation figures and hit rate are over answerable "
            "questions; refusal accuracy, latency and time to first token over all. *written* "
            "citations are the `[n]` the model wrote, *attributed* ones kb added to sentences "
            "the model left uncited or cited with a number whose passage does not back them "
            "(*overruled* counts those numbers; `rag/citations.py`); a citation is precise "
            "when its passage "
            "holds a reference answer and overlaps the gold evidence, *doc prec* checks only "
            "the document. How each is computed: "
            "`eval/README.md`, section Metrics. Every figure is recomputed from "
            f"`{RESULTS_FILE}` (one record per model and question).",
        ]
    )


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _charts(charts: Sequence[Path]) -> str:
    if not charts:
        return ""
    images = [f"![{path.stem.replace('_', ' ')}]({path.name})" for path in charts]
    return "\n\n".join(["## Charts", *images])


def _misses(run: Run) -> str:
    """Answerable questions that no model answered (the reference is in no answer)."""
    by_question: dict[str, list[dict[str, Any]]] = {}
    for row in run.rows:
        if not row["unanswerable"]:
            by_question.setdefault(row["item_id"], []).append(row)
    missed = [rows for rows in by_question.values() if not any(r["contains"] for r in rows)]
    if not missed:
        return ""
    lines = [
        "## Answerable questions no model answered",
        "",
        f"{len(missed)} question(s); `retrieved` says whether a gold passage was in the context.",
        "",
    ]
    for rows in missed[:MAX_MISSES]:
        first = rows[0]
        hit = "yes" if any(r["retrieval_hit"] for r in rows) else "no"
        lines.append(f"- `{first['item_id']}` {first['question']} (retrieved: {hit})")
    if len(missed) > MAX_MISSES:
        lines.append(f"- … and {len(missed) - MAX_MISSES} more in `{RESULTS_FILE}`")
    return "\n".join(lines)


def _files() -> str:
    return "\n".join(
        [
            "## Files",
            "",
            f"- `{RESULTS_FILE}`: one JSON record per model and question (answer, scores, "
            "citations, passages, timings, judge)",
            f"- `{SUMMARY_FILE}`: the figures above, one row per model, full precision",
            "- `run.json`: what was run and with which settings",
        ]
    )
