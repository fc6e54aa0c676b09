"""The app's helpers without Streamlit: escaping, upload names and limits, marks and win rates,
model choices across servers, answer figures, evaluation run folders, the parallel lanes of the
Compare page, and that no server's own client reaches ui/."""

from __future__ import annotations

import ast
import json
import threading
import time
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
from tests.ui_helpers import AUTOLINKABLE, IMAGE_MD, IMAGE_TAG, REPO
from ui.answer_view import speed_line, token_counts, window_words
from ui.eval_runs import find_runs, history_rows
from ui.marks import TIE, append_mark, marks_by_id, read_marks, win_rates
from ui.models_choice import (
    kept_choice,
    kept_choices,
    missing_models,
    model_choices,
    model_label,
    no_model_message,
    unambiguous_id,
)
from ui.parallel import stream_side_by_side
from ui.plain import WORD_JOINER, escape_markdown, escaped_stream, message_markdown
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


def test_a_server_address_in_kbs_own_messages_is_code_that_copies_exactly() -> None:
    message = (
        "Ollama is not reachable at http://127.0.0.1:11435/; start it with `ollama serve`, "
        "or set OLLAMA_HOST (now https://gpu.internal:8443/v1)."
    )
    html = _rendered(message_markdown(message))
    assert "<code>http://127.0.0.1:11435/</code>;" in html  # the sentence's ";" stays outside
    assert "<code>https://gpu.internal:8443/v1</code>)." in html
    assert "<code>ollama serve</code>" in html
    assert WORD_JOINER not in html and "<a " not in html


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
    # megabytes as Streamlit's uploader counts them (1,000,000 bytes): the size the page shows
    # beside the file is the size the refusal gives
    outcome = save_uploads(
        [
            _Upload("../small.md", b"# ok\n"),
            _Upload("big.md", b"x" * 1_500_000),
            _Upload("edge.md", b"x" * 1_010_000),  # under 1 MiB, over 1 MB
        ],
        tmp_path / "uploads",
        max_mb=1,
    )
    assert outcome.saved == [tmp_path / "uploads" / "small.md"]
    assert [name for name, _ in outcome.refused] == ["big.md", "edge.md"]
    assert "its 1.5 MB are over the upload limit of 1 MB" in outcome.refused[0][1]
    assert "`KB_UPLOAD_MAX_MB`" in outcome.refused[0][1]
    assert sorted(p.name for p in (tmp_path / "uploads").iterdir()) == ["small.md"]


def test_two_files_of_one_name_in_one_upload_are_both_kept(tmp_path: Path) -> None:
    folder = tmp_path / "uploads"
    outcome = save_uploads(
        [
            _Upload("notes.md", b"Team A meets on Mondays."),  # teamA/notes.md
            _Upload("notes.md", b"Team B meets on Fridays."),  # teamB/notes.md
            _Upload("notes.md", b"Team B meets on Fridays."),  # the same file again
            _Upload("notes-2.md", b"A file of that name of its own."),
        ],
        folder,
        max_mb=1,
    )
    assert [p.name for p in outcome.saved] == ["notes.md", "notes-2.md", "notes-2-2.md"]
    assert outcome.renamed == [("notes.md", "notes-2.md"), ("notes-2.md", "notes-2-2.md")]
    assert (folder / "notes.md").read_bytes() == b"Team A meets on Mondays."
    assert (folder / "notes-2.md").read_bytes() == b"Team B meets on Fridays."
    assert outcome.replaced == []

    # a later upload of a saved name replaces it (an updated version), and says so when the
    # content differs
    again = save_uploads([_Upload("notes.md", b"Team A meets on Mondays.")], folder, max_mb=1)
    assert again.replaced == [] and again.saved == [folder / "notes.md"]
    other = save_uploads([_Upload("notes.md", b"Kitchen notes.")], folder, max_mb=1)
    assert other.replaced == ["notes.md"]
    assert (folder / "notes.md").read_bytes() == b"Kitchen notes."


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
    listed = ["a:latest@ollama", "m3:7b@ollama", "m2:latest@ollama", "z:1b@ollama"]
    assert model_choices(settings, listed) == [
        "m2:latest@ollama", "m3:7b@ollama", "a:latest@ollama", "z:1b@ollama"
    ]  # fmt: skip
    assert missing_models(settings, ["m2:latest@ollama"]) == ["m3:7b"]


