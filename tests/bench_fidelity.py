"""Fidelity benchmark: does each fact a document holds reach the store, so that its question
finds it? By format, before and after the readers of issue 11, with OCR's cost and ingest
throughput.

It writes a corpus of its own (`born/`: every format kb reads, born digital, in several
encodings, with Chinese, French, German, Spanish and Polish notes and the sample set's six
documents as distractors; `scanned/`: image-only PDF pages typeset here, in English, Chinese
and French, and a digital contract with one scanned page). Each fact has a question and a key
phrase; it is found when one of the question's top 5 passages, from the fact's own file,
contains the key phrase (whitespace and case ignored). Most files are built by the readers'
test fixtures (`tests/fidelity_fixtures.py` and the reader tests), so run it from a checkout.

Each version of the code runs in a worker process of its own (`tests/fidelity_worker.py` with
that version's folder first on PYTHONPATH) over the same corpus: today's code always, and with
`--code DIR` an older checkout beside it, e.g. the code before issue 11:

    git archive 3cf917f | (mkdir -p /tmp/kb-before && tar -x -C /tmp/kb-before)
    python -m tests.bench_fidelity --code /tmp/kb-before [--rounds 3] [--copies 4] [--json F]

It prints the share of facts found by format, OCR throughput (pages per minute) and OCR's
share of ingest time, and, with `--rounds N`, ingest throughput in chunks per second on the
born-digital part (copied `--copies` times) for each version, rounds interleaved (the older
code first in even rounds), medians and their ratio. Stores are scratch folders; the embedder
and chunking come from the usual settings (`KB_*`), the store never from `QDRANT_URL`.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from email.message import EmailMessage
from pathlib import Path
from statistics import median
from typing import Any

from rag.errors import KBError

REPO = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("fidelity_worker.py")
TOP_K = 5


@dataclass(frozen=True)
class Fact:
    group: str  # the format (or language) the table reports it under
    file: str  # relative to the corpus folder
    question: str
    key: str  # a phrase the passage holding the fact contains


# -- the corpus ---------------------------------------------------------------------------------

ENGLISH_SCAN = (
    ["Clause 3: the tenant pays a deposit of 1,250 euros", "within fourteen days of signing."],
    ["Clause 9: pets are allowed only with written consent.",
     "Clause 12: either party may end the lease with three months notice."],
)  # fmt: skip
CHINESE_SCAN = ["本大樓的電梯每週三上午進行維修保養。", "會議室的預約請聯繫行政部李小姐。"]
FRENCH_SCAN = ["Le loyer est payé le premier jour de chaque mois.", "Le préavis est de trois mois."]

LANGUAGE_NOTES = {
    "French": ("notes-fr.md", "# Notes de l'immeuble\n\n"
               "La réunion du conseil a lieu le troisième jeudi de chaque mois à la mairie.\n\n"
               "Le remplacement d'un badge d'accès perdu coûte vingt euros.\n",
               [("Quand a lieu la réunion du conseil ?", "troisième jeudi"),
                ("Combien coûte le remplacement d'un badge perdu ?", "vingt euros")]),
    "German": ("notizen-de.txt", "Die Müllabfuhr kommt jeden zweiten Dienstag vor sieben Uhr.\n"
               "Der Schlüssel für den Fahrradkeller liegt bei Hausmeister Krüger.\n",
               [("Wann kommt die Müllabfuhr?", "zweiten Dienstag"),
                ("Wer hat den Schlüssel für den Fahrradkeller?", "Hausmeister Krüger")]),
    "Spanish": ("notas-es.txt", "La piscina comunitaria abre a las diez de la mañana en verano.\n"
                "Las bicicletas se guardan en el sótano, junto a la sala de calderas.\n",
                [("¿A qué hora abre la piscina en verano?", "diez de la mañana"),
                 ("¿Dónde se guardan las bicicletas?", "sala de calderas")]),
    "Polish": ("notatki-pl.txt", "Zebranie wspólnoty odbędzie się w sali nr 12 w piątek.\n"
               "Klucze do piwnicy wydaje pani Wiśniewska z administracji.\n",
               [("Gdzie odbędzie się zebranie wspólnoty?", "sali nr 12"),
                ("Kto wydaje klucze do piwnicy?", "pani Wiśniewska")]),
}  # fmt: skip
CHINESE_KEYS = {
    "reimburse": "三十天內",
    "boiler": "保安隊長王明",
    "library": "下午五點",
    "canteen": "豆腐飯",
    "parking": "前台領取",
}
LATIN1_TEXT = "Notes from the pâtisserie: the crème brûlée costs 7 euros on Sundays.\n"
STAFF = (
    "Astrid Holm",
    "Bjørn Lie",
    "Carla Ruiz",
    "Dmitri Orlov",
    "Eva Lind",
    "Farid Haddad",
    "Greta Sand",
    "Hugo Berg",
    "Ines Moreau",
    "Jonas Vik",
    "Karin Ek",
    "Lars Dahl",
)


def write_corpus(root: Path) -> list[Fact]:
    """The benchmark's documents under `root` (`born/`, `scanned/`); their facts."""
    born, scanned = root / "born", root / "scanned"
    for folder in (born, scanned):
        folder.mkdir(parents=True, exist_ok=True)
    return _born_digital(born) + _multilingual(born) + _scanned(scanned)


