"""Tables stay tables: CSV and spreadsheet rows are never split between chunks and carry their
column headers; a row too long for one chunk is split by cells, each part keeping the row's
key; one bad row fails alone. XLSX sheets and e-mail messages with attachments are read."""

from __future__ import annotations

import io
import zipfile
from email.message import EmailMessage
from pathlib import Path

import pytest

from ingest.chunking import ChunkLimits, chunk_document
from ingest.pipeline import ingest
from ingest.readers import UnreadableFile, read_document
from rag.embeddings import Embedder
from tests.ingest_fixtures import make_settings, snapshot

HEADER = ["id", "name", "city", "phone"]
CITIES = ["Oslo", "Bergen", "Tromsø", "Bodø", "Ålesund"]


def people_csv(count: int) -> str:
    rows = [",".join(HEADER)]
    rows += [f"{i},Person {i},{CITIES[i % 5]},+47 555 {i:04d}" for i in range(1, count + 1)]
    return "\n".join(rows) + "\n"


def chunks_of(embedder: Embedder, name: str, data: bytes, size: int = 64) -> list:
    parsed = read_document(Path(name), data)
    limits = ChunkLimits(size, 0, embedder.max_tokens)
    return chunk_document(parsed, limits, embedder.count_tokens, embedder.token_offsets)


def test_csv_rows_are_never_split_and_each_names_its_columns(embedder: Embedder) -> None:
    chunks = chunks_of(embedder, "people.csv", people_csv(60).encode())
    assert len(chunks) > 5
    lines = [line for chunk in chunks for line in chunk.text.split("\n\n")]
    assert lines == [
        f"id: {i}; name: Person {i}; city: {CITIES[i % 5]}; phone: +47 555 {i:04d}"
        for i in range(1, 61)
    ]
    assert all(chunk.n_tokens <= 64 for chunk in chunks)


def test_a_row_too_long_for_a_chunk_is_split_by_cells_keeping_its_key(
    tmp_path: Path, embedder: Embedder
) -> None:
    story = " ".join(f"word{i}" for i in range(150))
    text = 'id,name,notes,city\n1,Ann,short,Oslo\n2,Bo,"' + story + '",Bergen\n3,Cy,short,Bodø\n'
    chunks = chunks_of(embedder, "notes.csv", text.encode())
    parts = [c for c in chunks if c.split_row is not None]
    assert len(parts) >= 2 and {c.split_row for c in parts} == {3}
    for part in parts:
        assert part.headings == ("row 3: id: 2",)
        assert "row 3: id: 2" in part.embed_text and len(part.embed_text) > len(part.text)
        assert "id: 2" not in part.text  # the key is in the heading, not repeated in the text
    joined = " ".join(part.text for part in parts)
    assert joined.count("word") == 150 and "city: Bergen" in joined
    whole = [c.text for c in chunks if c.split_row is None]
    assert "id: 1; name: Ann; notes: short; city: Oslo" in whole[0]
    assert any("id: 3; name: Cy" in text for text in whole)

    root = tmp_path / "docs"
    root.mkdir()
    (root / "notes.csv").write_text(text, encoding="utf-8")
    report = ingest(make_settings(tmp_path / "store"), [root], embedder=embedder)
    assert report.rows_split == 1


def test_an_oversized_field_fails_only_its_row(tmp_path: Path, embedder: Embedder) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    huge = "y" * 140_000
    (root / "log.csv").write_text(f'id,notes\n1,first\n2,"{huge}"\n3,third\n', encoding="utf-8")
    settings = make_settings(tmp_path / "store")
    report = ingest(settings, [root], embedder=embedder)
    assert report.added == 1 and not report.failed
    assert report.failed_rows == [
        {
            "path": "log.csv",
            "row": "row 3",
            "reason": "a field is over 128 KiB, the most a cell can hold",
        }
    ]
    text = " ".join(p.text for p in snapshot(settings).points)
    assert "notes: first" in text and "notes: third" in text


