"""PDF text layers."""

from __future__ import annotations

import io
import re
from pathlib import Path

from ingest.readers.base import ParsedDocument, Section, UnreadableFile, short_reason


def read_pdf(path: Path, data: bytes) -> ParsedDocument:
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise UnreadableFile("the PDF is encrypted; save an unprotected copy to ingest it")
        title = (reader.metadata.title if reader.metadata else None) or path.stem
        sections = [
            Section(_tidy_pdf_text(page.extract_text() or ""), page=number)
            for number, page in enumerate(reader.pages, start=1)
        ]
    except UnreadableFile:
        raise
    except Exception as err:  # pypdf also raises LimitReachedError, NotImplementedError, ...
        raise UnreadableFile(f"not a readable PDF ({short_reason(err)})") from None
    return ParsedDocument(str(title), sections)


def _tidy_pdf_text(text: str) -> str:
    return re.sub(r"[ \t]+\n", "\n", text).strip()
