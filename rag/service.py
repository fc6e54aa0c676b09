"""The composition root: settings, embedder, store access and model servers, built once.

Each entry point builds one `Services` (`build_services`) and hands it down: the three command
lines in their `main`, the app once per process (`ui/resources.py`), eval's commands and pages.
Nothing below it builds an embedder, a store connection or a model client of its own.
(PrivateGPT's components-and-services, without a DI container; simonw/llm's registered models
are `extra_backends`, which is how the tests add their in-process fake model.)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field

from rag.calibration import Calibration
from rag.chain import Chain, StoreLease
from rag.embeddings import Embedder
from rag.llm import open_models
from rag.llm.base import ChatBackend
from rag.llm.hub import ModelHub
from rag.retrieve import RetrievalParams
from rag.settings import Settings
from rag.store import SharedStore, Store, open_store


@dataclass
class Services:
    """What every consumer of `rag/` needs, built once. `models` routes by model id over every
    configured server; `embedder` loads its model on first use; `open_store()` gives the store
    for one operation (the app's is shared and released when idle, see `SharedStore`), opened
    with `embedder` so that converting an earlier kb's store re-embeds it when needed."""

    settings: Settings
    models: ModelHub
    embedder: Embedder
    calibration: Calibration
    shared_store: SharedStore | None = field(default=None)

    def open_store(self, lock_wait_s: float | None = None) -> AbstractContextManager[Store]:
        """The store for one operation. Raises `StoreLockedError` or `StoreUnavailableError`."""
        if self.shared_store is not None:
            return self.shared_store.use(lock_wait_s)
        return open_store(self.settings, lock_wait_s, self.embedder)

    def chain(self, store: Store | StoreLease, params: RetrievalParams | None = None) -> Chain:
        return Chain(self.settings, store, self.embedder, self.models, params, self.calibration)

    @contextmanager
    def open_chain(self, params: RetrievalParams | None = None) -> Iterator[Chain]:
        """A chain over the store. A shared store is taken for each retrieval only, and let go
        when idle (`SharedStore`), so an answer being written does not hold it; any other store
        is held for the block."""
        if self.shared_store is not None:
            yield self.chain(self.shared_store.use, params)
            return
        with self.open_store() as store:
            yield self.chain(store, params)

    def close(self) -> None:
        self.models.close()
        if self.shared_store is not None:
            self.shared_store.close()

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def build_services(
    settings: Settings,
    *,
    embedder: Embedder | None = None,
    extra_backends: Sequence[ChatBackend] = (),
    models: ModelHub | None = None,
    shared_store: bool = False,
    store_idle_s: float = 2.0,
) -> Services:
    """Build everything once. Opening nothing yet: no connection is made and no model loaded
    until first used. `shared_store` keeps one store open across operations and lets go of it
    after `store_idle_s` seconds unused (the app; `rag ask`, with 0)."""
    embedder = embedder or Embedder(settings)
    shared = SharedStore(settings, store_idle_s, embedder) if shared_store else None
    return Services(
        settings=settings,
        models=models or open_models(settings, extra_backends),
        embedder=embedder,
        calibration=Calibration(settings.data_dir),
        shared_store=shared,
    )