def test_a_german_excel_csv_reads() -> None:
    text = "Name;Straße;Preis\nMüller;Hauptstraße 5;3,50 €\nGrün;Öl-Weg 2;4,20 €\n"
    parsed = read_document(Path("preise.csv"), text.encode("cp1252"))
    assert parsed.sections[0].text.split("\n\n") == [
        "Name: Müller; Straße: Hauptstraße 5; Preis: 3,50 €",
        "Name: Grün; Straße: Öl-Weg 2; Preis: 4,20 €",
    ]


def workbook_bytes() -> bytes:
    """Two sheets and an empty one; D2 is a formula whose cached value (6) Excel wrote."""
    import openpyxl

    book = openpyxl.Workbook()
    prices = book.active
    prices.title = "Prices"
    prices.append(["item", "price", "qty", "total"])
    prices.append(["apple", 2, 3, "=B2*C2"])
    prices.append(["pear", 1.5, None, None])
    staff = book.create_sheet("Staff")
    staff.append([None])
    staff.append(["name", "role"])
    staff.append(["Ole Brandt", "mechanic"])
    book.create_sheet("Empty")
    buffer = io.BytesIO()
    book.save(buffer)
    return _with_cached_value(buffer.getvalue(), "xl/worksheets/sheet1.xml", "D2", "6")


def _with_cached_value(data: bytes, member: str, cell: str, value: str) -> bytes:
    """Excel keeps a formula's last result beside it; openpyxl writes none, so add it."""
    source, out = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for item in source.infolist():
            content = source.read(item.filename)
            if item.filename == member:
                xml = content.decode()
                start = xml.index(f'<c r="{cell}"')
                end = xml.index("</c>", start)
                formula = xml[start:end]
                xml = xml[:start] + formula.replace("<v></v>", "").replace("<v />", "")
                xml = xml + f"<v>{value}</v>" + content.decode()[end:]
                content = xml.encode()
            target.writestr(item, content)
    return out.getvalue()


def test_xlsx_sheets_rows_with_headers_and_cached_formula_values() -> None:
    parsed = read_document(Path("shop.xlsx"), workbook_bytes())
    assert [(s.headings, s.text) for s in parsed.sections] == [
        (["sheet Prices"], "item: apple; price: 2; qty: 3; total: 6\n\nitem: pear; price: 1.5"),
        (["sheet Staff"], "name: Ole Brandt; role: mechanic"),
    ]
    assert parsed.sections[1].rows[0].number == 3  # the sheet's own row number
    assert parsed.notes.skipped_parts == ["sheet Empty: empty"]
    with pytest.raises(UnreadableFile, match="XLSX"):
        read_document(Path("broken.xlsx"), b"PK\x03\x04 not really a workbook")


def test_xlsx_formula_cells_never_computed_are_named_in_the_notes() -> None:
    import openpyxl

    book = openpyxl.Workbook()
    stock = book.active
    stock.title = "Stock"
    stock.append(["Item", "Qty", "Price", "Total"])
    for row, (item, qty) in enumerate((("Bolts", 5), ("Nuts", 7), ("Washers", 2)), start=2):
        stock.append([item, qty, 3, f"=B{row}*C{row}"])  # openpyxl stores no computed value
    buffer = io.BytesIO()
    book.save(buffer)

    parsed = read_document(Path("stock.xlsx"), buffer.getvalue())
    assert parsed.sections[0].text.startswith("Item: Bolts; Qty: 5; Price: 3\n\n")
    [note] = parsed.notes.skipped_parts
    assert note.startswith("sheet Stock: 3 formula cell(s) with no saved value")
    assert "spreadsheet program" in note


def message_bytes() -> bytes:
    message = EmailMessage()
    message["Subject"] = "Gate code for the boat house"
    message["From"] = "Ann Berg <ann@example.org>"
    message["To"] = "crew@example.org"
    message["Date"] = "Mon, 30 Nov 2026 10:00:00 +0100"
    message.set_content("Hi all,\n\nthe gate code is 4711 from Monday.\n\nAnn")
    message.add_alternative("<p>Hi all,</p><p>the gate code is <b>4711</b> from Monday.</p>",
                            subtype="html")  # fmt: skip
    message.add_attachment(
        b"# Boat rota\n\nOle takes the boat on Tuesdays.\n",
        maintype="text", subtype="markdown", filename="rota.md",
    )  # fmt: skip
    message.add_attachment(
        b"\x89PNG\r\n\x1a\n", maintype="image", subtype="png", filename="map.png"
    )
    return message.as_bytes()


