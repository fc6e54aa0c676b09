"""From a question to a grounded, cited answer from a model on any configured server.

    question ─(follow-up? rewrite)─> retrieval ─> budget from the model's real window
             ─> pack passages ─> ChatBackend.chat (Ollama: num_ctx on every request), streamed
             ─> Usage: prompt tokens, a silent cut (window filled), calibration ─> AnswerResult

`Chain.stream()` yields `str` deltas as the model writes and the `AnswerResult` last;
`Chain.ask()` returns only the result. `Chain.search()` is retrieval alone (no model). The
chain knows the `ModelHub`, never a server's own client.

A server that rejects the prompt as longer than its window (OpenAI-compatible servers reject,
where Ollama cuts silently) teaches kb that window: the passages are packed again for it and
sent once more, and the result says so in `notice`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any

from rag.calibration import Calibration
from rag.citations import (  # noqa: F401 (cited_numbers, resolve_citations: re-exported)
    Citation,
    cite,
    cited_numbers,
    resolve_citations,
)
from rag.context import PackedContext, TokenEstimator, pack
from rag.embeddings import Embedder
from rag.errors import (
    EmptyKnowledgeBaseError,
    KBError,
    PromptTooLongError,
    QuestionTooLongError,
)
from rag.llm.base import ModelFacts, ModelRef, TextDelta, Usage, collect_text
from rag.llm.hangup import Hangup
from rag.llm.hub import ModelHub
from rag.models import FACTS_MAX_AGE_S, effective_window, window_facts
from rag.prompts import answer_messages, rewrite_message
from rag.retrieve import Passage, RetrievalParams, Retriever, SearchFilters
from rag.settings import Settings
from rag.store import Store

log = logging.getLogger(__name__)

HISTORY_SHARE = 0.25  # at most this share of the window goes to earlier turns
ANSWER_SHARE = 4  # the answer takes at most 1/4 of the window
REWRITE_TOKENS = 96
MIN_CONTEXT_TOKENS = 64
# A prompt count under half of kb's (high) estimate is no measure of the prompt: servers with a
# prompt cache count only the tokens they evaluated. Such counts do not calibrate.
UNCACHED_SHARE = 0.5
SPEED_SAMPLE_TOKENS = 256  # shorter prompts time mostly the request, not the evaluation
Message = dict[str, str]


@dataclass
class AnswerResult:
    """One answer. `model` is the model id (`name@server`). Token figures are tokens: `window`
    is the window packed for (sent as Ollama's num_ctx), `prompt_tokens`/`output_tokens` the
    counts of `counted_by` (server, tokenizer or estimate). Times are milliseconds."""

    question: str
    search_query: str
    model: str
    server: str = ""
    answer: str = ""
    citations: list[Citation] = field(default_factory=list)  # written ones, then attributed
    uncited_sentences: list[str] = field(default_factory=list)  # sentences no passage supports
    passages: list[dict[str, Any]] = field(default_factory=list)
    window: int = 0
    window_source: str | None = None  # trained, server, setting, learned or default
    max_tokens: int = 0
    context_tokens: int = 0  # estimated tokens of the packed passages
    prompt_tokens_estimate: int = 0
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    counted_by: str | None = None
    retrieval_ms: float = 0.0
    ttft_ms: float | None = None
    prompt_tokens_per_s: float | None = None  # prompt evaluation speed of this answer
    speed_capped: bool = False  # the context was cut to meet KB_FIRST_TOKEN_TARGET_S
    prompt_ms: float | None = None  # the server's own prompt-evaluation time, where it gives it
    total_ms: float = 0.0
    tokens_per_s: float | None = None
    truncated: bool = False  # Ollama cut the prompt silently (it filled the window)
    repacked: bool = False  # the server rejected the prompt as too long; sent again, smaller
    notice: str | None = None  # one sentence about how the answer was made, for the user
    partial: bool = False  # the stream broke off; `answer` is what arrived
    error: str | None = None
    finish_reason: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def rests_on_ocr(self) -> bool:
        """True when a passage the answer cites was read off a scanned page by OCR."""
        scanned = {p["n"] for p in self.passages if p.get("ocr")}
        return any(c.n in scanned for c in self.citations)


# Takes the store for one retrieval (`SharedStore.use`): a chain given one holds the embedded
# store's folder lock while it retrieves, not while a model writes the answer (seconds to
# minutes on a CPU), so that an ingest or another `rag ask` gets the lock meanwhile.
StoreLease = Callable[[], AbstractContextManager[Store]]


class Chain:
    def __init__(
        self,
        settings: Settings,
        store: Store | StoreLease,
        embedder: Embedder,
        models: ModelHub,
        params: RetrievalParams | None = None,
        calibration: Calibration | None = None,
    ) -> None:
        """`store`: an open store, used for the chain's life, or a `StoreLease`, taken for each
        retrieval."""
        self.settings = settings
        self.lease: StoreLease = store if callable(store) else (lambda: nullcontext(store))
        self.embedder = embedder
        self.models = models
        self.params = params or RetrievalParams(candidates=settings.retrieval_candidates)
        # one retriever over an open store keeps what it reads once (BM25 settings, identity)
        self.retriever = None if callable(store) else Retriever(store, embedder, self.params)
        self.calibration = calibration or Calibration(settings.data_dir)

    # -- retrieval only --

    def search(self, query: str, filters: SearchFilters | None = None) -> list[Passage]:
        """The passages for `query`, best first. Raises `EmptyKnowledgeBaseError` and the
        store's `KBError`s (a locked or unreachable store)."""
        self.embedder.load()  # seconds on first use: not while holding the store
        with self.lease() as store:
            if store.count_chunks() == 0:
                raise EmptyKnowledgeBaseError(
                    "The knowledge base is empty; add documents with `python -m ingest ./docs` "
                    "or on the app's Library page."
                )
            retriever = self.retriever or Retriever(store, self.embedder, self.params)
            return retriever.search(query, filters)

    def facts(self, model: str) -> ModelFacts:
        """The model's facts with the window kb packs for (see `rag.models.window_facts`)."""
        ref = self.models.resolve(model)
        # The hub outlives chains in the app; minute-old facts are still right.
        facts = self.models.backend(ref.server).facts(ref.name, max_age_s=FACTS_MAX_AGE_S)
        return window_facts(facts, self.settings, self.calibration.learned_window(ref.id))

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
        hangup: Hangup | None = None,
    ) -> Iterator[str | AnswerResult]:
        """Yields the answer's text deltas, then the `AnswerResult`. Raises `KBError`s of the
        store and the model server (one sentence each) before the first delta; an error after
        it ends the stream with `partial` set. `hangup.hang_up()`, from another thread, closes
        the requests to the model server at once (see `rag.llm.hangup`)."""
        started = time.perf_counter()
        ref = self.models.resolve(model or self.settings.model)
        facts = self.facts(ref.id)
        window = effective_window(facts, self.settings)
        estimator = self.calibration.estimator(ref.id)
        self._check_question_fits(question, window, estimator, ref)
        kept_history = trim_history(list(history), int(window * HISTORY_SHARE), estimator)
        query = self.standalone_query(question, kept_history, ref, window, hangup)

        retrieval_started = time.perf_counter()
        passages = self.search(query, filters)
        retrieval_ms = (time.perf_counter() - retrieval_started) * 1000

        result = AnswerResult(
            question=question, search_query=query, model=ref.id, server=ref.server,
            window_source=facts.window_source,
            retrieval_ms=round(retrieval_ms, 1),
        )  # fmt: skip
        packed, messages = self._prepare(result, passages, kept_history, window, estimator)
        try:
            yield from self._generate(result, ref, messages, started, hangup)
        except PromptTooLongError as err:
            smaller = self._learn_window(ref, err, window)
            packed, messages = self._prepare(result, passages, kept_history, smaller, estimator)
            result.repacked = True
            result.window_source = "learned"
            result.notice = (
                f"The server rejected the prompt as too long for its {smaller:,}-token window; "
                "kb packed fewer passages and asked again."
            )  # replaces a speed notice of the first packing: this one says more
            yield from self._generate(result, ref, messages, started, hangup)
        self._check_truncation(result, messages)
        cited = cite(result.answer, packed, result.question)
        result.citations, result.uncited_sentences = cited.citations, cited.uncited_sentences
        result.total_ms = round((time.perf_counter() - started) * 1000, 1)
        yield result

    def _prepare(
        self,
        result: AnswerResult,
        passages: list[Passage],
        history: list[Message],
        window: int,
        estimator: TokenEstimator,
    ) -> tuple[PackedContext, list[Message]]:
        """Pack the passages for `window` and fill the result's packing figures."""
        budget = self.context_budget(window, history, result.question, estimator)
        cap = self.first_token_cap(result.model, history, result.question, estimator)
        result.speed_capped = cap is not None and cap < budget
        if cap is not None and result.speed_capped:
            budget = max(cap, MIN_CONTEXT_TOKENS)
            result.notice = (
                f"The passages were cut to about {budget:,} tokens so that the first token comes "
                f"within {self.settings.first_token_target_s:g} s at this model's measured "
                "prompt speed (KB_FIRST_TOKEN_TARGET_S)."
            )
        packed = pack(passages, budget, estimator)
        messages = answer_messages(packed.text, result.question, history)
        result.window = window
        result.max_tokens = self.answer_tokens(window)
        result.passages = [passage_record(n, p) for n, p in enumerate(packed.passages, 1)]
        result.context_tokens = packed.tokens
        result.prompt_tokens_estimate = estimator.messages(messages)
        return packed, messages

    def answer_tokens(self, window: int) -> int:
        """Tokens reserved for the answer: `KB_ANSWER_TOKENS`, at most a quarter of a small
        window (a 700-token window cannot hold 512 of answer and the passages too)."""
        return min(self.settings.answer_tokens, window // ANSWER_SHARE)

    def _learn_window(self, ref: ModelRef, err: PromptTooLongError, window: int) -> int:
        """The window to pack for after the server rejected a prompt sized for `window`: the
        one it stated (remembered for the next time), else half of what was tried."""
        if err.window is not None and err.window < window:
            self.calibration.record_window(ref.id, err.window)
            return err.window
        smaller = max(window // 2, MIN_CONTEXT_TOKENS * 4)
        if smaller >= window:
            raise err
        return smaller

    def _check_question_fits(
        self, question: str, window: int, estimator: TokenEstimator, ref: ModelRef
    ) -> None:
        fixed = estimator.messages(answer_messages("", question))
        if fixed + self.answer_tokens(window) + self.settings.safety_margin > window:
            raise QuestionTooLongError(
                f"The question alone (about {estimator.estimate(question):,} tokens) does not fit "
                f"the {window:,}-token window of {ref.id}; shorten it or choose a model with a "
                "larger window."
            )

    def context_budget(
        self, window: int, history: list[Message], question: str, estimator: TokenEstimator
    ) -> int:
        """Window − system prompt − kept history − question − answer − safety margin, at most
        `KB_CONTEXT_TOKENS`; in estimated tokens."""
        fixed = self._fixed_tokens(history, question, estimator)
        room = window - fixed - self.answer_tokens(window) - self.settings.safety_margin
        if self.settings.context_tokens is not None:
            room = min(room, self.settings.context_tokens)
        return max(room, MIN_CONTEXT_TOKENS)

    def first_token_cap(
        self, model: str, history: list[Message], question: str, estimator: TokenEstimator
    ) -> int | None:
        """The most passage tokens this model can read before `KB_FIRST_TOKEN_TARGET_S` runs
        out, at the prompt-evaluation speed measured on its earlier answers (tokens/s); None
        before a speed is known or without a target."""
        target = self.settings.first_token_target_s
        speed = self.calibration.get(model).prompt_tokens_per_s
        if not target or not speed:
            return None
        return int(speed * target) - self._fixed_tokens(history, question, estimator)

    @staticmethod
    def _fixed_tokens(history: list[Message], question: str, estimator: TokenEstimator) -> int:
        """Estimated tokens of everything but the passages: system prompt, history, question."""
        return estimator.messages(answer_messages("", question, history))

    def standalone_query(
        self,
        question: str,
        history: list[Message],
        model: ModelRef | str,
        window: int,
        hangup: Hangup | None = None,
    ) -> str:
        """A follow-up rewritten by the model into a question that can be searched alone;
        without history the question itself. If the model fails, the previous question
        joined to the follow-up (cheap, and usually enough for retrieval)."""
        if not history:
            return question
        previous = next((t["content"] for t in reversed(history) if t["role"] == "user"), "")
        fallback = f"{previous} {question}".strip()
        message = [{"role": "user", "content": rewrite_message(question, history)}]
        try:
            text, _ = collect_text(
                self.models.chat(
                    str(model),
                    message,
                    window=window,
                    max_tokens=REWRITE_TOKENS,
                    temperature=0,
                    hangup=hangup,
                )
            )
        except KBError as err:
            log.warning("Query rewrite failed (%s); searching with the joined question.", err)
            return fallback
        rewritten = text.strip().strip('"').splitlines()[0].strip() if text.strip() else ""
        return rewritten or fallback

    def _generate(
        self,
        result: AnswerResult,
        ref: ModelRef,
        messages: list[Message],
        started: float,
        hangup: Hangup | None = None,
    ) -> Iterator[str]:
        backend = self.models.backend(ref.server)
        parts: list[str] = []
        events = backend.chat(
            ref.name, messages, window=result.window, max_tokens=result.max_tokens,
            temperature=self.settings.temperature, hangup=hangup,
        )  # fmt: skip
        sent = time.perf_counter()  # the request goes out at the first `next`
        first_token_s: float | None = None
        first_at = last_at = 0.0
        try:
            for event in events:
                if isinstance(event, TextDelta):
                    last_at = time.perf_counter()
                    if result.ttft_ms is None:
                        first_at = last_at
                        result.ttft_ms = round((first_at - started) * 1000, 1)
                        first_token_s = first_at - sent
                    parts.append(event.text)
                    yield event.text
                else:
                    _read_usage(result, event)
        except KBError as err:
            if not parts:
                raise
            result.partial = True
            result.error = str(err)
        finally:
            events.close()
        result.answer = "".join(parts)
        self._record_speed(result, first_token_s)
        if result.tokens_per_s is None:
            result.tokens_per_s = streamed_tokens_per_s(result.output_tokens, last_at - first_at)

    def _record_speed(self, result: AnswerResult, first_token_s: float | None) -> None:
        """Keep the model's prompt-evaluation speed: the server's own timing where it gives one
        (Ollama, llama.cpp), else prompt tokens over the time to the first token, from prompts
        long enough for the time to be mostly prompt evaluation."""
        speed = result.prompt_tokens_per_s
        tokens = result.prompt_tokens
        whole = tokens is not None and tokens >= UNCACHED_SHARE * result.prompt_tokens_estimate
        if speed is None and first_token_s and tokens and whole and tokens >= SPEED_SAMPLE_TOKENS:
            speed = round(tokens / first_token_s, 1)
        if speed:
            result.prompt_tokens_per_s = speed
            self.calibration.record_speed(result.model, speed)

    def _check_truncation(self, result: AnswerResult, messages: list[Message]) -> None:
        """Learn characters per token from a count of the whole prompt: the server's (which
        may be a cut, or only the uncached part) or its tokenizer's (always the whole prompt,
        llama-cpp-python's `/extras/tokenize/count`, without the chat template's few tokens)."""
        counted = result.counted_by in ("server", "tokenizer")
        if result.prompt_tokens is None or result.partial or not counted:
            return
        prompt_chars = sum(len(m["content"]) for m in messages)
        partly_cached = (
            result.counted_by == "server"
            and result.prompt_tokens < UNCACHED_SHARE * result.prompt_tokens_estimate
        )
        if partly_cached and not result.truncated:
            return  # likely only the tokens the server did not have cached: not a sample
        if result.truncated:
            log.warning(
                "%s cut the prompt: it read %d tokens of an estimated %d with a window of %d; "
                "the next request packs less.",
                result.server, result.prompt_tokens, result.prompt_tokens_estimate, result.window,
            )  # fmt: skip
            self.calibration.record_cut(result.model, prompt_chars, result.window)
        else:
            self.calibration.record(result.model, prompt_chars, result.prompt_tokens)


def streamed_tokens_per_s(output_tokens: int | None, first_to_last_s: float) -> float | None:
    """Output tokens per second as the client saw them stream, for servers that give no
    timing of their own (OpenAI-compatible ones): the tokens after the first over the seconds
    from the first to the last. None for answers of one token or a count kb does not have."""
    if not output_tokens or output_tokens < 2 or first_to_last_s <= 0:
        return None
    return round((output_tokens - 1) / first_to_last_s, 2)


def filled_window(usage: Usage) -> bool:
    """Ollama keeps at most `num_ctx` prompt tokens and drops the rest silently; only a count
    that reached the window shows it. A count under kb's estimate proves nothing: the estimate
    runs high on dense text, and some servers report only the tokens they did not cache."""
    if usage.window is None or usage.prompt_tokens is None or usage.counted_by != "server":
        return False
    return usage.prompt_tokens >= usage.window - 1


def _read_usage(result: AnswerResult, usage: Usage) -> None:
    result.prompt_tokens = usage.prompt_tokens
    result.output_tokens = usage.output_tokens
    result.counted_by = usage.counted_by
    result.prompt_ms = usage.prompt_ms
    result.finish_reason = usage.finish_reason
    result.tokens_per_s = usage.output_tokens_per_s
    result.prompt_tokens_per_s = usage.prompt_tokens_per_s
    result.truncated = filled_window(usage)


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


def passage_record(number: int, passage: Passage) -> dict[str, Any]:
    return {
        "n": number,
        "source": passage.source_label(),
        "path": passage.path,
        "abs_path": passage.abs_path,
        "title": passage.title,
        "page": passage.page,
        "page_kind": passage.page_kind,
        "headings": passage.headings,
        "chunk_indexes": passage.chunk_indexes,
        "score": round(passage.score, 4),
        "text": passage.text,
        "ocr": passage.ocr,
    }
