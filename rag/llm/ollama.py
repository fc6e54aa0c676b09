"""The Ollama adapter: the official `ollama` client, several hosts, errors as `rag.errors`.

`OllamaBackend` is the `ChatBackend` for Ollama: `num_ctx` on every request (Ollama's default
window is far smaller than most models'), facts from `/api/show`, and a `Usage` whose `window`
lets the chain see Ollama's silent cut (a prompt longer than `num_ctx` is cut from the front,
and only `prompt_eval_count` == `num_ctx` tells). Ollama's client types stay in this module.

`OllamaGateway` spreads requests over `settings.all_ollama_hosts` (round robin per model),
remembers for `host_down_for_s` a host that refused the connection and skips it meanwhile, tries
the next host when one is down or lacks the model, and raises only when no host could serve.
Every failure a user can hit comes out as a one-sentence `KBError`; an error in the middle of a
stream comes out after the chunks that arrived before it, so a caller can keep a partial answer.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import httpx
import ollama

from rag.catalog import lookup
from rag.errors import (
    AnswerStoppedError,
    KBError,
    ModelNotFoundError,
    OllamaResponseError,
    OllamaTimeoutError,
    OllamaUnreachableError,
)
from rag.llm.base import ChatEvent, ListedModel, Message, ModelFacts, ModelRef, TextDelta, Usage
from rag.llm.hangup import STOPPED, Hangup
from rag.llm.structured import parse_structured
from rag.settings import Settings, env_name

DEFAULT_PORT = 11434
HOST_DOWN_FOR_S = 30.0
CONNECT_TIMEOUT_S = 5.0

# Raised when a host did not accept the connection: try another host.
_HOST_DOWN_ERRORS = (ConnectionError, httpx.ConnectError, httpx.ConnectTimeout)
# Raised while a request runs or its answer is read: ValueError covers unreadable JSON and
# replies that do not fit the client's models (pydantic's ValidationError is a ValueError).
_REQUEST_ERRORS = (ollama.ResponseError, httpx.HTTPError, ValueError)

T = TypeVar("T")
ChatChunk = ollama.ChatResponse
OllamaListed = ollama.ListResponse.Model


def normalize_host(host: str) -> str:
    """`localhost`, `host:port` or a URL, as the `http://host:port` URL that is shown and used."""
    text = host.strip().rstrip("/")
    has_scheme = "://" in text
    parts = urllib.parse.urlsplit(text if has_scheme else f"http://{text}")
    scheme = parts.scheme or "http"
    # Like the ollama client: a bare host gets Ollama's port, a URL its scheme's port.
    default_port = {"http": 80, "https": 443}.get(scheme, DEFAULT_PORT)
    if not has_scheme:
        default_port = DEFAULT_PORT
    hostname = parts.hostname or "127.0.0.1"
    if ":" in hostname:
        hostname = f"[{hostname}]"
    path = parts.path.rstrip("/")
    return f"{scheme}://{hostname}:{parts.port or default_port}{path}"


class OllamaGateway:
    """All traffic to Ollama goes through one of these, built from the settings."""

    def __init__(self, settings: Settings, *, host_down_for_s: float = HOST_DOWN_FOR_S) -> None:
        self.hosts = list(dict.fromkeys(normalize_host(h) for h in settings.all_ollama_hosts))
        self.timeout_s = settings.ollama_timeout_s
        self._host_variable = env_name("ollama_hosts" if settings.ollama_hosts else "ollama_host")
        self._host_down_for_s = host_down_for_s
        self._timeout = httpx.Timeout(
            settings.ollama_timeout_s, connect=min(CONNECT_TIMEOUT_S, settings.ollama_timeout_s)
        )
        self._clients: dict[str, ollama.Client] = {}
        self._down_until: dict[str, float] = {}
        self._turns: dict[str, int] = {}
        self._shown: dict[str, tuple[float, ollama.ShowResponse]] = {}
        self._lock = threading.Lock()

    # -- public API --

    def version(self) -> str:
        """The version string of the first Ollama that answers."""
        _, version = self._call(None, self._fetch_version)
        return version

    def is_reachable(self) -> bool:
        """True when at least one host answers as an Ollama server."""
        try:
            self.version()
        except KBError:
            return False
        return True

    def unreachable_message(self) -> str:
        """The sentence shown when no host answers: where Ollama was looked for, how to start it."""
        return str(self._unreachable())

    def list_models(self) -> list[OllamaListed]:
        """The models pulled on any reachable host, each name once, sorted by name."""
        merged: dict[str, OllamaListed] = {}
        for listing in self._on_every_host(lambda host: self._client(host).list()):
            for model in listing.models:
                merged.setdefault(model.model or "", model)
        return [merged[name] for name in sorted(merged)]

    def show(self, model: str, max_age_s: float = 0.0) -> ollama.ShowResponse:
        """Ollama's `/api/show` for a model: details and the GGUF `model_info`. With
        `max_age_s`, an answer fetched that recently is reused (the chain asks per question)."""
        now = time.monotonic()
        with self._lock:
            cached = self._shown.get(model)
        if cached is not None and now - cached[0] <= max_age_s:
            return cached[1]
        _, shown = self._call(model, lambda host: self._client(host).show(model))
        with self._lock:
            self._shown[model] = (now, shown)
        return shown

    def chat(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        options: Mapping[str, Any] | None = None,
        stream: bool = True,
        format: str | Mapping[str, Any] | None = None,
        hangup: Hangup | None = None,
    ) -> Iterator[ChatChunk]:
        """The client's chat chunks (one whole response when `stream` is False).

        Nothing is sent until the first chunk is asked for. An error after some chunks is raised
        as a `KBError` from the iterator once those chunks have been yielded. With `hangup`, the
        request goes on a connection of its own that `hangup.hang_up()` shuts down; the
        iterator then raises `AnswerStoppedError`.
        """
        own: list[ollama.Client] = []  # the clients made for this request alone

        def client_for(host: str) -> ollama.Client:
            if hangup is None:
                return self._client(host)
            own.append(self._hangup_client(host, hangup))
            return own[-1]

        def open_chat(host: str) -> tuple[ChatChunk | None, Iterator[ChatChunk]]:
            reply = client_for(host).chat(
                model=model,
                messages=list(messages),
                options=dict(options) if options is not None else None,
                stream=stream,
                format=dict(format) if isinstance(format, Mapping) else format,
            )
            if isinstance(reply, ollama.ChatResponse):
                return reply, iter(())
            # A stream sends its request, and meets its HTTP errors, at the first chunk.
            return next(reply, None), reply

        rest: Iterator[ChatChunk] = iter(())
        try:
            if hangup is not None and hangup.hung_up:
                raise AnswerStoppedError(STOPPED)
            host, (first, rest) = self._call(model, open_chat)
            if first is not None:
                yield first
            yield from self._translated(rest, host)
        except KBError as err:
            if hangup is not None and hangup.hung_up and not isinstance(err, AnswerStoppedError):
                raise AnswerStoppedError(STOPPED) from None
            raise
        finally:
            close = getattr(rest, "close", None)
            if close is not None:
                close()
            for client in own:
                client.close()

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def __enter__(self) -> OllamaGateway:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- hosts --

    def _client(self, host: str) -> ollama.Client:
        with self._lock:
            if host not in self._clients:
                self._clients[host] = ollama.Client(host=host, timeout=self._timeout)
            return self._clients[host]

    def _hangup_client(self, host: str, hangup: Hangup) -> ollama.Client:
        """A client for one request whose connections `hangup` can shut down."""
        return ollama.Client(
            host=host, timeout=self._timeout, event_hooks={"request": [hangup.watch_request]}
        )

    def _hosts_in_turn(self, key: str) -> list[str]:
        """All hosts, starting at this key's next turn; those marked down only as a last resort."""
        with self._lock:
            turn = self._turns.get(key, 0)
            self._turns[key] = turn + 1
            now = time.monotonic()
            start = turn % len(self.hosts)
            rotated = self.hosts[start:] + self.hosts[:start]
            up = [h for h in rotated if self._down_until.get(h, 0.0) <= now]
        return up + [h for h in rotated if h not in up]

    def _mark_down(self, host: str) -> None:
        with self._lock:
            self._down_until[host] = time.monotonic() + self._host_down_for_s

    def _mark_up(self, host: str) -> None:
        with self._lock:
            self._down_until.pop(host, None)

    def _call(self, model: str | None, action: Callable[[str], T]) -> tuple[str, T]:
        """Run `action` on the first host that can serve it; return that host and the result."""
        lacking: list[str] = []
        for host in self._hosts_in_turn(model or ""):
            try:
                result = action(host)
            except _HOST_DOWN_ERRORS:
                self._mark_down(host)
                continue
            except _REQUEST_ERRORS as err:
                self._mark_up(host)
                if model and _is_model_not_found(err):
                    lacking.append(host)
                    continue
                raise self._translate(err, host) from None
            self._mark_up(host)
            return host, result
        if model and lacking:
            raise self._model_not_found(model, lacking)
        raise self._unreachable()

    def _on_every_host(self, action: Callable[[str], T]) -> list[T]:
        """`action` on every host that is up; unreachable only when none answered."""
        results: list[T] = []
        for host in self._hosts_in_turn(""):
            try:
                results.append(action(host))
            except _HOST_DOWN_ERRORS:
                self._mark_down(host)
                continue
            except _REQUEST_ERRORS as err:
                raise self._translate(err, host) from None
            self._mark_up(host)
        if not results:
            raise self._unreachable()
        return results

    def _fetch_version(self, host: str) -> str:
        # The official client has no call for /api/version.
        response = httpx.get(f"{host}/api/version", timeout=self._timeout)
        if response.is_error:
            raise ollama.ResponseError(response.text, response.status_code)
        return str(response.json()["version"])

    def _translated(self, chunks: Iterator[ChatChunk], host: str) -> Iterator[ChatChunk]:
        while True:
            try:
                chunk = next(chunks)
            except StopIteration:
                return
            except _HOST_DOWN_ERRORS + _REQUEST_ERRORS as err:
                raise self._translate(err, host) from None
            yield chunk

    # -- errors --

    def _translate(self, err: BaseException, host: str) -> KBError:
        if isinstance(err, httpx.TimeoutException):
            return OllamaTimeoutError(
                f"Ollama at {host} did not answer within {self.timeout_s:g} seconds; raise "
                f"{env_name('ollama_timeout_s')} or choose a smaller model."
            )
        if isinstance(err, ollama.ResponseError):
            status = f"status {err.status_code}: " if err.status_code > 0 else ""
            return OllamaResponseError(
                f"Ollama at {host} answered with an error ({status}{_one_line(err.error)}); "
                "check its log, then try again."
            )
        if isinstance(err, httpx.TransportError | ConnectionError):
            return OllamaResponseError(
                f"The connection to Ollama at {host} broke off during the request; check that it "
                "is still running, then try again."
            )
        return OllamaResponseError(
            f"Ollama at {host} sent a reply that could not be read; check that this address "
            "serves Ollama and that Ollama is up to date."
        )

    def _unreachable(self) -> OllamaUnreachableError:
        return OllamaUnreachableError(
            f"Ollama is not reachable at {', '.join(self.hosts)}; start it with `ollama serve` "
            f"(or `docker compose up ollama`), or set {self._host_variable}."
        )

    def _model_not_found(self, model: str, hosts: list[str]) -> ModelNotFoundError:
        return ModelNotFoundError(
            f"Model {model} is not pulled on Ollama at {', '.join(hosts)}; run "
            f"`ollama pull {model}` there, or choose another model with {env_name('model')}."
        )


