"""How one answer is shown, on the Chat and the Compare page alike: its warnings, the context bar,
the speed figures and the sources panel. All document and model text goes through `ui.plain`."""

from __future__ import annotations

from typing import Any

import streamlit as st

from rag.chain import AnswerResult
from rag.retrieve import Passage, place_label
from rag.settings import Settings, env_name
from ui.models_choice import model_label
from ui.plain import escape_markdown, show_caption, show_text

PARTIAL_MARK = "(answer broken off)"
SEARCH_RESULTS_SHOWN = 8
# Where a model's window comes from (`AnswerResult.window_source`), in plain words.
WINDOW_SOURCES = {
    "trained": "the model's trained context",
    "server": "as the server states it",
    "setting": "from KB_CONTEXT_WINDOWS",
    "learned": "learned from the server's too-long error",
    "default": "kb's cautious default",
}
# How token counts were made (`AnswerResult.counted_by`), for counts the server did not report.
COUNTED_BY = {"tokenizer": "counted by the server's tokenizer", "estimate": "kb's estimate"}


def show_warnings(result: AnswerResult) -> None:
    if result.partial:
        st.warning(
            f"{PARTIAL_MARK} The answer stopped before the model finished: "
            f"{escape_markdown(result.error or 'the stream ended early')}. "
            "What arrived is kept above."
        )
    if result.truncated:
        st.warning(
            f"The model server ({escape_markdown(result.server or 'unknown')}) cut the prompt "
            f"to fit the model's {result.window:,}-token window, so this answer may ignore "
            "some passages; the next question packs less."
        )
    if result.notice:
        st.info(escape_markdown(result.notice))
    if result.rests_on_ocr:
        st.info(
            "This answer cites text read by OCR from a scanned page; "
            "check names and figures against the page."
        )


def window_words(result: AnswerResult, settings: Settings) -> str:
    """The window the answer was packed for and where it comes from, in plain words:
    `window 8,192 tokens (the model's trained context)`; a window at the cap says so."""
    if result.window and result.window >= settings.cap_for(result.model):
        setting = env_name("context_caps" if settings.context_caps else "context_cap")
        source: str | None = f"the limit set by {setting}"
    else:
        source = WINDOW_SOURCES.get(result.window_source or "")
    return f"window {result.window:,} tokens" + (f" ({source})" if source else "")


def context_bar(result: AnswerResult, settings: Settings) -> None:
    share = min(1.0, result.context_tokens / result.window) if result.window else 0.0
    words = window_words(result, settings)
    st.progress(share, text=f"Context: passages {result.context_tokens:,} tokens · {words}")


def token_counts(result: AnswerResult) -> str | None:
    """`prompt 1,234 tokens, answer 56 tokens`, marked when the server did not count them."""
    counts = [
        f"{label} {count:,} tokens"
        for label, count in (("prompt", result.prompt_tokens), ("answer", result.output_tokens))
        if count is not None
    ]
    if not counts:
        return None
    how = COUNTED_BY.get(result.counted_by or "server")
    return ", ".join(counts) + (f" ({how})" if how else "")


def speed_line(result: AnswerResult) -> str:
    parts = [model_label(result.model)]
    counts = token_counts(result)
    if counts:
        parts.append(counts)
    if result.ttft_ms is not None:
        parts.append(f"first token {result.ttft_ms:,.0f} ms")
    if result.tokens_per_s:
        parts.append(f"{result.tokens_per_s:,.1f} tokens/s")
    parts.append(f"retrieval {result.retrieval_ms:,.0f} ms")
    parts.append(f"total {result.total_ms:,.0f} ms")
    return " · ".join(parts)


# How a citation was made (`Citation.kind`), as the sources panel marks a passage.
CITATION_MARKS = {"written": "cited by the model", "attributed": "attributed by kb"}


def show_passage(record: dict[str, Any], cited: bool | str) -> None:
    """One passage: number, file, page, headings, score, whether and how it is cited, then its
    text. `cited` is the citation's kind (`written`, `attributed`), or a bool."""
    label = f"[{record['n']}] {record['path']}"
    if record.get("page") is not None:
        page = record["page"]
        label += ", " + place_label(record.get("page_kind") or "page", page, page)
    if record.get("headings"):
        label += " — " + " > ".join(record["headings"])
    how = CITATION_MARKS.get(cited, "cited") if isinstance(cited, str) else "cited"
    marker = f" · {how}" if cited else ""
    st.markdown(f"**{escape_markdown(label)}**  \nscore {record['score']:.3f}{marker}")
    show_text(record["text"])


def citation_kinds(result: AnswerResult) -> dict[int, str]:
    """Passage number -> how it is cited; a passage the model cited is `written`."""
    kinds: dict[int, str] = {}
    for citation in result.citations:
        kind = getattr(citation, "kind", "written")
        if kinds.get(citation.n) != "written":
            kinds[citation.n] = kind
    return kinds


def sources_title(result: AnswerResult) -> str:
    kinds = citation_kinds(result)
    written = sum(kind == "written" for kind in kinds.values())
    attributed = len(kinds) - written
    title = f"Sources: {len(result.passages)} passages, {written} cited by the model"
    return title + (f", {attributed} attributed by kb" if attributed else "")


def sources_panel(result: AnswerResult, expanded: bool = False) -> None:
    kinds = citation_kinds(result)
    with st.expander(sources_title(result), expanded=expanded):
        if not result.passages:
            st.caption("No passage was found for this question.")
        for record in result.passages:
            show_passage(record, kinds.get(record["n"], False))


def attribution_lines(result: AnswerResult) -> list[str]:
    """One line per sentence kb attributed (the model wrote no `[n]` for it), one per sentence
    no passage supports."""
    lines = [
        f'kb attributed "{sentence}" to [{c.n}] {c.path} ({_why(c.replaces)})'
        for c in result.citations
        if getattr(c, "kind", "written") == "attributed"
        for sentence in c.sentences
    ]
    lines += [
        f'No passage supports "{sentence}": it is uncited.'
        for sentence in getattr(result, "uncited_sentences", [])
    ]
    return lines


def _why(replaced: list[int]) -> str:
    if not replaced:
        return "the model did not cite it"
    numbers = "".join(f"[{n}]" for n in replaced)
    return f"the model cited {numbers}, which does not back it"


def show_attributions(result: AnswerResult) -> None:
    for line in attribution_lines(result):
        show_caption(line)


def answer_details(result: AnswerResult, settings: Settings) -> None:
    """Everything about an answer but its text."""
    show_attributions(result)
    show_warnings(result)
    context_bar(result, settings)
    st.caption(escape_markdown(speed_line(result)))
    sources_panel(result)


def show_answer(result: AnswerResult, settings: Settings) -> None:
    """A finished answer (from history): its text, then its details."""
    show_text(result.answer or "(no text)")
    answer_details(result, settings)


def show_search_results(passages: list[Passage]) -> None:
    """Retrieval alone (no model server reachable): the best passages with their sources."""
    if not passages:
        st.caption("No passage matches this question.")
        return
    for n, passage in enumerate(passages[:SEARCH_RESULTS_SHOWN], start=1):
        st.markdown(
            f"**{escape_markdown(f'[{n}] {passage.source_label()}')}**  \nscore {passage.score:.3f}"
        )
        show_text(passage.text)
    show_caption(f"Showing {min(len(passages), SEARCH_RESULTS_SHOWN)} of {len(passages)}.")
