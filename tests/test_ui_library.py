"""The Library page: the documents, upload and folder ingest through `ingest()`, delete."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from rag.store import open_store
from tests.ui_helpers import (
    AppEnv,
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


def test_an_upload_over_the_limit_is_refused(
    ui_app_env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KB_UPLOAD_MAX_MB", "0.001")  # about 1 KB
    app = switch(new_app(), "library")
    app.file_uploader[0].set_value(("big.md", b"# Big\n\n" + b"word " * 400, "text/markdown"))
    app.button(key="FormSubmitter:upload-Ingest uploads").click().run()
    no_exception(app)
    assert any("big.md was not saved" in shown(w.value) for w in app.warning)
    assert not (ui_app_env.settings.data_dir / "uploads" / "big.md").exists()
    assert "big.md" not in documents(app)


def test_a_server_folder_is_ingested_with_progress_and_failures_reported(
    ui_app_env: AppEnv, tmp_path: Path
) -> None:
    folder = write_corpus(tmp_path / "more", {"pier.md": "# Pier\n\nThe pier is 90 m long.\n"})
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 this is not a real pdf")
    app = switch(new_app(), "library")
    app.text_input[0].set_value(str(folder))
    app.button(key="FormSubmitter:folder-Ingest folder").click().run()
    no_exception(app)
    assert "pier.md" in documents(app)
    assert metric(app, "added") == "1"
    [failed] = app.dataframe[0].value.to_dict("records")  # the failed-files table comes first
    assert failed["path"] == str(folder / "broken.pdf") and failed["reason"]
    progress = [p.text for p in app.get("progress")]
    assert progress and "2 of 2 files" in progress[-1]


def test_a_missing_folder_is_one_sentence(ui_app_env: AppEnv, tmp_path: Path) -> None:
    app = switch(new_app(), "library")
    app.text_input[0].set_value(str(tmp_path / "nowhere"))
    app.button(key="FormSubmitter:folder-Ingest folder").click().run()
    no_exception(app)
    assert any("is not a folder on the server" in w.value for w in app.warning)


def test_a_document_is_deleted(ui_app_env: AppEnv) -> None:
    app = switch(new_app(), "library")
    before = documents(app)
    choices = app.selectbox[0].options  # shown by path
    app.selectbox[0].select_index(choices.index("village/bakery.md"))
    app.button(key="FormSubmitter:delete-Delete document").click().run()
    no_exception(app)
    assert "Deleted village/bakery.md" in page_text(app)
    after = documents(app)
    assert "village/bakery.md" not in after
    assert metric(app, "Chunks") == str(sum(before.values()) - before["village/bakery.md"])
