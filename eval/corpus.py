"""An eval set's documents in the evaluation store: ingested, and searched apart from the rest.

Evaluations never write to the user's knowledge base. Every command that asks questions
(`python -m eval retrieval|answers|generate|bench` and the app's Evaluation page) opens the
evaluation store (`eval_store_settings`): the collection `<KB_COLLECTION>_eval`, and for the
embedded store its own folder beside the knowledge base's (`<KB_QDRANT_PATH>-eval`, with its
own lock, so an evaluation neither waits for the app nor blocks it). It keeps what was ingested
there, so a rerun only compares hashes and costs a second. Searches are limited to the set's
folder (`SearchFilters(path_prefix=...)`), so other eval sets in that store do not change the
figures; `whole_store=True` searches the whole evaluation store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

from eval.dataset import EvalSet, QAItem
from ingest.pipeline import IngestReport, ingest
from rag.embeddings import Embedder
from rag.errors import KBError
from rag.retrieve import SearchFilters
from rag.service import Services
from rag.settings import Settings
from rag.store import Store, open_store

IngestHook = Callable[[str, int, int], None]
EVAL_SUFFIX = "_eval"


def eval_store_settings(settings: Settings) -> Settings:
    """`settings` pointed at the evaluation store: collection `<collection>_eval` (on the same
    Qdrant server with QDRANT_URL), embedded in the folder `<qdrant_path>-eval`."""
    folder = settings.qdrant_path.with_name(settings.qdrant_path.name + "-eval")
    update = {"collection": settings.collection + EVAL_SUFFIX, "qdrant_path": folder}
    return settings.model_copy(update=update)


def open_eval_store(services: Services) -> AbstractContextManager[Store]:
    """The evaluation store, open for one command (never the app's shared store). Raises
    `StoreLockedError` (another evaluation holds it) or `StoreUnavailableError`."""
    return open_store(eval_store_settings(services.settings))


def describe_eval_store(settings: Settings) -> str:
    """Where evaluations keep their documents, in words, beside the knowledge base's place."""
    evaluation = eval_store_settings(settings)
    if settings.qdrant_url:
        return (
            f"the collection {evaluation.collection} on {settings.qdrant_url}, apart from the "
            f"knowledge base's collection {settings.collection}"
        )
    return (
        f"a store of their own in {evaluation.qdrant_path}, apart from the knowledge base in "
        f"{settings.qdrant_path}"
    )


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
