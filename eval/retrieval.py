"""Retrieval alone, no model: is the gold passage in the context the chain would send?

For every question this runs what `rag.chain.Chain` runs before it calls a model, on the store
and embedder of `Services`: `Retriever(store, embedder, params).search(question)` and
`rag.context.pack(passages, budget, estimator)`, by default with the uncalibrated estimator
(`TokenEstimator()`), or with the one kb calibrated for a model (`--model`).
Several budgets cost one search per question: the same passages are packed once per budget.
The figures per budget:

- `hit_rate`: share of answerable questions whose packed passages hold a gold passage
  (`eval.metrics.retrieval_hit`);
- `mrr`: mean reciprocal rank of the first gold passage in packed order (0 when none);
- `mean_context_tokens`: mean of the packed context's estimated tokens (`PackedContext.tokens`);
- `mean_context_chars`: mean length of the packed context text as the prompt carries it;
- `n`: questions asked; `answerable`: those the hit rate and MRR are over.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eval.corpus import IngestHook, ingest_docs, open_eval_store, scope_filter, select_items
from eval.dataset import QAItem, load_eval_set
from eval.metrics import reciprocal_rank, retrieval_hit
from rag.context import PackedContext, TokenEstimator, pack
from rag.errors import KBError
from rag.retrieve import RetrievalParams, Retriever, SearchFilters
from rag.service import Services
from rag.settings import Settings

DEFAULT_BUDGET = 1200  # tokens, when neither --budget nor KB_CONTEXT_TOKENS is given
ProgressHook = Callable[[int, int], None]  # (questions done, questions in all)


@dataclass(frozen=True)
class RetrievalRecord:
    """One question at one budget."""

    id: str
    question: str
    hit: bool | None  # None for an unanswerable question
    rank: int | None  # 1-based rank of the first gold passage in packed order
    reciprocal_rank: float | None
    context_tokens: int
    context_chars: int
    sources: list[str]  # the packed passages' source labels, in order


@dataclass
class RetrievalReport:
    """The figures of one budget and the records they are computed from."""

    budget: int
    records: list[RetrievalRecord] = field(default_factory=list)

    @property
    def answerable(self) -> list[RetrievalRecord]:
        return [r for r in self.records if r.hit is not None]

    @property
    def hit_rate(self) -> float | None:
        rows = self.answerable
        return sum(bool(r.hit) for r in rows) / len(rows) if rows else None

    @property
    def mrr(self) -> float | None:
        rows = self.answerable
        return sum(r.reciprocal_rank or 0.0 for r in rows) / len(rows) if rows else None

    @property
    def mean_context_tokens(self) -> float | None:
        return _mean([r.context_tokens for r in self.records])

    @property
    def mean_context_chars(self) -> float | None:
        return _mean([r.context_chars for r in self.records])

    def as_json(self) -> dict[str, Any]:
        return {
            "budget": self.budget,
            "hit_rate": self.hit_rate,
            "mrr": self.mrr,
            "mean_context_tokens": self.mean_context_tokens,
            "mean_context_chars": self.mean_context_chars,
            "n": len(self.records),
            "answerable": len(self.answerable),
            "records": [vars(r) for r in self.records],
        }


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def parse_budgets(values: Sequence[str] | None, settings: Settings) -> list[int]:
    """`--budget` values (repeatable, each possibly a comma list) as distinct token counts."""
    if not values:
        return [settings.context_tokens or DEFAULT_BUDGET]
    budgets: list[int] = []
    for value in values:
        for part in value.split(","):
            text = part.strip()
            if not text:
                continue
            if not text.isdigit() or int(text) < 1:
                raise KBError(
                    f"--budget takes whole numbers of tokens, like 500,1200 (got {text!r})."
                )
            budgets.append(int(text))
    if not budgets:
        raise KBError("--budget needs at least one number of tokens, like 1200.")
    return list(dict.fromkeys(budgets))


def evaluate_retrieval(
    services: Services,
    dataset: Path,
    budgets: Sequence[int],
    limit: int | None = None,
    *,
    params: RetrievalParams | None = None,
    whole_store: bool = False,
    on_progress: ProgressHook | None = None,
    on_ingest: IngestHook | None = None,
    estimator: TokenEstimator | None = None,
) -> list[RetrievalReport]:
    """Ingest the eval set into the evaluation store, retrieve once per question and pack at every
    budget (tokens); one report per budget, in the order given. No model is asked. Raises
    `KBError` (one sentence) for an unreadable eval set or a store that cannot be opened."""
    eval_set = load_eval_set(dataset)
    items = select_items(eval_set, limit)
    with open_eval_store(services) as store:
        ingest_docs(services.settings, store, services.embedder, eval_set.docs_dir, on_ingest)
        retriever = Retriever(store, services.embedder, params)
        filters = scope_filter(eval_set.docs_dir, whole_store)
        return score_items(retriever, items, budgets, filters, on_progress, estimator)


def score_items(
    retriever: Retriever,
    items: Sequence[QAItem],
    budgets: Sequence[int],
    filters: SearchFilters | None = None,
    on_progress: ProgressHook | None = None,
    estimator: TokenEstimator | None = None,
) -> list[RetrievalReport]:
    reports = [RetrievalReport(budget) for budget in budgets]
    estimator = estimator or TokenEstimator()
    for done, item in enumerate(items, start=1):
        passages = retriever.search(item.question, filters)
        for report in reports:
            packed = pack(passages, report.budget, estimator)
            report.records.append(record_for(item, packed))
        if on_progress is not None:
            on_progress(done, len(items))
    return reports


def record_for(item: QAItem, packed: PackedContext) -> RetrievalRecord:
    texts = [passage.text for passage in packed.passages]
    rr = reciprocal_rank(texts, item)
    return RetrievalRecord(
        id=item.id,
        question=item.question,
        hit=retrieval_hit(texts, item),
        rank=round(1 / rr) if rr else None,
        reciprocal_rank=rr,
        context_tokens=packed.tokens,
        context_chars=len(packed.text),
        sources=[passage.source_label() for passage in packed.passages],
    )


def reports_json(reports: Sequence[RetrievalReport]) -> dict[str, Any] | list[dict[str, Any]]:
    """One budget: its object; several: a list of such objects, in the order given."""
    if len(reports) == 1:
        return reports[0].as_json()
    return [report.as_json() for report in reports]
