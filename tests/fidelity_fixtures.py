"""Small files that reproduce how readers lose or misplace text (issue 11), built by the tests.

Each writer returns the file's bytes (or writes the file) with a marker word per fact, so a test
can say where that fact must land: its text, heading path, page or slide.
"""

from __future__ import annotations

import base64
import io
import random
from collections.abc import Sequence
from pathlib import Path

from tests.ingest_fixtures import write_pdf

# -- encodings --------------------------------------------------------------------------------

CP1252_TEXT = "Delivery is free — within the EU — for orders over 50€. Café opens at 8.\n"
CP1252_MARKDOWN = "# Price list\n\nThe discount — 10% — ends in März.\n"
UTF16_TEXT = "Backup report — all 12 volumes verified on Saturday.\r\n"

# -- junk ---------------------------------------------------------------------------------------

JUNK_PROSE = (
    "The archive password is rotated monthly.",
    "Alert: disk nearly full on the backup host.",
    "Logs are kept for ninety days.",
)


def junk_text() -> str:
    """Prose around a base64 attachment, a hex digest run, an xxd dump and escape codes."""
    blob = base64.encodebytes(random.Random(3).randbytes(12_000)).decode()  # 76-char lines
    digest = random.Random(4).randbytes(256).hex()
    dump = "".join(
        f"{offset:08x}: 7f45 4c46 0201 0100 0000 0000 0000 0000  .ELF............\n"
        for offset in range(0, 0x100, 16)
    )
    return (
        f"{JUNK_PROSE[0]}\n\n"
        f"{blob}\n"
        f"\x1b[1;31m{JUNK_PROSE[1]}\x1b[0m\x07\n\n"
        f"{digest}\n\n"
        f"{dump}\n"
        f"\x1b]0;evil title\x07{JUNK_PROSE[2]}\x00\n"
    )


# -- DOCX -------------------------------------------------------------------------------------

W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
_NOTES_XML = (
    '<w:{kind}s xmlns:w="' + W_NS + '">'
    '<w:{kind} w:type="separator" w:id="-1"><w:p><w:r><w:separator/></w:r></w:p></w:{kind}>'
    '<w:{kind} w:id="1"><w:p><w:r><w:t>{text}</w:t></w:r></w:p></w:{kind}>'
    "</w:{kind}s>"
)
_TEXT_BOX_RUN = (
    '<w:r xmlns:w="' + W_NS + '" '
    'xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006" '
    'xmlns:wps="http://schemas.microsoft.com/office/word/2010/wordprocessingShape" '
    'xmlns:v="urn:schemas-microsoft-com:vml">'
    '<mc:AlternateContent><mc:Choice Requires="wps"><w:drawing><wps:wsp><wps:txbx>'
    "<w:txbxContent><w:p><w:r><w:t>{text}</w:t></w:r></w:p></w:txbxContent>"
    "</wps:txbx></wps:wsp></w:drawing></mc:Choice>"
    "<mc:Fallback><w:pict><v:shape><v:textbox>"
    "<w:txbxContent><w:p><w:r><w:t>{text}</w:t></w:r></w:p></w:txbxContent>"
    "</v:textbox></v:shape></w:pict></mc:Fallback></mc:AlternateContent></w:r>"
)

DOCX_FACTS = {
    "intro": "The contract covers the harbour cranes.",
    "price_row": ("Crane hire", "900 EUR per day"),
    "support": "Support calls are answered within four hours.",
    "nested": "Nested clause: weekend surcharge applies.",
    "merged": "Merged heading for both columns",
    "header": "Northwind Ltd internal use",
    "footer": "Footer: printed copies are uncontrolled",
    "footnote": "Except on public holidays, when the rate doubles.",
    "endnote": "Endnote: prices exclude VAT.",
    "text_box": "Boxed warning: cranes stop at wind force 7.",
    "comment": "Reviewer asks to confirm the night rate.",
    "alt_text": "Photo of crane number four at the quay",
    "content_control": "Content control: deliveries go to pier 4.",
}


def _png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (8, 8), "white").save(out, format="PNG")
    return out.getvalue()


