"""Scoring of answers and retrieved passages, and per-model summaries. Pure functions only.

How each figure is computed is described in `eval/README.md`; in short:
- answers are compared after SQuAD normalisation with `[n]` citation markers removed;
- a passage is *gold* when it holds a reference answer and overlaps the gold evidence; a
  citation is correct when it cites a gold passage, whether the model wrote it or kb
  attributed it (both are counted apart);
- a refusal is an answer that says plainly the passages do not hold the answer.
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from eval.dataset import QAItem

# A passage and the gold evidence overlap when they share a span of this many characters
# (after white space is collapsed and case folded), or the whole of the shorter one.
MIN_OVERLAP_CHARS = 60

_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_CITATION_MARKER = re.compile(r"\s*\[\d+(?:\s*[,;–-]\s*\d+)*\]")

_SOURCE = (
    r"(?:passages?|context|documents?|sources?|excerpts?|texts?|snippets?|materials?"
    r"|knowledge base|information (?:provided|given|available))"
)
_NEGATION = r"(?:do not|does not|did not|don't|doesn't|didn't)"
_SOURCE_VERB = (
    r"(?:contain|include|mention|provide|say|state|specify|cover|address|discuss|give"
    r"|offer|hold|have|answer|describe|list|refer to)"
)
_REFUSAL = re.compile(
    "|".join(
        [
            # "the provided passages do not (specifically) mention ..."
            rf"\b{_SOURCE}\b[^.?!]{{0,60}}?\b{_NEGATION} (?:\w+ )?{_SOURCE_VERB}\b",
            rf"\bnone of the (?:\w+ )?{_SOURCE}\b",
            r"\bnot (?:\w+ )?mentioned\b",
            # "is not stated in the given passages", not a bare "towels are not provided"
            r"\bnot (?:\w+ )?(?:stated|specified|provided|given|included|covered|found"
            rf"|addressed|discussed|listed|described) (?:in|by|within) (?:\w+ ){{0,3}}?{_SOURCE}\b",
            r"\bno (?:\w+ )?(?:information|mention|reference to|indication)\b",
            r"\b(?:not enough|insufficient) information\b",
            r"\b(?:cannot|can't|can not|could not|couldn't|(?:am |was |is )?unable to) "
            r"(?:\w+ )?(?:find|locate|determine|answer|identify)\b",
            r"\b(?:cannot|can't|can not|could not|couldn't) be (?:determined|found|answered)\b",
            r"\bi (?:do not|don't) know\b",
            r"\bi (?:do not|don't) have (?:\w+ )?information\b",
        ]
    )
)


# -- answers ----------------------------------------------------------------------------------


def strip_citations(text: str) -> str:
    """Remove citation markers such as `[1]`, `[2, 3]` or `[1-3]`."""
    return _CITATION_MARKER.sub("", text)


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lowercase, drop punctuation and articles, collapse white space.

    Punctuation is every ASCII punctuation character (as in the official script) and every
    Unicode punctuation character, so curly quotes and dashes count too.
    """
    lowered = text.lower()
    without_punctuation = "".join(ch for ch in lowered if not _is_punctuation(ch))
    return " ".join(_ARTICLES.sub(" ", without_punctuation).split())


def _is_punctuation(ch: str) -> bool:
    return ch in string.punctuation or unicodedata.category(ch).startswith("P")


