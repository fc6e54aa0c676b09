"""Index upkeep of the embedded store: building the search index without stopping search.

Qdrant Edge's `optimize()` (merging segments, building the HNSW graph and the sparse index)
blocks every query of that shard while it runs, a minute at 100,000 chunks. So it runs on a
copy: under the lock the chunk shard is flushed and copied; the lock is let go while the copy
is optimized (the app can open the store and search the unoptimized shard meanwhile); then,
under the lock again, if nothing was written in between, the optimized copy is swapped in by
two renames (`EdgeEngine.swap_chunks`, which a kill between them cannot break); otherwise
the copy is dropped and the next large ingest builds again.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rag.store.core import Store

INDEX_MIN_CHUNKS = 10_000  # an ingest that wrote at least this many chunks builds the index
Say = Callable[[str], None]


def disk_bytes(folder: Path) -> int:
    """Bytes the files under `folder` take on disk (Qdrant preallocates sparse files, so their
    apparent size says little)."""
    total = 0
    for path in folder.rglob("*"):
        try:
            if path.is_file():
                total += path.stat().st_blocks * 512
        except OSError:
            continue
    return total


def stamp(store: Store) -> str:
    """Changes whenever the store's content does: every write goes under a registry write."""
    digest = hashlib.sha256(str(store.count_chunks()).encode())
    for record in store.documents():
        digest.update(f"{record.doc_id}:{record.doc_hash}:{record.pending_gc};".encode())
    return digest.hexdigest()


def copy_tree(source: Path, target: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)
    try:  # keep preallocated files sparse
        subprocess.run(
            ["cp", "-a", "--sparse=always", str(source), str(target)],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError):
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target)


def build_index(store: Store, say: Say | None = None) -> dict[str, Any]:
    """Optimize the embedded store's chunk shard on a copy and swap it in; returns figures
    (`seconds`, `swapped`). `store` is open and this process's own (not the app's shared one);
    it is open again, with the same lock, when this returns."""
    say = say or (lambda message: None)
    engine = store.engine
    if store.kind != "embedded" or not store.exists():
        return {"seconds": 0.0, "swapped": False}
    started = time.perf_counter()
    chunks_dir = engine.folder / "chunks"
    building = engine.folder / "chunks.building"
    before = stamp(store)
    engine.flush()
    failed = None
    with store.released():  # the shard must be closed for a consistent copy
        try:
            copy_tree(chunks_dir, building)
            _optimize(building, say, started)
        except (OSError, RuntimeError) as err:  # search works without it: say so, go on
            failed = err
    if failed is not None:
        shutil.rmtree(building, ignore_errors=True)
        say(f"The search index was not built ({failed}); search works without it, slower.")
        return {"seconds": round(time.perf_counter() - started, 1), "swapped": False}
    swapped = stamp(store) == before
    if swapped:
        engine.swap_chunks(building)
        say(f"Search index built in {time.perf_counter() - started:.0f} s.")
    else:
        shutil.rmtree(building, ignore_errors=True)
        say("The knowledge base changed while its index was built; the next ingest builds it.")
    return {"seconds": round(time.perf_counter() - started, 1), "swapped": swapped}


_OPTIMIZE = """
import sys
import qdrant_edge as q
shard = q.EdgeShard.load(sys.argv[1])
shard.optimize()
shard.flush()
shard.close()
"""


def _optimize(folder: Path, say: Say, started: float) -> None:
    """Optimize the shard in `folder` in a child process (the engine holds the GIL while it
    optimizes, so progress is told from here)."""
    child = subprocess.Popen(
        [sys.executable, "-c", _OPTIMIZE, str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    while True:
        try:
            _, err = child.communicate(timeout=5.0)
            break
        except subprocess.TimeoutExpired:
            say(f"Building the search index ({time.perf_counter() - started:.0f} s) ...")
    if child.returncode != 0:
        last = (err or b"").decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"optimizing the index failed: {last[0]}")
