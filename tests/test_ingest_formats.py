"""Every supported format goes in with its provenance: paths, title, page, heading path, chunk
index, character span into the parsed document's text, and the document's content hash."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ingest.chunking import document_text
from ingest.pipeline import IngestReport, ingest, version_hash
from ingest.readers import read_document
from rag.embeddings import Embedder
from rag.settings import Settings
from rag.store import DocRecord, doc_id_for
from tests.ingest_fixtures import (
    DOCX_TITLE,
    PDF_TITLE,
    StoreSnapshot,
    build_corpus,
    make_settings,
    snapshot,
)


@dataclass
class Ingested:
    root: Path
    files: dict[str, Path]
    settings: Settings
    report: IngestReport
    snap: StoreSnapshot

    def record(self, kind: str) -> DocRecord:
        doc_id = doc_id_for(str(self.files[kind].resolve()))
        (record,) = [r for r in self.snap.records if r.doc_id == doc_id]
        return record

    def chunks(self, kind: str) -> list[dict[str, Any]]:
        points = self.snap.chunks_of(self.record(kind))
        return [p.payload for p in sorted(points, key=lambda p: p.payload["chunk_index"])]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Ingested:
    base = tmp_path_factory.mktemp("formats")
    root = base / "corpus"
    files = build_corpus(root)
    settings = make_settings(base / "store")
    report = ingest(settings, [root], embedder=embedder)
    return Ingested(root, files, settings, report, snapshot(settings))


KINDS = ("pdf", "docx", "pptx", "html", "md", "txt", "csv", "epub")


def test_every_format_is_ingested(corpus: Ingested) -> None:
    assert corpus.report.failed == []
    assert corpus.report.added == len(KINDS)
    assert sorted(r.path for r in corpus.snap.records) == sorted(
        path.relative_to(corpus.root).as_posix() for path in corpus.files.values()
    )
    assert corpus.report.chunks_written == len(corpus.snap.points)


@pytest.mark.parametrize("kind", KINDS)
def test_chunk_provenance(corpus: Ingested, kind: str) -> None:
    path = corpus.files[kind]
    data = path.read_bytes()
    parsed = read_document(path, data)
    text = document_text(parsed)
    record = corpus.record(kind)
    chunks = corpus.chunks(kind)

    assert record.doc_hash == version_hash(data, corpus.settings)
    assert record.chunk_count == len(chunks) > 0
    assert record.title == parsed.title
    assert [c["chunk_index"] for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert chunk["path"] == path.relative_to(corpus.root).as_posix()
        assert chunk["abs_path"] == str(path.resolve())
        assert chunk["doc_id"] == record.doc_id
        assert chunk["doc_hash"] == record.doc_hash
        assert chunk["title"] == parsed.title
        assert text[chunk["char_start"] : chunk["char_end"]] == chunk["text"]
        assert chunk["n_tokens"] > 0
        assert str(path.resolve().parent) in chunk["dirs"]
    # the chunks cover the document in order
    starts = [c["char_start"] for c in chunks]
    assert starts == sorted(starts)


def test_pdf_chunks_carry_page_numbers(corpus: Ingested) -> None:
    chunks = corpus.chunks("pdf")
    assert corpus.record("pdf").title == PDF_TITLE
    pages = {marker: c["page"] for c in chunks for marker in ("quillfeather", "driftanchor",
             "saltmeadow") if marker in c["text"]}  # fmt: skip
    assert pages == {"quillfeather": 1, "driftanchor": 2, "saltmeadow": 3}


def test_docx_headings_become_the_heading_path(corpus: Ingested) -> None:
    chunks = corpus.chunks("docx")
    assert corpus.record("docx").title == DOCX_TITLE
    by_text = {c["text"].split(".")[0]: c["headings"] for c in chunks}
    assert by_text == {
        "The station has two boats": ["Boats"],
        "Each engine is serviced every spring": ["Boats", "Engines"],
        "Lifejackets are worn at all times on the water": ["Safety"],
    }


def test_pptx_slides_are_pages_with_their_title_as_heading(corpus: Ingested) -> None:
    chunks = corpus.chunks("pptx")
    assert corpus.record("pptx").title == "Season Briefing"
    assert [(c["page"], c["headings"]) for c in chunks] == [(1, ["Arrival"]), (2, ["Departure"])]
    assert {c["page_kind"] for c in chunks} == {"slide"}
    assert {c["page_kind"] for c in corpus.chunks("pdf")} == {"page"}
    assert chunks[0]["text"] == "Arrivals are met at the jetty by the station leader."


def test_html_headings_and_no_script(corpus: Ingested) -> None:
    chunks = corpus.chunks("html")
    assert corpus.record("html").title == "Emergency Card"
    assert [c["headings"] for c in chunks] == [["Fire"], ["Fire", "Muster point"], ["Medical"]]
    assert not any("never indexed" in c["text"] or "color" in c["text"] for c in chunks)


def test_markdown_heading_path(corpus: Ingested) -> None:
    chunks = corpus.chunks("md")
    assert corpus.record("md").title == "Station Handbook"
    assert [c["headings"] for c in chunks] == [[], ["Meals"], ["Meals", "Allergies"],
                                               ["Quiet hours"]]  # fmt: skip
    assert chunks[2]["text"] == "Tell the cook about allergies on your first day."


def test_plain_text_and_csv(corpus: Ingested) -> None:
    (txt,) = corpus.chunks("txt")
    assert corpus.record("txt").title == "travel"
    assert "Nobody travels alone" in txt["text"]
    (csv,) = corpus.chunks("csv")
    assert csv["text"].split("\n\n") == [  # a row a paragraph
        "item: snowshoes; location: store room; count: 12",
        "item: radios; location: comms office; count: 8",
    ]


def test_epub_chapters_in_reading_order_without_the_table_of_contents(corpus: Ingested) -> None:
    chunks = corpus.chunks("epub")
    assert corpus.record("epub").title == "Island Stories"
    assert [(c["headings"], c["text"]) for c in chunks] == [
        (["The Lighthouse"], "The lighthouse keeper counted ships every night."),
        (["The Harbour"], "Fishing boats returned to the harbour before the storm."),
    ]


@pytest.mark.parametrize(
    ("text", "encoding", "sure"),
    [
        ("שלום עולם, זהו קובץ קצר בעברית.", "cp1255", False),  # read as another code page
        ("Merhaba dünya, bu kısa bir Türkçe dosyadır. Şişli'de oturuyorum.", "cp1254", False),
        ("Café au lait, crème brûlée.", "cp1252", True),
        ("Это длинный текст о погоде, о море и о городе, и о кораблях. " * 30, "cp1251", True),
    ],
)
def test_an_unsure_code_page_guess_is_named(text: str, encoding: str, sure: bool) -> None:
    parsed = read_document(Path("note.txt"), text.encode(encoding))
    guessed = parsed.notes.guessed_encoding
    assert (guessed is None) == sure, guessed
    if sure:
        assert parsed.sections[0].text.strip() == text.strip()


@pytest.mark.parametrize(
    ("name", "wrap"),
    [
        ("table.csv", lambda text: f"Name;Note\nA;{text}\n"),
        ("page.html", lambda text: f"<html><body><p>{text}</p></body></html>"),
    ],
)
def test_a_csv_or_html_file_names_an_unsure_code_page_guess(name: str, wrap) -> None:
    unsure = wrap("Merhaba dünya, bu kısa bir Türkçe dosyadır. Şişli'de oturuyorum.")
    assert read_document(Path(name), unsure.encode("cp1254")).notes.guessed_encoding
    sure = wrap("Café au lait, crème brûlée, Größe der Maßnahme.")
    assert read_document(Path(name), sure.encode("cp1252")).notes.guessed_encoding is None


def test_an_html_page_that_declares_its_charset_is_no_guess() -> None:
    page = '<html><head><meta charset="windows-1254"></head><body><p>Şişli dünya</p></body></html>'
    parsed = read_document(Path("page.html"), page.encode("cp1254"))
    assert parsed.notes.guessed_encoding is None
    assert "Şişli dünya" in parsed.sections[0].text


def test_the_report_names_a_text_file_whose_encoding_was_guessed() -> None:
    from ingest.notes import reading_notes

    report = IngestReport(unsure_encodings=[{"path": "he/short.txt", "encoding": "cp1251"}])
    [line] = reading_notes(report)
    assert line.startswith("check: he/short.txt: read as cp1251") and "UTF-8" in line
    assert report.as_json()["unsure_encodings"] == report.unsure_encodings