def _born_digital(born: Path) -> list[Fact]:
    from tests import fidelity_fixtures as ff
    from tests import ingest_fixtures as fx
    from tests.test_ingest_tables import message_bytes, workbook_bytes

    shutil.copytree(REPO / "eval" / "sample" / "docs", born / "sample")  # distractors
    ff.write_running_header_pdf(born / "agreement.pdf")
    ff.write_form_pdf(born / "permit.pdf")
    fx.write_pdf(born / "sampling.pdf")
    ff.write_rich_docx(born / "cranes.docx")
    fx.write_docx(born / "boats.docx")
    ff.write_rich_pptx(born / "results.pptx")
    fx.write_pptx(born / "briefing.pptx")
    fx.write_epub(born / "stories.epub")
    files = {
        "festival.html": ff.HTML_PAGE.encode(),
        "emergency.html": fx.HTML_TEXT.encode(),
        "handbook.md": fx.MARKDOWN_TEXT.encode(),
        "prices-cp1252.md": ff.CP1252_MARKDOWN.encode("cp1252"),
        "travel.txt": fx.TEXT_TEXT.encode(),
        "delivery-cp1252.txt": ff.CP1252_TEXT.encode("cp1252"),
        "backup-utf16.txt": ff.UTF16_TEXT.encode("utf-16"),
        "patisserie-latin1.txt": LATIN1_TEXT.encode("latin-1"),
        "archive-notes.txt": ff.junk_text().encode(),
        "equipment.csv": fx.CSV_TEXT.encode(),
        "preise-excel.csv": "Name;Straße;Preis\nMüller;Hauptstraße 5;3,50 €\n"
        "Grün;Öl-Weg 2;4,20 €\n".encode("cp1252"),
        "staff.csv": _staff_csv().encode(),
        "shop.xlsx": workbook_bytes(),
        "gate.eml": message_bytes(),
        "quay.eml": _quay_message(),
    }
    for name, data in files.items():
        (born / name).write_bytes(data)
    return [Fact(group, f"born/{file}", q, key) for group, file, q, key in BORN_FACTS]


