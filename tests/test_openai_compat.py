"""`OpenAICompatBackend` against fakes of llama.cpp's `llama-server`, llama-cpp-python's server,
vLLM and LM Studio: real HTTP on loopback through the real `openai` client, answering with the
JSON those servers send (`tests/fixtures/openai_servers/*.json`; each file's `_source` names the
server source it was built from, or says it was recorded from the real server)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from rag.errors import (
    MalformedReplyError,
    ModelAuthError,
    ModelNotFoundError,
    ModelResponseError,
    ModelTimeoutError,
    PromptTooLongError,
    ServerUnreachableError,
    SettingsError,
)
from rag.llm.base import ChatBackend, TextDelta, Usage, collect_text
from rag.llm.openai_compat import (
    OpenAICompatBackend,
    quantization_in,
    server_root,
    stated_window,
)
from rag.models import CONSERVATIVE_WINDOW, window_facts
from rag.settings import OpenAIServer, Settings

FIXTURES = Path(__file__).parent / "fixtures" / "openai_servers"
LLAMA_CPP = json.loads((FIXTURES / "llama_cpp.json").read_text())
LLAMA_CPP_PYTHON = json.loads((FIXTURES / "llama_cpp_python.json").read_text())
VLLM = json.loads((FIXTURES / "vllm.json").read_text())
LMSTUDIO = json.loads((FIXTURES / "lmstudio.json").read_text())

LC_MODEL = LLAMA_CPP["models"]["data"][0]["id"]
LCP_MODEL = LLAMA_CPP_PYTHON["models"]["data"][0]["id"]
VLLM_MODEL = VLLM["models"]["data"][0]["id"]
LM_MODEL = "meta-llama-3.1-8b-instruct"
QUESTION = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Hi?"}]
SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}},
    "required": ["answer"],
}

# -- a fake server -------------------------------------------------------------------------------


@dataclass
class Reply:
    """One answer: JSON `body` (a str is sent as is) with `status`, or an SSE stream of
    `events` (dicts as `data: <json>`, strings as `data: <string>`)."""

    status: int = 200
    body: Any = None
    events: list[Any] | None = None
    delay_s: float = 0.0
    drop: bool = False  # close the connection without answering


Route = Reply | Callable[[dict[str, Any]], Reply]


@dataclass
class Seen:
    method: str
    path: str
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class FakeServer:
    """Routes keyed `"GET /v1/models"`; anything else is FastAPI's 404 `{"detail": ...}`."""

    routes: dict[str, Route]
    seen: list[Seen] = field(default_factory=list)

    def start(self) -> FakeServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else {}
                path = self.path.split("?", 1)[0]
                headers = {k.lower(): v for k, v in self.headers.items()}
                server.seen.append(Seen(self.command, path, body, headers))
                route = server.routes.get(f"{self.command} {path}")
                if route is None:
                    reply = Reply(404, VLLM["not_found"])
                else:
                    reply = route(body) if callable(route) else route
                time.sleep(reply.delay_s)
                if reply.drop:
                    self.close_connection = True
                elif reply.events is not None:
                    self._stream(reply)
                else:
                    data = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
                    self._send(reply.status, "application/json", data.encode())

            def _send(self, status: int, content_type: str, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, reply: Reply) -> None:
                self.send_response(reply.status)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for event in reply.events or []:
                    data = event if isinstance(event, str) else json.dumps(event)
                    self.wfile.write(f"data: {data}\n\n".encode())
                    self.wfile.flush()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"{self.root}/v1"

    def requests_to(self, path: str, method: str = "POST") -> list[Seen]:
        return [s for s in self.seen if s.path == path and s.method == method]


def unused_loopback_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def stream(events: list[Any], done: bool = True) -> Reply:
    return Reply(events=[*events, "[DONE]"] if done else list(events))


