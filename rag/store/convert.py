"""Converting a store made by an earlier kb (qdrant-client's local mode in `KB_QDRANT_PATH`).

It is converted from what it holds (records, chunk payloads and their vectors), not from its
files: read through qdrant-client, written into a new embedded store beside it under a
temporary name that is renamed into place only when complete. The old store stays where it
was; a kill during conversion leaves it untouched and the conversion starts again.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from rag.embeddings import identity_parts, vector_kind
from rag.settings import Settings
from rag.store.client import ClientEngine
from rag.store.edge import EdgeEngine, edge_dir, read_sidecar
from rag.store.records import ChunkPoint, StoreMeta
from rag.store.reembed import (
    ChunkEmbedder,
    in_batches,
    kind_differs,
    recorded_identity,
    reembedded,
)

if TYPE_CHECKING:
    from pathlib import Path

    from rag.store.core import FolderLock, Store

BATCH = 1024
Say = Callable[[str], None]


def legacy_present(settings: Settings) -> bool:
    try:
        meta = json.loads((settings.qdrant_path / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return settings.collection in (meta.get("collections") or {})


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def convert_if_needed(
    settings: Settings,
    lock: FolderLock,
    embedder: ChunkEmbedder | None = None,
    say: Say = _say,
) -> bool:
    """Convert an old store if there is one and no new one; True if the lock was let go
    (qdrant-client takes the same lock file itself while it reads). With an `embedder` whose
    vectors are of another kind than the old store's (torch fp32), its chunks are re-embedded."""
    from rag.store.core import Store, _locked_error

    folder = edge_dir(settings.qdrant_path, settings.collection)
    if read_sidecar(folder) is not None or not legacy_present(settings):
        return False
    lock.release()
    from qdrant_client import QdrantClient

    try:
        client = QdrantClient(path=str(settings.qdrant_path))
    except RuntimeError as err:
        if "already accessed by another instance" in str(err):
            raise _locked_error(settings, lock) from None
        raise
    try:
        old = Store(ClientEngine(client, settings.collection), settings)
        old_meta = old.meta()
        if old_meta is None:
            return True
        convert(old, settings, folder, old_meta, say, embedder)
    finally:
        client.close()
    return True


def convert(
    old: Store,
    settings: Settings,
    folder: Path,
    old_meta: StoreMeta,
    say: Say,
    embedder: ChunkEmbedder | None = None,
) -> int:
    """Write what `old` holds into a new embedded store at `folder`; returns the chunks. The
    vectors are copied, or made again by `embedder` when they are of another kind."""
    from rag.store.core import Store

    total = old.count_chunks()
    identity = recorded_identity(old_meta)
    if "|" not in identity:  # an earlier kb recorded the model alone; it embedded with torch
        identity = f"{identity}|torch"
    again = _reembedder(old_meta, embedder)
    how = (
        f", re-embedding its chunks with {identity_parts(again.identity)[1]} "
        f"(they hold {vector_kind(identity)} vectors)"
        if again is not None
        else ""
    )
    say(
        f"Converting the knowledge base in {settings.qdrant_path} ({total:,} chunks) to the "
        f"new embedded store{how}; the old store stays in place until the new one is complete."
    )
    building = folder.with_name(folder.name + ".converting")
    shutil.rmtree(building, ignore_errors=True)
    meta = StoreMeta(
        embed_model=old_meta.embed_model,
        embed_dim=old_meta.embed_dim,
        embed_identity=again.identity if again is not None else identity,
        bm25=old_meta.bm25 or {"language": "english"},
    )
    new = Store(EdgeEngine(building), settings)
    try:
        new.create(meta)
        records = old.documents()

        def write(batch: list[ChunkPoint]) -> None:
            new.write_chunks(batch if again is None else reembedded(batch, again))

        done = in_batches(old.all_points(), BATCH, write, total, "Converting", say)
        new.put_records(records)  # the registry last, as ingest writes it
    finally:
        new.close()
    os.replace(building, folder)
    say(f"Converted: {done:,} chunks of {len(records):,} documents.")
    return done


def _reembedder(old_meta: StoreMeta, embedder: ChunkEmbedder | None) -> ChunkEmbedder | None:
    """`embedder` when it makes vectors of another kind for the same model and dimension."""
    if embedder is None or not kind_differs(old_meta, embedder.identity):
        return None
    return embedder if embedder.dim == old_meta.embed_dim else None  # else ingest refuses it
