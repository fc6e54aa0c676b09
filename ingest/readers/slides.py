"""PowerPoint decks (PPTX)."""

from __future__ import annotations

import io
from pathlib import Path

from ingest.readers.base import ParsedDocument, Section, UnreadableFile, short_reason


def read_pptx(path: Path, data: bytes) -> ParsedDocument:
    from pptx import Presentation

    try:
        deck = Presentation(io.BytesIO(data))
    except Exception as err:  # python-pptx raises zipfile, KeyError and lxml errors alike
        raise UnreadableFile(f"not a readable PPTX file ({short_reason(err)})") from None
    sections = []
    for number, slide in enumerate(deck.slides, start=1):
        title_shape = slide.shapes.title
        slide_title = title_shape.text_frame.text.strip() if title_shape is not None else ""
        title_id = title_shape.shape_id if title_shape is not None else None
        texts = [
            shape.text_frame.text
            for shape in slide.shapes  # new proxy objects: compare ids, not identity
            if shape.has_text_frame and shape.shape_id != title_id
        ]
        if slide.has_notes_slide:
            texts.append(slide.notes_slide.notes_text_frame.text)
        sections.append(Section("\n".join(texts), [slide_title] if slide_title else [], number))
    title = (deck.core_properties.title or "").strip() or path.stem
    return ParsedDocument(title, sections)
