"""A passage opened at its place in its source: a PDF page drawn with the passage marked (as an
inline image, never a /media URL), a document's section with the passage set apart, and a
file that is gone said in one sentence with the stored passage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from tests.ingest_fixtures import write_pdf
from tests.ui_helpers import CORPUS, elements, no_exception, open_panels, page_text, write_corpus
from ui.source_view import pdf_page_image, section_place

PASSAGE = "The north pier lamp is lit at dusk by the harbour keeper on duty."
PAGES = (
    "Harbour rules. Boats moor on the south side only.",
    "Lights. " + PASSAGE + " Spare bulbs are in the shed.",
)


def record(path: Path, text: str, page: int | None = None, **extra: Any) -> dict[str, Any]:
    return {"n": 1, "path": path.name, "abs_path": str(path), "page": page, "headings": [],
            "text": text, "score": 0.5, **extra}  # fmt: skip


def test_a_pdf_passage_is_found_and_marked_on_its_page(tmp_path: Path) -> None:
    pytest.importorskip("pypdfium2")
    pdf = write_pdf(tmp_path / "rules.pdf", PAGES)
    image, found = pdf_page_image(pdf, 2, PASSAGE)
    assert found and image.width > 500
    highlight = sum(1 for pixel in image.getdata() if pixel[0] > 240 and pixel[2] < 200)
    assert highlight > 1000  # the passage's lines are tinted
    _, elsewhere = pdf_page_image(pdf, 1, PASSAGE)
    assert not elsewhere  # not on page 1


def test_a_passage_is_found_in_its_section(tmp_path: Path) -> None:
    docs = write_corpus(tmp_path / "docs")
    keepers = "Three keepers lived in the lighthouse until the lamp was automated in 1979."
    place = section_place(docs / "harbour/lighthouse.md", record(docs, keepers, headings=[]))
    assert place is not None
    assert place.passage == keepers and place.headings[-1] == "Keepers"
    assert "lighthouse.md" not in place.before  # text, not the file's name
    assert CORPUS["harbour/lighthouse.md"].count(keepers) == 1


def _show(record_: dict) -> None:  # type: ignore[type-arg]  (run as a script: no Any there)
    from ui.source_view import show_source

    show_source(record_)


def test_a_pdf_page_is_shown_inline_and_a_gone_file_is_said(tmp_path: Path) -> None:
    pytest.importorskip("pypdfium2")
    pdf = write_pdf(tmp_path / "rules.pdf", PAGES)
    app = AppTest.from_function(_show, args=(record(pdf, PASSAGE, page=2),), default_timeout=30)
    app.run()
    no_exception(app)
    assert not elements(app, "image")  # no /media URL for the page
    assert any(m.value.startswith('<img alt="PDF page"') for m in app.markdown)
    assert "data:image/png;base64," in app.markdown[1].value
    assert "Page 2; the passage is marked." in page_text(app)
    gone = record(tmp_path / "moved.pdf", PASSAGE, page=2)
    app = AppTest.from_function(_show, args=(gone,), default_timeout=30).run()
    no_exception(app)
    [warning] = [w.value for w in app.warning]
    assert "is gone (moved or deleted since it was ingested)" in warning
    assert PASSAGE in page_text(app)


def _sources(result: object) -> None:  # run as a script (no imports there: no Any)
    from ui.answer_view import sources_panel

    sources_panel(result, key="t0")


def _search_results(passages: list) -> None:  # type: ignore[type-arg]  (run as a script)
    from ui.answer_view import show_search_results

    show_search_results(passages)


def stored_passage(text: str, ocr: bool, index: int) -> Any:
    """A passage as retrieval makes it from a stored chunk's payload (where `ocr` is kept)."""
    from rag.retrieve import Passage
    from rag.store.records import ChunkRecord, ScoredChunk

    chunk = ChunkRecord(
        doc_id="d1", path="scans/harbour.pdf", abs_path="/docs/scans/harbour.pdf",
        dirs=("/docs", "/docs/scans"), title="Harbour", page=1, headings=(),
        chunk_index=index, char_start=0, char_end=len(text), doc_hash="h", text=text,
        n_tokens=12, ocr=ocr,
    )  # fmt: skip
    stored = ChunkRecord.from_payload(chunk.to_payload())
    return Passage.from_scored(ScoredChunk(stored, 0.5 - index / 10))


def test_a_passage_read_by_ocr_is_marked_in_the_sources_and_search_results() -> None:
    from rag.chain import AnswerResult, passage_record
    from rag.citations import Citation

    scanned = stored_passage(PASSAGE, ocr=True, index=0)
    typed = stored_passage("Boats moor on the south side only.", ocr=False, index=1)
    result = AnswerResult(question="q", search_query="q", model="m@s", answer="Lit at dusk [1].")
    result.passages = [passage_record(1, scanned), passage_record(2, typed)]
    cited = Citation(
        n=1, source=scanned.source_label(), path=scanned.path, abs_path=scanned.abs_path,
        title=scanned.title, page=scanned.page, headings=[], text=scanned.text,
    )  # fmt: skip
    result.citations = [cited]
    app = AppTest.from_function(_sources, args=(result,), default_timeout=30).run()
    app = open_panels(app)  # the typed passage is not cited: it is among the others
    no_exception(app)
    labels = [m.value for m in app.markdown if m.value.startswith("**")]
    assert len(labels) == 2
    scanned_label, typed_label = sorted(labels)
    assert "read by OCR, may contain misreadings" in scanned_label
    assert "read by OCR" not in typed_label

    app = AppTest.from_function(_search_results, args=([scanned, typed],), default_timeout=30)
    app.run()
    no_exception(app)
    labels = [m.value for m in app.markdown if m.value.startswith("**")]
    assert ["read by OCR, may contain misreadings" in label for label in labels] == [True, False]
