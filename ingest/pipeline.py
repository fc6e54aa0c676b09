"""`ingest(settings, roots)`: read, chunk, embed and write documents, touching only what changed.

The main thread reads, chunks and embeds; a writer thread applies typed write steps in order
(`ingest.writer`: `Begin`, `Chunks`, `Commit`; their order and meaning are `Store`'s), so the
store is written while the next batch is embedded.
"""

from __future__ import annotations

import hashlib
import json
import stat
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ingest import writer
from ingest.chunking import Chunk, ChunkLimits, chunk_document
from ingest.estimate import IngestPlan, plan_ingest
from ingest.ocr import ocr_engine
from ingest.readers import READER_VERSION, UnreadableFile, read_document
from ingest.readers.base import ReadNotes
from ingest.walk import FoundFile, SkippedPath, find_files
from rag.embeddings import Embedder
from rag.settings import Settings
from rag.sparse import Bm25Encoder
from rag.store import PAGE, ChunkPoint, ChunkRecord, DocRecord, Store, doc_id_for, open_store
from rag.store.reembed import kind_differs, reembed_store
from rag.store.upkeep import INDEX_MIN_CHUNKS, build_index

EMBED_BATCH_CHUNKS = 128
LET_GO_EVERY_S = 10.0  # a long ingest lets go of the embedded store this often, so that
LET_GO_FOR_S = 0.25  # the app (waiting for the lock) can open it and search


@dataclass
class IngestReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    chunks_written: int = 0
    reembedded: int = 0  # chunks given new dense vectors of the embedder's kind (see below)
    seconds: float = 0.0  # reading, chunking, embedding and writing
    index_seconds: float = 0.0  # building the embedded store's search index afterwards
    gone: list[str] = field(default_factory=list)  # missing files kept because --prune was off
    # files with runs of base64, hex or binary data left out: {"path", "runs"}
    junk_skipped: list[dict[str, Any]] = field(default_factory=list)
    ocr_pages: list[dict[str, Any]] = field(default_factory=list)  # {path, pages}
    unread_pages: list[dict[str, Any]] = field(default_factory=list)  # {path, page, reason}
    failed_rows: list[dict[str, str]] = field(default_factory=list)  # {path, row, reason}
    skipped_parts: list[dict[str, str]] = field(default_factory=list)  # {path, part}
    # files under the ingested folders not read: {path, reason} (see `ingest.walk.find_files`)
    skipped_paths: list[dict[str, str]] = field(default_factory=list)
    # text, Markdown, CSV and HTML files whose legacy 8-bit code page was an unsure guess:
    # {path, encoding}
    unsure_encodings: list[dict[str, str]] = field(default_factory=list)
    rows_split: int = 0  # table rows too long for one chunk, split between their cells
    ocr_seconds: float = 0.0  # of `seconds`, spent rendering and reading scanned pages

    def as_json(self) -> dict[str, Any]:
        keys = (
            "added", "updated", "unchanged", "removed", "failed", "chunks_written", "reembedded",
            "seconds", "index_seconds", "junk_skipped", "ocr_pages", "unread_pages",
            "failed_rows", "skipped_parts", "rows_split", "ocr_seconds", "skipped_paths",
            "unsure_encodings",
        )  # fmt: skip
        return {key: getattr(self, key) for key in keys}

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.as_json(), indent=2) + "\n", encoding="utf-8")


@dataclass
class _Pending:
    """A changed document on its way to the store."""

    found: FoundFile
    record: DocRecord
    previous: DocRecord | None
    chunks: list[Chunk]
    remaining: int
    page_kind: str = PAGE


ProgressHook = Callable[[str, int, int], None]  # (file shown, files done, chunks written)
ChunkHook = Callable[[int, int], None]  # (chunks embedded and written, chunks made so far)
PlanHook = Callable[[IngestPlan], None]  # what the ingest is about to do, before it starts


