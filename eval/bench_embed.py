"""Embedding backends benchmark: torch fp32 against ONNX Runtime fp32 and int8 on the same chunks.

The chunks are a dataset's `docs/` cut by the ingest chunker, as ingest makes them (the first
`--chunks`); every backend embeds all of them in each round, in an order that rotates from round
to round (other processes' load drifts on a shared machine), and the median round is reported.
Also: cosine of every vector to torch fp32's (mean and minimum), and the median latency of one
query (`embed_query`, on one thread).

    python -m eval.bench_embed --dataset ../shared/datasets/squad-dev [--chunks 3000]
                               [--rounds 3] [--json out.json]

The model and batch size come from the usual settings (`KB_*`, kb.toml); the exports are cached
under `KB_DATA_DIR` like the app's. Everything runs offline from the model's local folder.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from statistics import median
from typing import Any

BACKENDS = ("torch", "onnx", "onnx-int8")
QUERIES = (
    "When did the 1973 oil crisis begin?",
    "Which river flows through the Amazon rainforest?",
    "Who founded the American Broadcasting Company?",
    "What is the boiling point of water at sea level?",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eval.bench_embed",
        description="Chunks per second and fidelity of the embedding backends.",
    )
    parser.add_argument("--dataset", type=Path, required=True, help="a folder with docs/")
    parser.add_argument("--chunks", type=int, default=3000, help="embed the first N chunks")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per backend")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the figures as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    docs = args.dataset / "docs" if (args.dataset / "docs").is_dir() else args.dataset
    result = run_benchmark(docs, args.chunks, args.rounds)
    print(format_table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


def run_benchmark(docs: Path, max_chunks: int, rounds: int) -> dict[str, Any]:
    import numpy as np
    import torch

    from eval.bench_ingest import _embed_groups
    from rag.embeddings import Embedder
    from rag.settings import load_settings

    settings = load_settings()
    embedders: dict[str, Embedder] = {}
    load_s: dict[str, float] = {}
    for backend in BACKENDS:
        started = time.perf_counter()
        embedder = Embedder(settings.model_copy(update={"embed_backend": backend}))
        embedder.model  # noqa: B018 - load (and export, the first time) outside every timing
        embedders[backend] = embedder
        load_s[backend] = time.perf_counter() - started

    groups, _, _ = _embed_groups(docs, settings, embedders["torch"])
    texts = [text for group in groups for text in group][:max_chunks]
    if not texts:
        raise SystemExit(f"No chunks could be made of the documents in {docs}.")
    lengths = [embedders["torch"].count_tokens(text) for text in texts]

    vectors = {b: np.asarray(e.embed(texts), dtype=np.float32) for b, e in embedders.items()}
    timings: dict[str, list[tuple[float, float]]] = {b: [] for b in BACKENDS}
    for round_ in range(rounds):
        order = BACKENDS[round_ % len(BACKENDS) :] + BACKENDS[: round_ % len(BACKENDS)]
        for backend in order:
            started, cpu = time.perf_counter(), time.process_time()
            embedders[backend].embed(texts)
            timings[backend].append((time.perf_counter() - started, time.process_time() - cpu))

    query_ms: dict[str, float] = {}
    threads_before = torch.get_num_threads()
    for backend, embedder in embedders.items():
        for query in QUERIES:  # warm-up
            embedder.embed_query(query)
        samples = []
        for _ in range(5):
            for query in QUERIES:
                started = time.perf_counter()
                embedder.embed_query(query)
                samples.append(time.perf_counter() - started)
        query_ms[backend] = 1000 * median(samples)

    reference = vectors["torch"]
    rows = {}
    for backend in BACKENDS:
        wall = median(t for t, _ in timings[backend])
        cpu = median(c for _, c in timings[backend])
        cosine = (vectors[backend] * reference).sum(axis=1)
        rows[backend] = {
            "identity": embedders[backend].identity,
            "load_s": round(load_s[backend], 2),
            "chunks_per_s": round(len(texts) / wall, 1),
            "chunks_per_cpu_s": round(len(texts) / cpu, 1),
            "round_walls_s": [round(t, 2) for t, _ in timings[backend]],
            "query_ms": round(query_ms[backend], 2),
            "cosine_mean": round(float(cosine.mean()), 5),
            "cosine_min": round(float(cosine.min()), 5),
        }
    torch_rate = rows["torch"]["chunks_per_s"]
    for row in rows.values():
        row["speedup"] = round(row["chunks_per_s"] / torch_rate, 2)
    return {
        "docs": str(docs),
        "chunks": len(texts),
        "mean_tokens": round(sum(lengths) / len(lengths), 1),
        "batch_size": settings.embed_batch_size,
        "rounds": rounds,
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": threads_before,
        "torch_threads_after_queries": torch.get_num_threads(),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "backends": rows,
    }


def format_table(r: dict[str, Any]) -> str:
    lines = [
        f"{r['chunks']} chunks (mean {r['mean_tokens']} tokens) of {r['docs']}, batch "
        f"{r['batch_size']}, {r['rounds']} interleaved rounds, {r['cpus']} CPUs, torch threads "
        f"{r['torch_threads']} (after queries: {r['torch_threads_after_queries']})",
        f"{'backend':<34} {'chunks/s':>9} {'x torch':>8} {'/cpu-s':>8} {'query ms':>9} "
        f"{'cos mean':>9} {'cos min':>8}  rounds (s)",
    ]
    for row in r["backends"].values():
        lines.append(
            f"{row['identity']:<34} {row['chunks_per_s']:>9.1f} {row['speedup']:>8.2f} "
            f"{row['chunks_per_cpu_s']:>8.1f} {row['query_ms']:>9.2f} {row['cosine_mean']:>9.4f} "
            f"{row['cosine_min']:>8.4f}  {', '.join(map(str, row['round_walls_s']))}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
