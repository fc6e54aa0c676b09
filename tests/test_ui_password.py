"""With KB_APP_PASSWORD set, no page shows anything of the knowledge base before the password
was given in this browser session, and a second session stays locked."""

from __future__ import annotations

import pytest

from tests.ui_helpers import LIGHTHOUSE_A, LIGHTHOUSE_Q, AppEnv, ask, new_app, no_exception, switch

PAGES = ("chat", "compare", "library", "models", "evaluation")


def test_every_page_waits_for_the_password(
    ui_app_env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KB_APP_PASSWORD", "correct horse")
    app = new_app().run()
    no_exception(app)
    for page in PAGES:
        app.switch_page(f"views/{page}.py").run()
        no_exception(app)
        assert [t.label for t in app.text_input] == ["Password"], page
        assert not app.chat_input and not app.dataframe, page
        assert [t.value for t in app.title] == ["Knowledge base"], page  # the app's name only
    app.text_input[0].set_value("wrong")
    app.button[0].click().run()
    assert [e.value for e in app.error] == ["Wrong password."]
    app.text_input[0].set_value("correct horse")
    app.button[0].click().run()
    switch(app, "chat")
    ask(app, LIGHTHOUSE_Q)
    assert LIGHTHOUSE_A in app.chat_message[1].markdown[0].value
    other = new_app().run()
    assert [t.label for t in other.text_input] == ["Password"] and not other.chat_input
