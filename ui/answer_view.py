"""How one answer is shown, on the Chat and the Compare page alike: its warnings, the context bar,
the speed figures and the sources panel. All document and model text goes through `ui.plain`."""

from __future__ import annotations

import hashlib
from typing import Any

import streamlit as st

from rag.chain import AnswerResult
from rag.retrieve import Passage, place_label
from rag.settings import Settings, env_name
from ui.models_choice import model_label
from ui.plain import escape_markdown, linked_citations, show_caption, show_text
from ui.source_view import source_dialog

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
            f"{escape_markdown((result.error or 'the stream ended early').rstrip('.'))}. "
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


# How a citation was made (`Citation.kind`): its mark in the sources and the words after it.
CITATION_MARKS = {
    "written": ":material/format_quote: cited by the model",
    "attributed": ":material/link: attributed by kb",
}
# A passage whose text (some of it) was read off a page image by OCR (`Passage.ocr`).
OCR_MARK = ":material/document_scanner: read by OCR, may contain misreadings"


def answer_key(result: AnswerResult) -> str:
    """A key for one answer's anchors and buttons, stable across reruns: letters and digits."""
    raw = f"{result.question}\0{result.model}\0{result.answer}"
    return "a" + hashlib.sha1(raw.encode("utf-8")).hexdigest()[:10]


def passage_anchor(key: str, n: int) -> str:
    return f"kb-{key}-{n}"


def ranks(records: list[dict[str, Any]]) -> dict[int, int]:
    """Passage number -> its rank by relevance among the answer's passages (1 = best)."""
    ordered = sorted(records, key=lambda record: -float(record.get("score") or 0.0))
    return {record["n"]: rank for rank, record in enumerate(ordered, start=1)}


def passage_label(record: dict[str, Any]) -> str:
    label = f"[{record['n']}] {record['path']}"
    if record.get("page") is not None:
        page = record["page"]
        label += ", " + place_label(record.get("page_kind") or "page", page, page)
    if record.get("headings"):
        label += " — " + " > ".join(record["headings"])
    return label


def show_passage(
    record: dict[str, Any], cited: bool | str, rank: int, of: int, key: str = ""
) -> None:
    """One passage: an anchor the answer's `[n]` links to, number, file, page, headings, its
    relevance rank, whether and how it is cited, whether OCR read it, a button that opens its
    source, its text.
    `cited` is the citation's kind (`written`, `attributed`), or a bool."""
    if key:  # an empty element with an id of kb's own, for the answer's [n] links
        st.markdown(f'<div id="{passage_anchor(key, record["n"])}"></div>', unsafe_allow_html=True)
    how = CITATION_MARKS.get(cited, "cited") if isinstance(cited, str) else "cited"
    marker = f" · {how}" if cited else ""
    marker += f" · {OCR_MARK}" if record.get("ocr") else ""
    st.markdown(
        f"**{escape_markdown(passage_label(record))}**  \nrelevance: {rank} of {of}{marker}"
    )
    if key and st.button(
        "Open source", key=f"{key}-open-{record['n']}", icon=":material/open_in_new:"
    ):
        source_dialog(record)
    show_text(record["text"])


def citation_kinds(result: AnswerResult) -> dict[int, str]:
    """Passage number -> how it is cited; a passage the model cited is `written`."""
    kinds: dict[int, str] = {}
    for citation in result.citations:
        kind = getattr(citation, "kind", "written")
        if kinds.get(citation.n) != "written":
            kinds[citation.n] = kind
    return kinds


def cited_words(result: AnswerResult) -> str:
    """`6 passages, 1 cited by the model, 1 attributed by kb` (the last part only when kb
    attributed any): the sources' title and an earlier answer's switch say the same."""
    kinds = citation_kinds(result)
    written = sum(kind == "written" for kind in kinds.values())
    attributed = len(kinds) - written
    words = f"{len(result.passages)} passages, {written} cited by the model"
    return words + (f", {attributed} attributed by kb" if attributed else "")


def sources_title(result: AnswerResult) -> str:
    return f"Sources: {cited_words(result)}"


