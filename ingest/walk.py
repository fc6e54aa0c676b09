"""Find the files to ingest under the given paths."""

from __future__ import annotations

import errno
import fnmatch
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ingest.readers import supported_suffixes

UNREAD_FORMAT = "not a format kb reads"  # the reason of a skipped file; the CLI groups them
SKIPPED_DIRS = {".git", ".hg", ".svn", ".bzr", "CVS", "__pycache__", "node_modules", ".venv"}


@dataclass(frozen=True)
class FoundFile:
    path: Path  # absolute
    root: Path  # the ingested folder it was found under
    rel: str  # path relative to root, with forward slashes


@dataclass(frozen=True)
class SkippedPath:
    path: str  # relative to the ingested folder, as the user sees it
    reason: str  # a phrase: why it was not read


def find_files(
    roots: Sequence[Path],
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    skipped: list[SkippedPath] | None = None,
) -> Iterator[FoundFile]:
    """Supported files under each root (a file root as is), sorted, hidden ones and version
    control folders left out. Links are followed: a file or folder reached twice (through a
    link, a link cycle or two roots such as `docs docs/sub`) is read once, under the first
    path; each file kept out for another reason (a second path, a format kb does not read, a
    link loop, a broken link) is appended to `skipped`. A file keeps the path under its
    ingested folder as its identity, not its link target."""
    suffixes = supported_suffixes()
    seen: set[Path] = set()  # real paths read, over all roots
    note = skipped.append if skipped is not None else (lambda _: None)
    for root in roots:
        root = root.resolve()  # as earlier stores recorded it; links under it stay links
        if root.is_file():
            if root.resolve() not in seen:
                seen.add(root.resolve())
                yield FoundFile(root, root.parent, root.name)
            continue
        candidates: list[tuple[Path, str]] = []
        for path, problem in _walk(root):
            rel = path.relative_to(root).as_posix()
            if problem:
                note(SkippedPath(rel, problem))
            elif not _selected(rel, include, exclude):
                continue
            elif path.suffix.lower() not in suffixes:
                note(SkippedPath(rel, UNREAD_FORMAT))
            else:
                candidates.append((path, rel))
        chosen = _one_path_per_file(candidates)
        for path, rel in candidates:
            real = path.resolve()
            if chosen[real] != rel or real in seen:
                first = chosen[real] if chosen[real] != rel else "another ingested path"
                note(SkippedPath(rel, f"the same file as {first}, read once"))
                continue
            seen.add(real)
            yield FoundFile(path, root, rel)


def _one_path_per_file(candidates: list[tuple[Path, str]]) -> dict[Path, str]:
    """real path -> the path it is read under: the first reached without a link, else the
    first reached at all."""
    chosen: dict[Path, str] = {}
    direct: set[Path] = set()
    for path, rel in candidates:
        real = path.resolve()
        is_direct = real == path
        if real not in chosen or (is_direct and real not in direct):
            chosen[real] = rel
        if is_direct:
            direct.add(real)
    return chosen


def _walk(root: Path) -> Iterator[tuple[Path, str | None]]:
    """(path, None) for each file, following links to folders; (path, why) for a link back to
    a folder already walked (a cycle, or a second way in) and for a link to no file."""
    walked: set[tuple[int, int]] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        here = os.stat(folder)
        if (here.st_dev, here.st_ino) in walked:
            dirs[:] = []
            yield Path(folder), "a link to a folder already read, read once"
            continue
        walked.add((here.st_dev, here.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_DIRS)
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(folder) / name
            yield path, _unreachable(path)


def _unreachable(path: Path) -> str | None:
    """Why a link leads to no file: a loop (la -> lb -> la) or a missing target; None when it
    does (or when `path` is not a link). Named, not failed: there is no file to read, and an
    ingest that exits 1 for a dangling link would fail every run until the link is removed."""
    try:
        os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "a link loop: the link leads back to itself"
        if err.errno == errno.ENOENT and path.is_symlink():
            return f"a broken link: its target {os.readlink(path)} is missing"
    return None


def _selected(rel: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    def matches(patterns: Sequence[str]) -> bool:
        name = rel.rsplit("/", 1)[-1]
        return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) for p in patterns)

    return (not include or matches(include)) and not matches(exclude)
