"""A corpus of broken files: each failure is reported with its path and a one-line reason, the
rest is ingested, the CLI exits 1 and writes the JSON report, and odd file names are fine."""

from __future__ import annotations

import json
import os
import random
import subprocess
from pathlib import Path

import pytest

from ingest.pipeline import IngestReport, ingest
from rag.embeddings import Embedder
from tests.ingest_fixtures import (
    PYTHON,
    CliRun,
    assert_store_consistent,
    cli_runner,
    make_settings,
    snapshot,
    subprocess_env,
    write_pdf,
)

MAX_FILE_MB = 0.2  # 200 KiB: every good file is below it, huge.txt above
REPORT_KEYS = {
    "added", "updated", "unchanged", "removed", "failed", "chunks_written", "reembedded",
    "seconds", "index_seconds", "junk_skipped", "ocr_pages", "unread_pages", "failed_rows",
    "skipped_parts", "rows_split", "ocr_seconds", "skipped_paths", "unsure_encodings",
}  # fmt: skip


GOOD = {
    "plain.md": "# Plain\n\nA perfectly ordinary document about tides.\n",
    "with space.txt": "Spaces in the name are fine. The text mentions kelp.",
    "accentué café.md": "# Café\n\nAccents in the name are fine. The text mentions crème.",
    'quote\'s "double".txt': "Quotes in the name are fine. The text mentions otters.",
    "sub dir/ünïcode — dash.html": "<html><body><p>Unicode folders are fine.</p></body></html>",
}

# Not UTF-8, read all the same (Windows-1252 and Latin-1 are decoded, not refused).
LEGACY = {"latin1.txt": "Caf\xe9 au lait, cr\xe8me br\xfbl\xe9e.".encode("latin-1")}
READABLE = [*GOOD, *LEGACY]

# A link to no file is not a file that failed: it is named among the paths not read.
NOT_READ = {"broken-link.md": "a broken link"}

# file name -> a word the one-line reason must contain
EXPECTED_FAILURES = {
    "encrypted.pdf": "encrypted",
    "corrupt.pdf": "not a readable PDF",
    "unsupported-filter.pdf": "not a readable PDF",
    "binary.txt": "binary",
    "empty.txt": "empty",
    "blank.md": "empty",
    "huge.txt": "KB_MAX_FILE_MB",
    "pipe.txt": "not a regular file",
    "huge-field.csv": "CSV",
}


def build_bad_corpus(root: Path) -> Path:
    root.mkdir(parents=True)
    for rel, text in GOOD.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    write_pdf(root / "encrypted.pdf", user_password="secret")
    (root / "corrupt.pdf").write_bytes(b"%PDF-1.4\n" + random.Random(7).randbytes(3000))
    pdf = write_pdf(root / "unsupported-filter.pdf").read_bytes()
    (root / "unsupported-filter.pdf").write_bytes(pdf.replace(b"/FlateDecode", b"/FlateDecodX"))
    (root / "binary.txt").write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 4)
    (root / "empty.txt").write_bytes(b"")
    (root / "blank.md").write_text("  \n\n \t\n", encoding="utf-8")
    (root / "huge.txt").write_text("A long line of text. " * 12_000, encoding="utf-8")
    for rel, data in LEGACY.items():
        (root / rel).write_bytes(data)
    os.mkfifo(root / "pipe.txt")
    (root / "broken-link.md").symlink_to(root / "does-not-exist.md")
    (root / "huge-field.csv").write_text('name,notes\nx,"' + "y" * 140_000 + '"\n')
    return root


def check_failures(report: IngestReport, root: Path) -> None:
    by_name = {Path(f["path"]).name: f for f in report.failed}
    assert set(by_name) == set(EXPECTED_FAILURES)
    for name, word in EXPECTED_FAILURES.items():
        failure = by_name[name]
        assert failure["path"] == str((root / name).absolute())
        reason = failure["reason"]
        assert word in reason, (name, reason)
        assert "\n" not in reason and "Traceback" not in reason and reason.strip() == reason
    named = {item["path"]: item["reason"] for item in report.skipped_paths}
    assert {name: reason.split(":")[0] for name, reason in named.items()} == NOT_READ


def test_bad_files_are_reported_and_the_rest_is_ingested(
    tmp_path: Path, embedder: Embedder
) -> None:
    root = build_bad_corpus(tmp_path / "corpus")
    settings = make_settings(tmp_path / "store", max_file_mb=MAX_FILE_MB)
    report = ingest(settings, [root], embedder=embedder)
    check_failures(report, root)
    assert report.added == len(READABLE)
    snap = snapshot(settings)
    assert_store_consistent(snap, {str((root / rel).resolve()) for rel in READABLE})
    assert sorted(r.path for r in snap.records) == sorted(READABLE)
    texts = " ".join(p.payload["text"] for p in snap.points)
    for word in ("tides", "kelp", "crème", "otters", "Unicode folders", "brûlée"):
        assert word in texts


