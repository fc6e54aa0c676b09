"""`python -m eval bench`: the performance figures in one run.

1. Ingest: `eval.bench_ingest.run_benchmark` on the dataset's `docs/` in a temporary store (raw
   embedding throughput, end-to-end ingest, their ratio, the unchanged rerun).
2. Retrieval latency without any model, `Retriever.search` per question (query embedding, the
   hybrid query, the registry read), p50/p95: on the evaluation store (after ingesting the
   dataset into it, as the other commands do), on a synthetic store of 10,000 chunks and on
   one of `--chunks` (default 100,000) chunks (`eval/synthetic.py`, real sentences), both in a
   temporary folder, each after its search index is built (`rag.store.upkeep.build_index`,
   timed apart). Beside it, the query embedding alone and the dense and BM25 searches alone, so
   the cost of each part is visible; per synthetic store also build time, index time, open
   time and disk use. Each synthetic store is built and measured a second time in today's
   engine (qdrant-client's local mode, the embedded store before Qdrant Edge), side by side.
3. The chain's own time before the first token: `Chain.stream` to its first delta, minus a
   direct `ChatBackend.chat` to its first `TextDelta` with the same messages, window and answer
   length, per question, against an in-process `eval.fake_ollama.FakeOllama` over HTTP (the
   project's own fake: its reply costs the same on both paths, so the difference is the
   chain's: resolving the model, its facts, the token budget, retrieval and packing), on the
   evaluation store and on the 10,000-chunk one. The fake gets `Services` of its own (its
   settings: only the fake Ollama as model server, data in a scratch folder), sharing the
   embedder of the `Services` passed in.

Peak memory is the process's (`ru_maxrss`), for the whole run.
"""

from __future__ import annotations

import os
import resource
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from itertools import count, islice
from pathlib import Path
from typing import Any

from eval.corpus import IngestHook, ingest_docs, open_eval_store
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
from rag.store import SharedStore, Store, disk_bytes, open_store
from rag.store.client import ClientEngine
from rag.store.upkeep import build_index

