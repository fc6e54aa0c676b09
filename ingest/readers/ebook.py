"""EPUB books."""

from __future__ import annotations

from pathlib import Path

from ingest.readers.base import ParsedDocument, Section, UnreadableFile, short_reason
from ingest.readers.web import html_sections


def read_epub(path: Path, data: bytes) -> ParsedDocument:
    import tempfile

    import ebooklib
    from ebooklib import epub

    # ebooklib reads only from a path.
    with tempfile.NamedTemporaryFile(suffix=".epub") as handle:
        handle.write(data)
        handle.flush()
        try:
            book = epub.read_epub(handle.name, options={"ignore_ncx": True})
        except Exception as err:  # ebooklib raises zipfile, KeyError and its own errors
            raise UnreadableFile(f"not a readable EPUB file ({short_reason(err)})") from None
    titles = book.get_metadata("DC", "title")
    # Chapters in reading (spine) order; the navigation document is a table of contents.
    spine = [entry[0] if isinstance(entry, tuple) else entry for entry in book.spine]
    order = {idref: number for number, idref in enumerate(spine)}
    chapters = [i for i in book.get_items_of_type(ebooklib.ITEM_DOCUMENT) if i.is_chapter()]
    chapters.sort(key=lambda item: order.get(item.get_id(), len(order)))
    sections: list[Section] = []
    for item in chapters:
        chapter = html_sections(item.get_content().decode("utf-8", "replace"), "")
        prefix = [chapter.title] if chapter.title else []
        sections += [Section(s.text, prefix + s.headings) for s in chapter.sections]
    return ParsedDocument(titles[0][0] if titles else path.stem, sections)
