"""Scanned PDF pages are read by OCR: a scanned page inside a digital PDF, a fully scanned PDF;
the report names the pages read and those that yielded nothing; chunks carry the OCR mark."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from ingest.ocr import OcrEngine, TesseractEngine, needs_ocr, ocr_engine
from ingest.pipeline import ingest
from ingest.readers import UnreadableFile, read_document
from rag.embeddings import Embedder
from rag.errors import SettingsError
from rag.retrieve import Retriever
from rag.store import ChunkRecord, open_store
from tests.ingest_fixtures import make_settings, snapshot

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf"
SCANNED_CLAUSE = "Clause 7: the tenant pays a deposit of 900 euros within 14 days."
DIGITAL_PAGES = ("The landlord repairs the roof each autumn.", "Heating is included in the rent.")


def page_image(lines: list[str], size: tuple[int, int] = (1240, 1754)) -> Image.Image:
    """An A4 page at 150 dpi with the lines typeset in a serif face, as a scanner sees it."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(FONT, 30)
    for row, line in enumerate(lines):
        draw.text((110, 160 + row * 56), line, font=font, fill="black")
    return image


def scanned_pdf(path: Path, pages: list[list[str]]) -> Path:
    """A PDF made of page images only (no text layer), as a scanner writes it."""
    images = [page_image(lines) for lines in pages]
    buffer = io.BytesIO()
    images[0].save(buffer, format="PDF", resolution=150, save_all=True, append_images=images[1:])
    path.write_bytes(buffer.getvalue())
    return path


