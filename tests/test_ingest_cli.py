"""The command line's errors (one sentence, exit 2, no traceback) and its progress bar."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rag.embeddings import Embedder
from tests.ingest_fixtures import (
    PYTHON,
    CliRun,
    cli_runner,
    subprocess_env,
    write_markdown_corpus,
)


def run_ingest(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "ingest", *args],
        env=subprocess_env(tmp_path / "store", **env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_one_sentence(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    line = lines[0]
    assert line.endswith(".") and line[0].isupper()
    return line


def test_a_store_held_by_another_process_exits_2_with_one_sentence(tmp_path: Path) -> None:
    from qdrant_client import QdrantClient

    docs = tmp_path / "docs"
    write_markdown_corpus(docs, count=1, paragraphs=1)
    holder = QdrantClient(path=str(tmp_path / "store"))
    try:
        done = run_ingest(tmp_path, str(docs), KB_STORE_LOCK_WAIT_S="0.5")
    finally:
        holder.close()
    assert done.returncode == 2
    line = assert_one_sentence(done.stderr)
    assert "open in another process" in line and str(tmp_path / "store") in line
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"KB_CHUNK_SIZE": "abc"}, "KB_CHUNK_SIZE"),
        ({"KB_CHUNK_SIZE": "64", "KB_CHUNK_OVERLAP": "64"}, "KB_CHUNK_OVERLAP"),
        ({"KB_MAX_FILE_MB": "-1"}, "KB_MAX_FILE_MB"),
    ],
)
def test_a_wrong_setting_exits_2_naming_it(tmp_path: Path, env: dict[str, str], named: str) -> None:
    docs = tmp_path / "docs"
    write_markdown_corpus(docs, count=1, paragraphs=1)
    done = run_ingest(tmp_path, str(docs), **env)
    assert done.returncode == 2
    assert named in assert_one_sentence(done.stderr)
    assert not (tmp_path / "store").exists()  # nothing was opened


def test_a_missing_path_exits_2(tmp_path: Path) -> None:
    done = run_ingest(tmp_path, str(tmp_path / "nowhere"))
    assert done.returncode == 2
    assert "No such file or folder" in assert_one_sentence(done.stderr)


def _tty_stderr(monkeypatch: pytest.MonkeyPatch, tty: bool) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: tty, raising=False)


@pytest.mark.parametrize("tty", [False, True])
def test_progress_bar_only_on_a_terminal(
    tmp_path: Path,
    embedder: Embedder,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tty: bool,
) -> None:
    docs = tmp_path / "docs"
    write_markdown_corpus(docs, count=2, paragraphs=1)
    run: CliRun = cli_runner(tmp_path, tmp_path / "store", embedder, monkeypatch, capsys)
    _tty_stderr(monkeypatch, tty)
    code, out, err = run(str(docs))
    assert code == 0
    assert "2 added" in out
    drawn = "chunks_per_s" in err and "file" in err
    assert drawn is tty, err
    if not tty:
        assert err == ""
    # --quiet silences it on a terminal too
    (docs / "report-000.md").write_text("# Changed\n\nNew text.\n", encoding="utf-8")
    code, _, err = run(str(docs), "--quiet")
    assert code == 0 and err == ""
