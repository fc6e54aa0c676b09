"""BM25 sparse vectors, token ids and weights compatible with Qdrant's own `qdrant/bm25`.

Qdrant Edge's embedder runs offline (no model download, unlike fastembed's) and uses the
server's tokenizer, stopwords and stemmer; Qdrant applies IDF itself through the sparse
vector's IDF modifier, in embedded and server mode alike.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from rag.store.records import SparseVector


class Bm25Encoder:
    def __init__(self, avg_len: float = 100.0, language: str = "english") -> None:
        self.avg_len = avg_len
        self.language = language

    @cached_property
    def _model(self) -> Any:
        from qdrant_edge import Bm25, Bm25Config

        return Bm25(Bm25Config(language=self.language, avg_len=float(self.avg_len)))

    def document(self, text: str) -> SparseVector:
        return _to_sparse(self._model.embed_document(text))

    def query(self, text: str) -> SparseVector:
        return _to_sparse(self._model.embed_query(text))

    def describe(self) -> dict[str, Any]:
        """The tokenizer settings a store records (BM25 weights depend on them)."""
        return {"encoder": "qdrant_edge.Bm25", "language": self.language, "avg_len": self.avg_len}


def _to_sparse(vector: Any) -> SparseVector:
    return SparseVector(
        tuple(int(i) for i in vector.indices), tuple(float(v) for v in vector.values)
    )
