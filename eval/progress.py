"""Progress bars for the command line: tqdm on stderr when it is a terminal, else nothing.

The library functions of `eval/` take plain callbacks (`on_progress(done, total)`, and the
ingest hook `(file, files_done, chunks)`, for which the commands use `ingest.progress`); these
are such callbacks, so the app can pass its own instead.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any


def _on_terminal() -> bool:
    return sys.stderr.isatty()


class Bar:
    """`bar(done, total)` moves a bar with a known total; `bar.describe(text)` relabels it."""

    def __init__(self, desc: str, unit: str = "question", enabled: bool | None = None) -> None:
        self.desc = desc
        self.unit = unit
        self.enabled = _on_terminal() if enabled is None else enabled
        self._bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=self.desc, unit=self.unit, dynamic_ncols=True)
        self._bar.total = total
        self._bar.n = done
        self._bar.refresh()

    def describe(self, text: str) -> None:
        if self._bar is not None:
            self._bar.set_description(text, refresh=True)
        self.desc = text

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Bar:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
