"""Finding files: recursive, include/exclude globs, hidden and version-control folders skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.walk import find_files


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    for rel in (
        "top.md",
        "a/one.txt",
        "a/b/c/deep.pdf",
        "a/b/notes.html",
        "drafts/wip.md",
        "data/table.csv",
        ".git/HEAD.txt",
        ".git/objects/readme.md",
        ".hg/store.txt",
        ".svn/entries.txt",
        "node_modules/pkg/readme.md",
        "__pycache__/x.txt",
        ".hidden/secret.md",
        "a/.cache/cached.txt",
        "a/.dotfile.md",
        "image.png",
        "archive.zip",
    ):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("some text", encoding="utf-8")
    return root


def rels(root: Path, include: tuple[str, ...] = (), exclude: tuple[str, ...] = ()) -> list[str]:
    return sorted(found.rel for found in find_files([root], include, exclude))


def test_walks_recursively_and_skips_hidden_vcs_and_unsupported(tree: Path) -> None:
    assert rels(tree) == [
        "a/b/c/deep.pdf",
        "a/b/notes.html",
        "a/one.txt",
        "data/table.csv",
        "drafts/wip.md",
        "top.md",
    ]


def test_found_files_carry_absolute_path_and_root(tree: Path) -> None:
    found = {f.rel: f for f in find_files([tree])}
    deep = found["a/b/c/deep.pdf"]
    assert deep.path == (tree / "a/b/c/deep.pdf").resolve()
    assert deep.path.is_absolute()
    assert deep.root == tree.resolve()


def test_include_globs_match_relative_path_or_name(tree: Path) -> None:
    assert rels(tree, include=("*.md",)) == ["drafts/wip.md", "top.md"]
    assert rels(tree, include=("a/b/*",)) == ["a/b/c/deep.pdf", "a/b/notes.html"]
    assert rels(tree, include=("*.pdf", "*.csv")) == ["a/b/c/deep.pdf", "data/table.csv"]


def test_exclude_globs_win_over_include(tree: Path) -> None:
    assert rels(tree, exclude=("drafts/*", "*.html")) == [
        "a/b/c/deep.pdf",
        "a/one.txt",
        "data/table.csv",
        "top.md",
    ]
    assert rels(tree, include=("*.md",), exclude=("wip.md",)) == ["top.md"]


def test_a_file_root_is_taken_as_is(tree: Path) -> None:
    (found,) = find_files([tree / "a" / "one.txt"])
    assert found.rel == "one.txt"
    assert found.root == (tree / "a").resolve()


def test_a_root_inside_a_hidden_folder_is_still_walked(tree: Path) -> None:
    # Only folders *below* a root are judged hidden; a root the user names is walked.
    assert rels(tree / ".hidden") == ["secret.md"]


def test_a_file_reached_from_two_roots_is_found_once(tree: Path) -> None:
    found = list(find_files([tree, tree / "a", tree / "a" / "one.txt", tree]))
    assert sorted(f.rel for f in found) == [
        "a/b/c/deep.pdf",
        "a/b/notes.html",
        "a/one.txt",
        "data/table.csv",
        "drafts/wip.md",
        "top.md",
    ]
    assert len({f.path for f in found}) == len(found)


def test_links_are_followed_once_with_cycles_and_dead_links_named(tmp_path: Path) -> None:
    from ingest.walk import SkippedPath

    outside = tmp_path / "shared"
    (outside / "deep").mkdir(parents=True)
    (outside / "deep" / "policy.md").write_text("policy", encoding="utf-8")
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a" / "notes.md").write_text("notes", encoding="utf-8")
    (root / "linked").symlink_to(outside)  # a folder elsewhere, reached through a link
    (root / "a" / "loop").symlink_to(root / "a")  # a cycle
    (root / "again.md").symlink_to(root / "a" / "notes.md")  # a second way to one file
    (root / "dead.md").symlink_to(tmp_path / "missing.md")
    (root / "tool.exe").write_bytes(b"MZ")

    skipped: list[SkippedPath] = []
    found = list(find_files([root], skipped=skipped))

    # identity is the path under the ingested folder, not the link's target
    assert [f.rel for f in found] == ["a/notes.md", "linked/deep/policy.md"]
    assert found[1].path == root / "linked" / "deep" / "policy.md"
    assert {s.path: s.reason for s in skipped} == {
        "again.md": "the same file as a/notes.md, read once",
        "tool.exe": "not a format kb reads",
        "a/loop": "a link to a folder already read, read once",
        "dead.md": f"a broken link: its target {tmp_path / 'missing.md'} is missing",
    }


def test_link_loops_and_broken_links_are_named_as_such(tmp_path: Path) -> None:
    from ingest.walk import SkippedPath

    root = tmp_path / "root"
    root.mkdir()
    (root / "notes.md").write_text("notes", encoding="utf-8")
    (root / "la").symlink_to(root / "lb")  # la -> lb -> la
    (root / "lb").symlink_to(root / "la")
    (root / "la.md").symlink_to(root / "lb.md")  # a readable suffix: once a crash
    (root / "lb.md").symlink_to(root / "la.md")
    (root / "gone").symlink_to(tmp_path / "missing")

    skipped: list[SkippedPath] = []
    found = list(find_files([root], skipped=skipped))

    assert [f.rel for f in found] == ["notes.md"]
    reasons = {s.path: s.reason for s in skipped}
    assert set(reasons) == {"la", "lb", "la.md", "lb.md", "gone"}
    assert all(reasons[name].startswith("a link loop") for name in ("la", "lb", "la.md", "lb.md"))
    assert reasons["gone"] == f"a broken link: its target {tmp_path / 'missing'} is missing"
