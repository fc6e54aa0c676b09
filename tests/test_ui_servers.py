"""The app over two model servers at once: the fake Ollama (HTTP, server `ollama`) and the
in-process fake model (server `fake`), registered with the app's composition root. Pickers list
every model of both, marked with its server; Compare lanes run on different servers; a server
that is down gets a quiet note while the other keeps answering."""

from __future__ import annotations

import pytest

from eval.fake_ollama import FakeOllama
from tests.fake_model import FakeBackend
from tests.ui_helpers import (
    LIGHTHOUSE_A,
    LIGHTHOUSE_Q,
    AppEnv,
    add_model_server,
    ask,
    compare,
    label,
    new_app,
    no_exception,
    ollama_id,
    page_text,
    shown,
    switch,
)
from ui.plain import escape_markdown

# KB_MODEL and KB_MODELS first, then the rest of Ollama's models, then the fake server's.
CHOICES = [
    ollama_id("fake-llama3:8b"),
    ollama_id("fake-mistral:7b"),
    ollama_id("fake-qwen2:7b"),
    ollama_id("fake-broken:1b"),
    ollama_id("fake-tiny:1b"),
    "fake-echo@fake",
    "fake-small@fake",
]


@pytest.fixture
def fake_server(ui_app_env: AppEnv, monkeypatch: pytest.MonkeyPatch) -> FakeBackend:
    backend = FakeBackend()
    add_model_server(monkeypatch, backend)
    return backend


def test_chat_and_compare_pickers_list_the_models_of_both_servers(
    fake_server: FakeBackend, fake_ollama: FakeOllama
) -> None:
    app = new_app().run()
    no_exception(app)
    [picker] = app.sidebar.selectbox
    assert picker.options == [label(model) for model in CHOICES]
    assert picker.value == CHOICES[0]
    assert "fake-echo · fake" in picker.options and "fake-llama3:8b · ollama" in picker.options
    picker.set_value("fake-echo@fake").run()
    ask(app, LIGHTHOUSE_Q)
    no_exception(app)
    assert [call.model for call in fake_server.calls] == ["fake-echo"]
    assert not fake_ollama.requests_to("/api/chat")  # Ollama was not asked
    assert f"{LIGHTHOUSE_A} from granite quarried on the island. [[1]](#kb-t1-1)" in page_text(app)

    switch(app, "compare")
    no_exception(app)
    [lanes] = app.multiselect
    assert lanes.options == [label(model) for model in CHOICES]
    assert lanes.value == CHOICES[:2]
    compare(app, LIGHTHOUSE_Q, [ollama_id("fake-llama3:8b"), "fake-echo@fake"])
    assert [call.model for call in fake_server.calls] == ["fake-echo", "fake-echo"]
    asked = [r.body["model"] for r in fake_ollama.requests_to("/api/chat") if r.body]
    assert asked == ["fake-llama3:8b"]
    headings = [shown(h.value) for h in app.subheader[:2]]
    assert headings == ["fake-llama3:8b · ollama", "fake-echo · fake"]
    columns = ["\n".join(str(m.value) for m in column.markdown) for column in app.columns[:2]]
    assert all(LIGHTHOUSE_A in text for text in columns)


def test_a_kb_model_no_server_offers_is_said_under_the_picker(
    ui_app_env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KB_MODEL", "llama3.2")  # the default, not pulled
    app = new_app().run()
    no_exception(app)
    assert app.sidebar.selectbox[0].value == ollama_id("fake-llama3:8b")  # KB_MODELS' first
    [note] = [shown(c.value) for c in app.sidebar.caption if "KB_MODEL" in shown(c.value)]
    assert note.startswith("KB_MODEL (llama3.2) is not offered by any reachable server")
    assert "`ollama pull llama3.2`" in note
    monkeypatch.setenv("KB_MODEL", "fake-mistral:7b")
    assert not [c for c in new_app().run().sidebar.caption if "KB_MODEL" in shown(c.value)]


def test_an_old_bare_name_in_the_session_selects_its_model(fake_server: FakeBackend) -> None:
    app = new_app()
    app.session_state["chat_model"] = "fake-small"  # what a session held before model ids
    app.session_state["compare_models"] = ["fake-mistral:7b", "fake-echo", "gone:1b"]
    app.run()
    no_exception(app)
    assert app.sidebar.selectbox[0].value == "fake-small@fake"
    switch(app, "compare")
    assert app.multiselect[0].value == [ollama_id("fake-mistral:7b"), "fake-echo@fake"]


def test_with_ollama_down_the_other_server_answers_under_a_quiet_note(
    fake_server: FakeBackend, fake_ollama: FakeOllama
) -> None:
    fake_ollama.stop()
    app = new_app().run()
    no_exception(app)
    assert not app.warning  # some server answers: no banner
    [note] = [shown(c.value) for c in app.caption if "Not reachable" in c.value]
    assert note == (
        f"Not reachable now: Ollama at `{fake_ollama.url}`; their models are left out until they "
        "answer."
    )
    assert app.title[0].value == "Chat"
    assert app.sidebar.selectbox[0].options == ["fake-echo · fake", "fake-small · fake"]
    ask(app, LIGHTHOUSE_Q)
    no_exception(app)
    assert LIGHTHOUSE_A in app.chat_message[1].markdown[0].value


def test_the_models_page_shows_each_models_server_and_window(fake_server: FakeBackend) -> None:
    app = switch(new_app(), "models")
    no_exception(app)
    rows = {row["model"]: row for row in app.dataframe[0].value.to_dict("records")}
    assert rows["fake-llama3:8b"]["server"] == "ollama" and rows["fake-llama3:8b"]["default"]
    small = rows["fake-small"]
    assert (small["server"], small["available"], small["default"]) == ("fake", True, False)
    assert (small["window"], small["window from"]) == (1024, "as the server states it")
    echo = rows["fake-echo"]  # a window at the cap, not lowered by it
    assert (echo["window"], echo["window from"]) == (8192, "as the server states it")


def test_a_question_asked_as_one_of_two_servers_drops_out_is_answered(
    fake_server: FakeBackend, fake_ollama: FakeOllama
) -> None:
    from ui import resources

    app = new_app().run()
    assert app.sidebar.selectbox[0].value == ollama_id("fake-llama3:8b")
    fake_ollama.stop()
    resources._reachability.clear()  # what the reachability cache's expiry does
    resources._model_ids.clear()
    ask(app, LIGHTHOUSE_Q)
    no_exception(app)
    assert app.chat_message[0].markdown[0].value == escape_markdown(LIGHTHOUSE_Q)  # kept
    assert fake_server.calls and fake_server.calls[-1].model == "fake-echo"  # the other answers
    assert LIGHTHOUSE_A in app.chat_message[1].markdown[0].value