def _is_model_not_found(err: BaseException) -> bool:
    return isinstance(err, ollama.ResponseError) and err.status_code == 404


def _one_line(text: str) -> str:
    return " ".join(str(text).split()).rstrip(".")


# -- the ChatBackend --------------------------------------------------------------------------

SERVER_NAME = "ollama"
NS_PER_MS = 1e6


class OllamaBackend:
    """`ChatBackend` over one `OllamaGateway` (one or several Ollama hosts)."""

    name = SERVER_NAME

    def __init__(self, settings: Settings, *, host_down_for_s: float = HOST_DOWN_FOR_S) -> None:
        self.gateway = OllamaGateway(settings, host_down_for_s=host_down_for_s)

    @property
    def hosts(self) -> list[str]:
        return self.gateway.hosts

    def describe(self) -> str:
        return f"Ollama at {', '.join(self.gateway.hosts)}"

    def is_reachable(self) -> bool:
        return self.gateway.is_reachable()

    def unreachable_message(self) -> str:
        return self.gateway.unreachable_message()

    def list_models(self) -> list[ListedModel]:
        return [
            ListedModel(ModelRef(self.name, m.model), int(m.size) if m.size is not None else None)
            for m in self.gateway.list_models()
            if m.model
        ]

    def facts(self, model: str, max_age_s: float = 0.0) -> ModelFacts:
        return facts_from_show(model, self.gateway.show(model, max_age_s=max_age_s))

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
        options = _options(window, max_tokens, temperature, seed)
        for chunk in self.gateway.chat(model, messages, options=options, hangup=hangup):
            text = (chunk.message.content or "") if chunk.message else ""
            if text:
                yield TextDelta(text)
            if chunk.done:
                yield _usage(chunk, window)
                return

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
        options = _options(window, max_tokens, 0.0, seed)
        reply = self.gateway.chat(model, messages, options=options, stream=False, format=schema)
        chunk = next(iter(reply), None)
        text = (chunk.message.content or "") if chunk is not None and chunk.message else ""
        return parse_structured(text, schema, self.describe())

    def close(self) -> None:
        self.gateway.close()


