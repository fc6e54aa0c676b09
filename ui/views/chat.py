"""Chat: questions answered from the knowledge base, streamed, with their sources.

Without a reachable model server the page answers with retrieval alone: the best passages and
their sources. Hot path (Enter to first token): cached settings and `Services` (store, embedder,
model servers), the chat history from the session, then `Chain.stream`; nothing here lists
documents or reloads anything. Enter to the first sign of an answer: only the title and the chat
box are drawn before it; the sidebar and the conversation so far come after
(`python -m tests.bench_ui_first_sign` measures it).
"""

from __future__ import annotations

import itertools
import time
from contextlib import closing
from typing import Any

import streamlit as st

from rag.chain import AnswerResult
from rag.errors import EmptyKnowledgeBaseError, KBError
from rag.settings import Settings
from ui.answer_view import (
    answer_details,
    linked_answer,
    show_answer,
    show_earlier_answer,
    show_search_results,
)
from ui.conversation_panel import conversation_panel, reopen_from_address, save_conversation
from ui.models_choice import (
    find_model,
    kept_choice,
    model_choices,
    model_label,
    no_model_message,
    split_model_id,
)
from ui.parallel import WAITING, stream_side_by_side
from ui.plain import escape_markdown, message_markdown, show_error, show_text
from ui.resources import (
    get_services,
    listed_models,
    models_reachable,
    page_start,
    ready_services,
)

TURNS = "chat_turns"  # this session's conversation: list of turn dicts
MODEL = "chat_model"  # the picker's key: a model id (older sessions: a bare name)
# The same choice where the picker cannot drop it: Streamlit forgets a widget's key after a run
# that does not draw it (any run while no server answers), and the choice came back as the
# first model offered.
CHOICE = "chat_model_choice"
# The chat input's key. Its label changes with the mode (answers or search alone); without a
# key of its own, that change gave it a new identity and a question typed meanwhile was lost.
QUESTION = "chat_question"
STOP = "chat_stop"
STOPPED = "stopped"  # the role of an answer cut short: its text so far, kept as it streams
UNSAVED_STOP = "chat_unsaved_stop"  # the `stopped` turn of the answer streaming now
TICK_S = 0.25  # how often the page redraws while it waits for the model (and so sees a Stop)
LIBRARY_PAGE = "views/library.py"
# Keeps the newest answer in view while it streams, until the user scrolls up; a fixed script
# of kb's own (it reads nothing from the page but its scroll position).
FOLLOW_SCRIPT = """<script>
const doc = window.parent.document;
const box = doc.querySelector('[data-testid="stMain"]') || doc.scrollingElement;
const scrollers = [box, doc.scrollingElement].filter(Boolean);
let follow = true;
const bottom = () => scrollers.forEach(s => s.scrollTo({top: s.scrollHeight}));
scrollers.forEach(s => s.addEventListener("wheel", e => { if (e.deltaY < 0) follow = false; }));
scrollers.forEach(s => s.addEventListener("touchmove", () => { follow = false; }));
new MutationObserver(() => { if (follow) bottom(); })
  .observe(doc.body, {childList: true, subtree: true, characterData: true});
bottom();
</script>"""


def chain_history(turns: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The conversation as the chain reads it: user/assistant pairs that got an answer."""
    history: list[dict[str, str]] = []
    for question, reply in itertools.pairwise(turns):
        if question["role"] == "user" and reply["role"] == "assistant":
            history.append({"role": "user", "content": question["content"]})
            history.append({"role": "assistant", "content": reply["result"].answer})
    return history


def answered_by(turns: list[dict[str, Any]]) -> str | None:
    """The model of the conversation's last answer (a reopened conversation's), or None."""
    models = [turn["result"].model for turn in turns if turn["role"] == "assistant"]
    return models[-1] if models else None


def pick_model(settings: Settings) -> str | None:
    """This session's model (a model id), without drawing anything: its earlier choice (kept
    through runs without a server), else the model of the open conversation's last answer,
    while a reachable server offers it; else the first model offered (KB_MODEL when a server
    offers it); None when none is."""
    choices = model_choices(settings, listed_models(settings))
    if not choices:
        return None
    earlier = st.session_state.get(MODEL) or st.session_state.get(CHOICE)
    choice = (
        kept_choice(earlier, choices)
        or kept_choice(answered_by(st.session_state[TURNS]), choices)
        or choices[0]
    )
    st.session_state[MODEL] = st.session_state[CHOICE] = choice
    return str(choice)


def model_picker(settings: Settings) -> None:
    """The sidebar's model picker: every model of every reachable server, shown with its
    server, on the choice `pick_model` made (or why there is none); under it, a note when no
    server offers KB_MODEL, the model a new conversation would otherwise start on."""
    listed = listed_models(settings)
    choices = model_choices(settings, listed)
    if not choices:
        st.sidebar.error(no_model_message(settings, listed))
        return
    st.sidebar.selectbox("Model", choices, key=MODEL, format_func=model_label)
    if find_model(settings.model, listed) is None:
        name = split_model_id(settings.model)[0]
        st.sidebar.caption(
            message_markdown(
                f"KB_MODEL ({settings.model}) is not offered by any reachable server, so the "
                f"first model listed is chosen; pull it with `ollama pull {name}`, or set "
                "KB_MODEL to one listed here."
            )
        )


def newest_answer(turns: list[dict[str, Any]]) -> int | None:
    """The index of the conversation's last answer, or None."""
    answers = [index for index, turn in enumerate(turns) if turn["role"] == "assistant"]
    return answers[-1] if answers else None


