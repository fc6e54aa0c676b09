"""OCR benchmark: accuracy and throughput of `ingest.ocr` on pages it renders itself.

Each page is typeset text (PIL, a serif and a sans face from DejaVu) saved as an image-only
PDF at 150 dpi, as a scanner writes it, then read back the way ingest reads a scanned page
(pypdfium2 renders, RapidOCR reads). Per language it prints the character accuracy
(1 - edit distance / length, whitespace ignored), the share of words read exactly, the share
of accented letters kept, and the pages per minute on this machine (model loading excluded,
timed once apart) with the CPU seconds a page takes (all threads; less sensitive to
other processes' load on a shared machine).

    python -m eval.bench_ocr [--pages 2] [--dpi 200] [--tesseract] [--json out.json]
"""

from __future__ import annotations

import argparse
import io
import json
import random
import resource
import textwrap
import time
import unicodedata
from pathlib import Path
from typing import Any

FONTS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
)
SENTENCES = {
    "English": [
        "The tenant pays the deposit of 1,250 euros within fourteen days of signing.",
        "Heating, water and the cleaning of shared stairs are included in the rent.",
        "Either party may end this agreement with three months' written notice.",
        "Pets are allowed only with the landlord's written consent.",
        "The flat is handed over freshly painted and must be returned the same way.",
        "Repairs below 150 euros are paid by the tenant; larger ones by the landlord.",
    ],
    "French": [
        "Le locataire verse un dépôt de garantie de 1 250 euros à la signature.",
        "Le chauffage, l'eau et l'entretien des escaliers sont compris dans le loyer.",
        "Chacune des parties peut résilier le bail avec un préavis de trois mois.",
        "Les animaux ne sont acceptés qu'avec l'accord écrit du propriétaire.",
        "Le logement est remis fraîchement repeint et doit être rendu ainsi.",
        "Les réparations de moins de 150 euros sont à la charge du locataire.",
    ],
    "German": [
        "Der Mieter zahlt die Kaution von 1.250 Euro innerhalb von vierzehn Tagen.",
        "Heizung, Wasser und die Reinigung des Treppenhauses sind in der Miete enthalten.",
        "Jede Partei kann den Vertrag mit einer Frist von drei Monaten kündigen.",
        "Haustiere sind nur mit schriftlicher Zustimmung des Vermieters erlaubt.",
        "Die Wohnung wird frisch gestrichen übergeben und muss so zurückgegeben werden.",
        "Reparaturen unter 150 Euro trägt der Mieter; größere übernimmt der Vermieter.",
    ],
    "Spanish": [
        "El inquilino paga una fianza de 1.250 euros en los catorce días siguientes.",
        "La calefacción, el agua y la limpieza de la escalera están incluidas.",
        "Cualquiera de las partes puede rescindir el contrato con tres meses de aviso.",
        "Los animales sólo se admiten con el consentimiento escrito del propietario.",
        "La vivienda se entrega recién pintada y debe devolverse así.",
        "Las reparaciones de menos de 150 euros corren a cargo del inquilino.",
    ],
    "Chinese": [
        "租客須在簽約後十四天內支付一千二百五十歐元押金。",
        "暖氣、用水及樓梯清潔費用已包含在租金內。",
        "任何一方均可提前三個月書面通知終止本合約。",
        "飼養寵物須事先取得房東書面同意。",
        "房屋交付時已重新粉刷，退租時亦須恢復原狀。",
        "一百五十歐元以下的維修費用由租客承擔。",
    ],
    "Polish": [
        "Najemca wpłaca kaucję w wysokości 1250 euro w ciągu czternastu dni.",
        "Ogrzewanie, woda i sprzątanie klatki schodowej są wliczone w czynsz.",
        "Każda ze stron może wypowiedzieć umowę z trzymiesięcznym wyprzedzeniem.",
        "Zwierzęta są dozwolone wyłącznie za pisemną zgodą właściciela.",
        "Mieszkanie zostaje przekazane świeżo pomalowane i tak musi zostać zwrócone.",
        "Naprawy poniżej 150 euro pokrywa najemca, większe właściciel.",
    ],
}
LINES_PER_PAGE = 24
CJK_FONT = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"  # Debian's fonts-wqy-microhei
TESSERACT_LANGS = {"English": "eng", "French": "fra", "German": "deu", "Spanish": "spa",
                   "Polish": "pol"}  # fmt: skip


def page_text(language: str, seed: int) -> str:
    rng = random.Random(seed)
    sentences = SENTENCES[language] * (6 if language == "Chinese" else 3)
    rng.shuffle(sentences)
    if language == "Chinese":  # no spaces to wrap at; a character is two Latin letters wide
        text = "".join(sentences)
        return "\n".join(text[i : i + 34] for i in range(0, 34 * LINES_PER_PAGE, 34)).strip()
    return "\n".join(textwrap.wrap(" ".join(sentences), 68)[:LINES_PER_PAGE])


