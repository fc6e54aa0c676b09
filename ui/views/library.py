"""Library: the documents in the store, adding documents (upload or a folder on the server)
through the same `ingest()` as `python -m ingest`, deleting one, and the store's size."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import streamlit as st

from ingest.estimate import IngestPlan, counted
from ingest.notes import reading_notes
from ingest.pipeline import IngestReport, ingest
from ingest.walk import find_files
from ingest.writer import remove_document
from rag.errors import KBError
from rag.settings import Settings
from rag.store import DocRecord, disk_bytes
from ui.names import distinct_names
from ui.plain import escape_markdown, message_markdown, show_error
from ui.resources import get_services, page_start, ready_services
from ui.uploads import SavedUploads, save_uploads, upload_limit_words, uploads_dir

REPORT = "library_report"  # this session's last ingest report
UPLOADED = "library_uploaded"  # this session's last upload: its `SavedUploads`
CONFIRM = "library_delete"  # the doc_id whose deletion waits for a confirmation
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


def document_names(documents: list[DocRecord]) -> dict[str, str]:
    """doc_id -> a name that tells apart two files of one name in different folders."""
    names = distinct_names((d.path, d.abs_path) for d in documents)
    return {d.doc_id: names[d.abs_path] for d in documents}


def documents_table(documents: list[DocRecord]) -> None:
    if not documents:
        st.info(
            "The knowledge base is empty; add documents with the forms above: upload files, "
            "or give a folder on the server."
        )
        return
    names = document_names(documents)
    st.dataframe(
        [
            {
                "document": names[d.doc_id],
                "chunks": d.chunk_count,
                "size (KiB)": round(d.size_bytes / 1024, 1),
                "last ingested (UTC)": d.ingested_at,
                "title": d.title,
                "file": d.abs_path,
            }
            for d in documents
        ],
        hide_index=True,
        column_config={"document": st.column_config.TextColumn(width="large")},
    )


class EmbeddingProgress:
    """The ingest bar: the embedding work in chunks, with chunks/s and the time left. Until
    every file is read the chunks to come are estimated from the files read so far."""

    def __init__(self, total_files: int) -> None:
        self.total_files = total_files
        self.files_done = 0
        self.started = time.monotonic()
        self.plan_line = st.empty()
        self.bar = st.progress(0.0, text=f"Reading {counted(total_files, 'file')}…")

    def on_plan(self, plan: IngestPlan) -> None:
        """What will be read and roughly how long it takes, above the bar."""
        self.plan_line.caption(plan.sentence())

    def on_file(self, shown: str, files_done: int, chunks_written: int) -> None:
        self.files_done = files_done

    def on_chunks(self, embedded: int, made: int) -> None:
        self.bar.progress(*self.state(embedded, made, time.monotonic() - self.started))

    def state(self, embedded: int, made: int, seconds: float) -> tuple[float, str]:
        """(share done, the bar's words) after `seconds`."""
        reading = self.files_done < self.total_files
        expected = made
        if reading and self.files_done:
            expected = max(made, round(made * self.total_files / self.files_done))
        share = min(1.0, embedded / expected) if expected else 0.0
        about = "about " if reading else ""
        words = f"{embedded:,} of {about}{expected:,} chunks embedded"
        rate = embedded / seconds if seconds > 0 else 0.0
        if rate > 0:
            left = (expected - embedded) / rate
            words += f" · {rate:,.1f} chunks/s · {about}{left:,.0f} s left"
        words += f" · {self.files_done} of {counted(self.total_files, 'file')} read"
        return share, words


def run_ingest(settings: Settings, roots: list[Path], prune: bool = False) -> None:
    total = sum(1 for _ in find_files(roots))
    services = ready_services(settings)
    progress = EmbeddingProgress(total)
    try:
        with services.open_store() as store:
            report = ingest(
                settings,
                roots,
                prune=prune,
                embedder=services.embedder,
                on_progress=progress.on_file,
                store=store,
                on_chunks=progress.on_chunks,
                on_plan=progress.on_plan,
            )
    except KBError as err:
        show_error(err)
        return
    progress.bar.progress(1.0, text=f"Done: {counted(report.chunks_written, 'chunk')} embedded.")
    st.session_state[REPORT] = report


def show_renamed(renamed: list[tuple[str, str]]) -> None:
    for name, saved_as in renamed:
        st.info(
            f"{escape_markdown(name)} was saved as {escape_markdown(saved_as)}: another file "
            "in this upload has the same name."
        )


def show_replaced(replaced: list[str]) -> None:
    for name in replaced:
        st.info(
            f"{escape_markdown(name)} replaced the earlier upload of that name, whose text is "
            "no longer searchable; to keep both, rename one and upload it again."
        )


def show_refused(refused: list[tuple[str, str]]) -> None:
    for name, reason in refused:
        st.warning(f"{escape_markdown(name)} was not ingested: {message_markdown(reason)}")


def show_report(report: IngestReport | None, uploaded: SavedUploads | None) -> None:
    st.subheader("Last ingest")
    if uploaded is not None:
        show_refused(uploaded.refused)
        show_renamed(uploaded.renamed)
        show_replaced(uploaded.replaced)
    if report is None:
        return
    figures = ("added", "updated", "unchanged", "removed", "chunks_written")
    for column, name in zip(st.columns(len(figures)), figures, strict=True):
        column.metric(name.replace("_", " "), getattr(report, name))
    st.caption(f"{report.seconds:.1f} s")
    if report.failed:
        st.warning(f"{counted(len(report.failed), 'file')} could not be ingested:")
        st.dataframe(report.failed, hide_index=True)
    if report.junk_skipped:
        st.caption(
            f"Runs of encoded or binary data (base64, hex, binary bytes) were left out of "
            f"{counted(len(report.junk_skipped), 'file')}:"
        )
        st.dataframe(report.junk_skipped, hide_index=True)
    notes = reading_notes(report)
    if notes:
        st.caption("What reading could not do, or did by a guess:")
        st.markdown("\n".join(f"- {escape_markdown(line)}" for line in notes))
    if report.gone:
        st.caption(
            f"{len(report.gone)} documents' files are gone; ingest their folder with "
            "'remove documents whose files are gone' to delete them."
        )


# Streamlit writes its own ceiling under the drop zone ("200MB per file": server.maxUploadSize,
# kept above kb's limit so that a larger file reaches the app and is named with the limit);
# kb's limit is in the uploader's label, so the ceiling is not shown as a second one.
HIDE_CEILING = '<style>[data-testid="stFileUploaderDropzoneInstructions"] {display: none;}</style>'


def upload_form(settings: Settings) -> None:
    st.html(HIDE_CEILING)
    with st.form("upload", clear_on_submit=True):
        files = st.file_uploader(
            f"Upload files (up to {upload_limit_words(settings.upload_max_mb)} each)",
            accept_multiple_files=True,
        )
        submitted = st.form_submit_button("Ingest uploads")
    if not submitted or not files:
        return
    outcome = save_uploads(list(files), uploads_dir(settings.data_dir), settings.upload_max_mb)
    st.session_state[UPLOADED] = outcome
    st.session_state.pop(REPORT, None)
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


def uploaded_copy(settings: Settings, document: DocRecord) -> Path | None:
    """The file in `<data_dir>/uploads` a document was ingested from, or None."""
    folder = uploads_dir(settings.data_dir).resolve()
    path = Path(document.abs_path)
    return path if path.parent == folder and path.is_file() else None


def delete_form(settings: Settings, documents: list[DocRecord]) -> None:
    if not documents:
        return
    by_id = {d.doc_id: d for d in documents}
    names = document_names(documents)
    with st.form("delete"):
        doc_id = st.selectbox("Document", list(by_id), format_func=names.__getitem__, index=None)
        submitted = st.form_submit_button("Delete document")
    if submitted and doc_id is not None:
        st.session_state[CONFIRM] = doc_id
    pending = by_id.get(st.session_state.get(CONFIRM, ""))
    if pending is not None:
        confirm_delete(settings, pending, names[pending.doc_id])


def confirm_delete(settings: Settings, document: DocRecord, name: str) -> None:
    copy = uploaded_copy(settings, document)
    also = " and the uploaded file" if copy is not None else ""
    st.warning(
        f"Delete {escape_markdown(name)}? This removes its {counted(document.chunk_count, 'chunk')}"
        f"{also} from the knowledge base; it cannot be undone."
    )
    yes, no = st.columns(2)
    if no.button("Keep it", key="library-delete-cancel"):
        st.session_state.pop(CONFIRM, None)
        st.rerun()
    if not yes.button("Delete", key="library-delete-confirm", type="primary"):
        return
    st.session_state.pop(CONFIRM, None)
    try:
        with get_services(settings).open_store() as store:
            remove_document(store, document)
    except KBError as err:
        show_error(err)
        return
    if copy is not None:
        copy.unlink(missing_ok=True)
    st.session_state["library_deleted"] = name
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
    uploaded: SavedUploads | None = st.session_state.get(UPLOADED)
    if REPORT in st.session_state or (uploaded is not None and uploaded.refused):
        show_report(st.session_state.get(REPORT), uploaded)
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
    if documents:
        st.subheader("Delete a document")
        delete_form(settings, documents)


if __name__ == "__main__":
    main()