BORN_FACTS = [
    ("PDF", "agreement.pdf", "Which floor is the office on?", "office is on the first floor"),
    ("PDF", "agreement.pdf", "When is payment due?", "thirty days of the invoice"),
    ("PDF", "agreement.pdf", "Which court settles disputes?", "court of Bergen"),
    ("PDF", "permit.pdf", "What is the permit number of the application?", "HX-4471"),
    ("PDF", "permit.pdf", "Who is the applicant on the permit?", "Ingrid Solberg"),
    ("PDF", "permit.pdf", "What is the permit number checked against?", "against the register"),
    ("PDF", "sampling.pdf", "When does sampling on the north shore start?", "starts at dawn"),
    ("PDF", "sampling.pdf", "How soon are samples frozen?", "frozen within two hours"),
    ("DOCX", "cranes.docx", "What does the contract cover?", "harbour cranes"),
    ("DOCX", "cranes.docx", "How much does crane hire cost?", "900 EUR per day"),
    ("DOCX", "cranes.docx", "How fast are support calls answered?", "within four hours"),
    ("DOCX", "cranes.docx", "When is there a surcharge on crane hire?", "weekend surcharge"),
    ("DOCX", "cranes.docx", "Which company marks the crane contract for internal use?",
     "Northwind Ltd internal use"),
    ("DOCX", "cranes.docx", "Are printed copies of the crane contract controlled?",
     "printed copies are uncontrolled"),
    ("DOCX", "cranes.docx", "When does the crane hire rate double?", "the rate doubles"),
    ("DOCX", "cranes.docx", "Do crane hire prices include VAT?", "prices exclude VAT"),
    ("DOCX", "cranes.docx", "At what wind force do the cranes stop?", "wind force 7"),
    ("DOCX", "cranes.docx", "What does the reviewer ask to confirm?", "confirm the night rate"),
    ("DOCX", "cranes.docx", "Which crane is in the photo at the quay?", "crane number four"),
    ("DOCX", "cranes.docx", "Where do crane deliveries go?", "deliveries go to pier 4"),
    ("DOCX", "boats.docx", "How often is each boat engine serviced?", "serviced every spring"),
    ("DOCX", "boats.docx", "Who is the boat mechanic?", "Ole Brandt"),
    ("PPTX", "results.pptx", "Where did revenue grow?", "every region"),
    ("PPTX", "results.pptx", "What is the quarterly target?", "42 units"),
    ("PPTX", "results.pptx", "What does the grouped box on the slide show?", "ferry schedule"),
    ("PPTX", "results.pptx", "What does the nested group on the slide list?", "crew roster"),
    ("PPTX", "results.pptx", "What should the presenter demo?", "demo the booking screen"),
    ("PPTX", "results.pptx", "Which chart shows bookings by month?", "bookings by month"),
    ("PPTX", "results.pptx", "What is the title of the bookings chart?", "Bookings per quarter"),
    ("PPTX", "briefing.pptx", "Who meets arrivals at the jetty?", "met at the jetty"),
    ("PPTX", "briefing.pptx", "What do departures need?", "signed checkout sheet"),
    ("HTML", "festival.html", "When does the harbour festival open?", "first Saturday of June"),
    ("HTML", "festival.html", "When does the lantern walk start?", "lantern walk at nine"),
    ("HTML", "festival.html", "Is entry to the festival free for children?",
     "children under twelve"),
    ("HTML", "festival.html", "Must dogs be kept on a lead at the festival?", "kept on a lead"),
    ("HTML", "festival.html", "How much is a family pass to the festival?", "40 EUR"),
    ("HTML", "festival.html", "Is there a map of the festival grounds?", "festival grounds"),
    ("HTML", "emergency.html", "Where is the muster point in a fire?", "flagpole by the helipad"),
    ("HTML", "emergency.html", "Which pager does the station doctor carry?", "pager 22"),
    ("Markdown", "handbook.md", "When is breakfast served?", "Breakfast is served at seven"),
    ("Markdown", "handbook.md", "When do quiet hours start?", "ten at night"),
    ("Markdown", "handbook.md", "Who should be told about allergies?", "Tell the cook"),
    ("Markdown", "prices-cp1252.md", "When does the discount end?", "ends in März"),
    ("text", "travel.txt", "May anyone travel alone beyond the station limits?",
     "Nobody travels alone"),
    ("text", "delivery-cp1252.txt", "Is delivery free within the EU?", "orders over 50€"),
    ("text", "delivery-cp1252.txt", "When does the café open?", "Café opens at 8"),
    ("text", "backup-utf16.txt", "How many backup volumes were verified?", "12 volumes verified"),
    ("text", "patisserie-latin1.txt", "How much is the crème brûlée?", "crème brûlée costs 7"),
    ("text", "archive-notes.txt", "How often is the archive password rotated?", "rotated monthly"),
    ("text", "archive-notes.txt", "How long are logs kept?", "ninety days"),
    ("CSV", "equipment.csv", "Where are the snowshoes kept?", "store room"),
    ("CSV", "equipment.csv", "How many radios are in the comms office?", "comms office"),
    ("CSV", "preise-excel.csv", "Where does Müller live?", "Hauptstraße 5"),
    ("CSV", "staff.csv", "What is Farid Haddad's phone extension?", "2306"),
    ("CSV", "staff.csv", "Which department is Karin Ek in?", "Karin Ek"),
    ("XLSX", "shop.xlsx", "What role does Ole Brandt have on the staff sheet?", "mechanic"),
    ("XLSX", "shop.xlsx", "What does a pear cost in the shop?", "1.5"),
    ("XLSX", "shop.xlsx", "What is the total for apples?", "total: 6"),
    ("EPUB", "stories.epub", "Who counted ships every night?", "lighthouse keeper counted ships"),
    ("EPUB", "stories.epub", "When did the fishing boats return?", "before the storm"),
    ("e-mail", "gate.eml", "What is the gate code for the boat house?", "gate code is 4711"),
    ("e-mail", "gate.eml", "Who takes the boat on Tuesdays?", "Ole takes the boat on Tuesdays"),
    ("e-mail", "quay.eml", "Who sent the message about the quay crane inspection?", "Per Moen"),
    ("e-mail", "quay.eml", "Which day is the quay crane inspected?", "inspected on Thursday"),
]  # fmt: skip


