"""An in-process fake model server for unit tests that need no HTTP (simonw/llm's `MockModel`).

`FakeBackend` implements `rag.llm.base.ChatBackend` with the answers of the fake Ollama
(`eval.fake_ollama`, which reads kb's passage block): the passage sentence that best matches the
question, with its `[n]` (without it when `cites` is False), or the "do not contain the answer"
sentence; schema-shaped JSON for structured output. Its server
is named `fake` and its models say they are fake, so nothing here passes for a real model.
`tests/conftest.py` registers it through the `fake_model` and `services` fixtures. Use the HTTP
fake Ollama instead for Ollama's wire behaviour (num_ctx, silent cuts, errors).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eval.fake_ollama import (
    ANSWER_PIECE_RE,
    REWRITE_PREFIX,
    count_tokens,
    extractive_answer,
    prompt_token_count,
    standalone_question,
    structured_answer,
)
from rag.errors import ModelNotFoundError, PromptTooLongError, ServerUnreachableError
from rag.llm.base import ChatEvent, ListedModel, Message, ModelFacts, ModelRef, TextDelta, Usage
from rag.llm.hangup import Hangup
from rag.llm.structured import parse_structured

FAKE_SERVER = "fake"
CITATION_RE = re.compile(r"\s*\[\d+\]")
# name -> the window the server states; None: it states none (kb must learn it)
FAKE_MODELS: dict[str, int | None] = {"fake-echo": 8192, "fake-small": 1024}


@dataclass
class FakeCall:
    model: str
    messages: list[dict[str, str]]
    window: int
    max_tokens: int
    schema: Mapping[str, Any] | None = None


@dataclass
class FakeBackend:
    """`reachable`, `models` and `rejects_over` may be changed by a test; every call is logged
    in `calls`. With `rejects_over` = n, a prompt of more than n tokens (the fake Ollama's
    count) is rejected like an OpenAI-compatible server does, stating n as the window."""

    name: str = FAKE_SERVER
    models: dict[str, int | None] = field(default_factory=lambda: dict(FAKE_MODELS))
    reachable: bool = True
    rejects_over: int | None = None
    cites: bool = True  # False: answers without their `[n]`, like small models often do
    piece_delay_s: float = 0.0  # a pause before each piece after the first, as a model streams
    calls: list[FakeCall] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def describe(self) -> str:
        return f"the fake model server {self.name} (in-process, for tests)"

    def is_reachable(self) -> bool:
        return self.reachable

    def unreachable_message(self) -> str:
        return f"The fake model server {self.name} is switched off by the test."

    def list_models(self) -> list[ListedModel]:
        self._check_up()
        return [ListedModel(ModelRef(self.name, name)) for name in self.models]

    def facts(self, model: str, max_age_s: float = 0.0) -> ModelFacts:
        window = self._window(model)
        return ModelFacts(
            name=model, server=self.name, family="fake", window=window,
            window_source="server" if window else None,
            notes="A fake model for tests: it quotes the best-matching passage sentence.",
        )  # fmt: skip

    def chat(
        self,
        model: str,
        messages: Sequence[Message],
        *,
        window: int,
        max_tokens: int,
        temperature: float | None = None,
        seed: int | None = None,
        hangup: Hangup | None = None,
    ) -> Iterator[ChatEvent]:
        self._window(model)
        sent = [dict(m) for m in messages]
        with self._lock:
            self.calls.append(FakeCall(model, sent, window, max_tokens))
        self._check_length(sent, max_tokens)
        answer = self._reply(sent)
        if not self.cites:
            answer = CITATION_RE.sub("", answer)
        for index, piece in enumerate(ANSWER_PIECE_RE.findall(answer)):
            if index and self.piece_delay_s:
                time.sleep(self.piece_delay_s)
            yield TextDelta(piece)
        yield Usage(
            prompt_tokens=prompt_token_count(sent),
            output_tokens=count_tokens(answer),
            counted_by="server",
            finish_reason="stop",
        )

    def structured(
        self,
        model: str,
        messages: Sequence[Message],
        schema: Mapping[str, Any],
        *,
        window: int,
        max_tokens: int,
        seed: int | None = None,
    ) -> Any:
        self._window(model)
        sent = [dict(m) for m in messages]
        with self._lock:
            self.calls.append(FakeCall(model, sent, window, max_tokens, schema))
        text = structured_answer(sent[-1]["content"], dict(schema))
        return parse_structured(text, schema, self.describe())

    def close(self) -> None:
        pass

    def _check_length(self, messages: list[dict[str, str]], max_tokens: int) -> None:
        needed = prompt_token_count(messages) + max_tokens
        if self.rejects_over is not None and needed > self.rejects_over:
            raise PromptTooLongError(
                f"The fake model server {self.name} rejected the prompt: this model's maximum "
                f"context length is {self.rejects_over} tokens.",
                window=self.rejects_over,
            )

    def _check_up(self) -> None:
        if not self.reachable:
            raise ServerUnreachableError(self.unreachable_message())

    def _window(self, model: str) -> int | None:
        self._check_up()
        if model not in self.models:
            raise ModelNotFoundError(
                f"Model {model} is not on the fake model server {self.name}; the test should "
                f"use one of {', '.join(self.models)}."
            )
        return self.models[model]

    @staticmethod
    def _reply(messages: list[dict[str, str]]) -> str:
        last = messages[-1]["content"]
        if last.lstrip().startswith(REWRITE_PREFIX):
            earlier = [(m["role"], m["content"]) for m in messages[:-1]]
            return standalone_question(last, earlier)
        return extractive_answer(last)