def test_model_choices_span_servers_and_configured_ids_name_their_server() -> None:
    # KB_MODEL an id on the second server, KB_MODELS a bare name both servers offer
    settings = Settings(model="smollm2@gpu-box", models=["qwen", "gone@ollama"])
    listed = ["zeta@ollama", "qwen:latest@ollama", "alpha@ollama", "smollm2@gpu-box",
              "qwen@gpu-box", "beta@gpu-box"]  # fmt: skip
    assert model_choices(settings, listed) == [
        "smollm2@gpu-box",
        "qwen:latest@ollama",  # a bare name: the first server that lists it, Ollama first
        "alpha@ollama", "zeta@ollama", "beta@gpu-box", "qwen@gpu-box",
    ]  # fmt: skip
    assert missing_models(settings, listed) == ["gone@ollama"]
    assert [model_label(m) for m in ["smollm2@gpu-box", "qwen:latest@ollama", "bare"]] == [
        "smollm2 · gpu-box", "qwen:latest · ollama", "bare"
    ]  # fmt: skip


def test_an_old_bare_name_in_session_state_selects_its_model() -> None:
    choices = ["llama3.2:latest@ollama", "mistral:7b@ollama", "smollm2@gpu-box"]
    assert kept_choice("llama3.2", choices) == "llama3.2:latest@ollama"
    assert kept_choice("smollm2", choices) == "smollm2@gpu-box"
    assert kept_choice("mistral:7b@ollama", choices) == "mistral:7b@ollama"
    assert kept_choice("mistral:7b@gpu-box", choices) is None  # not on that server
    assert kept_choice("gone", choices) is None and kept_choice(None, choices) is None
    stored = ["mistral:7b", "gone", "mistral:7b@ollama", "smollm2"]
    assert kept_choices(stored, choices) == ["mistral:7b@ollama", "smollm2@gpu-box"]


def test_no_model_message_says_how_to_get_one() -> None:
    settings = Settings(model="llama3.2@ollama", models=[])
    assert no_model_message(settings, []) == (
        "No model server offers a model yet; pull one with `ollama pull llama3.2`, or start an "
        "OpenAI-compatible server (OPENAI_BASE_URL)."
    )


def test_marks_under_bare_names_count_for_the_one_model_they_name(tmp_path: Path) -> None:
    listed = ["a:latest@ollama", "b@ollama", "b@gpu-box", "c@gpu-box"]
    assert unambiguous_id("a", listed) == "a:latest@ollama"
    assert unambiguous_id("b", listed) == "b"  # on two servers: left as saved
    assert unambiguous_id("gone", listed) == "gone"
    assert unambiguous_id("c@elsewhere", listed) == "c@elsewhere"  # an id stays as it is
    path = tmp_path / "marks.jsonl"
    append_mark(path, "q1", ["a", "c"], "c")
    append_mark(path, "q2", ["a:latest@ollama", "c@gpu-box"], TIE)
    append_mark(path, "q3", ["a", "b"], "b")
    rates = {r.model: r for r in win_rates(marks_by_id(read_marks(path), listed))}
    assert set(rates) == {"a:latest@ollama", "c@gpu-box", "b"}
    assert (rates["c@gpu-box"].wins, rates["c@gpu-box"].ties, rates["c@gpu-box"].compared) == (
        1, 1, 2
    )  # fmt: skip
    assert rates["a:latest@ollama"].compared == 3 and rates["b"].wins == 1


def _result(**fields: Any) -> AnswerResult:
    values: dict[str, Any] = {"question": "q", "search_query": "q", "model": "m@srv"}
    return AnswerResult(**{**values, **fields})


def test_answer_figures_are_plain_words_and_mark_counts_the_server_did_not_make() -> None:
    settings = Settings(context_cap=8192)
    assert token_counts(_result()) is None
    served = _result(prompt_tokens=1234, output_tokens=56, counted_by="server")
    assert token_counts(served) == "prompt 1,234 tokens, answer 56 tokens"
    estimated = _result(prompt_tokens=1234, output_tokens=56, counted_by="estimate")
    assert token_counts(estimated) == "prompt 1,234 tokens, answer 56 tokens (kb's estimate)"
    counted = _result(prompt_tokens=1234, counted_by="tokenizer")
    assert token_counts(counted) == "prompt 1,234 tokens (counted by the server's tokenizer)"
    assert speed_line(estimated).startswith("m · srv · prompt 1,234 tokens")
    window = _result(window=4096, window_source="server")
    assert window_words(window, settings) == "window 4,096 tokens (as the server states it)"
    capped = _result(window=8192, window_source="trained")
    assert window_words(capped, settings) == "window 8,192 tokens (the limit set by KB_CONTEXT_CAP)"
    learned = _result(window=2048, window_source="learned")
    assert "learned from the server's too-long error" in window_words(learned, settings)