def _staff_csv() -> str:
    departments = ("Finance", "Harbour", "Workshop", "Kitchen")
    rows = ["name,department,extension,room"]
    rows += [
        f"{name},{departments[i % 4]},{2201 + 21 * i},{'B' if i % 2 else 'A'}{100 + i}"
        for i, name in enumerate(STAFF)
    ]
    return "\n".join(rows) + "\n"


def _quay_message() -> bytes:
    message = EmailMessage()
    message["Subject"] = "Crane inspection"
    message["From"] = "Per Moen <per@example.org>"
    message["To"] = "harbour@example.org"
    message["Date"] = "Tue, 1 Dec 2026 08:30:00 +0100"
    message.set_content("Hello,\n\nthe quay crane is inspected on Thursday; keep the quay clear.\n")
    return message.as_bytes()


def _multilingual(born: Path) -> list[Fact]:
    from tests.test_cjk_search import ANSWERS, QUESTIONS, distractors

    chinese = born / "zh"
    chinese.mkdir()
    for name, text in {**ANSWERS, **distractors(25)}.items():
        (chinese / f"{name}.txt").write_text(text + "\n", encoding="utf-8")
    facts = [
        Fact("Chinese", f"born/zh/{name}.txt", QUESTIONS[name], key)
        for name, key in CHINESE_KEYS.items()
    ]
    for language, (file, text, pairs) in LANGUAGE_NOTES.items():
        (born / file).write_text(text, encoding="utf-8")
        facts += [Fact(language, f"born/{file}", q, key) for q, key in pairs]
    return facts


def _scanned(scanned: Path) -> list[Fact]:
    from eval.bench_ocr import CJK_FONT, FONTS
    from tests.test_ingest_ocr import contract_with_a_scanned_page

    _image_pdf(scanned / "lease-scan.pdf", [list(page) for page in ENGLISH_SCAN], FONTS[0])
    contract_with_a_scanned_page(scanned / "contract.pdf")
    facts = [
        Fact("scanned PDF", "scanned/lease-scan.pdf", "How much is the tenant's deposit?",
             "deposit of 1,250 euros"),
        Fact("scanned PDF", "scanned/lease-scan.pdf", "Are pets allowed in the flat?",
             "written consent"),
        Fact("scanned PDF", "scanned/lease-scan.pdf", "What notice ends the lease?",
             "three months notice"),
        Fact("scanned PDF", "scanned/contract.pdf", "What deposit does clause 7 set?",
             "deposit of 900 euros"),
        Fact("scanned PDF", "scanned/contract.pdf", "Who repairs the roof?",
             "repairs the roof each autumn"),
        Fact("scanned PDF, French", "scanned/bail-scan.pdf", "Quand le loyer est-il payé ?",
             "premier jour de chaque mois"),
        Fact("scanned PDF, French", "scanned/bail-scan.pdf", "Quel est le préavis ?",
             "trois mois"),
    ]  # fmt: skip
    _image_pdf(scanned / "bail-scan.pdf", [FRENCH_SCAN], FONTS[1])
    if Path(CJK_FONT).is_file():
        _image_pdf(scanned / "notice-zh-scan.pdf", [CHINESE_SCAN], CJK_FONT)
        facts += [
            Fact("scanned PDF, Chinese", "scanned/notice-zh-scan.pdf", "電梯什麼時候維修？",
                 "每週三上午"),
            Fact("scanned PDF, Chinese", "scanned/notice-zh-scan.pdf", "會議室預約要聯繫誰？",
                 "李小姐"),
        ]  # fmt: skip
    return facts


def _image_pdf(path: Path, pages: list[list[str]], font_path: str) -> None:
    """Pages of typeset lines as images only (no text layer), as a scanner writes them."""
    from PIL import Image, ImageDraw, ImageFont

    images = []
    for lines in pages:
        image = Image.new("RGB", (1240, 1754), "white")
        draw = ImageDraw.Draw(image)
        font = ImageFont.truetype(font_path, 30)
        for row, line in enumerate(lines):
            draw.text((110, 160 + row * 56), line, font=font, fill="black")
        images.append(image)
    buffer = io.BytesIO()
    images[0].save(buffer, format="PDF", resolution=150, save_all=True, append_images=images[1:])
    path.write_bytes(buffer.getvalue())


