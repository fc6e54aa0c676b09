"""Crash safety with real SIGKILLs: `python -m ingest` is killed at several moments of a first
run and of an update run; right after each kill every version search can see is whole, and a
rerun leaves exactly one consistent version of every document.

The kill moments are chosen by watching the writer's trace (`KB_WRITE_TRACE`: one line per
write step the store has applied, read from outside the process): how many chunk points are
written, how many registry records are committed or flipped. So they land inside a batch of
chunk writes, among registry flips and garbage collection, and so on, whatever the machine's
speed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ingest.chunking import ChunkLimits, chunk_document
from ingest.pipeline import ingest, version_hash
from ingest.readers import read_document
from rag.embeddings import Embedder
from rag.settings import Settings
from tests.ingest_fixtures import (
    PYTHON,
    assert_store_consistent,
    assert_visible_versions_whole,
    make_settings,
    snapshot,
    subprocess_env,
    write_markdown_corpus,
)

pytestmark = pytest.mark.slow

CHUNK_SIZE = 32  # small chunks: many points and quick embedding
CHUNK_OVERLAP = 4
FILES = 30
PARAGRAPHS = 8


class IngestProcess:
    """One `python -m ingest` in a subprocess, killed with SIGKILL when a condition holds."""

    def __init__(self, tmp_path: Path, docs: Path) -> None:
        self.tmp_path = tmp_path
        self.docs = docs
        self.store = tmp_path / "store"
        self.runs = 0
        self.trace = tmp_path / "run-0.trace"

    def _steps(self) -> list[dict[str, Any]]:
        """The write steps the running process has applied so far ([] before the first)."""
        try:
            lines = self.trace.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        steps = []
        for line in lines:
            try:
                steps.append(json.loads(line))
            except ValueError:  # a line being written: seen complete on the next poll
                break
        return steps

    def chunk_rows(self) -> int:
        return sum(step["n"] for step in self._steps() if step["step"] == "chunks")

    def records(self) -> list[dict[str, Any]]:
        """The registry as the running process has written it so far (last write per file)."""
        latest: dict[str, dict[str, Any]] = {}
        for step in self._steps():
            if step["step"] != "chunks":
                latest[step["abs_path"]] = step
        return list(latest.values())

    def start(self) -> subprocess.Popen[bytes]:
        self.runs += 1
        self.trace = self.tmp_path / f"run-{self.runs}.trace"
        log = (self.tmp_path / f"run-{self.runs}.log").open("wb")
        return subprocess.Popen(
            [PYTHON, "-m", "ingest", str(self.docs)],
            env=subprocess_env(
                self.store,
                KB_CHUNK_SIZE=str(CHUNK_SIZE),
                KB_CHUNK_OVERLAP=str(CHUNK_OVERLAP),
                KB_WRITE_TRACE=str(self.trace),
                # Qdrant Edge writes a run's steps in milliseconds: a pause after each lets a
                # poll see the moment and kill between exactly those steps.
                KB_WRITE_TRACE_PAUSE_S="0.03",
            ),
            cwd=self.tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def kill_when(self, condition: Callable[[], bool], timeout: float = 240.0) -> None:
        process = self.start()
        deadline = time.monotonic() + timeout
        try:
            while not condition():
                assert process.poll() is None, (
                    f"run {self.runs} ended (exit {process.returncode}) before its kill point: "
                    + self.log()
                )
                assert time.monotonic() < deadline, "the kill point was never reached"
                time.sleep(0.05)
            os.kill(process.pid, signal.SIGKILL)
        finally:
            process.wait(timeout=60)
        assert process.returncode == -signal.SIGKILL

    def complete(self) -> str:
        process = self.start()
        process.wait(timeout=300)
        assert process.returncode == 0, self.log()
        return self.log()

    def log(self) -> str:
        return (self.tmp_path / f"run-{self.runs}.log").read_text(errors="replace")


def expected_chunk_counts(settings: Settings, docs: Path, embedder: Embedder) -> dict[str, int]:
    """abs path -> how many chunks a clean ingest makes of it (chunking only, no embedding)."""
    limits = ChunkLimits(settings.chunk_size, settings.chunk_overlap, embedder.max_tokens)
    counts = {}
    for path in sorted(docs.iterdir()):
        parsed = read_document(path, path.read_bytes())
        chunks = chunk_document(parsed, limits, embedder.count_tokens, embedder.token_offsets)
        counts[str(path.resolve())] = len(chunks)
    return counts


def assert_exactly(settings: Settings, docs: Path, embedder: Embedder) -> None:
    """One record per file, of the file's current bytes, with all its chunks and nothing else."""
    snap = snapshot(settings)
    expected = expected_chunk_counts(settings, docs, embedder)
    assert_store_consistent(snap, set(expected))
    for record in snap.records:
        assert record.chunk_count == expected[record.abs_path], record.path
        assert record.doc_hash == version_hash(Path(record.abs_path).read_bytes(), settings)


