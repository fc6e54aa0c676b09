"""Word documents (DOCX)."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lxml import etree

from ingest.readers.base import (
    ParsedDocument,
    Section,
    SectionBuilder,
    UnreadableFile,
    meaningful_title,
    short_reason,
    table_lines,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from docx.table import Table
    from docx.text.paragraph import Paragraph


def read_docx(path: Path, data: bytes) -> ParsedDocument:
    import docx
    from docx.opc.constants import RELATIONSHIP_TYPE as RT
    from docx.opc.exceptions import PackageNotFoundError
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, ValueError, KeyError, OSError) as err:
        raise UnreadableFile(f"not a readable DOCX file ({short_reason(err)})") from None
    except Exception as err:  # zipfile.BadZipFile and lxml errors have no common base
        raise UnreadableFile(f"not a readable DOCX file ({short_reason(err)})") from None
    builder = SectionBuilder()
    for block in _body_blocks(document.element.body, document._body):
        if isinstance(block, Table):
            for line in _table_lines(block):
                builder.add(line + "\n")
            continue
        style = block.style.name if block.style else ""
        level = _docx_heading_level(style)
        if level is not None:
            # Only the Title style names the document; a Heading 1 starts a section.
            builder.heading(level, _own_text(block._p), can_be_title=style == "Title")
            continue
        for line in [_own_text(block._p), *_drawn_texts(block._p)]:
            if line.strip():
                builder.add(line + "\n")
    parsed = builder.build(path.stem)
    parsed.sections = [
        *_part_sections(document, (RT.HEADER, RT.FOOTER), "Page headers and footers"),
        *parsed.sections,
        *_part_sections(document, (RT.FOOTNOTES,), "Footnotes"),
        *_part_sections(document, (RT.ENDNOTES,), "Endnotes"),
        *_part_sections(document, (RT.COMMENTS,), "Comments"),
    ]
    parsed.title = meaningful_title(document.core_properties.title) or parsed.title
    return parsed


def _body_blocks(container: Any, parent: Any) -> Iterator[Paragraph | Table]:
    """Paragraphs and tables in reading order, like python-docx's `iter_inner_content`, and
    also those inside block-level content controls (w:sdt: cover pages, tables of contents,
    form sections) and custom XML, which it skips."""
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    for child in container.iterchildren():
        if child.tag == _W_P:
            yield Paragraph(child, parent)
        elif child.tag == _W_TBL:
            yield Table(child, parent)
        elif child.tag == _W_SDT:
            content = child.find(_W_SDT_CONTENT)
            if content is not None:
                yield from _body_blocks(content, parent)
        elif child.tag == _W_CUSTOM_XML:
            yield from _body_blocks(child, parent)


_NS = {
    "w": "http://schemas.openxmlformats.org/wordprocessingml/2006/main",
    "wp": "http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing",
    "mc": "http://schemas.openxmlformats.org/markup-compatibility/2006",
}
# Text boxes and pictures: Word writes a shape twice (DrawingML, and VML in mc:Fallback for
# old readers), so the fallback copy is skipped.
_TEXT_BOXES = etree.XPath("./w:r//w:txbxContent[not(ancestor::mc:Fallback)]", namespaces=_NS)
_ALT_TEXTS = etree.XPath("./w:r//wp:docPr[not(ancestor::mc:Fallback)]/@descr", namespaces=_NS)
_PARAGRAPHS = etree.XPath(".//w:p[not(ancestor::mc:Fallback)]", namespaces=_NS)
_NOTES = etree.XPath("./w:footnote|./w:endnote|./w:comment", namespaces=_NS)
# A paragraph's own runs, also inside hyperlinks, fields, content controls and tracked
# insertions (deletions are w:delText); not the text of text boxes drawn in it.
_RUN_PARTS = "w:t|w:tab|w:br|w:cr|w:noBreakHyphen"
_OWN_TEXT = etree.XPath(
    "|".join(
        [f"./w:r/{part}" for part in _RUN_PARTS.split("|")]
        + [
            f"./*[not(self::w:r)]//w:r[not(ancestor::w:txbxContent)]/{part}"
            for part in _RUN_PARTS.split("|")
        ]
    ),
    namespaces=_NS,
)
_TEXT_TAG = f"{{{_NS['w']}}}t"
_W_P, _W_TBL, _W_SDT, _W_SDT_CONTENT, _W_CUSTOM_XML = (
    f"{{{_NS['w']}}}{name}" for name in ("p", "tbl", "sdt", "sdtContent", "customXml")
)
_HYPHEN_TAG = f"{{{_NS['w']}}}noBreakHyphen"


def _drawn_texts(paragraph: Any) -> list[str]:
    """Text of the text boxes and alt text of the pictures anchored in a paragraph."""
    texts = []
    for box in _TEXT_BOXES(paragraph):
        texts += [_own_text(p) for p in _PARAGRAPHS(box)]
    texts += [f"Image: {descr}" for descr in _ALT_TEXTS(paragraph)]
    return texts


def _own_text(paragraph: Any) -> str:
    parts = []
    for node in _OWN_TEXT(paragraph):
        if node.tag == _TEXT_TAG:
            parts.append(node.text or "")
        else:
            parts.append("-" if node.tag == _HYPHEN_TAG else " ")
    return "".join(parts)


def _table_lines(table: Table) -> list[str]:
    """Rows with their column headers; a merged cell read once; nested tables after the row
    that holds them."""
    rows: list[list[str]] = []
    nested: list[list[str]] = []
    seen: set[int] = set()
    alive = []  # lxml proxies kept, so that their ids stay theirs while compared
    for row in table.rows:
        values = []
        for cell in row.cells:
            if id(cell._tc) in seen:  # the same cell again: spanned columns or rows
                values.append("")
                continue
            seen.add(id(cell._tc))
            alive.append(cell._tc)
            values.append(" ".join(p.text for p in cell.paragraphs))
            nested += [_table_lines(inner) for inner in cell.tables]
        rows.append(values)
    return table_lines(rows) + [line for lines in nested for line in lines]


def _part_sections(document: Any, relations: tuple[str, ...], heading: str) -> list[Section]:
    """The text of the document's parts of these relation types (each part once, however
    many sections share it), as one section under `heading`."""
    seen: set[str] = set()
    lines: list[str] = []
    for relation in document.part.rels.values():
        if relation.reltype not in relations or relation.is_external:
            continue
        part = relation.target_part
        if part.partname in seen:
            continue
        seen.add(part.partname)
        root = etree.fromstring(part.blob)  # parts python-docx has no reader for
        items = _NOTES(root) or [root]
        for item in items:
            if item.get(f"{{{_NS['w']}}}type") in _SEPARATORS:
                continue
            text = " ".join(filter(None, map(_own_text, _PARAGRAPHS(item))))
            if text.strip():
                lines.append(text)
    return [Section("\n\n".join(lines), [heading])] if lines else []


_SEPARATORS = {"separator", "continuationSeparator", "continuationNotice"}


def _docx_heading_level(style_name: str) -> int | None:
    if style_name == "Title":
        return 1
    match = re.match(r"Heading (\d)", style_name)
    return int(match.group(1)) if match else None
