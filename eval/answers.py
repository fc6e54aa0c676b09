"""Every question through the full chain (`Chain.ask`), once per model, scored and written out.

`run_answers(services, dataset, models, ...)` is what `python -m eval answers` and the app's
Evaluation page call, each with the `Services` it built. It
1. finds each model on the configured servers through the hub (`services.models`): a model id
   `name@server`, or a bare name that goes to the first server listing it; one that no server
   has is reported in one sentence naming the servers and skipped;
2. ingests the eval set's `docs/` (cheap when unchanged, see `eval/corpus.py`);
3. asks every question of every available model through `Chain.ask`, restricted to the eval
   set's documents, scores it with `eval.metrics.score_question` and, with a judge, has the
   judge grade it (`eval/judge.py`); each record is appended to `results.jsonl` at once, under
   the model's id;
4. reads `results.jsonl` back and writes `summary.csv`, `report.md` and the charts from it
   (`eval/report.py`, `eval/charts.py`), so every figure traces to per-question records.

Runs written before models had ids (bare names, Ollama's `num_ctx`/`done_reason` keys) still
load and report: the report reads only the record keys and `prompt_cut`, `error`, `judge`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from eval.corpus import (
    IngestHook,
    failed_files_note,
    ingest_docs,
    open_eval_store,
    scope_filter,
    select_items,
)
from eval.dataset import QAItem, load_eval_set
from eval.judge import judge_answer
from eval.metrics import CitedPassage, GenerationStats, score_question
from eval.report import RESULTS_FILE, RUN_FILE, load_run
from eval.servers import ServedModel, find_model, not_found, unreachable
from rag.chain import AnswerResult, Chain
from rag.errors import KBError, ModelNotFoundError, ServerUnreachableError
from rag.llm.hub import ModelHub
from rag.retrieve import RetrievalParams, SearchFilters
from rag.service import Services
from rag.settings import Settings
from rag.store import Store

ProgressHook = Callable[[int, int], None]  # (answers done, answers in all)
RECORDED_SETTINGS = (
    "collection", "embed_model", "chunk_size", "chunk_overlap", "context_tokens", "context_cap",
    "answer_tokens", "safety_margin",
)  # fmt: skip
Notify = Callable[[str], None]
SKIPPED = "it was skipped"


@dataclass(frozen=True)
class ModelCheck:
    available: list[str]  # model ids (`name@server`), each once, in the order asked
    skipped: list[dict[str, str]]  # {"model": as asked, "reason": one sentence}


def check_models(models: ModelHub, wanted: Sequence[str]) -> ModelCheck:
    """Which of `wanted` (ids or bare names) a server has, as ids; the others with one sentence
    each. A model whose server does not answer is skipped too. Raises
    `ServerUnreachableError` when no server answers at all."""
    if not models.is_reachable():
        raise ServerUnreachableError(models.unreachable_message())
    available: list[str] = []
    skipped: list[dict[str, str]] = []
    for model in wanted:
        try:
            ref = models.resolve(model)
            models.facts(ref.id)
        except ModelNotFoundError:
            skipped.append({"model": model, "reason": not_found(models, model, SKIPPED)})
            continue
        except ServerUnreachableError:
            skipped.append({"model": model, "reason": unreachable(model, SKIPPED)})
            continue
        if ref.id not in available:
            available.append(ref.id)
    return ModelCheck(available, skipped)


def default_out_dir(settings: Settings) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = settings.data_dir / "eval-runs" / stamp
    suffix = 1
    while folder.exists():
        suffix += 1
        folder = settings.data_dir / "eval-runs" / f"{stamp}-{suffix}"
    return folder


def out_dir(settings: Settings, out: Path | None) -> Path:
    """The run's folder (not created yet); one that holds a run is refused."""
    folder = out if out is not None else default_out_dir(settings)
    if (folder / RESULTS_FILE).exists():
        raise KBError(f"The folder {folder} already holds an eval run; give a new --out folder.")
    return folder