def llama_cpp_routes(**more: Route) -> dict[str, Route]:
    """llama.cpp's llama-server: usage in the stream only when asked for."""

    def chat(body: dict[str, Any]) -> Reply:
        if body.get("stream"):
            include = (body.get("stream_options") or {}).get("include_usage")
            return stream(LLAMA_CPP["stream_with_usage" if include else "stream_without_usage"])
        return Reply(body=LLAMA_CPP["chat_json"])

    return {
        "GET /v1/models": Reply(body=LLAMA_CPP["models"]),
        "GET /props": Reply(body=LLAMA_CPP["props"]),
        "POST /tokenize": Reply(body=LLAMA_CPP["tokenize"]),
        "POST /v1/chat/completions": chat,
        **more,
    }


def llama_cpp_python_routes(**more: Route) -> dict[str, Route]:
    """llama-cpp-python's server: no usage in streams, `json_schema` rejected."""

    def chat(body: dict[str, Any]) -> Reply:
        if (body.get("response_format") or {}).get("type") == "json_schema":
            status = LLAMA_CPP_PYTHON["json_schema_rejected_status"]  # 500, not 4xx
            return Reply(status, LLAMA_CPP_PYTHON["json_schema_rejected"])
        if body.get("stream"):
            return stream(LLAMA_CPP_PYTHON["stream"])
        return Reply(body=LLAMA_CPP_PYTHON["chat_json"])

    return {
        "GET /v1/models": Reply(body=LLAMA_CPP_PYTHON["models"]),
        "POST /extras/tokenize/count": Reply(body=LLAMA_CPP_PYTHON["tokenize_count"]),
        "POST /v1/chat/completions": chat,
        **more,
    }


def vllm_routes(**more: Route) -> dict[str, Route]:
    def chat(body: dict[str, Any]) -> Reply:
        if body.get("model") != VLLM_MODEL:
            return Reply(404, VLLM["model_not_found"])
        return stream(VLLM["stream_with_usage"])

    return {
        "GET /v1/models": Reply(body=VLLM["models"]),
        "POST /tokenize": Reply(body=VLLM["tokenize"]),
        "POST /v1/chat/completions": chat,
        **more,
    }


