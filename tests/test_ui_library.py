"""The Library page: the documents, upload and folder ingest through `ingest()`, delete."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from rag.store import open_store
from tests.ui_helpers import (
    AppEnv,
    ingest_corpus,
    new_app,
    no_exception,
    page_text,
    shown,
    switch,
    write_corpus,
)


def documents(app: AppTest) -> dict[str, int]:
    """The documents table: document path -> chunks."""
    table = next(d.value for d in app.dataframe if "document" in d.value.columns)
    return dict(zip(table["document"], table["chunks"], strict=True))


def metric(app: AppTest, label: str) -> str:
    return next(m.value for m in app.metric if m.label == label)


def test_documents_with_chunk_counts_and_store_size(ui_app_env: AppEnv) -> None:
    with open_store(ui_app_env.settings) as store:
        expected = {d.path: d.chunk_count for d in store.documents()}
    app = switch(new_app(), "library")
    no_exception(app)
    assert documents(app) == expected
    assert set(expected) == {"harbour/lighthouse.md", "village/bakery.md", "signals.md"}
    assert metric(app, "Documents") == "3"
    assert metric(app, "Chunks") == str(sum(expected.values()))
    assert metric(app, "On disk").endswith("KiB")
    assert app.dataframe[0].value["last ingested (UTC)"].str.match(r"\d{4}-\d\d-\d\dT").all()


def test_an_upload_is_saved_under_a_safe_name_and_ingested(ui_app_env: AppEnv) -> None:
    app = switch(new_app(), "library")
    body = b"# Ferry\n\nThe Kessel ferry leaves the north pier at noon on weekdays.\n"
    app.file_uploader[0].set_value(("../../.ferry times.md", body, "text/markdown"))
    app.button(key="FormSubmitter:upload-Ingest uploads").click().run()
    no_exception(app)
    saved = ui_app_env.settings.data_dir / "uploads" / "ferry times.md"
    assert saved.read_bytes() == body
    assert [p.name for p in saved.parent.iterdir()] == ["ferry times.md"]
    assert "ferry times.md" in documents(app)
    assert metric(app, "added") == "1"


def test_two_uploads_of_one_name_are_both_ingested_and_the_renaming_said(
    ui_app_env: AppEnv,
) -> None:
    app = switch(new_app(), "library")
    app.file_uploader[0].set_value(
        [
            (
                "notes.md",
                b"# Team A\n\nTeam A meets on Mondays at the boathouse.\n",
                "text/markdown",
            ),
            (
                "notes.md",
                b"# Team B\n\nTeam B meets on Fridays at the lighthouse.\n",
                "text/markdown",
            ),
        ]
    )
    app.button(key="FormSubmitter:upload-Ingest uploads").click().run()
    no_exception(app)
    assert metric(app, "added") == "2"
    assert {"notes.md", "notes-2.md"} <= set(documents(app))
    [info] = [shown(i.value) for i in app.info]
    assert (
        info == "notes.md was saved as notes-2.md: another file in this upload has the same name."
    )

    kitchen = b"# Kitchen\n\nThe kitchen opens at seven.\n"
    app.file_uploader[0].set_value([("notes.md", kitchen, "text/markdown")])
    app.button(key="FormSubmitter:upload-Ingest uploads").click().run()
    no_exception(app)
    assert metric(app, "updated") == "1"
    [info] = [shown(i.value) for i in app.info]
    assert info.startswith("notes.md replaced the earlier upload of that name, whose text is no")


def test_an_upload_over_the_limit_is_refused(
    ui_app_env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KB_UPLOAD_MAX_MB", "0.001")  # about 1 KB
    app = switch(new_app(), "library")
    app.file_uploader[0].set_value(("big.md", b"# Big\n\n" + b"word " * 400, "text/markdown"))
    app.button(key="FormSubmitter:upload-Ingest uploads").click().run()
    no_exception(app)
    [warning] = [shown(w.value) for w in app.warning]
    assert warning.startswith("big.md was not ingested: its 0.0 MB are over the upload limit")
    assert "raise `KB_UPLOAD_MAX_MB`" in warning  # as code
    assert [u.label for u in app.file_uploader] == ["Upload files (up to 0.001 MB each)"]
    assert not (ui_app_env.settings.data_dir / "uploads" / "big.md").exists()
    assert "big.md" not in documents(app)


def test_a_server_folder_is_ingested_with_progress_and_failures_reported(
    ui_app_env: AppEnv, tmp_path: Path
) -> None:
    folder = write_corpus(tmp_path / "more", {"pier.md": "# Pier\n\nThe pier is 90 m long.\n"})
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 this is not a real pdf")
    turkish = "Merhaba dünya, bu kısa bir Türkçe dosyadır. Şişli'de oturuyorum."
    (folder / "not-utf8.txt").write_bytes(turkish.encode("cp1254"))  # a code page guessed
    app = switch(new_app(), "library")
    app.text_input[0].set_value(str(folder))
    app.button(key="FormSubmitter:folder-Ingest folder").click().run()
    no_exception(app)
    assert "pier.md" in documents(app)
    assert metric(app, "added") == "2"
    [failed] = app.dataframe[0].value.to_dict("records")  # the failed-files table comes first
    assert failed["path"] == str(folder / "broken.pdf") and failed["reason"]
    [progress] = [p.text for p in app.get("progress")]
    assert progress.startswith("Done: ") and progress.endswith(" chunks embedded.")
    text = page_text(app)
    assert "3 files to read (" in text  # the plan, before any work
    assert "check: not-utf8.txt: read as" in text  # the reading notes, as the CLI's


def test_a_missing_folder_is_one_sentence(ui_app_env: AppEnv, tmp_path: Path) -> None:
    app = switch(new_app(), "library")
    app.text_input[0].set_value(str(tmp_path / "nowhere"))
    app.button(key="FormSubmitter:folder-Ingest folder").click().run()
    no_exception(app)
    assert any("is not a folder on the server" in w.value for w in app.warning)


def test_a_document_is_deleted_after_a_confirmation(ui_app_env: AppEnv) -> None:
    app = switch(new_app(), "library")
    before = documents(app)
    choices = app.selectbox[0].options  # shown by path
    app.selectbox[0].select_index(choices.index("village/bakery.md"))
    app.button(key="FormSubmitter:delete-Delete document").click().run()
    no_exception(app)
    assert "Delete village/bakery.md? This removes its" in page_text(app)
    assert documents(app) == before  # nothing is gone before the confirmation
    app.button(key="library-delete-confirm").click().run()
    no_exception(app)
    assert "Deleted village/bakery.md" in page_text(app)
    after = documents(app)
    assert "village/bakery.md" not in after
    assert metric(app, "Chunks") == str(sum(before.values()) - before["village/bakery.md"])


def test_cancelling_a_delete_keeps_the_document(ui_app_env: AppEnv) -> None:
    app = switch(new_app(), "library")
    before = documents(app)
    app.selectbox[0].select_index(app.selectbox[0].options.index("signals.md"))
    app.button(key="FormSubmitter:delete-Delete document").click().run()
    app.button(key="library-delete-cancel").click().run()
    no_exception(app)
    assert documents(app) == before and "Delete signals.md?" not in page_text(app)


def test_deleting_an_upload_removes_its_copy(ui_app_env: AppEnv) -> None:
    app = switch(new_app(), "library")
    body = b"# Ferry\n\nThe Kessel ferry leaves the north pier at noon on weekdays.\n"
    app.file_uploader[0].set_value(("ferry.md", body, "text/markdown"))
    app.button(key="FormSubmitter:upload-Ingest uploads").click().run()
    saved = ui_app_env.settings.data_dir / "uploads" / "ferry.md"
    assert saved.is_file()
    app.selectbox[0].select_index(app.selectbox[0].options.index("ferry.md"))
    app.button(key="FormSubmitter:delete-Delete document").click().run()
    assert "and the uploaded file" in page_text(app)
    app.button(key="library-delete-confirm").click().run()
    no_exception(app)
    assert "ferry.md" not in documents(app)
    assert not saved.exists()


def test_two_files_of_one_name_in_different_folders_are_told_apart(
    ui_app_env: AppEnv, ui_embedder: Any, tmp_path: Path
) -> None:
    procedure = "# Boating\n\nWear a life jacket on the {} pier.\n"
    for team in ("north", "south"):
        folder = write_corpus(tmp_path / team / "docs", {"boating.md": procedure.format(team)})
        ingest_corpus(ui_app_env.settings, folder, ui_embedder)
    app = switch(new_app(), "library")
    no_exception(app)
    names = {"boating.md (in north/docs)", "boating.md (in south/docs)"}
    assert names <= set(documents(app))
    assert names <= set(app.selectbox[0].options)


def test_an_empty_library_points_at_the_forms_above(
    ui_app_env: AppEnv, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KB_QDRANT_PATH", str(tmp_path / "empty-store"))
    app = switch(new_app(), "library")
    no_exception(app)
    [info] = [shown(i.value) for i in app.info]
    assert "forms above" in info and "below" not in info


def test_ingest_progress_follows_the_embedding_in_chunks() -> None:
    from ui.views.library import EmbeddingProgress

    progress = EmbeddingProgress.__new__(EmbeddingProgress)
    progress.total_files, progress.files_done = 6, 6
    share, words = progress.state(embedded=64, made=640, seconds=2.0)
    assert share == 0.1
    assert words == "64 of 640 chunks embedded · 32.0 chunks/s · 18 s left · 6 of 6 files read"
    progress.files_done = 2  # still reading: the chunks to come are estimated
    share, words = progress.state(embedded=10, made=100, seconds=1.0)
    assert share == 10 / 300 and words.startswith("10 of about 300 chunks embedded")
