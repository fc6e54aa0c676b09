"""Write the sample set's two binary documents: `docs/boating-procedures.docx` (python-docx)
and `docs/research-data-policy.pdf` (fpdf2, two pages or more).

Run `python eval/sample/make_binary_docs.py` after editing the text below, then update any
`evidence` in `qa.jsonl` that quotes a changed sentence. Dates inside the files are fixed so
that a rerun changes nothing a reader sees.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import docx
from docx.document import Document as DocxDocument
from fpdf import FPDF

DOCS_DIR = Path(__file__).resolve().parent / "docs"
DOCX_NAME = "boating-procedures.docx"
PDF_NAME = "research-data-policy.pdf"
FIXED_DATE = datetime(2025, 9, 1, 9, 0, tzinfo=UTC)

# Each document is (heading, paragraphs) pairs; every paragraph is one block of text.
BOATING_TITLE = "Merrow Point Research Station: Boating Procedures"
BOATING_SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "Purpose",
        (
            "Boats are the only way to reach the seabird colonies on the east coast of Kessa "
            "Island and the sampling sites in Soren Bay. These procedures apply to every boat "
            "trip from the station jetty.",
            "The Boating Officer for the 2025-26 season is Rafael Quintero. The Boating Officer "
            "approves every boat trip and keeps the boat log.",
        ),
    ),
    (
        "The boats",
        (
            "The station has two rigid inflatable boats, Skua I and Skua II, each 5.8 m long "
            "with a 90 hp outboard engine.",
            "Each boat carries at most six people, including the coxswain.",
            "Skua I and Skua II always go out together when a trip leaves Soren Bay, so that "
            "each boat can come to the aid of the other.",
        ),
    ),
    (
        "Conditions for boating",
        (
            "Boating is allowed only between 08:00 and 17:00.",
            "No boat leaves the jetty when the wind is above 20 knots or the swell is above 1.5 m.",
            "Sea ice, brash ice or fog closing the mouth of Soren Bay also ends boating for "
            "the day. The coxswain may turn back at any time, and that decision is never "
            "questioned on the water.",
        ),
    ),
    (
        "Coxswains and crew",
        (
            "Every coxswain holds the Institute Boat Handling Certificate at level 2 or above.",
            "New coxswains complete three supervised trips with the Boating Officer before "
            "taking a boat out on their own authority. Passengers attend a boat safety "
            "briefing at the Boat Shed before their first trip of the season.",
        ),
    ),
    (
        "Clothing and equipment",
        (
            "Everyone in a boat wears a dry suit and a lifejacket with crotch straps.",
            "Each boat carries a grab bag with a satellite telephone, a handheld VHF radio, "
            "flares, a first-aid kit, a knife, a torch and drinking water. The grab bag is "
            "checked against its list by the coxswain before every trip.",
        ),
    ),
    (
        "The boat watch",
        (
            "While a boat is on the water, a boat watch is kept in the Comms Office by a "
            "person who is not on the trip.",
            "The boat reports to the boat watch on VHF channel 10 when it leaves the jetty, "
            "every 30 minutes while on the water, and when it is back on its trailer. If a "
            "boat misses a report by 15 minutes, the boat watch sounds the general alarm.",
        ),
    ),
    (
        "Fuel",
        (
            "Boats are refuelled only at the fuel point on the jetty, never on the water.",
            "Spare fuel is carried in sealed 20 litre cans strapped down in the bow. Every "
            "refuelling is entered in the boat log with the amount of fuel taken.",
        ),
    ),
    (
        "After the trip",
        (
            "After every trip the boats are washed with fresh water and the engines flushed.",
            "Any damage or fault is written in the boat log and reported to the Boating "
            "Officer the same day.",
        ),
    ),
)
BOATING_TABLE: tuple[tuple[str, ...], ...] = (
    ("Boat", "Hull", "Engine", "Seats"),
    ("Skua I", "5.8 m", "90 hp", "6"),
    ("Skua II", "5.8 m", "90 hp", "6"),
)

DATA_POLICY_TITLE = "Merrow Point Research Station: Research Data and Sample Policy"
DATA_POLICY_SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "1. Purpose and scope",
        (
            "This policy applies to all data and physical samples collected at Merrow Point "
            "Research Station or anywhere on Kessa Island, by Institute staff and by visiting "
            "scientists alike. It was approved by the Northmarch Polar Institute Science "
            "Board on 11 June 2024 and replaces the data guidelines of 2019. Its aim is that "
            "nothing collected on the island is lost, that every dataset can be found and "
            "understood by others, and that the island's environment is protected.",
            "The Station Data Manager, Joel Ambrose, answers questions about this policy on "
            "station and keeps the Station Data Catalogue. Questions that the Data Manager "
            "cannot settle go to the Institute's Head of Data Services in Port Ellery.",
        ),
    ),
    (
        "2. Registering datasets",
        (
            "Every dataset must be registered in the Station Data Catalogue within 30 days "
            "of collection. A registration records the project code, the principal "
            "investigator, the instruments used, the location of the data on the station "
            "server and the permit under which the data were collected. Datasets that are "
            "still growing, such as the records of the automatic weather station, are "
            "registered once and updated at the end of each month.",
            "A project code is issued by the Data Manager when a project first arrives on "
            "station. It has three letters and two digits, for example SBE07 for the seventh "
            "seabird ecology project.",
        ),
    ),
    (
        "3. File names",
        (
            "Data files are named MPS_<project code>_<date as YYYYMMDD>_<sequence number>, "
            "followed by the usual file extension. For example, the third file recorded by "
            "project SBE07 on 5 December 2025 is MPS_SBE07_20251205_003.csv. Spaces and "
            "characters other than letters, digits, hyphens and underscores are not allowed "
            "in file names on the station server.",
        ),
    ),
    (
        "4. Storage and backups",
        (
            "Raw data are copied to the station server on the day they are collected. The "
            "station server is backed up every night at 02:00 to a second server in the "
            "Comms Office. Once a week, on Wednesday night, the catalogue and all new "
            "datasets smaller than 2 GB are sent to the Institute data centre over the "
            "satellite link.",
            "Before leaving the station, every project must hold its raw data in two copies "
            "on two different media, one of which stays on station until the Data Manager "
            "confirms that the Institute data centre has received the data. Laptops and "
            "personal drives do not count as a copy.",
        ),
    ),
    (
        "5. Physical samples",
        (
            "Biological samples for genetic or chemical analysis are stored in the ultra-low "
            "freezers at minus 80 degrees Celsius in Fulmar Laboratory. Samples that do not "
            "need ultra-low storage go in the chest freezers at minus 20 degrees Celsius. "
            "Every sample tube or bag carries a label with the project code, the date, the "
            "site and a sample number that matches the sample list of the project.",
            "The freezer log is checked and signed twice a day, at 08:00 and at 20:00, by the "
            "person on the freezer rota. If an alarm sounds, the person who hears it calls "
            "the Data Manager, who decides whether samples are moved to the spare freezer.",
            "Samples leave Kessa Island only under an export permit from the Kessa Island "
            "Environmental Authority. Export permits are applied for at least eight weeks "
            "before the ship that will carry the samples. Samples listed under the "
            "convention on endangered species also need a CITES certificate, which the "
            "Institute obtains on behalf of the project.",
        ),
    ),
    (
        "6. Access and embargo",
        (
            "Data collected at the station are published openly through the Institute data "
            "centre. A principal investigator may hold back a dataset for at most 24 months "
            "after the end of the season in which it was collected, so that the project can "
            "publish first. Data from the automatic weather station and the tide gauge are "
            "never embargoed, because they are used for the station's daily operations.",
            "Longer embargoes can only be granted by the Science Board and are granted only "
            "when the data are part of a doctoral thesis.",
        ),
    ),
    (
        "7. Publications",
        (
            "Every publication that uses data or samples from the station acknowledges the "
            "Northmarch Polar Institute and gives the registration number of the dataset in "
            "the Station Data Catalogue. Authors send a copy of the publication to the Data "
            "Manager within one month of its acceptance, and the station library keeps a "
            "printed copy of every paper.",
        ),
    ),
    (
        "8. Breaches of this policy",
        (
            "A project that has not registered its data or taken its two copies by the last "
            "ship of the season may not book station places for the next season until the "
            "data are in order. Lost samples and lost data are reported to the Data Manager "
            "in writing, with a short account of what happened and how it will be avoided.",
        ),
    ),
)


def write_boating_docx(target: Path) -> None:
    """The boating procedures as a Word document with headings, paragraphs and a table."""
    document = docx.Document()
    document.add_heading(BOATING_TITLE, level=0)
    for heading, paragraphs in BOATING_SECTIONS:
        document.add_heading(heading, level=1)
        for paragraph in paragraphs:
            document.add_paragraph(paragraph)
    _add_docx_table(document, BOATING_TABLE)
    properties = document.core_properties
    properties.title = BOATING_TITLE
    properties.author = "Northmarch Polar Institute"
    properties.created = properties.modified = FIXED_DATE.replace(tzinfo=None)
    document.save(str(target))


def _add_docx_table(document: DocxDocument, rows: tuple[tuple[str, ...], ...]) -> None:
    table = document.add_table(rows=len(rows), cols=len(rows[0]))
    for row_cells, values in zip(table.rows, rows, strict=True):
        for cell, value in zip(row_cells.cells, values, strict=True):
            cell.text = value


def write_data_policy_pdf(target: Path) -> None:
    """The research data policy as a PDF in a core font, so every character is Latin-1."""
    pdf = FPDF(format="A4")
    pdf.set_title(DATA_POLICY_TITLE)
    pdf.set_author("Northmarch Polar Institute")
    pdf.set_creation_date(FIXED_DATE)
    pdf.set_margins(25, 25, 25)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 15)
    pdf.multi_cell(0, 8, DATA_POLICY_TITLE, new_x="LMARGIN", new_y="NEXT")
    for heading, paragraphs in DATA_POLICY_SECTIONS:
        pdf.ln(4)
        pdf.set_font("Helvetica", "B", 12)
        pdf.multi_cell(0, 7, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 11)
        for paragraph in paragraphs:
            pdf.multi_cell(0, 6, paragraph, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
    pdf.output(str(target))


def main() -> None:
    write_boating_docx(DOCS_DIR / DOCX_NAME)
    write_data_policy_pdf(DOCS_DIR / PDF_NAME)
    for name in (DOCX_NAME, PDF_NAME):
        print(f"wrote {DOCS_DIR / name} ({(DOCS_DIR / name).stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