def scanned_page(text: str, font_path: str) -> bytes:
    """`text` typeset on an A4 page at 150 dpi, saved as a PDF with no text layer."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (1240, 1754), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(font_path, 26)
    for row, line in enumerate(text.splitlines()):
        draw.text((110, 140 + row * 50), line, font=font, fill="black")
    buffer = io.BytesIO()
    image.save(buffer, format="PDF", resolution=150)
    return buffer.getvalue()


def edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            cost = 0 if char_a == char_b else 1
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost))
        previous = current
    return previous[-1]


def scores(truth: str, read: str) -> dict[str, float]:
    squeeze = lambda s: "".join(s.split())  # noqa: E731 - line breaks differ, not the text
    t, r = squeeze(truth), squeeze(read)
    truth_words, read_words = truth.split(), set(read.split())
    accented = [c for c in t if unicodedata.decomposition(c) or c in "łŁßø"]
    kept = sum(1 for c in set(accented) if c in r)
    return {
        "char_accuracy": max(0.0, 1 - edit_distance(t, r) / len(t)),
        "word_accuracy": sum(w in read_words for w in truth_words) / len(truth_words),
        "accents_kept": kept / len(set(accented)) if accented else 1.0,
    }


class Tesseract:
    """Debian's `tesseract` command on the same rendered page, for comparison (its language
    pack for each language, e.g. tesseract-ocr-fra)."""

    def __init__(self, dpi: int) -> None:
        self.dpi = dpi
        self.language = "eng"

    def read_pdf_pages(self, data: bytes, pages: list[int]) -> dict[int, str]:
        import subprocess

        import pypdfium2

        document = pypdfium2.PdfDocument(data)
        image = document[pages[0] - 1].render(scale=self.dpi / 72, grayscale=True).to_pil()
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        document.close()
        done = subprocess.run(
            ["tesseract", "stdin", "stdout", "-l", self.language, "--dpi", str(self.dpi)],
            input=buffer.getvalue(), capture_output=True, check=True,
        )  # fmt: skip
        return {pages[0]: done.stdout.decode("utf-8")}


def _cpu_seconds() -> float:
    """CPU time of this process (all its threads) and of finished child processes."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run(pages_per_language: int, dpi: int, tesseract: bool = False) -> dict[str, Any]:
    from ingest.ocr import OcrEngine

    engine: Any = Tesseract(dpi) if tesseract else OcrEngine(dpi=dpi)
    started = time.perf_counter()
    engine.read_pdf_pages(scanned_page("warm-up", FONTS[0]), [1])
    load_s = time.perf_counter() - started
    rows, total_s, total_cpu, total_pages = {}, 0.0, 0.0, 0
    for language in SENTENCES:
        fonts = (CJK_FONT,) if language == "Chinese" else FONTS
        if (language == "Chinese" and not Path(CJK_FONT).is_file()) or (
            tesseract and language not in TESSERACT_LANGS
        ):
            continue
        if tesseract:
            engine.language = TESSERACT_LANGS[language]
        found: list[dict[str, float]] = []
        seconds = cpu = 0.0
        for n in range(pages_per_language):
            truth = page_text(language, n)
            pdf = scanned_page(truth, fonts[n % len(fonts)])
            started, cpu_started = time.perf_counter(), _cpu_seconds()
            read = engine.read_pdf_pages(pdf, [1])[1]
            seconds += time.perf_counter() - started
            cpu += _cpu_seconds() - cpu_started
            found.append(scores(truth, read))
        rows[language] = {
            key: round(sum(f[key] for f in found) / len(found), 4) for key in found[0]
        } | {
            "pages": pages_per_language,
            "seconds": round(seconds, 2),
            "cpu_seconds": round(cpu, 2),
        }
        total_s += seconds
        total_cpu += cpu
        total_pages += pages_per_language
    return {
        "languages": rows,
        "pages_per_minute": round(60 * total_pages / total_s, 2),
        "cpu_seconds_per_page": round(total_cpu / total_pages, 2),
        "model_load_and_first_page_s": round(load_s, 2),
        "lines_per_page": LINES_PER_PAGE,
        "dpi": engine.dpi,
        "engine": "tesseract" if tesseract else "rapidocr",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.bench_ocr", description=__doc__)
    parser.add_argument("--pages", type=int, default=2, help="pages per language")
    parser.add_argument("--dpi", type=int, default=200, help="rendering resolution")
    parser.add_argument("--tesseract", action="store_true", help="Debian's tesseract instead")
    parser.add_argument("--json", type=Path, help="write the figures as JSON")
    args = parser.parse_args(argv)
    result = run(args.pages, args.dpi, args.tesseract)
    print(f"{'language':<10} {'chars':>7} {'words':>7} {'accents':>8}  s/page  CPU s/page")
    for language, row in result["languages"].items():
        print(
            f"{language:<10} {row['char_accuracy']:>7.1%} {row['word_accuracy']:>7.1%} "
            f"{row['accents_kept']:>8.1%}  {row['seconds'] / row['pages']:6.1f}  "
            f"{row['cpu_seconds'] / row['pages']:10.1f}"
        )
    print(
        f"{result['engine']}: {result['pages_per_minute']} pages/minute, "
        f"{result['cpu_seconds_per_page']} CPU s a page "
        f"({LINES_PER_PAGE} lines a page, {result['dpi']} dpi); loading the models and a "
        "first page took "
        f"{result['model_load_and_first_page_s']} s"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
