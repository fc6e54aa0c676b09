"""Incremental and idempotent ingest: unchanged files cost nothing, changed files are replaced
whole, gone files are reported or pruned, and `--list` / `--delete` manage the registry."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ingest import pipeline
from ingest.pipeline import ingest
from rag.embeddings import Embedder
from rag.settings import Settings
from rag.store import doc_id_for
from tests.ingest_fixtures import (
    CliRun,
    NoModelEmbedder,
    assert_store_consistent,
    cli_runner,
    make_settings,
    snapshot,
    write_markdown_corpus,
)


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    write_markdown_corpus(tmp_path / "docs", count=3, paragraphs=2)
    return tmp_path / "docs"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "store")


@pytest.fixture
def run_cli(
    tmp_path: Path,
    embedder: Embedder,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> CliRun:
    return cli_runner(tmp_path, tmp_path / "store", embedder, monkeypatch, capsys)


def abs_paths(folder: Path) -> set[str]:
    return {str(p.resolve()) for p in folder.iterdir()}


def test_unchanged_rerun_writes_nothing_and_never_loads_the_model(
    docs: Path, settings: Settings, embedder: Embedder
) -> None:
    first = ingest(settings, [docs], embedder=embedder)
    assert (first.added, first.chunks_written) == (3, 6)
    before = snapshot(settings)

    no_model = NoModelEmbedder(settings)
    again = ingest(settings, [docs], embedder=no_model)
    assert (again.added, again.updated, again.unchanged, again.chunks_written) == (0, 0, 3, 0)
    assert not no_model.model_touched
    after = snapshot(settings)
    assert after.records == before.records
    assert {p.id for p in after.points} == {p.id for p in before.points}


def test_unchanged_rerun_through_the_cli_loads_no_model(
    docs: Path, run_cli: CliRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_cli(str(docs))[0] == 0
    monkeypatch.setattr(pipeline, "Embedder", NoModelEmbedder)
    code, out, err = run_cli(str(docs))
    assert code == 0, err
    assert "0 added, 0 updated, 3 unchanged" in out and "0 chunks written" in out


def test_a_changed_file_is_replaced_whole_with_deterministic_ids(
    tmp_path: Path, docs: Path, settings: Settings, embedder: Embedder
) -> None:
    ingest(settings, [docs], embedder=embedder)
    target = docs / "report-001.md"
    untouched = snapshot(settings)
    target.write_text(
        "# Report 1\n\n## Revised\n\nThe revised report mentions penguins only. "
        "It has a second sentence.\n\n## Appendix\n\nAn appendix was added.\n\n"
        "## Errata\n\nThree sections now.\n",
        encoding="utf-8",
    )
    report = ingest(settings, [docs], embedder=embedder)
    assert (report.updated, report.unchanged, report.chunks_written) == (1, 2, 3)

    snap = snapshot(settings)
    assert_store_consistent(snap, abs_paths(docs))
    (record,) = [r for r in snap.records if r.doc_id == doc_id_for(str(target.resolve()))]
    texts = [p.payload["text"] for p in snap.chunks_of(record)]
    assert record.chunk_count == 3 and len(texts) == 3
    assert any("penguins" in t for t in texts)
    assert not any("version v1" in t for t in texts)
    assert not any("Report 1 part" in p.payload["text"] for p in snap.points)
    # the other documents kept their points untouched
    others = {p.id for p in untouched.points if p.payload["doc_id"] != record.doc_id}
    assert others <= {p.id for p in snap.points}

    # A from-scratch ingest of the same files into a fresh store makes the same point ids.
    fresh = make_settings(tmp_path / "fresh-store")
    ingest(fresh, [docs], embedder=embedder)
    assert {p.id for p in snapshot(fresh).points} == {p.id for p in snap.points}


def test_overlapping_roots_ingest_each_file_once(
    docs: Path, settings: Settings, embedder: Embedder
) -> None:
    report = ingest(settings, [docs, docs / "report-000.md", docs], embedder=embedder)
    assert (report.added, report.chunks_written) == (3, 6)
    assert_store_consistent(snapshot(settings), abs_paths(docs))


def test_changing_the_chunking_settings_reingests_everything(
    docs: Path, settings: Settings, embedder: Embedder, tmp_path: Path
) -> None:
    ingest(settings, [docs], embedder=embedder)
    smaller = make_settings(tmp_path / "store", chunk_size=24, chunk_overlap=4)
    report = ingest(smaller, [docs], embedder=embedder)
    assert report.updated == 3 and report.unchanged == 0
    snap = snapshot(smaller)
    assert_store_consistent(snap, abs_paths(docs))
    assert all(p.payload["n_tokens"] <= 24 for p in snap.points)


def test_gone_files_are_reported_and_kept_without_prune_removed_with_it(
    docs: Path, settings: Settings, embedder: Embedder
) -> None:
    ingest(settings, [docs], embedder=embedder)
    gone = docs / "report-002.md"
    gone_path = str(gone.resolve())
    gone.unlink()

    kept = ingest(settings, [docs], embedder=NoModelEmbedder(settings))
    assert kept.gone == [gone_path] and kept.removed == 0
    assert gone_path in {r.abs_path for r in snapshot(settings).records}

    pruned = ingest(settings, [docs], prune=True, embedder=NoModelEmbedder(settings))
    assert pruned.removed == 1 and pruned.gone == []
    snap = snapshot(settings)
    assert_store_consistent(snap, abs_paths(docs))
    assert not any(p.payload["abs_path"] == gone_path for p in snap.points)


def test_prune_only_touches_the_folders_being_ingested(
    tmp_path: Path, docs: Path, settings: Settings, embedder: Embedder
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(docs / "report-000.md", other / "kept.md")
    ingest(settings, [docs, other], embedder=embedder)
    (docs / "report-000.md").unlink()
    report = ingest(settings, [docs], prune=True, embedder=NoModelEmbedder(settings))
    assert report.removed == 1
    assert str((other / "kept.md").resolve()) in {r.abs_path for r in snapshot(settings).records}


def test_cli_reports_gone_files_and_prunes_them(docs: Path, run_cli: CliRun) -> None:
    assert run_cli(str(docs))[0] == 0
    (docs / "report-000.md").unlink()
    code, out, _ = run_cli(str(docs))
    assert code == 0
    assert f"gone: {(docs / 'report-000.md').resolve()}" in out and "--prune" in out
    code, out, _ = run_cli(str(docs), "--prune")
    assert code == 0 and "1 removed" in out and "gone:" not in out


def test_cli_include_and_exclude_reach_the_walk(docs: Path, run_cli: CliRun) -> None:
    (docs / "notes.txt").write_text("A text note about seals.", encoding="utf-8")
    code, out, _ = run_cli(str(docs), "--include", "*.md", "--exclude", "report-001.md")
    assert code == 0 and "2 files: 2 added" in out
    code, out, _ = run_cli("--list")
    assert "report-000.md" in out and "report-002.md" in out
    assert "report-001.md" not in out and "notes.txt" not in out


def test_cli_list_and_delete(docs: Path, tmp_path: Path, run_cli: CliRun) -> None:
    code, out, _ = run_cli("--list")
    assert code == 0 and "holds no documents" in out
    assert run_cli(str(docs))[0] == 0

    code, out, _ = run_cli("--list")
    assert code == 0
    lines = out.splitlines()
    for path in sorted(docs.iterdir()):  # as citations show it, beside its folder
        assert any(line.startswith(f"{path.name}\t{docs.resolve()}\t") for line in lines)
    assert "3 documents, 6 chunks." in out

    target = docs / "report-001.md"
    code, out, _ = run_cli("--delete", str(target))
    assert code == 0 and f"Removed {target.resolve()} (2 chunks)." in out
    remaining = abs_paths(docs) - {str(target.resolve())}
    assert_store_consistent(snapshot(make_settings(tmp_path / "store")), remaining)
    code, out, _ = run_cli("--list")
    assert "report-001.md" not in out and "2 documents, 4 chunks." in out

    code, _, err = run_cli("--delete", str(target))
    assert code == 2 and "is not a document in the knowledge base" in err
    code, _, err = run_cli("--delete", "nonexistent.txt")
    assert code == 2 and "nonexistent.txt is not a document" in err


def test_cli_delete_takes_the_path_citations_show(
    docs: Path, tmp_path: Path, run_cli: CliRun
) -> None:
    other = tmp_path / "other"
    write_markdown_corpus(other, count=1, paragraphs=2)
    (docs / "sub").mkdir()
    (docs / "sub" / "deep.md").write_text("# Deep\n\nA note about anchors.\n", encoding="utf-8")
    assert run_cli(str(docs), str(other))[0] == 0

    code, out, _ = run_cli("--delete", "sub/deep.md")  # not under the current directory
    assert code == 0 and f"Removed {(docs / 'sub' / 'deep.md').resolve()}" in out

    code, _, err = run_cli("--delete", "report-000.md")  # under both ingested folders
    assert code == 2 and "several ingested folders" in err
    assert str(docs.resolve()) in err and str(other.resolve()) in err
    code, out, _ = run_cli("--list")
    assert "4 documents" in out  # nothing removed on an ambiguous path