def contract_with_a_scanned_page(path: Path) -> Path:
    """Digital page, scanned page (with a page number added digitally), digital page."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    pdf.add_page()
    pdf.multi_cell(0, 8, DIGITAL_PAGES[0])
    pdf.add_page()
    pdf.image(page_image([SCANNED_CLAUSE]), x=0, y=0, w=210)
    pdf.text(100, 285, "Page 2 of 3")
    pdf.add_page()
    pdf.multi_cell(0, 8, DIGITAL_PAGES[1])
    path.write_bytes(bytes(pdf.output()))
    return path


def words(text: str) -> set[str]:
    return {w.strip(".:,").lower() for w in text.split()}


@pytest.fixture(scope="module")
def scans(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scans")
    contract_with_a_scanned_page(root / "contract.pdf")
    scanned_pdf(root / "letter.pdf", [["Dear tenant,", "the water is off on Monday morning."]])
    scanned_pdf(root / "blank.pdf", [[]])
    return root


def test_scanned_pages_are_read_marked_and_reported(
    scans: Path, tmp_path: Path, embedder: Embedder
) -> None:
    settings = make_settings(tmp_path / "store")
    report = ingest(settings, [scans], embedder=embedder)
    assert {f["path"].rsplit("/", 1)[-1] for f in report.failed} == {"blank.pdf"}
    assert "OCR found no text" in report.failed[0]["reason"]
    assert report.ocr_pages == [
        {"path": "contract.pdf", "pages": [2]},
        {"path": "letter.pdf", "pages": [1]},
    ]
    assert report.ocr_seconds > 0
    chunks = {(p.path, p.page): p for p in snapshot(settings).points}
    assert {page: chunks[("contract.pdf", page)].ocr for page in (1, 2, 3)} == {
        1: False,
        2: True,
        3: False,
    }
    # most words of the clause come back (a word may be misread; not exact, OCR is a model)
    assert len(words(SCANNED_CLAUSE) & words(chunks[("contract.pdf", 2)].text)) >= 9
    assert {"water", "monday"} <= words(chunks[("letter.pdf", 1)].text)
    with open_store(settings) as store:
        passages = Retriever(store, embedder).search("How much is the deposit?")
    top = passages[0]
    assert (top.path, top.page, top.ocr) == ("contract.pdf", 2, True)
    assert top.source_label().endswith("OCR text")


def test_with_ocr_off_scanned_pages_are_named_and_a_scan_is_refused(scans: Path) -> None:
    contract = read_document(scans / "contract.pdf", (scans / "contract.pdf").read_bytes())
    assert [(s.page, s.ocr) for s in contract.sections] == [(1, False), (2, False), (3, False)]
    assert contract.sections[1].text == "Page 2 of 3"
    assert contract.notes.unread_pages == {
        2: "a scanned page, only its few lines of text read (KB_OCR=off)"
    }
    with pytest.raises(UnreadableFile, match="OCR is off"):
        read_document(scans / "letter.pdf", (scans / "letter.pdf").read_bytes())


def test_a_page_whose_text_layer_is_missing_or_garbage_needs_ocr() -> None:
    assert needs_ocr("")
    assert needs_ocr("  12 \n")
    assert needs_ocr("\ue000\ue001\ue002\ue003\ue004\ue005\ue006\ue007\ue008 a")
    assert not needs_ocr("Heating is included in the rent.")
    assert not needs_ocr("暖气费包含在房租里。")


def test_chunks_of_stores_written_before_the_mark_read_as_not_ocr() -> None:
    record = ChunkRecord(
        doc_id="d", path="a.pdf", abs_path="/a.pdf", dirs=("/",), title="a", page=1,
        headings=(), chunk_index=0, char_start=0, char_end=4, doc_hash="h", text="text",
        n_tokens=1, ocr=True,
    )  # fmt: skip
    payload = record.to_payload()
    assert ChunkRecord.from_payload(payload) == record
    del payload["ocr"]
    assert ChunkRecord.from_payload(payload).ocr is False


def test_ocr_settings_pick_the_engine_and_name_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert ocr_engine(False, "rapidocr", "eng") is None
    assert type(ocr_engine(True, "rapidocr", "eng")) is OcrEngine
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SettingsError, match="install Debian's tesseract-ocr"):
        ocr_engine(True, "tesseract", "eng")


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="Debian's tesseract-ocr is absent")
def test_tesseract_reads_accented_latin_script(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="tesseract-ocr-xyz"):
        ocr_engine(True, "tesseract", "eng+xyz")
    languages = "eng+fra" if "fra" in subprocess.getoutput("tesseract --list-langs") else "eng"
    engine = ocr_engine(True, "tesseract", languages)
    assert isinstance(engine, TesseractEngine)
    line = "Le café de Genève a été fermé à Noël."
    pdf = scanned_pdf(tmp_path / "fr.pdf", [[line]]).read_bytes()
    read = engine.read_pdf_pages(pdf, [1])[1]
    expected = {"café", "genève", "été", "fermé", "noël"} if languages != "eng" else {"le", "de"}
    assert len(words(read) & expected) >= len(expected) - 1, read


def test_an_answer_citing_an_ocr_passage_says_so() -> None:
    from rag.chain import AnswerResult
    from rag.citations import Citation

    def cited(n: int) -> Citation:
        return Citation(n, "scan.pdf, p. 1", "scan.pdf", "/scan.pdf", "scan", 1, [], "text")

    result = AnswerResult(question="q", search_query="q", model="m")
    result.passages = [{"n": 1, "ocr": False}, {"n": 2, "ocr": True}]
    result.citations = [cited(1)]
    assert not result.rests_on_ocr
    result.citations = [cited(1), cited(2)]
    assert result.rests_on_ocr


class RecordingEngine:
    """An OCR engine that reads nothing and remembers which pages it was asked for."""

    def __init__(self) -> None:
        self.asked: list[int] = []

    def read_pdf_pages(self, data: bytes, pages: list[int]) -> dict[int, str]:
        self.asked += pages
        return {}


def test_a_page_holding_only_its_page_number_is_blank_not_a_scan(tmp_path: Path) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for number in range(1, 5):
        pdf.add_page()
        if number != 3:  # page 3 is blank but for its number
            pdf.multi_cell(0, 8, f"Section {number}: {DIGITAL_PAGES[number % 2]}")
        pdf.text(100, 285, f"- {number} -")
    data = bytes(pdf.output())

    engine = RecordingEngine()
    parsed = read_document(tmp_path / "report.pdf", data, engine)  # type: ignore[arg-type]
    assert engine.asked == []  # nothing to OCR: the page has a text layer, only its number
    assert parsed.notes.unread_pages == {}
    assert parsed.notes.marks_only_pages == [3]
    assert [s.page for s in parsed.sections] == [1, 2, 4]
