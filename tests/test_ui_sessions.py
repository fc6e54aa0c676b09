"""What belongs to one browser session (chat, model choice, comparison and its pending mark)
never shows in another: two AppTest instances are two sessions of one app process."""

from __future__ import annotations

from tests.ui_helpers import (
    LIGHTHOUSE_A,
    LIGHTHOUSE_Q,
    AppEnv,
    ask,
    compare,
    new_app,
    ollama_id,
    page_text,
    switch,
)

LLAMA, MISTRAL = ollama_id("fake-llama3:8b"), ollama_id("fake-mistral:7b")


def test_two_sessions_keep_their_own_chat_model_and_comparison(ui_app_env: AppEnv) -> None:
    alice, bob = new_app().run(), new_app().run()
    alice.sidebar.selectbox[0].set_value(MISTRAL).run()
    ask(alice, LIGHTHOUSE_Q)
    assert LIGHTHOUSE_A in page_text(alice)

    bob.run()
    assert len(bob.chat_message) == 0
    assert bob.sidebar.selectbox[0].value == LLAMA
    ask(bob, "When does the Orvel bakery open?")
    assert len(bob.chat_message) == 2  # only his own question and its answer
    assert bob.chat_message[0].markdown[0].value == "When does the Orvel bakery open\\?"
    assert "opens at six every morning" in bob.chat_message[1].markdown[0].value

    alice.run()
    assert alice.sidebar.selectbox[0].value == MISTRAL
    assert len(alice.chat_message) == 2
    assert "Orvel" not in alice.chat_message[0].markdown[0].value

    compare(switch(alice, "compare"), LIGHTHOUSE_Q, [LLAMA, MISTRAL])
    assert alice.radio  # alice has a comparison waiting for her mark
    switch(bob, "compare")
    assert not bob.radio and LIGHTHOUSE_A not in page_text(bob)
