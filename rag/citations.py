"""Which packed passage backs which sentence of an answer.

A citation is *written* when the model wrote its `[n]`, *attributed* when kb found the passage.
A sentence of the answer that carries no `[n]` of a packed passage is attributed to the packed
passage that supports it best, by content-word overlap (`Backing.support`), when that support
reaches `MIN_SUPPORT`. Support counts the words the sentence adds to the question (the
question's own words are in every retrieved passage, so they do not tell passages apart), each
weighted by how few packed passages hold it; ties go to the passage holding the larger weighted
share of all the sentence's words (`Backing.whole`), then to the better-ranked one. A sentence
with an `[n]` is attributed instead when another passage clearly backs it better
(`Backing.outdoes`: the model picked the wrong number). A sentence no passage supports stays
uncited and is listed in `Cited.uncited_sentences`. A refusal ("The provided passages do not
contain the answer.") is never attributed, nor is any sentence of an answer that refuses.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from rag.context import PackedContext
from rag.retrieve import Passage

WRITTEN = "written"
ATTRIBUTED = "attributed"
# Share of a sentence's content words (beyond the question's) that a passage must hold.
# Measured on eval/sample with Qwen2.5-Coder-0.5B: see `rag/citations.py`'s tests and the
# report of the change that introduced it.
MIN_SUPPORT = 0.6
# How much better another passage must support a sentence to overrule the model's own `[n]`.
# A model that wrote the wrong number copied its sentence from another passage (support 1.0
# there, at most 0.14 in the one it named, on eval/sample with Qwen2.5-Coder-0.5B); one that
# paraphrased its right passage ("minus 70 degrees Celsius" for "minus 70 C": 0.45 there, 0.64
# in a passage that happens to say "degrees") is close, and keeps its number.
OVERRULE_MARGIN = 0.3

_MARKER = re.compile(r"\[\s*(?:passages?\s*)?(\d+(?:\s*[,;]\s*\d+)*)\s*\]", re.IGNORECASE)
_LEADING_MARKERS = re.compile(r"^(?:\s*\[\s*(?:passages?\s*)?\d+(?:\s*[,;]\s*\d+)*\s*\])+", re.I)
# Chinese and Japanese full stops end a sentence without a space after them
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+|(?<=[。！？])[」』”）]*\s*|\s*\n+\s*")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
_WORD = re.compile(r"\w+")
_STOPWORD_TEXT = """
    a an the and or but if of to in on at by for with from as into onto over under about
    is are was were be been being am do does did done has have had having will would shall
    should can could may might must not no nor so than then there here this that these those
    it its it's they them their he him his she her we us our you your i me my what which who
    whom whose when where why how all any each every some such only also very just more most
    other same own too per via answer passage passages provided according based information
    context text document documents source sources given mentioned stated"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_REFUSAL = re.compile(
    r"\b(?:do|does|did)(?: not|n't) (?:\w+ )?(?:contain|mention|include|provide|say|state"
    r"|specify|cover|answer|give|hold)\b"
    r"|\bnot (?:\w+ )?(?:mentioned|stated|specified|provided|given|found|included)\b"
    r"|\bno (?:\w+ )?(?:information|mention|indication)\b"
    r"|\b(?:cannot|can't|can not|could not|unable to) (?:\w+ )?(?:find|determine|answer|tell)\b"
    r"|\bi (?:do not|don't) know\b",
    re.IGNORECASE,
)


@dataclass
class Citation:
    n: int
    source: str  # "path, p. 3, Heading"
    path: str
    abs_path: str
    title: str
    page: int | None
    headings: list[str]
    text: str
    kind: str = WRITTEN  # "written" by the model, or "attributed" by kb
    sentences: list[str] = field(default_factory=list)  # the answer's sentences it backs
    support: float | None = None  # attributed: share of the sentence's words in the passage
    replaces: list[int] = field(default_factory=list)  # attributed: numbers the model wrote


@dataclass
class Cited:
    citations: list[Citation]
    uncited_sentences: list[str]


def cited_numbers(answer: str) -> list[int]:
    """Numbers cited as [1], [2][3] or [1, 2], in order of first appearance."""
    numbers: list[int] = []
    for match in _MARKER.finditer(answer):
        for part in re.split(r"[,;]", match.group(1)):
            number = int(part)
            if number not in numbers:
                numbers.append(number)
    return numbers


def citation_of(number: int, passage: Passage, kind: str = WRITTEN) -> Citation:
    return Citation(
        n=number,
        source=passage.source_label(),
        path=passage.path,
        abs_path=passage.abs_path,
        title=passage.title,
        page=passage.page,
        headings=passage.headings,
        text=passage.text,
        kind=kind,
    )


def resolve_citations(answer: str, packed: PackedContext) -> list[Citation]:
    """Written citations of numbers that exist in the packed context; others are dropped."""
    return [
        citation_of(number, packed.passages[number - 1])
        for number in cited_numbers(answer)
        if 1 <= number <= len(packed.passages)
    ]


