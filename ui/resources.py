"""What the app holds per process (settings, embedder, shared store, Ollama gateway) and the
few helpers every page starts with.

Everything here is cached with `st.cache_resource`, so it is built once per process and shared
by every browser session; nothing about a user lives here (that is `st.session_state`'s job).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from threading import Thread

import streamlit as st

from rag.embeddings import Embedder
from rag.errors import KBError
from rag.ollama_client import OllamaGateway
from rag.settings import UPSTREAM_NAMES, Settings, env_name, load_settings
from rag.store import SharedStore, Store
from ui.auth import require_password
from ui.plain import escape_markdown

REACHABILITY_TTL_S = 10  # how long an Ollama up/down answer is trusted
MODEL_LIST_TTL_S = 30


def _environment_key() -> str:
    """The inputs of `load_settings()`. A production process sees one value for its whole life,
    so its settings are built once; tests run several configurations in one process."""
    names = sorted(n for n in os.environ if n.startswith("KB_") or n in UPSTREAM_NAMES.values())
    toml = Path(os.environ.get("KB_CONFIG", "kb.toml"))
    stamp = toml.stat().st_mtime_ns if toml.is_file() else None
    raw = json.dumps([[n, os.environ[n]] for n in names] + [str(toml), stamp])
    return hashlib.sha256(raw.encode()).hexdigest()


@st.cache_resource(show_spinner=False)
def _settings_for(environment_key: str) -> Settings:
    return load_settings()


def settings_key(settings: Settings) -> str:
    """A cache key for everything built from `settings` (secrets included, hashed)."""
    secrets = [
        s.get_secret_value() if s is not None else None
        for s in (settings.qdrant_api_key, settings.app_password)
    ]
    raw = settings.model_dump_json() + json.dumps(secrets)
    return hashlib.sha256(raw.encode()).hexdigest()


@st.cache_resource(show_spinner=False)
def _embedder_for(name: str, device: str, batch_size: int, _settings: Settings) -> Embedder:
    return Embedder(_settings)


def get_embedder(settings: Settings) -> Embedder:
    """One embedder per process (per embedding model), loaded (see `warm_up_embedder`)."""
    _warm_up(settings).join()
    return _embedder_for(
        settings.embed_model, settings.embed_device, settings.embed_batch_size, settings
    )


@st.cache_resource(show_spinner=False)
def _warm_up_thread(name: str, device: str, batch_size: int, _embedder: Embedder) -> Thread:
    thread = Thread(target=lambda: _embedder.model, name="kb-embedder-load", daemon=True)
    thread.start()
    return thread


def _warm_up(settings: Settings) -> Thread:
    embedder = _embedder_for(
        settings.embed_model, settings.embed_device, settings.embed_batch_size, settings
    )
    return _warm_up_thread(
        settings.embed_model, settings.embed_device, settings.embed_batch_size, embedder
    )


def warm_up_embedder(settings: Settings) -> None:
    """Start loading the embedder in the background (once per process), so that the first
    question does not wait seconds for it; `get_embedder` waits for the load to finish."""
    _warm_up(settings)


def _close_store(shared: SharedStore) -> None:
    shared.close()


@st.cache_resource(show_spinner=False, on_release=_close_store)
def _shared_store_for(key: str, _settings: Settings) -> SharedStore:
    return SharedStore(_settings)


def get_shared_store(settings: Settings) -> SharedStore:
    return _shared_store_for(settings_key(settings), settings)


def _close_gateway(gateway: OllamaGateway) -> None:
    gateway.close()


@st.cache_resource(show_spinner=False, on_release=_close_gateway)
def _gateway_for(key: str, _settings: Settings) -> OllamaGateway:
    return OllamaGateway(_settings)


def get_gateway(settings: Settings) -> OllamaGateway:
    return _gateway_for(settings_key(settings), settings)


@st.cache_resource(show_spinner=False, ttl=REACHABILITY_TTL_S)
def _reachable(key: str, _gateway: OllamaGateway) -> bool:
    return _gateway.is_reachable()


def ollama_reachable(settings: Settings) -> bool:
    """Whether Ollama answers; asked at most every few seconds, not on every rerun."""
    return _reachable(settings_key(settings), get_gateway(settings))


@st.cache_resource(show_spinner=False, ttl=MODEL_LIST_TTL_S)
def _pulled_models(key: str, _gateway: OllamaGateway) -> list[str]:
    return [m.model for m in _gateway.list_models() if m.model]


def pulled_models(settings: Settings) -> list[str]:
    """Names of the models Ollama has; empty when it cannot be asked."""
    try:
        return list(_pulled_models(settings_key(settings), get_gateway(settings)))
    except KBError:
        return []


@contextmanager
def store_in_use(settings: Settings) -> Iterator[Store]:
    """The process's shared store for one operation (it is released again when idle)."""
    with get_shared_store(settings).use() as store:
        yield store


def current_settings() -> Settings:
    """The settings; a wrong setting stops the page with its one-sentence message."""
    try:
        return _settings_for(_environment_key())
    except KBError as err:
        st.error(str(err))
        st.stop()
        raise  # st.stop() raises; this line is for the type checker


def page_start(needs_ollama: bool = False) -> Settings:
    """What every page does first: settings, the password gate, the Ollama banner."""
    settings = current_settings()
    require_password(settings)
    if needs_ollama and not ollama_reachable(settings):
        ollama_banner(settings)
    return settings


def ollama_banner(settings: Settings) -> None:
    variable = env_name("ollama_hosts" if settings.ollama_hosts else "ollama_host")
    hosts = escape_markdown(", ".join(get_gateway(settings).hosts))
    st.warning(
        f"Ollama is unreachable at {hosts} ({variable}). Start it with `ollama serve` "
        "(or `docker compose up -d ollama`), or point "
        f"{variable} at a running Ollama. Until then, chat shows the best matching passages "
        "instead of answers."
    )


def release_process_resources() -> None:
    """Close every shared store and gateway this process holds and forget Ollama's state (for
    tests, which run many configurations in one process); the embedder stays loaded."""
    for cached in (_shared_store_for, _gateway_for, _reachable, _pulled_models, _settings_for):
        cached.clear()
