"""Find the files to ingest under the given paths."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ingest.readers import supported_suffixes

SKIPPED_DIRS = {".git", ".hg", ".svn", ".bzr", "CVS", "__pycache__", "node_modules", ".venv"}


@dataclass(frozen=True)
class FoundFile:
    path: Path  # absolute
    root: Path  # the ingested folder it was found under
    rel: str  # path relative to root, with forward slashes


def find_files(
    roots: Sequence[Path], include: Sequence[str] = (), exclude: Sequence[str] = ()
) -> Iterator[FoundFile]:
    """Supported files under each root (a file root as is), sorted, hidden ones left out; a
    file reached from two roots (`docs docs/sub`) once, under the first."""
    suffixes = supported_suffixes()
    seen: set[Path] = set()
    for root in roots:
        root = root.resolve()
        if root.is_file():
            if root not in seen:
                seen.add(root)
                yield FoundFile(root, root.parent, root.name)
            continue
        for path in _walk(root):
            rel = path.relative_to(root).as_posix()
            wanted = path.suffix.lower() in suffixes and _selected(rel, include, exclude)
            if wanted and path not in seen:
                seen.add(path)
                yield FoundFile(path, root, rel)


def _walk(root: Path) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_DIRS)
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(folder) / name


def _selected(rel: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    def matches(patterns: Sequence[str]) -> bool:
        name = rel.rsplit("/", 1)[-1]
        return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) for p in patterns)

    return (not include or matches(include)) and not matches(exclude)
