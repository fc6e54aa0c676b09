"""Library: the documents in the store, adding documents (upload or a folder on the server)
through the same `ingest()` as `python -m ingest`, deleting one, and the store's size."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st

from ingest.pipeline import IngestReport, ingest
from ingest.walk import find_files
from ingest.writer import remove_document
from rag.errors import KBError
from rag.settings import Settings
from rag.store import DocRecord, disk_bytes
from ui.plain import escape_markdown, show_error
from ui.resources import get_services, page_start, ready_services
from ui.uploads import save_uploads, uploads_dir

REPORT = "library_report"  # this session's last ingest report
MIB = 1024 * 1024


def human_bytes(size: int) -> str:
    if size < MIB:
        return f"{size / 1024:,.1f} KiB"
    return f"{size / MIB:,.1f} MiB"


def store_summary(settings: Settings, documents: list[DocRecord], chunks: int) -> None:
    left, middle, right = st.columns(3)
    left.metric("Documents", f"{len(documents):,}")
    middle.metric("Chunks", f"{chunks:,}")
    if settings.uses_server:
        right.metric("On disk", "server")
    else:
        size = disk_bytes(settings.qdrant_path) if settings.qdrant_path.exists() else 0
        right.metric("On disk", human_bytes(size))


def documents_table(documents: list[DocRecord]) -> None:
    if not documents:
        st.info("The knowledge base is empty; upload files or ingest a folder below.")
        return
    st.dataframe(
        [
            {
                "document": d.path,
                "title": d.title,
                "chunks": d.chunk_count,
                "size (KiB)": round(d.size_bytes / 1024, 1),
                "last ingested (UTC)": d.ingested_at,
                "file": d.abs_path,
            }
            for d in documents
        ],
        hide_index=True,
    )


def progress_reporter(total: int) -> Callable[[str, int, int], None]:
    bar = st.progress(0.0, text=f"Ingesting {total} files…")

    def report(shown: str, files_done: int, chunks_written: int) -> None:
        share = min(1.0, files_done / total) if total else 1.0
        current = f" · {escape_markdown(shown)}" if shown else ""
        bar.progress(share, text=f"{files_done} of {total} files, {chunks_written} chunks{current}")

    return report


def run_ingest(settings: Settings, roots: list[Path], prune: bool = False) -> None:
    total = sum(1 for _ in find_files(roots))
    services = ready_services(settings)
    try:
        with services.open_store() as store:
            report = ingest(
                settings,
                roots,
                prune=prune,
                embedder=services.embedder,
                on_progress=progress_reporter(total),
                store=store,
            )
    except KBError as err:
        show_error(err)
        return
    st.session_state[REPORT] = report


def show_report(report: IngestReport) -> None:
    st.subheader("Last ingest")
    figures = ("added", "updated", "unchanged", "removed", "chunks_written")
    for column, name in zip(st.columns(len(figures)), figures, strict=True):
        column.metric(name.replace("_", " "), getattr(report, name))
    st.caption(f"{report.seconds:.1f} s")
    if report.failed:
        st.warning(f"{len(report.failed)} files could not be ingested:")
        st.dataframe(report.failed, hide_index=True)
    if report.junk_skipped:
        st.caption(
            f"Runs of encoded or binary data (base64, hex, binary bytes) were left out of "
            f"{len(report.junk_skipped)} files:"
        )
        st.dataframe(report.junk_skipped, hide_index=True)
    if report.gone:
        st.caption(
            f"{len(report.gone)} documents' files are gone; ingest their folder with "
            "'remove documents whose files are gone' to delete them."
        )


def upload_form(settings: Settings) -> None:
    with st.form("upload", clear_on_submit=True):
        files = st.file_uploader(
            f"Upload files (up to {settings.upload_max_mb:g} MB each)", accept_multiple_files=True
        )
        submitted = st.form_submit_button("Ingest uploads")
    if not submitted or not files:
        return
    outcome = save_uploads(list(files), uploads_dir(settings.data_dir), settings.upload_max_mb)
    for name, reason in outcome.refused:
        st.warning(f"{escape_markdown(name)} was not saved: {reason}.")
    if outcome.saved:
        run_ingest(settings, outcome.saved)


def folder_form(settings: Settings) -> None:
    with st.form("folder"):
        folder = st.text_input("A folder on the server")
        prune = st.checkbox("Remove documents whose files are gone from this folder")
        submitted = st.form_submit_button("Ingest folder")
    if not submitted or not folder.strip():
        return
    path = Path(folder.strip()).expanduser()
    if not path.is_dir():
        st.warning(f"{escape_markdown(str(path))} is not a folder on the server.")
        return
    run_ingest(settings, [path.resolve()], prune=prune)


def delete_form(settings: Settings, documents: list[DocRecord]) -> None:
    if not documents:
        return
    by_id = {d.doc_id: d for d in documents}
    with st.form("delete"):
        doc_id = st.selectbox(
            "Document", list(by_id), format_func=lambda i: by_id[i].path, index=None
        )
        submitted = st.form_submit_button("Delete document")
    if not submitted or doc_id is None:
        return
    try:
        with get_services(settings).open_store() as store:
            remove_document(store, by_id[doc_id])
    except KBError as err:
        show_error(err)
        return
    st.session_state["library_deleted"] = by_id[doc_id].path
    st.rerun()


def read_library(settings: Settings) -> tuple[list[DocRecord], int] | None:
    try:
        with get_services(settings).open_store() as store:
            return store.documents(), store.count_chunks()
    except KBError as err:
        show_error(err)
        return None


def main() -> None:
    settings = page_start()
    st.title("Library")
    st.subheader("Add documents")
    upload_form(settings)
    folder_form(settings)
    if REPORT in st.session_state:
        show_report(st.session_state[REPORT])
    deleted: Any = st.session_state.pop("library_deleted", None)
    if deleted:
        st.success(f"Deleted {escape_markdown(deleted)}.")
    library = read_library(settings)
    if library is None:
        return
    documents, chunks = library
    st.subheader("Documents")
    store_summary(settings, documents, chunks)
    documents_table(documents)
    st.subheader("Delete a document")
    delete_form(settings, documents)


if __name__ == "__main__":
    main()
