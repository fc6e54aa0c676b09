"""Hand-checked values of the evaluation metrics."""

from __future__ import annotations

import pytest

from eval.dataset import QAItem
from eval.metrics import (
    CitedPassage,
    GenerationStats,
    citation_doc_precision,
    contains_reference,
    correct_refusal,
    exact_match,
    is_refusal,
    normalize_answer,
    passage_overlaps_evidence,
    percentile,
    reciprocal_rank,
    retrieval_hit,
    score_question,
    strip_citations,
    summarize,
    token_f1,
)

EVIDENCE = (
    "The plan is filed with the Comms Office at least two hours before departure and names "
    "everyone in the party, the route and the expected return time."
)
ANSWERABLE = QAItem(
    id="q1",
    question="How long before departure is a travel plan filed?",
    answers=("two hours",),
    doc="field-travel-rules.txt",
    evidence=EVIDENCE,
)
UNANSWERABLE = QAItem(
    id="q2", question="What is the budget?", answers=(), doc=None, unanswerable=True
)


# -- normalisation and answer scores -----------------------------------------------------------


def test_normalize_answer_follows_squad() -> None:
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert normalize_answer("an apple, a pear\nand THE plum.") == "apple pear and plum"
    assert normalize_answer("“Theatre” — a play") == "theatre play"  # articles are whole words


def test_strip_citations_removes_markers_only() -> None:
    assert strip_citations("Denver Broncos [1][2].") == "Denver Broncos."
    assert strip_citations("Two hours [1, 3] or [2-4]") == "Two hours or"
    assert strip_citations("See [note] below") == "See [note] below"


def test_exact_match_after_normalisation_and_citations() -> None:
    assert exact_match("the Denver Broncos [1].", ["Denver Broncos"]) == 1.0
    assert exact_match("Broncos", ["Denver Broncos"]) == 0.0
    assert exact_match("Carolina Panthers", ["Denver Broncos", "Carolina Panthers"]) == 1.0


def test_token_f1_hand_checked() -> None:
    # 1 shared token of 4 predicted and 2 reference: P=1/4, R=1/2, F1=1/3.
    assert token_f1("Broncos won in 2016", ["Denver Broncos"]) == pytest.approx(1 / 3)
    # SQuAD dev example: 3 of 11 reference tokens, all 3 predicted: P=1, R=3/11, F1=3/7.
    reference = "Levi's Stadium in the San Francisco Bay Area at Santa Clara, California."
    assert token_f1("Santa Clara, California", [reference]) == pytest.approx(3 / 7)
    # Repeated tokens count once each: shared {cat, dog}, P=R=2/3.
    assert token_f1("cat cat dog", ["cat dog dog"]) == pytest.approx(2 / 3)
    assert token_f1("Carolina Panthers", ["Denver Broncos"]) == 0.0


def test_token_f1_takes_the_best_reference() -> None:
    assert token_f1("Denver Broncos [2]", ["Carolina Panthers", "The Denver Broncos"]) == 1.0


def test_contains_reference_matches_whole_words() -> None:
    assert contains_reference("It is filed at least two hours before [2].", ["two hours"])
    assert not contains_reference("Winds of 120 knots.", ["20 knots"])
    assert not contains_reference("As stated in [12].", ["12"])
    assert contains_reference("The nearest hospital is 1150 km away.", ["1,150 km"])


def test_answer_scores_need_references() -> None:
    with pytest.raises(ValueError):
        exact_match("anything", [])
    with pytest.raises(TypeError):
        token_f1("anything", "Denver Broncos")


# -- citations and refusals -------------------------------------------------------------------


def test_citation_doc_precision() -> None:
    gold = "field-travel-rules.txt"
    assert citation_doc_precision([gold], gold) == 1.0
    assert citation_doc_precision(["/srv/kb/eval/sample/docs/field-travel-rules.txt"], gold) == 1.0
    assert citation_doc_precision(["station-handbook.md"], gold) == 0.0  # a wrong citation
    assert citation_doc_precision([gold, "station-handbook.md"], gold) == 0.5
    assert citation_doc_precision(["old-field-travel-rules.txt"], gold) == 0.0
    assert citation_doc_precision([], gold) is None  # nothing cited: undefined
    assert citation_doc_precision([gold], None) is None  # no gold document


