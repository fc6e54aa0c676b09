"""The adapter to OpenAI-compatible servers: llama.cpp's `llama-server`, llama-cpp-python's
`python -m llama_cpp.server`, vLLM, LM Studio; through the official `openai` client.

`OpenAICompatBackend` is the `ChatBackend` for one such server (`OpenAIServer(name, url,
api_key)`). The OpenAI API itself does not say how long a model's window is, how to count tokens,
or how a server words "the prompt is too long", so the adapter learns each server's dialect once
(from its model listing, else by probing `GET /props` and `GET /api/v0/models`, where a 404 just
means "not that kind") and reads what that dialect offers:

- window: vLLM's `max_model_len` in `/v1/models`; llama.cpp's `meta.n_ctx` there or
  `default_generation_settings.n_ctx` in `/props`; LM Studio's `loaded_context_length` in
  `/api/v0/models`. A server that states none leaves `window` unset: the chain then takes
  `KB_CONTEXT_WINDOWS`, a window learned from the server's "too long" error, or a
  conservative default (`rag.models.window_facts`).
- token counts of a stream without `usage`: the server's tokenize endpoint (llama.cpp and vLLM
  `POST /tokenize`, llama-cpp-python `POST /extras/tokenize/count`), else kb's estimate.
- an over-long prompt: vLLM's and llama-cpp-python's "maximum context length is N tokens",
  llama.cpp's `exceed_context_size_error` with `n_ctx`, LM Studio's "n_ctx: N" (older: "context
  length of only N tokens"); raised as `PromptTooLongError` with the window (the chain keeps
  it). llama-cpp-python answers an over-long *streamed* prompt with an empty HTTP 200
  (the error goes only to its log): a stream that ends with nothing is asked about once more,
  not streamed and with `max_tokens=1`, which gets the error.

The dialect endpoints sit at the server's root while the configured URL usually ends in `/v1`.
The `openai` client is never built without an explicit `base_url`: it would fall back to
api.openai.com, and a stray `OPENAI_API_KEY` would send documents off this machine.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx2
import openai
from openai.types.chat import ChatCompletionChunk

from rag.catalog import lookup
from rag.context import TokenEstimator
from rag.errors import (
    AnswerStoppedError,
    KBError,
    ModelAuthError,
    ModelNotFoundError,
    ModelResponseError,
    ModelTimeoutError,
    PromptTooLongError,
    ServerUnreachableError,
    SettingsError,
)
from rag.llm.base import (
    ChatEvent,
    ListedModel,
    Message,
    ModelFacts,
    ModelRef,
    TextDelta,
    Usage,
)
from rag.llm.hangup import STOPPED, Hangup
from rag.llm.structured import parse_structured
from rag.settings import OpenAIServer, Settings, env_name

CONNECT_TIMEOUT_S = 5.0
PROBE_TIMEOUT_S = 10.0  # dialect probes and tokenize counts
REACHABLE_TIMEOUT_S = 3.0
NO_KEY = "not-needed"  # local servers take any key; the client insists on one

ServerKind = Literal["vllm", "llama.cpp", "lmstudio", "openai"]

# "The prompt is too long" as each server words it; group 1 is the window in tokens.
_WINDOW_PATTERNS = (
    re.compile(r"maximum context length is (\d+)", re.IGNORECASE),  # vLLM, llama-cpp-python
    re.compile(r"available context size \((\d+) tokens\)"),  # llama.cpp
    re.compile(r"max context size \((\d+) tokens\)"),  # llama.cpp, unsplittable inputs
    re.compile(r"context length of only (\d+) tokens"),  # LM Studio, older
    re.compile(r"n_ctx(?:: | \()(\d+)"),  # LM Studio: "(n_keep: 13055>= n_ctx: 4096)"
)
# The same without a number (older llama.cpp, LM Studio's MLX engine, OpenAI's code).
_TOO_LONG_MARKERS = (
    "exceed_context_size_error",
    "context_length_exceeded",
    "exceeds the available context size",
    "greater than the context length",
    "context size has been exceeded",
)
# GGUF file types (Q4_K_M, IQ4_XS, Q8_0, F16, ...) and common quantized checkpoints' suffixes.
_QUANTIZATION = re.compile(
    r"(?:^|[-_./:@])(I?Q\d(?:_[A-Z0-9]+)*|BF16|F16|F32|AWQ|GPTQ|FP8)(?=$|[-_./:@])", re.IGNORECASE
)
_JSON_SCHEMA_MARKERS = ("response_format", "json_schema")
_NOT_SENT_HEADERS: Mapping[str, Any] = {
    "OpenAI-Organization": openai.Omit(),
    "OpenAI-Project": openai.Omit(),
}


@dataclass(frozen=True)
class _Stated:
    """What a server's own endpoints say of one model (None where they say nothing)."""

    window: int | None = None
    context_length: int | None = None
    quantization: str | None = None
    architecture: str | None = None
    parameter_count: int | None = None
    size_bytes: int | None = None
    path: str | None = None  # the weights' file or repository, for the quantization


