"""Compare: one question to 2-4 models side by side, in parallel; the user marks the better
answer and the marks add up to a win rate per model."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import streamlit as st

from rag.chain import AnswerResult, Chain
from rag.errors import KBError
from rag.settings import Settings
from ui.answer_view import answer_details, show_answer
from ui.marks import TIE, append_mark, marks_path, read_marks, win_rates
from ui.models_choice import model_choices
from ui.parallel import stream_side_by_side
from ui.plain import escape_markdown, show_error
from ui.resources import (
    get_embedder,
    get_gateway,
    ollama_reachable,
    page_start,
    pulled_models,
    store_in_use,
)

RUN = "compare_run"  # this session's last comparison: question, models, results, mark
MODELS = "compare_models"
MIN_MODELS, MAX_MODELS = 2, 4


def chain_opener(settings: Settings) -> Any:
    @contextmanager
    def open_chain() -> Iterator[Chain]:
        with store_in_use(settings) as store:
            yield Chain(settings, store, get_embedder(settings), get_gateway(settings))

    return open_chain


def ask_form(settings: Settings, choices: list[str]) -> tuple[str, list[str]] | None:
    # keep this session's choice, less any model Ollama no longer has
    kept = [m for m in st.session_state.get(MODELS, choices[:MIN_MODELS]) if m in choices]
    st.session_state[MODELS] = kept
    with st.form("compare"):
        question = st.text_area("Question", height=80)
        models = st.multiselect("Models (2 to 4)", choices, key=MODELS, max_selections=MAX_MODELS)
        submitted = st.form_submit_button("Compare")
    if not submitted:
        return None
    if not question.strip():
        st.warning("Type a question first.")
        return None
    if not MIN_MODELS <= len(models) <= MAX_MODELS:
        st.warning("Choose between 2 and 4 models.")
        return None
    return question.strip(), models


def run_comparison(settings: Settings, question: str, models: list[str]) -> dict[str, Any]:
    """Stream every model's answer into its column; the results, by model."""
    columns = st.columns(len(models))
    boxes, texts = [], ["" for _ in models]
    for column, model in zip(columns, models, strict=True):
        column.subheader(escape_markdown(model))
        boxes.append(column.empty())
    results: dict[str, AnswerResult | str] = {}
    for lane, event in stream_side_by_side(chain_opener(settings), question, models):
        if isinstance(event, str):
            texts[lane] += event
            boxes[lane].markdown(escape_markdown(texts[lane]))
        elif isinstance(event, AnswerResult):
            results[models[lane]] = event
        else:
            results[models[lane]] = str(event)
    for column, model in zip(columns, models, strict=True):
        with column:
            show_outcome(results[model], streamed=True)
    return {"question": question, "models": models, "results": results, "mark": None}


def show_outcome(outcome: AnswerResult | str, streamed: bool = False) -> None:
    if isinstance(outcome, str):
        show_error(KBError(outcome))
    elif streamed:
        answer_details(outcome)
    else:
        show_answer(outcome)


def show_run(run: dict[str, Any]) -> None:
    st.markdown("**Question:** " + escape_markdown(run["question"]))
    columns = st.columns(len(run["models"]))
    for column, model in zip(columns, run["models"], strict=True):
        with column:
            st.subheader(escape_markdown(model))
            show_outcome(run["results"][model])


def mark_form(settings: Settings, run: dict[str, Any]) -> None:
    if run["mark"] is not None:
        shown = "a tie" if run["mark"] == TIE else run["mark"]
        st.success(f"Marked: {escape_markdown(shown)}.")
        return
    options = [*run["models"], TIE]
    with st.form("mark"):
        winner = st.radio("Which answer is better?", options, horizontal=True, index=None)
        saved = st.form_submit_button("Save mark")
    if saved and winner is not None:
        append_mark(marks_path(settings.data_dir), run["question"], run["models"], winner)
        run["mark"] = winner
        st.rerun()


def win_rate_table(settings: Settings) -> None:
    st.subheader("Win rates")
    rates = win_rates(read_marks(marks_path(settings.data_dir)))
    if not rates:
        st.caption("No answer has been marked yet.")
        return
    st.dataframe(
        [
            {
                "model": r.model,
                "win rate": f"{r.rate:.0%}",
                "wins": r.wins,
                "ties": r.ties,
                "compared": r.compared,
            }
            for r in rates
        ],
        hide_index=True,
    )
    st.caption("A tie counts as half a win for each model.")


def main() -> None:
    settings = page_start(needs_ollama=True)
    st.title("Compare models")
    if not ollama_reachable(settings):
        st.info("Comparing needs Ollama; see above.")
        win_rate_table(settings)
        return
    choices = model_choices(settings, pulled_models(settings))
    if len(choices) < MIN_MODELS:
        st.info("Ollama needs at least two models for a comparison; pull another one.")
    else:
        asked = ask_form(settings, choices)
        if asked is not None:
            st.session_state[RUN] = run_comparison(settings, *asked)
        elif RUN in st.session_state:
            show_run(st.session_state[RUN])
        if RUN in st.session_state:
            mark_form(settings, st.session_state[RUN])
    win_rate_table(settings)


if __name__ == "__main__":
    main()
