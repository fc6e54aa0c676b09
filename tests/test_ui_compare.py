"""The Compare page: one question to several models side by side, marks and win rates."""

from __future__ import annotations

import json

from streamlit.testing.v1 import AppTest

from eval.fake_ollama import FakeOllama
from tests.ui_helpers import (
    LIGHTHOUSE_A,
    LIGHTHOUSE_Q,
    AppEnv,
    compare,
    label,
    new_app,
    no_exception,
    ollama_id,
    shown,
    switch,
)

NAMES = ["fake-llama3:8b", "fake-mistral:7b", "fake-qwen2:7b"]
MODELS = [ollama_id(name) for name in NAMES]


def column_texts(app: AppTest) -> list[str]:
    return ["\n".join(str(m.value) for m in column.markdown) for column in app.columns]


def test_three_models_answer_side_by_side(ui_app_env: AppEnv, fake_ollama: FakeOllama) -> None:
    app = compare(switch(new_app(), "compare"), LIGHTHOUSE_Q, MODELS)
    asked = {r.body["model"] for r in fake_ollama.requests_to("/api/chat") if r.body}
    assert asked == set(NAMES)
    texts = column_texts(app)
    assert len(texts) == len(MODELS)
    assert all(LIGHTHOUSE_A in text and "\\[1\\]" in text for text in texts)
    assert [shown(h.value) for h in app.subheader[: len(MODELS)]] == [
        f"{name} · ollama" for name in NAMES
    ]
    captions = [shown(c.value) for c in app.caption]
    assert sum("first token" in c and "tokens/s" in c for c in captions) == len(MODELS)
    assert len(app.get("progress")) == len(MODELS)  # context used, one bar per column


def test_the_models_chosen_stay_chosen_after_a_visit_to_another_page(ui_app_env: AppEnv) -> None:
    app = compare(switch(new_app(), "compare"), LIGHTHOUSE_Q, MODELS[1:])  # not the first two
    switch(app, "chat")
    switch(app, "compare")
    no_exception(app)
    assert app.multiselect[0].value == MODELS[1:]


def test_a_mark_is_appended_and_counted(ui_app_env: AppEnv) -> None:
    app = compare(switch(new_app(), "compare"), LIGHTHOUSE_Q, MODELS[:2])
    assert app.radio[0].options == [label(MODELS[0]), label(MODELS[1]), "a tie"]
    app.radio[0].set_value(MODELS[1])
    app.button(key="FormSubmitter:mark-Save mark").click().run()
    no_exception(app)
    marks_file = ui_app_env.settings.data_dir / "marks.jsonl"
    [line] = marks_file.read_text(encoding="utf-8").splitlines()
    mark = json.loads(line)
    assert mark["question"] == LIGHTHOUSE_Q
    assert mark["models"] == MODELS[:2] and mark["winner"] == MODELS[1]
    assert any(shown(s.value) == f"Marked: {label(MODELS[1])}." for s in app.success)
    assert not app.radio  # one mark per comparison
    table = app.dataframe[0].value
    rows = table.to_dict("records")
    rates = {(row["model"], row["server"]): row["win rate"] for row in rows}
    assert rates == {(NAMES[1], "ollama"): "100%", (NAMES[0], "ollama"): "0%"}
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


def test_marks_saved_under_bare_names_count_for_the_model_they_name(ui_app_env: AppEnv) -> None:
    marks_file = ui_app_env.settings.data_dir / "marks.jsonl"
    marks_file.parent.mkdir(parents=True, exist_ok=True)
    old = [
        {"question": "q1", "models": NAMES[:2], "winner": NAMES[0]},
        {"question": "q2", "models": ["fake-llama3:8b", "gone:1b"], "winner": "tie"},
        {"question": "q3", "models": [MODELS[0], MODELS[1]], "winner": MODELS[1]},
    ]  # fmt: skip
    marks_file.write_text("".join(json.dumps(m) + "\n" for m in old), encoding="utf-8")
    app = switch(new_app(), "compare")
    no_exception(app)
    rows = app.dataframe[0].value.to_dict("records")
    by_model = {(r["model"], r["server"]): (r["wins"], r["ties"], r["compared"]) for r in rows}
    assert by_model == {
        (NAMES[0], "ollama"): (1, 1, 3),  # the bare-name marks and the id mark, together
        (NAMES[1], "ollama"): (1, 0, 2),
        ("gone:1b", "(not recorded)"): (0, 1, 1),  # on no server now: shown by its name
    }