class OpenAICompatBackend:
    """`ChatBackend` for one OpenAI-compatible server. Thread-safe: Compare's lanes share one.

    Errors are `rag.errors` sentences naming the server (see `ChatBackend`)."""

    def __init__(self, server: OpenAIServer, settings: Settings) -> None:
        if not server.url.startswith(("http://", "https://")):
            # Without a URL the `openai` client would talk to the public OpenAI API.
            raise SettingsError(
                f"The OpenAI-compatible server {server.name} has no http(s) URL; set its API "
                "base, e.g. http://127.0.0.1:8080/v1."
            )
        self.name = server.name
        self.url = server.url.rstrip("/")
        self.root = server_root(self.url)
        self.timeout_s = settings.openai_timeout_s
        self._settings = settings
        from_list = server in settings.openai_servers
        self._url_variable = env_name("openai_servers" if from_list else "openai_base_url")
        self._key_variable = env_name("openai_servers" if from_list else "openai_api_key")
        key = server.api_key.get_secret_value() if server.api_key is not None else NO_KEY
        self._client = openai.OpenAI(
            base_url=self.url,
            api_key=key or NO_KEY,
            max_retries=0,  # a timed-out long prompt must not be sent again, silently
            # The client would add OPENAI_ORG_ID and OPENAI_PROJECT_ID, meant for OpenAI.
            default_headers=_NOT_SENT_HEADERS,
            timeout=httpx2.Timeout(self.timeout_s, connect=min(CONNECT_TIMEOUT_S, self.timeout_s)),
        )
        self._estimator = TokenEstimator()
        self._lock = threading.Lock()
        self._kind: ServerKind | None = None
        self._facts: dict[str, tuple[float, ModelFacts]] = {}
        self._stream_options = True  # False once the server rejected `stream_options`
        self._json_schema = True  # False once it rejected `response_format: json_schema`
        self._tokenizer = True  # False once its tokenize endpoint turned out to be missing

    # -- the server --

    def describe(self) -> str:
        return f"the OpenAI-compatible server {self.name} at {self.url}"

    def is_reachable(self) -> bool:
        """True when the server lists its models within `REACHABLE_TIMEOUT_S`."""
        try:
            self._client.models.list(timeout=REACHABLE_TIMEOUT_S)
        except Exception:  # any failure means "not usable now"; the message comes elsewhere
            return False
        return True

    def unreachable_message(self) -> str:
        return _sentence(
            f"{self.describe()} is not reachable; start it, or check its address in "
            f"{self._url_variable}."
        )

    def close(self) -> None:
        self._client.close()

    # -- models --

    def list_models(self) -> list[ListedModel]:
        """Every model of `GET /v1/models`, as `name@server`. Raises `ServerUnreachableError`,
        `ModelAuthError`, or `ModelResponseError` (e.g. a URL without `/v1`)."""
        return [
            ListedModel(ModelRef(self.name, entry["id"]), _int(_meta(entry).get("size")))
            for entry in self._listing()
        ]

    def facts(self, model: str, max_age_s: float = 0.0) -> ModelFacts:
        """Facts of a listed model, with the window as the server states it (source "server"),
        or none. Raises `ModelNotFoundError` for an unlisted model."""
        now = time.monotonic()
        with self._lock:
            cached = self._facts.get(model)
        if cached is not None and now - cached[0] <= max_age_s:
            return cached[1]
        entries = self._listing()
        entry = next((e for e in entries if e.get("id") == model), None)
        if entry is None:
            raise self._model_not_found(model, [str(e.get("id")) for e in entries])
        facts = self._facts_from(model, self._stated(self._server_kind(entries), model, entry))
        with self._lock:
            self._facts[model] = (now, facts)
        return facts

    # -- chat --

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
        """Stream an answer: `TextDelta`s, then one `Usage` (`window` is not sent: these servers
        have a fixed window). Nothing is sent before the first event is asked for. With
        `hangup`, the request goes on a connection of its own that `hangup.hang_up()` shuts
        down; the iterator then raises `AnswerStoppedError`."""
        request: dict[str, Any] = {"model": model, "messages": [dict(m) for m in messages]}
        request["max_tokens"] = max_tokens
        if temperature is not None:
            request["temperature"] = temperature
        if seed is not None:
            request["seed"] = seed
        if hangup is None:
            return self._streamed(request, self._client)
        return self._hangup_streamed(request, hangup)

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
        """One non-streamed answer constrained to `schema` (OpenAI's `json_schema` format, or
        llama-cpp-python's `json_object` with a schema where the former is rejected), parsed and
        validated. Raises `MalformedReplyError` when the reply is not such JSON."""
        request: dict[str, Any] = {"model": model, "messages": [dict(m) for m in messages]}
        request.update(max_tokens=max_tokens, temperature=0.0)
        if seed is not None:
            request["seed"] = seed
        completion = None
        with self._lock:
            formats = ["json_schema", "json_object"] if self._json_schema else ["json_object"]
        for kind in formats:
            request["response_format"] = _response_format(kind, schema)
            try:
                completion = self._client.chat.completions.create(**request)
                break
            except openai.APIStatusError as err:
                if kind == "json_schema" and _rejects_json_schema(err):
                    with self._lock:
                        self._json_schema = False
                    continue
                raise self._translate(err, model) from None
            except Exception as err:
                raise self._translate(err, model) from None
        text = completion.choices[0].message.content if completion and completion.choices else None
        return parse_structured(text or "", schema, self.describe())

    # -- streaming --

    def _hangup_streamed(self, request: dict[str, Any], hangup: Hangup) -> Iterator[ChatEvent]:
        """`_streamed` through a client made for this request, whose connection `hangup` can
        shut down."""
        if hangup.hung_up:
            raise AnswerStoppedError(STOPPED)
        with httpx2.Client(
            follow_redirects=True, event_hooks={"request": [hangup.watch_request]}
        ) as http_client:
            try:
                yield from self._streamed(
                    request, self._client.with_options(http_client=http_client)
                )
            except KBError as err:
                if hangup.hung_up and not isinstance(err, AnswerStoppedError):
                    raise AnswerStoppedError(STOPPED) from None
                raise

    def _streamed(self, request: dict[str, Any], client: openai.OpenAI) -> Iterator[ChatEvent]:
        model = request["model"]
        stream = self._open_stream(request, client)
        pieces: list[str] = []
        finish_reason: str | None = None
        last: ChatCompletionChunk | None = None
        usage_chunk: ChatCompletionChunk | None = None
        try:
            for chunk in self._chunks(stream, model):
                last = chunk
                if chunk.usage is not None:
                    usage_chunk = chunk
                for choice in chunk.choices:
                    text = choice.delta.content if choice.delta else None
                    if text:
                        pieces.append(text)
                        yield TextDelta(text)
                    finish_reason = choice.finish_reason or finish_reason
        finally:
            stream.close()
        if finish_reason is None and usage_chunk is None:
            if not pieces:
                # llama-cpp-python answers an over-long streamed prompt with an empty 200.
                raise self._empty_answer(request, client)
            raise ModelResponseError(
                _sentence(
                    f"{self.describe()} broke off the answer before it was finished; check "
                    "its log, then try again."
                )
            )
        timings = _timings(last)
        yield self._usage(request, "".join(pieces), usage_chunk, finish_reason, timings)

    def _open_stream(
        self, request: dict[str, Any], client: openai.OpenAI
    ) -> openai.Stream[ChatCompletionChunk]:
        """The stream of a chat request; without `stream_options` where the server rejects it.
        The request is sent here: HTTP errors (a prompt too long for llama.cpp) come out here."""
        with self._lock:
            include_usage = self._stream_options
        try:
            if include_usage:
                return client.chat.completions.create(
                    **request, stream=True, stream_options={"include_usage": True}
                )
            return client.chat.completions.create(**request, stream=True)
        except openai.APIStatusError as err:
            if include_usage and _rejects(err, "stream_options") and not _too_long(err):
                with self._lock:
                    self._stream_options = False
                return self._open_stream(request, client)
            raise self._translate(err, request["model"]) from None
        except Exception as err:
            raise self._translate(err, request["model"]) from None

    def _chunks(
        self, stream: openai.Stream[ChatCompletionChunk], model: str
    ) -> Iterator[ChatCompletionChunk]:
        """The stream's chunks; an error in the middle comes out as a `KBError`."""
        chunks = iter(stream)
        while True:
            try:
                chunk = next(chunks)
            except StopIteration:
                return
            except Exception as err:
                raise self._translate(err, model, streaming=True) from None
            yield chunk

    def _empty_answer(self, request: dict[str, Any], client: openai.OpenAI) -> KBError:
        """Why a stream ended with nothing: one non-streamed request with `max_tokens=1` gets
        the "maximum context length" error quickly when the prompt is too long."""
        model = request["model"]
        for attempt in range(2):
            try:
                client.chat.completions.create(**{**request, "max_tokens": 1})
            except openai.APITimeoutError as err:
                return self._translate(err, model)
            except openai.APIConnectionError as err:
                # llama-cpp-python drops the kept-alive connection of the failed stream, and
                # the pool may hand this request that dead connection: once more, on a new one.
                if attempt == 0:
                    continue
                return self._translate(err, model)
            except Exception as err:
                return self._translate(err, model)
            break
        return ModelResponseError(
            _sentence(
                f"{self.describe()} sent an empty answer for {model}; check the server's log, "
                "then try again."
            )
        )

    def _usage(
        self,
        request: dict[str, Any],
        answer: str,
        usage_chunk: ChatCompletionChunk | None,
        finish_reason: str | None,
        timings: tuple[float | None, float | None],
    ) -> Usage:
        prompt_ms, output_ms = timings
        reported = usage_chunk.usage if usage_chunk is not None else None
        if reported is not None:
            return Usage(
                prompt_tokens=reported.prompt_tokens,
                output_tokens=reported.completion_tokens,
                counted_by="server",
                prompt_ms=prompt_ms,
                output_ms=output_ms,
                finish_reason=finish_reason,
            )
        prompt = "\n".join(str(m.get("content") or "") for m in request["messages"])
        counted = self._count_tokens(request["model"], [prompt, answer])
        if counted is not None:
            prompt_tokens, output_tokens = counted
            counted_by: Literal["tokenizer", "estimate"] = "tokenizer"
        else:
            prompt_tokens = self._estimator.estimate(prompt)
            output_tokens = self._estimator.estimate(answer)
            counted_by = "estimate"
        return Usage(
            prompt_tokens=prompt_tokens,
            output_tokens=output_tokens,
            counted_by=counted_by,
            prompt_ms=prompt_ms,
            output_ms=output_ms,
            finish_reason=finish_reason,
        )

    # -- token counts --

    def _count_tokens(self, model: str, texts: Sequence[str]) -> tuple[int, ...] | None:
        """Tokens of each text by the server's tokenize endpoint; None where it has none (or it
        failed: a count is not worth failing an answer for)."""
        with self._lock:
            if not self._tokenizer:
                return None
        try:
            kind = self._server_kind()
            if kind == "lmstudio":  # LM Studio has no tokenize endpoint
                self._no_tokenizer()
                return None
            return tuple(self._count(kind, model, text) for text in texts)
        except openai.APIStatusError as err:
            if err.status_code in (404, 405, 501):
                self._no_tokenizer()
            return None
        except (KBError, openai.OpenAIError, httpx2.HTTPError, ValueError, KeyError, TypeError):
            return None

    def _no_tokenizer(self) -> None:
        with self._lock:
            self._tokenizer = False

    def _count(self, kind: ServerKind, model: str, text: str) -> int:
        if not text:
            return 0
        options: Any = {"timeout": PROBE_TIMEOUT_S}
        if kind == "llama.cpp":
            reply = self._client.post(
                f"{self.root}/tokenize", body={"content": text}, cast_to=object, options=options
            )
            return len(_mapping(reply)["tokens"])
        if kind == "vllm":
            body = {"model": model, "prompt": text, "add_special_tokens": False}
            reply = self._client.post(
                f"{self.root}/tokenize", body=body, cast_to=object, options=options
            )
            return int(_mapping(reply)["count"])
        reply = self._client.post(
            f"{self.root}/extras/tokenize/count",
            body={"input": text, "model": model},
            cast_to=object,
            options=options,
        )
        return int(_mapping(reply)["count"])

    # -- dialects and facts --

    def _listing(self) -> list[dict[str, Any]]:
        """`GET /v1/models` as plain dicts (with each server's extra fields)."""
        try:
            page = self._client.models.list()
            return [m.to_dict() for m in page.data if m.id]
        except Exception as err:
            raise self._translate(err, None) from None

    def _server_kind(self, entries: Sequence[Mapping[str, Any]] | None = None) -> ServerKind:
        """The server's dialect, found once: from the listing (`entries`, else fetched), else
        by probing."""
        with self._lock:
            if self._kind is not None:
                return self._kind
        if entries is None:
            entries = self._listing()
        kind = _kind_from_listing(entries) or self._probe_kind()
        with self._lock:
            self._kind = kind
        return kind

    def _probe_kind(self) -> ServerKind:
        props = self._get_json(f"{self.root}/props")
        if isinstance(props, Mapping) and "default_generation_settings" in props:
            return "llama.cpp"
        lmstudio = self._get_json(f"{self.root}/api/v0/models")
        if isinstance(lmstudio, Mapping) and isinstance(lmstudio.get("data"), list):
            return "lmstudio"
        return "openai"

    def _get_json(self, url: str) -> Any:
        """The JSON of a GET at the server; None when the server answers with an error status
        (a probe of an endpoint it does not have). Raises `KBError` when it does not answer."""
        try:
            return self._client.get(url, cast_to=object, options={"timeout": PROBE_TIMEOUT_S})
        except (openai.AuthenticationError, openai.PermissionDeniedError) as err:
            raise self._translate(err, None) from None
        except openai.APIStatusError:
            return None
        except openai.APIConnectionError as err:
            raise self._translate(err, None) from None
        except (openai.OpenAIError, ValueError):
            return None

    def _stated(self, kind: ServerKind, model: str, entry: Mapping[str, Any]) -> _Stated:
        if kind == "vllm":
            return _Stated(window=_int(entry.get("max_model_len")), path=_str(entry.get("root")))
        if kind == "llama.cpp":
            return self._stated_by_llama_cpp(entry)
        if kind == "lmstudio":
            return self._stated_by_lmstudio(model)
        return _Stated()

    def _stated_by_llama_cpp(self, entry: Mapping[str, Any]) -> _Stated:
        meta = _meta(entry)
        props = _mapping(self._get_json(f"{self.root}/props"))
        settings = _mapping(props.get("default_generation_settings"))
        window = _int(meta.get("n_ctx")) or _int(settings.get("n_ctx")) or _int(props.get("n_ctx"))
        return _Stated(
            window=window,
            context_length=_int(meta.get("n_ctx_train")),
            parameter_count=_int(meta.get("n_params")),
            size_bytes=_int(meta.get("size")),
            path=_str(props.get("model_path")),
        )

    def _stated_by_lmstudio(self, model: str) -> _Stated:
        listing = _mapping(self._get_json(f"{self.root}/api/v0/models"))
        entries = listing.get("data") if isinstance(listing.get("data"), list) else []
        entry = next((_mapping(e) for e in entries if _mapping(e).get("id") == model), {})
        # `max_context_length` is the model's maximum, stated whether or not it is loaded; the
        # window it runs in is `loaded_context_length`, there only while it is loaded.
        return _Stated(
            window=_int(entry.get("loaded_context_length")),
            context_length=_int(entry.get("max_context_length")),
            quantization=_str(entry.get("quantization")),
            architecture=_str(entry.get("arch")),
        )

    def _facts_from(self, model: str, stated: _Stated) -> ModelFacts:
        entry = lookup(model, ollama_name=False) or (
            lookup(stated.path, ollama_name=False) if stated.path else None
        )
        facts = ModelFacts(
            name=model,
            server=self.name,
            family=entry.family if entry else None,
            parameter_count=stated.parameter_count,
            parameter_size=_parameter_size(stated.parameter_count),
            quantization=stated.quantization
            or quantization_in(model)
            or (quantization_in(stated.path) if stated.path else None),
            architecture=stated.architecture,
            context_length=stated.context_length,
            size_bytes=stated.size_bytes,
            license=entry.license if entry else None,
            notes=entry.note if entry else None,
        )
        return facts.with_window(stated.window, "server") if stated.window else facts

    # -- errors --

    def _translate(self, err: BaseException, model: str | None, streaming: bool = False) -> KBError:
        """One `KBError` sentence for whatever the client raised."""
        where = self.describe()
        if isinstance(err, KBError):
            return err
        if isinstance(err, openai.APITimeoutError):
            return ModelTimeoutError(
                _sentence(
                    f"{where} did not answer within {self.timeout_s:g} seconds; raise "
                    f"{env_name('openai_timeout_s')} or choose a smaller model."
                )
            )
        if isinstance(err, openai.APIConnectionError):
            if streaming:
                return ModelResponseError(
                    f"The connection to {where} broke off during the answer; check that it is "
                    "still running, then try again."
                )
            return ServerUnreachableError(self.unreachable_message())
        if isinstance(err, openai.APIError) and _too_long(err):
            return self._prompt_too_long(err, model)
        if isinstance(err, openai.AuthenticationError | openai.PermissionDeniedError):
            return ModelAuthError(
                _sentence(
                    f"{where} refused the API key (status {err.status_code}); set the key it "
                    f"was started with in {self._key_variable}."
                )
            )
        if isinstance(err, openai.NotFoundError):
            return self._not_found(err, model)
        if isinstance(err, openai.APIStatusError):
            return ModelResponseError(
                _sentence(
                    f"{where} answered with an error (status {err.status_code}: "
                    f"{_error_message(err)}); check its log, then try again."
                )
            )
        if isinstance(err, openai.APIError) and not isinstance(
            err, openai.APIResponseValidationError
        ):
            return ModelResponseError(
                _sentence(
                    f"{where} reported an error during the answer ({_error_message(err)}); "
                    "check its log, then try again."
                )
            )
        return ModelResponseError(
            _sentence(
                f"{where} sent a reply that could not be read; check that this address serves "
                "an OpenAI-compatible API (usually ending in /v1)."
            )
        )

    def _prompt_too_long(self, err: openai.APIError, model: str | None) -> PromptTooLongError:
        window = stated_window(err.body, err.message)
        size = f" of {window} tokens" if window else ""
        return PromptTooLongError(
            _sentence(
                f"{self.describe()} rejected the prompt as longer than the window{size} of "
                f"{model or 'the model'}; ask with less context, or start the server with a "
                "larger context size."
            ),
            window=window,
        )

    def _not_found(self, err: openai.NotFoundError, model: str | None) -> KBError:
        """A 404: the model is missing, or the URL is not the API's (a base without `/v1`)."""
        names: list[str] | None = None
        if model:
            try:
                names = [str(e.get("id")) for e in self._listing()]
            except KBError:
                names = None
        if model and names is not None and model not in names:
            return self._model_not_found(model, names)
        return ModelResponseError(
            _sentence(
                f"{self.describe()} answered 404 Not Found ({_error_message(err)}); check its "
                f"address in {self._url_variable} (it usually ends in /v1)."
            )
        )

    def _model_not_found(self, model: str, names: Sequence[str]) -> ModelNotFoundError:
        shown = ", ".join(names[:8]) or "none"
        return ModelNotFoundError(
            _sentence(
                f"{self.describe()} has no model {model} (it has {shown}); choose one of those "
                f"with {env_name('model')} or --model, or load it there."
            )
        )


