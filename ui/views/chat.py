"""Chat: questions answered from the knowledge base, streamed, with their sources.

Without Ollama the page answers with retrieval alone: the best passages and their sources.
Hot path (Enter to first token): cached settings, store, embedder and gateway, the chat history
from the session, then `Chain.stream`; nothing here lists documents or reloads anything.
"""

from __future__ import annotations

import itertools
from typing import Any

import streamlit as st

from rag.chain import AnswerResult, Chain
from rag.errors import KBError
from rag.settings import Settings
from ui.answer_view import answer_details, show_answer, show_search_results
from ui.models_choice import missing_models, model_choices
from ui.plain import escape_markdown, escaped_stream, show_error, show_text
from ui.resources import (
    get_embedder,
    get_gateway,
    ollama_reachable,
    page_start,
    pulled_models,
    store_in_use,
)

TURNS = "chat_turns"  # this session's conversation: list of turn dicts
MODEL = "chat_model"  # this session's model choice


def chain_history(turns: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The conversation as the chain reads it: user/assistant pairs that got an answer."""
    history: list[dict[str, str]] = []
    for question, reply in itertools.pairwise(turns):
        if question["role"] == "user" and reply["role"] == "assistant":
            history.append({"role": "user", "content": question["content"]})
            history.append({"role": "assistant", "content": reply["result"].answer})
    return history


def pick_model(settings: Settings) -> str | None:
    choices = model_choices(settings, pulled_models(settings))
    if not choices:
        missing = " ".join(missing_models(settings, [])) or settings.model
        st.sidebar.error(f"Ollama has no models yet; pull one with `ollama pull {missing}`.")
        return None
    if st.session_state.get(MODEL) not in choices:
        st.session_state[MODEL] = choices[0]
    return st.sidebar.selectbox("Model", choices, key=MODEL)


def show_turn(turn: dict[str, Any]) -> None:
    role = turn["role"]
    with st.chat_message("user" if role == "user" else "assistant"):
        if role == "user":
            show_text(turn["content"])
        elif role == "assistant":
            show_answer(turn["result"])
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
            with store_in_use(settings) as store:
                chain = Chain(settings, store, get_embedder(settings), get_gateway(settings))
                if model is None:
                    passages = chain.search(question)
                    show_search_results(passages)
                    return {"role": "search", "content": question, "passages": passages}
                result = stream_answer(chain, question, model, history)
        except KBError as err:
            show_error(err)
            return {"role": "error", "content": str(err)}
        answer_details(result)
    return {"role": "assistant", "content": result.answer, "result": result}


def sidebar(settings: Settings, online: bool) -> str | None:
    model = pick_model(settings) if online else None
    if st.sidebar.button("Clear chat"):
        st.session_state[TURNS] = []
        st.rerun()
    return model


def main() -> None:
    settings = page_start(needs_ollama=True)
    st.session_state.setdefault(TURNS, [])
    online = ollama_reachable(settings)
    model = sidebar(settings, online)
    st.title("Chat" if online else "Search")
    for turn in st.session_state[TURNS]:
        show_turn(turn)
    prompt = "Ask the knowledge base" if online else "Search the knowledge base"
    question = st.chat_input(prompt, disabled=online and model is None)
    if not question:
        return
    st.session_state[TURNS].append({"role": "user", "content": question})
    with st.chat_message("user"):
        show_text(question)
    st.session_state[TURNS].append(answer(settings, question, model))


if __name__ == "__main__":
    main()
