"""`python -m ingest`: a thin command line over `ingest.pipeline` and `ingest.writer`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.estimate import counted
from ingest.notes import reading_notes
from ingest.progress import IngestProgress
from rag.errors import EXIT_ERROR, run_reporting_errors
from rag.service import Services, build_services
from rag.settings import load_settings

if TYPE_CHECKING:
    from ingest.pipeline import IngestReport

EXIT_FAILED_FILES = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ingest",
        description="Ingest documents into the knowledge base; only changed files are re-embedded.",
    )
    parser.add_argument("paths", nargs="*", type=Path, help="folders or files to ingest")
    parser.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="GLOB",
        help="only files matching this glob (repeatable)",
    )
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="skip files matching this glob (repeatable)",
    )
    parser.add_argument(
        "--prune", action="store_true", help="remove documents whose files are gone from the folder"
    )
    parser.add_argument("--report", type=Path, metavar="FILE", help="write the summary as JSON")
    parser.add_argument("--list", action="store_true", help="list the documents in the store")
    parser.add_argument("--delete", type=Path, metavar="PATH", help="remove one document")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return parser  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> int:
        with build_services(load_settings()) as services:
            return run_command(args, services)

    return run_reporting_errors(
        run, interrupted="Interrupted; finished documents are kept, run again to finish."
    )


def run_command(args: argparse.Namespace, services: Services) -> int:
    if args.list:
        return list_documents(services)
    if args.delete:
        return delete_document(services, args.delete)
    if not args.paths:
        print("Give at least one folder or file to ingest (or --list).", file=sys.stderr)
        return EXIT_ERROR
    return run_ingest(services, args)


def run_ingest(services: Services, args: argparse.Namespace) -> int:
    from ingest.pipeline import ingest

    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        print(f"No such file or folder: {', '.join(missing)}.", file=sys.stderr)
        return EXIT_ERROR
    _quiet_libraries()
    with (
        IngestProgress(enabled=sys.stderr.isatty() and not args.quiet) as on_progress,
        services.open_store() as store,
    ):
        report = ingest(
            services.settings, args.paths, args.include, args.exclude, args.prune,
            embedder=services.embedder, on_progress=on_progress, store=store,
            on_plan=lambda plan: print(plan.sentence(), flush=True),
        )  # fmt: skip
    if args.report:
        report.write(args.report)
    print(_summary(report))
    for failure in report.failed:
        print(f"  failed: {failure['path']}: {failure['reason']}", file=sys.stderr)
    for junk in report.junk_skipped:
        print(f"  skipped {junk['runs']} run(s) of encoded or binary data in {junk['path']}")
    for line in reading_notes(report):
        print(f"  {line}", file=sys.stderr)
    if report.gone:
        print(
            f"{len(report.gone)} document(s) are gone from the folder but still in the "
            "knowledge base; run again with --prune to remove them:"
        )
        for path in report.gone:
            print(f"  gone: {path}")
    return EXIT_FAILED_FILES if report.failed else 0


def _quiet_libraries() -> None:
    """Keep stderr for our own bar and messages: no model-loading bars from Hugging Face
    libraries (they draw one even when stderr is not a terminal), not the tokenizer's warning
    about long inputs (chunking tokenizes them on purpose to cut them), no pypdf chatter."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.getLogger("transformers.tokenization_utils_base").addFilter(_LongInputFilter())
    # pypdf logs what it trips over in a broken PDF; the file's one-line failure says it.
    logging.getLogger("pypdf").setLevel(logging.ERROR)


class _LongInputFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token indices sequence length")


def _summary(report: IngestReport) -> str:
    r = report
    files = r.added + r.updated + r.unchanged + len(r.failed)
    rate = r.chunks_written / r.seconds if r.seconds else 0.0
    return (
        f"{counted(files, 'file')}: {r.added} added, {r.updated} updated, {r.unchanged} "
        f"unchanged, {r.removed} removed, {len(r.failed)} failed; "
        f"{counted(r.chunks_written, 'chunk')} written "
        f"in {r.seconds:.1f} s ({rate:.1f} chunks/s)."
    )


def list_documents(services: Services) -> int:
    from rich.console import Console
    from rich.table import Table

    from rag.docpaths import ingested_folder

    with services.open_store() as store:
        records = store.documents()
    if not records:
        print(f"The knowledge base {services.settings.collection!r} holds no documents yet.")
        return 0
    # A document shows as citations show it (its path under the ingested folder), beside
    # that folder; either form works for --delete and for `rag ask --doc`.
    if sys.stdout.isatty():
        table = Table("title", "chunks", "ingested (UTC)")
        table.add_column("document", overflow="fold")  # never cut a path short with "…"
        table.add_column("folder", overflow="fold")
        for record in records:
            table.add_row(
                record.title, str(record.chunk_count), record.ingested_at, record.path,
                ingested_folder(record),
            )  # fmt: skip
        Console().print(table)
    else:  # piped: one document a line, tab-separated, for scripts
        for record in records:
            print(
                f"{record.path}\t{ingested_folder(record)}\t{record.title}\t"
                f"{record.chunk_count}\t{record.ingested_at}"
            )
    chunks = sum(r.chunk_count for r in records)
    print(f"{counted(len(records), 'document')}, {counted(chunks, 'chunk')}.")
    return 0


def delete_document(services: Services, path: Path) -> int:
    """Remove the document `path` names (see `rag.docpaths.documents_at`). Raises
    `DocumentPathError` when it names none, or documents under several ingested folders."""
    from ingest.writer import remove_document
    from rag.docpaths import DocumentPathError, documents_at, ingested_folder

    with services.open_store() as store:
        found = documents_at(store.documents(), path)
        if len(found) > 1:
            folders = ", ".join(ingested_folder(r) for r in found)
            raise DocumentPathError(
                f"{path} is a document under several ingested folders ({folders}); "
                "give its full path."
            )
        record = found[0]
        remove_document(store, record)
    print(f"Removed {record.abs_path} ({counted(record.chunk_count, 'chunk')}).")
    return 0