def test_sigkill_during_first_ingest_then_rerun(tmp_path: Path, embedder: Embedder) -> None:
    docs = tmp_path / "docs"
    write_markdown_corpus(docs, FILES, PARAGRAPHS)
    settings = make_settings(tmp_path / "store", chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP)
    total = sum(expected_chunk_counts(settings, docs, embedder).values())
    assert total > 200  # so that the run writes in several batches
    run = IngestProcess(tmp_path, docs)

    # 1: in the middle of the first batch of chunk writes (registry placeholders written)
    run.kill_when(lambda: run.chunk_rows() >= 40)
    snap = snapshot(settings)
    assert_visible_versions_whole(snap)
    assert len(snap.points) >= 40
    # The files change before the rerun: what the killed run wrote has other ids and hashes
    # now, and must still be cleared, not overwritten by chance.
    write_markdown_corpus(docs, FILES, PARAGRAPHS, tag="v1-edited")
    # 2: while documents are being committed (flips and garbage collection)
    run.kill_when(lambda: sum(bool(r.get("doc_hash")) for r in run.records()) >= 5)
    snap = snapshot(settings)
    assert_visible_versions_whole(snap)
    committed = [r for r in snap.records if r.doc_hash]
    assert committed  # some documents were finished and are visible after the kill
    assert len(committed) < FILES

    log = run.complete()
    assert "0 failed" in log
    assert_exactly(settings, docs, embedder)


def test_sigkill_during_an_update_leaves_every_document_visible(
    tmp_path: Path, embedder: Embedder
) -> None:
    docs = tmp_path / "docs"
    write_markdown_corpus(docs, FILES, PARAGRAPHS)
    settings = make_settings(tmp_path / "store", chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP)
    ingest(settings, [docs], embedder=embedder)  # the first version, in this process
    run = IngestProcess(tmp_path, docs)
    old = {r.abs_path: r.doc_hash for r in snapshot(settings).records}
    assert len(old) == FILES

    # Every file gets a new version with a different number of chunks.
    write_markdown_corpus(docs, FILES, PARAGRAPHS + 1, tag="v2")

    def flipped() -> int:
        return sum(r.get("doc_hash", "") not in ("", old[r["abs_path"]]) for r in run.records())

    for at_least in (1, FILES // 2):  # right after the first flip, then halfway
        run.kill_when(lambda n=at_least: flipped() >= n)
        snap = snapshot(settings)
        assert_visible_versions_whole(snap)
        # never neither: every document still has a visible version, old or new
        assert {r.abs_path for r in snap.records} == set(old)
        assert all(r.doc_hash for r in snap.records)
        versions = {r.abs_path: r.doc_hash for r in snap.records}
        updated = [path for path, doc_hash in versions.items() if doc_hash != old[path]]
        assert len(updated) < FILES

    run.complete()
    assert_exactly(settings, docs, embedder)
    snap = snapshot(settings)
    assert all(r.doc_hash != old[r.abs_path] for r in snap.records)
    assert all("version v2" in p.text or "version" not in p.text for p in snap.points)
