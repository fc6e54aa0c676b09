"""The Chat page under AppTest, against the fake Ollama and a temp store with a tiny corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from eval.fake_ollama import FakeOllama
from rag.embeddings import Embedder
from tests.ui_helpers import (
    LIGHTHOUSE_A,
    LIGHTHOUSE_Q,
    AppEnv,
    ask,
    elements,
    ingest_corpus,
    new_app,
    no_exception,
    open_panels,
    page_text,
    shown,
    write_corpus,
)
from ui.answer_view import PARTIAL_MARK


def test_an_answer_streams_with_citations_sources_context_and_speed(
    ui_app_env: AppEnv, fake_ollama: FakeOllama
) -> None:
    app = open_panels(ask(new_app().run(), LIGHTHOUSE_Q))
    no_exception(app)
    text = page_text(app)
    # the [1] the model wrote links to its passage, shown first and marked
    assert f"{LIGHTHOUSE_A} from granite quarried on the island. [[1]](#kb-t1-1)" in text
    first = text.index('<div id="kb-t1-1"></div>\n**[1] harbour/lighthouse.md**')
    assert text.index("format_quote: cited by the model", first) < text.index("Other passages")
    # the others: file, heading, passage and relevance rank of every packed passage
    assert "[2] harbour/lighthouse.md — Keepers" in text
    assert "Three keepers lived in the lighthouse" in text
    assert "relevance: 1 of " in text and "score" not in text
    sent = fake_ollama.requests_to("/api/chat")[-1]
    [bar] = elements(app, "progress")
    window = f"window {sent.options['num_ctx']:,} tokens (the limit set by KB_CONTEXT_CAP)"
    assert window in bar.text
    [speed] = [shown(c.value) for c in app.caption if "first token" in c.value]
    assert speed.startswith("fake-llama3:8b · ollama · ")
    # counts the server reported are shown as they are, unmarked
    counts = f"prompt {sent.outcome['prompt_eval_count']:,} tokens, answer "
    assert counts in speed and "estimate" not in speed and "tokenizer" not in speed
    assert "tokens/s" in speed


def test_a_follow_up_sends_the_history(ui_app_env: AppEnv, fake_ollama: FakeOllama) -> None:
    app = ask(new_app().run(), LIGHTHOUSE_Q)
    ask(app, "How many keepers lived there?")
    no_exception(app)
    last = fake_ollama.requests_to("/api/chat")[-1].body or {}
    contents = [m["content"] for m in last["messages"]]
    assert LIGHTHOUSE_Q in contents
    assert any(LIGHTHOUSE_A in c for c in contents if not c.startswith("<passages"))
    assert "Three keepers lived in the lighthouse until the lamp was automated" in page_text(app)


def test_an_earlier_answer_shows_its_sources_and_links_on_demand(
    ui_app_env: AppEnv, fake_ollama: FakeOllama
) -> None:
    app = ask(new_app().run(), LIGHTHOUSE_Q)
    ask(app, "How many keepers lived there?")
    no_exception(app)
    # the first answer (turn 1) is now an earlier one: its text, unlinked, and a closed switch
    [switch] = app.toggle
    assert switch.label == "Sources and details (4 passages, 1 cited by the model)"
    text = page_text(app)
    assert f"{LIGHTHOUSE_A} from granite quarried on the island. [1]" in text
    assert "#kb-t1-" not in text and 'id="kb-t1-' not in text
    # the newest answer (turn 3) shows its sources at once
    assert 'id="kb-t3-1"' in text
    switch.set_value(True).run()
    text = page_text(app)
    assert f"{LIGHTHOUSE_A} from granite quarried on the island. [[1]](#kb-t1-1)" in text
    assert '<div id="kb-t1-1"></div>' in text
    assert text.index("[[1]](#kb-t1-1)") < text.index("Sources: 4 passages")


def test_clear_chat_empties_this_sessions_history(ui_app_env: AppEnv) -> None:
    app = ask(new_app().run(), LIGHTHOUSE_Q)
    assert len(app.chat_message) == 2
    app.sidebar.button[0].click().run()
    no_exception(app)
    assert len(app.chat_message) == 0
    assert LIGHTHOUSE_A not in page_text(app)


def test_a_broken_stream_keeps_the_partial_answer_and_marks_it(
    ui_app_env: AppEnv, fake_ollama: FakeOllama
) -> None:
    fake_ollama.fail_after_tokens = 4
    app = ask(new_app().run(), LIGHTHOUSE_Q)
    no_exception(app)
    assert "The Tarnwick lighthouse was" in page_text(app)
    [warning] = [shown(w.value) for w in app.warning if PARTIAL_MARK in w.value]
    assert "fake failure" in warning and ".." not in warning  # one full stop
    # the kept partial answer stays, marked, after the next rerun
    app.run()
    assert any(PARTIAL_MARK in w.value for w in app.warning)


def test_a_cut_prompt_shows_a_warning(
    ui_app_env: AppEnv, ui_embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A calibration claiming far more characters per token than the fake's tokenizer gives
    # makes the chain overfill a small window with a long log; the fake cuts the prompt
    # silently, as Ollama does, and the chain notices from prompt_eval_count.
    settings = ui_app_env.settings
    log = [
        f"Entry {n} of the Tarnwick lighthouse log: keeper {n % 3} lit the lamp at {n % 12} "
        f"o'clock, oil level {n * 7 % 100} gallons, wind force {n % 9}, sea state {n % 6}."
        for n in range(300)
    ]
    write_corpus(ui_app_env.docs, {"harbour/log.md": "# Log\n\n" + "\n\n".join(log)})
    ingest_corpus(settings, ui_app_env.docs, ui_embedder)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    calibration = {"fake-llama3:8b": {"chars_per_token": 8.0, "samples": 5}}
    (settings.data_dir / "calibration.json").write_text(json.dumps(calibration))
    monkeypatch.setenv("KB_CONTEXT_CAP", "1024")
    monkeypatch.setenv("KB_ANSWER_TOKENS", "32")
    app = ask(new_app().run(), LIGHTHOUSE_Q)
    no_exception(app)
    [warning] = [w.value for w in app.warning]
    assert "The model server (ollama) cut the prompt to fit the model's 1,024-token window" in (
        shown(warning)
    )


def _answer_with_notice() -> None:
    from rag.chain import AnswerResult
    from rag.settings import Settings
    from ui.answer_view import answer_details

    result = AnswerResult(
        question="q", search_query="q", model="smollm2@gpu-box", server="gpu-box",
        answer="a", window=2048, window_source="learned", context_tokens=900,
        prompt_tokens=1500, output_tokens=40, counted_by="estimate", repacked=True,
        notice="The server rejected the prompt as too long for its 2,048-token window; kb "
        "packed fewer passages and asked again.",
    )  # fmt: skip
    answer_details(result, Settings(context_cap=8192))


def test_a_notice_and_estimated_counts_are_shown_in_plain_words() -> None:
    app = AppTest.from_function(_answer_with_notice, default_timeout=30).run()
    no_exception(app)
    assert [shown(i.value) for i in app.info] == [
        "The server rejected the prompt as too long for its 2,048-token window; kb packed fewer "
        "passages and asked again."
    ]
    [bar] = elements(app, "progress")
    assert bar.text == (
        "Context: passages 900 tokens · window 2,048 tokens (learned from the server's too-long "
        "error)"
    )
    speed = shown(app.caption[0].value)
    assert speed.startswith(
        "smollm2 · gpu-box · prompt 1,500 tokens, answer 40 tokens (kb's estimate) · "
    )


def _answer_with_attributed_citations() -> None:
    from rag.chain import AnswerResult
    from rag.citations import cite
    from rag.context import PackedContext
    from rag.retrieve import Passage
    from rag.settings import Settings
    from ui.answer_view import answer_details

    texts = {"harbour.md": "The harbour master of Lisvik is Oda Brekke.", "radio.md": "Radio."}
    passages = [
        Passage(path, path, f"/{path}", path, [], None, [0], 0, len(text), text, 0.5)
        for path, text in texts.items()
    ]
    answer = "The harbour master is Oda Brekke. The pier was painted red in 1950."
    result = AnswerResult(question="Who is the harbour master?", search_query="q", model="m@s",
                          answer=answer, window=2048, context_tokens=100)  # fmt: skip
    result.passages = [
        {"n": n, "path": p.path, "headings": [], "score": 0.5, "text": p.text}
        for n, p in enumerate(passages, 1)
    ]
    cited = cite(answer, PackedContext(passages, "", 10, False), result.question)
    result.citations, result.uncited_sentences = cited.citations, cited.uncited_sentences
    answer_details(result, Settings(context_cap=8192))


def test_attributed_citations_and_uncited_sentences_are_shown_apart() -> None:
    app = AppTest.from_function(_answer_with_attributed_citations, default_timeout=30).run()
    app = open_panels(app)
    no_exception(app)
    captions = [shown(c.value) for c in app.caption]
    assert (
        'kb attributed "The harbour master is Oda Brekke." to [1] harbour.md (the model did '
        "not cite it)"
    ) in captions
    assert 'No passage supports "The pier was painted red in 1950.": it is uncited.' in captions
    assert "Sources: 2 passages, 0 cited by the model, 1 attributed by kb" in captions
    [panel] = [e for e in app.expander]
    assert panel.label == "Other passages the model was given (1), not cited"
    text = page_text(app)
    # the attributed passage is shown first, outside the panel, with a mark of its own
    assert text.index("**[1] harbour.md**") < text.index(":material/link: attributed by kb")
    assert text.index(":material/link: attributed by kb") < text.index("[2] radio.md")
    assert "cited by the model" not in text.replace("0 cited by the model", "")


def test_a_first_visit_to_an_empty_store_says_how_to_add_documents(
    ui_app_env: AppEnv, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KB_QDRANT_PATH", str(tmp_path / "empty-store"))
    app = new_app().run()
    no_exception(app)
    [info] = [shown(i.value) for i in app.info]
    assert info.startswith("The knowledge base is empty. Add documents in the Library")
    assert "`python -m ingest ./docs`" in info  # a command, as code
    [link] = elements(app, "page_link")
    assert link.proto.page == "library" or "library" in str(link.proto)
    ask(app, LIGHTHOUSE_Q)  # asked anyway: one sentence with its command as code, and the link
    no_exception(app)
    [error] = app.chat_message[1].error
    assert "`python -m ingest ./docs`" in error.value and "\\`" not in error.value
    assert len(elements(app, "page_link")) == 1


def test_a_stopped_answer_keeps_what_arrived_and_says_so(ui_app_env: AppEnv) -> None:
    from ui.views.chat import STOPPED, TURNS

    app = new_app()
    app.session_state[TURNS] = [
        {"role": "user", "content": LIGHTHOUSE_Q},
        {"role": STOPPED, "content": "The Tarnwick lighthouse was"},
    ]
    app.run()
    no_exception(app)
    assert "The Tarnwick lighthouse was" in page_text(app)
    assert "Stopped before the answer was finished" in page_text(app)


def test_an_answer_is_kept_and_saved_when_the_run_ends_while_its_details_are_drawn(
    ui_app_env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The next question asked at once (or any click) ends the script where it is; an answer
    whose text has come is kept and saved even if that happens while its sources are drawn."""
    import streamlit as st

    import ui.answer_view
    from ui.views.chat import TURNS

    drawn = ui.answer_view.answer_details

    def ended_while_drawing_the_second_answer(*args: object, **kwargs: object) -> None:
        if kwargs.get("key") == "t3":  # the second answer's details (turns: q, a, q, a)
            st.stop()
        drawn(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ui.answer_view, "answer_details", ended_while_drawing_the_second_answer)
    app = ask(new_app().run(), LIGHTHOUSE_Q)
    ask(app, "When does the Orvel bakery open?")
    no_exception(app)
    roles = [turn["role"] for turn in app.session_state[TURNS]]
    assert roles == ["user", "assistant", "user", "assistant"]
    folder = ui_app_env.settings.data_dir / "conversations" / "shared"
    [saved] = folder.glob("*.json")
    turns = json.loads(saved.read_text(encoding="utf-8"))["turns"]
    assert [turn["role"] for turn in turns] == roles
