"""What an ingest is about to do, said before it starts: how many files it will read (new or
changed ones; unchanged files are recognized by their hash), their size, the scanned PDF
pages among them that OCR will read, and roughly how long it will take.

The time is a rough estimate from documented rates (below), not a measurement of this
machine; a faster or slower CPU, or other formats' share of text per MB, moves it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ingest.walk import FoundFile

# Rates measured on the project's 2-core CPU machine with the default embedder (README, "How
# well, how fast"): squad-dev's 1.7 MB of text made 6,802 chunks, ingested in 46 s; a digital
# PDF page holds about five chunks; rapidocr reads a 24-line page in 8.5 CPU s, tesseract in 5.0
# (`python -m eval.bench_ocr`), more in wall time on two busy cores.
SECONDS_PER_MB = 30.0  # of any file but a PDF (a PDF's bytes are mostly fonts and images)
SECONDS_PER_PDF_PAGE = 0.2  # a page with a text layer
OCR_SECONDS_PER_PAGE = {"rapidocr": 10.0, "tesseract": 6.0}
SECONDS_PER_FILE = 0.02  # opening, hashing and registering a file
SECONDS_TO_START = 10.0  # loading the embedding model (and the OCR models) once


@dataclass
class IngestPlan:
    """Counted before an ingest reads anything. `hashes` holds each file's version hash (the
    pipeline's `version_hash` of its bytes), so that an unchanged file is not hashed twice."""

    files: int = 0  # found under the given folders
    unchanged: int = 0  # same hash as in the store
    to_read: int = 0  # new or changed
    bytes_to_read: int = 0
    pdf_bytes: int = 0  # of `bytes_to_read`: timed by pages instead
    pdf_pages: int = 0  # of the PDFs to read, scanned pages included
    scanned_pages: int = 0  # pages with no usable text layer
    ocr_engine: str | None = None  # None: OCR is off
    hashes: dict[Path, str] = field(default_factory=dict, repr=False)

    def is_unchanged(self, path: Path, stored_hash: str) -> bool:
        return self.hashes.get(path) == stored_hash

    @property
    def seconds(self) -> float:
        """The rough time the ingest will take, OCR included (see the rates above)."""
        if not self.to_read:
            return SECONDS_PER_FILE * self.files
        digital = self.pdf_pages - self.scanned_pages
        ocr = OCR_SECONDS_PER_PAGE.get(self.ocr_engine or "", 0.0) * self.scanned_pages
        return (
            SECONDS_TO_START
            + SECONDS_PER_FILE * self.files
            + SECONDS_PER_MB * (self.bytes_to_read - self.pdf_bytes) / 1_048_576
            + SECONDS_PER_PDF_PAGE * digital
            + ocr
        )

    def sentence(self) -> str:
        """`12 files to read (3.4 MB, 5 scanned pages to OCR), about 2 minutes; 30 unchanged.`"""
        if not self.files:
            return "No file of a format kb reads was found."
        if not self.to_read:
            return f"{counted(self.files, 'file')}, all unchanged since the last ingest."
        details = [_size(self.bytes_to_read)]
        if self.scanned_pages and self.ocr_engine:
            details.append(f"{counted(self.scanned_pages, 'scanned page')} to OCR")
        elif self.scanned_pages:
            details.append(
                f"{counted(self.scanned_pages, 'scanned page')} left unread: KB_OCR is off"
            )
        unchanged = f"; {self.unchanged} unchanged" if self.unchanged else ""
        return (
            f"{counted(self.to_read, 'file')} to read ({', '.join(details)}), "
            f"about {rough_duration(self.seconds)}{unchanged}."
        )


def plan_ingest(
    found: Iterable[FoundFile],
    stored_hashes: dict[Path, str],
    version_of: Callable[[Path], str | None],
    ocr_engine: str | None,
) -> IngestPlan:
    """Count what ingesting `found` will do. `stored_hashes` are the store's hashes by file,
    `version_of` a file's version hash (None when it cannot be read: it is counted as to read,
    and fails when read)."""
    plan = IngestPlan(ocr_engine=ocr_engine)
    for item in found:
        plan.files += 1
        version = version_of(item.path)
        if version is not None:
            plan.hashes[item.path] = version
            if stored_hashes.get(item.path) == version:
                plan.unchanged += 1
                continue
        plan.to_read += 1
        size = _size_of(item.path)
        plan.bytes_to_read += size
        if item.path.suffix.lower() == ".pdf":
            pages, scanned = _pdf_pages(item.path)
            plan.pdf_bytes += size
            plan.pdf_pages += pages
            plan.scanned_pages += scanned
    return plan


def _pdf_pages(path: Path) -> tuple[int, int]:
    from ingest.ocr import count_pages

    try:
        return count_pages(path.read_bytes())
    except OSError:
        return 0, 0


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def rough_duration(seconds: float) -> str:
    """`a few seconds`, `40 seconds`, `3 minutes`, `1.5 hours`."""
    if seconds < 10:
        return "a few seconds"
    if seconds < 55:
        return f"{round(seconds, -1):.0f} seconds"
    if seconds < 90 * 60:
        minutes = round(seconds / 60)
        return "1 minute" if minutes == 1 else f"{minutes} minutes"
    return f"{round(seconds / 3600 * 2) / 2:g} hours"


def counted(n: int, noun: str) -> str:
    """`1 file`, `2 files`: a count with its noun (regular English plurals only), as every
    sentence about an ingest writes it (the plan, the summary, the reading notes, the app)."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def _size(n_bytes: int) -> str:
    if n_bytes < 1_048_576:
        return f"{max(1, round(n_bytes / 1024))} KB"
    return f"{n_bytes / 1_048_576:.1f} MB"
