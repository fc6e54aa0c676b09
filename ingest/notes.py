"""The reading notes of an ingest report as sentences, for the CLI and the app alike."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.estimate import counted
from ingest.walk import UNREAD_FORMAT

if TYPE_CHECKING:
    from ingest.pipeline import IngestReport


def skipped_path_lines(skipped: list[dict[str, str]]) -> list[str]:
    """Files of formats kb does not read as one line per extension; the others one each."""
    other = [i for i in skipped if i["reason"] != UNREAD_FORMAT]
    unread = Counter(
        Path(i["path"]).suffix.lower() or "(no extension)"
        for i in skipped
        if i["reason"] == UNREAD_FORMAT
    )
    lines = [
        f"not read: {counted(n, suffix + ' file')}, a format kb does not read"
        for suffix, n in sorted(unread.items())
    ]
    return lines + [f"not read: {i['path']}: {i['reason']}" for i in other]


def reading_notes(report: IngestReport) -> list[str]:
    """One line per thing a reader could not do or was unsure of: pages read by OCR or not read
    at all, table rows that failed, parts and files not read, guessed encodings, split rows.
    The CLI prints them to stderr, the app's Library shows them under the last ingest."""
    r = report
    lines = [
        f"read by OCR: {item['path']}: page{'s' * (len(item['pages']) > 1)} "
        f"{', '.join(map(str, item['pages']))}"
        for item in r.ocr_pages
    ]
    lines += [f"unread: {i['path']}, page {i['page']}: {i['reason']}" for i in r.unread_pages]
    lines += [f"row failed: {i['path']}, {i['row']}: {i['reason']}" for i in r.failed_rows]
    lines += [f"not read: {i['path']}: {i['part']}" for i in r.skipped_parts]
    lines += skipped_path_lines(r.skipped_paths)
    lines += [
        f"check: {i['path']}: read as {i['encoding']}, a guess from little text; if it reads "
        "wrongly, save it as UTF-8 and ingest again"
        for i in r.unsure_encodings
    ]
    if r.rows_split:
        verb = "was" if r.rows_split == 1 else "were"
        split = counted(r.rows_split, "table row")
        lines.append(f"{split} too long for one chunk {verb} split by cells")
    return lines
