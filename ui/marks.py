"""Which answer a user found better on the Compare page: `<data_dir>/marks.jsonl`, one JSON
object per mark, and the win rate per model summed from it."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ui.models_choice import unambiguous_id

TIE = "tie"
_append_lock = threading.Lock()


def marks_path(data_dir: Path) -> Path:
    return data_dir / "marks.jsonl"


def append_mark(path: Path, question: str, models: list[str], winner: str) -> dict[str, Any]:
    """Append one mark as one line. The line goes out in a single `write` on a file opened
    with O_APPEND, so concurrent appenders (other sessions, other processes) never interleave
    inside a line."""
    if winner != TIE and winner not in models:
        raise ValueError(f"winner {winner!r} is not one of the compared models")
    mark = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "question": question,
        "models": list(models),
        "winner": winner,
    }
    line = (json.dumps(mark, ensure_ascii=False) + "\n").encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    with _append_lock:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    return mark


def read_marks(path: Path) -> list[dict[str, Any]]:
    """Every well-formed mark; a damaged line (a crash mid-write) is skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    marks = []
    for line in lines:
        try:
            mark = json.loads(line)
        except ValueError:
            continue
        if isinstance(mark, dict) and isinstance(mark.get("models"), list) and "winner" in mark:
            marks.append(mark)
    return marks


@dataclass(frozen=True)
class WinRate:
    model: str
    compared: int  # marks in which the model took part
    wins: int
    ties: int

    @property
    def rate(self) -> float:
        """Wins over comparisons; a tie counts half."""
        return (self.wins + 0.5 * self.ties) / self.compared if self.compared else 0.0


def marks_by_id(marks: list[dict[str, Any]], model_ids: list[str]) -> list[dict[str, Any]]:
    """The marks with models saved under bare names (before models had servers) as the listed
    id each names, where exactly one listed model has that name."""

    def as_id(model: Any) -> Any:
        return unambiguous_id(model, model_ids) if isinstance(model, str) else model

    return [
        {
            **mark,
            "models": [as_id(model) for model in mark["models"]],
            "winner": mark["winner"] if mark["winner"] == TIE else as_id(mark["winner"]),
        }
        for mark in marks
    ]


def win_rates(marks: list[dict[str, Any]]) -> list[WinRate]:
    """Per model, best rate first."""
    counts: dict[str, list[int]] = {}
    for mark in marks:
        for model in dict.fromkeys(mark["models"]):
            entry = counts.setdefault(str(model), [0, 0, 0])
            entry[0] += 1
            entry[1] += mark["winner"] == model
            entry[2] += mark["winner"] == TIE
    rates = [WinRate(model, *entry) for model, entry in counts.items()]
    return sorted(rates, key=lambda r: (-r.rate, -r.compared, r.model))
