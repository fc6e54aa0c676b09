"""The Compare page: one question to several models side by side, marks and win rates."""

from __future__ import annotations

import json

from streamlit.testing.v1 import AppTest

from tests.fake_ollama import FakeOllama
from tests.ui_helpers import (
    LIGHTHOUSE_A,
    LIGHTHOUSE_Q,
    AppEnv,
    compare,
    new_app,
    no_exception,
    shown,
    switch,
)

MODELS = ["fake-llama3:8b", "fake-mistral:7b", "fake-qwen2:7b"]


def column_texts(app: AppTest) -> list[str]:
    return ["\n".join(str(m.value) for m in column.markdown) for column in app.columns]


def test_three_models_answer_side_by_side(ui_app_env: AppEnv, fake_ollama: FakeOllama) -> None:
    app = compare(switch(new_app(), "compare"), LIGHTHOUSE_Q, MODELS)
    asked = {r.body["model"] for r in fake_ollama.requests_to("/api/chat") if r.body}
    assert asked == set(MODELS)
    texts = column_texts(app)
    assert len(texts) == len(MODELS)
    assert all(LIGHTHOUSE_A in text and "\\[1\\]" in text for text in texts)
    assert [shown(h.value) for h in app.subheader[: len(MODELS)]] == MODELS
    captions = [shown(c.value) for c in app.caption]
    assert sum("first token" in c and "tokens/s" in c for c in captions) == len(MODELS)
    assert len(app.get("progress")) == len(MODELS)  # context used, one bar per column


def test_a_mark_is_appended_and_counted(ui_app_env: AppEnv) -> None:
    app = compare(switch(new_app(), "compare"), LIGHTHOUSE_Q, MODELS[:2])
    app.radio[0].set_value(MODELS[1])
    app.button(key="FormSubmitter:mark-Save mark").click().run()
    no_exception(app)
    marks_file = ui_app_env.settings.data_dir / "marks.jsonl"
    [line] = marks_file.read_text(encoding="utf-8").splitlines()
    mark = json.loads(line)
    assert mark["question"] == LIGHTHOUSE_Q
    assert mark["models"] == MODELS[:2] and mark["winner"] == MODELS[1]
    assert any("Marked" in s.value for s in app.success)
    assert not app.radio  # one mark per comparison
    table = app.dataframe[0].value
    rates = dict(zip(table["model"], table["win rate"], strict=True))
    assert rates == {MODELS[1]: "100%", MODELS[0]: "0%"}
    # the comparison and its mark are still shown after another rerun
    app.run()
    assert any("Marked" in s.value for s in app.success)
    assert all(LIGHTHOUSE_A in text for text in column_texts(app))


def test_models_that_fail_show_their_error_in_their_column(
    ui_app_env: AppEnv, fake_ollama: FakeOllama
) -> None:
    fake_ollama.fail_after_tokens = 0
    app = compare(switch(new_app(), "compare"), LIGHTHOUSE_Q, MODELS[:2])
    errors = [e for column in app.columns for e in column.error]
    assert len(errors) == 2
    assert all("Ollama at" in e.value and "fake failure" in e.value for e in errors)