def test_a_citation_is_correct_when_its_passage_is_gold_whoever_made_it() -> None:
    gold = CitedPassage("field-travel-rules.txt", EVIDENCE, "written")
    same_doc_wrong_passage = CitedPassage("field-travel-rules.txt", "Ski in pairs.", "attributed")
    attributed_gold = CitedPassage("field-travel-rules.txt", EVIDENCE, "attributed")
    record = score_question(
        ANSWERABLE,
        model="m",
        answer="Two hours before departure.",
        cited_sources=["field-travel-rules.txt", "field-travel-rules.txt"],
        passage_texts=[EVIDENCE],
        stats=GenerationStats(1.0),
        citations=[gold, same_doc_wrong_passage, attributed_gold],
        uncited_sentences=1,
    )
    assert record.citation_doc_precision == 1.0  # the right document, every time
    assert record.citation_precision == pytest.approx(2 / 3)  # one passage lacks the answer
    assert (record.citations_written, record.citations_written_correct) == (1, 1)
    assert (record.citations_attributed, record.citations_attributed_correct) == (2, 1)
    assert record.cited and record.uncited_sentences == 1
    unanswerable = score_question(
        UNANSWERABLE, model="m", answer="About 5 million.", cited_sources=[],
        passage_texts=[EVIDENCE], stats=GenerationStats(1.0), citations=[attributed_gold],
    )  # fmt: skip
    assert unanswerable.citation_precision is None
    assert unanswerable.citations_attributed_correct == 0


@pytest.mark.parametrize(
    "answer",
    [
        "The provided passages do not contain information about the station budget.",
        "The context doesn’t specifically mention a Wi-Fi password [1].",
        "None of the passages say who the first leader was.",
        "This is not mentioned in the documents.",
        "There is no information about the budget in the sources.",
        "I cannot find the answer in the passages.",
        "I don't know.",
        "The top speed is not stated in the given passages.",
        "Based on the excerpts, this cannot be determined.",
    ],
)
def test_refusals_are_recognised(answer: str) -> None:
    assert is_refusal(answer)


@pytest.mark.parametrize(
    "answer",
    [
        "The plan is filed at least two hours before departure [1].",
        "Solo travel beyond the boundary is not permitted [2].",
        "Towels are not provided, so bring your own [3].",
        "Boats cannot be refuelled on the water [1].",
        "The document says the freezer alarm is set at minus 70 C [4].",
    ],
)
def test_answers_are_not_refusals(answer: str) -> None:
    assert not is_refusal(answer)


def test_correct_refusal_depends_on_the_question() -> None:
    refusal = "The passages do not mention it."
    assert correct_refusal(UNANSWERABLE, refusal)
    assert not correct_refusal(ANSWERABLE, refusal)
    assert correct_refusal(ANSWERABLE, "Two hours [1].")
    assert not correct_refusal(UNANSWERABLE, "About 5 million [1].")


# -- retrieval --------------------------------------------------------------------------------


def test_overlap_needs_a_substantial_shared_span() -> None:
    assert passage_overlaps_evidence(f"Section 3.\n\n{EVIDENCE}\n\nSection 4.", EVIDENCE)
    assert passage_overlaps_evidence("at least two hours before departure", EVIDENCE)
    # 60+ shared characters, with the line breaks of a chunker.
    assert passage_overlaps_evidence(
        "Rules.\nThe plan is filed with the Comms Office at\nleast two hours before departure and",
        EVIDENCE,
    )
    # Only a short phrase in common.
    assert not passage_overlaps_evidence(
        "The Comms Office keeps the station board up to date at all times.", EVIDENCE
    )
    assert not passage_overlaps_evidence("", EVIDENCE)


def test_retrieval_hit_needs_answer_and_evidence_overlap() -> None:
    with_both = f"3. Field travel plans\n{EVIDENCE}"
    answer_elsewhere = "The boat watch is relieved every two hours by the Comms Office staff."
    evidence_without_answer = EVIDENCE.replace("two hours", "a while")
    assert retrieval_hit([with_both], ANSWERABLE) is True
    assert retrieval_hit([answer_elsewhere], ANSWERABLE) is False
    assert retrieval_hit([evidence_without_answer], ANSWERABLE) is False
    assert retrieval_hit([], ANSWERABLE) is False
    assert retrieval_hit([with_both], UNANSWERABLE) is None


