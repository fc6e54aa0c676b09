"""Per-model calibration of the token estimate, kept across runs in `<data_dir>/calibration.json`.

After each answer the chain knows how many characters it sent and how many tokens Ollama
counted (`prompt_eval_count`); their ratio is the model's characters per token. The estimate
then uses a little less than the measured ratio, so a calibrated model is still not overfilled.
A prompt that Ollama cut lowers the ratio at once, so the next request packs less.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rag.context import DEFAULT_CHARS_PER_TOKEN, TokenEstimator

SMOOTHING = 0.3  # weight of the newest measurement
SAFETY = 0.92  # use 92% of the measured characters per token
MIN_CHARS_PER_TOKEN = 0.5
MAX_CHARS_PER_TOKEN = 8.0


@dataclass
class ModelCalibration:
    chars_per_token: float = DEFAULT_CHARS_PER_TOKEN
    samples: int = 0


class Calibration:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "calibration.json"

    def _load(self) -> dict[str, ModelCalibration]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            return {name: ModelCalibration(**entry) for name, entry in raw.items()}
        except (OSError, ValueError, TypeError):
            return {}  # missing or damaged: start uncalibrated

    def _save(self, table: dict[str, ModelCalibration]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = {name: vars(entry) for name, entry in table.items()}
        # write-then-rename, so a concurrent reader never sees half a file
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".calibration-")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2)
        os.replace(tmp, self.path)

    def get(self, model: str) -> ModelCalibration:
        return self._load().get(model, ModelCalibration())

    def estimator(self, model: str) -> TokenEstimator:
        entry = self.get(model)
        if entry.samples == 0:
            return TokenEstimator(DEFAULT_CHARS_PER_TOKEN)
        return TokenEstimator(entry.chars_per_token * SAFETY)

    def record(self, model: str, prompt_chars: int, prompt_eval_count: int) -> None:
        """A prompt that arrived whole: `prompt_chars` characters were `prompt_eval_count`
        tokens for this model."""
        if prompt_eval_count <= 0 or prompt_chars <= 0:
            return
        measured = _clamp(prompt_chars / prompt_eval_count)
        table = self._load()
        entry = table.get(model, ModelCalibration())
        if entry.samples == 0:
            entry.chars_per_token = measured
        else:
            entry.chars_per_token += SMOOTHING * (measured - entry.chars_per_token)
        entry.samples += 1
        table[model] = entry
        self._save(table)

    def record_cut(self, model: str, prompt_chars: int, num_ctx: int) -> None:
        """Ollama cut the prompt: it held more than `num_ctx` tokens, so each token covered
        fewer characters than `prompt_chars / num_ctx`. Lower the ratio below that bound."""
        table = self._load()
        entry = table.get(model, ModelCalibration())
        bound = _clamp(prompt_chars / max(num_ctx, 1))
        entry.chars_per_token = min(entry.chars_per_token, bound) * 0.85
        entry.samples = max(entry.samples, 1)
        table[model] = entry
        self._save(table)


def _clamp(value: float) -> float:
    return max(MIN_CHARS_PER_TOKEN, min(MAX_CHARS_PER_TOKEN, value))
