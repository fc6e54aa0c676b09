"""How one answer is shown, on the Chat and the Compare page alike: its warnings, the context bar,
the speed figures and the sources panel. All document and model text goes through `ui.plain`."""

from __future__ import annotations

from typing import Any

import streamlit as st

from rag.chain import AnswerResult
from rag.retrieve import Passage
from ui.plain import escape_markdown, show_caption, show_text

PARTIAL_MARK = "(answer broken off)"
SEARCH_RESULTS_SHOWN = 8


def show_warnings(result: AnswerResult) -> None:
    if result.partial:
        st.warning(
            f"{PARTIAL_MARK} The answer stopped before the model finished: "
            f"{escape_markdown(result.error or 'the stream ended early')}. "
            "What arrived is kept above."
        )
    if result.truncated:
        st.warning(
            "Ollama cut the prompt to fit the model's window, so this answer may ignore some "
            "passages; the next question packs less."
        )


def context_bar(result: AnswerResult) -> None:
    share = min(1.0, result.context_tokens / result.window) if result.window else 0.0
    st.progress(
        share,
        text=f"Context: {result.context_tokens:,} of {result.window:,} tokens "
        f"(num_ctx sent: {result.num_ctx:,})",
    )


def speed_line(result: AnswerResult) -> str:
    parts = [result.model]
    if result.ttft_ms is not None:
        parts.append(f"first token {result.ttft_ms:,.0f} ms")
    if result.tokens_per_s:
        parts.append(f"{result.tokens_per_s:,.1f} tokens/s")
    parts.append(f"retrieval {result.retrieval_ms:,.0f} ms")
    parts.append(f"total {result.total_ms:,.0f} ms")
    return " · ".join(parts)


def show_passage(record: dict[str, Any], cited: bool) -> None:
    """One passage: number, file, page, headings, score, then its text."""
    label = f"[{record['n']}] {record['path']}"
    if record.get("page") is not None:
        label += f", p. {record['page']}"
    if record.get("headings"):
        label += " — " + " > ".join(record["headings"])
    marker = " · cited" if cited else ""
    st.markdown(f"**{escape_markdown(label)}**  \nscore {record['score']:.3f}{marker}")
    show_text(record["text"])


def sources_panel(result: AnswerResult, expanded: bool = False) -> None:
    cited = {c.n for c in result.citations}
    title = f"Sources: {len(result.passages)} passages, {len(cited)} cited"
    with st.expander(title, expanded=expanded):
        if not result.passages:
            st.caption("No passage was found for this question.")
        for record in result.passages:
            show_passage(record, record["n"] in cited)


def answer_details(result: AnswerResult) -> None:
    """Everything about an answer but its text."""
    show_warnings(result)
    context_bar(result)
    st.caption(escape_markdown(speed_line(result)))
    sources_panel(result)


def show_answer(result: AnswerResult) -> None:
    """A finished answer (from history): its text, then its details."""
    show_text(result.answer or "(no text)")
    answer_details(result)


def show_search_results(passages: list[Passage]) -> None:
    """Retrieval alone (Ollama unreachable): the best passages with their sources."""
    if not passages:
        st.caption("No passage matches this question.")
        return
    for n, passage in enumerate(passages[:SEARCH_RESULTS_SHOWN], start=1):
        st.markdown(
            f"**{escape_markdown(f'[{n}] {passage.source_label()}')}**  \nscore {passage.score:.3f}"
        )
        show_text(passage.text)
    show_caption(f"Showing {min(len(passages), SEARCH_RESULTS_SHOWN)} of {len(passages)}.")