def show_turn(
    turn: dict[str, Any], settings: Settings, index: int = 0, newest: bool = True
) -> None:
    """One turn of the conversation; an answer that is not the `newest` shows its details only
    on demand."""
    role = turn["role"]
    with st.chat_message("user" if role == "user" else "assistant"):
        if role == "user":
            show_text(turn["content"])
        elif role == "assistant" and not newest:
            show_earlier_answer(turn["result"], settings, key=f"t{index}")
        elif role == "assistant":
            show_answer(turn["result"], settings, key=f"t{index}")
        elif role == "search":
            show_search_results(turn["passages"])
        elif role == STOPPED:
            if turn["content"]:
                show_text(turn["content"])
                st.caption("Stopped before the answer was finished; what arrived is kept above.")
            else:
                st.caption("Stopped before the first word of the answer arrived.")
        else:
            show_kb_error(turn["content"], turn.get("empty", False))


def show_kb_error(message: str, empty_store: bool = False) -> None:
    """One of kb's error sentences; for an empty store, a link to the Library with it."""
    show_error(KBError(message))
    if empty_store:
        st.page_link(LIBRARY_PAGE, label="Add documents in the Library", icon=":material/add:")


def waiting_words(started: float) -> str:
    return f"Finding passages and asking the model… {time.monotonic() - started:.0f} s"


def stream_answer(
    settings: Settings, question: str, model: str, history: list[dict[str, str]], sign: Any
) -> AnswerResult | KBError:
    """Stream the answer into the page from a worker thread, with a sign that it is coming
    from the start and a Stop button; the `AnswerResult`, or the `KBError` that ended it.

    The text so far is kept in a `stopped` turn as it arrives: a Stop click (or any other
    rerun) ends this script mid-stream, and that turn is what the next run shows. Leaving the
    loop closes the lanes' iterator, which closes the request to the model server. `sign` is
    the placeholder that already shows `waiting_words`."""
    stop, body = st.empty(), st.empty()
    started = time.monotonic()
    stop.button("Stop", key=STOP, icon=":material/stop_circle:")
    kept = {"role": STOPPED, "content": ""}
    st.session_state[TURNS].append(kept)
    st.session_state[UNSAVED_STOP] = kept
    text, outcome = "", None
    open_chain = ready_services(settings).open_chain
    lanes = stream_side_by_side(open_chain, question, [model], history, tick_s=TICK_S)
    with closing(lanes):
        for _, event in lanes:
            if event is WAITING:
                if not text:
                    sign.status(waiting_words(started), state="running")
            elif isinstance(event, str):
                if not text:
                    sign.empty()
                text += event
                kept["content"] = text
                body.markdown(escape_markdown(text))
            else:
                outcome = event
    sign.empty()
    stop.empty()
    st.session_state[TURNS].remove(kept)
    st.session_state.pop(UNSAVED_STOP, None)
    if isinstance(outcome, AnswerResult) and outcome.answer:
        body.markdown(linked_answer(outcome, f"t{len(st.session_state[TURNS])}"))
    assert outcome is not None
    return outcome


def start_reply(question: str) -> tuple[Any, Any]:
    """The question and an assistant message showing that its answer is coming, drawn at once
    (before the conversation so far is drawn again): the placeholders of its sign and of the
    rest of the reply. The rest is one placeholder, drawn empty at once: it takes the place of
    everything the last run's reply showed there (its answer and sources), which would
    otherwise stay on the page, clickable, until this run ends."""
    with st.chat_message("user"):
        show_text(question)
    reply = st.chat_message("assistant")
    sign, rest = reply.empty(), reply.empty()
    sign.status(waiting_words(time.monotonic()), state="running")
    return sign, rest