def write_rich_docx(path: Path) -> Path:
    """A DOCX whose text lives in every place Word keeps text (see DOCX_FACTS)."""
    import docx
    from docx.opc.constants import CONTENT_TYPE as CT
    from docx.opc.constants import RELATIONSHIP_TYPE as RT
    from docx.opc.packuri import PackURI
    from docx.opc.part import Part
    from docx.oxml import parse_xml

    facts = DOCX_FACTS
    document = docx.Document()
    section = document.sections[0]
    section.header.paragraphs[0].text = facts["header"]
    section.footer.paragraphs[0].text = facts["footer"]
    document.add_heading("Overview", level=1)
    intro = document.add_paragraph(facts["intro"])
    document.add_comment(intro.runs, text=facts["comment"], author="Reviewer")
    document.add_heading("Pricing", level=1)
    table = document.add_table(rows=3, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "Service", "Rate"
    table.rows[1].cells[0].text, table.rows[1].cells[1].text = facts["price_row"]
    merged = table.rows[2].cells[0].merge(table.rows[2].cells[1])
    merged.text = facts["merged"]
    inner = table.rows[1].cells[1].add_table(rows=1, cols=1)
    inner.rows[0].cells[0].text = facts["nested"]
    note = document.add_paragraph("Rates are fixed for the year.")
    note._p.append(parse_xml(_TEXT_BOX_RUN.format(text=facts["text_box"])))
    document.add_picture(io.BytesIO(_png()))
    document.inline_shapes[0]._inline.docPr.set("descr", facts["alt_text"])
    document.add_section()  # its header and footer are linked to the first: read once
    document.add_heading("Support", level=1)
    document.add_paragraph(facts["support"])
    control = parse_xml(
        f'<w:sdt xmlns:w="{W_NS}"><w:sdtPr/><w:sdtContent><w:p><w:r>'
        f"<w:t>{facts['content_control']}</w:t></w:r></w:p></w:sdtContent></w:sdt>"
    )
    document.element.body.sectPr.addprevious(control)
    for kind, content_type, relation, text in (
        ("footnote", CT.WML_FOOTNOTES, RT.FOOTNOTES, facts["footnote"]),
        ("endnote", CT.WML_ENDNOTES, RT.ENDNOTES, facts["endnote"]),
    ):
        blob = _NOTES_XML.format(kind=kind, text=text).encode()
        part = Part(PackURI(f"/word/{kind}s.xml"), content_type, blob, document.part.package)
        document.part.relate_to(part, relation)
    document.save(str(path))
    return path


# -- PPTX -------------------------------------------------------------------------------------

PPTX_FACTS = {
    "slide1": "Revenue grew in every region.",
    "table_cell": "Quarterly target 42 units",
    "group_a": "Grouped box: ferry schedule",
    "group_b": "Nested group: crew roster",
    "notes": "Remember to demo the booking screen.",
    "alt_text": "Chart of bookings by month",
    "chart": "Bookings per quarter",
}


def write_rich_pptx(path: Path) -> Path:
    """Slide 1: title and text; slide 2: only a table; slide 3: groups, notes and a picture."""
    from pptx import Presentation
    from pptx.chart.data import CategoryChartData
    from pptx.enum.chart import XL_CHART_TYPE
    from pptx.util import Inches

    facts = PPTX_FACTS
    deck = Presentation()
    first = deck.slides.add_slide(deck.slide_layouts[1])
    first.shapes.title.text = "Results"
    first.placeholders[1].text = facts["slide1"]
    blank = deck.slide_layouts[6]
    second = deck.slides.add_slide(blank)
    table = second.shapes.add_table(2, 2, Inches(1), Inches(1), Inches(6), Inches(2)).table
    table.cell(0, 0).text, table.cell(0, 1).text = "Measure", "Value"
    table.cell(1, 0).text, table.cell(1, 1).text = "Target", facts["table_cell"]
    third = deck.slides.add_slide(blank)
    group = third.shapes.add_group_shape()
    group.shapes.add_textbox(Inches(1), Inches(1), Inches(3), Inches(1)).text = facts["group_a"]
    inner = group.shapes.add_group_shape()
    inner.shapes.add_textbox(Inches(1), Inches(3), Inches(3), Inches(1)).text = facts["group_b"]
    picture = third.shapes.add_picture(io.BytesIO(_png()), Inches(5), Inches(1))
    picture._element.nvPicPr.cNvPr.set("descr", facts["alt_text"])
    third.notes_slide.notes_text_frame.text = facts["notes"]
    data = CategoryChartData()
    data.categories = ["Q1", "Q2"]
    data.add_series("Bookings", (12, 30))
    chart = third.shapes.add_chart(
        XL_CHART_TYPE.COLUMN_CLUSTERED, Inches(1), Inches(4), Inches(4), Inches(2), data
    ).chart
    chart.has_title = True
    chart.chart_title.text_frame.text = facts["chart"]
    deck.save(str(path))
    return path


# -- HTML -------------------------------------------------------------------------------------

HTML_BOILERPLATE = ("Home / Events / Log in", "Follow us", "We use cookies", "Accept all")
HTML_PAGE = """<!doctype html>
<html><head><title>Harbour Festival</title></head><body>
<header><a href="/">Harbour</a><nav><ul><li><a href="/">Home</a> / </li><li><a href="/e">Events</a>
 / </li><li><a href="/login">Log in</a></li></ul></nav></header>
<div id="cookie-banner" class="cookie-consent">We use cookies to improve the site.
 <button>Accept all</button></div>
<main>
<h1>Harbour Festival</h1>
<div class="lead">The festival opens on the first Saturday of June at the old quay.</div>
<h2>Programme</h2>
<p>Boat parades start at noon and the lantern walk at nine.</p>
<img src="map.png" alt="Map of the festival grounds"><img src="x.gif" alt="">
<div>Entry is free for children under twelve.<div>Dogs must be kept on a lead.</div></div>
<h2>Prices</h2>
<table><thead><tr><th>Ticket</th><th>Price</th></tr></thead>
<tbody><tr><td>Adult day pass</td><td>15 EUR</td></tr>
<tr><td>Family pass</td><td>40 EUR</td></tr></tbody></table>
</main>
<footer><p>Follow us on social media</p><p>&copy; Harbour Town</p></footer>
</body></html>
"""


def large_html_page(sections: int = 200) -> str:
    """A long article page with the same boilerplate around it (for measuring readers)."""
    body = "".join(
        f"<h2>Section {n}</h2><p>Paragraph {n} tells how boat {n} was repaired in "
        f"winter {1900 + n}, with {n * 3} planks replaced.</p>"
        for n in range(sections)
    )
    return HTML_PAGE.replace("<h2>Programme</h2>", body + "<h2>Programme</h2>")


# -- PDF --------------------------------------------------------------------------------------

PDF_RUNNING_HEADER = "Northwind Ltd – Service Agreement"
PDF_BODY = (
    "The o\ufb03ce is on the \ufb01rst \ufb02oor of the harbour building.",
    "Payment is due within thirty days of the invoice date.",
    "Either party may end the agreement with three months notice.",
    "Disputes are settled by the court of Bergen.",
)
DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def write_running_header_pdf(
    path: Path, title: str = "untitled", bodies: Sequence[str] = PDF_BODY
) -> Path:
    """A page per body (four by default), each with the same running header and a "- n -"
    page-number footer."""
    from fpdf import FPDF

    class Paged(FPDF):
        def header(self) -> None:
            self.set_font("dejavu", size=9)
            self.cell(0, 8, PDF_RUNNING_HEADER, new_x="LMARGIN", new_y="NEXT")

        def footer(self) -> None:
            self.set_y(-15)
            self.set_font("dejavu", size=9)
            self.cell(0, 8, f"- {self.page_no()} -", align="C")

    pdf = Paged()
    pdf.add_font("dejavu", fname=str(DEJAVU))
    pdf.set_title(title)
    for text in bodies:
        pdf.add_page()
        pdf.set_font("dejavu", size=12)
        pdf.multi_cell(0, 8, text)
    path.write_bytes(bytes(pdf.output()))
    return path


PDF_COMMENT = "Check the permit number against the register."
PDF_FORM_FIELDS = {"applicant": "Ingrid Solberg", "permit_no": "HX-4471"}


def write_form_pdf(path: Path) -> Path:
    """A one-page PDF with two filled text fields (an AcroForm), added with pypdf."""
    from pypdf import PdfReader, PdfWriter
    from pypdf.generic import (
        ArrayObject,
        DictionaryObject,
        FloatObject,
        NameObject,
        TextStringObject,
    )

    plain = write_pdf(path, pages=("Permit application form. Fill in every field.",), title=None)
    writer = PdfWriter(clone_from=PdfReader(plain))
    fields = ArrayObject()
    annotations = ArrayObject()
    for number, (name, value) in enumerate(PDF_FORM_FIELDS.items()):
        top = 700 - 40 * number
        field = DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Annot"),
                NameObject("/Subtype"): NameObject("/Widget"),
                NameObject("/FT"): NameObject("/Tx"),
                NameObject("/T"): TextStringObject(name),
                NameObject("/V"): TextStringObject(value),
                NameObject("/Rect"): ArrayObject(
                    [FloatObject(100), FloatObject(top), FloatObject(300), FloatObject(top + 20)]
                ),
            }
        )
        reference = writer._add_object(field)
        fields.append(reference)
        annotations.append(reference)
    note = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Annot"),
            NameObject("/Subtype"): NameObject("/Text"),
            NameObject("/Contents"): TextStringObject(PDF_COMMENT),
            NameObject("/Rect"): ArrayObject(
                [FloatObject(400), FloatObject(700), FloatObject(420), FloatObject(720)]
            ),
        }
    )
    annotations.append(writer._add_object(note))
    writer.pages[0][NameObject("/Annots")] = annotations
    writer._root_object[NameObject("/AcroForm")] = DictionaryObject({NameObject("/Fields"): fields})
    with path.open("wb") as handle:
        writer.write(handle)
    return path
