"""The composition root: a ready `Chain` from the settings, for the CLIs, the app and eval."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from rag.chain import Chain
from rag.embeddings import Embedder
from rag.ollama_client import OllamaGateway
from rag.retrieve import RetrievalParams
from rag.settings import Settings
from rag.store import open_store


@contextmanager
def open_chain(
    settings: Settings,
    embedder: Embedder | None = None,
    gateway: OllamaGateway | None = None,
    params: RetrievalParams | None = None,
) -> Iterator[Chain]:
    """Open the store (and a gateway, unless one is given) for one operation."""
    with ExitStack() as stack:
        store = stack.enter_context(open_store(settings))
        if gateway is None:
            gateway = stack.enter_context(OllamaGateway(settings))
        yield Chain(settings, store, embedder or Embedder(settings), gateway, params)
