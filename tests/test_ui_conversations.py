"""Saved conversations: one JSON file each, written atomically, listed, reopened after a reload
(the address names the open one), renamed, exported as Markdown and deleted; per user with
OIDC sign-in (tested at Streamlit's auth boundary: `AppTest.secrets` and `AppTest.user`)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest

from rag.chain import AnswerResult
from rag.citations import Citation
from rag.errors import KBError
from rag.retrieve import Passage
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
)
from ui.conversations import (
    Conversation,
    ConversationStore,
    as_markdown,
    export_file_name,
    owner_key,
    title_for,
)

AUTH = {
    "auth": {
        "redirect_uri": "http://127.0.0.1:8501/oauth2callback",
        "cookie_secret": "a-test-secret-that-is-long-enough",
        "client_id": "kb",
        "client_secret": "kb-secret",
        "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration",
    }
}
ISSUER = "http://127.0.0.1:9"


def saved_files(env: AppEnv, owner: str = "shared") -> list[Path]:
    folder = env.settings.data_dir / "conversations" / owner
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def conversation_buttons(app: Any) -> list[str]:
    """The saved conversations the sidebar lists, as a reader sees their names."""
    listed = re.compile(r"^conversation-[0-9a-f]{32}$")
    return [shown(b.label) for b in app.sidebar.button if b.key and listed.match(b.key)]


# -- the files ----------------------------------------------------------------------------------


def an_answer() -> AnswerResult:
    citation = Citation(1, "harbour/lighthouse.md", "harbour/lighthouse.md", "/d/lighthouse.md",
                        "Tarnwick lighthouse", None, [], "built in 1871")  # fmt: skip
    passages = [{"n": 1, "text": "built in 1871"}]
    return AnswerResult(LIGHTHOUSE_Q, LIGHTHOUSE_Q, "m@ollama", answer="It was built in 1871 [1].",
                        citations=[citation], passages=passages)  # fmt: skip


def test_a_conversation_is_written_atomically_and_read_back_whole(tmp_path: Path) -> None:
    store = ConversationStore(tmp_path, "shared")
    passage = Passage("d", "a.md", "/d/a.md", "A", ["H"], 2, [0, 1], 0, 9, "some text", 0.5)
    turns = [
        {"role": "user", "content": LIGHTHOUSE_Q},
        {"role": "assistant", "content": "It was built in 1871 [1].", "result": an_answer()},
        {"role": "search", "content": "q", "passages": [passage], "live": object()},
    ]
    conversation = Conversation("0" * 32, title_for(LIGHTHOUSE_Q), "t", "t", turns)
    store.save(conversation)
    assert [p.name for p in tmp_path.joinpath("conversations", "shared").iterdir()] == [
        "0" * 32 + ".json"
    ]  # no temporary file left beside it
    again = store.load("0" * 32)
    assert again is not None and again.turns[1]["result"] == an_answer()
    assert again.turns[2]["passages"] == [passage] and "live" not in again.turns[2]
    assert [s.title for s in store.listing().conversations] == [LIGHTHOUSE_Q]


def test_an_unreadable_file_is_counted_and_left_alone(tmp_path: Path) -> None:
    store = ConversationStore(tmp_path, "shared")
    store.save(Conversation("1" * 32, "kept", "t", "t", [{"role": "user", "content": "q"}]))
    broken = store.folder / ("2" * 32 + ".json")
    broken.write_text("{not json", encoding="utf-8")
    listing = store.listing()
    assert [s.title for s in listing.conversations] == ["kept"] and listing.unreadable == 1
    assert broken.read_text(encoding="utf-8") == "{not json"


def test_ids_that_could_name_another_file_are_refused(tmp_path: Path) -> None:
    store = ConversationStore(tmp_path, "shared")
    assert store.load("../../etc/passwd") is None
    with pytest.raises(KBError):
        store.delete("../x")
    with pytest.raises(KBError, match="cannot be empty"):
        store.rename("1" * 32, "   ")


def test_the_markdown_export_has_questions_answers_and_sources() -> None:
    conversation = Conversation("3" * 32, "Lighthouse: when?", "t", "2026-01-01T00:00:00+00:00", [
        {"role": "user", "content": LIGHTHOUSE_Q},
        {"role": "assistant", "content": "x", "result": an_answer()},
    ])  # fmt: skip
    text = as_markdown(conversation)
    assert text.startswith("# Lighthouse: when?\n")
    assert f"## Question\n\n{LIGHTHOUSE_Q}" in text
    assert "## Answer (m@ollama)\n\nIt was built in 1871 [1]." in text
    assert "- [1] harbour/lighthouse.md" in text
    assert export_file_name(conversation) == "Lighthouse-when.md"


def test_owners_are_told_apart_by_issuer_and_subject() -> None:
    assert owner_key(None, None) == "shared"
    assert owner_key(ISSUER, "alice") != owner_key(ISSUER, "bob")
    assert owner_key(ISSUER, "alice") != owner_key("http://other", "alice")


# -- the page -----------------------------------------------------------------------------------


def test_a_conversation_is_saved_listed_and_reopened_after_a_reload(ui_app_env: AppEnv) -> None:
    app = new_app().run()
    assert conversation_buttons(app) == []
    ask(app, LIGHTHOUSE_Q)
    no_exception(app)
    [saved] = saved_files(ui_app_env)
    data = json.loads(saved.read_text(encoding="utf-8"))
    assert data["title"] == LIGHTHOUSE_Q and [t["role"] for t in data["turns"]] == [
        "user", "assistant"
    ]  # fmt: skip
    assert app.query_params["c"] == saved.stem  # the address names it, not its content
    assert conversation_buttons(app) == [LIGHTHOUSE_Q]

    reloaded = new_app()  # a reload: a new session, with the address it had
    reloaded.query_params["c"] = saved.stem
    reloaded.run()
    no_exception(reloaded)
    assert reloaded.chat_message[0].markdown[0].value.replace("\\", "") == LIGHTHOUSE_Q
    assert LIGHTHOUSE_A in reloaded.chat_message[1].markdown[0].value
    assert reloaded.sidebar.selectbox[0].value == ollama_id("fake-llama3:8b")
    ask(reloaded, "And when was the lamp automated?")
    assert len(saved_files(ui_app_env)) == 1  # the same conversation, one turn longer
    turns = json.loads(saved.read_text(encoding="utf-8"))["turns"]
    assert len(turns) == 4


def test_a_conversation_whose_answer_was_stopped_is_saved_and_listed(
    ui_app_env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    import streamlit as st

    import ui.parallel

    streamed = ui.parallel.stream_side_by_side

    def stopped_after_the_first_words(*args: Any, **kwargs: Any) -> Any:
        lanes = streamed(*args, **kwargs)
        for lane, event in lanes:
            yield lane, event
            if isinstance(event, str):  # what a Stop click does: the script ends mid-stream
                lanes.close()
                st.stop()

    monkeypatch.setattr(ui.parallel, "stream_side_by_side", stopped_after_the_first_words)
    app = ask(new_app().run(), LIGHTHOUSE_Q)
    assert saved_files(ui_app_env) == []  # the run that streamed it ended before saving
    app.run()  # the run the Stop click starts
    no_exception(app)
    [saved] = saved_files(ui_app_env)
    turns = json.loads(saved.read_text(encoding="utf-8"))["turns"]
    assert [t["role"] for t in turns] == ["user", "stopped"] and turns[1]["content"]
    assert conversation_buttons(app) == [LIGHTHOUSE_Q]
    app.run()
    assert len(saved_files(ui_app_env)) == 1


def test_a_reopened_conversation_goes_on_with_the_model_that_answered_it(
    ui_app_env: AppEnv,
) -> None:
    mistral = ollama_id("fake-mistral:7b")  # not KB_MODEL, which a new session starts on
    app = new_app().run()
    app.sidebar.selectbox[0].set_value(mistral).run()
    ask(app, LIGHTHOUSE_Q)
    [saved] = saved_files(ui_app_env)

    reloaded = new_app()
    reloaded.query_params["c"] = saved.stem
    reloaded.run()
    no_exception(reloaded)
    assert reloaded.sidebar.selectbox[0].value == mistral
    assert new_app().run().sidebar.selectbox[0].value == ollama_id("fake-llama3:8b")


def test_new_reopen_rename_and_delete_from_the_sidebar(ui_app_env: AppEnv) -> None:
    app = new_app().run()
    ask(app, LIGHTHOUSE_Q)
    [first] = saved_files(ui_app_env)
    new = next(b for b in app.sidebar.button if b.label == "New conversation")
    new.click().run()
    assert not app.chat_message and "c" not in app.query_params
    ask(app, "When does the Orvel bakery open?")
    assert len(saved_files(ui_app_env)) == 2
    app.button(key=f"conversation-{first.stem}").click().run()
    assert app.chat_message[0].markdown[0].value.replace("\\", "") == LIGHTHOUSE_Q
    app.text_input(key=f"title-{first.stem}").set_value("Lighthouse")
    app.button(key="conversation-rename").click().run()
    no_exception(app)
    assert json.loads(first.read_text(encoding="utf-8"))["title"] == "Lighthouse"
    assert "Lighthouse" in conversation_buttons(app)
    assert not app.get("download_button")  # which Streamlit would serve at a /media address
    app.button(key="conversation-export").click().run()
    [frame] = [f.proto.srcdoc for f in app.get("iframe") if "atob(" in f.proto.srcdoc]
    encoded = re.search(r'atob\("([A-Za-z0-9+/=]*)"\)', frame)
    assert encoded is not None
    exported = base64.b64decode(encoded.group(1)).decode("utf-8")
    assert exported.startswith("# Lighthouse\n") and "built in 1871" in exported
    assert 'download="Lighthouse.md"' in frame
    app.button(key="conversation-delete").click().run()
    assert first.exists()  # asked first
    app.button(key="conversation-delete-confirm").click().run()
    no_exception(app)
    assert not first.exists() and len(saved_files(ui_app_env)) == 1
    assert not app.chat_message and conversation_buttons(app) == [
        "When does the Orvel bakery open?"
    ]


def test_an_address_naming_no_saved_conversation_says_so(ui_app_env: AppEnv) -> None:
    app = new_app()
    app.query_params["c"] = "f" * 32
    app.run()
    no_exception(app)
    assert "not among your saved conversations" in page_text(app)
    assert not app.chat_message


# -- sign-in (OIDC) at Streamlit's auth boundary ------------------------------------------------


def signed_in_app(subject: str | None) -> Any:
    app = new_app()
    app.secrets = AUTH
    app.user = (
        {"is_logged_in": True, "iss": ISSUER, "sub": subject, "name": subject.title()}
        if subject
        else {"is_logged_in": False}
    )
    return app


def test_with_oidc_configured_nothing_shows_before_sign_in(
    ui_app_env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    logins: list[tuple[Any, ...]] = []
    monkeypatch.setattr("streamlit.login", lambda *provider: logins.append(provider))
    app = signed_in_app(None).run()
    no_exception(app)
    assert [b.label for b in app.button] == ["Sign in"]
    assert not app.chat_input and [t.value for t in app.title] == ["Knowledge base"]
    app.button[0].click().run()
    assert logins == [()]  # handed to Streamlit's OIDC flow (the unnamed provider)


def test_each_signed_in_user_has_their_own_conversations(
    ui_app_env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = signed_in_app("alice").run()
    no_exception(alice)
    assert "Signed in as Alice" in page_text(alice)
    ask(alice, LIGHTHOUSE_Q)
    [saved] = saved_files(ui_app_env, owner_key(ISSUER, "alice"))
    assert saved_files(ui_app_env) == []  # not in the shared folder
    assert conversation_buttons(alice) == [LIGHTHOUSE_Q]
    assert "Only you see your conversations." in page_text(alice)
    bob = signed_in_app("bob")
    bob.query_params["c"] = saved.stem  # alice's address, opened by bob
    bob.run()
    assert conversation_buttons(bob) == [] and not bob.chat_message
    assert "not among your saved conversations" in page_text(bob)
    logouts: list[bool] = []
    monkeypatch.setattr("streamlit.logout", lambda: logouts.append(True))
    alice.button(key="sign-out").click().run()
    assert logouts == [True]
