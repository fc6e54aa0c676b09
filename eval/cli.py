"""`python -m eval`: the command line over `eval/`. One function per subcommand.

Each `_add_<name>_command(subcommands)` registers a parser with `set_defaults(run=<function>)`;
`main()` builds the composition root once (`rag.service.build_services(load_settings())`: the
settings, the model servers behind one hub, the embedder, the store), hands it to that function
with the parsed arguments, and closes it afterwards. Every error a user can hit ends in one
sentence on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rag.errors import KBError, run_reporting_errors
from rag.retrieve import RetrievalParams
from rag.service import Services, build_services
from rag.settings import load_settings

SAMPLE_SET = Path(__file__).resolve().parent / "sample"
DATASET_HELP = "an eval set folder: docs/ and qa.jsonl (see eval/README.md)"

Command = Callable[[argparse.Namespace, Services], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eval",
        description="Measure the knowledge base: retrieval, answers per model, performance.",
    )
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_retrieval_command(subcommands)
    _add_answers_command(subcommands)
    _add_generate_command(subcommands)
    _add_bench_command(subcommands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the exit code (0, or 2 after a one-sentence error on stderr)."""
    args = build_parser().parse_args(argv)
    command: Command = args.run

    def run() -> int:
        with build_services(load_settings()) as services:
            return command(args, services)

    return run_reporting_errors(run)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {value}")
    return value


def _add_retrieval_options(parser: argparse.ArgumentParser) -> None:
    defaults = RetrievalParams()
    parser.add_argument(
        "--prefetch",
        type=_positive_int,
        default=defaults.prefetch,
        metavar="N",
        help=f"candidates each of dense and BM25 hands to the fusion (default {defaults.prefetch})",
    )
    parser.add_argument(
        "--candidates",
        type=_positive_int,
        default=defaults.candidates,
        metavar="N",
        help=f"fused chunks kept (default {defaults.candidates})",
    )
    parser.add_argument(
        "--whole-store", action="store_true",
        help="search the whole evaluation store, not only the eval set's documents",
    )  # fmt: skip


def _params(args: argparse.Namespace) -> RetrievalParams:
    return RetrievalParams(prefetch=args.prefetch, candidates=args.candidates)


def _write_json(path: Path, data: Any) -> None:
    try:
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as err:
        raise KBError(f"Could not write {path}: {err.strerror or err}.") from None


# -- retrieval --


def _add_retrieval_command(subcommands: Any) -> None:
    retrieval = subcommands.add_parser(
        "retrieval",
        help="hit rate and MRR of the packed context, no model",
        description="Ingest DIR/docs, then for every question retrieve and pack the passages "
        "exactly as the chain does and check that a gold passage is among them.",
    )
    retrieval.add_argument("--dataset", type=Path, required=True, metavar="DIR", help=DATASET_HELP)
    retrieval.add_argument("--limit", type=_positive_int, metavar="N", help="first N questions")
    retrieval.add_argument(
        "--budget", action="append", metavar="TOKENS",
        help="context budget in tokens; repeat it or give a comma list (500,1200,1800) for one "
        "row per budget (default KB_CONTEXT_TOKENS, else 1200)",
    )  # fmt: skip
    retrieval.add_argument("--json", type=Path, metavar="FILE", help="write figures and records")
    retrieval.add_argument(
        "--model", metavar="MODEL",
        help="pack with the token estimate kb calibrated for this model id or name from its "
        "server's counts (KB_DATA_DIR/calibration.json); default: the uncalibrated estimate",
    )  # fmt: skip
    _add_retrieval_options(retrieval)
    retrieval.set_defaults(run=run_retrieval)


def run_retrieval(args: argparse.Namespace, services: Services) -> int:
    from eval.progress import Bar
    from eval.report import print_retrieval_table
    from eval.retrieval import evaluate_retrieval, parse_budgets, reports_json
    from ingest.progress import IngestProgress

    budgets = parse_budgets(args.budget, services.settings)
    estimator = services.calibration.estimator(args.model) if args.model else None
    if estimator is not None:
        rate = estimator.chars_per_token
        print(f"Token estimate for {args.model}: {rate:.2f} characters a token")
    with IngestProgress() as ingest_bar, Bar("retrieval") as bar:
        reports = evaluate_retrieval(
            services, args.dataset, budgets, args.limit, params=_params(args),
            whole_store=args.whole_store, on_progress=bar, on_ingest=ingest_bar,
            estimator=estimator,
        )  # fmt: skip
    print_retrieval_table(reports)
    if args.json:
        _write_json(args.json, reports_json(reports))
    return 0


# -- answers --