def sources_panel(result: AnswerResult, key: str = "") -> None:
    """The cited passages first, shown and marked (the answer's `[n]` link to them), then the
    other passages the model was given, in a closed expander."""
    kinds = citation_kinds(result)
    rank = ranks(result.passages)
    cited = sorted((r for r in result.passages if r["n"] in kinds), key=lambda r: r["n"])
    others = sorted((r for r in result.passages if r["n"] not in kinds), key=lambda r: rank[r["n"]])
    st.caption(escape_markdown(sources_title(result)))
    if not result.passages:
        st.caption("No passage was found for this question.")
    for record in cited:
        with st.container(border=True):
            show_passage(record, kinds[record["n"]], rank[record["n"]], len(rank), key)
    if others:
        other_passages(others, rank, key, f"{key}-{answer_key(result)}-others")


def other_passages(
    others: list[dict[str, Any]], rank: dict[int, int], key: str, panel_key: str
) -> None:
    """The passages the model was given but did not cite, in a closed expander whose content is
    drawn only once it is opened: an answer's 5-20 passages are 20-80 page elements, and a
    conversation's earlier answers are drawn again on every question, before the browser
    shows the new answer's first sign. `panel_key` keeps the panel open or closed across reruns
    for this answer alone."""
    label = f"Other passages the model was given ({len(others)}), not cited"
    panel = st.expander(label, key=panel_key, on_change="rerun")
    if not panel.open:
        return
    with panel:
        for record in others:
            show_passage(record, False, rank[record["n"]], len(rank), key)


def linked_answer(result: AnswerResult, key: str) -> str:
    """The answer's text, escaped, each `[n]` of a cited passage a link to that passage."""
    cited = citation_kinds(result)
    return linked_citations(result.answer, lambda n: passage_anchor(key, n) if n in cited else None)


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


def answer_details(result: AnswerResult, settings: Settings, key: str = "") -> None:
    """Everything about an answer but its text; `key` (letters, digits, dashes; by default
    from the answer) names its passages' anchors and buttons."""
    key = key or answer_key(result)
    show_attributions(result)
    show_warnings(result)
    figures_and_sources(result, settings, key)


def figures_and_sources(result: AnswerResult, settings: Settings, key: str) -> None:
    """The context bar, the speed figures and the sources panel of an answer."""
    context_bar(result, settings)
    st.caption(escape_markdown(speed_line(result)))
    sources_panel(result, key)


def show_answer(result: AnswerResult, settings: Settings, key: str = "") -> None:
    """A finished answer (from history): its text with linked `[n]`, then its details."""
    key = key or answer_key(result)
    if result.answer:
        st.markdown(linked_answer(result, key))
    else:
        st.markdown("(no text)")
    # One block for the details: when this answer is drawn next as an earlier one (text, then
    # a switch), the switch replaces the whole block, leaving no stale details on the page.
    with st.container():
        answer_details(result, settings, key)


def details_label(result: AnswerResult) -> str:
    """The switch that opens an earlier answer's details: `Sources and details (6 passages, 1
    cited by the model)`."""
    return f"Sources and details ({cited_words(result)})"


def show_earlier_answer(result: AnswerResult, settings: Settings, key: str = "") -> None:
    """An answer above the newest one: its text and warnings, with its details (sources, context,
    speed) behind a switch and drawn only when it is on, its `[n]` links then too. Every earlier
    answer is drawn again on each question before the browser shows the new answer's first
    sign, and its details are 10-80 page elements (tests/bench_ui_first_sign.py)."""
    key = key or answer_key(result)
    text = st.empty()
    show_warnings(result)
    opened = st.toggle(details_label(result), key=f"{key}-{answer_key(result)}-details")
    if result.answer:
        text.markdown(linked_answer(result, key) if opened else escape_markdown(result.answer))
    else:
        text.markdown("(no text)")
    if opened:
        show_attributions(result)
        figures_and_sources(result, settings, key)


def show_search_results(passages: list[Passage]) -> None:
    """Retrieval alone (no model server reachable): the best passages with their sources."""
    if not passages:
        st.caption("No passage matches this question.")
        return
    st.caption("No model is answering, so here are the passages that best match the question:")
    for n, passage in enumerate(passages[:SEARCH_RESULTS_SHOWN], start=1):
        label = f"**{escape_markdown(f'[{n}] {passage.source_label()}')}**"
        st.markdown(label + (f"  \n{OCR_MARK}" if passage.ocr else ""))
        show_text(passage.text)
    show_caption(
        f"The {min(len(passages), SEARCH_RESULTS_SHOWN)} best of {len(passages)} matching "
        "passages, best first."
    )
