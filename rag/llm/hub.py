"""Several model servers behind one object: model ids carry their server.

`ModelHub` holds one `ChatBackend` per configured server (Ollama first, then each
OpenAI-compatible server in the order configured) and routes each call by model id,
`name@server`. A bare name (what settings, calibration, Compare marks and eval results held
before servers had names) goes to the first reachable server that lists it, Ollama first.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rag.errors import KBError, ModelNotFoundError, ServerUnreachableError
from rag.llm.base import (
    SERVER_SEPARATOR,
    ChatBackend,
    ChatEvent,
    ListedModel,
    Message,
    ModelFacts,
    ModelRef,
)
from rag.llm.hangup import Hangup

LISTING_MAX_AGE_S = 30.0  # a bare name is resolved against listings at most this old


NO_SERVER = (
    "No model server is configured (KB_OLLAMA_ENABLED is false and no OpenAI-compatible server "
    "is set); set OPENAI_BASE_URL or KB_OPENAI_SERVERS, or turn Ollama back on."
)


class ModelHub:
    """Every configured server. Thread-safe: the app's sessions and Compare's lanes share one.
    With none configured, search still works and every model call raises
    `ServerUnreachableError` saying so (`NO_SERVER`)."""

    def __init__(self, backends: Sequence[ChatBackend], hint: str | None = None) -> None:
        """`hint`: a clause added when no server answers (a likely misconfiguration)."""
        names = [backend.name for backend in backends]
        if len(set(names)) != len(names):
            raise KBError(f"Two model servers share a name ({', '.join(names)}); rename one.")
        self.backends: dict[str, ChatBackend] = {b.name: b for b in backends}
        self.hint = hint
        self._listings: dict[str, tuple[float, list[ListedModel]]] = {}
        self._lock = threading.Lock()

    # -- servers --

    @property
    def servers(self) -> list[str]:
        return list(self.backends)

    def backend(self, server: str) -> ChatBackend:
        try:
            return self.backends[server]
        except KeyError:
            known = ", ".join(self.backends) or "none"
            raise ModelNotFoundError(
                f"No model server is named {server} (configured: {known}); check the model id "
                "or the server settings."
            ) from None

    def reachability(self) -> dict[str, bool]:
        """Whether each server answers, asked of all at once (a remote server that is down
        costs its probe timeout once, not once per server before it)."""
        backends = list(self.backends.values())
        if not backends:
            return {}
        if len(backends) == 1:
            return {backends[0].name: backends[0].is_reachable()}
        with ThreadPoolExecutor(max_workers=len(backends), thread_name_prefix="kb-probe") as pool:
            answers = list(pool.map(lambda backend: backend.is_reachable(), backends))
        return dict(zip(self.backends, answers, strict=True))

    def is_reachable(self) -> bool:
        """True when at least one server answers."""
        return any(self.reachability().values())

    def unreachable_message(self) -> str:
        """One sentence for when no server answers, with the configuration hint if any."""
        if not self.backends:
            return NO_SERVER
        if len(self.backends) == 1:
            message = next(iter(self.backends.values())).unreachable_message()
        else:
            where = "; ".join(b.describe() for b in self.backends.values())
            message = (
                f"No model server is reachable ({where}); start one, or check OLLAMA_HOST, "
                "OPENAI_BASE_URL and KB_OPENAI_SERVERS."
            )
        return f"{message.rstrip('.')}; {self.hint}." if self.hint else message

    def describe(self) -> str:
        return ", ".join(b.describe() for b in self.backends.values()) or "none configured"

    # -- models --

    def list_models(self, max_age_s: float = 0.0) -> list[ListedModel]:
        """The models of every server that answers, server by server; the others are left out.
        When none answers: the one server's own error (a refused key, a wrong address), or
        `ServerUnreachableError` when none could be reached at all."""
        models: list[ListedModel] = []
        answered = 0
        errors: list[KBError] = []
        for name in self.backends:
            try:
                models.extend(self._listing(name, max_age_s))
            except KBError as err:
                errors.append(err)
                continue
            answered += 1
        if not answered:
            specific = [e for e in errors if not isinstance(e, ServerUnreachableError)]
            if specific:
                raise specific[0]
            raise ServerUnreachableError(self.unreachable_message())
        return models

    def resolve(self, model: str, max_age_s: float = LISTING_MAX_AGE_S) -> ModelRef:
        """The server and name of a model id; a bare name goes to the first reachable server
        listing it (Ollama's `llama3.2` matches its `llama3.2:latest`). Raises
        `ModelNotFoundError` with the models there are, or `ServerUnreachableError`."""
        if not self.backends:
            raise ServerUnreachableError(NO_SERVER)
        name, separator, server = model.rpartition(SERVER_SEPARATOR)
        if separator and server in self.backends:
            return ModelRef(server, name)
        if len(self.backends) == 1:
            return ModelRef(next(iter(self.backends)), model)
        available: list[ListedModel] = []
        for listed in self.list_models(max_age_s):
            if same_model(listed.ref.name, model):
                return listed.ref
            available.append(listed)
        shown = ", ".join(m.id for m in available[:8]) or "none"
        raise ModelNotFoundError(
            f"Model {model} is on none of the model servers ({self.describe()}); choose one of "
            f"{shown} with KB_MODEL or --model, or pull it."
        )

    def facts(self, model: str, max_age_s: float = 0.0) -> ModelFacts:
        ref = self.resolve(model)
        return self.backend(ref.server).facts(ref.name, max_age_s=max_age_s)

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
        ref = self.resolve(model)
        return self.backend(ref.server).chat(
            ref.name, messages, window=window, max_tokens=max_tokens,
            temperature=temperature, seed=seed, hangup=hangup,
        )  # fmt: skip

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
        ref = self.resolve(model)
        return self.backend(ref.server).structured(
            ref.name, messages, schema, window=window, max_tokens=max_tokens, seed=seed
        )

    def close(self) -> None:
        for backend in self.backends.values():
            backend.close()

    def __enter__(self) -> ModelHub:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _listing(self, server: str, max_age_s: float) -> list[ListedModel]:
        now = time.monotonic()
        with self._lock:
            cached = self._listings.get(server)
        if cached is not None and now - cached[0] <= max_age_s:
            return cached[1]
        listing = self.backends[server].list_models()
        with self._lock:
            self._listings[server] = (now, listing)
        return listing


def same_model(listed: str, wanted: str) -> bool:
    """Whether a listed name is the wanted one; Ollama's `:latest` tag may be left out."""
    return listed == wanted or listed == f"{wanted}:latest" or wanted == f"{listed}:latest"
