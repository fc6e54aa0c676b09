"""`OpenAICompatBackend` against a real llama-cpp-python server (`tests/llama_server.py`) with
a tiny model (`KB_TEST_GGUF`, e.g. SmolLM2-135M-Instruct). Behaviour only: never the model's
words. A few tests first check, with plain HTTP, the server quirks the adapter is built around,
so that a new llama-cpp-python that changes them shows up here."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from rag.errors import PromptTooLongError
from rag.llm.base import TextDelta, Usage, collect_text
from rag.llm.openai_compat import OpenAICompatBackend
from rag.models import CONSERVATIVE_WINDOW, window_facts
from rag.settings import OpenAIServer, Settings
from tests.llama_server import (  # llama_server_factory is a fixture
    LlamaServer,
    llama_server_factory,  # noqa: F401
    logged,
)

pytestmark = pytest.mark.slow

SERVER_NAME = "llamapy"
SMALL_N_CTX = 512
QUESTION = [
    {"role": "system", "content": "You are a helpful assistant. Answer in one sentence."},
    {"role": "user", "content": "What is the capital of France?"},
]
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "sure": {"type": "boolean"}},
    "required": ["city", "sure"],
}
STRUCTURED_QUESTION = [
    {"role": "system", "content": "Reply with JSON only."},
    {"role": "user", "content": "Which city is the capital of France, and are you sure?"},
]


def too_long_question() -> list[dict[str, str]]:
    """A prompt far past `SMALL_N_CTX` tokens, whatever the tokenizer."""
    return [{"role": "user", "content": "Tell me about this text. " + "word " * 2000}]


@pytest.fixture(scope="module")
def llama_server(llama_server_factory: Callable[..., LlamaServer]) -> LlamaServer:  # noqa: F811
    return llama_server_factory()


@pytest.fixture(scope="module")
def small_llama_server(llama_server_factory: Callable[..., LlamaServer]) -> LlamaServer:  # noqa: F811
    return llama_server_factory(n_ctx=SMALL_N_CTX)


@pytest.fixture
def backend_on(isolated_env: None) -> Iterator[Callable[..., OpenAICompatBackend]]:
    """`backend_on(server, **settings)`: a backend for a running server, closed afterwards."""
    backends: list[OpenAICompatBackend] = []

    def make(server: LlamaServer, **overrides: Any) -> OpenAICompatBackend:
        configured = OpenAIServer(name=SERVER_NAME, url=server.url)
        settings = Settings(openai_servers=[configured], openai_timeout_s=120, **overrides)
        backends.append(OpenAICompatBackend(configured, settings))
        return backends[-1]

    yield make
    for backend in backends:
        backend.close()


def sse_events(response: httpx.Response) -> list[Any]:
    """The `data:` payloads of a server-sent event stream (JSON decoded, `[DONE]` as is)."""
    events: list[Any] = []
    for line in response.iter_lines():
        if line.startswith("data:"):
            data = line.removeprefix("data:").strip()
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


# -- the server's own behaviour, by plain HTTP --------------------------------------------------


def test_server_has_no_props_and_no_window_in_its_listing(llama_server: LlamaServer) -> None:
    assert httpx.get(f"{llama_server.root}/props").status_code == 404
    assert httpx.get(f"{llama_server.root}/api/v0/models").status_code == 404
    (entry,) = httpx.get(f"{llama_server.url}/models").json()["data"]
    assert entry["id"] == llama_server.alias
    assert not {"max_model_len", "meta", "context_length"} & set(entry)


def test_server_accepts_stream_options_but_sends_no_usage_in_streams(
    llama_server: LlamaServer,
) -> None:
    body = {
        "model": llama_server.alias,
        "messages": QUESTION,
        "max_tokens": 8,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with httpx.stream("POST", f"{llama_server.url}/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200
        events = sse_events(r)
    chunks = [e for e in events if isinstance(e, dict)]
    assert events[-1] == "[DONE]"
    assert chunks and not any(chunk.get("usage") for chunk in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_server_rejects_json_schema_response_format(llama_server: LlamaServer) -> None:
    body = {
        "model": llama_server.alias,
        "messages": STRUCTURED_QUESTION,
        "max_tokens": 8,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "reply", "schema": SCHEMA, "strict": True},
        },
    }
    reply = httpx.post(f"{llama_server.url}/chat/completions", json=body, timeout=60)
    assert reply.status_code >= 400
    assert "response_format" in reply.text


def test_server_answers_an_over_long_stream_with_an_empty_200(
    small_llama_server: LlamaServer,
) -> None:
    body = {"model": small_llama_server.alias, "messages": too_long_question(), "stream": True}
    url = f"{small_llama_server.url}/chat/completions"
    with httpx.stream("POST", url, json=body, timeout=60) as r:
        assert r.status_code == 200
        assert sse_events(r) == []
    assert logged(small_llama_server, "exceed context window")  # the error went only there
    # the same prompt not streamed: a 400 that states the window
    reply = httpx.post(url, json={**body, "stream": False, "max_tokens": 1}, timeout=60)
    assert reply.status_code == 400
    assert f"maximum context length is {SMALL_N_CTX} tokens" in reply.json()["error"]["message"]


# -- the adapter ---------------------------------------------------------------------------------


def test_list_models_ids_carry_the_server_name(llama_server: LlamaServer, backend_on) -> None:
    (listed,) = backend_on(llama_server).list_models()
    assert listed.id == f"{llama_server.alias}@{SERVER_NAME}"
    assert listed.ref.name == llama_server.alias


def test_facts_window_default_without_a_setting(llama_server: LlamaServer, backend_on) -> None:
    facts = backend_on(llama_server).facts(llama_server.alias)
    assert facts.window is None  # llama-cpp-python states no window
    chosen = window_facts(facts, Settings())
    assert (chosen.window, chosen.window_source) == (CONSERVATIVE_WINDOW, "default")
    assert facts.quantization == "Q4_1"
    assert facts.license == "Apache-2.0"  # SmolLM2, from kb's catalog


def test_facts_window_from_kb_context_windows(llama_server: LlamaServer, backend_on) -> None:
    model_id = f"{llama_server.alias}@{SERVER_NAME}"
    facts = backend_on(llama_server).facts(llama_server.alias)
    chosen = window_facts(facts, Settings(context_windows={model_id: 1536}))
    assert (chosen.window, chosen.window_source) == (1536, "setting")


def test_streamed_chat_text_then_one_usage_counted_by_the_tokenizer(
    llama_server: LlamaServer, backend_on
) -> None:
    events = list(
        backend_on(llama_server).chat(
            llama_server.alias, QUESTION, window=2048, max_tokens=24, temperature=0.0, seed=1
        )
    )
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert deltas and all(d.text for d in deltas)
    assert isinstance(events[-1], Usage)
    assert sum(isinstance(e, Usage) for e in events) == 1
    usage = events[-1]
    assert usage.counted_by == "tokenizer"  # the stream had no usage; /extras/tokenize/count
    assert usage.prompt_tokens is not None and usage.prompt_tokens > 5
    assert usage.output_tokens is not None and 0 < usage.output_tokens <= 24 + 2
    assert usage.finish_reason in ("stop", "length")


def test_max_tokens_bounds_the_answer(llama_server: LlamaServer, backend_on) -> None:
    story = [{"role": "user", "content": "Write a long story about a dragon and a castle."}]
    _, usage = collect_text(
        backend_on(llama_server).chat(llama_server.alias, story, window=2048, max_tokens=3)
    )
    assert usage is not None
    assert usage.finish_reason == "length"


def test_structured_reply_validated_against_the_schema(
    llama_server: LlamaServer, backend_on
) -> None:
    backend = backend_on(llama_server)
    for _ in range(2):  # the second goes straight to llama-cpp-python's json_object dialect
        reply = backend.structured(
            llama_server.alias, STRUCTURED_QUESTION, SCHEMA, window=2048, max_tokens=64, seed=1
        )
        assert isinstance(reply["city"], str)
        assert isinstance(reply["sure"], bool)


def test_over_long_prompt_raises_prompt_too_long_with_the_window(
    small_llama_server: LlamaServer, backend_on
) -> None:
    backend = backend_on(small_llama_server)
    alias = small_llama_server.alias
    with pytest.raises(PromptTooLongError) as caught:
        collect_text(backend.chat(alias, too_long_question(), window=2048, max_tokens=64))
    assert caught.value.window == SMALL_N_CTX
    assert SERVER_NAME in str(caught.value)
    # and a prompt that fits still gets an answer
    _, usage = collect_text(backend.chat(alias, QUESTION, window=SMALL_N_CTX, max_tokens=8))
    assert usage is not None and usage.finish_reason in ("stop", "length")


def test_parallel_lanes_over_one_backend_each_get_a_whole_answer(
    llama_server: LlamaServer, backend_on
) -> None:
    backend = backend_on(llama_server)

    def lane(seed: int) -> tuple[str, Usage | None]:
        return collect_text(
            backend.chat(llama_server.alias, QUESTION, window=2048, max_tokens=16, seed=seed)
        )

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lane, range(3)))
    for _text, usage in results:
        assert usage is not None
        assert usage.finish_reason in ("stop", "length")
