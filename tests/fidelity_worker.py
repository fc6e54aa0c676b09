"""The half of `tests.bench_fidelity` that runs inside one version of kb's code.

Run as a script (`python -P tests/fidelity_worker.py`) with that version's source folder first
on PYTHONPATH, so `ingest` and `rag` are that version's; it imports nothing from `eval` (an
older checkout has its own). It loads the embedder once, says `{"ready": ...}` on stdout, then
answers one JSON command per stdin line with one JSON line:

- `{"op": "ingest", "docs": DIR, "store": DIR}`: ingest DIR into a new embedded store;
  `{"chunks", "seconds", "cpu_seconds", "added", "failed", "ocr_seconds", "ocr_pages",
  "unread_pages"}` (seconds of reading, chunking, embedding and writing, as the report
  counts them; the OCR fields are 0 for code without OCR);
- `{"op": "search", "store": DIR, "questions": [...], "k": 5}`: `{"results": [[{"path",
  "text"}, ...], ...]}`, the top k passages of each question as the app retrieves them;
- `{"op": "quit"}`.

Only functions both the code before issue 11 and today's have are called.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

COLLECTION = "fidelity"


def _settings(store: str) -> Any:
    from rag.settings import load_settings

    return load_settings(
        qdrant_path=Path(store), qdrant_url=None, qdrant_api_key=None, collection=COLLECTION
    )


def _ingest(embedder: Any, command: dict[str, Any]) -> dict[str, Any]:
    from ingest.pipeline import ingest

    cpu_started = time.process_time()
    report = ingest(_settings(command["store"]), [Path(command["docs"])], embedder=embedder)
    return {
        "chunks": report.chunks_written,
        "seconds": report.seconds,
        "cpu_seconds": round(time.process_time() - cpu_started, 3),
        "added": report.added,
        "failed": report.failed,
        "ocr_seconds": getattr(report, "ocr_seconds", 0.0),
        "ocr_pages": sum(len(item["pages"]) for item in getattr(report, "ocr_pages", [])),
        "unread_pages": len(getattr(report, "unread_pages", [])),
    }


def _search(embedder: Any, command: dict[str, Any]) -> dict[str, Any]:
    from rag.retrieve import Retriever
    from rag.store import open_store

    settings = _settings(command["store"])
    with open_store(settings, embedder=embedder) as store:
        retriever = Retriever(store, embedder)
        results = [
            [{"path": p.path, "text": p.text} for p in retriever.search(q)[: command["k"]]]
            for q in command["questions"]
        ]
    return {"results": results}


def main() -> int:
    import logging

    import ingest
    from rag.embeddings import Embedder

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    out, sys.stdout = sys.stdout, sys.stderr  # a library's print must not break the protocol
    embedder = Embedder(_settings("unused"))
    embedder.embed(["warm-up"])  # load the model outside every timing
    _answer(out, {"ready": True, "code": str(Path(ingest.__file__).parent.parent)})
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "quit":
            break
        handler = {"ingest": _ingest, "search": _search}[command["op"]]
        _answer(out, handler(embedder, command))
    return 0


def _answer(out: Any, value: dict[str, Any]) -> None:
    out.write(json.dumps(value, ensure_ascii=False) + "\n")
    out.flush()


if __name__ == "__main__":
    raise SystemExit(main())