def exact_match(prediction: str, references: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals a normalised reference, else 0.0."""
    _require_references(references)
    predicted = normalize_answer(strip_citations(prediction))
    return float(any(predicted == normalize_answer(ref) for ref in references))


def token_f1(prediction: str, references: Sequence[str]) -> float:
    """SQuAD token F1 of the prediction against its best-matching reference."""
    _require_references(references)
    predicted = normalize_answer(strip_citations(prediction)).split()
    return max(_f1_of_tokens(predicted, normalize_answer(ref).split()) for ref in references)


def _f1_of_tokens(predicted: list[str], reference: list[str]) -> float:
    if not predicted or not reference:
        return float(predicted == reference)
    shared = sum((Counter(predicted) & Counter(reference)).values())
    if shared == 0:
        return 0.0
    precision, recall = shared / len(predicted), shared / len(reference)
    return 2 * precision * recall / (precision + recall)


def contains_reference(prediction: str, references: Sequence[str]) -> bool:
    """True when a normalised reference occurs in the normalised prediction as whole words."""
    _require_references(references)
    predicted = f" {normalize_answer(strip_citations(prediction))} "
    return any(_holds_words(predicted, normalize_answer(ref)) for ref in references)


def _holds_words(padded_text: str, words: str) -> bool:
    return bool(words) and f" {words} " in padded_text


def _require_references(references: Sequence[str]) -> None:
    if isinstance(references, str):
        raise TypeError("references must be a sequence of strings, not one string")
    if not references:
        raise ValueError("an answer can only be scored against at least one reference")


# -- citations and refusals -------------------------------------------------------------------


@dataclass(frozen=True)
class CitedPassage:
    """One citation of an answer: the cited passage's document and text, and whether the model
    wrote it (`written`) or kb attributed it (`attributed`, see `rag/citations.py`)."""

    path: str
    text: str
    kind: str = "written"


def citation_doc_precision(cited_sources: Sequence[str], gold_doc: str | None) -> float | None:
    """Share of the cited sources that are the gold document.

    A cited source is a document path as the chain reports it; it is the gold document when it
    equals `gold_doc` or ends with `/<gold_doc>` (the store keeps paths relative to wherever
    the documents were ingested from). Returns None when nothing is cited or there is no
    gold document: precision is undefined there, and `summarize` counts uncited answers apart.
    """
    if not cited_sources or gold_doc is None:
        return None
    hits = sum(_is_same_document(source, gold_doc) for source in cited_sources)
    return hits / len(cited_sources)


def _is_same_document(cited: str, gold_doc: str) -> bool:
    cited_path = cited.replace("\\", "/").removeprefix("./")
    gold_path = gold_doc.replace("\\", "/").removeprefix("./")
    return cited_path == gold_path or cited_path.endswith(f"/{gold_path}")


def is_refusal(answer: str) -> bool:
    """True when the answer says plainly that the passages do not hold the answer.

    Phrase matching on the lowercased answer: "the passages do not contain ...", "not
    mentioned", "no information", "cannot find", "I don't know" and their near variants. A
    hedged answer that carries such a phrase counts as a refusal.
    """
    text = " ".join(answer.lower().replace("’", "'").replace("‘", "'").split())
    return _REFUSAL.search(text) is not None


def correct_refusal(item: QAItem, answer: str) -> bool:
    """True when the model refused an unanswerable question or answered an answerable one."""
    return is_refusal(answer) == item.unanswerable


# -- retrieval --------------------------------------------------------------------------------


def passage_overlaps_evidence(passage: str, evidence: str) -> bool:
    """True when passage and evidence share a substantial common span.

    Both are compared with white space collapsed and case folded; they overlap when their
    longest common substring has at least min(MIN_OVERLAP_CHARS, length of the shorter)
    characters. So the evidence inside the passage, the passage inside the evidence, or a
    shared stretch of about a sentence all count, while a shared phrase does not.
    """
    left, right = _comparable(passage), _comparable(evidence)
    if not left or not right:
        return False
    span = min(MIN_OVERLAP_CHARS, len(left), len(right))
    return _share_substring_of_length(left, right, span)


def _comparable(text: str) -> str:
    return " ".join(text.split()).casefold()


def _share_substring_of_length(left: str, right: str, span: int) -> bool:
    # A common substring of length >= span exists iff one of exactly `span` characters does.
    windows = {right[start : start + span] for start in range(len(right) - span + 1)}
    return any(left[start : start + span] in windows for start in range(len(left) - span + 1))


def is_gold_passage(passage: str, item: QAItem) -> bool:
    """A passage that holds a reference answer and overlaps the gold evidence.

    Without evidence on the item, holding a reference answer is enough.
    """
    if item.unanswerable or not item.answers:
        return False
    holds_answer = contains_reference(passage, item.answers)
    return holds_answer and (
        item.evidence is None or passage_overlaps_evidence(passage, item.evidence)
    )


def retrieval_hit(passage_texts: Sequence[str], item: QAItem) -> bool | None:
    """Whether any packed passage is gold; None for an unanswerable question."""
    if item.unanswerable:
        return None
    return any(is_gold_passage(passage, item) for passage in passage_texts)


def reciprocal_rank(passage_texts: Sequence[str], item: QAItem) -> float | None:
    """1/rank of the first gold passage (0.0 when none); None for an unanswerable question."""
    if item.unanswerable:
        return None
    for rank, passage in enumerate(passage_texts, start=1):
        if is_gold_passage(passage, item):
            return 1.0 / rank
    return 0.0


# -- per-question records and per-model summaries ---------------------------------------------


def percentile(values: Iterable[float], p: float) -> float:
    """The p-th percentile (0-100), interpolating linearly between ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("a percentile needs at least one value")
    if not 0 <= p <= 100:
        raise ValueError(f"a percentile must be between 0 and 100, got {p}")
    position = (len(ordered) - 1) * p / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class GenerationStats:
    """What the chain measured while answering one question.

    `generation_s` is the time spent producing `completion_tokens` (the server's own output
    time where it gives one, e.g. Ollama's eval_duration); `truncated` marks an answer cut short
    at the answer length (finish reason "length", on every server kind).
    """

    latency_s: float
    ttft_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    generation_s: float | None = None
    truncated: bool = False


@dataclass(frozen=True)
class QuestionRecord:
    """One model's scored answer to one question; flat, so `asdict` writes it as a JSON line."""

    model: str
    item_id: str
    unanswerable: bool
    answer: str
    exact_match: float | None
    f1: float | None
    contains: bool | None
    citation_precision: float | None  # share of its citations that cite a gold passage
    cited: bool
    refused: bool
    refusal_correct: bool
    retrieval_hit: bool | None
    reciprocal_rank: float | None
    latency_s: float
    ttft_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    generation_s: float | None = None
    truncated: bool = False
    citation_doc_precision: float | None = None  # share of its citations of the gold document
    citations_written: int = 0  # citations the model wrote
    citations_written_correct: int = 0  # ... of a gold passage
    citations_attributed: int = 0  # citations kb attributed (the model wrote none for them)
    citations_attributed_correct: int = 0
    uncited_sentences: int = 0  # sentences of the answer that no passage supports
    citations_overruled: int = 0  # numbers the model wrote for a sentence another passage backs


def score_question(
    item: QAItem,
    *,
    model: str,
    answer: str,
    cited_sources: Sequence[str],
    passage_texts: Sequence[str],
    stats: GenerationStats,
    citations: Sequence[CitedPassage] = (),
    uncited_sentences: int = 0,
    overruled: int = 0,
) -> QuestionRecord:
    """Score one answer: answer metrics for answerable items, refusal and retrieval for all.

    `cited_sources` are the cited documents (for `citation_doc_precision`), `citations` the
    cited passages with their kind (for the gold-passage figures)."""
    answerable = not item.unanswerable
    written = [c for c in citations if c.kind != "attributed"]
    attributed = [c for c in citations if c.kind == "attributed"]
    written_correct = sum(is_gold_passage(c.text, item) for c in written)
    attributed_correct = sum(is_gold_passage(c.text, item) for c in attributed)
    return QuestionRecord(
        model=model,
        item_id=item.id,
        unanswerable=item.unanswerable,
        answer=answer,
        exact_match=exact_match(answer, item.answers) if answerable else None,
        f1=token_f1(answer, item.answers) if answerable else None,
        contains=contains_reference(answer, item.answers) if answerable else None,
        citation_precision=(
            (written_correct + attributed_correct) / len(citations)
            if answerable and citations
            else None
        ),
        cited=bool(cited_sources) or bool(citations),
        refused=is_refusal(answer),
        refusal_correct=correct_refusal(item, answer),
        retrieval_hit=retrieval_hit(passage_texts, item),
        reciprocal_rank=reciprocal_rank(passage_texts, item),
        latency_s=stats.latency_s,
        ttft_s=stats.ttft_s,
        prompt_tokens=stats.prompt_tokens,
        completion_tokens=stats.completion_tokens,
        generation_s=stats.generation_s,
        truncated=stats.truncated,
        citation_doc_precision=(
            citation_doc_precision(cited_sources, item.doc) if answerable else None
        ),
        citations_written=len(written),
        citations_written_correct=written_correct,
        citations_attributed=len(attributed),
        citations_attributed_correct=attributed_correct,
        uncited_sentences=uncited_sentences,
        citations_overruled=overruled,
    )


@dataclass(frozen=True)
class ModelSummary:
    """Per-model figures; None where no question provided the data for a figure."""

    model: str
    questions: int
    answerable: int
    unanswerable: int
    exact_match: float | None
    f1: float | None
    contains: float | None
    citation_precision: float | None  # of all citations, the share citing a gold passage
    uncited_answers: int
    refusal_accuracy: float | None
    retrieval_hit_rate: float | None
    mrr: float | None
    latency_p50_s: float | None
    latency_p95_s: float | None
    mean_ttft_s: float | None
    tokens_per_s: float | None
    mean_prompt_tokens: float | None
    truncated: int
    citation_doc_precision: float | None = None  # mean share of citations of the gold document
    cited_rate: float | None = None  # answers carrying a citation, written or attributed
    written_rate: float | None = None  # answers carrying a citation the model wrote
    attributed_rate: float | None = None  # answers carrying a citation kb attributed
    written_precision: float | None = None  # written citations that cite a gold passage
    attributed_precision: float | None = None  # attributed citations that cite a gold passage
    uncited_sentences: int = 0  # answer sentences no passage supports, all answers
    overruled: int = 0  # written numbers kb replaced: their passage did not back the sentence
    ttft_p50_s: float | None = None  # median time to first token


def summarize(records: Iterable[QuestionRecord]) -> dict[str, ModelSummary]:
    """Group records by model (in order of first appearance) and compute each model's figures."""
    by_model: dict[str, list[QuestionRecord]] = {}
    for record in records:
        by_model.setdefault(record.model, []).append(record)
    return {model: _summarize_model(model, rows) for model, rows in by_model.items()}


def _summarize_model(model: str, rows: list[QuestionRecord]) -> ModelSummary:
    answerable = [row for row in rows if not row.unanswerable]
    latencies = [row.latency_s for row in rows]
    return ModelSummary(
        model=model,
        questions=len(rows),
        answerable=len(answerable),
        unanswerable=len(rows) - len(answerable),
        exact_match=_mean(row.exact_match for row in answerable),
        f1=_mean(row.f1 for row in answerable),
        contains=_mean(row.contains for row in answerable),
        citation_precision=_share(
            sum(r.citations_written_correct + r.citations_attributed_correct for r in answerable),
            sum(r.citations_written + r.citations_attributed for r in answerable),
        ),
        uncited_answers=sum(not row.cited and not row.refused for row in answerable),
        refusal_accuracy=_mean(row.refusal_correct for row in rows),
        retrieval_hit_rate=_mean(row.retrieval_hit for row in answerable),
        mrr=_mean(row.reciprocal_rank for row in answerable),
        latency_p50_s=percentile(latencies, 50) if latencies else None,
        latency_p95_s=percentile(latencies, 95) if latencies else None,
        mean_ttft_s=_mean(row.ttft_s for row in rows),
        tokens_per_s=_tokens_per_second(rows),
        mean_prompt_tokens=_mean(row.prompt_tokens for row in rows),
        truncated=sum(row.truncated for row in rows),
        citation_doc_precision=_mean(row.citation_doc_precision for row in answerable),
        cited_rate=_mean(row.cited for row in answerable),
        written_rate=_mean(row.citations_written > 0 for row in answerable),
        attributed_rate=_mean(row.citations_attributed > 0 for row in answerable),
        written_precision=_share(
            sum(row.citations_written_correct for row in answerable),
            sum(row.citations_written for row in answerable),
        ),
        attributed_precision=_share(
            sum(row.citations_attributed_correct for row in answerable),
            sum(row.citations_attributed for row in answerable),
        ),
        uncited_sentences=sum(row.uncited_sentences for row in rows),
        overruled=sum(row.citations_overruled for row in rows),
        ttft_p50_s=_median(row.ttft_s for row in rows),
    )


def _median(values: Iterable[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return percentile(present, 50) if present else None


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _mean(values: Iterable[float | bool | None]) -> float | None:
    present = [float(value) for value in values if value is not None]
    return sum(present) / len(present) if present else None


def _tokens_per_second(rows: Sequence[QuestionRecord]) -> float | None:
    """All generated tokens over all generation time, so long answers weigh by their length."""
    timed = [
        row for row in rows if row.completion_tokens is not None and row.generation_s is not None
    ]
    seconds = sum(row.generation_s or 0.0 for row in timed)
    if seconds <= 0:
        return None
    return sum(row.completion_tokens or 0 for row in timed) / seconds
