"""OCR of PDF pages that have no text layer (or a broken one), offline.

pypdfium2 renders the page; one of two engines reads it (`KB_OCR_ENGINE`):
- `rapidocr` (default): PP-OCR's detection and recognition models, which ship inside the
  `rapidocr-onnxruntime` wheel, on ONNX Runtime. They read Chinese and English; accented
  Latin letters come back mostly without their accents.
- `tesseract`: Debian's `tesseract-ocr` command with the language packs named in
  `KB_OCR_LANGUAGES` (`eng+fra+deu`); on the pages `eval.bench_ocr` makes it reads French,
  German, Spanish and Polish with their accents, and faster (README, "Scanned pages").
"""

from __future__ import annotations

import io
import shutil
import subprocess
import time
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from ingest.readers.base import ParsedDocument, ReadNotes, Section
from rag.errors import SettingsError

if TYPE_CHECKING:
    from PIL import Image

RENDER_DPI = 200  # PP-OCR reads body text well from 150 dpi up; more costs time, not accuracy
PAPER_WHITE = 200  # grey levels above this become white: JPEG ringing between words otherwise
# reads as ink and the recognizer runs words together ("paidbythetenant")
MIN_LINE_SCORE = 0.5  # recognition confidence under which a line is dropped as noise
MIN_TEXT_CHARS = 8  # a page with fewer readable characters has no usable text layer
STAMP_CHARS = 80  # a page-sized image with less text than this is a scan with a stamp on it


@dataclass(frozen=True)
class OcrLine:
    text: str
    top: float
    bottom: float
    left: float
    score: float


class OcrEngine:
    """Reads the text of page images. Loading the models (about 1 s) happens on first use."""

    def __init__(self, dpi: int = RENDER_DPI, min_score: float = MIN_LINE_SCORE) -> None:
        self.dpi = dpi
        self.min_score = min_score

    @cached_property
    def _engine(self) -> Any:
        from rapidocr_onnxruntime import RapidOCR

        return RapidOCR()

    def read_image(self, image: Image.Image) -> str:
        """Text of a page image, lines in reading order ('' when none is found)."""
        found, _ = self._engine(_clean_paper(image), use_cls=False)
        lines = [
            OcrLine(
                text=str(text).strip(),
                top=min(y for _, y in box),
                bottom=max(y for _, y in box),
                left=min(x for x, _ in box),
                score=float(score),
            )
            for box, text, score in found or []
            if float(score) >= self.min_score and str(text).strip()
        ]
        return _reading_order(lines)

    def read_pdf_pages(self, data: bytes, pages: list[int]) -> dict[int, str]:
        """Text of the given pages (1-based) of the PDF in `data`; '' where nothing was read."""
        import pypdfium2

        document = pypdfium2.PdfDocument(data)
        try:
            texts = {}
            for number in pages:
                page = document[number - 1]
                bitmap = page.render(scale=self.dpi / 72, grayscale=True)
                texts[number] = self.read_image(bitmap.to_pil())
            return texts
        finally:
            document.close()


