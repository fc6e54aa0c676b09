"""A passage opened at its place in its source: a PDF's page drawn as an image with the passage
boxed (with pypdfium2, where installed), or the document's section with the passage set apart.
A file that is gone or cannot be read is said in one sentence, and the stored passage shown.

The app reads the file at the path ingest stored (`abs_path`): in compose the documents folder
must be mounted into the app's container at that same path.
"""

from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import streamlit as st

from rag.retrieve import place_label
from ui.plain import escape_markdown, show_caption, show_text

PDF_SCALE = 1.6  # 72 dpi × 1.6: a page readable in the dialog's width
CONTEXT_CHARS = 1200  # of the section, before and after the passage
ANCHOR_WORDS = 8  # words of the passage's start and end looked up on the PDF page
HIGHLIGHT = (255, 196, 0, 90)  # RGBA over the passage's lines


@dataclass
class SectionPlace:
    """Where a passage sits in its document's text: the section's headings and the text
    before, of and after the passage."""

    headings: list[str]
    before: str
    passage: str
    after: str


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _locate(haystack: str, passage: str) -> tuple[int, int] | None:
    """(start, end) of `passage` in `haystack` by its words, whatever whitespace and
    punctuation the two extractions put between them; None when its first words are not
    there."""
    words = _words(passage)
    if not words:
        return None
    spans = [(m.start(), m.end(), m.group().lower()) for m in re.finditer(r"\w+", haystack)]
    needle = words[:ANCHOR_WORDS]
    tokens = [word for _, _, word in spans]
    for index in range(len(tokens) - len(needle) + 1):
        if tokens[index : index + len(needle)] == needle:
            last = min(index + len(words), len(spans)) - 1
            end = spans[last][1]
            while end < len(haystack) and not haystack[end].isspace():
                end += 1  # the sentence's own full stop or closing bracket
            return spans[index][0], end
    return None


def section_place(path: Path, record: dict[str, Any]) -> SectionPlace | None:
    """The passage's place in the document at `path`, read as ingest reads it; None when the
    passage is not found there (the file changed since it was ingested). Raises
    `UnreadableFile`, `OSError`."""
    from ingest.readers import read_document

    parsed = read_document(path, path.read_bytes())
    wanted = list(record.get("headings") or [])
    sections = sorted(parsed.sections, key=lambda s: s.headings != wanted)  # its own first
    for section in sections:
        span = _locate(section.text, record["text"])
        if span is not None:
            start, end = span
            return SectionPlace(
                section.headings,
                section.text[max(0, start - CONTEXT_CHARS) : start],
                section.text[start:end],
                section.text[end : end + CONTEXT_CHARS],
            )
    return None


def pdf_viewer_installed() -> bool:
    return find_spec("pypdfium2") is not None


def pdf_page_image(path: Path, page_number: int, passage: str) -> tuple[Any, bool]:
    """Page `page_number` (1-based) of the PDF drawn as a PIL image, and whether the passage
    was found and boxed on it. Raises `IndexError` for a page the file lacks, pypdfium2's
    `PdfiumError` for a file it cannot open."""
    import pypdfium2 as pdfium
    from PIL import ImageDraw

    pdf = pdfium.PdfDocument(str(path))
    try:
        page = pdf[page_number - 1]
        image = page.render(scale=PDF_SCALE).to_pil().convert("RGB")
        boxes = _passage_boxes(page, passage)
        draw = ImageDraw.Draw(image, "RGBA")  # RGBA fills blend into the RGB page
        height = page.get_height()
        for left, bottom, right, top in boxes:
            draw.rectangle(
                [left * PDF_SCALE, (height - top) * PDF_SCALE,
                 right * PDF_SCALE, (height - bottom) * PDF_SCALE],
                fill=HIGHLIGHT,
            )  # fmt: skip
        return image, bool(boxes)
    finally:
        pdf.close()


def _passage_boxes(page: Any, passage: str) -> list[tuple[float, float, float, float]]:
    """The rectangles (PDF points, origin bottom left) of the passage's lines on the page."""
    textpage = page.get_textpage()
    try:
        text = textpage.get_text_range()
        span = _locate(text, passage)
        if span is None:
            return []
        start, end = span
        count = textpage.count_rects(start, end - start)
        return [textpage.get_rect(index) for index in range(count)]
    finally:
        textpage.close()


def show_pdf_page(path: Path, record: dict[str, Any]) -> None:
    try:
        image, found = pdf_page_image(path, int(record["page"]), record["text"])
    except Exception as err:  # pypdfium2 raises its own error for a file it cannot open
        show_caption(f"The page could not be drawn ({type(err).__name__}); the passage:")
        show_text(record["text"])
        return
    note = "the passage is marked" if found else "the passage could not be found on the page"
    st.markdown(inline_image(image), unsafe_allow_html=True)
    st.caption(f"Page {record['page']}; {note}.")
    with st.expander("The passage as stored"):
        show_text(record["text"])


def inline_image(image: Any) -> str:
    """An `<img>` whose source is the PNG itself (a data: URL), so the page never sits at a
    /media URL that anyone holding it could fetch without the app's password."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="PDF page" style="max-width:100%" src="data:image/png;base64,{data}">'


def show_section(path: Path, record: dict[str, Any]) -> None:
    from ingest.readers import UnreadableFile

    try:
        place = section_place(path, record)
    except (UnreadableFile, OSError) as err:
        show_caption(f"The file cannot be read now ({err}); the passage as stored:")
        show_text(record["text"])
        return
    if place is None:
        show_caption("The file has changed since it was ingested; the passage as stored:")
        show_text(record["text"])
        return
    if place.headings:
        st.markdown("**" + escape_markdown(" > ".join(place.headings)) + "**")
    if place.before.strip():
        show_caption("…" + place.before)
    with st.container(border=True):
        show_text(place.passage)
    if place.after.strip():
        show_caption(place.after + "…")


def show_source(record: dict[str, Any]) -> None:
    """The passage `record` (a `rag.chain.passage_record`) at its place in its source."""
    path = Path(record.get("abs_path") or "")
    page = record.get("page")
    kind = record.get("page_kind") or "page"
    label = record["path"] + (", " + place_label(kind, page, page) if page is not None else "")
    st.markdown("**" + escape_markdown(label) + "**")
    if not record.get("abs_path") or not path.is_file():
        st.warning(
            f"The file {escape_markdown(str(path))} is gone (moved or deleted since it was "
            "ingested); this is the passage as stored."
        )
        show_text(record["text"])
        return
    if path.suffix.lower() == ".pdf" and record.get("page"):
        if pdf_viewer_installed():
            show_pdf_page(path, record)
            return
        show_caption("Install pypdfium2 (pip install 'kb[pdf-view]') to see the PDF's page.")
    show_section(path, record)


@st.dialog("Source", width="large")
def source_dialog(record: dict[str, Any]) -> None:
    show_source(record)