def _add_answers_command(subcommands: Any) -> None:
    answers = subcommands.add_parser(
        "answers",
        help="every question through the full chain, once per model, scored",
        description="Ingest DIR/docs, ask every question through the chain for each model, "
        "and write results.jsonl, summary.csv, report.md and charts into the output folder.",
    )
    answers.add_argument("--dataset", type=Path, required=True, metavar="DIR", help=DATASET_HELP)
    answers.add_argument(
        "--models", required=True, metavar="A,B",
        help="model ids (name@server) or names, comma separated; see `python -m rag models`",
    )  # fmt: skip
    answers.add_argument("--limit", type=_positive_int, metavar="N", help="first N questions")
    answers.add_argument(
        "--judge", metavar="MODEL",
        help="a model id or name that scores correctness and faithfulness",
    )  # fmt: skip
    answers.add_argument(
        "--out", type=Path, metavar="DIR",
        help="output folder (default KB_DATA_DIR/eval-runs/<timestamp>)",
    )  # fmt: skip
    answers.add_argument(
        "--budgets", type=_budget_list, default=(), metavar="500,1200,window",
        help="run each model once per passage budget (tokens; `window`: all the window "
        "leaves), questions interleaved across them; the first-token target is off",
    )  # fmt: skip
    _add_retrieval_options(answers)
    answers.set_defaults(run=run_answers_command)


def _model_list(text: str) -> list[str]:
    models = list(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    if not models:
        raise KBError("--models needs at least one model, like llama3.2,mistral@ollama.")
    return models


def _budget_list(text: str) -> list[int | None]:
    """`500,1200,window` -> [500, 1200, None]; raises `argparse.ArgumentTypeError`."""
    budgets: list[int | None] = []
    for part in (p.strip().lower() for p in text.split(",") if p.strip()):
        if part == "window":
            budgets.append(None)
            continue
        try:
            budgets.append(_positive_int(part))
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(
                f"{part!r} is not a budget; give token counts or `window`, like 500,1200,window."
            ) from None
    return list(dict.fromkeys(budgets))


def run_answers_command(args: argparse.Namespace, services: Services) -> int:
    from eval.answers import run_answers
    from eval.progress import Bar
    from eval.report import load_run, print_answers_table
    from ingest.progress import IngestProgress

    def notify(message: str) -> None:
        print(message, file=sys.stderr)

    with IngestProgress() as ingest_bar, Bar("answers") as bar:
        out = run_answers(
            services, args.dataset, _model_list(args.models), limit=args.limit,
            judge=args.judge, out=args.out, params=_params(args),
            whole_store=args.whole_store, on_progress=bar, on_ingest=ingest_bar,
            notify=notify, budgets=args.budgets,
        )  # fmt: skip
    print_answers_table(load_run(out))
    print(f"Report: {out / 'report.md'}")
    return 0


# -- generate --


def _add_generate_command(subcommands: Any) -> None:
    generate = subcommands.add_parser(
        "generate",
        help="a model writes an eval set from your own documents",
        description="Ingest DOCS, sample chunks across its documents, and have a model write "
        "one question and a short answer found in each chunk; writes OUT/qa.jsonl and a docs "
        "link, an eval set the other commands read.",
    )
    generate.add_argument("--docs", type=Path, required=True, metavar="DIR")
    generate.add_argument(
        "--model", required=True, metavar="MODEL", help="the writing model: an id or a name"
    )
    generate.add_argument("-n", type=_positive_int, default=30, help="questions (default 30)")
    generate.add_argument("--out", type=Path, required=True, metavar="DIR", help="a new folder")
    generate.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    generate.set_defaults(run=run_generate)


def run_generate(args: argparse.Namespace, services: Services) -> int:
    from eval.generate import generate_eval_set
    from eval.progress import Bar
    from ingest.progress import IngestProgress

    with IngestProgress() as ingest_bar, Bar("generate", unit="chunk") as bar:
        outcome = generate_eval_set(
            services, args.docs, args.model, args.n, args.out, seed=args.seed,
            on_progress=bar, on_ingest=ingest_bar,
        )  # fmt: skip
    print(outcome.describe())
    return 0


# -- bench --


def _add_bench_command(subcommands: Any) -> None:
    bench = subcommands.add_parser(
        "bench",
        help="ingest speed, retrieval latency at several store sizes, the chain's overhead",
        description="Performance figures in one run: ingest against raw embedding, retrieval "
        "latency (no model) on the store and on a synthetic large one, and the time the chain "
        "adds before the first token, measured against an in-process fake Ollama.",
    )
    bench.add_argument(
        "--dataset", type=Path, default=SAMPLE_SET, metavar="DIR",
        help="an eval set folder (default: the shipped sample set)",
    )  # fmt: skip
    bench.add_argument(
        "--chunks", type=_positive_int, default=100_000, metavar="N",
        help="chunks of the synthetic large store (default 100000)",
    )  # fmt: skip
    bench.add_argument(
        "--questions", type=_positive_int, default=30, metavar="N",
        help="questions timed per measurement (default 30)",
    )  # fmt: skip
    bench.add_argument(
        "--without-today", action="store_true",
        help="skip today's engine (qdrant-client's local mode) beside each synthetic store",
    )  # fmt: skip
    bench.add_argument("--json", type=Path, metavar="FILE", help="write the figures as JSON")
    bench.set_defaults(run=run_bench)


def run_bench(args: argparse.Namespace, services: Services) -> int:
    from eval.bench import format_bench, run_bench_all
    from ingest.progress import IngestProgress

    def notify(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    with IngestProgress() as ingest_bar:
        results = run_bench_all(
            services, args.dataset, large_chunks=args.chunks, questions=args.questions,
            notify=notify, on_ingest=ingest_bar, legacy=not args.without_today,
        )  # fmt: skip
    print(format_bench(results))
    if args.json:
        _write_json(args.json, results)
    return 0
