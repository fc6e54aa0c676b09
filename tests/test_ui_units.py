"""The app's helpers without Streamlit: escaping, upload names and limits, marks and win rates,
model choices, evaluation run folders, and the parallel lanes of the Compare page."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt

from rag.chain import AnswerResult
from rag.errors import OllamaTimeoutError
from rag.settings import Settings
from tests.ui_helpers import AUTOLINKABLE, IMAGE_MD, IMAGE_TAG
from ui.eval_runs import find_runs, history_rows
from ui.marks import TIE, append_mark, read_marks, win_rates
from ui.models_choice import missing_models, model_choices
from ui.parallel import stream_side_by_side
from ui.plain import WORD_JOINER, escape_markdown, escaped_stream
from ui.uploads import MAX_NAME_CHARS, sanitize_filename, save_uploads

HOSTILE_TEXTS = [
    "mail kb@example.invalid or see www.example.invalid and https://example.invalid/x",
    IMAGE_MD,
    IMAGE_TAG,
    "[click](http://example.invalid/) <http://example.invalid/> <script>alert(1)</script>",
    "**bold** _it_ `code` # heading\n> quote\n- item\n1. first | a | b |",
    ":red[colour] $x^2$ :material/home: ~~strike~~ &amp; &lt;b&gt;",
    "back\\slash \\![x](y) trailing\\",
]


def _rendered(text: str) -> str:
    return MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(text)


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
def test_escaped_markdown_renders_as_exactly_the_text(text: str) -> None:
    html = _rendered(escape_markdown(text))
    for tag in ("<img", "<a ", "<script", "<code", "<em", "<strong", "<h1", "<li", "<table"):
        assert tag not in html
    shown = unescape(html.replace("<p>", "").replace("</p>", "").replace("<br />", ""))
    # Nothing GFM would autolink is left in the text (its autolinking ignores escapes) ...
    assert not AUTOLINKABLE.search(shown)
    # ... and, but for the invisible word joiners, the reader sees exactly the text.
    assert " ".join(shown.replace(WORD_JOINER, "").split()) == " ".join(text.split())


def test_escaping_stream_pieces_equals_escaping_the_whole() -> None:
    text = f"The flag is {IMAGE_MD} and {IMAGE_TAG}, see WWW.example.invalid."
    for cut in range(len(text) + 1):
        pieces = [text[:cut], text[cut : cut + 3], text[cut + 3 :]]
        assert "".join(escaped_stream(pieces)) == escape_markdown(text)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("notes.md", "notes.md"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\evil.md", "evil.md"),
        (".hidden.md", "hidden.md"),
        ("...", "upload"),
        ("报告.pdf", "upload.pdf"),
        ("Über Sicht (v2).docx", "Uber Sicht_v2.docx"),
        ("<script>.html", "script.html"),
        ("a;rm -rf *.txt", "a_rm -rf.txt"),
    ],
)
def test_sanitize_filename(given: str, expected: str) -> None:
    assert sanitize_filename(given) == expected


def test_sanitize_filename_bounds_length_and_keeps_the_extension() -> None:
    name = sanitize_filename("x" * 500 + ".markdown")
    assert len(name) == MAX_NAME_CHARS
    assert name.endswith(".markdown")


@dataclass
class _Upload:
    name: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    def getvalue(self) -> bytes:
        return self.data


def test_save_uploads_refuses_files_over_the_limit(tmp_path: Path) -> None:
    limit_mb = 1 / 1024  # 1 KiB
    outcome = save_uploads(
        [_Upload("../small.md", b"# ok\n"), _Upload("big.md", b"x" * 2048)],
        tmp_path / "uploads",
        limit_mb,
    )
    assert outcome.saved == [tmp_path / "uploads" / "small.md"]
    assert [name for name, _ in outcome.refused] == ["big.md"]
    assert "over the limit" in outcome.refused[0][1]
    assert sorted(p.name for p in (tmp_path / "uploads").iterdir()) == ["small.md"]


def test_marks_add_up_to_win_rates(tmp_path: Path) -> None:
    path = tmp_path / "data" / "marks.jsonl"
    append_mark(path, "q1", ["a", "b"], "a")
    append_mark(path, "q2", ["a", "b", "c"], "b")
    append_mark(path, "q3", ["a", "c"], TIE)
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"models": ["a", "b"], "winn')  # a crash mid-line is skipped
    rates = {r.model: r for r in win_rates(read_marks(path))}
    assert (rates["a"].compared, rates["a"].wins, rates["a"].ties) == (3, 1, 1)
    assert rates["a"].rate == pytest.approx(0.5)
    assert rates["b"].rate == pytest.approx(0.5)
    assert rates["c"].rate == pytest.approx(0.25)
    with pytest.raises(ValueError):
        append_mark(path, "q4", ["a", "b"], "z")


def test_concurrent_marks_stay_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "marks.jsonl"
    long_question = "why " * 2000  # a line longer than one pipe buffer

    def mark(n: int) -> None:
        for _ in range(20):
            append_mark(path, f"{n} {long_question}", ["a", "b"], "a" if n % 2 else "b")

    threads = [threading.Thread(target=mark, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 80
    assert all(json.loads(line)["question"].endswith(long_question) for line in lines)


def test_model_choices_put_configured_models_first() -> None:
    settings = Settings(model="m2", models=["m3:7b", "m2"])
    pulled = ["a:latest", "m3:7b", "m2:latest", "z:1b"]
    assert model_choices(settings, pulled) == ["m2:latest", "m3:7b", "a:latest", "z:1b"]
    assert missing_models(settings, ["m2:latest"]) == ["m3:7b"]


def _write_run(folder: Path, model: str, f1: str, stamp: int) -> None:
    import os

    folder.mkdir(parents=True)
    (folder / "summary.csv").write_text(f"model,token_f1\n{model},{f1}\n", encoding="utf-8")
    (folder / "results.jsonl").write_text(
        json.dumps({"model": model, "citations": [1, 2]}) + "\nnot json\n", encoding="utf-8"
    )
    for name in ("summary.csv", "results.jsonl"):
        os.utime(folder / name, (stamp, stamp))


def test_eval_runs_newest_first(tmp_path: Path) -> None:
    runs_root = tmp_path / "eval-runs"
    _write_run(runs_root / "b-older", "m1", "0.5", 1_000)
    _write_run(runs_root / "a-newer", "m2", "0.7", 2_000)
    (runs_root / "empty").mkdir()
    runs = find_runs(tmp_path)
    assert [r.name for r in runs] == ["a-newer", "b-older"]
    assert runs[0].summary() == [{"model": "m2", "token_f1": 0.7}]
    assert runs[0].results() == [{"model": "m2", "citations": "[1, 2]"}]
    assert history_rows(runs) == [
        {"run": "a-newer", "model": "m2", "token_f1": 0.7},
        {"run": "b-older", "model": "m1", "token_f1": 0.5},
    ]


class _LaneChain:
    """A chain whose stream waits at a barrier: it passes only if every lane runs at once."""

    def __init__(self, barrier: threading.Barrier, fail: dict[str, BaseException]) -> None:
        self.barrier = barrier
        self.fail = fail

    def stream(self, question: str, model: str) -> Iterator[Any]:
        yield f"{model} says "
        self.barrier.wait(timeout=30)
        if model in self.fail:
            raise self.fail[model]
        yield "done"
        yield AnswerResult(question=question, search_query=question, model=model, answer="x")


def _opener(barrier: threading.Barrier, fail: dict[str, BaseException]) -> Any:
    @contextmanager
    def open_chain() -> Iterator[_LaneChain]:
        yield _LaneChain(barrier, fail)

    return open_chain


def test_compare_lanes_run_at_the_same_time_and_fail_alone() -> None:
    models = ["m1", "m2", "m3"]
    error = OllamaTimeoutError("m2 took too long.")
    events = list(stream_side_by_side(_opener(threading.Barrier(3), {"m2": error}), "q", models))
    by_lane: dict[int, list[Any]] = {}
    for lane, event in events:
        by_lane.setdefault(lane, []).append(event)
    assert by_lane[0][:2] == ["m1 says ", "done"] and isinstance(by_lane[0][-1], AnswerResult)
    assert by_lane[1] == ["m2 says ", error]
    assert by_lane[2][-1].model == "m3"


def test_compare_lanes_reraise_an_unexpected_error() -> None:
    with pytest.raises(ZeroDivisionError):
        list(
            stream_side_by_side(
                _opener(threading.Barrier(2), {"m1": ZeroDivisionError()}), "q", ["m1", "m2"]
            )
        )