def _options(
    window: int, max_tokens: int, temperature: float | None, seed: int | None
) -> dict[str, Any]:
    options: dict[str, Any] = {"num_ctx": window, "num_predict": max_tokens}
    if temperature is not None:
        options["temperature"] = temperature
    if seed is not None:
        options["seed"] = seed
    return options


def _usage(chunk: ChatChunk, window: int) -> Usage:
    def ms(duration_ns: int | None) -> float | None:
        return round(duration_ns / NS_PER_MS, 1) if duration_ns else None

    return Usage(
        prompt_tokens=chunk.prompt_eval_count,
        output_tokens=chunk.eval_count,
        counted_by="server",
        prompt_ms=ms(chunk.prompt_eval_duration),
        output_ms=ms(chunk.eval_duration),
        finish_reason=chunk.done_reason,
        window=window,
    )


# -- facts from /api/show ---------------------------------------------------------------------


def _as_int(value: Any) -> int | None:
    """An integer fact; a per-layer list (some architectures) counts as its largest value."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list | tuple):
        numbers = [v for v in (_as_int(item) for item in value) if v is not None]
        return max(numbers) if numbers else None
    return None


def _info_value(info: Mapping[str, Any], architecture: str | None, suffix: str) -> Any:
    """`<arch>.<suffix>`, else any key ending in `.<suffix>` whatever its prefix."""
    if architecture and f"{architecture}.{suffix}" in info:
        return info[f"{architecture}.{suffix}"]
    return next((v for k, v in info.items() if k.endswith(f".{suffix}")), None)


def facts_from_show(
    name: str, shown: ollama.ShowResponse, listed: ollama.ListResponse.Model | None = None
) -> ModelFacts:
    """`ModelFacts` from `/api/show`: the GGUF `model_info` (`<arch>.context_length`, layer and
    head counts) and `details`; the window is the trained context (kb sends it as num_ctx)."""
    info: Mapping[str, Any] = shown.modelinfo or {}
    details = shown.details or (listed.details if listed else None)
    architecture = info.get("general.architecture")
    family = details.family if details else None
    entry = lookup(name, family)

    def fact(suffix: str) -> int | None:
        return _as_int(_info_value(info, architecture, suffix))

    trained = fact("context_length")
    return ModelFacts(
        name=name,
        server=SERVER_NAME,
        family=family,
        parameter_count=_as_int(info.get("general.parameter_count")),
        parameter_size=details.parameter_size if details else None,
        quantization=details.quantization_level if details else None,
        architecture=str(architecture) if architecture else None,
        context_length=trained,
        window=trained,
        window_source="trained" if trained else None,
        block_count=fact("block_count"),
        head_count=fact("attention.head_count"),
        head_count_kv=fact("attention.head_count_kv"),
        embedding_length=fact("embedding_length"),
        key_length=fact("attention.key_length"),
        value_length=fact("attention.value_length"),
        size_bytes=int(listed.size) if listed and listed.size is not None else None,
        license=entry.license if entry else None,
        notes=entry.note if entry else None,
    )
