"""BM25 sparse vectors, token ids and weights compatible with Qdrant's own `qdrant/bm25`.

Qdrant Edge's embedder runs offline (no model download, unlike fastembed's) and uses the
server's tokenizer, stopwords and stemmer; Qdrant applies IDF itself through the sparse
vector's IDF modifier, in embedded and server mode alike.

New stores use the multilingual tokenizer, which cuts Chinese and Japanese text into words
(a Chinese clause is one token to the word tokenizer, so it never matches) and gives English
words the ids the word tokenizer gives them. A store records its tokenizer (`StoreMeta.bm25`)
and queries are encoded with the recorded one: stores built before record none and keep the
word tokenizer.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from rag.store.records import SparseVector

DEFAULT_TOKENIZER = "multilingual"
LEGACY_TOKENIZER = "word"  # what a store that records no tokenizer was built with
DEFAULT_AVG_LEN = 100.0


class Bm25Encoder:
    def __init__(
        self,
        avg_len: float = DEFAULT_AVG_LEN,
        language: str = "english",
        tokenizer: str = DEFAULT_TOKENIZER,
    ) -> None:
        self.avg_len = avg_len
        self.language = language
        self.tokenizer = tokenizer

    @classmethod
    def recorded(cls, bm25: dict[str, Any] | None) -> Bm25Encoder:
        """The encoder a store's recorded settings (`StoreMeta.bm25`) describe; an empty
        record is a store from before tokenizers were recorded."""
        bm25 = bm25 or {}
        return cls(
            avg_len=float(bm25.get("avg_len") or DEFAULT_AVG_LEN),
            language=str(bm25.get("language") or "english"),
            tokenizer=str(bm25.get("tokenizer") or LEGACY_TOKENIZER),
        )

    @cached_property
    def _model(self) -> Any:
        from qdrant_edge import Bm25, Bm25Config, TokenizerType

        kind = getattr(TokenizerType, self.tokenizer.capitalize(), None)
        if kind is None:
            raise ValueError(f"unknown BM25 tokenizer {self.tokenizer!r}")
        config = Bm25Config(language=self.language, avg_len=float(self.avg_len), tokenizer=kind)
        return Bm25(config)

    def document(self, text: str) -> SparseVector:
        return _to_sparse(self._model.embed_document(text))

    def query(self, text: str) -> SparseVector:
        return _to_sparse(self._model.embed_query(text))

    def describe(self) -> dict[str, Any]:
        """The tokenizer settings a store records (BM25 weights depend on them)."""
        return {
            "encoder": "qdrant_edge.Bm25",
            "language": self.language,
            "avg_len": self.avg_len,
            "tokenizer": self.tokenizer,
        }


def _to_sparse(vector: Any) -> SparseVector:
    return SparseVector(
        tuple(int(i) for i in vector.indices), tuple(float(v) for v in vector.values)
    )
