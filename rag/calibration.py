"""Per-model calibration of the token estimate, kept across runs in `<data_dir>/calibration.json`.

After each answer the chain knows how many characters it sent and how many tokens the server
counted; their ratio is the model's characters per token. The estimate then uses a little less
than the measured ratio, so a calibrated model is still not overfilled. A prompt that Ollama cut
lowers the ratio at once, never below `FLOOR_CHARS_PER_TOKEN`, and later whole prompts bring it
back. A server's "maximum context length" error teaches the model's window, kept here too.

Entries are keyed by model id (`name@server`); an entry under a bare name (written before
servers had names) is still read for that model. The app's sessions, Compare's lanes and the
command line may all write at once: each read-modify-write holds a file lock, and the file is
replaced atomically, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from filelock import FileLock

from rag.context import DEFAULT_CHARS_PER_TOKEN, TokenEstimator
from rag.llm.base import SERVER_SEPARATOR

SMOOTHING = 0.3  # weight of the newest measurement
SAFETY = 0.92  # use 92% of the measured characters per token
MIN_CHARS_PER_TOKEN = 0.5
MAX_CHARS_PER_TOKEN = 8.0
# No text in a tokenizer's vocabulary averages under ~1.5 characters per token (CJK is ~1-1.5,
# base64 ~2.5): a cut never drags the estimate below this, so one bad sample cannot starve
# every later prompt.
FLOOR_CHARS_PER_TOKEN = 1.5
LOCK_TIMEOUT_S = 10.0


@dataclass
class ModelCalibration:
    chars_per_token: float = DEFAULT_CHARS_PER_TOKEN
    samples: int = 0
    window: int | None = None  # learned from the server's "too long" error, in tokens
    prompt_tokens_per_s: float | None = None  # prompt evaluation speed, smoothed


Table = dict[str, ModelCalibration]


class Calibration:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "calibration.json"
        self._lock_path = data_dir / ".calibration.lock"

    def get(self, model: str) -> ModelCalibration:
        """The entry of a model id, else of its bare name; a bare name also finds the entry of
        an id with that name."""
        return _entry(self._load(), model) or ModelCalibration()

    def estimator(self, model: str) -> TokenEstimator:
        entry = self.get(model)
        if entry.samples == 0:
            return TokenEstimator(DEFAULT_CHARS_PER_TOKEN)
        return TokenEstimator(entry.chars_per_token * SAFETY)

    def learned_window(self, model: str) -> int | None:
        return self.get(model).window

    def record(self, model: str, prompt_chars: int, prompt_tokens: int) -> None:
        """A prompt that arrived whole: `prompt_chars` characters were `prompt_tokens` tokens
        for this model."""
        if prompt_tokens <= 0 or prompt_chars <= 0:
            return
        measured = _clamp(prompt_chars / prompt_tokens)

        def update(entry: ModelCalibration) -> None:
            if entry.samples == 0:
                entry.chars_per_token = measured
            else:
                entry.chars_per_token += SMOOTHING * (measured - entry.chars_per_token)
            entry.samples += 1

        self._update(model, update)

    def record_cut(self, model: str, prompt_chars: int, window: int) -> None:
        """Ollama cut the prompt: it held more than `window` tokens, so each token covered
        fewer characters than `prompt_chars / window`. Lower the ratio below that bound, but
        not below the floor."""
        bound = _clamp(prompt_chars / max(window, 1))

        def update(entry: ModelCalibration) -> None:
            lowered = min(entry.chars_per_token, bound) * 0.85
            entry.chars_per_token = max(lowered, FLOOR_CHARS_PER_TOKEN)
            entry.samples = max(entry.samples, 1)

        self._update(model, update)

    def record_speed(self, model: str, tokens_per_s: float) -> None:
        """The model evaluated a prompt at `tokens_per_s` on this machine."""

        def update(entry: ModelCalibration) -> None:
            old = entry.prompt_tokens_per_s
            new = tokens_per_s if old is None else old + SMOOTHING * (tokens_per_s - old)
            entry.prompt_tokens_per_s = round(new, 1)

        self._update(model, update)

    def record_window(self, model: str, window: int) -> None:
        """The server said this model's window is `window` tokens."""

        def update(entry: ModelCalibration) -> None:
            entry.window = window

        self._update(model, update)

    # -- the file --

    def _update(self, model: str, change: Callable[[ModelCalibration], None]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(self._lock_path, timeout=LOCK_TIMEOUT_S):
            table = self._load()
            entry = ModelCalibration(**asdict(_entry(table, model) or ModelCalibration()))
            change(entry)
            table[model] = entry
            self._save(table)

    def _load(self) -> Table:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            return {name: ModelCalibration(**entry) for name, entry in raw.items()}
        except (OSError, ValueError, TypeError):
            return {}  # missing or damaged: start uncalibrated

    def _save(self, table: Table) -> None:
        payload = {name: asdict(entry) for name, entry in table.items()}
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".calibration-")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2)
        os.replace(tmp, self.path)


def _entry(table: Table, model: str) -> ModelCalibration | None:
    if model in table:
        return table[model]
    bare = _bare(model)
    if bare in table:
        return table[bare]
    return next((entry for key, entry in table.items() if _bare(key) == model), None)


def _bare(model: str) -> str:
    return model.rsplit(SERVER_SEPARATOR, 1)[0]


def _clamp(value: float) -> float:
    return max(MIN_CHARS_PER_TOKEN, min(MAX_CHARS_PER_TOKEN, value))
