"""`python -m rag`: the command line over `rag/`. One function per subcommand.

To add a subcommand, write `_add_<name>_command(subcommands)` that registers its parser with
`set_defaults(run=<function>)`, and call it from `build_parser()`; the function receives the
parsed arguments and the settings and returns the exit code.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rag.control_chars import strip_control
from rag.docpaths import DocumentPathError, documents_at, documents_under, folders_at
from rag.errors import EXIT_ERROR, ServerUnreachableError, run_reporting_errors
from rag.models import list_model_facts, model_row
from rag.retrieve import SearchFilters
from rag.service import Services, build_services
from rag.settings import Settings, load_settings

Command = Callable[[argparse.Namespace, Services], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m rag",
        description="Ask the knowledge base and inspect the models of every configured server.",
    )
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_ask_command(subcommands)
    _add_models_command(subcommands)
    return parser


def _add_ask_command(subcommands: Any) -> None:
    ask = subcommands.add_parser(
        "ask",
        help="answer a question from the knowledge base, with cited passages",
        description="Retrieve passages, pack them into the model's window and stream the "
        "model's answer, then list the cited sources.",
    )
    ask.add_argument("question", type=_question)
    ask.add_argument(
        "--model",
        help="a model id (name@server) or name from `python -m rag models` (default: KB_MODEL)",
    )
    ask.add_argument("--json", action="store_true", help="print the whole result as JSON")
    ask.add_argument("--search", action="store_true", help="only retrieve; no model is asked")
    ask.add_argument(
        "--doc",
        action="append",
        default=[],
        type=Path,
        metavar="PATH",
        help="only this document (repeatable)",
    )
    ask.add_argument(
        "--under", type=Path, metavar="FOLDER", help="only documents under this folder"
    )
    ask.set_defaults(run=run_ask)


def _question(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError('the question is empty: ask in quotes, rag ask "..."')
    return text


def search_filters(args: argparse.Namespace, services: Services) -> SearchFilters | None:
    """The `--doc` and `--under` filters, each path as citations show it, absolute, or relative
    to the current directory; one matching several ingested folders narrows to all of them.
    Raises `DocumentPathError` for a path that names no document."""
    if not args.doc and not args.under:
        return None
    with services.open_store() as store:
        records = store.documents()
    doc_ids = [r.doc_id for path in args.doc for r in documents_at(records, path)]
    if not args.under:
        return SearchFilters(doc_ids=tuple(doc_ids))
    folders = folders_at(records, args.under)
    if len(folders) == 1:
        return SearchFilters(doc_ids=tuple(doc_ids), path_prefix=folders[0])
    under = [r.doc_id for r in documents_under(records, folders)]
    chosen = [d for d in doc_ids if d in under] if doc_ids else under
    if not chosen:
        raise DocumentPathError(f"None of the --doc documents is under {args.under}.")
    return SearchFilters(doc_ids=tuple(chosen))


def _add_models_command(subcommands: Any) -> None:
    models = subcommands.add_parser(
        "models",
        help="list the models of every server with their windows and KV-cache sizes",
        description="List the models every configured server offers (Ollama, OpenAI-compatible "
        "servers): trained context, the window kb will use and where it comes from, the KV "
        "cache that window costs, and the licence.",
    )
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")
    models.set_defaults(run=run_models)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command: Command = args.run

    def run() -> int:
        # shared, let go at once: `ask` holds the embedded store for its retrieval only, not
        # while the answer is written, so that other `rag ask`s and an ingest get it meanwhile
        with build_services(load_settings(), shared_store=True, store_idle_s=0) as services:
            return command(args, services)

    return run_reporting_errors(run)


# -- ask --


def run_ask(args: argparse.Namespace, services: Services) -> int:
    from rag.chain import AnswerResult

    filters = search_filters(args, services)
    with services.open_chain() as chain:
        if args.search:
            return _print_search(chain.search(args.question, filters), args.json)
        result = None
        try:
            for event in chain.stream(args.question, args.model, filters=filters):
                if isinstance(event, AnswerResult):
                    result = event
                elif not args.json:
                    print(strip_control(event), end="", flush=True)
        except ServerUnreachableError as err:
            # No model to answer, but the passages can still be found.
            print(err, file=sys.stderr)
            _print_search(chain.search(args.question, filters), args.json)
            return EXIT_ERROR
    assert result is not None
    if args.json:
        print(json.dumps(result.as_json(), indent=2, ensure_ascii=False))
    else:
        _print_answer_footer(result)
    return EXIT_ERROR if result.partial else 0


def _print_search(passages: list[Any], as_json: bool) -> int:
    if as_json:
        from rag.chain import passage_record

        print(json.dumps([passage_record(n, p) for n, p in enumerate(passages, 1)], indent=2))
        return 0
    for n, passage in enumerate(passages[:8], 1):
        print(strip_control(f"[{n}] {passage.source_label()}  (score {passage.score:.3f})"))
        print(f"    {one_line_preview(strip_control(passage.text))}")
    return 0


def one_line_preview(text: str, limit: int = 300) -> str:
    """A passage on one line: paragraphs (a table's rows) apart by ` / `, whitespace single."""
    paragraphs = re.split(r"\n\s*\n", text)
    return " / ".join(" ".join(p.split()) for p in paragraphs if p.strip())[:limit]


def _print_answer_footer(result: Any) -> None:
    print()
    if result.partial:
        print(f"(the answer broke off: {result.error})", file=sys.stderr)
    if result.truncated:
        print(f"Warning: {result.server} cut the prompt; this answer may ignore some passages.",
              file=sys.stderr)  # fmt: skip
    if result.notice:
        print(f"Note: {result.notice}", file=sys.stderr)
    if result.finish_reason == "length":
        print(f"Note: the answer reached its limit of {result.max_tokens:,} tokens and stopped "
              "(KB_ANSWER_TOKENS).", file=sys.stderr)  # fmt: skip
    for line in citation_lines(result):
        print(strip_control(line))  # sources and sentences come from documents and the model
    print(f"({answer_figures(result)})")


CITATION_KINDS = {"written": "cited by the model", "attributed": "attributed by kb"}


def citation_lines(result: Any) -> list[str]:
    """`[n] source (cited by the model)` or `(attributed by kb: "sentence")` per citation, then
    each sentence that no passage supports."""
    lines = []
    for citation in result.citations:
        how = CITATION_KINDS.get(citation.kind, citation.kind)
        if citation.kind == "attributed" and citation.sentences:
            how += f': "{_short(citation.sentences[0])}"'
        if citation.replaces:
            how += f"; the model cited {_numbers(citation.replaces)}, which does not back it"
        lines.append(f"[{citation.n}] {citation.source} ({how})")
    for sentence in result.uncited_sentences:
        lines.append(f'Uncited, no passage supports it: "{_short(sentence)}"')
    return lines


def _numbers(numbers: list[int]) -> str:
    return "".join(f"[{n}]" for n in numbers)


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def answer_figures(result: Any) -> str:
    """The model and how the answer was made, in one line of plain words."""
    speed = f", {result.tokens_per_s:.1f} tokens/s" if result.tokens_per_s else ""
    first = f", first token {result.ttft_ms:,.0f} ms" if result.ttft_ms is not None else ""
    search = f" (search {result.retrieval_ms:,.0f} ms)" if first else ""
    counted = "" if result.counted_by in (None, "server") else f" ({result.counted_by})"
    prompt = f"{result.prompt_tokens:,}" if result.prompt_tokens is not None else "?"
    return (
        f"{result.model}: passages {result.context_tokens:,} of a {result.window:,}-token "
        f"window, prompt tokens {prompt}{counted}{first}{search}{speed}"
    )


# -- models --


def run_models(args: argparse.Namespace, services: Services) -> int:
    settings = services.settings
    learned = services.calibration.learned_window
    rows = [
        model_row(f, settings, learned(f.id)) for f in list_model_facts(services.models, settings)
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_models_table(rows, settings, services.models.reachability())
    return 0


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


MODEL_COLUMNS = (  # header, row key
    ("model", "name"), ("server", "server"), ("family", "family"),
    ("params", "parameter_size"), ("quant", "quantization"), ("trained ctx", "context_length"),
    ("window", "effective_window"), ("window from", "window_source"), ("KV MiB", "kv_cache_mib"),
    ("license", "license"),
)  # fmt: skip


def _print_models_table(
    rows: list[dict[str, Any]], settings: Settings, reachable: dict[str, bool]
) -> None:
    """A table on a terminal; tab-separated lines with a header when piped (for scripts)."""
    default = _default_id(rows, settings.model)
    down = [name for name, up in reachable.items() if not up]
    if not sys.stdout.isatty():
        print("\t".join(["id", *(header for header, _ in MODEL_COLUMNS), "default"]))
        for row in rows:
            cells = [row["id"], *(_model_cell(row, key) for _, key in MODEL_COLUMNS)]
            cells.append("*" if row["id"] == default else "")
            print("\t".join(plain_text(cell) for cell in cells))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    caption = "* the default model" + (f"; not reachable: {', '.join(down)}" if down else "")
    table = Table(title="Models", title_justify="left", caption=escape(caption))
    for header, key in MODEL_COLUMNS:
        numeric = key in ("context_length", "effective_window", "kv_cache_mib")
        table.add_column(header, justify="right" if numeric else "left", overflow="fold")
    for row in rows:
        cells = [escape(_model_cell(row, key)) for _, key in MODEL_COLUMNS]
        cells[0] += " *" if row["id"] == default else ""
        table.add_row(*cells)
    Console().print(table)


def _model_cell(row: dict[str, Any], key: str) -> str:
    if key == "family" and not row["pulled"]:
        return "not found"
    return _shown(row[key] or None) if key == "server" else _shown(row[key])


def plain_text(text: str) -> str:
    """One cell of tab-separated output: no tabs or line breaks inside."""
    return " ".join(text.split())


def _default_id(rows: list[dict[str, Any]], model: str) -> str | None:
    """The id of the row KB_MODEL names (configured models come first in `rows`)."""
    from rag.llm.hub import same_model

    for row in rows:
        if row["id"] == model or same_model(row["name"], model):
            return row["id"]
    return None