# -- the workers --------------------------------------------------------------------------------


class Worker:
    """One version of kb's code in a process of its own (`tests/fidelity_worker.py`)."""

    def __init__(self, label: str, code: Path, log: Path) -> None:
        self.label, self.log = label, log
        env = {k: v for k, v in os.environ.items() if not k.startswith(("QDRANT_", "PYTHON"))}
        env.pop("KB_QDRANT_PATH", None)
        env.pop("KB_COLLECTION", None)
        env["PYTHONPATH"] = str(code)
        env.setdefault("HF_HUB_OFFLINE", "1")
        with log.open("w") as errors:  # the child keeps its own copy of the handle
            self.process = subprocess.Popen(
                [sys.executable, "-P", str(WORKER)], cwd=code, env=env, text=True,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors,
            )  # fmt: skip
        ready = self._read()
        self.code = ready["code"]
        if Path(self.code).resolve() != code.resolve():
            raise KBError(f"The {label} worker imported kb from {self.code}, not from {code}.")

    def ask(self, **command: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self._read()

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            code = self.process.wait()
            raise KBError(f"The {self.label} worker stopped (exit code {code}); see {self.log}.")
        return json.loads(line)

    def close(self) -> None:
        if self.process.poll() is None:
            self.ask_quit()
        self.process.wait(timeout=60)

    def ask_quit(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"op": "quit"}) + "\n")
        self.process.stdin.close()


# -- measuring ----------------------------------------------------------------------------------


def _squeeze(text: str) -> str:
    return "".join(text.split()).casefold()


def fidelity(worker: Worker, corpus: Path, facts: list[Fact], scratch: Path) -> dict[str, Any]:
    """Ingest the whole corpus into a new store and ask every question."""
    store = scratch / f"{worker.label}-fidelity"
    report = worker.ask(op="ingest", docs=str(corpus), store=str(store))
    answers = worker.ask(
        op="search", store=str(store), questions=[f.question for f in facts], k=TOP_K
    )["results"]
    found = []
    for fact, passages in zip(facts, answers, strict=True):
        own = [p["text"] for p in passages if p["path"] == fact.file]
        found.append(any(_squeeze(fact.key) in _squeeze(text) for text in own))
    return {"ingest": report, "found": found}


def throughput(
    workers: list[Worker], born: Path, copies: int, rounds: int, scratch: Path
) -> dict[str, Any]:
    """Chunks per second of each worker's ingest of the born-digital part, rounds interleaved."""
    docs = scratch / "throughput"
    for n in range(copies):
        shutil.copytree(born, docs / f"copy-{n}")
    runs: dict[str, list[dict[str, Any]]] = {w.label: [] for w in workers}
    for number in range(rounds):
        order = workers if number % 2 == 0 else workers[::-1]
        for worker in order:
            store = scratch / f"{worker.label}-round-{number}"
            runs[worker.label].append(worker.ask(op="ingest", docs=str(docs), store=str(store)))
            shutil.rmtree(store, ignore_errors=True)
    result = {}
    for label, reports in runs.items():
        rates = [r["chunks"] / r["seconds"] for r in reports if r["seconds"]]
        result[label] = {
            "chunks": reports[0]["chunks"],
            "chunks_per_s": round(median(rates), 2),
            "all_chunks_per_s": [round(rate, 2) for rate in rates],
            "cpu_chunks_per_s": round(median(r["chunks"] / r["cpu_seconds"] for r in reports), 2),
        }
    return result


def by_group(facts: list[Fact], found: list[bool]) -> dict[str, tuple[int, int]]:
    groups: dict[str, tuple[int, int]] = {}
    for fact, hit in zip(facts, found, strict=True):
        got, total = groups.get(fact.group, (0, 0))
        groups[fact.group] = (got + hit, total + 1)
    return groups


