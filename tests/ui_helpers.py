"""Helpers for the app's tests: a tiny corpus, its ingest, the app's environment, and readers
of the AppTest element tree."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from ingest.pipeline import ingest
from rag.embeddings import Embedder
from rag.llm.base import ChatBackend
from rag.settings import Settings
from ui.plain import WORD_JOINER

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "ui" / "app.py"
APP_TIMEOUT_S = 60  # a first run imports torch and the app's modules
MODEL = "fake-llama3:8b"
MODELS = "fake-llama3:8b,fake-mistral:7b,fake-qwen2:7b"
OLLAMA = "ollama"  # the server name of the fake Ollama's models in model ids

# The remote resources the safety tests plant; nothing may ever load them.
IMAGE_MD = "![x](http://example.invalid/p.png)"
IMAGE_TAG = '<img src="http://example.invalid/q.png">'
# What remark-gfm turns into links in plain text: URLs, www. names and e-mail addresses.
AUTOLINKABLE = re.compile(r"https?://|www\.|[\w.+-]@[\w-]|mailto:|xmpp:", re.IGNORECASE)

CORPUS = {
    "harbour/lighthouse.md": (
        "# Tarnwick lighthouse\n\n"
        "The Tarnwick lighthouse was built in 1871 from granite quarried on the island. "
        "Its lamp is visible for twenty-two nautical miles in clear weather.\n\n"
        "## Keepers\n\n"
        "Three keepers lived in the lighthouse until the lamp was automated in 1979.\n"
    ),
    "village/bakery.md": (
        "# Orvel bakery\n\n"
        "The Orvel bakery opens at six every morning and sells rye bread baked in a wood oven. "
        "On Sundays the bakery stays closed.\n"
    ),
    "signals.md": (
        "# Harbour signals\n\n"
        f"The storm warning flag shown at the harbour mast is {IMAGE_MD} and the night "
        f"beacon on the mast is {IMAGE_TAG} in red.\n"
    ),
}
LIGHTHOUSE_Q = "When was the Tarnwick lighthouse built?"
LIGHTHOUSE_A = "built in 1871"
SIGNALS_Q = "What storm warning flag is shown at the harbour mast?"


def write_corpus(folder: Path, files: dict[str, str] | None = None) -> Path:
    for rel, text in (files or CORPUS).items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return folder


@dataclass
class AppEnv:
    """Where one test's app lives: its settings and folders, and the fake Ollama's URL."""

    settings: Settings
    docs: Path
    ollama_url: str


def app_env_values(tmp_path: Path, ollama_url: str, **extra: str) -> dict[str, str]:
    """The environment the app reads its settings from (AppTest and `streamlit run` both run
    the script, so settings can only reach it this way)."""
    return {
        "OLLAMA_HOST": ollama_url,
        "KB_MODEL": MODEL,
        "KB_MODELS": MODELS,
        "KB_QDRANT_PATH": str(tmp_path / "qdrant"),
        "KB_DATA_DIR": str(tmp_path / "data"),
        "KB_EMBED_DEVICE": "cpu",
        "KB_STORE_LOCK_WAIT_S": "0",
        "KB_CONFIG": str(tmp_path / "no-kb.toml"),
        **extra,
    }


def app_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ollama_url: str, **extra: str
) -> dict[str, str]:
    values = app_env_values(tmp_path, ollama_url, **extra)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def ingest_corpus(settings: Settings, docs: Path, embedder: Embedder) -> None:
    report = ingest(settings, [docs], embedder=embedder)
    assert not report.failed, report.failed


def ollama_id(name: str) -> str:
    """The model id (`name@server`) of one of the fake Ollama's models."""
    return f"{name}@{OLLAMA}"


def label(model_id: str) -> str:
    """How the app shows a model id in its pickers and headings: `name · server`."""
    name, _, server = model_id.rpartition("@")
    return f"{name} · {server}"


def add_model_server(monkeypatch: pytest.MonkeyPatch, backend: ChatBackend) -> None:
    """Make the app's composition root register `backend` beside the configured servers (as
    the tests' `services_factory` does), for every `Services` the app builds from now on."""
    import ui.resources
    from rag.service import build_services

    monkeypatch.setattr(
        ui.resources, "build_services", functools.partial(build_services, extra_backends=[backend])
    )


def new_app() -> AppTest:
    return AppTest.from_file(str(APP), default_timeout=APP_TIMEOUT_S)


def switch(app: AppTest, page: str) -> AppTest:
    """Run the app on one of its pages: "chat", "compare", "library", "models", "evaluation"."""
    if not app._tree.children:  # never run yet
        app.run()
    return app.switch_page(f"views/{page}.py").run()


def ask(app: AppTest, question: str) -> AppTest:
    app.chat_input[0].set_value(question).run()
    return app


def compare(app: AppTest, question: str, models: list[str]) -> AppTest:
    """Ask `question` of `models` on the Compare page."""
    app.text_area[0].set_value(question)
    app.multiselect[0].set_value(models)
    app.button(key="FormSubmitter:compare-Compare").click().run()
    no_exception(app)
    return app


def open_panels(app: AppTest, suffix: str = "-others") -> AppTest:
    """Open every panel (expander or switch) whose key ends in `suffix` and run the page again:
    the app draws a closed panel's passages only once it is opened."""
    for key in list(app.session_state.keys()):
        if str(key).endswith(suffix):
            app.session_state[key] = True
    return app.run()


def no_exception(app: AppTest) -> None:
    assert not app.exception, [e.value for e in app.exception]


def walk(node: Any) -> Iterator[Any]:
    """Every element and block under `node`, depth first."""
    yield node
    children = getattr(node, "children", None)
    if isinstance(children, dict):
        for child in children.values():
            yield from walk(child)


def elements(app: AppTest, kind: str) -> list[Any]:
    return [node for node in walk(app._tree) if getattr(node, "type", None) == kind]


def markdown_bodies(app: AppTest) -> list[str]:
    """The source text of every element that renders markdown: markdown, captions, alerts,
    expander labels and progress texts."""
    bodies = []
    for node in walk(app._tree):
        kind = getattr(node, "type", None)
        if kind in ("markdown", "caption", "error", "warning", "info", "success"):
            bodies.append(str(node.value))
        elif kind == "expander":
            bodies.append(str(node.label))
        elif kind == "progress":
            bodies.append(str(node.text))
    return bodies


def all_text(app: AppTest) -> str:
    return "\n".join(markdown_bodies(app))


def shown(markdown: str) -> str:
    """What a reader sees of markdown that `ui.plain.escape_markdown` wrote (roughly: every
    backslash goes, so only for text without backslashes of its own)."""
    return unescape(markdown.replace("\\", "").replace(WORD_JOINER, ""))


def page_text(app: AppTest) -> str:
    """Every markdown body of the page, as a reader sees it."""
    return shown(all_text(app))