def pipeline_signature(settings: Settings) -> str:
    """What, besides a file's bytes, decides its chunks: changing it re-ingests everything
    (a new `READER_VERSION` makes the next ingest read every file again)."""
    return (
        f"v1|{READER_VERSION}|{settings.embed_model}|{settings.chunk_size}|{settings.chunk_overlap}"
        f"|ocr={_ocr_signature(settings)}"
    )


def _ocr_signature(settings: Settings) -> str:
    if not settings.ocr:
        return "off"
    if settings.ocr_engine == "tesseract":
        return f"tesseract:{settings.ocr_languages}"
    return settings.ocr_engine


def version_hash(data: bytes, settings: Settings) -> str:
    digest = hashlib.sha256(pipeline_signature(settings).encode())
    digest.update(data)
    return digest.hexdigest()


def ingest(
    settings: Settings,
    roots: Sequence[Path],
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    prune: bool = False,
    embedder: Embedder | None = None,
    on_progress: ProgressHook | None = None,
    store: Store | None = None,
    on_chunks: ChunkHook | None = None,
    on_plan: PlanHook | None = None,
) -> IngestReport:
    """Ingest `roots` into the store (opened for this call unless an open `store` is given:
    the app passes the one it holds, since the embedded store allows one opener).
    `on_plan` hears what will be read and roughly how long it takes, before any work;
    `on_progress` follows the files; `on_chunks` the embedding work, after each file is
    chunked and each batch embedded."""
    started = time.perf_counter()
    with ExitStack() as stack:
        embedder = embedder or Embedder(settings)
        if store is None:
            store = stack.enter_context(open_store(settings, embedder=embedder))
        run = _Run(settings, store, embedder, on_progress)
        run.on_chunks = on_chunks
        run.on_plan = on_plan
        report = run.execute(roots, include, exclude, prune)
        report.seconds = round(time.perf_counter() - started, 3)
        written = report.chunks_written + report.reembedded
        if written >= INDEX_MIN_CHUNKS and store.can_let_go:
            report.index_seconds = build_index(store, _say)["seconds"]
    return report


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class _Run:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        embedder: Embedder,
        on_progress: ProgressHook | None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.embedder = embedder
        self.on_progress = on_progress
        self.report = IngestReport()
        self.bm25 = Bm25Encoder(avg_len=max(16.0, settings.chunk_size * 0.5))
        self.ocr = ocr_engine(settings.ocr, settings.ocr_engine, settings.ocr_languages)
        self.buffer: list[tuple[_Pending, Chunk]] = []
        self.writes: writer.WriterThread | None = None
        self.files_done = 0
        self.chunks_made = 0
        self.on_chunks: ChunkHook | None = None
        self.on_plan: PlanHook | None = None
        self.plan = IngestPlan()
        self.held_since = time.monotonic()

    def execute(
        self, roots: Sequence[Path], include: Sequence[str], exclude: Sequence[str], prune: bool
    ) -> IngestReport:
        if self.store.exists():
            writer.check_embedder(self.store, self.settings.embed_model)
            writer.finish_pending(self.store)
            self._reembed_if_needed()
            # new chunks are tokenized as the store's others were (older stores: word tokenizer)
            self.bm25 = Bm25Encoder.recorded(self.store.metadata().get("bm25"))
        registry = {record.doc_id: record for record in self.store.documents()}
        skipped: list[SkippedPath] = []
        found = list(find_files(roots, include, exclude, skipped))
        self.report.skipped_paths = [{"path": s.path, "reason": s.reason} for s in skipped]
        stored = {Path(record.abs_path): record.doc_hash for record in registry.values()}
        engine = self.settings.ocr_engine if self.ocr is not None else None
        self.plan = plan_ingest(found, stored, self._version_of, engine)
        if self.on_plan is not None:
            self.on_plan(self.plan)
        try:
            for item in found:
                self._ingest_file(item, registry)
                self.files_done += 1
                self._progress(item.rel)
            self._flush()
        finally:
            if self.writes is not None:
                self.writes.close()
        self._handle_gone(roots, {str(f.path) for f in found}, registry, prune)
        return self.report

    def _version_of(self, path: Path) -> str | None:
        try:
            return version_hash(_read_bytes(path, self.settings.max_file_mb), self.settings)
        except UnreadableFile:
            return None

    def _reembed_if_needed(self) -> None:
        """A store of this model holding vectors of another kind (fp32 or int8) than this
        embedder makes is re-embedded in place from its chunk texts before anything is added."""
        meta = self.store.meta()
        if meta is None or not kind_differs(meta, self.embedder.identity):
            return
        writer.check_dimension(self.store, self.settings.embed_model, self.embedder.dim)
        self.report.reembedded = reembed_store(self.store, self.embedder, _say)

    def _progress(self, shown: str) -> None:
        if self.on_progress is not None:
            self.on_progress(shown, self.files_done, self.report.chunks_written)

    def _chunk_progress(self) -> None:
        if self.on_chunks is not None:
            self.on_chunks(self.report.chunks_written, self.chunks_made)

    def _ingest_file(self, found: FoundFile, registry: dict[str, DocRecord]) -> None:
        try:
            _check_name(found.path)
            previous = registry.get(doc_id_for(str(found.path)))
            if previous is not None and self.plan.is_unchanged(found.path, previous.doc_hash):
                self.report.unchanged += 1  # hashed while planning: not read again
                return
            data = _read_bytes(found.path, self.settings.max_file_mb)
            doc_hash = version_hash(data, self.settings)
            if previous is not None and previous.doc_hash == doc_hash:
                self.report.unchanged += 1
                return
            parsed = read_document(found.path, data, ocr=self.ocr)
        except UnreadableFile as reason:
            self._failed(found.path, str(reason))
            return
        except Exception as err:  # a reader's library failing on a file it cannot handle
            self._failed(found.path, f"cannot be read ({_one_line(err)})")
            return
        self._start_writes()
        chunks = chunk_document(
            parsed,
            ChunkLimits(
                self.settings.chunk_size, self.settings.chunk_overlap, self.embedder.max_tokens
            ),
            self.embedder.count_tokens,
            self.embedder.token_offsets,
        )
        record = DocRecord(
            doc_id=doc_id_for(str(found.path)),
            path=found.rel,
            abs_path=str(found.path),
            title=parsed.title,
            doc_hash=doc_hash,
            chunk_count=len(chunks),
            size_bytes=len(data),
            ingested_at=datetime.now(UTC).isoformat(timespec="seconds"),
            pending_gc=True,
        )
        if parsed.junk_runs:
            self.report.junk_skipped.append({"path": found.rel, "runs": parsed.junk_runs})
        self._note(found, parsed.notes, chunks)
        pending = _Pending(found, record, previous, chunks, len(chunks), parsed.page_kind)
        self._writer().put(writer.Begin(record, previous))
        if previous is None:
            self.report.added += 1
        else:
            self.report.updated += 1
        self.buffer.extend((pending, chunk) for chunk in chunks)
        self.chunks_made += len(chunks)
        self._chunk_progress()
        if len(self.buffer) >= EMBED_BATCH_CHUNKS:
            self._flush()

    def _note(self, found: FoundFile, notes: ReadNotes, chunks: list[Chunk]) -> None:
        """What reading the file did besides text: OCR'd and unread pages, rows, parts."""
        r, path = self.report, found.rel
        if notes.ocr_pages:
            r.ocr_pages.append({"path": path, "pages": sorted(notes.ocr_pages)})
        r.unread_pages += [
            {"path": path, "page": page, "reason": why}
            for page, why in sorted(notes.unread_pages.items())
        ]
        r.failed_rows += [
            {"path": path, "row": row, "reason": why} for row, why in notes.failed_rows.items()
        ]
        r.skipped_parts += [{"path": path, "part": part} for part in notes.skipped_parts]
        if notes.guessed_encoding:
            r.unsure_encodings.append({"path": path, "encoding": notes.guessed_encoding})
        r.rows_split += len({(c.headings[:-1], c.split_row) for c in chunks if c.split_row})
        r.ocr_seconds = round(r.ocr_seconds + notes.ocr_seconds, 3)

    def _failed(self, path: Path, reason: str) -> None:
        shown = str(path).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        self.report.failed.append({"path": shown, "reason": reason})

    def _start_writes(self) -> None:
        """First changed file: load the embedder and make sure the collections exist."""
        if self.writes is not None:
            return
        name, dim = self.settings.embed_model, self.embedder.dim
        writer.check_dimension(self.store, name, dim)
        identity = getattr(self.embedder, "identity", None) or name
        writer.ensure_collections(self.store, name, dim, identity, self.bm25.describe())
        self.writes = writer.WriterThread(self.store)

    def _writer(self) -> writer.WriterThread:
        assert self.writes is not None
        return self.writes

    def _flush(self) -> None:
        if not self.buffer:
            return
        batch, self.buffer = self.buffer, []
        vectors = self.embedder.embed([chunk.embed_text for _, chunk in batch])
        points = [
            self._point(pending, chunk, vector)
            for (pending, chunk), vector in zip(batch, vectors, strict=True)
        ]
        self._writer().put(writer.Chunks(points))
        self.report.chunks_written += len(points)
        for pending, _ in batch:
            pending.remaining -= 1
            if pending.remaining == 0:
                self._writer().put(writer.Commit(pending.record, pending.previous))
        self._progress("")
        self._chunk_progress()
        self._let_others_in()

    def _let_others_in(self) -> None:
        """Between batches, now and then: let go of the store for a moment (all steps so far
        applied), so that the app can search during a long ingest."""
        if not self.store.can_let_go or time.monotonic() - self.held_since < LET_GO_EVERY_S:
            return
        self._writer().drain()
        self.store.let_others_in(LET_GO_FOR_S)
        self.held_since = time.monotonic()

    def _point(self, pending: _Pending, chunk: Chunk, vector: list[float]) -> ChunkPoint:
        record = pending.record
        stored = ChunkRecord(
            doc_id=record.doc_id,
            path=record.path,
            abs_path=record.abs_path,
            dirs=tuple(_ancestors(pending.found.path)),
            title=record.title,
            page=chunk.page,
            page_kind=pending.page_kind,
            headings=tuple(chunk.headings),
            chunk_index=chunk.index,
            char_start=chunk.char_start,
            char_end=chunk.char_end,
            doc_hash=record.doc_hash,
            text=chunk.text,
            n_tokens=chunk.n_tokens,
            ocr=chunk.ocr,
        )
        return ChunkPoint(stored, vector, self.bm25.document(chunk.embed_text))

    def _handle_gone(
        self,
        roots: Sequence[Path],
        present: set[str],
        registry: dict[str, DocRecord],
        prune: bool,
    ) -> None:
        folders = [root.resolve() for root in roots if root.is_dir()]
        for record in registry.values():
            path = Path(record.abs_path)
            if record.abs_path in present or path.exists():
                continue
            if not any(path.is_relative_to(folder) for folder in folders):
                continue
            if prune:
                writer.remove_document(self.store, record)
                self.report.removed += 1
            else:
                self.report.gone.append(record.abs_path)


def _check_name(path: Path) -> None:
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        raise UnreadableFile("the file name is not valid UTF-8; rename the file") from None


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())[:160]
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _read_bytes(path: Path, max_mb: float) -> bytes:
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableFile("not a regular file (a pipe, socket or device)")
        size = info.st_size
        if size > max_mb * 1024 * 1024:
            raise UnreadableFile(
                f"the file is {size / 1048576:.1f} MB, "
                f"over the KB_MAX_FILE_MB limit of {max_mb:g} MB"
            )
        return path.read_bytes()
    except PermissionError:
        raise UnreadableFile("the file cannot be read (permission denied)") from None
    except IsADirectoryError:
        raise UnreadableFile("not a file") from None
    except OSError as err:
        raise UnreadableFile(f"the file cannot be read ({err.strerror or err})") from None


def _ancestors(path: Path) -> list[str]:
    return [parent.as_posix() for parent in path.parents]
