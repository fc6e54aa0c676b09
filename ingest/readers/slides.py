"""PowerPoint decks (PPTX): one section per slide (its place is the slide number), its title
as the heading; text frames, tables, chart titles and pictures' alt text, also inside groups;
speaker notes in a section of their own under "Speaker notes"."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ingest.readers.base import (
    ParsedDocument,
    Section,
    UnreadableFile,
    meaningful_title,
    short_reason,
    table_lines,
)
from rag.store.records import SLIDE

NOTES_HEADING = "Speaker notes"


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
        headings = [" ".join(slide_title.split())] if slide_title else []
        texts = list(_shape_texts(slide.shapes, skip_id=title_id))
        sections.append(Section("\n\n".join(texts), headings, number))
        notes = _notes_text(slide)
        if notes:
            sections.append(Section(notes, [*headings, NOTES_HEADING], number))
    title = meaningful_title(deck.core_properties.title) or path.stem
    return ParsedDocument(title, sections, page_kind=SLIDE)


def _shape_texts(shapes: Any, skip_id: int | None) -> Iterator[str]:
    """Text of each shape in z-order (how PowerPoint reads a slide aloud); groups opened."""
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    for shape in shapes:
        if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
            yield from _shape_texts(shape.shapes, skip_id)
            continue
        if shape.shape_id == skip_id:
            continue  # the title: already the heading
        if shape.has_text_frame and shape.text_frame.text.strip():
            yield shape.text_frame.text
        elif getattr(shape, "has_table", False):
            yield "\n".join(_table_lines(shape.table))
        elif getattr(shape, "has_chart", False) and shape.chart.has_title:
            chart_title = shape.chart.chart_title
            if chart_title.has_text_frame and chart_title.text_frame.text.strip():
                yield f"Chart: {chart_title.text_frame.text.strip()}"
        descr = _alt_text(shape)
        if descr:
            yield f"Image: {descr}"


def _table_lines(table: Any) -> list[str]:
    rows = []
    for row in table.rows:
        # a cell spanned by a merge repeats nothing: python-pptx marks it as spanned
        rows.append(["" if cell.is_spanned else cell.text for cell in row.cells])
    return table_lines(rows)


def _alt_text(shape: Any) -> str:
    """A picture's or shape's description (alt text), if its author wrote one."""
    properties = shape._element.xpath("./*[1]/p:cNvPr")
    return (properties[0].get("descr") or "").strip() if properties else ""


def _notes_text(slide: Any) -> str:
    if not slide.has_notes_slide:
        return ""
    frame = slide.notes_slide.notes_text_frame
    return frame.text.strip() if frame is not None else ""
