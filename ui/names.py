"""Names of documents that tell apart two files of the same name in different folders."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import PurePath


def distinct_names(documents: Iterable[tuple[str, str]]) -> dict[str, str]:
    """(shown path, absolute path) pairs -> a name per absolute path: the shown path where it
    is unique, else the shown path followed by as much of the file's folder as tells the
    documents of that name apart (`guide.docx (in team-a/docs)`)."""
    groups: dict[str, set[str]] = defaultdict(set)
    for shown, absolute in documents:
        groups[shown].add(absolute)
    names: dict[str, str] = {}
    for shown, absolutes in groups.items():
        if len(absolutes) == 1:
            names[next(iter(absolutes))] = shown
            continue
        folders = {absolute: PurePath(absolute).parent.parts for absolute in absolutes}
        depth = 1
        while depth < max(len(parts) for parts in folders.values()):
            tails = [parts[-depth:] for parts in folders.values()]
            if len(set(tails)) == len(tails):
                break
            depth += 1
        for absolute, parts in folders.items():
            names[absolute] = f"{shown} (in {PurePath(*parts[-depth:]).as_posix()})"
    return names
