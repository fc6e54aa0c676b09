"""`python -m eval bench`: the performance figures in one run.

1. Ingest: `eval.bench_ingest.run_benchmark` on the dataset's `docs/` in a temporary store (raw
   embedding throughput, end-to-end ingest, their ratio, the unchanged rerun).
2. Retrieval latency without any model, `Retriever.search` per question (query embedding, the
   hybrid Qdrant query, the registry read), p50/p95: on the configured store (after ingesting
   the dataset into it, as the other commands do), on a synthetic store of 10,000 chunks and on
   one of `--chunks` (default 100,000) chunks (`eval/synthetic.py`), both in a temporary
   folder. Beside it, the query embedding alone and Qdrant's dense and BM25 searches alone, so
   the cost of each part is visible.
3. The chain's own time before the first token: `Chain.stream` to its first delta, minus a
   direct `ChatBackend.chat` to its first `TextDelta` with the same messages, window and answer
   length, per question, against an in-process `eval.fake_ollama.FakeOllama` over HTTP (the
   project's own fake: its reply costs the same on both paths, so the difference is the
   chain's: resolving the model, its facts, the token budget, retrieval and packing), on the
   configured store and on the 10,000-chunk one. The fake gets `Services` of its own (its
   settings: only the fake Ollama as model server, data in a scratch folder), sharing the
   embedder of the `Services` passed in.

The embedded Qdrant (no QDRANT_URL) searches in Python: dense search is a numpy scan, but the
BM25 sparse search walks every point, so its cost grows linearly with the store; the figures
at 10k and 100k chunks show it. A Qdrant server (`QDRANT_URL`, `docker compose up qdrant`)
keeps an inverted index and is the remedy for large knowledge bases.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from eval.corpus import IngestHook, ingest_docs
from eval.dataset import load_eval_set
from eval.fake_ollama import FakeOllama
from eval.metrics import percentile
from eval.synthetic import SyntheticCorpus, build_synthetic_store, sentences_of
from rag.chain import Chain
from rag.errors import KBError
from rag.llm.base import ChatBackend, TextDelta
from rag.retrieve import RetrievalParams, Retriever
from rag.service import Services, build_services
from rag.settings import Settings
from rag.sparse import Bm25Encoder
from rag.store import DENSE, SPARSE, Store, open_store

CHAIN_STORE_CHUNKS = 10_000
LARGE_STORE_QUERIES = 10  # a query on 100k chunks can take seconds in the embedded store
FAKE_MODEL = "fake-llama3:8b"
SENTENCE_SOURCE_CHUNKS = 5_000
RETRIEVAL_PARTS = ("retrieval", "query_embedding", "qdrant_dense", "qdrant_bm25")
Notify = Callable[[str], None]


def run_bench_all(
    services: Services,
    dataset: Path,
    *,
    large_chunks: int = 100_000,
    chain_chunks: int = CHAIN_STORE_CHUNKS,
    questions: int = 30,
    notify: Notify | None = None,
    on_ingest: IngestHook | None = None,
) -> dict[str, Any]:
    """Every figure of the module docstring, as JSON-ready data: `ingest`, then `stores`, one
    row per store (`chunks`, `retrieval`, `query_embedding`, `qdrant_dense`, `qdrant_bm25`, each
    `timing()` in ms, and `chain_overhead` on the configured and the `chain_chunks` store).
    `questions` questions of the eval set (repeated as needed) are timed per figure. Progress
    goes to `notify`, one sentence each. Raises `KBError` for an unusable eval set or store."""
    say = notify or (lambda message: None)
    settings = services.settings
    eval_set = load_eval_set(dataset)
    asked = [item.question for item in eval_set.items]
    asked = [asked[i % len(asked)] for i in range(questions)]
    say("Ingest benchmark (raw embedding against the pipeline) ...")
    results: dict[str, Any] = {
        "dataset": str(dataset),
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average_at_start": load_average(),
        "ingest": ingest_figures(eval_set),
    }
    with ExitStack() as stack:
        store = stack.enter_context(services.open_store())
        ingest_docs(settings, store, services.embedder, eval_set.docs_dir, on_ingest)
        fake = stack.enter_context(FakeOllama())
        bench = _Bench(services, fake, asked, stack)
        say(f"Retrieval and chain on the configured store ({store.count_chunks():,} chunks) ...")
        results["stores"] = [bench.measure_store("configured store", store, chain=True)]
        samples = sentences_of(_sample_texts(store))
        for size in dict.fromkeys([chain_chunks, large_chunks]):
            say(f"Synthetic store of {size:,} chunks: building ...")
            synthetic, build_s = bench.synthetic_store(size, samples)
            say(f"Synthetic store of {size:,} chunks: built in {build_s:.0f} s, measuring ...")
            row = bench.measure_store(
                f"synthetic {size:,}", synthetic, chain=size == chain_chunks,
                queries=LARGE_STORE_QUERIES if size > chain_chunks else None,
            )  # fmt: skip
            results["stores"].append({**row, "build_s": round(build_s, 1)})
    results["load_average_at_end"] = load_average()
    return results


def ingest_figures(eval_set: Any) -> dict[str, Any]:
    from eval.bench_ingest import run_benchmark

    with tempfile.TemporaryDirectory(prefix="kb-bench-ingest-") as scratch:
        return run_benchmark(eval_set.docs_dir, Path(scratch) / "store")


def _sample_texts(store: Store) -> list[str]:
    points, _ = store.client.scroll(
        store.chunks, limit=SENTENCE_SOURCE_CHUNKS, with_payload=["text"], with_vectors=False
    )
    return [point.payload["text"] for point in points]


def ram_folder() -> str | None:
    """A RAM-backed folder for the synthetic stores, when the system has one: the embedded
    Qdrant commits every upserted point to SQLite, about 2 ms a point on disk, which would make
    building 100,000 chunks take minutes. Search reads memory only, so it is not affected."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages: figures taken on a busy machine say so."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def timing(values_s: Sequence[float]) -> dict[str, float]:
    """p50, p95 and mean of some durations, in milliseconds."""
    ms = [value * 1000 for value in values_s]
    return {
        "p50_ms": round(percentile(ms, 50), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "mean_ms": round(sum(ms) / len(ms), 2),
        "n": len(ms),
    }


def _timed(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


class _Bench:
    """The measurements, with a scratch folder and `Services` on the fake Ollama that live as
    long as `stack`."""

    def __init__(
        self, services: Services, fake: FakeOllama, questions: Sequence[str], stack: ExitStack
    ) -> None:
        self.settings = services.settings
        self.embedder = services.embedder
        self.fake = fake
        self.questions = list(questions)
        self.stack = stack
        scratch = tempfile.TemporaryDirectory(prefix="kb-bench-", dir=ram_folder())
        self.scratch = Path(stack.enter_context(scratch))
        fake_settings = self._fake_settings(self.settings)
        self.fake_services = stack.enter_context(
            build_services(fake_settings, embedder=services.embedder)
        )

    def _fake_settings(self, settings: Settings, **changes: Any) -> Settings:
        """`settings` with the fake Ollama as the only model server and data in the scratch."""
        update = {
            "ollama_host": self.fake.url, "ollama_hosts": [], "openai_base_url": None,
            "openai_servers": [], "model": FAKE_MODEL, "data_dir": self.scratch / "data",
            **changes,
        }  # fmt: skip
        return settings.model_copy(update=update)

    def synthetic_store(self, size: int, sentences: Sequence[str]) -> tuple[Store, float]:
        """A store of `size` synthetic chunks in the scratch folder (the bench's own, never the
        knowledge base), and the seconds it took to build."""
        settings = self._fake_settings(
            self.settings, qdrant_path=self.scratch / f"synthetic-{size}", qdrant_url=None
        )
        store = self.stack.enter_context(open_store(settings))
        started = time.perf_counter()
        build_synthetic_store(
            store, size, SyntheticCorpus(sentences, _chunk_chars(self.settings)),
            embed_model=self.settings.embed_model, dim=self.embedder.dim,
            bm25_avg_len=max(16.0, self.settings.chunk_size * 0.5),
        )  # fmt: skip
        return store, time.perf_counter() - started

    def measure_store(
        self, name: str, store: Store, chain: bool, queries: int | None = None
    ) -> dict[str, Any]:
        questions = self.questions[:queries] if queries else self.questions
        retriever = Retriever(store, self.embedder)
        retriever.search(questions[0])  # warm-up: model, caches
        row: dict[str, Any] = {
            "store": name,
            "chunks": store.count_chunks(),
            "retrieval": timing([_timed(lambda q=q: retriever.search(q)) for q in questions]),
            "query_embedding": timing(
                [_timed(lambda q=q: self.embedder.embed_query(q)) for q in questions]
            ),
            "qdrant_dense": timing([self._dense_only(store, q) for q in questions]),
            "qdrant_bm25": timing([self._sparse_only(store, q) for q in questions]),
        }
        if chain:
            row["chain_overhead"] = self.chain_overhead(store)
        return row

    def _dense_only(self, store: Store, question: str) -> float:
        vector = self.embedder.embed_query(question)
        return _timed(lambda: store.client.query_points(
            store.chunks, query=vector, using=DENSE, limit=RetrievalParams().prefetch
        ))  # fmt: skip

    def _sparse_only(self, store: Store, question: str) -> float:
        vector = Bm25Encoder().query(question)
        return _timed(lambda: store.client.query_points(
            store.chunks, query=vector, using=SPARSE, limit=RetrievalParams().prefetch
        ))  # fmt: skip

    def chain_overhead(self, store: Store) -> dict[str, Any]:
        """`Chain.stream` to its first delta minus a direct `ChatBackend.chat` to its first
        `TextDelta` with the request the chain sent, per question; `timing()` of each."""
        chain = self.fake_services.chain(store)
        ref = self.fake_services.models.resolve(FAKE_MODEL)
        backend = self.fake_services.models.backend(ref.server)
        _first_delta(chain, self.questions[0])  # warm-up: model facts, calibration file
        chain_s, direct_s = [], []
        for question in self.questions:
            chain_s.append(_first_delta(chain, question))
            sent = self.fake.requests_to("/api/chat")[-1].body or {}
            direct_s.append(_first_text_delta(backend, ref.name, sent))
        overhead = [c - d for c, d in zip(chain_s, direct_s, strict=True)]
        return {
            "chain_first_delta": timing(chain_s),
            "direct_first_delta": timing(direct_s),
            "overhead": timing(overhead),
        }


def _chunk_chars(settings: Settings) -> int:
    return int(settings.chunk_size * 4.5)  # about what a chunk of the MiniLM tokenizer holds


def _first_delta(chain: Chain, question: str) -> float:
    """Seconds from `Chain.stream` to its first text delta; the stream is read to its end."""
    started = time.perf_counter()
    first: float | None = None
    for event in chain.stream(question):
        if first is None and isinstance(event, str):
            first = time.perf_counter() - started
    if first is None:
        raise KBError("The fake Ollama sent no answer during the bench; this is a bug.")
    return first


def _first_text_delta(backend: ChatBackend, model: str, body: dict[str, Any]) -> float:
    """Seconds from `backend.chat` to its first `TextDelta`, sending the messages, window
    (`num_ctx`) and answer length (`num_predict`) of a logged Ollama request `body`; the stream
    is read to its end, as the chain reads it."""
    options = body.get("options") or {}
    started = time.perf_counter()
    first: float | None = None
    events = backend.chat(
        model, body["messages"], window=options["num_ctx"], max_tokens=options["num_predict"]
    )
    for event in events:
        if first is None and isinstance(event, TextDelta):
            first = time.perf_counter() - started
    return first if first is not None else time.perf_counter() - started


# -- the table -------------------------------------------------------------------------------


def format_bench(results: dict[str, Any]) -> str:
    from eval.bench_ingest import format_table

    lines = ["Ingest", format_table(results["ingest"]), "", "Retrieval (no model), ms p50 / p95"]
    headers = ("search", "embed query", "qdrant dense", "qdrant bm25")
    lines.append(f"{'store':<20}{'chunks':>9}" + "".join(f"{h:>17}" for h in headers))
    for row in results["stores"]:
        cells = [_pair(row[key]) for key in RETRIEVAL_PARTS]
        lines.append(f"{row['store']:<20}{row['chunks']:>9,}" + "".join(f"{c:>17}" for c in cells))
    lines += ["", "Time the chain adds before the first token (fake Ollama), ms p50 / p95"]
    for row in results["stores"]:
        if "chain_overhead" in row:
            o = row["chain_overhead"]
            lines.append(
                f"{row['store']:<20}chain {_pair(o['chain_first_delta'])}, direct "
                f"{_pair(o['direct_first_delta'])}, overhead {_pair(o['overhead'])}"
            )
    lines += [
        "",
        f"Load average (1, 5, 15 min) at start {results['load_average_at_start']}, at end "
        f"{results['load_average_at_end']}, on {results['cpus']} CPUs.",
        "The embedded Qdrant runs BM25 search in Python over every point, so it grows with the "
        "store; set QDRANT_URL to a Qdrant server for large knowledge bases.",
    ]
    return "\n".join(lines)


def _pair(figures: dict[str, float]) -> str:
    return f"{figures['p50_ms']:.1f} / {figures['p95_ms']:.1f}"
