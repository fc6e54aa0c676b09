"""Documents read as their authors wrote them (issue 11): each fixture reproduces a way readers
lose or misplace text, and the right text and place for it is asserted."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from ingest.readers import ParsedDocument, Section, read_document
from tests.fidelity_fixtures import (
    CP1252_MARKDOWN,
    CP1252_TEXT,
    DOCX_FACTS,
    HTML_BOILERPLATE,
    HTML_PAGE,
    JUNK_PROSE,
    PDF_BODY,
    PDF_COMMENT,
    PDF_FORM_FIELDS,
    PDF_RUNNING_HEADER,
    PPTX_FACTS,
    UTF16_TEXT,
    junk_text,
    large_html_page,
    write_form_pdf,
    write_rich_docx,
    write_rich_pptx,
    write_running_header_pdf,
)


def read(path: Path) -> ParsedDocument:
    return read_document(path, path.read_bytes())


def all_text(parsed: ParsedDocument) -> str:
    return "\n".join(section.text for section in parsed.sections)


def sections_with(parsed: ParsedDocument, words: str) -> list[Section]:
    return [s for s in parsed.sections if words in " ".join(s.text.split())]


def one_section_with(parsed: ParsedDocument, words: str) -> Section:
    found = sections_with(parsed, words)
    assert len(found) == 1, (words, [s.text for s in parsed.sections])
    return found[0]


def occurrences(parsed: ParsedDocument, words: str) -> int:
    return " ".join(all_text(parsed).split()).count(words)


# -- encodings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "encoding"),
    [
        ("ansi.txt", CP1252_TEXT, "cp1252"),
        ("ansi.md", CP1252_MARKDOWN, "cp1252"),
        ("latin1.txt", "Café au lait, crème brûlée.", "latin-1"),
        ("powershell.txt", UTF16_TEXT, "utf-16"),  # with a BOM, little-endian
        ("unicode-text.txt", UTF16_TEXT, "utf-16-be-bom"),
        ("no-bom.txt", UTF16_TEXT, "utf-16-le"),
        ("bom.md", CP1252_MARKDOWN, "utf-8-sig"),
        ("de.txt", "Größe der Maßnahme: äußerst wichtig.", "cp1252"),
        # a new-user trial's note: "à" alone and guillemets, read as Windows-1250 ("ŕ") before
        ("fr.txt", "Le code du coffre à épices est COF-6619 – «Bon appétit».", "cp1252"),
        (
            "ru.txt",
            "Привет, как дела?",
            "cp1251",
        ),
        (
            "pl.txt",
            "Zażółć gęślą jaźń, to jest tekst.",
            "cp1250",
        ),
        (
            "el.txt",
            "Καλημέρα κόσμε",
            "cp1253",
        ),
        (
            "ja.txt",
            "こんにちは、世界。今日は良い天気です。",
            "shift_jis",
        ),
    ],
)
def test_text_in_other_encodings_is_read(
    tmp_path: Path, name: str, text: str, encoding: str
) -> None:
    path = tmp_path / name
    if encoding == "utf-16-be-bom":
        path.write_bytes(b"\xfe\xff" + text.encode("utf-16-be"))
    else:
        path.write_bytes(text.encode(encoding))
    parsed = read(path)
    expected = text.replace("# Price list\n\n", "") if name.endswith(".md") else text
    assert all_text(parsed).strip() == expected.strip().replace("\r\n", "\n")
    if name.endswith(".md"):
        assert parsed.title == "Price list"


def test_binary_behind_a_text_suffix_is_still_refused(tmp_path: Path) -> None:
    from ingest.readers import UnreadableFile

    path = tmp_path / "program.txt"
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 4)
    with pytest.raises(UnreadableFile, match="binary"):
        read(path)


# -- DOCX -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def docx_parsed(tmp_path_factory: pytest.TempPathFactory) -> ParsedDocument:
    return read(write_rich_docx(tmp_path_factory.mktemp("docx") / "contract.docx"))


def test_docx_table_stays_under_its_heading(docx_parsed: ParsedDocument) -> None:
    service, rate = DOCX_FACTS["price_row"]
    row = one_section_with(docx_parsed, service)
    assert row.headings == ["Pricing"]
    assert re.search(rf"Service: {service}\W+Rate: {rate}", row.text), row.text
    order = [docx_parsed.sections.index(one_section_with(docx_parsed, DOCX_FACTS[key]))
             for key in ("intro", "support")]  # fmt: skip
    assert order[0] < docx_parsed.sections.index(row) < order[1]


def test_docx_nested_table_and_merged_cell_read_once(docx_parsed: ParsedDocument) -> None:
    assert one_section_with(docx_parsed, DOCX_FACTS["nested"]).headings == ["Pricing"]
    assert occurrences(docx_parsed, DOCX_FACTS["nested"]) == 1
    assert occurrences(docx_parsed, DOCX_FACTS["merged"]) == 1


@pytest.mark.parametrize("key", ["header", "footer"])
def test_docx_headers_and_footers_once_per_document(docx_parsed: ParsedDocument, key: str) -> None:
    assert occurrences(docx_parsed, DOCX_FACTS[key]) == 1


@pytest.mark.parametrize(
    ("key", "heading"),
    [("footnote", "Footnotes"), ("endnote", "Endnotes"), ("comment", "Comments")],
)
def test_docx_notes_and_comments_are_read_and_marked(
    docx_parsed: ParsedDocument, key: str, heading: str
) -> None:
    assert one_section_with(docx_parsed, DOCX_FACTS[key]).headings == [heading]
    assert occurrences(docx_parsed, DOCX_FACTS[key]) == 1


def test_docx_content_controls_are_read(docx_parsed: ParsedDocument) -> None:
    assert one_section_with(docx_parsed, DOCX_FACTS["content_control"]).headings == ["Support"]


@pytest.mark.parametrize("key", ["text_box", "alt_text"])
def test_docx_text_boxes_and_alt_text_read_once_where_they_stand(
    docx_parsed: ParsedDocument, key: str
) -> None:
    assert one_section_with(docx_parsed, DOCX_FACTS[key]).headings == ["Pricing"]
    assert occurrences(docx_parsed, DOCX_FACTS[key]) == 1


# -- PPTX -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pptx_parsed(tmp_path_factory: pytest.TempPathFactory) -> ParsedDocument:
    return read(write_rich_pptx(tmp_path_factory.mktemp("pptx") / "deck.pptx"))


def test_pptx_places_are_slides(pptx_parsed: ParsedDocument) -> None:
    assert pptx_parsed.page_kind == "slide"
    assert one_section_with(pptx_parsed, PPTX_FACTS["slide1"]).page == 1


def test_pptx_slide_with_only_a_table(pptx_parsed: ParsedDocument) -> None:
    section = one_section_with(pptx_parsed, PPTX_FACTS["table_cell"])
    assert section.page == 2
    assert f"Value: {PPTX_FACTS['table_cell']}" in section.text


@pytest.mark.parametrize("key", ["group_a", "group_b", "alt_text", "chart"])
def test_pptx_groups_and_pictures(pptx_parsed: ParsedDocument, key: str) -> None:
    assert one_section_with(pptx_parsed, PPTX_FACTS[key]).page == 3


def test_pptx_speaker_notes_are_marked(pptx_parsed: ParsedDocument) -> None:
    notes = one_section_with(pptx_parsed, PPTX_FACTS["notes"])
    assert notes.page == 3
    assert notes.headings[-1] == "Speaker notes"
    assert PPTX_FACTS["group_a"] not in notes.text


def test_slides_are_cited_as_slides() -> None:
    from rag.retrieve import Passage

    passage = Passage("d", "deck.pptx", "/deck.pptx", "Deck", ["Results"], 3, [0], 0, 5,
                      "text", 1.0, pages=[3], page_kind="slide")  # fmt: skip
    assert passage.source_label() == "deck.pptx, slide 3, Results"
    passage.pages = [3, 4]
    assert passage.source_label() == "deck.pptx, slides 3-4, Results"


# -- HTML -------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["small", "large"])
def test_html_boilerplate_is_not_content(tmp_path: Path, page: str) -> None:
    path = tmp_path / "festival.html"
    path.write_text(HTML_PAGE if page == "small" else large_html_page(), encoding="utf-8")
    parsed = read(path)
    text = " ".join(all_text(parsed).split())
    for words in HTML_BOILERPLATE:
        assert words not in text
    assert parsed.title == "Harbour Festival"
    assert one_section_with(parsed, "opens on the first Saturday of June").headings == []
    for words in ("Entry is free for children under twelve.", "Dogs must be kept on a lead."):
        assert one_section_with(parsed, words).headings == ["Programme"]
    assert one_section_with(parsed, "Image: Map of the festival grounds").headings == ["Programme"]
    prices = one_section_with(parsed, "Family pass")
    assert prices.headings == ["Prices"]
    assert "Ticket: Adult day pass; Price: 15 EUR" in prices.text
    assert "Ticket: Family pass; Price: 40 EUR" in prices.text


def test_html_page_classes_do_not_hide_the_page(tmp_path: Path) -> None:
    path = tmp_path / "wordpress.html"
    path.write_text(
        '<body class="home has-sidebar cookies-not-set"><div class="site">'
        '<div class="entry"><p>The ferry leaves at nine.</p></div>'
        '<div class="sidebar">Recent posts</div></div></body>',
        encoding="utf-8",
    )
    assert all_text(read(path)) == "The ferry leaves at nine."


# -- PDF --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pdf_parsed(tmp_path_factory: pytest.TempPathFactory) -> ParsedDocument:
    return read(write_running_header_pdf(tmp_path_factory.mktemp("pdf") / "agreement.pdf"))


def test_pdf_ligatures_are_normalized(pdf_parsed: ParsedDocument) -> None:
    first = one_section_with(pdf_parsed, "office is on the first floor")
    assert first.page == 1
    assert not re.search("[\ufb00-\ufb06]", all_text(pdf_parsed))


def test_pdf_running_header_once_and_page_numbers_dropped(pdf_parsed: ParsedDocument) -> None:
    assert occurrences(pdf_parsed, PDF_RUNNING_HEADER) == 1
    assert not re.search(r"-\s*\d\s*-", all_text(pdf_parsed))
    for number, body in enumerate(PDF_BODY[1:], start=2):
        assert one_section_with(pdf_parsed, body).page == number


def test_a_two_page_pdf_has_its_running_header_once_too(tmp_path: Path) -> None:
    # found by a new-user trial: a two-page bulletin kept its header on both pages
    parsed = read(write_running_header_pdf(tmp_path / "bulletin.pdf", bodies=PDF_BODY[:2]))
    assert occurrences(parsed, PDF_RUNNING_HEADER) == 1
    assert not re.search(r"-\s*\d\s*-", all_text(parsed))
    assert one_section_with(parsed, PDF_BODY[1]).page == 2


def test_pdf_placeholder_title_does_not_replace_the_file_name(pdf_parsed: ParsedDocument) -> None:
    assert pdf_parsed.title == "agreement"


def test_pdf_real_metadata_title_is_kept(tmp_path: Path) -> None:
    path = write_running_header_pdf(tmp_path / "a.pdf", title="Harbour Service Agreement")
    assert read(path).title == "Harbour Service Agreement"


def test_pdf_form_fields_and_comments_are_read(tmp_path: Path) -> None:
    parsed = read(write_form_pdf(tmp_path / "permit.pdf"))
    for name, value in PDF_FORM_FIELDS.items():
        assert one_section_with(parsed, f"{name}: {value}").page == 1
    assert one_section_with(parsed, f"Comment: {PDF_COMMENT}").page == 1


# -- junk -------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".txt", ".md", ".log"])
def test_junk_runs_are_skipped_and_counted(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"mail-dump{suffix}"
    path.write_text(junk_text(), encoding="utf-8")
    parsed = read(path)
    text = all_text(parsed)
    assert [line for line in text.splitlines() if line.strip()] == list(JUNK_PROSE)
    assert parsed.junk_runs == 3  # the base64 blob, the hex run, the dump


def test_control_characters_are_removed_from_every_format(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text("<p>Bell\x07 and \x1b[2Jclear screen</p>", encoding="utf-8")
    assert all_text(read(path)) == "Bell and clear screen"


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("\x1b[1;31mred\x1b[0m text", "red text"),
        ("\x1b]0;new title\x07after", "after"),
        ("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "link"),
        ("bell\x07 nul\x00 del\x7f c1\x9b2J", "bell nul del c1"),
        ("tab\tand\nline", "tab\tand\nline"),
    ],
)
def test_escape_sequences_and_control_characters_are_removed(raw: str, clean: str) -> None:
    from rag.control_chars import strip_control

    assert strip_control(raw) == clean


def test_rag_ask_prints_no_escape_codes_from_a_stored_passage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from rag import cli
    from rag.retrieve import Passage

    # a store written before ingest cleaned text can still hold them
    text = "Reset \x1b[2J\x1b]0;pwned\x07the terminal"
    passage = Passage("d", "a\x1b[8m.txt", "/a.txt", "A", [], None, [0], 0, 9, text, 1.0)
    cli._print_search([passage], as_json=False)
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "Reset the terminal" in out


def test_chunks_of_stores_before_slides_read_as_pages() -> None:
    from rag.store import ChunkRecord

    old = {"doc_id": "d", "path": "a.pdf", "abs_path": "/a.pdf", "dirs": ["/"], "title": "A",
           "page": 2, "headings": [], "chunk_index": 0, "char_start": 0, "char_end": 1,
           "doc_hash": "h", "text": "t", "n_tokens": 1}  # fmt: skip
    assert ChunkRecord.from_payload(old).page_kind == "page"


def test_a_new_reader_version_re_reads_every_file(
    tmp_path: Path, embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ingest import pipeline
    from tests.ingest_fixtures import make_settings

    root = tmp_path / "docs"
    root.mkdir()
    (root / "a.md").write_text("# A\n\nThe pier opens at six.\n", encoding="utf-8")
    settings = make_settings(tmp_path / "store")
    assert pipeline.ingest(settings, [root], embedder=embedder).added == 1
    assert pipeline.ingest(settings, [root], embedder=embedder).unchanged == 1
    monkeypatch.setattr(pipeline, "READER_VERSION", "readers-next")
    again = pipeline.ingest(settings, [root], embedder=embedder)
    assert again.updated == 1 and again.unchanged == 0


def test_ingest_reports_junk_and_stores_slides_as_slides(tmp_path: Path, embedder: Any) -> None:
    from ingest.pipeline import ingest
    from rag.retrieve import Passage
    from rag.store import ScoredChunk
    from tests.ingest_fixtures import make_settings, snapshot

    root = tmp_path / "docs"
    root.mkdir()
    (root / "mail-dump.txt").write_text(junk_text(), encoding="utf-8")
    write_rich_pptx(root / "deck.pptx")
    settings = make_settings(tmp_path / "store")
    report = ingest(settings, [root], embedder=embedder)
    assert report.junk_skipped == [{"path": "mail-dump.txt", "runs": 3}]
    assert report.as_json()["junk_skipped"] == report.junk_skipped
    chunks = snapshot(settings).points
    notes = next(c for c in chunks if PPTX_FACTS["notes"] in c.text)
    label = Passage.from_scored(ScoredChunk(notes, 1.0)).source_label()
    assert label == "deck.pptx, slide 3, Speaker notes"
    assert not any("\x1b" in c.text or len(c.text) > 2000 for c in chunks)


def test_docx_tracked_insertions_and_tabs_read_deletions_not(tmp_path: Path) -> None:
    import docx
    from docx.oxml import parse_xml

    w = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
    document = docx.Document()
    paragraph = document.add_paragraph("Name")
    paragraph._p.append(parse_xml(f"<w:r {w}><w:tab/><w:t>Value</w:t></w:r>"))
    inserted = '<w:t xml:space="preserve"> inserted words</w:t>'
    deleted = "<w:delText> deleted words</w:delText>"
    paragraph._p.append(parse_xml(f"<w:ins {w} w:id='1'><w:r>{inserted}</w:r></w:ins>"))
    paragraph._p.append(parse_xml(f'<w:del {w} w:id="2"><w:r>{deleted}</w:r></w:del>'))
    document.save(str(tmp_path / "tracked.docx"))
    assert all_text(read(tmp_path / "tracked.docx")) == "Name Value inserted words"