def run(code: Path | None, rounds: int, copies: int, scratch: Path) -> dict[str, Any]:
    corpus = scratch / "corpus"
    facts = write_corpus(corpus)
    labels = [("before", code)] if code is not None else []
    workers = [
        Worker(label, path, scratch / f"{label}-worker.log")
        for label, path in [*labels, ("after", REPO)]
    ]
    try:
        results = {w.label: fidelity(w, corpus, facts, scratch) for w in workers}
        speed = throughput(workers, corpus / "born", copies, rounds, scratch) if rounds else {}
    finally:
        for worker in workers:
            worker.close()
    return {
        "facts": [asdict(f) for f in facts],
        "code": {w.label: w.code for w in workers},
        "versions": results,
        "throughput": speed,
        "rounds": rounds,
        "copies": copies,
        "top_k": TOP_K,
    }


# -- the report ---------------------------------------------------------------------------------


def format_report(result: dict[str, Any]) -> str:
    facts = [Fact(**f) for f in result["facts"]]
    labels = list(result["versions"])
    tables = {label: by_group(facts, v["found"]) for label, v in result["versions"].items()}
    groups = list(tables[labels[-1]])
    width = max(len(g) for g in [*groups, "all facts"])
    lines = [f"{'facts found in the top ' + str(result['top_k']):<{width}}  "
             + "  ".join(f"{label:>14}" for label in labels)]  # fmt: skip
    for group in groups:
        cells = [_share(*tables[label][group]) for label in labels]
        lines.append(f"{group:<{width}}  " + "  ".join(f"{c:>14}" for c in cells))
    totals = [_share(sum(g for g, _ in tables[label].values()), len(facts)) for label in labels]
    lines.append(f"{'all facts':<{width}}  " + "  ".join(f"{c:>14}" for c in totals))
    lines.append("")
    for label in labels:
        report = result["versions"][label]["ingest"]
        lines.append(_ingest_line(label, report))
    for label, figures in result["throughput"].items():
        lines.append(
            f"{label}: {figures['chunks_per_s']:.1f} chunks/s ingesting the born-digital part "
            f"x{result['copies']} ({figures['chunks']} chunks; median of "
            f"{', '.join(map(str, figures['all_chunks_per_s']))}; by CPU time "
            f"{figures['cpu_chunks_per_s']:.1f})"
        )
    if {"before", "after"} <= set(result["throughput"]):
        before, after = result["throughput"]["before"], result["throughput"]["after"]
        lines.append(
            f"after / before: {after['chunks_per_s'] / before['chunks_per_s']:.1%} "
            f"(by CPU time {after['cpu_chunks_per_s'] / before['cpu_chunks_per_s']:.1%})"
        )
    return "\n".join(lines)


def _share(got: int, total: int) -> str:
    return f"{got}/{total} {got / total:4.0%}" if total else "-"


def _ingest_line(label: str, report: dict[str, Any]) -> str:
    line = (
        f"{label}: ingest {report['seconds']:.1f} s, {report['chunks']} chunks, "
        f"{report['added']} files added, {len(report['failed'])} failed"
    )
    if report["ocr_pages"]:
        rate = 60 * report["ocr_pages"] / report["ocr_seconds"]
        line += (
            f"; OCR: {report['ocr_pages']} pages in {report['ocr_seconds']:.1f} s "
            f"({rate:.1f} pages/minute), {report['ocr_seconds'] / report['seconds']:.0%} "
            "of ingest time"
        )
    return line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench_fidelity",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--code",
        type=Path,
        metavar="DIR",
        help="an older checkout of kb to compare with (its root folder)",
    )
    parser.add_argument(
        "--rounds", type=int, default=0, help="throughput rounds per version, interleaved (0: none)"
    )
    parser.add_argument(
        "--copies",
        type=int,
        default=4,
        help="copies of the born-digital part ingested in each round",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the figures as JSON")
    parser.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="a new folder to keep the corpus and stores in (default: temp)",
    )
    return parser  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.code is not None and not (args.code / "ingest").is_dir():
            raise KBError(f"{args.code} is not a kb checkout (it has no ingest/ folder).")
        if args.rounds < 0 or args.copies < 1:
            raise KBError("--rounds must be 0 or more and --copies 1 or more.")
        if args.keep is not None:
            if args.keep.exists() and any(args.keep.iterdir()):
                raise KBError(f"The folder {args.keep} is not empty; give a new folder.")
            result = run(args.code, args.rounds, args.copies, args.keep)
        else:
            with tempfile.TemporaryDirectory(prefix="kb-bench-fidelity-") as scratch:
                result = run(args.code, args.rounds, args.copies, Path(scratch))
    except KBError as err:
        print(err, file=sys.stderr)
        return 2
    print(format_report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