def answer(settings: Settings, question: str, model: str | None, sign: Any) -> None:
    """Answer (or, without a model, search) inside the assistant message being drawn, whose
    `sign` shows that something is coming. The turn is kept (in the session and saved) as
    soon as it is known, before what follows it is drawn: a rerun that ends the script
    meanwhile (the next question asked at once, a click) loses nothing."""
    history = chain_history(st.session_state[TURNS])
    if model is None:
        try:
            with ready_services(settings).open_chain() as chain:
                passages = chain.search(question)
        except KBError as err:
            sign.empty()
            keep_error(settings, err)
            return
        sign.empty()
        keep(settings, {"role": "search", "content": question, "passages": passages})
        show_search_results(passages)
        return
    outcome = stream_answer(settings, question, model, history, sign)
    if isinstance(outcome, KBError):
        keep_error(settings, outcome)
        return
    key = f"t{len(st.session_state[TURNS])}"  # the index this turn gets
    keep(settings, {"role": "assistant", "content": outcome.answer, "result": outcome})
    answer_details(outcome, settings, key=key)


def keep(settings: Settings, turn: dict[str, Any]) -> None:
    """Add a turn to the conversation and save it (a new conversation reruns the page then,
    which draws the turn from the conversation)."""
    st.session_state[TURNS].append(turn)
    save_conversation(settings, TURNS)


def keep_error(settings: Settings, err: KBError) -> None:
    """Keep the error's sentence as the turn, then show it."""
    empty = isinstance(err, EmptyKnowledgeBaseError)
    keep(settings, {"role": "error", "content": str(err), "empty": empty})
    show_kb_error(str(err), empty)


def save_stopped_answer(settings: Settings) -> None:
    """Save the conversation once its last answer was stopped: the run that streamed it ended
    mid-stream (a Stop click ends the script), before it could save, and a conversation whose
    every answer was stopped was never listed, so a reload lost it."""
    turns = st.session_state[TURNS]
    stopped = st.session_state.get(UNSAVED_STOP)
    if stopped is not None and turns and turns[-1] is stopped:
        st.session_state.pop(UNSAVED_STOP)
        save_conversation(settings, TURNS)


def store_is_empty(settings: Settings) -> bool:
    """Whether the store holds no chunk (False when it cannot be opened: the question will
    say why)."""
    try:
        with get_services(settings).open_store() as store:
            return store.count_chunks() == 0
    except KBError:
        return False


def first_visit_guide(settings: Settings) -> None:
    """On an empty conversation over an empty store: how to add documents."""
    if st.session_state[TURNS] or not store_is_empty(settings):
        return
    st.info(
        "The knowledge base is empty. Add documents in the Library (upload files or ingest a "
        "folder on the server), or run `python -m ingest ./docs`; then ask here."
    )
    st.page_link(LIBRARY_PAGE, label="Open the Library", icon=":material/library_books:")


def sidebar(settings: Settings, online: bool) -> None:
    if online:
        model_picker(settings)
    conversation_panel(settings, TURNS)  # new, saved, reopen, rename, export, delete


def main() -> None:
    """The page. After Enter, the first thing drawn after the chat box is the question and the
    sign that its answer is coming: the sidebar and the conversation so far are drawn after it
    (the sidebar into its own place, the turns into a container placed above), so that neither
    the script nor the browser handles them before the sign."""
    settings = page_start(needs_models=True)
    st.session_state.setdefault(TURNS, [])
    reopen_from_address(settings, TURNS)  # after a reload: the conversation of ?c=<id>
    online = models_reachable(settings)
    model = pick_model(settings) if online else None
    st.title("Chat" if online else "Search")
    earlier = st.container()  # the conversation so far, drawn after the new question's sign
    prompt = "Ask the knowledge base" if online else "Search the knowledge base"
    question = st.chat_input(prompt, key=QUESTION, disabled=online and model is None)
    sign, rest = start_reply(question) if question else (None, None)
    sidebar(settings, online)
    turns = st.session_state[TURNS]
    newest = None if question else newest_answer(turns)  # a new question: its answer is newest
    with earlier:
        for index, turn in enumerate(turns):
            show_turn(turn, settings, index, newest=index == newest)
    if not question:
        first_visit_guide(settings)
        save_stopped_answer(settings)
        return
    st.session_state[TURNS].append({"role": "user", "content": question})
    st.iframe(FOLLOW_SCRIPT, height=1)
    with rest.container():
        answer(settings, question, model, sign)


if __name__ == "__main__":
    main()
