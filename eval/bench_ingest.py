"""Ingest benchmark: how close end-to-end ingest comes to the embedding model's own speed.

On the same chunks of a dataset's `docs/` folder it measures
1. raw embedding throughput: the documents are read and chunked with the ingest chunker first
   (untimed), then `Embedder.embed` is timed over every chunk's `embed_text`, called with the
   same groups of chunks the pipeline hands it (whole documents, flushed at
   `EMBED_BATCH_CHUNKS`), after a warm-up call; timed before and after every ingest run
   (other processes' load drifts on a shared machine), the median is used;
2. end-to-end `ingest()` throughput into a fresh embedded store (reading, chunking, embedding,
   BM25 and the Qdrant writes), with the same, already loaded, embedder; `--rounds N`
   alternates N ingest runs (each into a fresh store) with the raw timings, medians used;
3. their ratio, by wall time and by this process's CPU time (less sensitive to other
   processes' load);
4. the time of an unchanged rerun and its ratio to the first run;
5. the process's peak resident memory;
6. with `--against DIR`, the same benchmark by another checkout of kb (an earlier commit's
   `git worktree`), one round of it after each of this code's, in a child process, and the
   ratio of the two end-to-end chunks/s (each code with its own defaults: embedder, store).

    python -m eval.bench_ingest --dataset ../shared/datasets/squad-dev [--json out.json]
                                [--store DIR] [--rounds N] [--against DIR]

The embedding model, batch size and chunking come from the usual settings (`KB_*`, kb.toml);
the store is always an embedded one in `--store` (default: a temporary folder), never
`QDRANT_URL`, so a benchmark cannot write into a real knowledge base.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from statistics import median
from typing import Any

from rag.errors import KBError

BENCH_COLLECTION = "bench"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eval.bench_ingest",
        description="Measure ingest throughput against raw embedding throughput.",
    )
    parser.add_argument("--dataset", type=Path, required=True, help="a folder with docs/")
    parser.add_argument("--store", type=Path, help="an empty folder for the store (default: temp)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the figures as JSON")
    parser.add_argument(
        "--rounds", type=int, default=1, help="alternate raw and ingest timings N times (medians)"
    )
    parser.add_argument(
        "--against",
        type=Path,
        metavar="DIR",
        help="another checkout of kb (e.g. a git worktree of an earlier commit) to run "
        "alongside, round for round",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.rounds < 1:
            raise KBError("--rounds must be 1 or more.")
        docs = args.dataset / "docs"
        if not docs.is_dir():
            raise KBError(f"The dataset folder {args.dataset} has no docs/ folder of documents.")
        if args.store is not None:
            if args.store.exists() and any(args.store.iterdir()):
                raise KBError(f"The store folder {args.store} is not empty; give a new folder.")
            results = run_benchmark(docs, args.store, args.rounds, args.against)
        else:
            with tempfile.TemporaryDirectory(prefix="kb-bench-ingest-") as scratch:
                results = run_benchmark(docs, Path(scratch) / "store", args.rounds, args.against)
    except KBError as err:
        print(err, file=sys.stderr)
        return 2
    print(format_table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


def run_benchmark(
    docs: Path, store_dir: Path, rounds: int = 1, against: Path | None = None
) -> dict[str, Any]:
    from ingest.pipeline import ingest
    from rag.embeddings import Embedder, pick_device
    from rag.settings import load_settings

    other = _OtherCode(against, docs, store_dir / "other") if against else None
    settings = load_settings(
        qdrant_path=store_dir, qdrant_url=None, qdrant_api_key=None, collection=BENCH_COLLECTION
    )
    embedder = Embedder(settings)
    started = time.perf_counter()
    embedder.model  # noqa: B018 - load it outside every timing
    load_s = time.perf_counter() - started

    groups, n_docs, prepare_s = _embed_groups(docs, settings, embedder)
    texts = [text for group in groups for text in group]
    if not texts:
        raise KBError(f"No chunks could be made of the documents in {docs}.")
    embedder.embed(texts[: embedder.batch_size])  # warm-up, for both measurements

    # Raw embedding and ingest are timed alternately, raw first and last, so that every ingest
    # run is bracketed by raw runs: on a shared machine other processes' load drifts. Each
    # ingest run goes into a fresh store; the medians are reported.
    raw_runs = [_time_embedding(embedder, groups)]
    ingest_runs = []
    for number in range(rounds):
        round_settings = settings.model_copy(update={"qdrant_path": store_dir / f"round-{number}"})
        started, cpu_started = time.perf_counter(), time.process_time()
        first = ingest(round_settings, [docs], embedder=embedder)
        ingest_runs.append((time.perf_counter() - started, time.process_time() - cpu_started))
        raw_runs.append(_time_embedding(embedder, groups))
        if other is not None:
            other.run(number)

    started = time.perf_counter()
    rerun = ingest(round_settings, [docs], embedder=embedder)
    rerun_s = time.perf_counter() - started

    raw_s, raw_cpu = (median(run[i] for run in raw_runs) for i in (0, 1))
    first_s, first_cpu = (median(run[i] for run in ingest_runs) for i in (0, 1))
    raw_rate = len(texts) / raw_s
    ingest_rate = first.chunks_written / first_s
    results = {
        "dataset": str(docs.parent),
        "documents": n_docs,
        "chunks": len(texts),
        "embed_model": settings.embed_model,
        "device": pick_device(settings.embed_device),
        "embed_batch_size": settings.embed_batch_size,
        "chunk_size": settings.chunk_size,
        "chunk_overlap": settings.chunk_overlap,
        "model_load_s": round(load_s, 3),
        "read_and_chunk_s": round(prepare_s, 3),
        "rounds": rounds,
        "raw_embed": {
            "seconds": round(raw_s, 3),
            "cpu_seconds": round(raw_cpu, 3),
            "chunks_per_s": round(raw_rate, 2),
            "all_seconds": [round(run[0], 3) for run in raw_runs],
        },
        "ingest": {
            "seconds": round(first_s, 3),
            "cpu_seconds": round(first_cpu, 3),
            "all_seconds": [round(run[0], 3) for run in ingest_runs],
            "chunks_written": first.chunks_written,
            "documents_added": first.added,
            "failed": len(first.failed),
            "chunks_per_s": round(ingest_rate, 2),
        },
        "ingest_to_raw_ratio": round(ingest_rate / raw_rate, 3),
        "ingest_to_raw_cpu_ratio": round(raw_cpu / first_cpu, 3),
        "rerun": {
            "seconds": round(rerun_s, 3),
            "unchanged": rerun.unchanged,
            "chunks_written": rerun.chunks_written,
            "ratio_to_first": round(rerun_s / first_s, 4),
        },
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "python": platform.python_version(),
        "cpus": _cpu_count(),
    }
    if other is not None:
        results["against"] = other.figures()
        results["ingest_to_against_ratio"] = round(
            ingest_rate / results["against"]["chunks_per_s"], 3
        )
    return results


class _OtherCode:
    """The same benchmark run by another checkout of kb (`--against DIR`, e.g. a `git worktree`
    of an earlier commit), one round at a time in a child process with that checkout first on
    the import path, so its rounds alternate with this code's under the same load."""

    def __init__(self, checkout: Path, docs: Path, scratch: Path) -> None:
        if not (checkout / "eval" / "bench_ingest.py").is_file():
            raise KBError(f"{checkout} is not a checkout of kb with eval/bench_ingest.py.")
        self.checkout = checkout
        self.docs = docs
        self.scratch = scratch
        scratch.mkdir(parents=True, exist_ok=True)
        self.rounds: list[dict[str, Any]] = []

    def run(self, number: int) -> None:
        figures = self.scratch / f"other-{number}.json"
        env = {**os.environ, "PYTHONPATH": str(self.checkout)}
        command = [sys.executable, "-m", "eval.bench_ingest", "--dataset", str(self.docs.parent)]
        command += ["--json", str(figures), "--store", str(self.scratch / f"other-{number}")]
        done = subprocess.run(command, cwd=self.checkout, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise KBError(f"The benchmark of {self.checkout} failed: {last}")
        self.rounds.append(json.loads(figures.read_text(encoding="utf-8")))

    def figures(self) -> dict[str, Any]:
        rates = [run["ingest"]["chunks_per_s"] for run in self.rounds]
        raw = [run["raw_embed"]["chunks_per_s"] for run in self.rounds]
        return {
            "checkout": str(self.checkout),
            "chunks": self.rounds[-1]["ingest"]["chunks_written"],
            "chunks_per_s": round(median(rates), 2),
            "all_chunks_per_s": rates,
            "raw_chunks_per_s": round(median(raw), 2),
        }


def _time_embedding(embedder: Any, groups: list[list[str]]) -> tuple[float, float]:
    """Wall and CPU seconds of embedding every group, one `embed` call per group."""
    started, cpu_started = time.perf_counter(), time.process_time()
    for group in groups:
        embedder.embed(group)
    return time.perf_counter() - started, time.process_time() - cpu_started


def _embed_groups(docs: Path, settings: Any, embedder: Any) -> tuple[list[list[str]], int, float]:
    """Every chunk's embed_text, grouped as the pipeline groups them for `Embedder.embed`."""
    from ingest.chunking import ChunkLimits, chunk_document
    from ingest.pipeline import EMBED_BATCH_CHUNKS
    from ingest.readers import UnreadableFile, read_document
    from ingest.walk import find_files

    started = time.perf_counter()
    limits = ChunkLimits(settings.chunk_size, settings.chunk_overlap, embedder.max_tokens)
    groups: list[list[str]] = []
    buffer: list[str] = []
    n_docs = 0
    for found in find_files([docs]):
        try:
            parsed = read_document(found.path, found.path.read_bytes())
        except UnreadableFile:
            continue
        n_docs += 1
        chunks = chunk_document(parsed, limits, embedder.count_tokens, embedder.token_offsets)
        buffer.extend(chunk.embed_text for chunk in chunks)
        if len(buffer) >= EMBED_BATCH_CHUNKS:
            groups.append(buffer)
            buffer = []
    if buffer:
        groups.append(buffer)
    return groups, n_docs, time.perf_counter() - started


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _cpu_count() -> int | None:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _seconds(values: list[float]) -> str:
    return ", ".join(f"{value:.1f}" for value in values) + " s"


def format_table(r: dict[str, Any]) -> str:
    rows = [
        ("dataset", f"{r['dataset']} ({r['documents']} documents, {r['chunks']} chunks)"),
        ("model", f"{r['embed_model']} on {r['device']}, batch {r['embed_batch_size']}, "
                  f"chunks of {r['chunk_size']} tokens"),
        ("model load", f"{r['model_load_s']:.2f} s (not in any figure below)"),
        ("raw embedding", f"{r['raw_embed']['chunks_per_s']:.1f} chunks/s (median of "
                          f"{_seconds(r['raw_embed']['all_seconds'])})"),
        ("end-to-end ingest", f"{r['ingest']['chunks_per_s']:.1f} chunks/s (median of "
                              f"{_seconds(r['ingest']['all_seconds'])}, "
                              f"{r['ingest']['chunks_written']} chunks)"),
        ("ingest / raw", f"{r['ingest_to_raw_ratio'] * 100:.1f} % "
                         f"(by CPU time: {r['ingest_to_raw_cpu_ratio'] * 100:.1f} %)"),
        ("unchanged rerun", f"{r['rerun']['seconds']:.2f} s "
                            f"({r['rerun']['ratio_to_first'] * 100:.2f} % of the first run)"),
        ("peak memory", f"{r['peak_rss_mb']:.0f} MB (max RSS)"),
    ]  # fmt: skip
    if "against" in r:
        other = r["against"]
        rates = ", ".join(f"{rate:.1f}" for rate in other["all_chunks_per_s"])
        rows.append((
            "other checkout", f"{other['chunks_per_s']:.1f} chunks/s end to end (median of "
                              f"{rates}; raw {other['raw_chunks_per_s']:.1f}), "
                              f"{other['checkout']}; this code's ingest is "
                              f"{r['ingest_to_against_ratio']:.2f}× that",
        ))  # fmt: skip
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


if __name__ == "__main__":
    sys.exit(main())
