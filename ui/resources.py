"""What the app holds per process (settings and one `Services`: model servers, embedder, shared
store) and the few helpers every page starts with.

Everything here is cached with `st.cache_resource`, so it is built once per process and shared
by every browser session; nothing about a user lives here (that is `st.session_state`'s job).
The embedder's weights are cached by the embedding settings alone, so `Services` built for
settings that differ elsewhere (a changed kb.toml; the tests' temp folders) share one load.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
from pathlib import Path
from threading import Thread

import streamlit as st

from rag.embeddings import Embedder
from rag.errors import KBError
from rag.service import Services, build_services
from rag.settings import UPSTREAM_NAMES, Settings, env_name, load_settings
from ui.login import require_access
from ui.plain import message_markdown

REACHABILITY_TTL_S = 10  # how long the servers' up/down answers are trusted
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
    keys = [settings.qdrant_api_key, settings.app_password, settings.openai_api_key]
    keys += [server.api_key for server in settings.openai_servers]
    secrets = [key.get_secret_value() if key is not None else None for key in keys]
    raw = settings.model_dump_json() + json.dumps(secrets)
    return hashlib.sha256(raw.encode()).hexdigest()


# -- the embedder -------------------------------------------------------------------------------


def _embedder_key(settings: Settings) -> str:
    """What makes one embedder differ from another: model, device, batch size, backend, and
    the data folder that holds its ONNX export."""
    fields = ("embed_model", "embed_device", "embed_batch_size", "embed_backend", "data_dir")
    return json.dumps([str(getattr(settings, name)) for name in fields])


@st.cache_resource(show_spinner=False)
def _embedder_for(key: str, _settings: Settings) -> Embedder:
    return Embedder(_settings)


def _shared_embedder(settings: Settings) -> Embedder:
    return _embedder_for(_embedder_key(settings), settings)


def _load_and_freeze(embedder: Embedder) -> None:
    """Load the embedder, then move everything the process holds so far (Streamlit, torch,
    transformers and the model's objects: about 500,000 of them) out of the garbage
    collector's reach with `gc.freeze()`. Python's full collections, which come on their own
    every few questions, then walk only what was made since, instead of holding the GIL for
    100-400 ms (seen on this 2-core machine) while a question waits for its script to start
    (tests/bench_ui_first_sign.py). Runs once per process; frozen objects are long-lived
    anyway."""
    embedder.load()
    gc.freeze()


@st.cache_resource(show_spinner=False)
def _warm_up_thread(key: str, _embedder: Embedder) -> Thread:
    thread = Thread(target=_load_and_freeze, args=(_embedder,), name="kb-embedder-load")
    thread.daemon = True
    thread.start()
    return thread


def _warm_up(settings: Settings) -> Thread:
    return _warm_up_thread(_embedder_key(settings), _shared_embedder(settings))


def warm_up_embedder(settings: Settings) -> None:
    """Start loading the embedder in the background (once per process), so that the first
    question does not wait seconds for it; `ready_services` waits for the load to finish."""
    _warm_up(settings)


def get_embedder(settings: Settings) -> Embedder:
    """The process's embedder for these embedding settings, loaded."""
    _warm_up(settings).join()
    return _shared_embedder(settings)


# -- the composition root -----------------------------------------------------------------------


def _close_services(services: Services) -> None:
    services.close()


@st.cache_resource(show_spinner=False, on_release=_close_services)
def _services_for(key: str, _settings: Settings) -> Services:
    return build_services(_settings, embedder=_shared_embedder(_settings), shared_store=True)


def get_services(settings: Settings) -> Services:
    """The one `Services` of this process for these settings: every configured model server,
    the embedder (possibly still loading) and the shared store."""
    return _services_for(settings_key(settings), settings)


def ready_services(settings: Settings) -> Services:
    """`get_services`, once the embedder has loaded (for anything that embeds a text)."""
    _warm_up(settings).join()
    return get_services(settings)


# -- the model servers --------------------------------------------------------------------------


@st.cache_resource(show_spinner=False, ttl=REACHABILITY_TTL_S)
def _reachability(key: str, _services: Services) -> dict[str, bool]:
    return _services.models.reachability()


def server_reachability(settings: Settings) -> dict[str, bool]:
    """Each configured server, up or down; asked at most every few seconds, not per rerun."""
    return dict(_reachability(settings_key(settings), get_services(settings)))


def models_reachable(settings: Settings) -> bool:
    """Whether at least one model server answers."""
    return any(server_reachability(settings).values())


@st.cache_resource(show_spinner=False, ttl=MODEL_LIST_TTL_S)
def _model_ids(key: str, _services: Services) -> list[str]:
    return [model.id for model in _services.models.list_models()]


def listed_models(settings: Settings) -> list[str]:
    """The ids (`name@server`) of every model every reachable server offers, server by server;
    empty when no server can be asked (then without asking again on every rerun)."""
    if not models_reachable(settings):
        return []
    try:
        return list(_model_ids(settings_key(settings), get_services(settings)))
    except KBError:
        return []


def current_settings() -> Settings:
    """The settings; a wrong setting stops the page with its one-sentence message."""
    try:
        return _settings_for(_environment_key())
    except KBError as err:
        st.error(str(err))
        st.stop()
        raise  # st.stop() raises; this line is for the type checker


def page_start(needs_models: bool = False) -> Settings:
    """What every page does first: settings, the sign-in or password gate, the model servers'
    banner."""
    settings = current_settings()
    require_access(settings)
    if needs_models:
        servers_banner(settings)
    return settings


def _server_descriptions(settings: Settings, servers: list[str]) -> str:
    backends = get_services(settings).models.backends
    return "; ".join(backends[name].describe().replace("`", "'") for name in servers)


def servers_banner(settings: Settings) -> None:
    """A warning when no model server answers; a quiet note naming the ones that do not (their
    addresses as code, so that they copy exactly)."""
    reachability = server_reachability(settings)
    down = [name for name, up in reachability.items() if not up]
    if not down:
        return
    where = _server_descriptions(settings, down)
    if len(down) < len(reachability):
        note = f"Not reachable now: {where}; their models are left out until they answer."
        st.caption(message_markdown(note))
        return
    ollama_variable = env_name("ollama_hosts" if settings.ollama_hosts else "ollama_host")
    openai_variables = f"{env_name('openai_base_url')} or {env_name('openai_servers')}"
    st.warning(
        message_markdown(
            f"No model server is reachable ({where}); start Ollama with `ollama serve` (or "
            "`docker compose up -d ollama`) or an OpenAI-compatible server, or point "
            f"{ollama_variable} or {openai_variables} at a running one, and until then chat "
            "shows the best matching passages instead of answers."
        )
    )


def release_process_resources() -> None:
    """Close every `Services` this process holds and forget the servers' state (for tests,
    which run many configurations in one process); the embedder stays loaded."""
    for cached in (_services_for, _reachability, _model_ids, _settings_for):
        cached.clear()
