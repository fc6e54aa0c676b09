"""Compare: one question to 2-4 models side by side, in parallel (each may be on another
server); the user marks the better answer and the marks add up to a win rate per model."""

from __future__ import annotations

import time
from contextlib import closing
from typing import Any

import streamlit as st

from rag.chain import AnswerResult
from rag.errors import KBError
from rag.settings import Settings
from ui.answer_view import answer_details, show_answer
from ui.marks import TIE, append_mark, marks_by_id, marks_path, read_marks, win_rates
from ui.models_choice import (
    kept_choices,
    model_choices,
    model_label,
    pull_hint,
    split_model_id,
)
from ui.parallel import WAITING, stream_side_by_side
from ui.plain import escape_markdown, show_error
from ui.resources import listed_models, models_reachable, page_start, ready_services

RUN = "compare_run"  # this session's last comparison: question, models, results, mark
MODELS = "compare_models"  # the picker's key: model ids (older sessions: bare names)
# The same choice where the picker cannot drop it: Streamlit forgets a widget's key after a run
# that does not draw it (another page, or no server answering).
CHOSEN = "compare_models_chosen"
MIN_MODELS, MAX_MODELS = 2, 4
TICK_S = 0.25  # how often the page redraws while the models read (and so sees a Stop)
WAITING_WORDS = "Finding passages and asking the model… {:.0f} s"


def ask_form(choices: list[str]) -> tuple[str, list[str]] | None:
    # keep this session's choice (old bare names as their ids), less models no server offers
    earlier = st.session_state.get(MODELS) or st.session_state.get(CHOSEN, choices[:MIN_MODELS])
    st.session_state[MODELS] = st.session_state[CHOSEN] = kept_choices(earlier, choices)
    with st.form("compare"):
        question = st.text_area("Question", height=80)
        models = st.multiselect(
            "Models (2 to 4)",
            choices,
            key=MODELS,
            max_selections=MAX_MODELS,
            format_func=model_label,
        )
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
    stop = st.empty()
    stop.button("Stop", key="compare_stop", icon=":material/stop_circle:")
    columns = st.columns(len(models))
    boxes, details, texts = [], [], ["" for _ in models]
    for column, model in zip(columns, models, strict=True):
        column.subheader(escape_markdown(model_label(model)))
        boxes.append(column.empty())
        boxes[-1].caption(WAITING_WORDS.format(0))
        # drawn empty at once over the last comparison's sources in this column, which would
        # otherwise stay on the page, stale and clickable, until this one ends
        details.append(column.empty())
    results: dict[str, AnswerResult | str] = {}
    open_chain = ready_services(settings).open_chain
    # A Stop click ends this script at the next redraw; leaving the loop closes the lanes,
    # and each lane's request to its model server with it.
    started = time.monotonic()
    lanes = stream_side_by_side(open_chain, question, models, tick_s=TICK_S)
    with closing(lanes):
        for lane, event in lanes:
            if event is WAITING:
                waited = time.monotonic() - started
                for box, text in zip(boxes, texts, strict=True):
                    if not text:
                        box.caption(WAITING_WORDS.format(waited))
            elif isinstance(event, str):
                texts[lane] += event
                boxes[lane].markdown(escape_markdown(texts[lane]))
            elif isinstance(event, AnswerResult):
                results[models[lane]] = event
            else:
                results[models[lane]] = str(event)
    stop.empty()
    for place, model in zip(details, models, strict=True):
        with place.container():
            show_outcome(results[model], settings, streamed=True, key=f"c{lane_key(model)}")
    return {"question": question, "models": models, "results": results, "mark": None}


def lane_key(model: str) -> str:
    """Letters and digits from a model id, for its answer's anchors and buttons."""
    return "".join(c if c.isalnum() else "-" for c in model)


def show_outcome(
    outcome: AnswerResult | str, settings: Settings, streamed: bool = False, key: str = ""
) -> None:
    if isinstance(outcome, str):
        show_error(KBError(outcome))
    elif streamed:
        answer_details(outcome, settings, key)
    else:
        show_answer(outcome, settings, key)


def show_run(run: dict[str, Any], settings: Settings) -> None:
    st.markdown("**Question:** " + escape_markdown(run["question"]))
    columns = st.columns(len(run["models"]))
    for column, model in zip(columns, run["models"], strict=True):
        with column:
            st.subheader(escape_markdown(model_label(model)))
            show_outcome(run["results"][model], settings, key=f"c{lane_key(model)}")


def mark_form(settings: Settings, run: dict[str, Any]) -> None:
    if run["mark"] is not None:
        shown = "a tie" if run["mark"] == TIE else model_label(run["mark"])
        st.success(f"Marked: {escape_markdown(shown)}.")
        return
    options = [*run["models"], TIE]
    with st.form("mark"):
        winner = st.radio(
            "Which answer is better?",
            options,
            horizontal=True,
            index=None,
            format_func=lambda option: "a tie" if option == TIE else model_label(option),
        )
        saved = st.form_submit_button("Save mark")
    if saved and winner is not None:
        append_mark(marks_path(settings.data_dir), run["question"], run["models"], winner)
        run["mark"] = winner
        st.rerun()


def win_rate_table(settings: Settings) -> None:
    """Win rates from every mark; marks saved under bare names count for the listed model
    they name when exactly one does (else under the name as saved)."""
    st.subheader("Win rates")
    marks = marks_by_id(read_marks(marks_path(settings.data_dir)), listed_models(settings))
    rates = win_rates(marks)
    if not rates:
        st.caption("No answer has been marked yet.")
        return
    st.dataframe(
        [
            {
                "model": split_model_id(r.model)[0],
                "server": split_model_id(r.model)[1] or "(not recorded)",
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
    settings = page_start(needs_models=True)
    st.title("Compare models")
    if not models_reachable(settings):
        st.info("Comparing needs a model server; see above.")
        win_rate_table(settings)
        return
    listed = listed_models(settings)
    choices = model_choices(settings, listed)
    if len(choices) < MIN_MODELS:
        st.info(
            "A comparison needs at least two models; pull another with "
            f"`ollama pull {pull_hint(settings, listed)}`, or start an OpenAI-compatible "
            "server (OPENAI_BASE_URL)."
        )
    else:
        asked = ask_form(choices)
        if asked is not None:
            st.session_state[RUN] = run_comparison(settings, *asked)
        elif RUN in st.session_state:
            show_run(st.session_state[RUN], settings)
        if RUN in st.session_state:
            mark_form(settings, st.session_state[RUN])
    win_rate_table(settings)


if __name__ == "__main__":
    main()