def _create(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise KBError(f"Cannot create the output folder {folder} ({err.strerror}).") from None


def run_answers(
    services: Services,
    dataset: Path,
    models: Sequence[str],
    limit: int | None = None,
    judge: str | None = None,
    out: Path | None = None,
    *,
    params: RetrievalParams | None = None,
    whole_store: bool = False,
    on_progress: ProgressHook | None = None,
    on_ingest: IngestHook | None = None,
    notify: Notify | None = None,
    budgets: Sequence[int | None] = (),
) -> Path:
    """Run the eval and write its folder (see `eval/report.py`); returns the folder.

    With `budgets` (passage tokens per answer, None for the whole window), each model runs
    once per budget, as lanes labelled `model · 500 tokens`; see `lanes_for`. The questions
    are interleaved across lanes (each question asked of every lane before the next), so
    drift in the machine's load falls on every lane alike.

    `models` and `judge` are model ids or bare names. The store is the evaluation store
    (`eval.corpus.open_eval_store`), never the knowledge base. Skipped models and an unusable
    judge are told to `notify`, one sentence each. Raises `KBError` (one sentence) when no
    model can run, no server answers, the eval set or the output folder is unusable, or the
    store cannot be opened."""
    say = notify or (lambda message: None)
    settings = services.settings
    eval_set = load_eval_set(dataset)
    items = select_items(eval_set, limit)
    check = check_models(services.models, models)
    for skipped in check.skipped:
        say(skipped["reason"])
    if not check.available:
        raise KBError(
            f"None of the models {', '.join(models)} is on a model server that answers "
            f"({services.models.describe()}); pull one or start the server that has it."
        )
    judge_model = _judge_model(services, judge, say)
    folder = out_dir(settings, out)
    with open_eval_store(services) as store:
        ingested = ingest_docs(settings, store, services.embedder, eval_set.docs_dir, on_ingest)
        if (note := failed_files_note(ingested)) is not None:
            say(note)
        meta = _run_meta(settings, dataset, items, check, judge_model, params, whole_store)
        meta["budgets"] = [budget_label(b) for b in budgets]
        meta["servers"] = services.models.describe()
        meta["ingest"] = ingested.as_json()
        _create(folder)
        _write_meta(folder, meta)
        lanes = lanes_for(services, store, params, check.available, budgets)
        asker = _Asker(services.models, scope_filter(eval_set.docs_dir, whole_store), judge_model)
        with (folder / RESULTS_FILE).open("w", encoding="utf-8") as results:
            meta["skipped"] += asker.run_all(lanes, items, results, on_progress, say)
    meta["finished_at"] = datetime.now().isoformat(timespec="seconds")
    _write_meta(folder, meta)
    write_outputs(folder)
    return folder


def write_outputs(folder: Path) -> None:
    """summary.csv, the charts and report.md, all from results.jsonl."""
    from eval.charts import write_charts
    from eval.markdown import write_report
    from eval.report import SUMMARY_FILE, write_summary_csv

    run = load_run(folder)
    write_summary_csv(folder / SUMMARY_FILE, run.figures)
    charts = write_charts(folder, run.figures, judged=bool(run.meta.get("judge")))
    write_report(run, charts)


def _judge_model(services: Services, judge: str | None, say: Notify) -> ServedModel | None:
    """The judge's id and window, or None (said in one sentence) when no server has it."""
    if not judge:
        return None
    consequence = "answers are not judged"
    try:
        return find_model(services, judge)
    except ModelNotFoundError:
        say(not_found(services.models, judge, consequence, subject="the judge model"))
    except ServerUnreachableError:
        say(unreachable(judge, consequence, subject="the judge model"))
    return None


def _run_meta(
    settings: Settings,
    dataset: Path,
    items: Sequence[QAItem],
    check: ModelCheck,
    judge: ServedModel | None,
    params: RetrievalParams | None,
    whole_store: bool,
) -> dict[str, Any]:
    return {
        "dataset": str(dataset),
        "questions": len(items),
        "answerable": sum(not item.unanswerable for item in items),
        "models": check.available,
        "skipped": list(check.skipped),
        "judge": judge.id if judge else None,
        "started_at": datetime.now().isoformat(timespec="seconds"),
        "finished_at": None,
        "whole_store": whole_store,
        "retrieval": asdict(params or RetrievalParams()),
        "settings": {key: getattr(settings, key) for key in RECORDED_SETTINGS},
    }


def _write_meta(folder: Path, meta: dict[str, Any]) -> None:
    text = json.dumps(meta, indent=2, ensure_ascii=False, default=str) + "\n"
    (folder / RUN_FILE).write_text(text, encoding="utf-8")


@dataclass(frozen=True)
class Lane:
    """One column of the report: a model (id) asked through its own chain, at one budget."""

    label: str  # the model id, or `model · 500 tokens` in a budget sweep
    model: str
    chain: Chain


def budget_label(budget: int | None) -> str:
    return "whole window" if budget is None else f"{budget:,} tokens"


def lanes_for(
    services: Services,
    store: Store,
    params: RetrievalParams | None,
    models: Sequence[str],
    budgets: Sequence[int | None],
) -> list[Lane]:
    """One lane per model, or per model and budget. In a budget sweep each lane packs at most
    its budget (`KB_CONTEXT_TOKENS`; None: what the window leaves) and the first-token target
    (`KB_FIRST_TOKEN_TARGET_S`) is off, so that no lane is capped by another's speed."""
    if not budgets:
        chain = services.chain(store, params)
        return [Lane(model, model, chain) for model in models]
    lanes = []
    for budget in budgets:
        settings = services.settings.model_copy(
            update={"context_tokens": budget, "first_token_target_s": None}
        )
        chain = Chain(
            settings, store, services.embedder, services.models, params, services.calibration
        )
        lanes += [Lane(f"{m} · {budget_label(budget)}", m, chain) for m in models]
    return lanes


class _Asker:
    """Asks every question of every lane, question by question, and appends each record."""

    def __init__(
        self, models: ModelHub, filters: SearchFilters | None, judge: ServedModel | None
    ) -> None:
        self.models = models
        self.filters = filters
        self.judge = judge

    def run_all(
        self,
        lanes: Sequence[Lane],
        items: Sequence[QAItem],
        results: IO[str],
        on_progress: ProgressHook | None,
        say: Notify,
    ) -> list[dict[str, str]]:
        """Ask every item of every lane; returns the models skipped midway (removed from their
        server, or the server stopped answering, during the run), each with one sentence that
        was also said. Their answers before that stay in `results`."""
        skipped: list[dict[str, str]] = []
        active = list(lanes)
        total, done = len(lanes) * len(items), 0
        for asked, item in enumerate(items):
            for lane in list(active):
                try:
                    row = self.ask(lane, item)
                except (ModelNotFoundError, ServerUnreachableError) as err:
                    reason = self._skip_reason(lane.model, err)
                    skipped.append({"model": lane.label, "reason": reason})
                    say(reason)
                    active.remove(lane)
                    done += len(items) - asked  # its remaining questions count as done
                else:
                    results.write(json.dumps(row, ensure_ascii=False) + "\n")
                    results.flush()
                    done += 1
                if on_progress is not None:
                    on_progress(done, total)
        return skipped

    def _skip_reason(self, model: str, err: KBError) -> str:
        rest = "its remaining questions were skipped"
        if isinstance(err, ServerUnreachableError):
            return unreachable(model, rest)
        return not_found(self.models, model, rest)

    def ask(self, lane: Lane, item: QAItem) -> dict[str, Any]:
        """The record of one answer, under the lane's label (`model`) with the model's id
        (`model_id`). A missing model or a server that stopped answering ends the lane
        (raised); any other `KBError` is recorded as an empty answer."""
        started = time.perf_counter()
        try:
            result = lane.chain.ask(item.question, lane.model, filters=self.filters)
        except (ModelNotFoundError, ServerUnreachableError):
            raise
        except KBError as err:
            row = failed_row(item, lane.label, str(err), time.perf_counter() - started)
            return {**row, "model_id": lane.model}
        row = {**result_row(item, lane.label, result), "model_id": result.model}
        if self.judge is not None:
            texts = [passage["text"] for passage in result.passages]
            verdict = judge_answer(
                self.models, self.judge.id, self.judge.window, item, result.answer, texts
            )
            row["judge"] = asdict(verdict)
        return row


def generation_stats(result: AnswerResult) -> GenerationStats:
    """The chain's figures as `GenerationStats`: seconds, tokens as the server (or kb's count,
    see `counted_by`) gave them; `truncated` when the answer stopped at `max_tokens`."""
    generation_s = None
    if result.output_tokens and result.tokens_per_s:
        generation_s = result.output_tokens / result.tokens_per_s
    return GenerationStats(
        latency_s=result.total_ms / 1000,
        ttft_s=result.ttft_ms / 1000 if result.ttft_ms is not None else None,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.output_tokens,
        generation_s=generation_s,
        truncated=result.finish_reason == "length",
    )


def result_row(item: QAItem, model: str, result: AnswerResult) -> dict[str, Any]:
    """The scored record of one answer plus what the chain measured and used: `model` is the
    id the chain answered with; `window` (tokens) is the window packed for, `counted_by` says
    whose token counts these are, `prompt_cut` that Ollama cut the prompt silently, `repacked`
    that the server rejected it as too long and fewer passages were sent; times in ms. Each
    citation says whether the model wrote it or kb attributed it (`kind`); `uncited` lists the
    answer's sentences that no passage supports."""
    record = score_question(
        item,
        model=model,
        answer=result.answer,
        cited_sources=[citation.path for citation in result.citations],
        passage_texts=[passage["text"] for passage in result.passages],
        stats=generation_stats(result),
        citations=[CitedPassage(c.path, c.text, c.kind) for c in result.citations],
        uncited_sentences=len(result.uncited_sentences),
        overruled=sum(len(c.replaces) for c in result.citations),
    )
    return {
        **asdict(record),
        **_question_keys(item),
        "server": result.server,
        "citations": [
            {
                "n": c.n,
                "source": c.source,
                "path": c.path,
                "kind": c.kind,
                "support": c.support,
                "replaces": c.replaces,
            }
            for c in result.citations
        ],
        "uncited": list(result.uncited_sentences),
        "passages": [
            {key: p[key] for key in ("n", "source", "path", "score", "text")}
            for p in result.passages
        ],
        "context_tokens": result.context_tokens,
        "window": result.window,
        "window_source": result.window_source,
        "prompt_tokens_estimate": result.prompt_tokens_estimate,
        "output_tokens": result.output_tokens,
        "counted_by": result.counted_by,
        "tokens_per_s": result.tokens_per_s,
        "retrieval_ms": result.retrieval_ms,
        "prompt_ms": result.prompt_ms,
        "finish_reason": result.finish_reason,
        "prompt_cut": result.truncated,
        "repacked": result.repacked,
        "notice": result.notice,
        "error": result.error if result.partial else None,
        "judge": None,
    }


def failed_row(item: QAItem, model: str, error: str, seconds: float) -> dict[str, Any]:
    """A question the chain could not answer: scored as an empty answer, with the reason."""
    record = score_question(
        item, model=model, answer="", cited_sources=[], passage_texts=[],
        stats=GenerationStats(latency_s=seconds),
    )  # fmt: skip
    return {
        **asdict(record),
        **_question_keys(item),
        "citations": [],
        "passages": [],
        "error": error,
        "judge": None,
    }


def _question_keys(item: QAItem) -> dict[str, Any]:
    return {"question": item.question, "references": list(item.answers), "gold_doc": item.doc}
