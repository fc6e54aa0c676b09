"""CSV and TSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ingest.readers.base import ParsedDocument, Section, UnreadableFile, short_reason
from ingest.readers.text import decode_text


def read_csv(path: Path, data: bytes) -> ParsedDocument:
    text = decode_text(data)
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    try:
        rows = list(csv.reader(io.StringIO(text), dialect))
    except csv.Error as err:  # e.g. a field over the csv module's 128 KiB limit
        raise UnreadableFile(f"not a readable CSV file ({short_reason(err)})") from None
    if not rows:
        raise UnreadableFile("the CSV file has no rows")
    header, body = rows[0], rows[1:]
    lines = [
        "; ".join(f"{name}: {value}" for name, value in zip(header, row, strict=False) if value)
        for row in body
    ]
    return ParsedDocument(path.stem, [Section("\n".join(lines) if body else ", ".join(header))])
