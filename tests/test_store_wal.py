"""The embedded store's SQLite files are put in write-ahead-log mode (see rag.store)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ingest.writer import ensure_collections
from rag.settings import Settings
from rag.store import open_store


def journal_modes(store_dir: Path) -> dict[str, str]:
    modes = {}
    for path in sorted(store_dir.rglob("storage.sqlite")):
        with sqlite3.connect(path) as connection:
            modes[path.parent.name] = connection.execute("PRAGMA journal_mode").fetchone()[0]
    return modes


def test_new_collections_write_ahead(tmp_path: Path) -> None:
    settings = Settings(qdrant_path=tmp_path / "q", qdrant_url=None)
    with open_store(settings) as store:
        ensure_collections(store, "some-model", 8)

    assert journal_modes(tmp_path / "q") == {"kb": "wal", "kb__docs": "wal"}
