"""Word documents (DOCX)."""

from __future__ import annotations

import io
import re
from pathlib import Path

from ingest.readers.base import ParsedDocument, SectionBuilder, UnreadableFile, short_reason


def read_docx(path: Path, data: bytes) -> ParsedDocument:
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, ValueError, KeyError, OSError) as err:
        raise UnreadableFile(f"not a readable DOCX file ({short_reason(err)})") from None
    except Exception as err:  # zipfile.BadZipFile and lxml errors have no common base
        raise UnreadableFile(f"not a readable DOCX file ({short_reason(err)})") from None
    builder = SectionBuilder()
    for paragraph in document.paragraphs:
        style = paragraph.style.name if paragraph.style else ""
        level = _docx_heading_level(style)
        if level is not None:
            # Only the Title style names the document; a Heading 1 starts a section.
            builder.heading(level, paragraph.text, can_be_title=style == "Title")
        elif paragraph.text.strip():
            builder.add(paragraph.text + "\n")
    for table in document.tables:
        for row in table.rows:
            builder.add(" | ".join(cell.text.strip() for cell in row.cells) + "\n")
    parsed = builder.build(path.stem)
    core_title = (document.core_properties.title or "").strip()
    if core_title:
        parsed.title = core_title
    return parsed


def _docx_heading_level(style_name: str) -> int | None:
    if style_name == "Title":
        return 1
    match = re.match(r"Heading (\d)", style_name)
    return int(match.group(1)) if match else None
