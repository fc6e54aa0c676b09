"""From a question to a grounded, cited answer from an Ollama model.

    question ─(follow-up? rewrite)─> retrieval ─> budget from the model's real window
             ─> pack passages ─> /api/chat with num_ctx and num_predict, streamed
             ─> truncation check against prompt_eval_count ─> calibration ─> AnswerResult

`Chain.stream()` yields `str` deltas as the model writes and the `AnswerResult` last;
`Chain.ask()` returns only the result. `Chain.search()` is retrieval alone (no model).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from rag.calibration import Calibration
from rag.context import PackedContext, TokenEstimator, pack
from rag.embeddings import Embedder
from rag.errors import EmptyKnowledgeBaseError, KBError
from rag.models import FACTS_MAX_AGE_S, ModelFacts, effective_window, model_facts
from rag.ollama_client import OllamaGateway
from rag.prompts import SYSTEM_PROMPT, rewrite_message, user_message
from rag.retrieve import Passage, RetrievalParams, Retriever, SearchFilters
from rag.settings import Settings
from rag.store import Store

log = logging.getLogger(__name__)

HISTORY_SHARE = 0.25  # at most this share of the window goes to earlier turns
REWRITE_TOKENS = 96
MIN_CONTEXT_TOKENS = 64
Message = dict[str, str]


@dataclass
class Citation:
    n: int
    source: str  # "path, p. 3, Heading"
    path: str
    abs_path: str
    title: str
    page: int | None
    headings: list[str]
    text: str


@dataclass
class AnswerResult:
    question: str
    search_query: str
    model: str
    answer: str = ""
    citations: list[Citation] = field(default_factory=list)
    passages: list[dict[str, Any]] = field(default_factory=list)
    window: int = 0
    num_ctx: int = 0
    num_predict: int = 0
    context_tokens: int = 0  # estimated tokens of the packed passages
    prompt_tokens_estimate: int = 0
    prompt_eval_count: int | None = None
    eval_count: int | None = None
    retrieval_ms: float = 0.0
    ttft_ms: float | None = None
    total_ms: float = 0.0
    tokens_per_s: float | None = None
    truncated: bool = False
    partial: bool = False  # the stream broke off; `answer` is what arrived
    error: str | None = None
    done_reason: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class Chain:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        embedder: Embedder,
        gateway: OllamaGateway,
        params: RetrievalParams | None = None,
        calibration: Calibration | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.gateway = gateway
        params = params or RetrievalParams(candidates=settings.retrieval_candidates)
        self.retriever = Retriever(store, embedder, params)
        self.calibration = calibration or Calibration(settings.data_dir)

    # -- retrieval only --

    def search(self, query: str, filters: SearchFilters | None = None) -> list[Passage]:
        if self.store.count_chunks() == 0:
            raise EmptyKnowledgeBaseError(
                "The knowledge base is empty; add documents with `python -m ingest ./docs` "
                "or on the app's Library page."
            )
        return self.retriever.search(query, filters)

    def facts(self, model: str) -> ModelFacts:
        # The gateway outlives chains in the app; a minute-old /api/show is still right.
        return model_facts(self.gateway, model, max_age_s=FACTS_MAX_AGE_S)

    # -- answers --

    def ask(
        self,
        question: str,
        model: str | None = None,
        history: Sequence[Message] = (),
        filters: SearchFilters | None = None,
    ) -> AnswerResult:
        result = None
        for event in self.stream(question, model, history, filters):
            if isinstance(event, AnswerResult):
                result = event
        assert result is not None
        return result

    def stream(
        self,
        question: str,
        model: str | None = None,
        history: Sequence[Message] = (),
        filters: SearchFilters | None = None,
    ) -> Iterator[str | AnswerResult]:
        started = time.perf_counter()
        model = model or self.settings.model
        window = effective_window(self.facts(model), self.settings)
        estimator = self.calibration.estimator(model)
        kept_history = trim_history(list(history), int(window * HISTORY_SHARE), estimator)
        query = self.standalone_query(question, kept_history, model, window)

        retrieval_started = time.perf_counter()
        passages = self.search(query, filters)
        retrieval_ms = (time.perf_counter() - retrieval_started) * 1000

        budget = self.context_budget(window, kept_history, question, estimator)
        packed = pack(passages, budget, estimator)
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            *kept_history,
            {"role": "user", "content": user_message(packed.text, question)},
        ]
        result = AnswerResult(
            question=question,
            search_query=query,
            model=model,
            passages=[passage_record(n, p) for n, p in enumerate(packed.passages, 1)],
            window=window,
            num_ctx=window,
            num_predict=self.settings.answer_tokens,
            context_tokens=packed.tokens,
            prompt_tokens_estimate=estimator.messages(messages),
            retrieval_ms=round(retrieval_ms, 1),
        )
        yield from self._generate(result, messages, started)
        self._check_truncation(result, messages)
        result.citations = resolve_citations(result.answer, packed)
        result.total_ms = round((time.perf_counter() - started) * 1000, 1)
        yield result

    def context_budget(
        self, window: int, history: list[Message], question: str, estimator: TokenEstimator
    ) -> int:
        """Window − system prompt − kept history − question − answer − safety margin."""
        fixed = estimator.messages(
            [
                {"role": "system", "content": SYSTEM_PROMPT},
                *history,
                {"role": "user", "content": user_message("", question)},
            ]
        )
        room = window - fixed - self.settings.answer_tokens - self.settings.safety_margin
        if self.settings.context_tokens is not None:
            room = min(room, self.settings.context_tokens)
        return max(room, MIN_CONTEXT_TOKENS)

    def standalone_query(
        self, question: str, history: list[Message], model: str, window: int
    ) -> str:
        """A follow-up rewritten by the model into a question that can be searched alone;
        without history the question itself. If the model fails, the previous question
        joined to the follow-up (cheap, and usually enough for retrieval)."""
        if not history:
            return question
        previous = next((t["content"] for t in reversed(history) if t["role"] == "user"), "")
        fallback = f"{previous} {question}".strip()
        try:
            reply = self.gateway.chat(
                model,
                [{"role": "user", "content": rewrite_message(question, history)}],
                options={"num_ctx": window, "num_predict": REWRITE_TOKENS, "temperature": 0},
                stream=False,
            )
            text = next(iter(reply)).message.content or ""
        except KBError as err:
            log.warning("Query rewrite failed (%s); searching with the joined question.", err)
            return fallback
        rewritten = text.strip().strip('"').splitlines()[0].strip() if text.strip() else ""
        return rewritten or fallback

    def _generate(
        self, result: AnswerResult, messages: list[Message], started: float
    ) -> Iterator[str]:
        options = {"num_ctx": result.num_ctx, "num_predict": result.num_predict}
        parts: list[str] = []
        try:
            for chunk in self.gateway.chat(result.model, messages, options=options):
                delta = (chunk.message.content or "") if chunk.message else ""
                if delta:
                    if result.ttft_ms is None:
                        result.ttft_ms = round((time.perf_counter() - started) * 1000, 1)
                    parts.append(delta)
                    yield delta
                if chunk.done:
                    _read_final_counts(result, chunk)
        except KBError as err:
            if not parts:
                raise
            result.partial = True
            result.error = str(err)
        result.answer = "".join(parts)

    def _check_truncation(self, result: AnswerResult, messages: list[Message]) -> None:
        count = result.prompt_eval_count
        if count is None or result.partial:
            return
        prompt_chars = sum(len(m["content"]) for m in messages)
        if was_cut(count, result.num_ctx, result.prompt_tokens_estimate):
            result.truncated = True
            log.warning(
                "Ollama cut the prompt for %s: it read %d tokens of an estimated %d with "
                "num_ctx %d; the next request packs less.",
                result.model, count, result.prompt_tokens_estimate, result.num_ctx,
            )  # fmt: skip
            self.calibration.record_cut(result.model, prompt_chars, result.num_ctx)
        else:
            self.calibration.record(result.model, prompt_chars, count)


def was_cut(prompt_eval_count: int, num_ctx: int, estimate: int) -> bool:
    """Ollama reports the tokens it kept. A prompt that filled the whole window, or one far
    shorter than the (conservative) estimate, lost tokens on the way."""
    return prompt_eval_count >= num_ctx - 1 or prompt_eval_count < 0.5 * estimate


def _read_final_counts(result: AnswerResult, chunk: Any) -> None:
    result.prompt_eval_count = chunk.prompt_eval_count
    result.eval_count = chunk.eval_count
    result.done_reason = chunk.done_reason
    if chunk.eval_count and chunk.eval_duration:
        result.tokens_per_s = round(chunk.eval_count / (chunk.eval_duration / 1e9), 2)


def trim_history(history: list[Message], budget: int, estimator: TokenEstimator) -> list[Message]:
    """The most recent turns that fit in `budget` tokens, whole user/assistant pairs."""
    kept: list[Message] = []
    used = 0
    for turn in reversed(history):
        cost = estimator.messages([turn])
        if used + cost > budget:
            break
        kept.insert(0, turn)
        used += cost
    while kept and kept[0]["role"] != "user":
        kept.pop(0)  # never start with an answer whose question was dropped
    return kept


_CITATION = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")


def cited_numbers(answer: str) -> list[int]:
    """Numbers cited as [1], [2][3] or [1, 2], in order of first appearance."""
    numbers: list[int] = []
    for match in _CITATION.finditer(answer):
        for part in match.group(1).split(","):
            number = int(part)
            if number not in numbers:
                numbers.append(number)
    return numbers


def resolve_citations(answer: str, packed: PackedContext) -> list[Citation]:
    """Citations of numbers that exist in the packed context; others are dropped."""
    citations = []
    for number in cited_numbers(answer):
        if 1 <= number <= len(packed.passages):
            passage = packed.passages[number - 1]
            citations.append(
                Citation(
                    n=number,
                    source=passage.source_label(),
                    path=passage.path,
                    abs_path=passage.abs_path,
                    title=passage.title,
                    page=passage.page,
                    headings=passage.headings,
                    text=passage.text,
                )
            )
    return citations


def passage_record(number: int, passage: Passage) -> dict[str, Any]:
    return {
        "n": number,
        "source": passage.source_label(),
        "path": passage.path,
        "abs_path": passage.abs_path,
        "title": passage.title,
        "page": passage.page,
        "headings": passage.headings,
        "chunk_indexes": passage.chunk_indexes,
        "score": round(passage.score, 4),
        "text": passage.text,
    }