CHAIN_STORE_CHUNKS = 10_000
FAKE_MODEL = "fake-llama3:8b"
SENTENCE_SOURCE_CHUNKS = 5_000
# a search this often while the index is built: the app lets go of the store after 2 s idle,
# and the swap at the end needs the lock, so a slower pace than that
SEARCH_EVERY_S = 3.0
APP_IDLE_S = 2.0  # `SharedStore`'s default
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
    legacy: bool = True,
    search_every_s: float = SEARCH_EVERY_S,
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
        store = stack.enter_context(open_eval_store(services))
        ingest_docs(settings, store, services.embedder, eval_set.docs_dir, on_ingest)
        fake = stack.enter_context(FakeOllama())
        bench = _Bench(services, fake, asked, stack)
        say(f"Retrieval and chain on the evaluation store ({store.count_chunks():,} chunks) ...")
        results["stores"] = [bench.measure_store("evaluation store", store, chain=True)]
        samples = sentences_of(_sample_texts(store))
        results["legacy_stores"] = []
        for size in dict.fromkeys([chain_chunks, large_chunks]):
            say(f"Synthetic store of {size:,} chunks: building ...")
            synthetic, build_s = bench.synthetic_store(size, samples)
            say(
                f"Synthetic store of {size:,} chunks: built in {build_s:.0f} s, indexing "
                "while another opener searches ..."
            )
            index, during = bench.index_while_searching(synthetic, say, search_every_s)
            say(f"Synthetic store of {size:,} chunks: measuring ...")
            row = bench.measure_store(f"synthetic {size:,}", synthetic, chain=True)
            row.update(
                build_s=round(build_s, 1),
                index_s=index["seconds"],
                index_swapped=index["swapped"],
                search_during_index=during,
                open_s=_reopen_s(synthetic),
                disk_mib=round(disk_bytes(synthetic.settings.qdrant_path) / 2**20, 1),
            )
            results["stores"].append(row)
            if legacy:
                say(f"Today's engine (qdrant-client local mode), {size:,} chunks: building ...")
                results["legacy_stores"].append(bench.legacy_row(size, samples, chain_chunks))
    results["load_average_at_end"] = load_average()
    results["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return results


def _reopen_s(store: Store) -> float:
    """Seconds to close the embedded store and open it again (the lock, both shards)."""
    with store.released():  # closed here; timed: taking the lock and loading the shards
        started = time.perf_counter()
    return round(time.perf_counter() - started, 3)


def ingest_figures(eval_set: Any) -> dict[str, Any]:
    from eval.bench_ingest import run_benchmark

    with tempfile.TemporaryDirectory(prefix="kb-bench-ingest-") as scratch:
        return run_benchmark(eval_set.docs_dir, Path(scratch) / "store")


def _sample_texts(store: Store) -> list[str]:
    return [chunk.text for chunk in islice(store.all_chunks(), SENTENCE_SOURCE_CHUNKS)]


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
            "ollama_enabled": True, "ollama_host": self.fake.url, "ollama_hosts": [],
            "openai_base_url": None,
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
        return store, self._fill(store, size, sentences)

    def _fill(self, store: Store, size: int, sentences: Sequence[str]) -> float:
        """Write `size` synthetic chunks into `store`; the seconds it took."""
        started = time.perf_counter()
        build_synthetic_store(
            store, size, SyntheticCorpus(sentences, _chunk_chars(self.settings)),
            embed_model=self.settings.embed_model, embed_identity=self.embedder.identity,
            dim=self.embedder.dim,
            bm25_avg_len=max(16.0, self.settings.chunk_size * 0.5),
        )  # fmt: skip
        return time.perf_counter() - started

    def legacy_row(self, size: int, sentences: Sequence[str], chain_chunks: int) -> dict[str, Any]:
        """Today's engine beside the new one: the same synthetic store in qdrant-client's local
        mode (what kb used before Qdrant Edge), measured the same way."""
        from qdrant_client import QdrantClient

        folder = self.scratch / f"legacy-{size}"
        folder.mkdir()
        settings = self._fake_settings(self.settings, qdrant_path=folder, qdrant_url=None)
        store = Store(ClientEngine(QdrantClient(path=str(folder)), settings.collection), settings)
        build_s = self._fill(store, size, sentences)
        store.close()
        started = time.perf_counter()
        store = Store(ClientEngine(QdrantClient(path=str(folder)), settings.collection), settings)
        open_s = time.perf_counter() - started
        try:
            row = self.measure_store(
                f"today's {size:,}", store, chain=True,
            )  # fmt: skip
        finally:
            store.close()
        row.update(
            build_s=round(build_s, 1), open_s=round(open_s, 3),
            disk_mib=round(disk_bytes(folder) / 2**20, 1),
        )  # fmt: skip
        return row

    def index_while_searching(
        self, store: Store, say: Notify, every_s: float = SEARCH_EVERY_S
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """`build_index` on `store` while a thread searches it every `every_s` seconds the
        way the app does (a `SharedStore` of its own: open, search, let go when idle), so a
        search has to wait for the lock, open the store and query it while the index is built
        and swapped. Returns the build's figures and the searches' `timing()` (seconds from
        asking to passages, opening included), with `failed`: how many got an error."""
        # the app's idle time, shorter when searching more often (tests), so the swap gets in
        shared = SharedStore(store.settings, min(APP_IDLE_S, every_s / 2), self.embedder)
        seconds: list[float] = []
        failed: list[str] = []
        stop = threading.Event()

        def search_repeatedly() -> None:
            for number in count():
                if stop.wait(every_s):
                    return
                question = self.questions[number % len(self.questions)]
                started = time.perf_counter()
                try:
                    with shared.use() as opened:
                        Retriever(opened, self.embedder).search(question)
                    seconds.append(time.perf_counter() - started)
                except Exception as err:  # any failure, not only kb's own, is a figure here
                    failed.append(f"{type(err).__name__}: {err}")

        searcher = threading.Thread(target=search_repeatedly, name="bench-searcher")
        searcher.start()
        try:
            index = build_index(store, say)
        finally:
            stop.set()
            # the bench holds the store on after the build, an ingest would exit: let a
            # search that is waiting for the lock have it, as it would
            with store.released():
                searcher.join()
                shared.close()
        during = timing(seconds) if seconds else {"n": 0}
        during.update(max_ms=round(max(seconds, default=0) * 1000, 1), failed=len(failed))
        return index, {**during, "errors": sorted(set(failed))[:3]}

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
        return _timed(lambda: store.search_one(vector, None, RetrievalParams().prefetch))

    def _sparse_only(self, store: Store, question: str) -> float:
        vector = Bm25Encoder().query(question)
        return _timed(lambda: store.search_one(None, vector, RetrievalParams().prefetch))

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
    rows = _side_by_side(results)
    for row in rows:
        cells = [_pair(row[key]) for key in RETRIEVAL_PARTS]
        lines.append(f"{row['store']:<20}{row['chunks']:>9,}" + "".join(f"{c:>17}" for c in cells))
    lines += ["", "Synthetic stores: build, search index, open, disk (Qdrant Edge; today's engine)"]
    for row in rows:
        if "build_s" in row:
            index = f", index {row['index_s']:.1f} s" if "index_s" in row else ""
            lines.append(
                f"{row['store']:<20}build {row['build_s']:.1f} s{index}, open {row['open_s']:.3f}"
                f" s, {row['disk_mib']:.1f} MiB on disk"
            )
    lines += ["", "Searches from another opener while the search index was built and swapped"]
    for row in rows:
        during = row.get("search_during_index")
        if during:
            lines.append(f"{row['store']:<20}{_during(during)}")
    lines += ["", "Time the chain adds before the first token (fake Ollama), ms p50 / p95"]
    for row in rows:
        if "chain_overhead" in row:
            o = row["chain_overhead"]
            lines.append(
                f"{row['store']:<20}chain {_pair(o['chain_first_delta'])}, direct "
                f"{_pair(o['direct_first_delta'])}, overhead {_pair(o['overhead'])}"
            )
    lines += [
        "",
        f"Load average (1, 5, 15 min) at start {results['load_average_at_start']}, at end "
        f"{results['load_average_at_end']}, on {results['cpus']} CPUs; peak memory "
        f"{results.get('peak_rss_mib', '?')} MiB.",
        "Today's engine (qdrant-client's local mode) runs BM25 in Python over every point; the "
        "embedded store is Qdrant Edge. A Qdrant server is QDRANT_URL.",
    ]
    return "\n".join(lines)


def _side_by_side(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The store rows, each synthetic one followed by today's engine at the same size."""
    legacy = {row["chunks"]: row for row in results.get("legacy_stores", [])}
    rows = []
    for row in results["stores"]:
        rows.append(row)
        if row["store"].startswith("synthetic") and row["chunks"] in legacy:
            rows.append(legacy[row["chunks"]])
    return rows


def _during(figures: dict[str, Any]) -> str:
    if not figures["n"]:
        return f"none finished ({figures['failed']} failed)"
    return (
        f"{figures['n']} searches, ms p50 / p95 / max {_pair(figures)} / {figures['max_ms']:.0f}"
        f", {figures['failed']} failed"
    )


def _pair(figures: dict[str, float]) -> str:
    return f"{figures['p50_ms']:.1f} / {figures['p95_ms']:.1f}"
