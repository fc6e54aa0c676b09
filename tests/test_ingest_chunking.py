"""Chunks are measured in tokens of the embedding model and never exceed what it reads."""

from __future__ import annotations

import itertools
import random
import string
from pathlib import Path

import pytest

from ingest.chunking import (
    Chunk,
    ChunkLimits,
    chunk_document,
    document_text,
    embed_prefix,
    sentence_spans,
)
from ingest.pipeline import ingest
from ingest.readers import ParsedDocument, Section
from rag.embeddings import Embedder
from rag.store import open_store
from tests.ingest_fixtures import make_settings


def chunk(embedder: Embedder, document: ParsedDocument, size: int, overlap: int) -> list[Chunk]:
    limits = ChunkLimits(size, overlap, embedder.max_tokens)
    return chunk_document(document, limits, embedder.count_tokens, embedder.token_offsets)


def model_input_tokens(embedder: Embedder, text: str) -> int:
    """Tokens the model is fed for `text`, special tokens included."""
    return len(embedder.tokenizer(text)["input_ids"])


def random_words(seed: int, count: int, punctuation: bool) -> str:
    rng = random.Random(seed)
    words = []
    for _ in range(count):
        word = "".join(
            rng.choice(string.ascii_lowercase + "éøü") for _ in range(rng.randint(3, 14))
        )
        words.append(word + (rng.choice(["", "", ",", ".", "!"]) if punctuation else ""))
    return " ".join(words)


SENTENCES = [
    f"Sentence number {n} talks about the {word} near the old harbour wall."
    for n, word in enumerate(
        ["gulls", "boats", "nets", "ropes", "crates", "lamps", "masts", "sails", "oars", "buoys",
         "anchors", "docks", "piers", "tides", "waves", "storms", "winds", "clouds"]
    )
]  # fmt: skip


def test_default_model_reads_256_tokens(embedder: Embedder) -> None:
    assert embedder.max_tokens == 256


@pytest.mark.parametrize("size", [128, 8192])
@pytest.mark.parametrize("punctuation", [True, False])
def test_embedded_text_never_exceeds_the_model_window(
    embedder: Embedder, size: int, punctuation: bool
) -> None:
    """Title, heading path, chunk and [CLS]/[SEP] together stay within 256 tokens, even with a
    heading path longer than the window and sentences cut mid-word."""
    long_heading = "An extremely long heading that is really a whole paragraph " * 30
    document = ParsedDocument(
        "Field notes of the long season",
        [
            Section(random_words(1, 1200, punctuation), ["Observations", "Cliffs"]),
            Section(random_words(2, 600, punctuation), [long_heading]),
        ],
    )
    chunks = chunk(embedder, document, size, 16)
    assert len(chunks) > 4
    text = document_text(document)
    for c in chunks:
        assert model_input_tokens(embedder, c.embed_text) <= embedder.max_tokens
        assert c.embed_text.endswith(c.text)  # the chunk itself is never what is cut
        assert c.n_tokens == embedder.count_tokens(c.text) <= size
        assert text[c.char_start : c.char_end] == c.text


def test_chunk_size_is_counted_in_model_tokens(embedder: Embedder) -> None:
    document = ParsedDocument("Harbour", [Section(" ".join(SENTENCES))])
    chunks = chunk(embedder, document, 32, 0)
    assert len(chunks) > 3
    for c in chunks:
        assert c.n_tokens == embedder.count_tokens(c.text) <= 32
    # Each chunk is as full as whole sentences allow: adding the next sentence would overflow.
    spans = sentence_spans(document.sections[0].text)
    for current, following in itertools.pairwise(chunks):
        next_sentence = next(s for s in spans if s[0] >= current.char_end)
        extra = embedder.count_tokens(document.sections[0].text[slice(*next_sentence)])
        assert current.n_tokens + extra > 32
        assert following.char_start <= next_sentence[0]


def test_chunks_end_on_sentence_boundaries(embedder: Embedder) -> None:
    text = " ".join(SENTENCES)
    document = ParsedDocument("Harbour", [Section(text)])
    starts = {start for start, _ in sentence_spans(text)}
    ends = {end for _, end in sentence_spans(text)}
    chunks = chunk(embedder, document, 40, 0)
    assert len(chunks) > 3
    for c in chunks:
        assert c.char_start in starts and c.char_end in ends
        assert c.text.endswith(".")
    # without overlap the chunks tile the text: every sentence exactly once
    assert " ".join(c.text for c in chunks) == text


def test_consecutive_chunks_overlap_by_whole_sentences(embedder: Embedder) -> None:
    text = " ".join(SENTENCES)
    document = ParsedDocument("Harbour", [Section(text)])
    overlap = 20
    chunks = chunk(embedder, document, 48, overlap)
    assert len(chunks) > 3
    starts = {start for start, _ in sentence_spans(text)}
    for previous, current in itertools.pairwise(chunks):
        assert current.char_start < previous.char_end  # they share text
        assert current.char_start in starts  # that starts on a sentence
        shared = text[current.char_start : previous.char_end]
        assert 0 < embedder.count_tokens(shared) <= overlap
        assert current.char_end > previous.char_end  # and progress is made


def test_chunks_do_not_cross_sections_and_keep_their_page(embedder: Embedder) -> None:
    document = ParsedDocument(
        "Manual",
        [Section(" ".join(SENTENCES[:9]), page=1), Section(" ".join(SENTENCES[9:]), page=2)],
    )
    chunks = chunk(embedder, document, 40, 8)
    boundary = len(document.sections[0].text)
    for c in chunks:
        assert c.char_end <= boundary or c.char_start > boundary
        assert c.page == (1 if c.char_end <= boundary else 2)
    assert {c.page for c in chunks} == {1, 2}


def test_embed_text_is_title_and_heading_path_then_chunk(embedder: Embedder) -> None:
    document = ParsedDocument(
        "Station Handbook", [Section("Dinner is at six.", ["Meals", "Times"])]
    )
    (only,) = chunk(embedder, document, 128, 16)
    assert (
        embed_prefix("Station Handbook", ("Meals", "Times")) == "Station Handbook > Meals > Times\n"
    )
    assert only.embed_text == "Station Handbook > Meals > Times\nDinner is at six."
    assert only.headings == ("Meals", "Times")


def test_stored_vector_is_the_embedding_of_title_headings_and_text(
    tmp_path: Path, embedder: Embedder
) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "guide.md").write_text(
        "# Kitchen Guide\n\n## Meals\n\nDinner is served at six in the mess hall.\n",
        encoding="utf-8",
    )
    settings = make_settings(tmp_path / "store")
    ingest(settings, [root], embedder=embedder)
    with open_store(settings) as store:
        (point,) = store.all_points()
    stored = point.dense
    # one text per call, as the document's one chunk was embedded (a batch pads its texts to
    # one length, which moves a quantized model's vectors slightly)
    (with_prefix,) = embedder.embed(
        ["Kitchen Guide > Meals\nDinner is served at six in the mess hall."]
    )
    (bare,) = embedder.embed(["Dinner is served at six in the mess hall."])

    def cosine(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cosine(stored, with_prefix) > 0.999
    assert cosine(stored, bare) < 0.99
