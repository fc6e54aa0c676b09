"""What an ingest says before it starts: files to read, their size, scanned pages to OCR and a
rough time (the numbers' accuracy is not tested, only what they count)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ingest.estimate import IngestPlan, plan_ingest, rough_duration
from ingest.walk import find_files
from rag.embeddings import Embedder
from tests.ingest_fixtures import CliRun, cli_runner, write_markdown_corpus, write_pdf
from tests.test_ingest_ocr import contract_with_a_scanned_page


def test_the_plan_counts_changed_files_and_the_scanned_pages_among_them(tmp_path: Path) -> None:
    write_pdf(tmp_path / "digital.pdf")  # three pages with a text layer
    contract_with_a_scanned_page(tmp_path / "contract.pdf")  # its page 2 is a scan
    (tmp_path / "notes.txt").write_text("Unchanged notes.\n", encoding="utf-8")
    found = list(find_files([tmp_path]))
    versions = {item.path: f"hash of {item.path.name}" for item in found}
    stored = {tmp_path / "notes.txt": "hash of notes.txt"}  # as in the store: unchanged

    plan = plan_ingest(found, stored, versions.get, "rapidocr")
    assert (plan.files, plan.unchanged, plan.to_read) == (3, 1, 2)
    assert (plan.pdf_pages, plan.scanned_pages) == (6, 1)
    pdf_bytes = sum((tmp_path / name).stat().st_size for name in ("digital.pdf", "contract.pdf"))
    assert plan.bytes_to_read == pdf_bytes
    assert plan.is_unchanged(tmp_path / "notes.txt", "hash of notes.txt")
    assert re.fullmatch(
        r"2 files to read \(\d+ KB, 1 scanned page to OCR\), about [\w .]+; 1 unchanged\.",
        plan.sentence(),
    ), plan.sentence()

    without_ocr = plan_ingest(found, stored, versions.get, None)
    assert "1 scanned page left unread: KB_OCR is off" in without_ocr.sentence()
    assert without_ocr.seconds < plan.seconds  # OCR is part of the estimate


def test_a_file_that_cannot_be_hashed_is_counted_as_to_read(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# A\n\nText.\n", encoding="utf-8")
    plan = plan_ingest(list(find_files([tmp_path])), {}, lambda path: None, None)
    assert (plan.to_read, plan.hashes) == (1, {})


@pytest.mark.parametrize(
    ("seconds", "said"),
    [(3, "a few seconds"), (44, "40 seconds"), (57, "1 minute"), (61, "1 minute"),
     (150, "2 minutes"), (3 * 3600 + 1000, "3.5 hours")],
)  # fmt: skip
def test_rough_durations_read_as_people_say_them(seconds: float, said: str) -> None:
    assert rough_duration(seconds) == said


def test_nothing_to_read_is_said_as_such() -> None:
    assert IngestPlan().sentence() == "No file of a format kb reads was found."
    assert IngestPlan(files=4, unchanged=4).sentence() == (
        "4 files, all unchanged since the last ingest."
    )


def test_the_command_line_says_it_before_the_summary(
    tmp_path: Path,
    embedder: Embedder,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    docs = tmp_path / "docs"
    write_markdown_corpus(docs, count=3, paragraphs=1)
    run: CliRun = cli_runner(tmp_path, tmp_path / "store", embedder, monkeypatch, capsys)
    code, out, _ = run(str(docs))
    assert code == 0
    said, summary = out.splitlines()[:2]
    assert re.fullmatch(r"3 files to read \(\d+ KB\), about [\w .]+\.", said), out
    assert summary.startswith("3 files: 3 added")

    (docs / "report-000.md").write_text("# Changed\n\nNew text.\n", encoding="utf-8")
    code, out, _ = run(str(docs))
    assert re.fullmatch(r"1 file to read \(\d+ KB\), about [\w .]+; 2 unchanged\.",
                        out.splitlines()[0]), out  # fmt: skip
    assert "1 updated, 2 unchanged" in out
    code, out, _ = run(str(docs))
    assert out.splitlines()[0] == "3 files, all unchanged since the last ingest."