# -- pure helpers ---------------------------------------------------------------------------------


def server_root(url: str) -> str:
    """The server's root, where llama.cpp's `/props` and LM Studio's `/api/v0` live: the API
    base without a trailing `/v1`."""
    base = url.rstrip("/")
    return base[: -len("/v1")] if base.endswith("/v1") else base


def stated_window(body: object, message: str = "") -> int | None:
    """The window (tokens) a "prompt too long" error states: llama.cpp's `n_ctx` field, else
    the number in the message as vLLM, llama-cpp-python, llama.cpp or LM Studio word it."""
    error = _mapping(body)
    error = _mapping(error.get("error")) or error  # the client unwraps {"error": ...}, mostly
    window = _int(error.get("n_ctx"))
    if window:
        return window
    texts = [message, str(error.get("message", "")), body if isinstance(body, str) else ""]
    for text in texts:
        for pattern in _WINDOW_PATTERNS:
            found = pattern.search(text)
            if found:
                return int(found.group(1))
    return None


def quantization_in(name: str) -> str | None:
    """The quantization a model or file name carries: `Q4_K_M` in `...-Q4_K_M.gguf`."""
    found = _QUANTIZATION.search(name)
    return found.group(1).upper() if found else None


def _too_long(err: openai.APIError) -> bool:
    text = f"{err.message} {err.body}"
    if any(marker in text.lower() for marker in _TOO_LONG_MARKERS):
        return True
    return any(pattern.search(text) for pattern in _WINDOW_PATTERNS)


