"""Chat: questions answered from the knowledge base, streamed, with their sources.

Without a reachable model server the page answers with retrieval alone: the best passages and
their sources. Hot path (Enter to first token): cached settings and `Services` (store, embedder,
model servers), the chat history from the session, then `Chain.stream`; nothing here lists
documents or reloads anything.
"""

from __future__ import annotations

import itertools
from typing import Any

import streamlit as st

from rag.chain import AnswerResult, Chain
from rag.errors import KBError
from rag.settings import Settings
from ui.answer_view import answer_details, show_answer, show_search_results
from ui.conversation_panel import conversation_panel, reopen_from_address, save_conversation
from ui.models_choice import kept_choice, model_choices, model_label, no_model_message
from ui.plain import escape_markdown, escaped_stream, show_error, show_text
from ui.resources import listed_models, models_reachable, page_start, ready_services

TURNS = "chat_turns"  # this session's conversation: list of turn dicts
MODEL = "chat_model"  # this session's model choice: a model id (older sessions: a bare name)


def chain_history(turns: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The conversation as the chain reads it: user/assistant pairs that got an answer."""
    history: list[dict[str, str]] = []
    for question, reply in itertools.pairwise(turns):
        if question["role"] == "user" and reply["role"] == "assistant":
            history.append({"role": "user", "content": question["content"]})
            history.append({"role": "assistant", "content": reply["result"].answer})
    return history


def pick_model(settings: Settings) -> str | None:
    """The sidebar's model picker: every model of every reachable server, shown with its
    server; this session's earlier choice is kept while a server offers it."""
    listed = listed_models(settings)
    choices = model_choices(settings, listed)
    if not choices:
        st.sidebar.error(no_model_message(settings, listed))
        return None
    st.session_state[MODEL] = kept_choice(st.session_state.get(MODEL), choices) or choices[0]
    return st.sidebar.selectbox("Model", choices, key=MODEL, format_func=model_label)


def show_turn(turn: dict[str, Any], settings: Settings) -> None:
    role = turn["role"]
    with st.chat_message("user" if role == "user" else "assistant"):
        if role == "user":
            show_text(turn["content"])
        elif role == "assistant":
            show_answer(turn["result"], settings)
        elif role == "search":
            show_search_results(turn["passages"])
        else:
            st.error(escape_markdown(turn["content"]))


def stream_answer(chain: Chain, question: str, model: str, history: list[dict[str, str]]) -> Any:
    """Stream the answer into the page; the `AnswerResult` once the stream is over."""
    final: list[AnswerResult] = []

    def deltas() -> Any:
        for event in chain.stream(question, model, history):
            if isinstance(event, AnswerResult):
                final.append(event)
            else:
                yield event

    st.write_stream(escaped_stream(deltas()))
    return final[0]


def answer(settings: Settings, question: str, model: str | None) -> dict[str, Any]:
    """Answer (or, without a model, search) inside an assistant message; the turn to keep."""
    history = chain_history(st.session_state[TURNS])
    with st.chat_message("assistant"):
        try:
            services = ready_services(settings)
            with services.open_store() as store:
                chain = services.chain(store)
                if model is None:
                    passages = chain.search(question)
                    show_search_results(passages)
                    return {"role": "search", "content": question, "passages": passages}
                result = stream_answer(chain, question, model, history)
        except KBError as err:
            show_error(err)
            return {"role": "error", "content": str(err)}
        answer_details(result, settings)
    return {"role": "assistant", "content": result.answer, "result": result}


def sidebar(settings: Settings, online: bool) -> str | None:
    model = pick_model(settings) if online else None
    conversation_panel(settings, TURNS)  # new, saved, reopen, rename, export, delete
    return model


def main() -> None:
    settings = page_start(needs_models=True)
    st.session_state.setdefault(TURNS, [])
    reopen_from_address(settings, TURNS)  # after a reload: the conversation of ?c=<id>
    online = models_reachable(settings)
    model = sidebar(settings, online)
    st.title("Chat" if online else "Search")
    for turn in st.session_state[TURNS]:
        show_turn(turn, settings)
    prompt = "Ask the knowledge base" if online else "Search the knowledge base"
    question = st.chat_input(prompt, disabled=online and model is None)
    if not question:
        return
    st.session_state[TURNS].append({"role": "user", "content": question})
    with st.chat_message("user"):
        show_text(question)
    st.session_state[TURNS].append(answer(settings, question, model))
    save_conversation(settings, TURNS)


if __name__ == "__main__":
    main()
