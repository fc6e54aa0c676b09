"""Eval sets: a folder with `docs/` and `qa.jsonl`, loaded and checked line by line.

The format is described in `eval/README.md`. Every line of `qa.jsonl` is one JSON object with
`id`, `question`, `answers`, `doc`, optional `evidence` and optional `unanswerable`; other keys
(the SQuAD set carries `title` and `para_index`) are allowed and ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from rag.errors import KBError

QA_FILE = "qa.jsonl"
DOCS_DIR = "docs"


class EvalSetError(KBError):
    """An eval set is missing a part or has a malformed line; `str()` says which and where."""


@dataclass(frozen=True)
class QAItem:
    """One question of an eval set.

    `answers` are reference answers (empty only when `unanswerable`); `doc` is the gold
    document relative to `docs/` (None only when `unanswerable`); `evidence` is the gold
    passage, a verbatim substring of the document's text.
    """

    id: str
    question: str
    answers: tuple[str, ...]
    doc: str | None
    evidence: str | None = None
    unanswerable: bool = False


@dataclass(frozen=True)
class EvalSet:
    """The documents folder to ingest and the questions to ask about it."""

    docs_dir: Path
    qa_file: Path
    items: tuple[QAItem, ...]

    @property
    def answerable(self) -> tuple[QAItem, ...]:
        return tuple(item for item in self.items if not item.unanswerable)

    @property
    def unanswerable(self) -> tuple[QAItem, ...]:
        return tuple(item for item in self.items if item.unanswerable)

    def doc_path(self, item: QAItem) -> Path | None:
        """The gold document's file, or None for a question without one."""
        return self.docs_dir / item.doc if item.doc is not None else None


def load_eval_set(path: str | Path) -> EvalSet:
    """Load the eval set in folder `path` (or the folder of `path` when it names `qa.jsonl`)."""
    root = Path(path)
    if root.is_file() and root.name == QA_FILE:
        root = root.parent
    docs_dir, qa_file = _locate_parts(root)
    items = tuple(_read_items(qa_file, docs_dir))
    if not items:
        raise EvalSetError(f"The eval set file {qa_file} has no questions.")
    return EvalSet(docs_dir=docs_dir, qa_file=qa_file, items=items)


def _locate_parts(root: Path) -> tuple[Path, Path]:
    if not root.is_dir():
        raise EvalSetError(f"The eval set folder {root} does not exist.")
    docs_dir, qa_file = root / DOCS_DIR, root / QA_FILE
    if not docs_dir.is_dir():
        raise EvalSetError(f"The eval set folder {root} has no {DOCS_DIR}/ folder of documents.")
    if not qa_file.is_file():
        raise EvalSetError(f"The eval set folder {root} has no {QA_FILE} file of questions.")
    return docs_dir, qa_file


def _read_items(qa_file: Path, docs_dir: Path) -> list[QAItem]:
    try:
        lines = qa_file.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise EvalSetError(f"Could not read the eval set file {qa_file}: {err}.") from None
    items: list[QAItem] = []
    first_line_of_id: dict[str, int] = {}
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = _LineContext(qa_file, line_no, docs_dir)
        item = _parse_line(line, where)
        if item.id in first_line_of_id:
            raise where.error(f"id {item.id!r} repeats the id of line {first_line_of_id[item.id]}")
        first_line_of_id[item.id] = line_no
        items.append(item)
    return items


@dataclass(frozen=True)
class _LineContext:
    qa_file: Path
    line_no: int
    docs_dir: Path

    def error(self, problem: str) -> EvalSetError:
        return EvalSetError(f"Line {self.line_no} of {self.qa_file} is invalid: {problem}.")


def _parse_line(line: str, where: _LineContext) -> QAItem:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise where.error(f"it is not valid JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(record, dict):
        raise where.error("it must be a JSON object")
    unanswerable = _optional_flag(record, "unanswerable", where)
    evidence = _optional_text(record, "evidence", where)
    if unanswerable and evidence is not None:
        raise where.error("an unanswerable question cannot have 'evidence'")
    return QAItem(
        id=_required_text(record, "id", where),
        question=_required_text(record, "question", where),
        answers=_answers(record, unanswerable, where),
        doc=_gold_doc(record, unanswerable, where),
        evidence=evidence,
        unanswerable=unanswerable,
    )


def _required_text(record: dict[str, Any], key: str, where: _LineContext) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        raise where.error(f"'{key}' must be a non-empty string")
    return value


def _optional_text(record: dict[str, Any], key: str, where: _LineContext) -> str | None:
    if record.get(key) is None:
        return None
    return _required_text(record, key, where)


def _optional_flag(record: dict[str, Any], key: str, where: _LineContext) -> bool:
    value = record.get(key, False)
    if not isinstance(value, bool):
        raise where.error(f"'{key}' must be true or false")
    return value


def _answers(record: dict[str, Any], unanswerable: bool, where: _LineContext) -> tuple[str, ...]:
    value = record.get("answers", [] if unanswerable else None)
    if not isinstance(value, list) or not all(isinstance(a, str) and a.strip() for a in value):
        raise where.error("'answers' must be a list of non-empty strings")
    if not value and not unanswerable:
        raise where.error("'answers' must hold at least one answer unless 'unanswerable' is true")
    return tuple(value)


def _gold_doc(record: dict[str, Any], unanswerable: bool, where: _LineContext) -> str | None:
    if record.get("doc") is None:
        if unanswerable:
            return None
        raise where.error("'doc' must name the gold document unless 'unanswerable' is true")
    doc = _required_text(record, "doc", where)
    relative = PurePosixPath(doc)
    if relative.is_absolute() or ".." in relative.parts:
        raise where.error(f"'doc' must be a path inside {DOCS_DIR}/ (got {doc!r})")
    if not (where.docs_dir / relative).is_file():
        raise where.error(f"'doc' names {doc!r}, which is not a file in {where.docs_dir}")
    return doc
