"""E-mail files (`.eml`, RFC 5322 with MIME parts) read with the standard library's `email`.

The document is the message: a first section with its subject, sender, recipients and date,
then the body (plain text preferred, else HTML), then each attachment kb can read as
sections under the heading `attachment <file name>`, so that one delete removes them all.
Attachments of other types are listed in the notes.
"""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from pathlib import Path

from ingest.readers.base import ParsedDocument, Section, UnreadableFile
from ingest.readers.web import html_sections

ENVELOPE_FIELDS = ("Subject", "From", "To", "Cc", "Date")


def read_eml(path: Path, data: bytes) -> ParsedDocument:
    """Parse one message; raises `UnreadableFile` when it has no header and no body."""
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)  # the default policy's message class
    if not message.keys():
        raise UnreadableFile("not an e-mail message (no header lines)")
    envelope = "\n".join(
        f"{name}: {' '.join(str(message[name]).split())}"
        for name in ENVELOPE_FIELDS
        if message[name]
    )
    parsed = ParsedDocument(_header(message, "Subject") or path.stem, [Section(envelope)])
    parsed.sections += _body_sections(message)
    for part in message.iter_attachments():
        _add_attachment(parsed, part)
    return parsed


def _header(message: EmailMessage, name: str) -> str:
    return " ".join(str(message[name] or "").split())


def _body_sections(message: EmailMessage) -> list[Section]:
    body = message.get_body(preferencelist=("plain", "html"))
    if body is None or not isinstance(body, EmailMessage):
        return []
    try:
        content = body.get_content()
    except (LookupError, ValueError):  # an unknown charset or a broken transfer encoding
        content = body.get_payload(decode=True) or b""
        content = content.decode("utf-8", "replace") if isinstance(content, bytes) else ""
    if body.get_content_subtype() == "html":
        return html_sections(str(content), "").sections
    return [Section(str(content).strip())]


def _add_attachment(parsed: ParsedDocument, part: EmailMessage) -> None:
    """Sections of an attachment kb reads, under its name; anything else is listed."""
    from ingest.readers import read_document, supported_suffixes  # the package imports this

    name = part.get_filename() or ""
    if part.get_content_type() == "message/rfc822":
        name = name or "forwarded.eml"
        inner = part.get_payload()
        blob = inner[0].as_bytes() if isinstance(inner, list) and inner else b""
    else:
        blob = part.get_payload(decode=True) or b""
    label = f"attachment {name or '(no name)'}"
    suffix = Path(name).suffix.lower()
    if not name or suffix not in supported_suffixes():
        parsed.notes.skipped_parts.append(
            f"{label} ({part.get_content_type()}): not a format kb reads"
        )
        return
    try:
        inner_doc = read_document(Path(name), bytes(blob))
    except UnreadableFile as reason:
        parsed.notes.skipped_parts.append(f"{label}: {reason}")
        return
    for section in inner_doc.sections:
        section.headings = [label, *section.headings]
        parsed.sections.append(section)
    parsed.notes.skipped_parts += [f"{label}: {part}" for part in inner_doc.notes.skipped_parts]
    parsed.notes.skipped_parts += [
        f"{label}, page {page}: {why}" for page, why in inner_doc.notes.unread_pages.items()
    ]
    parsed.notes.failed_rows.update(
        {f"{label}, {row}": why for row, why in inner_doc.notes.failed_rows.items()}
    )
