"""An eval set's documents in the knowledge base: ingested, and searched apart from the rest.

Every command that asks questions first ingests the eval set's `docs/` folder into the
configured store with `ingest.pipeline.ingest`; an unchanged rerun only compares hashes, so a
set that is already in the store costs a second. Searches are then limited to that folder
(`SearchFilters(path_prefix=...)`), so other documents in the same knowledge base do not change
the figures; `whole_store=True` searches everything, as the app does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from eval.dataset import EvalSet, QAItem
from ingest.pipeline import IngestReport, ingest
from rag.embeddings import Embedder
from rag.errors import KBError
from rag.retrieve import SearchFilters
from rag.settings import Settings
from rag.store import Store

IngestHook = Callable[[str, int, int], None]


def ingest_docs(
    settings: Settings,
    store: Store,
    embedder: Embedder,
    docs_dir: Path,
    on_progress: IngestHook | None = None,
) -> IngestReport:
    """Ingest `docs_dir` into the open store; fails in one sentence when nothing is readable."""
    report = ingest(settings, [docs_dir], embedder=embedder, store=store, on_progress=on_progress)
    readable = report.added + report.updated + report.unchanged
    if readable == 0:
        reasons = "; ".join(f"{f['path']}: {f['reason']}" for f in report.failed[:3])
        detail = f" ({reasons})" if reasons else ""
        raise KBError(f"No document in {docs_dir} could be ingested{detail}.")
    return report


def scope_filter(docs_dir: Path, whole_store: bool = False) -> SearchFilters | None:
    """Search only the documents under `docs_dir` (None: the whole store)."""
    if whole_store:
        return None
    return SearchFilters(path_prefix=str(docs_dir.resolve()))


def select_items(eval_set: EvalSet, limit: int | None) -> Sequence[QAItem]:
    """The first `limit` questions of the set (all of them without a limit)."""
    if limit is not None and limit < 1:
        raise KBError(f"--limit must be at least 1 (got {limit}).")
    return eval_set.items[:limit] if limit is not None else eval_set.items


def failed_files_note(report: IngestReport) -> str | None:
    """One sentence about documents that could not be ingested, or None."""
    if not report.failed:
        return None
    names = ", ".join(Path(f["path"]).name for f in report.failed[:5])
    more = f" and {len(report.failed) - 5} more" if len(report.failed) > 5 else ""
    return (
        f"{len(report.failed)} document(s) could not be ingested ({names}{more}); their "
        "questions cannot be answered from the store."
    )