def test_no_server_client_is_imported_in_the_app() -> None:
    """ui/ reaches models only through `Services` and `ModelHub`: no `ollama`, `openai` or
    adapter module is imported there."""
    forbidden = ("ollama", "openai", "httpx", "rag.llm.ollama", "rag.llm.openai_compat")
    imported: list[tuple[str, str]] = []
    for path in sorted((REPO / "ui").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported += [(path.name, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.append((path.name, node.module))
    assert imported, "no import found: the scan is broken"
    bad = [(f, m) for f, m in imported if m in forbidden or m.startswith(forbidden[:3])]
    assert not bad, bad


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

    def stream(
        self, question: str, model: str, history: Any = (), hangup: Any = None
    ) -> Iterator[Any]:
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


def test_closing_the_lanes_closes_their_streams_and_ticks_while_they_wait() -> None:
    closed = threading.Event()

    class SlowChain:
        def stream(
            self, question: str, model: str, history: Any = (), hangup: Any = None
        ) -> Iterator[Any]:
            try:
                time.sleep(0.3)  # the model reads its prompt
                for n in range(1000):
                    yield f"token {n} "
                    time.sleep(0.01)
            finally:
                closed.set()

    @contextmanager
    def open_chain() -> Iterator[SlowChain]:
        yield SlowChain()

    lanes = stream_side_by_side(open_chain, "q", ["m1", "m2"], tick_s=0.05)
    first = [next(lanes) for _ in range(3)]
    assert first[0] == (-1, None)  # a tick while the lanes wait: the page can redraw
    while True:
        _, event = next(lanes)
        if isinstance(event, str):
            break
    lanes.close()  # what a Stop click (a rerun) does to the page's loop
    assert closed.wait(timeout=5), "the lane's stream was not closed"


def test_a_stop_closes_the_request_to_the_model_server(ui_app_env: Any, fake_ollama: Any) -> None:
    from rag.service import build_services

    fake_ollama.token_delay_s = 0.05
    with build_services(ui_app_env.settings) as services:
        lanes = stream_side_by_side(
            services.open_chain, "When was the Tarnwick lighthouse built?", ["fake-llama3:8b"]
        )
        for _, event in lanes:
            if isinstance(event, str):
                break
        lanes.close()
        deadline = time.monotonic() + 10
        while fake_ollama.clients_gone == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert fake_ollama.clients_gone == 1


def test_a_stop_before_the_first_token_closes_the_request_at_once(
    ui_app_env: Any, fake_ollama: Any
) -> None:
    from rag.service import build_services

    fake_ollama.first_token_delay_s = 20.0  # a model on CPU still reading its prompt
    with build_services(ui_app_env.settings) as services:
        lanes = stream_side_by_side(
            services.open_chain,
            "When was the Tarnwick lighthouse built?",
            ["fake-llama3:8b"],
            tick_s=0.05,
        )
        deadline = time.monotonic() + 30
        while not fake_ollama.requests_to("/api/chat") and time.monotonic() < deadline:
            assert next(lanes) == (-1, None)  # only waiting: no byte of the answer came
        stopped = time.monotonic()
        lanes.close()  # what a Stop click (a rerun) does to the page's loop
        while not fake_ollama.gone_at and time.monotonic() < stopped + 2:
            time.sleep(0.01)
    assert fake_ollama.gone_at, "the model server never saw the request close"
    assert fake_ollama.gone_at[0] - stopped < 1.0


def test_loading_the_embedder_puts_what_the_process_holds_out_of_the_collectors_reach() -> None:
    import gc

    from ui.resources import _load_and_freeze

    class Loads:
        loaded = False

        def load(self) -> None:
            Loads.loaded = True

    gc.unfreeze()
    try:
        _load_and_freeze(Loads())  # type: ignore[arg-type]
        assert Loads.loaded and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
