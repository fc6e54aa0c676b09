"""Helpers for the ingest tests: a small corpus of every supported format, settings pointed at
a temporary embedded store, the shared embedder, and a checker of the store's invariants.

Kept out of `tests/conftest.py` on purpose; test modules import what they use.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from rag.embeddings import Embedder
from rag.settings import DEFAULT_EMBED_MODEL, Settings
from rag.store import ChunkRecord, DocRecord, Store, open_store

REPO = Path(__file__).resolve().parents[1]
COLLECTION = "kb"


# -- settings and the embedder --------------------------------------------------------------


def make_settings(store_dir: Path, **overrides: Any) -> Settings:
    """Settings for an embedded store in `store_dir`, independent of the caller's environment."""
    values: dict[str, Any] = {
        "qdrant_path": store_dir,
        "qdrant_url": None,
        "qdrant_api_key": None,
        "collection": COLLECTION,
        "embed_model": DEFAULT_EMBED_MODEL,
        "embed_device": "cpu",
        "embed_batch_size": 16,
        "chunk_size": 128,
        "chunk_overlap": 16,
        "max_file_mb": 50.0,
        "store_lock_wait_s": 0.5,
    }
    values.update(overrides)
    return Settings(**values)


@cache
def shared_embedder() -> Embedder:
    """The packaged embedder, loaded once per test process (loading costs seconds)."""
    embedder = Embedder(make_settings(Path("unused")))
    embedder.model  # noqa: B018 - load now, once
    return embedder


class ModelForbiddenError(AssertionError):
    pass


