"""The seam for model access: what every model server adapter gives the rest of kb.

One adapter per server kind (`rag/llm/ollama.py`, `rag/llm/openai_compat.py`) implements
`ChatBackend`; `rag/llm/hub.py` puts several behind one object whose model ids carry their
server (`name@server`). Nothing outside an adapter sees a server's own client types.

The shape follows simonw/llm's `Model.execute`: one streamed call that yields text as it comes,
then one `Usage` with normalized counts, whatever the server sends.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol, runtime_checkable

from rag.llm.hangup import Hangup

Message = Mapping[str, str]  # {"role": "system" | "user" | "assistant", "content": "..."}
CountSource = Literal["server", "tokenizer", "estimate"]
WindowSource = Literal["trained", "server", "setting", "learned", "default"]

SERVER_SEPARATOR = "@"


@dataclass(frozen=True)
class TextDelta:
    """A piece of the answer, in the order the model wrote it."""

    text: str


@dataclass(frozen=True)
class Usage:
    """Counts for one request, sent once at the end of a chat.

    `prompt_tokens` and `output_tokens` are tokens. `counted_by` says where they come from:
    the server's own report (`server`), the server's tokenize endpoint over the texts
    (`tokenizer`, a close count without the chat template), or kb's character estimate
    (`estimate`). `prompt_ms`/`output_ms` are the server's own timings (Ollama, llama.cpp's
    `timings`), None where it gives none. `window` is the window the request ran in (Ollama's
    `num_ctx`), None where kb does not set it.
    """

    prompt_tokens: int | None = None
    output_tokens: int | None = None
    counted_by: CountSource = "server"
    prompt_ms: float | None = None
    output_ms: float | None = None
    finish_reason: str | None = None
    window: int | None = None

    @property
    def estimated(self) -> bool:
        return self.counted_by != "server"

    @property
    def output_tokens_per_s(self) -> float | None:
        if self.output_tokens and self.output_ms:
            return round(self.output_tokens / (self.output_ms / 1000), 2)
        return None

    @property
    def prompt_tokens_per_s(self) -> float | None:
        if self.prompt_tokens and self.prompt_ms:
            return round(self.prompt_tokens / (self.prompt_ms / 1000), 2)
        return None


ChatEvent = TextDelta | Usage


@dataclass(frozen=True)
class ModelRef:
    """A model on one server. `id` (`name@server`) is what settings, results and pickers use."""

    server: str
    name: str

    @property
    def id(self) -> str:
        return f"{self.name}{SERVER_SEPARATOR}{self.server}"

    def __str__(self) -> str:
        return self.id


@dataclass(frozen=True)
class ListedModel:
    """A model a server offers, as its listing says. `size_bytes` is the weights' size on disk
    where the server states it."""

    ref: ModelRef
    size_bytes: int | None = None

    @property
    def id(self) -> str:
        return self.ref.id


@dataclass(frozen=True)
class ModelFacts:
    """What is known of a model. `window` is the context the model runs in, in tokens, before
    kb's caps: for Ollama the trained context (kb asks for it with `num_ctx`), for other
    servers the window the server states (llama.cpp's `n_ctx`, vLLM's `max_model_len`, LM
    Studio's loaded context); `window_source` says which. `context_length` is the trained
    context where the server tells it. The architecture numbers size the KV cache."""

    name: str
    server: str = ""
    family: str | None = None
    parameter_count: int | None = None
    parameter_size: str | None = None
    quantization: str | None = None
    architecture: str | None = None
    context_length: int | None = None
    window: int | None = None
    window_source: WindowSource | None = None
    block_count: int | None = None
    head_count: int | None = None
    head_count_kv: int | None = None
    embedding_length: int | None = None
    key_length: int | None = None
    value_length: int | None = None
    size_bytes: int | None = None
    license: str | None = None
    notes: str | None = None
    pulled: bool = True

    @property
    def id(self) -> str:
        return ModelRef(self.server, self.name).id if self.server else self.name

    def with_window(self, window: int, source: WindowSource) -> ModelFacts:
        return replace(self, window=window, window_source=source)


@runtime_checkable
class ChatBackend(Protocol):
    """One model server. Every method raises only `rag.errors.KBError` subclasses, each with
    one sentence that names the server and what to do:
    `ServerUnreachableError`, `ModelNotFoundError`, `ModelTimeoutError`, `ModelAuthError`,
    `PromptTooLongError` (with the window the server stated), `MalformedReplyError`, or
    `ModelResponseError` for anything else. An error in the middle of a stream is raised after
    the text that arrived before it, so a caller can keep a partial answer."""

    name: str  # the server's label in model ids: `llama3.2:latest@ollama`

    def describe(self) -> str:
        """The server for sentences: `Ollama at http://localhost:11434`."""
        ...

    def is_reachable(self) -> bool: ...

    def unreachable_message(self) -> str: ...

    def list_models(self) -> list[ListedModel]:
        """Every model the server offers now. Raises `ServerUnreachableError`."""
        ...

    def facts(self, model: str, max_age_s: float = 0.0) -> ModelFacts:
        """Facts for a model by its name on this server; an answer fetched within `max_age_s`
        seconds may be reused. Raises `ModelNotFoundError` for a model the server lacks."""
        ...

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
        """Stream an answer: `TextDelta`s, then exactly one `Usage`. `window` is the context
        kb sized the prompt for (sent as Ollama's `num_ctx`; a server with a fixed window
        ignores it). Nothing is sent before the first event is asked for; closing the
        iterator early closes the request. With `hangup`, `hangup.hang_up()` from another
        thread closes the request at once, even before the first byte came; the iterator then
        raises `AnswerStoppedError`."""
        ...

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
        """One non-streamed answer constrained to the JSON `schema`, parsed and validated
        against it. Raises `MalformedReplyError` when the reply is not such JSON."""
        ...

    def close(self) -> None: ...


def collect_text(events: Iterator[ChatEvent]) -> tuple[str, Usage | None]:
    """The whole text of a chat and its usage."""
    parts: list[str] = []
    usage = None
    for event in events:
        if isinstance(event, TextDelta):
            parts.append(event.text)
        else:
            usage = event
    return "".join(parts), usage
