"""Shared fixtures: a fake Ollama on loopback, settings that point at it and at tmp_path, and
the in-process fake model registered with the composition root (like simonw/llm's MockModel)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from eval.fake_ollama import FakeOllama
from rag.settings import UPSTREAM_NAMES, Settings

SettingsFactory = Callable[..., Settings]


@pytest.fixture
def fake_ollama() -> Iterator[FakeOllama]:
    """A fresh fake Ollama on a free loopback port: `.url`, `.requests`, `.requests_to(path)`."""
    server = FakeOllama().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No KB_*/OLLAMA_HOST/QDRANT_* from the developer's shell and no kb.toml leak into a test."""
    for name in list(os.environ):
        if name.startswith("KB_") or name in UPSTREAM_NAMES.values():
            monkeypatch.delenv(name)
    monkeypatch.setenv("KB_CONFIG", str(tmp_path / "no-kb.toml"))


@pytest.fixture
def settings_factory(
    fake_ollama: FakeOllama, tmp_path: Path, isolated_env: None
) -> SettingsFactory:
    """`settings_factory(**overrides)`: Settings on the fake Ollama, its fake models, tmp_path."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "ollama_host": fake_ollama.url,
            "model": "fake-llama3:8b",
            "models": ["fake-llama3:8b", "fake-mistral:7b"],
            "qdrant_path": tmp_path / "qdrant",
            "data_dir": tmp_path / "data",
            "context_tokens": None,  # the chain's tests size the passages by the window
        }
        return Settings(**{**values, **overrides})

    return make


@pytest.fixture
def fake_model() -> Any:
    """The in-process fake model server (`tests.fake_model.FakeBackend`), server `fake`."""
    from tests.fake_model import FakeBackend

    return FakeBackend()


@pytest.fixture
def services_factory(fake_model: Any, embedder: Any) -> Iterator[Callable[[Settings], Any]]:
    """`services_factory(settings)`: the composition root for those settings, with the shared
    embedder and the fake model registered beside the configured servers; closed afterwards."""
    from rag.service import build_services

    built: list[Any] = []

    def make(settings: Settings) -> Any:
        services = build_services(settings, embedder=embedder, extra_backends=[fake_model])
        built.append(services)
        return services

    yield make
    for services in built:
        services.close()


@pytest.fixture(scope="session")
def embedder() -> Any:
    """The packaged embedder, loaded once for the whole test session (loading costs seconds)."""
    from tests.ingest_fixtures import shared_embedder

    return shared_embedder()


# -- the app (ui/) ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ui_embedder() -> Any:
    """The packaged embedder, loaded once per test session and held by the app's own cache
    (`ui.resources`), so the app under AppTest and the test's ingest share it."""
    from rag.settings import DEFAULT_EMBED_MODEL
    from ui.resources import get_embedder

    settings = Settings(embed_model=DEFAULT_EMBED_MODEL, embed_device="cpu", embed_batch_size=16)
    embedder = get_embedder(settings)
    embedder.model  # noqa: B018 - load now, once
    return embedder


@pytest.fixture
def ui_app_env(
    fake_ollama: FakeOllama,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    isolated_env: None,
    ui_embedder: Any,
) -> Iterator[Any]:
    """The app's environment on the fake Ollama and a temp store holding a tiny ingested corpus
    (`tests.ui_helpers.CORPUS`); the app's shared store and gateway are released afterwards."""
    from rag.settings import load_settings
    from tests.ui_helpers import AppEnv, app_environment, ingest_corpus, write_corpus
    from ui import resources

    app_environment(monkeypatch, tmp_path, fake_ollama.url)
    settings = load_settings()
    docs = write_corpus(tmp_path / "docs")
    ingest_corpus(settings, docs, ui_embedder)
    try:
        yield AppEnv(settings, docs, fake_ollama.url)
    finally:
        resources.release_process_resources()


# -- eval ---------------------------------------------------------------------------------------

EVAL_SAMPLE = Path(__file__).resolve().parents[1] / "eval" / "sample"


@pytest.fixture(scope="session")
def eval_settings(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Settings]:
    """`eval_settings(ollama_url, data_dir, **overrides)`: Settings for the eval tests, every
    field they depend on given explicitly (so no KB_* variable or kb.toml changes them), on the
    store that `eval_sample_store` fills."""
    from rag.settings import DEFAULT_EMBED_MODEL

    store = tmp_path_factory.mktemp("eval-sample") / "qdrant"

    def make(ollama_url: str, data_dir: Path, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "qdrant_path": store, "qdrant_url": None, "qdrant_api_key": None,
            "collection": "kb", "store_lock_wait_s": 5.0,
            "embed_model": DEFAULT_EMBED_MODEL, "embed_device": "cpu", "embed_batch_size": 16,
            "chunk_size": 64, "chunk_overlap": 0, "max_file_mb": 50.0,
            "ollama_host": ollama_url, "ollama_hosts": [], "ollama_timeout_s": 30.0,
            "model": "fake-llama3:8b", "models": ["fake-llama3:8b", "fake-mistral:7b"],
            "context_cap": 8192, "context_caps": {}, "answer_tokens": 512, "safety_margin": 64,
            "retrieval_candidates": 40, "context_tokens": None, "data_dir": data_dir,
        }  # fmt: skip
        return Settings(**{**values, **overrides})

    return make


@pytest.fixture(scope="session")
def eval_sample_store(eval_settings: Callable[..., Settings], embedder: Any) -> Path:
    """The shipped sample eval set (`eval/sample/docs`) ingested once, with the shared embedder,
    into the evaluation store that goes with the store of `eval_settings` (the knowledge base
    itself stays empty); eval commands then find it unchanged and only read it. Returns the
    knowledge base's folder (`KB_QDRANT_PATH`)."""
    from eval.corpus import eval_store_settings
    from ingest.pipeline import ingest

    settings = eval_settings("http://127.0.0.1:9", Path("unused-data"))
    report = ingest(eval_store_settings(settings), [EVAL_SAMPLE / "docs"], embedder=embedder)
    assert report.added == 6 and not report.failed, report.as_json()
    return settings.qdrant_path