def lmstudio_routes(**more: Route) -> dict[str, Route]:
    return {
        "GET /v1/models": Reply(body=LMSTUDIO["models"]),
        "GET /api/v0/models": Reply(body=LMSTUDIO["api_v0_models"]),
        **more,
    }


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def serve(isolated_env: None) -> Iterator[Callable[[dict[str, Route]], FakeServer]]:
    servers: list[FakeServer] = []

    def start(routes: dict[str, Route]) -> FakeServer:
        servers.append(FakeServer(routes).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def backend_for(
    isolated_env: None,
) -> Iterator[Callable[..., OpenAICompatBackend]]:
    """`backend_for(url, name="local", api_key=None, **settings)`: a backend configured
    through `KB_OPENAI_SERVERS` (as settings), closed afterwards."""
    backends: list[OpenAICompatBackend] = []

    def make(
        url: str, name: str = "local", api_key: str | None = None, **overrides: Any
    ) -> OpenAICompatBackend:
        server = OpenAIServer(name=name, url=url, api_key=api_key)
        settings = Settings(openai_servers=[server], **overrides)
        backends.append(OpenAICompatBackend(settings.all_openai_servers[0], settings))
        return backends[-1]

    yield make
    for backend in backends:
        backend.close()


# -- configuration -------------------------------------------------------------------------------


def test_is_a_chat_backend_named_after_its_server(serve, backend_for) -> None:
    server = serve(llama_cpp_routes())
    backend = backend_for(server.url, name="gpu-box")
    assert isinstance(backend, ChatBackend)
    assert backend.name == "gpu-box"
    assert backend.describe() == f"the OpenAI-compatible server gpu-box at {server.url}"


def test_requests_go_to_the_configured_url_only_never_to_a_stray_openai_setting(
    serve, backend_for, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve(llama_cpp_routes())
    monkeypatch.setenv("OPENAI_API_KEY", "sk-stray-key")
    monkeypatch.setenv("OPENAI_BASE_URL", unused_loopback_url())
    monkeypatch.setenv("OPENAI_ORG_ID", "org-stray")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-stray")
    backend = backend_for(server.url)
    assert [m.id for m in backend.list_models()] == [f"{LC_MODEL}@local"]
    (seen,) = server.seen
    assert seen.headers["authorization"] == "Bearer not-needed"
    assert not {"openai-organization", "openai-project"} & set(seen.headers)


def test_no_backend_without_an_explicit_url() -> None:
    # OpenAIServer validates its URL; a model built around it must not fall back either.
    unchecked = OpenAIServer.model_construct(name="stray", url="", api_key=None)
    with pytest.raises(SettingsError, match="has no http"):
        OpenAICompatBackend(unchecked, Settings())


def test_a_configured_key_is_sent_as_bearer_token(serve, backend_for) -> None:
    server = serve(llama_cpp_routes())
    backend_for(server.url, api_key="s3cret").list_models()
    assert server.seen[0].headers["authorization"] == "Bearer s3cret"


def test_a_failed_request_is_not_retried(serve, backend_for) -> None:
    server = serve({"POST /v1/chat/completions": Reply(500, {"error": {"message": "boom"}})})
    backend = backend_for(server.url)
    with pytest.raises(ModelResponseError, match="status 500: boom"):
        collect_text(backend.chat("m", QUESTION, window=2048, max_tokens=8))
    assert len(server.requests_to("/v1/chat/completions")) == 1


def test_server_root_drops_a_trailing_v1() -> None:
    assert server_root("http://h:8000/v1") == "http://h:8000"
    assert server_root("http://h:8000/v1/") == "http://h:8000"
    assert server_root("http://h:8080") == "http://h:8080"
    assert server_root("https://h/llm/v1") == "https://h/llm"


# -- models and facts ----------------------------------------------------------------------------


def test_list_models_ids_carry_the_server_name_and_llama_cpp_sizes(serve, backend_for) -> None:
    server = serve(llama_cpp_routes())
    (listed,) = backend_for(server.url, name="cpp").list_models()
    assert listed.id == f"{LC_MODEL}@cpp"
    assert listed.ref.name == LC_MODEL
    assert listed.size_bytes == LLAMA_CPP["models"]["data"][0]["meta"]["size"]


def test_llama_cpp_facts_window_from_the_listing_meta(serve, backend_for) -> None:
    server = serve(llama_cpp_routes())
    facts = backend_for(server.url).facts(LC_MODEL)
    assert (facts.window, facts.window_source) == (8192, "server")
    assert facts.context_length == 32768
    assert facts.quantization == "Q4_K_M"
    assert facts.parameter_count == 494032768
    assert facts.parameter_size == "494M"
    assert facts.server == "local"
    assert facts.id == f"{LC_MODEL}@local"


def test_older_llama_cpp_facts_window_from_props(serve, backend_for) -> None:
    models = json.loads(json.dumps(LLAMA_CPP["models"]))
    del models["data"][0]["meta"]["n_ctx"]
    props = {**LLAMA_CPP["props"], "model_path": "/models/phi-4-IQ4_XS.gguf"}
    props["default_generation_settings"] = {"n_ctx": 4096}
    server = serve(llama_cpp_routes(**{"GET /v1/models": Reply(body=models)}))
    server.routes["GET /props"] = Reply(body=props)
    backend = backend_for(server.url)
    facts = backend.facts(LC_MODEL)
    assert (facts.window, facts.window_source) == (4096, "server")
    assert facts.context_length == 32768


def test_vllm_facts_window_is_max_model_len(serve, backend_for) -> None:
    server = serve(vllm_routes())
    facts = backend_for(server.url).facts(VLLM_MODEL)
    assert (facts.window, facts.window_source) == (32768, "server")
    assert facts.quantization == "AWQ"
    assert facts.license is not None  # Qwen, from kb's catalog
    assert not server.requests_to("/props", "GET")  # the listing told it was vLLM


def test_lmstudio_facts_loaded_context_is_the_window_and_max_is_context_length(
    serve, backend_for
) -> None:
    server = serve(lmstudio_routes())
    facts = backend_for(server.url).facts(LM_MODEL)
    assert (facts.window, facts.window_source) == (4096, "server")
    assert facts.context_length == 131072
    assert facts.quantization == "Q4_K_M"
    assert facts.architecture == "llama"


def test_lmstudio_model_not_loaded_has_no_stated_window(serve, backend_for) -> None:
    server = serve(lmstudio_routes())
    facts = backend_for(server.url).facts("qwen2-vl-7b-instruct")
    assert (facts.window, facts.window_source) == (None, None)
    assert facts.context_length == 32768


def test_window_of_a_server_that_states_none_setting_then_learned_then_default(
    serve, backend_for
) -> None:
    server = serve(llama_cpp_python_routes())
    backend = backend_for(server.url, name="py")
    facts = backend.facts(LCP_MODEL)
    assert facts.window is None  # this server states none
    assert facts.quantization == "Q4_1"
    assert facts.license == "Apache-2.0"  # SmolLM2, from kb's catalog
    plain = Settings()
    assert window_facts(facts, plain).window == CONSERVATIVE_WINDOW
    assert window_facts(facts, plain, learned=512).window_source == "learned"
    with_setting = Settings(context_windows={f"{LCP_MODEL}@py": 1024})
    facts = window_facts(facts, with_setting, learned=512)
    assert (facts.window, facts.window_source) == (1024, "setting")


def test_the_dialect_is_probed_once_and_facts_are_cached(serve, backend_for) -> None:
    server = serve(llama_cpp_python_routes())
    backend = backend_for(server.url)
    backend.facts(LCP_MODEL)
    backend.facts(LCP_MODEL)
    backend.facts(LCP_MODEL, max_age_s=60)
    assert len(server.requests_to("/props", "GET")) == 1  # a 404: not llama.cpp
    assert len(server.requests_to("/api/v0/models", "GET")) == 1  # a 404: not LM Studio
    assert len(server.requests_to("/v1/models", "GET")) == 2  # the third was cached


def test_facts_of_a_model_the_server_lacks(serve, backend_for) -> None:
    server = serve(vllm_routes())
    with pytest.raises(ModelNotFoundError, match=f"has no model llama3 .*{VLLM_MODEL}"):
        backend_for(server.url).facts("llama3")


def test_quantization_in_names() -> None:
    assert quantization_in("Qwen2.5-0.5B-Instruct-Q4_K_M.gguf") == "Q4_K_M"
    assert quantization_in("/m/SmolLM2-135M-Instruct.Q4_1.gguf") == "Q4_1"
    assert quantization_in("phi-4-IQ4_XS.gguf") == "IQ4_XS"
    assert quantization_in("llama-3-8b.f16.gguf") == "F16"
    assert quantization_in("TheBloke/Mistral-7B-AWQ") == "AWQ"
    assert quantization_in("qwen2.5:7b") is None
    assert quantization_in("Qwen2.5-7B-Instruct") is None


# -- chat ----------------------------------------------------------------------------------------


def test_llama_cpp_stream_text_then_one_usage_from_the_server(serve, backend_for) -> None:
    server = serve(llama_cpp_routes())
    backend = backend_for(server.url)
    events = list(
        backend.chat(LC_MODEL, QUESTION, window=8192, max_tokens=64, temperature=0.2, seed=7)
    )
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Paris", " is", " it."]
    usage = events[-1]
    assert isinstance(usage, Usage)
    assert sum(isinstance(e, Usage) for e in events) == 1
    assert (usage.prompt_tokens, usage.output_tokens, usage.counted_by) == (31, 3, "server")
    assert (usage.prompt_ms, usage.output_ms) == (48.2, 21.9)
    assert usage.finish_reason == "stop"
    (sent,) = server.requests_to("/v1/chat/completions")
    assert sent.body["stream"] is True
    assert sent.body["stream_options"] == {"include_usage": True}
    assert (sent.body["max_tokens"], sent.body["temperature"], sent.body["seed"]) == (64, 0.2, 7)
    assert sent.body["messages"] == QUESTION


def test_vllm_stream_usage_from_the_server(serve, backend_for) -> None:
    server = serve(vllm_routes())
    text, usage = collect_text(
        backend_for(server.url).chat(VLLM_MODEL, QUESTION, window=1, max_tokens=9)
    )
    assert text == "Paris is it."
    assert usage is not None
    assert (usage.prompt_tokens, usage.output_tokens, usage.counted_by) == (40, 3, "server")


def test_nothing_is_sent_before_the_first_event_is_asked_for(serve, backend_for) -> None:
    server = serve(llama_cpp_routes())
    events = backend_for(server.url).chat(LC_MODEL, QUESTION, window=8192, max_tokens=8)
    assert not server.requests_to("/v1/chat/completions")
    assert isinstance(next(events), TextDelta)
    assert len(server.requests_to("/v1/chat/completions")) == 1


def test_no_usage_in_the_stream_counted_by_llama_cpp_python_tokenizer(serve, backend_for) -> None:
    server = serve(llama_cpp_python_routes())
    text, usage = collect_text(
        backend_for(server.url).chat(LCP_MODEL, QUESTION, window=2048, max_tokens=16)
    )
    assert text
    assert usage is not None
    assert (usage.prompt_tokens, usage.output_tokens, usage.counted_by) == (6, 6, "tokenizer")
    assert usage.estimated
    counted = server.requests_to("/extras/tokenize/count")
    assert [s.body for s in counted] == [
        {"input": "Answer briefly.\nHi?", "model": LCP_MODEL},
        {"input": text, "model": LCP_MODEL},
    ]


def test_no_usage_in_the_stream_counted_by_llama_cpp_tokenize(serve, backend_for) -> None:
    no_usage = stream(LLAMA_CPP["stream_without_usage"])
    server = serve(llama_cpp_routes(**{"POST /v1/chat/completions": no_usage}))
    _, usage = collect_text(
        backend_for(server.url).chat(LC_MODEL, QUESTION, window=1, max_tokens=9)
    )
    assert usage is not None
    assert (usage.prompt_tokens, usage.output_tokens, usage.counted_by) == (5, 5, "tokenizer")
    assert usage.prompt_ms == 48.2  # llama.cpp's timings ride on the last chunk
    assert next(s.body for s in server.requests_to("/tokenize")) == {
        "content": "Answer briefly.\nHi?"
    }


def test_no_usage_and_no_tokenizer_counted_by_estimate_and_not_asked_again(
    serve, backend_for
) -> None:
    server = serve(llama_cpp_python_routes())
    del server.routes["POST /extras/tokenize/count"]
    backend = backend_for(server.url)
    for _ in range(2):
        _, usage = collect_text(backend.chat(LCP_MODEL, QUESTION, window=2048, max_tokens=16))
        assert usage is not None
        assert usage.counted_by == "estimate"
        assert usage.prompt_tokens == 6  # ceil(len("Answer briefly.\nHi?") / 3.2)
    assert len(server.requests_to("/extras/tokenize/count")) == 1


def test_stream_options_rejected_retried_without_and_remembered(serve, backend_for) -> None:
    def strict(body: dict[str, Any]) -> Reply:
        if "stream_options" in body:
            detail = [{"type": "extra_forbidden", "loc": ["body", "stream_options"],
                       "msg": "Extra inputs are not permitted"}]  # fmt: skip
            return Reply(422, {"detail": detail})
        return stream(LLAMA_CPP["stream_without_usage"])

    server = serve(llama_cpp_routes(**{"POST /v1/chat/completions": strict}))
    backend = backend_for(server.url)
    for _ in range(2):
        text, usage = collect_text(backend.chat(LC_MODEL, QUESTION, window=1, max_tokens=9))
        assert text == "Paris is it."
        assert usage is not None and usage.counted_by == "tokenizer"
    sent = server.requests_to("/v1/chat/completions")
    assert ["stream_options" in s.body for s in sent] == [True, False, False]


def test_error_mid_stream_comes_after_the_text_before_it(serve, backend_for) -> None:
    events = [*LLAMA_CPP["stream_with_usage"][:3], LLAMA_CPP["stream_error"]]
    server = serve(llama_cpp_routes(**{"POST /v1/chat/completions": stream(events, done=False)}))
    received: list[Any] = []
    with pytest.raises(ModelResponseError, match="less tool calls") as caught:
        for event in backend_for(server.url).chat(LC_MODEL, QUESTION, window=1, max_tokens=9):
            received.append(event)
    assert [e.text for e in received] == ["Paris", " is"]
    assert "OpenAI-compatible server local" in str(caught.value)


def test_a_stream_that_breaks_off_after_some_text(serve, backend_for) -> None:
    cut = stream([LLAMA_CPP["stream_with_usage"][1]], done=False)  # no finish, no [DONE]
    server = serve(llama_cpp_routes(**{"POST /v1/chat/completions": cut}))
    received: list[Any] = []
    with pytest.raises(ModelResponseError, match="broke off the answer"):
        for event in backend_for(server.url).chat(LC_MODEL, QUESTION, window=1, max_tokens=9):
            received.append(event)
    assert received == [TextDelta("Paris")]


# -- prompts too long ----------------------------------------------------------------------------


def test_llama_cpp_exceed_context_size_error(serve, backend_for) -> None:
    too_long = Reply(400, LLAMA_CPP["exceed_context_size"])
    server = serve(llama_cpp_routes(**{"POST /v1/chat/completions": too_long}))
    with pytest.raises(PromptTooLongError, match="8192 tokens") as caught:
        collect_text(backend_for(server.url).chat(LC_MODEL, QUESTION, window=1, max_tokens=9))
    assert caught.value.window == 8192


def test_vllm_maximum_context_length_error_states_the_window(serve, backend_for) -> None:
    server = serve(
        {"GET /v1/models": Reply(body={"object": "list", "data": [{"id": "m", "object": "model"}]}),
         "POST /v1/chat/completions": Reply(400, VLLM["context_length"])}
    )  # fmt: skip
    backend = backend_for(server.url)
    with pytest.raises(PromptTooLongError) as caught:
        collect_text(backend.chat("m", QUESTION, window=1, max_tokens=9))
    assert caught.value.window == 32768


@pytest.mark.parametrize("error", ["too_long", "too_long_older"])
def test_lmstudio_too_long_errors(serve, backend_for, error: str) -> None:
    server = serve(lmstudio_routes(**{"POST /v1/chat/completions": Reply(400, LMSTUDIO[error])}))
    with pytest.raises(PromptTooLongError) as caught:
        collect_text(backend_for(server.url).chat(LM_MODEL, QUESTION, window=1, max_tokens=9))
    assert caught.value.window == 4096


def test_llama_cpp_python_empty_stream_is_diagnosed_as_too_long(serve, backend_for) -> None:
    def chat(body: dict[str, Any]) -> Reply:
        if body.get("stream"):
            return Reply(events=[])  # HTTP 200, no event: the error went to the server's log
        status = LLAMA_CPP_PYTHON["context_length_exceeded_status"]
        return Reply(status, LLAMA_CPP_PYTHON["context_length_exceeded"])

    server = serve(llama_cpp_python_routes(**{"POST /v1/chat/completions": chat}))
    backend = backend_for(server.url)
    with pytest.raises(PromptTooLongError) as caught:
        collect_text(backend.chat(LCP_MODEL, QUESTION, window=2048, max_tokens=64))
    assert caught.value.window == 512
    probe = server.requests_to("/v1/chat/completions")[-1].body
    assert probe["max_tokens"] == 1 and not probe.get("stream")


def test_the_diagnosis_is_sent_again_once_when_its_connection_was_dropped(
    serve, backend_for
) -> None:
    # llama-cpp-python closes the kept-alive connection of the failed stream; the client's pool
    # may send the diagnosis over it and get "Server disconnected without sending a response".
    answers = iter([Reply(drop=True), Reply(400, LLAMA_CPP_PYTHON["context_length_exceeded"])])

    def chat(body: dict[str, Any]) -> Reply:
        return Reply(events=[]) if body.get("stream") else next(answers)

    server = serve(llama_cpp_python_routes(**{"POST /v1/chat/completions": chat}))
    with pytest.raises(PromptTooLongError):
        collect_text(backend_for(server.url).chat(LCP_MODEL, QUESTION, window=1, max_tokens=9))
    assert len(server.requests_to("/v1/chat/completions")) == 3


def test_empty_stream_of_a_prompt_that_fits_is_an_empty_answer(serve, backend_for) -> None:
    def chat(body: dict[str, Any]) -> Reply:
        return Reply(events=[]) if body.get("stream") else Reply(body=LLAMA_CPP_PYTHON["chat_json"])

    server = serve(llama_cpp_python_routes(**{"POST /v1/chat/completions": chat}))
    with pytest.raises(ModelResponseError, match="sent an empty answer"):
        collect_text(backend_for(server.url).chat(LCP_MODEL, QUESTION, window=1, max_tokens=9))


def test_stated_window_in_each_servers_words() -> None:
    assert stated_window(LLAMA_CPP["exceed_context_size"]["error"]) == 8192
    assert stated_window(LLAMA_CPP["exceed_context_size"]) == 8192
    assert stated_window(VLLM["context_length"]["error"]) == 32768
    assert stated_window(LLAMA_CPP_PYTHON["context_length_exceeded"]["error"]) == 512
    assert stated_window(LMSTUDIO["too_long"]["error"]) == 4096
    assert stated_window(LMSTUDIO["too_long_older"]["error"]) == 4096
    assert stated_window("Cannot truncate prompt with n_keep (15028) >= n_ctx (7424)") == 7424
    assert stated_window({"message": "something else"}) is None


# -- other errors --------------------------------------------------------------------------------


def test_unreachable_server(backend_for) -> None:
    backend = backend_for(unused_loopback_url(), name="away")
    assert not backend.is_reachable()
    with pytest.raises(ServerUnreachableError, match=r"server away .* KB_OPENAI_SERVERS"):
        backend.list_models()
    with pytest.raises(ServerUnreachableError):
        collect_text(backend.chat("m", QUESTION, window=1, max_tokens=9))
    assert backend.unreachable_message().startswith("The OpenAI-compatible server away")


def test_reachable_server(serve, backend_for) -> None:
    assert backend_for(serve(vllm_routes()).url).is_reachable()


@pytest.mark.parametrize("status", [401, 403])
def test_refused_key_names_the_variable_holding_it(
    serve, backend_for, isolated_env: None, status: int
) -> None:
    refused = Reply(
        status, {"error": {"message": "Invalid API Key", "type": "authentication_error"}}
    )
    server = serve({"GET /v1/models": refused, "POST /v1/chat/completions": refused})
    with pytest.raises(ModelAuthError, match="KB_OPENAI_SERVERS"):
        backend_for(server.url, api_key="wrong").list_models()
    settings = Settings(openai_base_url=server.url, openai_api_key="wrong")
    from_base_url = OpenAICompatBackend(settings.all_openai_servers[0], settings)
    with pytest.raises(ModelAuthError, match="OPENAI_API_KEY"):
        collect_text(from_base_url.chat("m", QUESTION, window=1, max_tokens=9))
    from_base_url.close()


def test_model_not_found_lists_what_the_server_has(serve, backend_for) -> None:
    server = serve(vllm_routes())
    with pytest.raises(ModelNotFoundError, match=f"has no model llama3 \\(it has {VLLM_MODEL}\\)"):
        collect_text(backend_for(server.url).chat("llama3", QUESTION, window=1, max_tokens=9))


def test_a_url_without_v1_is_pointed_out(serve, backend_for) -> None:
    server = serve(vllm_routes())
    backend = backend_for(server.root)  # no /v1: every API path is a 404
    with pytest.raises(ModelResponseError, match="usually ends in /v1"):
        backend.list_models()
    with pytest.raises(ModelResponseError, match="usually ends in /v1"):
        collect_text(backend.chat(VLLM_MODEL, QUESTION, window=1, max_tokens=9))


def test_timeout_names_its_setting_and_is_not_retried(serve, backend_for) -> None:
    slow = Reply(body=LLAMA_CPP["chat_json"], delay_s=1.5)
    server = serve(llama_cpp_routes(**{"POST /v1/chat/completions": slow}))
    backend = backend_for(server.url, openai_timeout_s=0.3)
    with pytest.raises(ModelTimeoutError, match=r"0\.3 seconds; raise KB_OPENAI_TIMEOUT_S"):
        collect_text(backend.chat(LC_MODEL, QUESTION, window=1, max_tokens=9))
    assert len(server.requests_to("/v1/chat/completions")) == 1


# -- structured output ---------------------------------------------------------------------------


def test_structured_with_json_schema(serve, backend_for) -> None:
    server = serve(llama_cpp_routes())
    reply = backend_for(server.url).structured(LC_MODEL, QUESTION, SCHEMA, window=1, max_tokens=64)
    assert reply == {"answer": "Paris"}
    (sent,) = server.requests_to("/v1/chat/completions")
    assert sent.body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "reply", "schema": SCHEMA, "strict": True},
    }
    assert sent.body.get("stream") in (None, False)
    assert sent.body["max_tokens"] == 64