class NoModelEmbedder(Embedder):
    """An embedder that fails the test if anything touches its model (loads or uses it)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.model_touched = False

    @property  # type: ignore[override]
    def model(self) -> Any:
        self.model_touched = True
        raise ModelForbiddenError("the embedding model was used")


def subprocess_env(store_dir: Path, **extra: str) -> dict[str, str]:
    """The environment for `python -m ingest` in a subprocess: no inherited KB_/Qdrant settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("KB_", "QDRANT_", "OLLAMA_"))
    }
    env["KB_QDRANT_PATH"] = str(store_dir)
    env["KB_COLLECTION"] = COLLECTION
    env["KB_EMBED_DEVICE"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    env.update(extra)
    return env


PYTHON = sys.executable


# -- a corpus of every format -----------------------------------------------------------------

PDF_TITLE = "Field Sampling Manual"
PDF_PAGES = (
    "Sampling on the north shore starts at dawn. The marker word is quillfeather for page one. "
    "Every team carries a radio.",
    "Samples are frozen within two hours. The marker word is driftanchor for page two. "
    "Labels are written in pencil.",
    "Broken seals are reported to the data manager. The marker word is saltmeadow for page "
    "three. Reports are kept for ten years.",
)


def write_pdf(
    path: Path,
    pages: tuple[str, ...] = PDF_PAGES,
    title: str | None = PDF_TITLE,
    user_password: str | None = None,
) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    if title:
        pdf.set_title(title)
    pdf.set_font("helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    if user_password is not None:
        pdf.set_encryption(owner_password="owner-" + user_password, user_password=user_password)
    path.write_bytes(bytes(pdf.output()))
    return path


DOCX_TITLE = "Boat Handbook"


def write_docx(path: Path) -> Path:
    import docx

    document = docx.Document()
    document.core_properties.title = DOCX_TITLE
    document.add_heading("Boats", level=1)
    document.add_paragraph("The station has two boats. Both are painted orange.")
    document.add_heading("Engines", level=2)
    document.add_paragraph("Each engine is serviced every spring. The mechanic is Ole Brandt.")
    document.add_heading("Safety", level=1)
    document.add_paragraph("Lifejackets are worn at all times on the water.")
    document.save(str(path))
    return path


def write_pptx(path: Path) -> Path:
    from pptx import Presentation

    deck = Presentation()
    deck.core_properties.title = "Season Briefing"
    layout = deck.slide_layouts[1]  # title and content
    for heading, body in (
        ("Arrival", "Arrivals are met at the jetty by the station leader."),
        ("Departure", "Departures need a signed checkout sheet from the store keeper."),
    ):
        slide = deck.slides.add_slide(layout)
        slide.shapes.title.text = heading
        slide.placeholders[1].text = body
    deck.save(str(path))
    return path


HTML_TEXT = """<!doctype html>
<html><head><title>Emergency Card</title><style>p {color: red}</style></head>
<body><h1>Emergency Card</h1>
<h2>Fire</h2><p>In a fire, leave the building by the nearest exit.</p>
<h3>Muster point</h3><p>The muster point is the flagpole by the helipad.</p>
<script>var hidden = "never indexed";</script>
<h2>Medical</h2><p>The station doctor carries pager 22.</p>
</body></html>
"""

MARKDOWN_TEXT = """# Station Handbook

Welcome to the station. Read this before your first shift.

## Meals

Breakfast is served at seven. Dinner is at six.

### Allergies

Tell the cook about allergies on your first day.

## Quiet hours

Quiet hours are from ten at night until six in the morning.
"""

TEXT_TEXT = (
    "Travel rules for the field season.\n\n"
    "Nobody travels alone beyond the station limits. Every trip is logged on the board.\n"
)

CSV_TEXT = "item,location,count\nsnowshoes,store room,12\nradios,comms office,8\n"


def write_epub(path: Path) -> Path:
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("kb-test-epub")
    book.set_title("Island Stories")
    book.set_language("en")
    chapters = []
    for number, (heading, text) in enumerate(
        (
            ("The Lighthouse", "The lighthouse keeper counted ships every night."),
            ("The Harbour", "Fishing boats returned to the harbour before the storm."),
        ),
        start=1,
    ):
        chapter = epub.EpubHtml(title=heading, file_name=f"chap{number}.xhtml", lang="en")
        chapter.content = f"<html><body><h1>{heading}</h1><p>{text}</p></body></html>"
        book.add_item(chapter)
        chapters.append(chapter)
    book.toc = chapters
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = ["nav", *chapters]
    epub.write_epub(str(path), book)
    return path


def build_corpus(root: Path) -> dict[str, Path]:
    """One small document of every supported format, some in subfolders; name -> path."""
    (root / "manuals").mkdir(parents=True, exist_ok=True)
    (root / "notes" / "deep").mkdir(parents=True, exist_ok=True)
    files = {
        "pdf": write_pdf(root / "manuals" / "sampling.pdf"),
        "docx": write_docx(root / "manuals" / "boats.docx"),
        "pptx": write_pptx(root / "briefing.pptx"),
        "epub": write_epub(root / "stories.epub"),
    }
    for name, rel, text in (
        ("html", "emergency.html", HTML_TEXT),
        ("md", "notes/handbook.md", MARKDOWN_TEXT),
        ("txt", "notes/deep/travel.txt", TEXT_TEXT),
        ("csv", "equipment.csv", CSV_TEXT),
    ):
        files[name] = root / rel
        files[name].write_text(text, encoding="utf-8")
    return files


def write_markdown_corpus(root: Path, count: int, paragraphs: int, tag: str = "v1") -> list[Path]:
    """`count` Markdown files of `paragraphs` short sections each, every sentence unique."""
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(count):
        lines = [f"# Report {number}", ""]
        for section in range(paragraphs):
            lines += [
                f"## Part {section}",
                "",
                f"Report {number} part {section} version {tag} describes the weather. "
                f"The wind was {number + section} knots and the sky was clear. "
                f"Observers noted {section * 3 + number} birds near the cliffs.",
                "",
            ]
        path = root / f"report-{number:03d}.md"
        path.write_text("\n".join(lines), encoding="utf-8")
        paths.append(path)
    return paths


# -- reading the store back -------------------------------------------------------------------


@dataclass
class StoreSnapshot:
    records: list[DocRecord]
    points: list[ChunkRecord]  # every chunk, visible or not

    def chunks_of(self, record: DocRecord) -> list[ChunkRecord]:
        return [p for p in self.points if p.doc_id == record.doc_id]

    def visible_chunks_of(self, record: DocRecord) -> list[ChunkRecord]:
        return [p for p in self.chunks_of(record) if p.doc_hash == record.doc_hash]


def snapshot(settings: Settings) -> StoreSnapshot:
    with open_store(settings, lock_wait_s=5.0) as store:
        return snapshot_of(store)


def snapshot_of(store: Store) -> StoreSnapshot:
    records = store.documents()
    points = list(store.all_chunks())
    return StoreSnapshot(records, points)


def assert_visible_versions_whole(snap: StoreSnapshot) -> None:
    """What holds at every moment, even right after a kill: each registered version that search
    can see has all its chunks, once each, and no two documents share a record."""
    ids = Counter(record.doc_id for record in snap.records)
    assert all(n == 1 for n in ids.values()), ids
    for record in snap.records:
        if record.doc_hash == "":  # a placeholder or a removal in progress: hidden
            continue
        visible = snap.visible_chunks_of(record)
        indexes = sorted(p.chunk_index for p in visible)
        assert indexes == list(range(record.chunk_count)), (record.path, indexes)


def assert_store_consistent(snap: StoreSnapshot, expected_paths: set[str]) -> None:
    """What holds after a completed run: exactly the expected documents, every point visible."""
    assert sorted(r.abs_path for r in snap.records) == sorted(expected_paths)
    assert_visible_versions_whole(snap)
    by_id = {record.doc_id: record for record in snap.records}
    for record in snap.records:
        assert record.doc_hash != "" and not record.pending_gc, record
        assert len(snap.chunks_of(record)) == record.chunk_count, record.path
    assert len(snap.points) == sum(r.chunk_count for r in snap.records)
    for point in snap.points:
        owner = by_id.get(point.doc_id)
        assert owner is not None, point.path
        assert point.doc_hash == owner.doc_hash, point.path
    keys = Counter((p.doc_id, p.chunk_index) for p in snap.points)
    assert all(n == 1 for n in keys.values())


# -- the command line in this process ----------------------------------------------------------

CliRun = Callable[..., tuple[int, str, str]]


def cli_runner(
    workdir: Path,
    store_dir: Path,
    embedder: Embedder,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    **env: str,
) -> CliRun:
    """`python -m ingest ARGS` run in this process on `store_dir` with the shared embedder;
    returns (exit code, stdout, stderr)."""
    from ingest import cli, pipeline

    for key in list(os.environ):
        if key.startswith(("KB_", "QDRANT_")):
            monkeypatch.delenv(key)
    monkeypatch.chdir(workdir)  # no kb.toml of the developer's
    monkeypatch.setenv("KB_QDRANT_PATH", str(store_dir))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(pipeline, "Embedder", lambda settings: embedder)

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = cli.main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run
