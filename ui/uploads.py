"""Files uploaded on the Library page: size limit, safe names, saved under `<data_dir>/uploads`."""

from __future__ import annotations

import os
import re
import tempfile
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

MAX_NAME_CHARS = 120
MB = 1_000_000  # a megabyte as Streamlit's uploader writes a file's size ("28.3MB")
_UNSAFE = re.compile(r"[^A-Za-z0-9._\- ]+")
_RUNS = re.compile(r"[_ ]{2,}")


class Upload(Protocol):
    """What Streamlit's UploadedFile offers and this module uses."""

    name: str
    size: int

    def getvalue(self) -> bytes: ...


def upload_limit_words(max_mb: float) -> str:
    """The upload limit as the app writes it everywhere: `25 MB`."""
    return f"{max_mb:g} MB"


def uploads_dir(data_dir: Path) -> Path:
    return data_dir / "uploads"


def sanitize_filename(name: str) -> str:
    """A name that is safe as one file in the uploads folder: the last path component only,
    letters, digits, `.`, `_`, `-` and spaces, no leading dot (no hidden files, no `..`), at most
    `MAX_NAME_CHARS` characters with the extension kept."""
    base = re.split(r"[\\/]", name)[-1]
    stem, dot, suffix = base.rpartition(".")
    if not dot:
        stem, suffix = base, ""
    suffix = re.sub(r"[^A-Za-z0-9]", "", _ascii(suffix))[:16]
    stem = _RUNS.sub("_", _UNSAFE.sub("_", _ascii(stem))).strip(" ._-") or "upload"
    room = MAX_NAME_CHARS - (len(suffix) + 1 if suffix else 0)
    stem = stem[:room].rstrip(" ._-") or "upload"
    return f"{stem}.{suffix}" if suffix else stem


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


@dataclass
class SavedUploads:
    saved: list[Path] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (name, saved as)
    replaced: list[str] = field(default_factory=list)  # saved names whose earlier file differed


def save_uploads(files: list[Upload], folder: Path, max_mb: float) -> SavedUploads:
    """Save each file within the size limit under its sanitized name (replacing an earlier
    upload of that name, which ingest then updates, and listed in `replaced` when its content
    differs); refuse the others with a reason. Two different files of one name in one upload
    (`a/notes.md` and `b/notes.md`: the browser sends names without folders) are both kept,
    the second as `notes-2.md`, and listed in `renamed`; the same file twice is saved once."""
    outcome = SavedUploads()
    folder.mkdir(parents=True, exist_ok=True)
    names: set[str] = set()  # the names saved in this upload
    kept: set[tuple[str, bytes]] = set()  # (name, content) of the files saved
    for upload in files:
        if upload.size > max_mb * MB:
            reason = (
                f"its {upload.size / MB:.1f} MB are over the upload limit of "
                f"{upload_limit_words(max_mb)}; to allow larger files raise `KB_UPLOAD_MAX_MB` "
                "(and Streamlit's `server.maxUploadSize` in .streamlit/config.toml with it)."
            )
            outcome.refused.append((upload.name, reason))
            continue
        data = upload.getvalue()
        name = sanitize_filename(upload.name)
        if (name, data) in kept:
            continue
        kept.add((name, data))
        if name in names:
            name = _free_name(name, names)
            outcome.renamed.append((upload.name, name))
        names.add(name)
        target = folder / name
        if target.is_file() and target.read_bytes() != data:
            outcome.replaced.append(name)
        _write_atomically(target, data)
        outcome.saved.append(target)
    return outcome


def _free_name(name: str, taken: set[str]) -> str:
    """`notes-2.md`, `notes-3.md`, …: the first not taken."""
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        stem, suffix = name, ""
    for n in range(2, len(taken) + 2):
        candidate = f"{stem}-{n}.{suffix}" if suffix else f"{stem}-{n}"
        if candidate not in taken:
            return candidate
    raise AssertionError("unreachable: len(taken) + 1 names cannot all be taken")


def _write_atomically(target: Path, data: bytes) -> None:
    """Write-then-rename, so an ingest running meanwhile never reads half a file."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
