"""Find stored documents from a path as the user gives it on a command line.

A document is known by its path under the folder it was ingested from (`DocRecord.path`, as
citations show it, e.g. `enc/sjis.txt`) and by its absolute path. A path given to `--doc`,
`--under` or `--delete` may be either, or relative to the current directory. A relative path
that matches documents under several ingested folders matches all of them; the caller decides
whether that is acceptable (search narrows to all of them, deletion asks to disambiguate).
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from pathlib import Path

from rag.errors import KBError
from rag.store.records import DocRecord


class DocumentPathError(KBError):
    """A path given on a command line names no stored document, or more than one."""


def ingested_folder(record: DocRecord) -> str:
    """The absolute folder `record` was ingested from: its `abs_path` without its `path`."""
    suffix = "/" + record.path
    if record.path and record.abs_path.endswith(suffix):
        return record.abs_path[: -len(suffix)] or "/"
    return posixpath.dirname(record.abs_path)


def documents_at(records: Sequence[DocRecord], given: Path) -> list[DocRecord]:
    """The documents `given` names: its absolute path (relative to the current directory) if
    that is stored, else every document whose path under its ingested folder is `given`.
    Raises `DocumentPathError` when none is."""
    absolute = str(given.resolve())
    found = [r for r in records if r.abs_path == absolute]
    if not found and not given.is_absolute():
        relative = _relative(given)
        found = [r for r in records if r.path == relative]
    if not found:
        raise DocumentPathError(
            f"{given} is not a document in the knowledge base; give its path as "
            "`python -m ingest --list` shows it, or its full path."
        )
    return found


def folders_at(records: Sequence[DocRecord], given: Path) -> list[str]:
    """The absolute folders `given` names that hold documents: `given` itself (relative to the
    current directory), else `given` under every ingested folder. Raises `DocumentPathError`
    when no document lies under any of them."""
    absolute = str(given.resolve())
    if any(_is_under(r.abs_path, absolute) for r in records):
        return [absolute]
    folders: set[str] = set()
    if not given.is_absolute():
        relative = _relative(given)
        for record in records:
            if relative == ".":
                folders.add(ingested_folder(record))
            elif record.path.startswith(relative + "/"):
                folders.add(posixpath.join(ingested_folder(record), relative))
    if not folders:
        raise DocumentPathError(
            f"No document in the knowledge base is under {given}; give a folder as "
            "`python -m ingest --list` shows it, or its full path."
        )
    return sorted(folders)


def documents_under(records: Sequence[DocRecord], folders: Sequence[str]) -> list[DocRecord]:
    """The documents that lie under any of the absolute `folders`."""
    return [r for r in records if any(_is_under(r.abs_path, f) for f in folders)]


def _is_under(abs_path: str, folder: str) -> bool:
    return abs_path.startswith(folder.rstrip("/") + "/")


def _relative(given: Path) -> str:
    return posixpath.normpath(given.as_posix())