def test_an_email_is_one_document_with_its_readable_attachments(
    tmp_path: Path, embedder: Embedder
) -> None:
    parsed = read_document(Path("gate.eml"), message_bytes())
    assert parsed.title == "Gate code for the boat house"
    envelope, body, attachment = parsed.sections
    assert "From: Ann Berg <ann@example.org>" in envelope.text
    assert "Date: Mon, 30 Nov 2026 10:00:00 +0100" in envelope.text
    assert "the gate code is 4711 from Monday." in body.text and "<p>" not in body.text
    assert attachment.headings == ["attachment rota.md"]
    assert attachment.text == "Ole takes the boat on Tuesdays."
    assert parsed.notes.skipped_parts == ["attachment map.png (image/png): not a format kb reads"]

    root = tmp_path / "mail"
    root.mkdir()
    (root / "gate.eml").write_bytes(message_bytes())
    settings = make_settings(tmp_path / "store")
    report = ingest(settings, [root], embedder=embedder)
    assert report.skipped_parts == [
        {"path": "gate.eml", "part": "attachment map.png (image/png): not a format kb reads"}
    ]
    points = snapshot(settings).points
    assert {p.path for p in points} == {"gate.eml"}  # one document: one delete removes all
    assert any("Tuesdays" in p.text for p in points)


def test_the_command_line_names_what_reading_left_out() -> None:
    from ingest.notes import reading_notes
    from ingest.pipeline import IngestReport

    report = IngestReport(
        ocr_pages=[{"path": "scan.pdf", "pages": [1, 2]}],
        unread_pages=[{"path": "scan.pdf", "page": 3, "reason": "no text layer, and OCR is off"}],
        failed_rows=[{"path": "log.csv", "row": "row 3", "reason": "a field is over 128 KiB"}],
        skipped_parts=[{"path": "gate.eml", "part": "attachment map.png (image/png)"}],
        rows_split=2,
    )
    assert reading_notes(report) == [
        "read by OCR: scan.pdf: pages 1, 2",
        "unread: scan.pdf, page 3: no text layer, and OCR is off",
        "row failed: log.csv, row 3: a field is over 128 KiB",
        "not read: gate.eml: attachment map.png (image/png)",
        "2 table rows too long for one chunk were split by cells",
    ]
    one = IngestReport(
        ocr_pages=[{"path": "scan.pdf", "pages": [4]}],
        skipped_paths=[{"path": "tool.exe", "reason": "not a format kb reads"}],
        rows_split=1,
    )
    assert reading_notes(one) == [
        "read by OCR: scan.pdf: page 4",
        "not read: 1 .exe file, a format kb does not read",
        "1 table row too long for one chunk was split by cells",
    ]


def test_a_table_passage_shows_its_rows_apart_with_their_headers(embedder: Embedder) -> None:
    """What the user sees of a CSV or XLSX passage: in the app's sources (Markdown) each row is
    a paragraph of its own, and `rag ask --search` sets rows apart; what is embedded keeps
    every cell's column header."""
    from markdown_it import MarkdownIt

    from rag.cli import one_line_preview
    from ui.plain import escape_markdown

    for name, data in (("people.csv", people_csv(3).encode()), ("shop.xlsx", workbook_bytes())):
        (chunk, *_) = chunks_of(embedder, name, data, size=128)
        rows = chunk.text.split("\n\n")
        shown = MarkdownIt().render(escape_markdown(chunk.text))
        assert shown.count("<p>") == len(rows) > 1, shown
        assert one_line_preview(chunk.text) == " / ".join(rows)
        assert all(row in chunk.embed_text for row in rows)
    assert rows[0] == "item: apple; price: 2; qty: 3; total: 6"