def answer_sentences(answer: str) -> list[str]:
    """The answer's sentences, each with the `[n]` markers that follow it (a marker written
    after the full stop belongs to the sentence before it). List bullets are dropped."""
    pieces = [p for p in _SENTENCE_END.split(answer) if p and p.strip()]
    sentences: list[str] = []
    for piece in pieces:
        leading = _LEADING_MARKERS.match(piece)
        if leading and sentences:
            sentences[-1] += " " + leading.group(0).strip()
            piece = piece[leading.end() :]
        piece = _BULLET.sub("", piece).strip()
        if piece:
            sentences.append(piece)
    return sentences


def is_refusal(text: str) -> bool:
    return _REFUSAL.search(text.replace("’", "'")) is not None


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def content_words(text: str) -> set[str]:
    words = (w.lower() for w in _WORD.findall(_MARKER.sub(" ", text)))
    return {_stem(w) for w in words if w not in _STOPWORDS and (len(w) > 1 or w.isdigit())}


def _weighted_share(words: set[str], passage_words: set[str], spread: dict[str, int]) -> float:
    """Share of `words` the passage holds, each word weighted 1/(number of packed passages
    holding it, `spread`): a name found in one passage counts more than a word found in all.
    A word in no passage weighs 1."""
    weights = {word: 1 / max(1, spread.get(word, 0)) for word in words}
    total = sum(weights.values())
    held = sum(weight for word, weight in weights.items() if word in passage_words)
    return held / total if total else 0.0


@dataclass(frozen=True)
class Backing:
    """How well each packed passage backs one sentence: `support`, the weighted share of the
    content words the sentence adds to the question (of all its content words when it adds
    none), and `whole`, the same share of all its content words, the question's included,
    which tells passages apart when the added words are in several."""

    support: list[float]
    whole: list[float]

    def best(self) -> int:
        """The index of the passage with the best support, then the best whole share, then the
        best rank."""
        return max(range(len(self.support)), key=lambda i: (self.support[i], self.whole[i], -i))

    def outdoes(self, index: int, numbers: Sequence[int]) -> bool:
        """Whether passage `index` clearly backs the sentence better than every passage the
        model cited (1-based `numbers`): by `OVERRULE_MARGIN` more support where they fall
        below `MIN_SUPPORT`, or, at no less support, by `OVERRULE_MARGIN` more whole share."""
        cited_support = max((self.support[n - 1] for n in numbers), default=0.0)
        cited_whole = max((self.whole[n - 1] for n in numbers), default=0.0)
        rival = self.support[index]
        if cited_support < MIN_SUPPORT and rival - cited_support >= OVERRULE_MARGIN:
            return True
        return rival >= cited_support and self.whole[index] - cited_whole >= OVERRULE_MARGIN


def backing(sentence: str, passages: Sequence[set[str]], question_words: set[str]) -> Backing:
    words = content_words(sentence)
    added = words - question_words or words
    spread = Counter(word for words_of in passages for word in words_of & words)
    return Backing(
        support=[_weighted_share(added, words_of, spread) for words_of in passages],
        whole=[_weighted_share(words, words_of, spread) for words_of in passages],
    )


def cite(answer: str, packed: PackedContext, question: str = "") -> Cited:
    """The written citations, then the attributed ones, and the sentences left uncited.

    A written `[n]` stands unless another passage reaches `MIN_SUPPORT` and clearly backs the
    sentence better (`Backing.outdoes`); when no passage reaches it, the number stands (a
    paraphrase kb cannot check). An overruled sentence is attributed to the better passage
    (`replaces` keeps the model's numbers), and a written citation left with no sentence is
    dropped."""
    written = resolve_citations(answer, packed)
    sentences = answer_sentences(answer)
    if any(is_refusal(sentence) for sentence in sentences) or not packed.passages:
        return Cited(written, [])
    by_number = {c.n: c for c in written}
    passage_words = [content_words(p.text + " " + p.source_label()) for p in packed.passages]
    question_words = content_words(question)
    attributed: dict[int, Citation] = {}
    uncited: list[str] = []
    overruled: set[int] = set()
    for sentence in sentences:
        numbers = [n for n in cited_numbers(sentence) if n in by_number]
        if not content_words(sentence):  # "Sure." or a bare "[2]" claims nothing to check
            for number in numbers:
                by_number[number].sentences.append(sentence)
            continue
        backed_by = backing(sentence, passage_words, question_words)
        index = backed_by.best()
        score = backed_by.support[index]
        if numbers and (not backed_by.outdoes(index, numbers) or score < MIN_SUPPORT):
            for number in numbers:
                by_number[number].sentences.append(sentence)
            continue
        if score < MIN_SUPPORT:
            uncited.append(sentence)
            continue
        number = index + 1
        overruled.update(numbers)
        if number in by_number:  # the model cited this passage for another sentence
            by_number[number].sentences.append(sentence)
            continue
        if number not in attributed:
            attributed[number] = citation_of(number, packed.passages[index], ATTRIBUTED)
        citation = attributed[number]
        citation.sentences.append(sentence)
        citation.support = min(citation.support or 1.0, round(score, 3))
        citation.replaces += [n for n in numbers if n not in citation.replaces]
    kept = [c for c in written if c.sentences or c.n not in overruled]
    return Cited(kept + list(attributed.values()), uncited)
