"""Evaluation runs as `python -m eval answers` writes them: one folder per run under
`<data_dir>/eval-runs`, holding `summary.csv`, `report.md`, `results.jsonl`, `run.json` and
`*.png` charts (for report.md; the page draws its own from the summary, see `ui/eval_charts.py`).
Read here as plain files, so the page shows whatever a run left."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUMMARY = "summary.csv"
RESULTS = "results.jsonl"
REPORT = "report.md"
META = "run.json"


def runs_dir(data_dir: Path) -> Path:
    return data_dir / "eval-runs"


@dataclass(frozen=True)
class EvalRun:
    folder: Path

    @property
    def name(self) -> str:
        return self.folder.name

    def meta(self) -> dict[str, Any]:
        try:
            loaded = json.loads((self.folder / META).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return loaded if isinstance(loaded, dict) else {}

    def summary(self) -> list[dict[str, Any]]:
        """summary.csv, its numbers as numbers (so tables sort and align them as such)."""
        try:
            with (self.folder / SUMMARY).open(encoding="utf-8", newline="") as handle:
                rows = list(csv.DictReader(handle))
        except (OSError, csv.Error, UnicodeDecodeError):
            return []
        return [{key: _number(value) for key, value in row.items()} for row in rows]

    def results(self) -> list[dict[str, Any]]:
        """results.jsonl, one flat row per line (nested values as JSON text)."""
        try:
            lines = (self.folder / RESULTS).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            return []
        rows = []
        for line in lines:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                rows.append({k: _flat(v) for k, v in row.items()})
        return rows

    def report(self) -> str | None:
        try:
            return (self.folder / REPORT).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None


def _number(text: str | None) -> Any:
    try:
        return float(text) if text and text.strip() else text
    except ValueError:
        return text


def _flat(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return value


def find_runs(data_dir: Path) -> list[EvalRun]:
    """Run folders, newest first (a run's folder is named by its start time, and its
    files were written when it finished)."""
    root = runs_dir(data_dir)
    if not root.is_dir():
        return []
    folders = [
        f
        for f in root.iterdir()
        if f.is_dir() and ((f / SUMMARY).is_file() or (f / RESULTS).is_file())
    ]
    folders.sort(key=lambda f: (_finished(f), f.name), reverse=True)
    return [EvalRun(f) for f in folders]


def _finished(folder: Path) -> float:
    files = [folder / name for name in (SUMMARY, RESULTS, META)]
    return max((f.stat().st_mtime for f in files if f.is_file()), default=0.0)


def history_rows(runs: list[EvalRun]) -> list[dict[str, Any]]:
    """Every run's summary rows, each tagged with its run: the figures over time."""
    return [{"run": run.name, **row} for run in runs for row in run.summary()]