def _rejects(err: openai.APIStatusError, parameter: str) -> bool:
    """Whether a 4xx/5xx error is about one request parameter the server does not take."""
    return err.status_code in (400, 422, 500) and parameter in f"{err.message} {err.body}"


def _rejects_json_schema(err: openai.APIStatusError) -> bool:
    return not _too_long(err) and any(_rejects(err, m) for m in _JSON_SCHEMA_MARKERS)


def _response_format(kind: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    if kind == "json_schema":
        return {
            "type": "json_schema",
            "json_schema": {"name": "reply", "schema": dict(schema), "strict": True},
        }
    # llama-cpp-python's dialect; llama.cpp takes it too.
    return {"type": "json_object", "schema": dict(schema)}


def _kind_from_listing(entries: Sequence[Mapping[str, Any]]) -> ServerKind | None:
    if any("max_model_len" in entry for entry in entries):
        return "vllm"
    if any(entry.get("owned_by") == "llamacpp" or "n_ctx" in _meta(entry) for entry in entries):
        return "llama.cpp"
    return None


def _timings(chunk: ChatCompletionChunk | None) -> tuple[float | None, float | None]:
    """llama.cpp's `timings` (prompt_ms, predicted_ms) on a stream's last chunk."""
    extra = (chunk.model_extra or {}) if chunk is not None else {}
    timings = _mapping(extra.get("timings"))
    return _float(timings.get("prompt_ms")), _float(timings.get("predicted_ms"))


def _error_message(err: openai.APIError) -> str:
    """The server's own words: the error's `message` (or FastAPI's `detail`), else its body."""
    body = err.body
    if isinstance(body, Mapping):
        text = str(body.get("message") or body.get("detail") or err.message)
    else:
        text = body if isinstance(body, str) and body else err.message
    return " ".join(text.split()).rstrip(".")[:300]


def _meta(entry: Mapping[str, Any]) -> Mapping[str, Any]:
    return _mapping(entry.get("meta"))


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return round(float(value), 1)


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _parameter_size(count: int | None) -> str | None:
    if not count:
        return None
    if count >= 1e9:
        return f"{count / 1e9:.1f}B"
    return f"{count / 1e6:.0f}M"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]
