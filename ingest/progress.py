"""The ingest progress bar: files, chunks written and chunks/s, on stderr only when it is a
terminal. An instance is the `on_progress(shown, files_done, chunks)` hook `ingest()` takes."""

from __future__ import annotations

import sys
import time
from typing import Any


class IngestProgress:
    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.started = time.perf_counter()
        self._bar: Any = None

    def __call__(self, shown: str, files_done: int, chunks: int) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(unit="file", desc="ingest", dynamic_ncols=True)
        self._bar.n = files_done
        rate = chunks / max(time.perf_counter() - self.started, 1e-9)
        self._bar.set_postfix(chunks=chunks, chunks_per_s=f"{rate:.1f}", refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> IngestProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