def test_failed_files_are_retried_on_the_next_run(tmp_path: Path, embedder: Embedder) -> None:
    root = build_bad_corpus(tmp_path / "corpus")
    settings = make_settings(tmp_path / "store", max_file_mb=MAX_FILE_MB)
    ingest(settings, [root], embedder=embedder)
    (root / "empty.txt").write_text("Not empty any more: café.", encoding="utf-8")
    again = ingest(settings, [root], embedder=embedder)
    assert again.added == 1 and again.unchanged == len(READABLE)
    assert len(again.failed) == len(EXPECTED_FAILURES) - 1


def test_a_file_name_that_is_not_utf8_fails_alone(tmp_path: Path, embedder: Embedder) -> None:
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "fine.txt").write_text("This one is fine.", encoding="utf-8")
    with open(os.fsencode(root) + b"/caf\xe9.txt", "w", encoding="utf-8") as handle:
        handle.write("The name of this file is Latin-1.")
    report = ingest(make_settings(tmp_path / "store"), [root], embedder=embedder)
    assert report.added == 1
    (failure,) = report.failed
    assert failure["path"] == str(root / "caf\N{REPLACEMENT CHARACTER}.txt")
    assert "not valid UTF-8" in failure["reason"]
    json.dumps(report.as_json(), ensure_ascii=False).encode("utf-8")  # reportable as is


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_file_is_reported(tmp_path: Path, embedder: Embedder) -> None:
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "fine.txt").write_text("This one is fine.", encoding="utf-8")
    locked = root / "locked.txt"
    locked.write_text("Nobody may read this.", encoding="utf-8")
    locked.chmod(0)
    report = ingest(make_settings(tmp_path / "store"), [root], embedder=embedder)
    assert report.added == 1
    assert report.failed == [
        {"path": str(locked), "reason": "the file cannot be read (permission denied)"}
    ]


def test_cli_exits_1_and_writes_the_json_report(
    tmp_path: Path,
    embedder: Embedder,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = build_bad_corpus(tmp_path / "corpus")
    run: CliRun = cli_runner(
        tmp_path, tmp_path / "store", embedder, monkeypatch, capsys, KB_MAX_FILE_MB=str(MAX_FILE_MB)
    )
    code, out, err = run(str(root), "--report", str(tmp_path / "report.json"))
    assert code == 1
    data = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert set(data) == REPORT_KEYS
    assert data["added"] == len(READABLE) and data["chunks_written"] == len(READABLE)
    assert {Path(f["path"]).name for f in data["failed"]} == set(EXPECTED_FAILURES)
    assert all(set(f) == {"path", "reason"} for f in data["failed"])
    assert f"{len(EXPECTED_FAILURES)} failed" in out
    failed_lines = [line for line in err.splitlines() if line.startswith("  failed: ")]
    assert len(failed_lines) == len(EXPECTED_FAILURES)
    for name in EXPECTED_FAILURES:
        assert sum(str((root / name).absolute()) in line for line in failed_lines) == 1

    # the same corpus without its broken files: exit 0
    for name in EXPECTED_FAILURES:
        (root / name).unlink()
    code, _, _ = run(str(root))
    assert code == 0


def test_cli_in_a_subprocess_reports_without_traceback_or_progress_bar(tmp_path: Path) -> None:
    """The real `python -m ingest`, stderr a pipe: failures one line each, no bar at all
    (neither ours nor a library's model-loading bar), no traceback."""
    root = build_bad_corpus(tmp_path / "corpus")
    done = subprocess.run(
        [PYTHON, "-m", "ingest", str(root), "--report", str(tmp_path / "report.json")],
        env=subprocess_env(tmp_path / "store", KB_MAX_FILE_MB=str(MAX_FILE_MB)),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "\r" not in done.stderr and "it/s" not in done.stderr and "%|" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == len(EXPECTED_FAILURES) + len(NOT_READ), done.stderr
    assert sum(line.startswith("  failed: ") for line in lines) == len(EXPECTED_FAILURES)
    assert sum(line.startswith("  not read: broken-link.md: a broken link") for line in lines) == 1
    assert f"{len(READABLE)} added" in done.stdout
    data = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert set(data) == REPORT_KEYS and len(data["failed"]) == len(EXPECTED_FAILURES)
