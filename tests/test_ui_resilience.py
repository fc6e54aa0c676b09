"""The app without a model server (chat becomes search, every page works) and with the embedded
store held by another client (one sentence, no traceback, and recovery once it is free)."""

from __future__ import annotations

import pytest
from qdrant_client import QdrantClient

from eval.fake_ollama import FakeOllama, unused_loopback_url
from rag.errors import StoreLockedError
from rag.store import connect
from tests.ui_helpers import (
    LIGHTHOUSE_A,
    LIGHTHOUSE_Q,
    AppEnv,
    ask,
    new_app,
    no_exception,
    ollama_id,
    page_text,
    shown,
    switch,
)
from ui.plain import escape_markdown

PAGES = ("chat", "compare", "library", "models", "evaluation")
MISTRAL = ollama_id("fake-mistral:7b")


def test_without_a_model_server_chat_searches_and_every_page_works(
    ui_app_env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    nowhere = unused_loopback_url()
    monkeypatch.setenv("OLLAMA_HOST", nowhere)
    app = ask(new_app().run(), LIGHTHOUSE_Q)
    no_exception(app)
    [banner] = [shown(w.value) for w in app.warning]
    # the address as code: it copies exactly (escaped text hides a character inside "://")
    assert banner.startswith(f"No model server is reachable (Ollama at `{nowhere}`); start ")
    assert "ollama serve" in banner and "OLLAMA_HOST or OPENAI_BASE_URL" in banner
    assert app.title[0].value == "Search"
    text = page_text(app)
    assert "[1] harbour/lighthouse.md" in text and "best first" in text and "score" not in text
    assert f"The Tarnwick lighthouse was {LIGHTHOUSE_A}" in text  # the passage, not an answer
    for page in PAGES:
        switch(app, page)
        no_exception(app)
        if page == "library":
            assert "harbour/lighthouse.md" in app.dataframe[0].value["document"].tolist()
        else:
            assert [shown(w.value) for w in app.warning] == [banner], page


def test_a_locked_store_is_one_sentence_and_the_app_recovers(ui_app_env: AppEnv) -> None:
    settings = ui_app_env.settings
    holder = QdrantClient(path=str(settings.qdrant_path))  # another "process" holds the store
    try:
        with pytest.raises(StoreLockedError) as locked:
            connect(settings, lock_wait_s=0)
        message = escape_markdown(str(locked.value))
        app = ask(new_app().run(), LIGHTHOUSE_Q)
        no_exception(app)
        assert [e.value for e in app.error] == [message]
        switch(app, "library")
        no_exception(app)
        assert [e.value for e in app.error] == [message]
    finally:
        holder.close()
    switch(app, "chat")
    ask(app, LIGHTHOUSE_Q)
    no_exception(app)
    last = app.chat_message[-1]
    assert not last.error and LIGHTHOUSE_A in last.markdown[0].value


def _servers_checked_again() -> None:
    """What the reachability cache's expiry does after REACHABILITY_TTL_S."""
    from ui import resources

    resources._reachability.clear()
    resources._model_ids.clear()


def test_a_question_asked_as_ollama_goes_down_and_comes_back_is_answered(
    ui_app_env: AppEnv, fake_ollama: FakeOllama
) -> None:
    app = new_app().run()
    assert app.title[0].value == "Chat"
    app.sidebar.selectbox[0].set_value(MISTRAL).run()  # not the first model listed
    fake_ollama.stop()
    _servers_checked_again()  # the mode switches on the run the question starts
    ask(app, LIGHTHOUSE_Q)
    no_exception(app)
    assert app.title[0].value == "Search"
    assert [m.markdown[0].value for m in app.chat_message[:1]] == [escape_markdown(LIGHTHOUSE_Q)]
    assert "[1] harbour/lighthouse.md" in page_text(app)  # searched: passages, no answer
    fake_ollama.start()
    _servers_checked_again()
    ask(app, LIGHTHOUSE_Q)
    no_exception(app)
    assert app.title[0].value == "Chat"
    assert len(app.chat_message) == 4
    assert LIGHTHOUSE_A in app.chat_message[3].markdown[0].value  # answered by the model
    # ... the model the user picked before the outage, not the first one listed
    assert app.sidebar.selectbox[0].value == MISTRAL
    assert app.session_state["chat_turns"][-1]["result"].model == MISTRAL


def test_a_question_asked_as_the_server_drops_out_unseen_is_one_sentence(
    ui_app_env: AppEnv, fake_ollama: FakeOllama
) -> None:
    app = new_app().run()
    fake_ollama.stop()  # the page still believes it is up (within REACHABILITY_TTL_S)
    ask(app, LIGHTHOUSE_Q)
    no_exception(app)
    [error] = [shown(e.value) for e in app.chat_message[1].error]
    assert "Ollama" in error and error.endswith(".") and "Traceback" not in error
