"""Every question through the full chain (`Chain.ask`), once per model, scored and written out.

`run_answers(settings, dataset, models, ...)` is what `python -m eval answers` and the app's
Evaluation page call. It
1. checks each model on Ollama: one that is not pulled is reported in one sentence and skipped;
2. ingests the eval set's `docs/` (cheap when unchanged, see `eval/corpus.py`);
3. asks every question of every available model through `Chain.ask`, restricted to the eval
   set's documents, scores it with `eval.metrics.score_question` and, with a judge, has the
   judge grade it (`eval/judge.py`); each record is appended to `results.jsonl` at once;
4. reads `results.jsonl` back and writes `summary.csv`, `report.md` and the charts from it
   (`eval/report.py`, `eval/charts.py`), so every figure traces to per-question records.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from eval.corpus import IngestHook, failed_files_note, ingest_docs, scope_filter, select_items
from eval.dataset import QAItem, load_eval_set
from eval.judge import judge_answer
from eval.metrics import GenerationStats, score_question
from eval.report import RESULTS_FILE, RUN_FILE, load_run
from rag.chain import AnswerResult, Chain
from rag.embeddings import Embedder
from rag.errors import KBError, ModelNotFoundError, OllamaUnreachableError
from rag.models import effective_window, model_facts
from rag.ollama_client import OllamaGateway
from rag.retrieve import RetrievalParams, SearchFilters
from rag.settings import Settings
from rag.store import Store, open_store

ProgressHook = Callable[[int, int], None]  # (answers done, answers in all)
RECORDED_SETTINGS = (
    "collection", "embed_model", "chunk_size", "chunk_overlap", "context_tokens", "context_cap",
    "answer_tokens", "safety_margin",
)  # fmt: skip
Notify = Callable[[str], None]


@dataclass(frozen=True)
class ModelCheck:
    available: list[str]
    skipped: list[dict[str, str]]  # {"model", "reason"}


def check_models(gateway: OllamaGateway, models: Sequence[str]) -> ModelCheck:
    """Which models Ollama serves; the others with one sentence each."""
    available: list[str] = []
    skipped: list[dict[str, str]] = []
    for model in models:
        try:
            model_facts(gateway, model)
        except ModelNotFoundError:
            skipped.append({"model": model, "reason": not_pulled(gateway, model)})
            continue
        available.append(model)
    return ModelCheck(available, skipped)


def not_pulled(gateway: OllamaGateway, model: str) -> str:
    return (
        f"Model {model} is not pulled on Ollama at {', '.join(gateway.hosts)}, so it was "
        f"skipped; run `ollama pull {model}` to include it."
    )


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
    settings: Settings,
    dataset: Path,
    models: Sequence[str],
    limit: int | None = None,
    judge: str | None = None,
    out: Path | None = None,
    *,
    embedder: Embedder | None = None,
    gateway: OllamaGateway | None = None,
    store: Store | None = None,
    params: RetrievalParams | None = None,
    whole_store: bool = False,
    on_progress: ProgressHook | None = None,
    on_ingest: IngestHook | None = None,
    notify: Notify | None = None,
) -> Path:
    """Run the eval and write its folder (see `eval/report.py`); returns the folder.

    `embedder`, `gateway` and `store` are opened here unless given (the app passes the ones it
    holds: the embedded store admits one opener per process)."""
    say = notify or (lambda message: None)
    eval_set = load_eval_set(dataset)
    items = select_items(eval_set, limit)
    with ExitStack() as stack:
        if gateway is None:
            gateway = stack.enter_context(OllamaGateway(settings))
        check = check_models(gateway, models)
        for skipped in check.skipped:
            say(skipped["reason"])
        if not check.available:
            raise KBError(f"None of the models {', '.join(models)} is pulled on Ollama; pull one.")
        judge_setup = _judge_setup(gateway, settings, judge, say)
        folder = out_dir(settings, out)
        if store is None:
            store = stack.enter_context(open_store(settings))
        embedder = embedder or Embedder(settings)
        ingested = ingest_docs(settings, store, embedder, eval_set.docs_dir, on_ingest)
        if (note := failed_files_note(ingested)) is not None:
            say(note)
        meta = _run_meta(settings, dataset, items, check, judge_setup, params, whole_store)
        meta["ingest"] = ingested.as_json()
        _create(folder)
        _write_meta(folder, meta)
        chain = Chain(settings, store, embedder, gateway, params)
        asker = _Asker(chain, scope_filter(eval_set.docs_dir, whole_store), judge_setup)
        with (folder / RESULTS_FILE).open("w", encoding="utf-8") as results:
            meta["skipped"] += asker.run_all(check.available, items, results, on_progress, say)
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


@dataclass(frozen=True)
class JudgeSetup:
    model: str
    num_ctx: int


def _judge_setup(
    gateway: OllamaGateway, settings: Settings, judge: str | None, say: Notify
) -> JudgeSetup | None:
    if not judge:
        return None
    try:
        facts = model_facts(gateway, judge)
    except ModelNotFoundError:
        say(f"The judge model {judge} is not pulled, so answers are not judged; run "
            f"`ollama pull {judge}` to judge them.")  # fmt: skip
        return None
    return JudgeSetup(judge, effective_window(facts, settings))


def _run_meta(
    settings: Settings,
    dataset: Path,
    items: Sequence[QAItem],
    check: ModelCheck,
    judge: JudgeSetup | None,
    params: RetrievalParams | None,
    whole_store: bool,
) -> dict[str, Any]:
    return {
        "dataset": str(dataset),
        "questions": len(items),
        "answerable": sum(not item.unanswerable for item in items),
        "models": check.available,
        "skipped": list(check.skipped),
        "judge": judge.model if judge else None,
        "started_at": datetime.now().isoformat(timespec="seconds"),
        "finished_at": None,
        "whole_store": whole_store,
        "retrieval": asdict(params or RetrievalParams()),
        "settings": {key: getattr(settings, key) for key in RECORDED_SETTINGS},
    }


def _write_meta(folder: Path, meta: dict[str, Any]) -> None:
    text = json.dumps(meta, indent=2, ensure_ascii=False, default=str) + "\n"
    (folder / RUN_FILE).write_text(text, encoding="utf-8")


class _Asker:
    """Asks the questions, one model after the other, and appends each record."""

    def __init__(
        self, chain: Chain, filters: SearchFilters | None, judge: JudgeSetup | None
    ) -> None:
        self.chain = chain
        self.filters = filters
        self.judge = judge

    def run_all(
        self,
        models: Sequence[str],
        items: Sequence[QAItem],
        results: IO[str],
        on_progress: ProgressHook | None,
        say: Notify,
    ) -> list[dict[str, str]]:
        """Returns the models skipped midway (removed from Ollama during the run)."""
        skipped: list[dict[str, str]] = []
        total, done = len(models) * len(items), 0
        for model in models:
            try:
                for item in items:
                    row = self.ask(model, item)
                    results.write(json.dumps(row, ensure_ascii=False) + "\n")
                    results.flush()
                    done += 1
                    if on_progress is not None:
                        on_progress(done, total)
            except ModelNotFoundError:
                reason = not_pulled(self.chain.gateway, model)
                skipped.append({"model": model, "reason": reason})
                say(reason)
                done = (models.index(model) + 1) * len(items)
        return skipped

    def ask(self, model: str, item: QAItem) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            result = self.chain.ask(item.question, model, filters=self.filters)
        except (ModelNotFoundError, OllamaUnreachableError):
            raise
        except KBError as err:
            return failed_row(item, model, str(err), time.perf_counter() - started)
        row = result_row(item, model, result)
        if self.judge is not None:
            texts = [passage["text"] for passage in result.passages]
            verdict = judge_answer(
                self.chain.gateway, self.judge.model, self.judge.num_ctx, item, result.answer, texts
            )
            row["judge"] = asdict(verdict)
        return row


def generation_stats(result: AnswerResult) -> GenerationStats:
    generation_s = None
    if result.eval_count and result.tokens_per_s:
        generation_s = result.eval_count / result.tokens_per_s
    return GenerationStats(
        latency_s=result.total_ms / 1000,
        ttft_s=result.ttft_ms / 1000 if result.ttft_ms is not None else None,
        prompt_tokens=result.prompt_eval_count,
        completion_tokens=result.eval_count,
        generation_s=generation_s,
        truncated=result.done_reason == "length",
    )


def result_row(item: QAItem, model: str, result: AnswerResult) -> dict[str, Any]:
    """The scored record of one answer plus what the chain measured and used."""
    record = score_question(
        item,
        model=model,
        answer=result.answer,
        cited_sources=[citation.path for citation in result.citations],
        passage_texts=[passage["text"] for passage in result.passages],
        stats=generation_stats(result),
    )
    return {
        **asdict(record),
        **_question_keys(item),
        "citations": [{"n": c.n, "source": c.source, "path": c.path} for c in result.citations],
        "passages": [
            {key: p[key] for key in ("n", "source", "path", "score", "text")}
            for p in result.passages
        ],
        "context_tokens": result.context_tokens,
        "num_ctx": result.num_ctx,
        "prompt_tokens_estimate": result.prompt_tokens_estimate,
        "tokens_per_s": result.tokens_per_s,
        "retrieval_ms": result.retrieval_ms,
        "done_reason": result.done_reason,
        "prompt_cut": result.truncated,
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