def test_structured_falls_back_to_json_object_with_schema_and_remembers(serve, backend_for) -> None:
    server = serve(llama_cpp_python_routes())
    backend = backend_for(server.url)
    for _ in range(2):
        reply = backend.structured(LCP_MODEL, QUESTION, SCHEMA, window=1, max_tokens=64)
        assert set(reply) == {"answer"}
    formats = [s.body["response_format"] for s in server.requests_to("/v1/chat/completions")]
    assert [f["type"] for f in formats] == ["json_schema", "json_object", "json_object"]
    assert formats[-1]["schema"] == SCHEMA


def test_structured_reply_that_is_not_json(serve, backend_for) -> None:
    prose = json.loads(json.dumps(LLAMA_CPP["chat_json"]))
    prose["choices"][0]["message"]["content"] = "Paris, I think."
    server = serve(llama_cpp_routes(**{"POST /v1/chat/completions": Reply(body=prose)}))
    with pytest.raises(MalformedReplyError, match="server local"):
        backend_for(server.url).structured(LC_MODEL, QUESTION, SCHEMA, window=1, max_tokens=9)


def test_structured_prompt_too_long_is_not_taken_for_a_rejected_format(serve, backend_for) -> None:
    server = serve(vllm_routes(**{"POST /v1/chat/completions": Reply(400, VLLM["context_length"])}))
    with pytest.raises(PromptTooLongError):
        backend_for(server.url).structured(VLLM_MODEL, QUESTION, SCHEMA, window=1, max_tokens=9)
    assert len(server.requests_to("/v1/chat/completions")) == 1


# -- threads -------------------------------------------------------------------------------------


def test_parallel_chats_over_one_backend(serve, backend_for) -> None:
    server = serve(llama_cpp_python_routes())
    backend = backend_for(server.url)

    def lane(_: int) -> tuple[str, Usage | None]:
        return collect_text(backend.chat(LCP_MODEL, QUESTION, window=2048, max_tokens=16))

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lane, range(12)))
    assert all(text and usage and usage.counted_by == "tokenizer" for text, usage in results)
    # the dialect was probed by whichever lane came first, and then known to all
    assert len(server.requests_to("/props", "GET")) <= 6
