"""The retrieval chain end to end over HTTP: the real `ollama` client against the fake Ollama,
a real embedded Qdrant in tmp_path and the packaged embedder."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ollama
import pytest

from eval.fake_ollama import ANSWER_PIECE_RE, FakeOllama, unused_loopback_url
from ingest.pipeline import ingest
from rag import cli
from rag.calibration import Calibration
from rag.chain import (
    MIN_CONTEXT_TOKENS,
    AnswerResult,
    Chain,
    cited_numbers,
    resolve_citations,
    streamed_tokens_per_s,
    trim_history,
)
from rag.context import PackedContext, TokenEstimator
from rag.errors import (
    EmptyKnowledgeBaseError,
    ModelNotFoundError,
    OllamaTimeoutError,
    OllamaUnreachableError,
    QuestionTooLongError,
)
from rag.retrieve import Passage, RetrievalParams
from rag.service import build_services
from rag.settings import Settings
from rag.store import open_store

FACTS = {
    "harbour.md": "# Harbour\n\n## Moorings\n\nThe harbour master of Lisvik is Oda Brekke. "
    "Visiting boats moor at pier four, which has twelve berths.\n",
    "kitchen.md": "# Kitchen\n\nThe kitchen serves dinner at half past six. The cook is "
    "called Ansgar Holm and bakes rye bread on Fridays.\n",
    "radio.txt": "Radio rules\n\nThe station radio listens on channel sixteen. Weather "
    "reports go out at noon every day from the radio room.\n",
}


def write_corpus(root: Path, filler_docs: int = 0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in FACTS.items():
        (root / name).write_text(text, encoding="utf-8")
    for number in range(filler_docs):
        sentences = " ".join(
            f"Station log entry {number}-{i} notes that the weather station on the ridge "
            f"recorded wind, rain and pressure readings for the harbour logbook."
            for i in range(60)
        )
        (root / f"log-{number:02d}.md").write_text(f"# Log {number}\n\n{sentences}\n")
    return root


@pytest.fixture
def kb(settings_factory: Callable[..., Settings], embedder: Any, tmp_path: Path) -> Settings:
    settings = settings_factory()
    ingest(settings, [write_corpus(tmp_path / "docs")], embedder=embedder)
    return settings


@contextmanager
def open_chain(
    settings: Settings, embedder: Any, params: RetrievalParams | None = None
) -> Iterator[Chain]:
    with (
        build_services(settings, embedder=embedder) as services,
        services.open_chain(params) as chain,
    ):
        yield chain


def ask(settings: Settings, embedder: Any, question: str, **kwargs: Any) -> AnswerResult:
    with open_chain(settings, embedder=embedder) as chain:
        return chain.ask(question, **kwargs)


def chat_requests(server: FakeOllama) -> list[Any]:
    return server.requests_to("/api/chat")


def test_num_ctx_is_the_effective_window_on_every_request(
    kb: Settings, embedder: Any, fake_ollama: FakeOllama
) -> None:
    result = ask(kb, embedder, "Who is the harbour master of Lisvik?")
    tiny = ask(kb, embedder, "Who is the harbour master of Lisvik?", model="fake-tiny:1b")
    follow = ask(
        kb,
        embedder,
        "When does it serve dinner?",
        history=[
            {"role": "user", "content": "Who cooks in the kitchen?"},
            {"role": "assistant", "content": "Ansgar Holm [1]"},
        ],
    )

    assert result.window == 8192  # 131072 trained, capped at 8192
    assert result.window_source == "trained" and result.model == "fake-llama3:8b@ollama"
    assert tiny.window == 2048  # its trained context is below the cap
    requests = chat_requests(fake_ollama)
    assert len(requests) == 4  # three answers and one rewrite
    for request in requests:
        assert request.options["num_ctx"] in (8192, 2048)
        assert request.options["num_predict"] > 0
    answers = [r for r in requests if not r.body["messages"][-1]["content"].startswith("Rewrite")]
    assert [r.options["num_predict"] for r in answers] == [kb.answer_tokens] * 3
    # greedy by default (KB_TEMPERATURE), so a question asked again gets the same answer
    assert [r.options["temperature"] for r in answers] == [0.0] * 3
    assert follow.search_query != follow.question
    assert "cook" in follow.search_query.lower()


def test_by_default_the_passages_fill_500_estimated_tokens_not_the_window(
    settings_factory: Callable[..., Settings], embedder: Any, tmp_path: Path
) -> None:
    assert Settings.model_fields["context_tokens"].default == 500
    settings = settings_factory(chunk_size=200)
    ingest(settings, [write_corpus(tmp_path / "docs", filler_docs=6)], embedder=embedder)
    question = "What did the weather station on the ridge record for the harbour?"
    whole = ask(settings, embedder, question)
    default = ask(settings.model_copy(update={"context_tokens": 500}), embedder, question)
    assert default.context_tokens <= 500 < whole.context_tokens
    assert default.prompt_tokens < whole.prompt_tokens
    assert default.window == whole.window  # the window is still the model's


def test_answer_cites_the_passage_it_came_from(kb: Settings, embedder: Any) -> None:
    result = ask(kb, embedder, "Which channel does the station radio listen on?")

    assert "channel sixteen" in result.answer
    assert result.citations, result.answer
    cited = result.citations[0]
    assert cited.path == "radio.txt"
    assert "channel sixteen" in cited.text
    assert result.passages[cited.n - 1]["path"] == "radio.txt"
    assert not result.truncated
    assert result.prompt_tokens and result.output_tokens
    assert result.ttft_ms is not None and result.tokens_per_s


def test_context_ollama_default_would_cut_arrives_whole(
    settings_factory: Callable[..., Settings],
    embedder: Any,
    fake_ollama: FakeOllama,
    tmp_path: Path,
) -> None:
    settings = settings_factory(chunk_size=200)
    ingest(settings, [write_corpus(tmp_path / "docs", filler_docs=6)], embedder=embedder)
    params = RetrievalParams(candidates=80)
    with open_chain(settings, embedder=embedder, params=params) as chain:
        result = chain.ask("What did the weather station on the ridge record for the harbour?")

    sent = chat_requests(fake_ollama)[-1]
    assert sent.outcome["total_tokens"] > 4096  # more than Ollama's default window holds
    assert sent.outcome["prompt_eval_count"] == sent.outcome["total_tokens"]  # nothing was cut
    assert result.prompt_tokens == sent.outcome["total_tokens"]
    assert not result.truncated
    last = result.passages[-1]["text"].strip().splitlines()[-1]
    assert last in sent.body["messages"][-1]["content"]

    # The same messages without num_ctx, as most front ends send them, lose their middle.
    reply = ollama.Client(host=settings.ollama_host).chat(
        settings.model, sent.body["messages"], stream=False
    )
    assert reply.prompt_eval_count == 4096 < sent.outcome["total_tokens"]


def test_cut_is_detected_flagged_and_the_next_request_adapts(
    settings_factory: Callable[..., Settings],
    embedder: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A short answer leaves the passages most of the window, so the overfill is more than the
    # worked example's turns, which Ollama drops first (the system message stays).
    settings = settings_factory(chunk_size=200, answer_tokens=64)
    ingest(settings, [write_corpus(tmp_path / "docs", filler_docs=6)], embedder=embedder)
    # A wrong calibration (far too many characters per token) makes the chain overfill.
    calibration = Calibration(settings.data_dir)
    calibration.record("fake-tiny:1b", prompt_chars=60_000, prompt_tokens=1000)
    question = "What did the weather station on the ridge record for the harbour?"
    with open_chain(settings, embedder=embedder, params=RetrievalParams(candidates=80)) as chain:
        with caplog.at_level(logging.WARNING, logger="rag.chain"):
            first = chain.ask(question, model="fake-tiny:1b")
        second = chain.ask(question, model="fake-tiny:1b")

    assert first.truncated
    assert first.prompt_tokens == first.window == 2048
    assert any("cut the prompt" in record.message for record in caplog.records)
    assert calibration.get("fake-tiny:1b@ollama").chars_per_token < 60_000 / 1000
    assert not second.truncated
    assert second.prompt_tokens is not None and second.prompt_tokens < 2048


def test_calibration_is_kept_across_runs(kb: Settings, embedder: Any) -> None:
    ask(kb, embedder, "Who is the harbour master of Lisvik?")
    stored = json.loads((kb.data_dir / "calibration.json").read_text())
    entry = stored[f"{kb.model}@ollama"]  # kept per model and server
    assert entry["samples"] == 1
    # the fake's tokens are whole words: far more characters per token than the default guess
    assert entry["chars_per_token"] > TokenEstimator().chars_per_token
    assert Calibration(kb.data_dir).estimator(kb.model).chars_per_token > 3.2


def test_citations_only_resolve_numbers_that_exist() -> None:
    passages = [
        Passage("d1", "a.md", "/a.md", "A", ["H"], 2, [0], 0, 10, "alpha text", 1.0, [2]),
        Passage("d2", "b.md", "/b.md", "B", [], None, [3], 0, 10, "beta text", 0.5),
    ]
    packed = PackedContext(passages, "", 10, False)
    answer = "Alpha [1]. Beta [2][9]. Both [1, 2]. Not [0]."

    assert cited_numbers(answer) == [1, 2, 9, 0]
    citations = resolve_citations(answer, packed)
    assert [(c.n, c.path, c.source) for c in citations] == [
        (1, "a.md", "a.md, p. 2, H"),
        (2, "b.md", "b.md"),
    ]


def test_history_is_trimmed_from_the_oldest_turns() -> None:
    history = []
    for turn in range(10):
        history += [
            {"role": "user", "content": f"question {turn} " + "word " * 50},
            {"role": "assistant", "content": f"answer {turn} " + "word " * 50},
        ]
    kept = trim_history(history, budget=300, estimator=TokenEstimator())

    assert kept == history[-len(kept) :]
    assert kept and kept[0]["role"] == "user"
    assert len(kept) < len(history)
    assert TokenEstimator().messages(kept) <= 300


def test_unreachable_ollama_is_one_sentence(kb: Settings, embedder: Any) -> None:
    settings = kb.model_copy(update={"ollama_host": unused_loopback_url()})
    with pytest.raises(OllamaUnreachableError) as caught:
        ask(settings, embedder, "Who is the harbour master?")
    message = str(caught.value)
    assert "ollama serve" in message and "OLLAMA_HOST" in message
    assert "\n" not in message


def test_model_not_pulled_names_the_pull_command(kb: Settings, embedder: Any) -> None:
    with pytest.raises(ModelNotFoundError, match=r"ollama pull nope:1b"):
        ask(kb, embedder, "Who is the harbour master?", model="nope:1b")


def test_timeout_names_its_setting(
    settings_factory: Callable[..., Settings],
    embedder: Any,
    fake_ollama: FakeOllama,
    tmp_path: Path,
) -> None:
    settings = settings_factory(ollama_timeout_s=0.5)
    ingest(settings, [write_corpus(tmp_path / "docs")], embedder=embedder)
    fake_ollama.first_token_delay_s = 3.0
    with pytest.raises(OllamaTimeoutError, match="KB_OLLAMA_TIMEOUT_S"):
        ask(settings, embedder, "Who is the harbour master of Lisvik?")


def test_error_mid_stream_keeps_the_partial_answer(
    kb: Settings, embedder: Any, fake_ollama: FakeOllama
) -> None:
    fake_ollama.fail_after_tokens = 3
    with open_chain(kb, embedder=embedder) as chain:
        events = list(chain.stream("Who is the harbour master of Lisvik?"))

    deltas = [e for e in events if isinstance(e, str)]
    result = events[-1]
    assert isinstance(result, AnswerResult)
    assert len(deltas) == 3
    assert result.partial and result.error
    assert result.answer == "".join(deltas)


def test_empty_knowledge_base_says_how_to_add_documents(
    settings_factory: Callable[..., Settings], embedder: Any
) -> None:
    with pytest.raises(EmptyKnowledgeBaseError, match="python -m ingest"):
        ask(settings_factory(), embedder, "Anything?")


def test_a_chain_over_the_shared_store_lets_go_of_it_while_the_answer_is_written(
    kb: Settings, embedder: Any
) -> None:
    """The app and `rag ask` take the embedded store for retrieval only: while a model writes
    its answer (minutes on a CPU) an ingest or another `rag ask` can open it."""
    with (
        build_services(kb, embedder=embedder, shared_store=True) as services,
        services.open_chain() as chain,
    ):
        events = chain.stream("Who bakes rye bread on Fridays?")
        assert isinstance(next(events), str)  # retrieval is over; the answer is coming
        shared = services.shared_store
        assert shared is not None
        deadline = time.monotonic() + 2 * shared.idle_s + 5
        while shared.is_open:  # let go once idle
            assert time.monotonic() < deadline, "the store is still held mid-answer"
            time.sleep(0.05)
        with open_store(kb, lock_wait_s=0) as store:  # what another process does meanwhile
            assert store.count_chunks() > 0
        result = list(events)[-1]
    assert isinstance(result, AnswerResult) and "Ansgar Holm" in result.answer


def test_cli_ask_json_has_every_field(
    kb: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    set_env(monkeypatch, kb)
    code = cli.main(["ask", "Who bakes rye bread on Fridays?", "--json"])

    assert code == 0
    data = json.loads(capsys.readouterr().out)
    for key in ("answer", "citations", "window", "context_tokens", "prompt_tokens"):
        assert data[key], key
    assert data["truncated"] is False
    assert data["citations"][0]["path"] == "kitchen.md"


def test_cli_ask_footer_says_how_each_citation_was_made(
    kb: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    set_env(monkeypatch, kb)
    assert cli.main(["ask", "Who bakes rye bread on Fridays?"]) == 0

    out = capsys.readouterr().out
    assert any(
        line.startswith("[") and "kitchen.md" in line and line.endswith("(cited by the model)")
        for line in out.splitlines()
    ), out


def test_cli_errors_are_one_line_without_traceback(
    kb: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    set_env(monkeypatch, kb)
    code = cli.main(["ask", "Who bakes rye bread?", "--model", "nope:1b"])

    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "ollama pull nope:1b" in err


@pytest.mark.parametrize("question", ["", "   "])
def test_cli_refuses_an_empty_question_in_one_sentence(
    question: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["ask", question, "--search"])
    assert exit_.value.code == 2
    assert "the question is empty" in capsys.readouterr().err


def test_cli_search_works_without_ollama(
    kb: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    set_env(monkeypatch, kb)
    monkeypatch.setenv("OLLAMA_HOST", unused_loopback_url())
    code = cli.main(["ask", "Who bakes rye bread?", "--search"])

    assert code == 0
    assert "kitchen.md" in capsys.readouterr().out.splitlines()[0]


def test_cli_ask_without_ollama_still_shows_the_passages(
    kb: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    set_env(monkeypatch, kb)
    monkeypatch.setenv("OLLAMA_HOST", unused_loopback_url())
    code = cli.main(["ask", "Who bakes rye bread on Fridays?"])

    out, err = capsys.readouterr()
    assert code == 2
    assert "not reachable" in err and len(err.strip().splitlines()) == 1
    assert "kitchen.md" in out.splitlines()[0]


def set_env(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    monkeypatch.setenv("OLLAMA_HOST", settings.ollama_host)
    monkeypatch.setenv("KB_QDRANT_PATH", str(settings.qdrant_path))
    monkeypatch.setenv("KB_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("KB_MODEL", settings.model)


def test_filters_keep_retrieval_to_a_folder_or_a_document(
    settings_factory: Callable[..., Settings],
    embedder: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = settings_factory()
    first = write_corpus(tmp_path / "first")
    second = tmp_path / "second"
    second.mkdir()
    (second / "harbour-copy.md").write_text(
        "# Other harbour\n\nThe harbour master of Lisvik is not Oda Brekke but Per Lunde.\n"
    )
    ingest(settings, [first, second], embedder=embedder)
    set_env(monkeypatch, settings)
    question = "Who is the harbour master of Lisvik?"

    def sources(*extra: str) -> set[str]:
        assert cli.main(["ask", question, "--search", "--json", *extra]) == 0
        return {p["path"] for p in json.loads(capsys.readouterr().out)}

    assert {"harbour.md", "harbour-copy.md"} <= sources()
    assert sources("--under", str(second)) == {"harbour-copy.md"}
    assert sources("--doc", str(first / "kitchen.md")) == {"kitchen.md"}


def test_filters_take_the_path_citations_show(
    settings_factory: Callable[..., Settings],
    embedder: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = settings_factory()
    first, second = write_corpus(tmp_path / "first"), tmp_path / "second"
    for root in (first, second):
        (root / "sub").mkdir(parents=True)
        (root / "sub" / "pier.md").write_text(f"# Pier\n\nThe harbour pier of {root.name}.\n")
    ingest(settings, [first, second], embedder=embedder)
    set_env(monkeypatch, settings)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the paths below are not under the current directory

    def sources(*extra: str) -> set[str]:
        assert cli.main(["ask", "harbour pier", "--search", "--json", *extra]) == 0
        return {p["abs_path"] for p in json.loads(capsys.readouterr().out)}

    assert sources("--doc", "kitchen.md") == {str((first / "kitchen.md").resolve())}
    both = {str((root / "sub" / "pier.md").resolve()) for root in (first, second)}
    assert sources("--under", "sub") == both  # a folder under both ingested folders: both
    assert sources("--doc", "sub/pier.md") == both
    assert sources("--under", "sub", "--doc", str(first / "sub" / "pier.md")) == {
        str((first / "sub" / "pier.md").resolve())
    }
    for option, path in (("--doc", "nonexistent.txt"), ("--under", "nowhere")):
        code = cli.main(["ask", "harbour pier", "--search", option, path])
        out, err = capsys.readouterr()
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
        assert path in err


def passage(doc: str, index: int, start: int, end: int, text: str) -> Passage:
    return Passage(doc, f"{doc}.md", f"/{doc}.md", doc, [], None, [index], start, end, text, 1.0)


def test_merging_keeps_the_merged_passage_at_its_best_rank() -> None:
    from rag.retrieve import merge_adjacent

    ranked = [
        passage("a", 5, 500, 600, "five"),  # rank 1
        passage("b", 0, 0, 100, "other"),
        passage("a", 3, 300, 400, "three"),
        passage("a", 4, 400, 500, "four"),  # touches 3 and 5: all three become one
    ]
    merged = merge_adjacent(ranked)

    assert [p.doc_id for p in merged] == ["a", "b"]
    assert merged[0].chunk_indexes == [3, 4, 5]
    assert merged[0].text == "three\n\nfour\n\nfive"
    assert (merged[0].char_start, merged[0].char_end) == (300, 600)


# -- servers that reject, count only uncached tokens, or have small windows --------------------


def test_only_a_full_window_counts_as_a_cut(
    kb: Settings, embedder: Any, fake_ollama: FakeOllama
) -> None:
    # A server that reports only the tokens it did not have cached: asking the same question
    # twice reports a count far below the estimate. That is no cut, and no calibration sample.
    fake_ollama.report_uncached_only = True
    question = "Who is the harbour master of Lisvik?"
    with open_chain(kb, embedder=embedder) as chain:
        first = chain.ask(question)
        before = chain.calibration.get(first.model)
        second = chain.ask(question)
        third = chain.ask(question)
        after = chain.calibration.get(first.model)

    assert second.prompt_tokens is not None and second.prompt_tokens < 10
    assert not first.truncated and not second.truncated and not third.truncated
    assert (after.chars_per_token, after.samples) == (before.chars_per_token, before.samples)


def test_calibration_has_a_floor_and_recovers(tmp_path: Path) -> None:
    calibration = Calibration(tmp_path)
    for _ in range(30):
        calibration.record_cut("m@ollama", prompt_chars=1000, window=2048)
    assert calibration.get("m@ollama").chars_per_token >= 1.5
    for _ in range(20):
        calibration.record("m@ollama", prompt_chars=4000, prompt_tokens=1000)
    assert calibration.get("m@ollama").chars_per_token > 3.5


def test_a_question_longer_than_the_window_is_refused_before_sending(
    kb: Settings, embedder: Any, fake_ollama: FakeOllama
) -> None:
    question = "Who is the harbour master of Lisvik? " + "Please answer carefully. " * 600
    with pytest.raises(QuestionTooLongError, match=r"does not fit the 2,048-token window"):
        ask(kb, embedder, question, model="fake-tiny:1b")
    assert chat_requests(fake_ollama) == []


def test_a_rejected_prompt_is_packed_for_the_stated_window_and_sent_once_more(
    kb: Settings, embedder: Any, fake_model: Any
) -> None:
    fake_model.models = {"fake-echo": None}  # the server states no window
    fake_model.rejects_over = 700
    settings = kb.model_copy(update={"context_cap": 8192})
    services = build_services(settings, embedder=embedder, extra_backends=[fake_model])
    with services, services.open_chain() as chain:
        first = chain.ask("Who is the harbour master of Lisvik?", model="fake-echo@fake")
        second = chain.ask("Who is the harbour master of Lisvik?", model="fake-echo@fake")

    assert [call.window for call in fake_model.calls[:2]] == [2048, 700]
    assert first.repacked and first.window == 700 and first.window_source == "learned"
    assert first.notice and "700-token window" in first.notice
    assert first.citations and first.citations[0].path == "harbour.md"
    # Remembered: the next question is packed for the learned window at once.
    assert not second.repacked and second.window == 700 and second.window_source == "learned"
    assert len(fake_model.calls) == 3


def test_output_speed_is_read_off_the_stream_when_the_server_gives_no_timing(
    kb: Settings, embedder: Any, fake_model: Any
) -> None:
    # OpenAI-compatible servers (llama-cpp-python's, vLLM's) report tokens but no timings
    fake_model.piece_delay_s = 0.02
    services = build_services(kb, embedder=embedder, extra_backends=[fake_model])
    with services, services.open_chain() as chain:
        result = chain.ask("Who is the harbour master of Lisvik?", model="fake-echo@fake")

    pieces = len(ANSWER_PIECE_RE.findall(result.answer))
    assert pieces > 2 and result.output_tokens and result.output_tokens > 1
    # every piece after the first came at least 0.02 s after the one before it
    slowest = (result.output_tokens - 1) / ((pieces - 1) * 0.02)
    assert result.tokens_per_s is not None and 0 < result.tokens_per_s <= slowest
    assert streamed_tokens_per_s(1, 0.5) is None and streamed_tokens_per_s(None, 0.5) is None


def test_output_piped_into_a_reader_that_quits_ends_quietly(
    kb: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `true` exits at once, long before kb prints: the first print meets a closed pipe, as
    # `| head` does once it has its lines.
    set_env(monkeypatch, kb)
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    command = (
        f'"{sys.executable}" -m rag ask "Who bakes rye bread on Fridays?" --search | true; '
        'echo "status ${PIPESTATUS[0]}" >&2'
    )
    done = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, timeout=300, check=True
    )
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == "status 141"


def test_the_first_token_target_caps_the_context_on_a_slow_model(
    kb: Settings, embedder: Any, fake_ollama: FakeOllama
) -> None:
    question = "Who is the harbour master of Lisvik?"
    free = kb.model_copy(update={"first_token_target_s": None})
    uncapped = ask(free, embedder, question)
    slow = kb.model_copy(update={"first_token_target_s": 8.0})
    for _ in range(40):  # measured again and again: 60 prompt tokens/s
        Calibration(kb.data_dir).record_speed(f"{kb.model}@ollama", 60.0)
    capped = ask(slow, embedder, question)
    assert capped.speed_capped and not uncapped.speed_capped
    assert capped.notice is not None and "KB_FIRST_TOKEN_TARGET_S" in capped.notice
    fixed = capped.prompt_tokens_estimate - capped.context_tokens
    assert capped.context_tokens <= max(MIN_CONTEXT_TOKENS, 8.0 * 60 - fixed)
    assert capped.context_tokens < uncapped.context_tokens
    # The fake evaluates prompts fast (its server timings): the next answer is not capped.
    assert capped.prompt_tokens_per_s is not None and capped.prompt_tokens_per_s > 1000
    assert not ask(slow, embedder, "Who is the harbour master of Lisvik?").speed_capped
    # Without a target nothing is capped, however slow.
    for _ in range(40):
        Calibration(kb.data_dir).record_speed(f"{kb.model}@ollama", 1.0)
    assert not ask(free, embedder, question).speed_capped