class TesseractEngine(OcrEngine):
    """Reads page images with the `tesseract` command (Debian's tesseract-ocr package)."""

    def __init__(self, languages: str = "eng", dpi: int = RENDER_DPI) -> None:
        super().__init__(dpi=dpi)
        self.languages = languages

    def read_image(self, image: Image.Image) -> str:
        buffer = io.BytesIO()
        _clean_paper(image).convert("L").save(buffer, format="PNG")
        done = subprocess.run(
            ["tesseract", "stdin", "stdout", "-l", self.languages, "--dpi", str(self.dpi)],
            input=buffer.getvalue(), capture_output=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            message = done.stderr.decode("utf-8", "replace").strip().splitlines()
            raise RuntimeError(f"tesseract failed: {message[-1] if message else done.returncode}")
        lines = (" ".join(line.split()) for line in done.stdout.decode("utf-8").splitlines())
        return "\n".join(line for line in lines if line)


def ocr_engine(enabled: bool, engine: str, languages: str) -> OcrEngine | None:
    """The engine the settings ask for (`KB_OCR`, `KB_OCR_ENGINE`, `KB_OCR_LANGUAGES`); None
    when OCR is off. Raises `SettingsError` when tesseract or a language pack is missing."""
    if not enabled:
        return None
    if engine == "rapidocr":
        return OcrEngine()
    if shutil.which("tesseract") is None:
        raise SettingsError(
            "KB_OCR_ENGINE=tesseract needs the tesseract command; install Debian's "
            "tesseract-ocr package (and its language packs) or set KB_OCR_ENGINE=rapidocr."
        )
    listed = subprocess.run(["tesseract", "--list-langs"], capture_output=True, check=False)
    installed = set(listed.stdout.decode("utf-8", "replace").split()[1:])
    missing = [lang for lang in languages.split("+") if lang not in installed]
    if missing:
        raise SettingsError(
            f"KB_OCR_LANGUAGES names tesseract languages that are not installed "
            f"({', '.join(missing)}); install tesseract-ocr-{missing[0].replace('_', '-')} "
            "or leave them out."
        )
    return TesseractEngine(languages)


def _clean_paper(image: Image.Image) -> Image.Image:
    """Grey, with near-white paper made white (scanner noise and JPEG artefacts)."""
    lut = [255 if level > PAPER_WHITE else level for level in range(256)]
    return image.convert("L").point(lut).convert("RGB")


def _reading_order(lines: list[OcrLine]) -> str:
    """Join detected lines into text: boxes whose vertical middles fall within one another's
    height form one line, read left to right; lines top to bottom."""
    rows: list[list[OcrLine]] = []
    for line in sorted(lines, key=lambda item: (item.top, item.left)):
        middle = (line.top + line.bottom) / 2
        if rows and rows[-1][0].top <= middle <= rows[-1][0].bottom:
            rows[-1].append(line)
        else:
            rows.append([line])
    return "\n".join(" ".join(i.text for i in sorted(row, key=lambda i: i.left)) for row in rows)


def needs_ocr(text: str) -> bool:
    """True when a page's text layer is missing or broken: fewer than a few readable
    characters, or mostly characters no font maps to text (private use, replacement
    characters, controls) as left by fonts without a Unicode map."""
    letters = [c for c in text if not c.isspace()]
    if len(letters) < MIN_TEXT_CHARS:
        return True
    broken = sum(1 for c in letters if unicodedata.category(c) in {"Co", "Cc", "Cs", "Cn"})
    broken += sum(1 for c in letters if c == "\ufffd")
    return broken / len(letters) > 0.3


def pages_to_read(
    data: bytes, page_texts: dict[int, str], marks_only: Collection[int] = ()
) -> tuple[list[int], list[int]]:
    """(pages with no usable text layer, pages with a little text over a page-sized image:
    a scan with a stamp or page number added digitally). A page in `marks_only` (its text
    layer held only a page number or running lines) is a blank page unless such an image lies
    under it. Nothing when pdfium cannot open the PDF (then its text layer, read by pypdf,
    stands)."""
    import pypdfium2
    import pypdfium2.raw as pdfium_c

    try:
        document = pypdfium2.PdfDocument(data)
    except pypdfium2.PdfiumError:
        return [], []
    try:
        empty, stamped = [], []
        for number in range(1, len(document) + 1):
            text = page_texts.get(number, "")
            if needs_ocr(text) and number not in marks_only:
                empty.append(number)
            elif len(text.strip()) < STAMP_CHARS:
                page = document[number - 1]
                width, height = page.get_size()
                images = page.get_objects(filter=(pdfium_c.FPDF_PAGEOBJ_IMAGE,), max_depth=2)
                if any(_area(image.get_bounds()) > 0.5 * width * height for image in images):
                    stamped.append(number)
        return empty, stamped
    finally:
        document.close()


def _area(box: tuple[float, float, float, float]) -> float:
    left, bottom, right, top = box
    return max(0.0, right - left) * max(0.0, top - bottom)


def read_scanned_pages(
    data: bytes, page_texts: dict[int, str], engine: OcrEngine | None, notes: ReadNotes
) -> dict[int, str]:
    """OCR text for each page of the PDF in `data` whose text (`page_texts`, by 1-based page;
    a page missing from it has none) needs OCR. Pages read are noted in `notes.ocr_pages`,
    pages that yield nothing in `notes.unread_pages` with the reason."""
    empty, stamped = pages_to_read(data, page_texts, notes.marks_only_pages)
    if engine is None:
        for number in empty:
            notes.unread_pages[number] = "no text layer, and OCR is off (KB_OCR=off)"
        for number in stamped:
            notes.unread_pages[number] = (
                "a scanned page, only its few lines of text read (KB_OCR=off)"
            )
        return {}
    wanted = sorted(empty + stamped)
    if not wanted:
        return {}
    started = time.perf_counter()
    texts = engine.read_pdf_pages(data, wanted)
    notes.ocr_seconds += time.perf_counter() - started
    read = {}
    for number in wanted:
        text = texts.get(number, "")
        if not needs_ocr(text) and len(text) > len(page_texts.get(number, "")):
            read[number] = text
            notes.ocr_pages.append(number)
        elif number in empty:
            notes.unread_pages[number] = "no text layer, and OCR found no text on it"
    return read


def add_scanned_pages(parsed: ParsedDocument, data: bytes, engine: OcrEngine | None) -> None:
    """Put OCR text in `parsed` (a PDF's sections) for each page with no usable text layer,
    in page order, replacing a broken layer's text; notes go to `parsed.notes`."""
    page_texts: dict[int, str] = {}
    for section in parsed.sections:
        if section.page is not None:
            page_texts[section.page] = page_texts.get(section.page, "") + section.text
    read = read_scanned_pages(data, page_texts, engine, parsed.notes)
    if not read:
        return
    kept = [s for s in parsed.sections if s.page not in read]
    for number, text in sorted(read.items()):
        at = next(
            (i for i, s in enumerate(kept) if s.page is not None and s.page > number), len(kept)
        )
        kept.insert(at, Section(text, page=number, ocr=True))
    parsed.sections = kept


def count_pages(data: bytes) -> tuple[int, int]:
    """(pages, pages OCR would read) of the PDF in `data`, judged from pdfium's text layer
    (fast: no OCR, no pypdf), for the estimate said before an ingest; (0, 0) when pdfium cannot
    open it (an encrypted or broken file)."""
    import pypdfium2

    try:
        document = pypdfium2.PdfDocument(data)
    except pypdfium2.PdfiumError:
        return 0, 0
    try:
        texts = {}
        for number in range(1, len(document) + 1):
            textpage = document[number - 1].get_textpage()
            texts[number] = textpage.get_text_range()
            textpage.close()
    finally:
        document.close()
    empty, stamped = pages_to_read(data, texts)
    return len(texts), len(empty) + len(stamped)