def test_retrieval_hit_without_evidence_needs_only_the_answer() -> None:
    item = QAItem(id="q3", question="?", answers=("two hours",), doc="a.md")
    assert retrieval_hit(["Wait two hours."], item) is True
    assert retrieval_hit(["Wait a while."], item) is False


def test_reciprocal_rank() -> None:
    hit = EVIDENCE
    assert reciprocal_rank([hit, "other"], ANSWERABLE) == 1.0
    assert reciprocal_rank(["other", "more", hit], ANSWERABLE) == pytest.approx(1 / 3)
    assert reciprocal_rank(["other"], ANSWERABLE) == 0.0
    assert reciprocal_rank([hit], UNANSWERABLE) is None


# -- percentiles and summaries ----------------------------------------------------------------


def test_percentile_interpolates_linearly() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 95) == pytest.approx(3.85)
    assert percentile([1.0, 2.0, 3.0, 4.0], 0) == 1.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 100) == 4.0
    assert percentile([7.0], 95) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summarize_per_model() -> None:
    passages = ["An unrelated passage.", EVIDENCE]
    records = [
        score_question(
            ANSWERABLE,
            model="m1",
            answer="At least two hours [2].",
            cited_sources=["docs/field-travel-rules.txt"],
            passage_texts=passages[::-1],
            stats=GenerationStats(1.0, 0.2, 100, 10, 0.5),
            citations=[CitedPassage("docs/field-travel-rules.txt", EVIDENCE)],
        ),
        score_question(
            UNANSWERABLE,
            model="m1",
            answer="The passages do not mention a budget.",
            cited_sources=[],
            passage_texts=passages,
            stats=GenerationStats(3.0, 0.4, 300, 30, 1.5),
        ),
        score_question(
            ANSWERABLE,
            model="m2",
            answer="I don't know.",
            cited_sources=[],
            passage_texts=passages,
            stats=GenerationStats(2.0, truncated=True),
        ),
        score_question(
            UNANSWERABLE,
            model="m2",
            answer="About 5 million [1].",
            cited_sources=["station-handbook.md"],
            passage_texts=passages,
            stats=GenerationStats(4.0),
            citations=[CitedPassage("station-handbook.md", passages[0], "attributed")],
            uncited_sentences=2,
        ),
    ]
    summaries = summarize(records)
    assert list(summaries) == ["m1", "m2"]

    first = summaries["m1"]
    assert (first.questions, first.answerable, first.unanswerable) == (2, 1, 1)
    assert first.exact_match == 0.0  # "at least two hours" is not "two hours"
    assert first.f1 == pytest.approx(2 / 3)  # P=2/4, R=2/2
    assert first.contains == 1.0
    assert first.citation_precision == 1.0 and first.citation_doc_precision == 1.0
    assert (first.cited_rate, first.written_rate, first.attributed_rate) == (1.0, 1.0, 0.0)
    assert (first.written_precision, first.attributed_precision) == (1.0, None)
    assert first.uncited_answers == 0
    assert first.refusal_accuracy == 1.0
    assert (first.retrieval_hit_rate, first.mrr) == (1.0, 1.0)
    assert first.latency_p50_s == 2.0
    assert first.latency_p95_s == pytest.approx(2.9)
    assert first.mean_ttft_s == pytest.approx(0.3)
    assert first.tokens_per_s == pytest.approx(40 / 2.0)
    assert first.mean_prompt_tokens == 200.0
    assert first.truncated == 0

    second = summaries["m2"]
    assert (second.exact_match, second.f1, second.contains) == (0.0, 0.0, 0.0)
    assert second.citation_precision is None  # the only answerable answer cites nothing
    assert second.citation_doc_precision is None
    # the unanswerable question's citation is not counted among the answerable answers
    assert (second.cited_rate, second.written_rate, second.attributed_rate) == (0.0, 0.0, 0.0)
    assert second.attributed_precision is None
    assert second.uncited_sentences == 2  # counted over all answers
    assert second.uncited_answers == 0  # it refused, so it is not counted as uncited
    assert second.refusal_accuracy == 0.0
    assert (second.retrieval_hit_rate, second.mrr) == (1.0, 0.5)
    assert second.mean_ttft_s is None and second.tokens_per_s is None
    assert second.mean_prompt_tokens is None
    assert second.truncated == 1


def test_summarize_of_nothing_is_empty() -> None:
    assert summarize([]) == {}
