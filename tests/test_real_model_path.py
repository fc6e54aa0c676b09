"""kb's whole path with a real model: the real `openai` client against a real llama-cpp-python
server (`tests/llama_server.py`, SmolLM2-135M-Instruct) beside the fake Ollama, over a real
embedded Qdrant filled by the real ingest pipeline.

Ingest, then ask through the chain and the command line; list both servers' models; Compare's
parallel lanes over the real model and a fake Ollama model; the judge's structured JSON from
the real model; and a prompt too long for a small server window, which kb learns and packs
again for. Behaviour only: never the small model's words.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from openai.resources.chat.completions import Completions

from eval.dataset import QAItem
from eval.fake_ollama import FakeOllama
from eval.judge import (
    JUDGE_ANSWER_TOKENS,
    JUDGE_SCHEMA,
    judge_answer,
    judge_messages,
    verdict_from,
)
from ingest.pipeline import ingest
from rag import cli
from rag.chain import AnswerResult
from rag.errors import KBError
from rag.models import CONSERVATIVE_WINDOW
from rag.service import Services, build_services
from rag.settings import DEFAULT_EMBED_MODEL, Settings
from tests.llama_server import (  # llama_server_factory is a fixture
    LlamaServer,
    llama_server_factory,  # noqa: F401
    logged,
)
from ui.parallel import stream_side_by_side

pytestmark = pytest.mark.slow

SERVER = "llamacpp"
OLLAMA_MODEL = "fake-llama3:8b@ollama"
ANSWER_TOKENS = 48
SMALL_N_CTX = 512  # as in test_openai_real_server.py: one server serves both
TIMEOUT_S = 120.0
# The store's own settings, the same in every test here (the module's ledger is ingested once).
STORE_FIELDS: dict[str, Any] = {
    "collection": "kb",
    "embed_model": DEFAULT_EMBED_MODEL,
    "embed_device": "cpu",
    "chunk_size": 64,
    "chunk_overlap": 0,
}

HARBOUR = {
    "harbour.md": "# Harbour of Lisvik\n\n## Moorings\n\nThe harbour master of Lisvik is Oda "
    "Brekke. Visiting boats moor at pier four, which has twelve berths.\n",
    "lighthouse.md": "# Lighthouse\n\nThe lighthouse on Skarv Point flashes white every ten "
    "seconds. Its keeper, Jon Vik, climbs the tower at dusk to check the lamp.\n",
    "ferry.md": "# Ferry\n\nThe ferry Sildra crosses to the island of Holmøy twice a day, at "
    "eight in the morning and at four in the afternoon.\n",
    "fish-market.md": "# Fish market\n\nThe fish market opens on the quay on Saturdays. Cod, "
    "herring and crab are sold from the stalls until noon.\n",
}
QUESTION = "Who is the harbour master of Lisvik?"
ITEM = QAItem(id="harbour-master", question=QUESTION, answers=("Oda Brekke",), doc="harbour.md")


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llama_server(llama_server_factory: Callable[..., LlamaServer]) -> LlamaServer:  # noqa: F811
    return llama_server_factory()


@pytest.fixture(scope="module")
def small_llama_server(llama_server_factory: Callable[..., LlamaServer]) -> LlamaServer:  # noqa: F811
    return llama_server_factory(n_ctx=SMALL_N_CTX)


def write_docs(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


def real_settings(
    settings_factory: Callable[..., Settings], server: LlamaServer, **overrides: Any
) -> Settings:
    """Settings on the fake Ollama and the real llama.cpp server, named `SERVER`."""
    values: dict[str, Any] = {
        **STORE_FIELDS,
        "openai_base_url": server.url,
        "openai_name": SERVER,
        "openai_timeout_s": TIMEOUT_S,
        "answer_tokens": ANSWER_TOKENS,
        # no cap on the context for the model's measured speed: these tests are about windows
        "first_token_target_s": None,
    }
    return settings_factory(**{**values, **overrides})


def ingested(settings: Settings, docs: Path, embedder: Any) -> Settings:
    report = ingest(settings, [docs], embedder=embedder)
    assert report.added == len(list(docs.iterdir())) and not report.failed, report.as_json()
    return settings


@pytest.fixture
def harbour_kb(
    settings_factory: Callable[..., Settings],
    llama_server: LlamaServer,
    embedder: Any,
    tmp_path: Path,
) -> Settings:
    settings = real_settings(settings_factory, llama_server)
    return ingested(settings, write_docs(tmp_path / "docs", HARBOUR), embedder)


@pytest.fixture
def services_for(embedder: Any) -> Iterator[Callable[[Settings], Services]]:
    """`services_for(settings)`: the composition root as the app builds it (one shared store,
    so Compare's lanes can read it at once), with the session's embedder; closed afterwards."""
    built: list[Services] = []

    def make(settings: Settings) -> Services:
        built.append(build_services(settings, embedder=embedder, shared_store=True))
        return built[-1]

    yield make
    for services in built:
        services.close()


def model_id(server: LlamaServer) -> str:
    return f"{server.alias}@{SERVER}"


def streamed(services: Services, question: str, model: str) -> tuple[list[str], AnswerResult]:
    """The text deltas of one answer, and its result (which must come last, once)."""
    with services.open_chain() as chain:
        events = list(chain.stream(question, model=model))
    assert events and isinstance(events[-1], AnswerResult), events[-3:]
    assert not any(isinstance(e, AnswerResult) for e in events[:-1])
    deltas = [e for e in events if isinstance(e, str)]
    return deltas, events[-1]


def count_chat_calls(services: Services, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Wrap the llama.cpp backend's `chat` (one call = one streamed request); the list holds
    each call's `window`."""
    backend = services.models.backend(SERVER)
    calls: list[int] = []
    chat = backend.chat

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["window"])
        return chat(*args, **kwargs)

    monkeypatch.setattr(backend, "chat", counting)
    return calls


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every chat completion request the `openai` client sends in this test, as it sends it:
    `stream` (bool), `response_format` (its type or None), `max_tokens`."""
    requests: list[dict[str, Any]] = []
    create = Completions.create

    def recording(self: Completions, **kwargs: Any) -> Any:
        response_format = kwargs.get("response_format")
        requests.append(
            {
                "stream": bool(kwargs.get("stream")),
                "response_format": response_format["type"] if response_format else None,
                "max_tokens": kwargs.get("max_tokens"),
            }
        )
        return create(self, **kwargs)

    monkeypatch.setattr(Completions, "create", recording)
    return requests


def cli_env(monkeypatch: pytest.MonkeyPatch, settings: Settings, server: LlamaServer) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    monkeypatch.setenv("KB_OPENAI_NAME", SERVER)
    monkeypatch.setenv("KB_OPENAI_TIMEOUT_S", str(TIMEOUT_S))
    monkeypatch.setenv("OLLAMA_HOST", settings.ollama_host)
    monkeypatch.setenv("KB_QDRANT_PATH", str(settings.qdrant_path))
    monkeypatch.setenv("KB_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("KB_EMBED_DEVICE", settings.embed_device)
    monkeypatch.setenv("KB_ANSWER_TOKENS", str(ANSWER_TOKENS))
    monkeypatch.setenv("KB_MODEL", settings.model)
    monkeypatch.setenv("KB_MODELS", ",".join(settings.models))
    monkeypatch.setenv("KB_CONFIG", str(settings.data_dir / "no-kb.toml"))


# -- 1. ingest, ask, list -------------------------------------------------------------------------


def test_streamed_answer_from_the_real_model_is_counted_and_cited(
    harbour_kb: Settings, llama_server: LlamaServer, services_for, sent: list[dict[str, Any]]
) -> None:
    services = services_for(harbour_kb)
    deltas, result = streamed(services, QUESTION, model_id(llama_server))

    assert sent == [{"stream": True, "response_format": None, "max_tokens": ANSWER_TOKENS}]

    assert deltas and all(deltas)
    assert result.answer == "".join(deltas) and result.answer.strip()
    assert not result.partial and result.error is None
    assert result.model == model_id(llama_server)
    assert result.server == SERVER
    assert result.finish_reason in ("stop", "length")
    # llama-cpp-python sends no usage in a stream: the adapter asks its tokenize endpoint
    assert result.counted_by == "tokenizer"
    assert result.prompt_tokens is not None and result.prompt_tokens > 0
    assert result.output_tokens is not None and 0 < result.output_tokens <= ANSWER_TOKENS + 2
    assert result.ttft_ms is not None and 0 < result.ttft_ms <= result.total_ms
    # no window stated by llama-cpp-python: kb's conservative default, nothing learned
    assert (result.window, result.window_source) == (CONSERVATIVE_WINDOW, "default")
    assert result.max_tokens == ANSWER_TOKENS
    assert not result.repacked and result.notice is None and not result.truncated
    # the tokenizer's count of the whole prompt calibrates the estimate
    assert services.calibration.get(result.model).samples == 1
    # the passages were packed, the harbour's own among them
    assert result.passages and result.context_tokens > 0
    assert [p["n"] for p in result.passages] == list(range(1, len(result.passages) + 1))
    assert "harbour.md" in {p["path"] for p in result.passages}
    assert all(1 <= c.n <= len(result.passages) for c in result.citations)


def test_cli_ask_with_the_real_model_prints_an_answer(
    harbour_kb: Settings,
    llama_server: LlamaServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cli_env(monkeypatch, harbour_kb, llama_server)
    code = cli.main(["ask", QUESTION, "--model", model_id(llama_server)])

    out, err = capsys.readouterr()
    assert code == 0, err
    answer, _, footer = out.rstrip("\n").rpartition("\n")
    assert answer.strip(), out
    assert footer.startswith(f"({model_id(llama_server)}: passages ")
    assert f"{CONSERVATIVE_WINDOW:,}-token window" in footer
    assert "(tokenizer)" in footer and "first token" in footer
    assert "Traceback" not in err

    code = cli.main(["ask", QUESTION, "--model", model_id(llama_server), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    assert data["answer"].strip()
    assert (data["model"], data["server"]) == (model_id(llama_server), SERVER)
    assert data["counted_by"] == "tokenizer" and data["prompt_tokens"] > 0
    assert data["passages"]


def test_cli_models_lists_both_servers(
    harbour_kb: Settings,
    llama_server: LlamaServer,
    fake_ollama: FakeOllama,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cli_env(monkeypatch, harbour_kb, llama_server)
    code = cli.main(["models", "--json"])

    out, err = capsys.readouterr()
    assert code == 0, err
    rows = {row["id"]: row for row in json.loads(out)}
    real = rows[model_id(llama_server)]
    assert (real["server"], real["name"]) == (SERVER, llama_server.alias)
    assert real["pulled"]
    # llama-cpp-python states no window: kb's conservative default
    assert (real["window"], real["window_source"]) == (CONSERVATIVE_WINDOW, "default")
    assert real["effective_window"] == CONSERVATIVE_WINDOW
    ollama_rows = [row for row in rows.values() if row["server"] == "ollama"]
    assert OLLAMA_MODEL in rows and rows[OLLAMA_MODEL]["pulled"]
    assert {row["id"] for row in ollama_rows} >= {OLLAMA_MODEL, "fake-mistral:7b@ollama"}
    assert all(row["id"] == f"{row['name']}@{row['server']}" for row in rows.values())
    assert set(rows) == {row["id"] for row in ollama_rows} | {model_id(llama_server)}


# -- 2. Compare -----------------------------------------------------------------------------------


def test_compare_lanes_real_model_beside_a_fake_ollama_model(
    harbour_kb: Settings, llama_server: LlamaServer, services_for, fake_ollama: FakeOllama
) -> None:
    services = services_for(harbour_kb)
    models = [model_id(llama_server), OLLAMA_MODEL]
    texts = ["", ""]
    results: dict[int, AnswerResult] = {}
    for lane, event in stream_side_by_side(services.open_chain, QUESTION, models):
        assert not isinstance(event, KBError), f"lane {lane}: {event}"
        if isinstance(event, str):
            assert lane not in results, "a delta after the lane's result"
            texts[lane] += event
        else:
            assert lane not in results, "two results in one lane"
            results[lane] = event

    assert sorted(results) == [0, 1]
    for lane, model in enumerate(models):
        result = results[lane]
        assert result.model == model
        assert result.server == model.rpartition("@")[2]
        assert result.answer.strip() and result.answer == texts[lane]
        assert not result.partial and result.passages
    assert results[1].answer.startswith("The harbour master of Lisvik is Oda Brekke")  # the fake
    assert results[0].counted_by == "tokenizer" and results[1].counted_by == "server"
    assert [r.body["model"] for r in fake_ollama.requests_to("/api/chat")] == ["fake-llama3:8b"]


# -- 3. the judge ---------------------------------------------------------------------------------


def test_judge_structured_json_from_the_real_model(
    harbour_kb: Settings,
    llama_server: LlamaServer,
    services_for,
    sent: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = services_for(harbour_kb)
    judge = model_id(llama_server)
    with services.open_chain() as chain:
        passages = [p.text for p in chain.search(QUESTION)[:4]]
    answer = "The harbour master of Lisvik is Oda Brekke [1]."

    # straight through the hub, with the judge's messages: JSON that the judge's schema takes
    reply = services.models.structured(
        judge,
        judge_messages(ITEM, answer, passages),
        JUDGE_SCHEMA,  # scores as an enum: llama.cpp's grammar enforces it
        window=CONSERVATIVE_WINDOW,
        max_tokens=JUDGE_ANSWER_TOKENS,
    )
    jsonschema.validate(reply, JUDGE_SCHEMA)
    assert verdict_from(reply).scored
    # it reached the server: json_schema rejected there, then its json_object dialect
    assert [(r["stream"], r["response_format"]) for r in sent] == [
        (False, "json_schema"),
        (False, "json_object"),
    ]

    # through the judge, recording what each of the backend's structured calls returned
    sent.clear()
    backend = services.models.backend(SERVER)
    outcomes: list[str] = []
    structured = backend.structured

    def recording(*args: Any, **kwargs: Any) -> Any:
        try:
            value = structured(*args, **kwargs)
        except KBError as err:
            outcomes.append(f"error: {err}")
            raise
        outcomes.append(
            "valid"
            if jsonschema.Draft202012Validator(JUDGE_SCHEMA).is_valid(value)
            else f"invalid: {value}"
        )
        return value

    monkeypatch.setattr(backend, "structured", recording)
    verdict = judge_answer(services.models, judge, CONSERVATIVE_WINDOW, ITEM, answer, passages)

    assert 1 <= len(outcomes) <= 2 and verdict.attempts == len(outcomes), outcomes
    # each attempt was one request, in the dialect the adapter learned above
    assert [(r["stream"], r["response_format"]) for r in sent] == [(False, "json_object")] * len(
        outcomes
    )
    if verdict.scored:
        assert outcomes[-1] == "valid", outcomes
        for score in (verdict.correctness, verdict.faithfulness):
            assert isinstance(score, int) and 1 <= score <= 5
        assert verdict.error is None
    else:  # the tiny model failed twice (SmolLM2 may score outside 1-5): unscored, with why
        assert len(outcomes) == 2 and all(o.startswith("error: ") for o in outcomes), outcomes
        assert verdict.correctness is None and verdict.faithfulness is None
        assert verdict.error and "malformed judge output" in verdict.error


# -- 4. a prompt too long for the server's window -------------------------------------------------

_SHIPS = ["Kittiwake", "Storm Petrel", "Grey Heron", "Cormorant", "Eider", "Fulmar", "Gannet"]
_CARGO = ["salted cod", "timber", "barrels of tar", "wool", "slate", "potatoes", "rope", "coal"]
_PLACES = ["Bergen", "Tromsø", "Aberdeen", "Lerwick", "Tórshavn", "Kirkwall", "Ålesund"]
_WEATHER = ["a westerly gale", "thick fog", "calm seas", "driving sleet", "a long swell", "haze"]
_CREW = ["the mate", "the cook", "the bosun", "a deckhand", "the skipper", "the pilot"]
OVER_LONG_QUESTION = "Which ships brought salted cod to the harbour, and who signed the ledger?"


def ledger_docs(files: int = 3, entries: int = 24) -> dict[str, str]:
    """A harbour ledger long enough that retrieval returns far more than a 2048-token window
    holds; every sentence different, so no passage is dropped as a near-duplicate."""
    rng = random.Random(7)
    docs = {}
    for number in range(files):
        lines = [f"# Ledger of the harbour, book {number + 1}\n"]
        for entry in range(entries):
            lines.append(
                f"Entry {entry + 1} of book {number + 1}: the {rng.choice(_SHIPS)} came in from "
                f"{rng.choice(_PLACES)} through {rng.choice(_WEATHER)} carrying "
                f"{rng.choice(_CARGO)}, and {rng.choice(_CREW)} signed the harbour ledger "
                f"before {rng.choice(_CREW)} took the {rng.choice(_CARGO)} ashore."
            )
        docs[f"ledger-{number + 1}.md"] = "\n\n".join(lines) + "\n"
    return {**HARBOUR, **docs}


@pytest.fixture(scope="module")
def ledger_store(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Path:
    """The ledger ingested once for this module's over-long tests (they only read it): the
    embedded Qdrant folder to pass as `qdrant_path`."""
    root = tmp_path_factory.mktemp("ledger")
    # every field ingest reads given here: no KB_* variable or kb.toml reaches this fixture
    settings = Settings(
        **STORE_FIELDS,
        qdrant_path=root / "qdrant",
        qdrant_url=None,
        qdrant_api_key=None,
        embed_batch_size=16,
        max_file_mb=50.0,
        store_lock_wait_s=5.0,
        data_dir=root / "data",
    )
    ingested(settings, write_docs(root / "docs", ledger_docs()), embedder)
    return settings.qdrant_path


def test_over_long_prompt_teaches_the_window_and_is_sent_once_more(
    settings_factory: Callable[..., Settings],
    small_llama_server: LlamaServer,
    ledger_store: Path,
    services_for,
    sent: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = real_settings(settings_factory, small_llama_server, qdrant_path=ledger_store)
    services = services_for(settings)
    model = model_id(small_llama_server)
    calls = count_chat_calls(services, monkeypatch)

    deltas, result = streamed(services, OVER_LONG_QUESTION, model)

    # kb packed for its default window; the server rejected it; kb learned the server's window
    # from the error, packed fewer passages for it and sent once more
    assert calls == [CONSERVATIVE_WINDOW, SMALL_N_CTX], calls
    assert result.repacked
    assert result.window == SMALL_N_CTX
    assert result.window_source == "learned"
    assert result.notice and f"its {SMALL_N_CTX:,}-token window" in result.notice
    assert deltas and result.answer == "".join(deltas) and result.answer.strip()
    assert not result.partial and result.error is None
    assert result.finish_reason in ("stop", "length")
    assert result.ttft_ms is not None
    assert result.counted_by == "tokenizer"
    assert result.prompt_tokens is not None and 0 < result.prompt_tokens < SMALL_N_CTX
    assert result.passages and result.max_tokens == ANSWER_TOKENS
    assert services.calibration.learned_window(model) == SMALL_N_CTX
    # on the wire: two streams, and between them the adapter's non-streamed question about
    # the empty one (max_tokens=1; sent again on a fresh connection when llama-cpp-python
    # dropped the one it came on), which got the server's "maximum context length"
    streams = [i for i, r in enumerate(sent) if r["stream"]]
    assert streams == [0, len(sent) - 1], sent
    assert 1 <= len(sent[1:-1]) <= 2 and all(r["max_tokens"] == 1 for r in sent[1:-1]), sent
    assert sent[0]["max_tokens"] == sent[-1]["max_tokens"] == ANSWER_TOKENS
    assert logged(small_llama_server, "exceed context window")  # the stream's error, logged

    # the next question is packed for the learned window at once: one stream, not repacked
    calls.clear()
    sent.clear()
    deltas, second = streamed(services, "Where did the Gannet come in from?", model)

    assert calls == [SMALL_N_CTX]
    assert [r["stream"] for r in sent] == [True]
    assert (second.window, second.window_source) == (SMALL_N_CTX, "learned")
    assert not second.repacked and second.notice is None
    assert deltas and second.answer.strip() and not second.partial
    assert second.passages and second.prompt_tokens is not None
    assert 0 < second.prompt_tokens < SMALL_N_CTX


def test_cli_over_long_prompt_notes_the_learned_window(
    settings_factory: Callable[..., Settings],
    small_llama_server: LlamaServer,
    ledger_store: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = real_settings(settings_factory, small_llama_server, qdrant_path=ledger_store)
    cli_env(monkeypatch, settings, small_llama_server)

    code = cli.main(["ask", OVER_LONG_QUESTION, "--model", model_id(small_llama_server)])

    out, err = capsys.readouterr()
    assert code == 0, err
    assert re.search(rf"^Note: .*its {SMALL_N_CTX:,}-token window", err, re.MULTILINE), err
    assert f"a {SMALL_N_CTX:,}-token window" in out.rstrip("\n").rpartition("\n")[2], out
