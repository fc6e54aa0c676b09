"""A `Hangup` closes a model request while the model still reads its prompt (no byte has come
yet), in both adapters: the server sees the connection close at once, long before its first
token would have been sent, and the stream ends with `AnswerStoppedError`."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from eval.fake_ollama import FakeOllama
from rag.errors import AnswerStoppedError
from rag.llm.base import ChatBackend, ChatEvent, collect_text
from rag.llm.hangup import Hangup
from rag.llm.ollama import OllamaBackend
from rag.llm.openai_compat import OpenAICompatBackend
from rag.settings import OpenAIServer, Settings

FIRST_TOKEN_DELAY_S = 20.0  # far longer than the test: no byte comes before the hang-up
PROMPT = [{"role": "user", "content": "When was the lighthouse built?"}]
MODEL = "fake-llama3:8b"
PROMPT_ARRIVAL_S = 10.0  # how long the request may take to reach the server
PROMPTLY_S = 1.0  # from hang_up() to the server seeing the connection close


class SilentServer:
    """A loopback server that reads each request and never answers; `closed_at` holds when
    each client closed its connection (time.monotonic())."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.requests: list[bytes] = []
        self.closed_at: list[float] = []
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}/v1"

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._hold, args=(connection,), daemon=True).start()

    def _hold(self, connection: socket.socket) -> None:
        with connection:
            data = connection.recv(65536)  # the whole (small) request
            self.requests.append(data)
            while connection.recv(65536):  # blocks until the client closes
                pass
            self.closed_at.append(time.monotonic())

    def close(self) -> None:
        self._listener.close()


def chat_in_thread(backend: ChatBackend, hangup: Hangup) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        events: Iterator[ChatEvent] = backend.chat(
            MODEL, PROMPT, window=2048, max_tokens=16, hangup=hangup
        )
        try:
            outcome["text"] = collect_text(events)
        except Exception as err:
            outcome["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def slow_ollama(isolated_env: None) -> Iterator[FakeOllama]:
    with FakeOllama(first_token_delay_s=FIRST_TOKEN_DELAY_S) as fake:
        yield fake


def test_ollama_request_is_closed_before_its_first_token(slow_ollama: FakeOllama) -> None:
    backend = OllamaBackend(Settings(ollama_host=slow_ollama.url))
    hangup = Hangup()
    thread, outcome = chat_in_thread(backend, hangup)
    assert wait_for(lambda: bool(slow_ollama.requests_to("/api/chat")), PROMPT_ARRIVAL_S)
    hung_up = time.monotonic()
    hangup.hang_up()
    assert wait_for(lambda: bool(slow_ollama.gone_at), PROMPTLY_S), "the server saw no close"
    assert slow_ollama.gone_at[0] - hung_up < PROMPTLY_S
    thread.join(PROMPTLY_S)
    assert isinstance(outcome.get("error"), AnswerStoppedError)
    backend.close()


def test_openai_compatible_request_is_closed_before_its_first_byte(isolated_env: None) -> None:
    server = SilentServer()
    settings = Settings(openai_servers=[OpenAIServer(name="local", url=server.url)])
    backend = OpenAICompatBackend(settings.all_openai_servers[0], settings)
    hangup = Hangup()
    thread, outcome = chat_in_thread(backend, hangup)
    assert wait_for(lambda: bool(server.requests), PROMPT_ARRIVAL_S)
    assert b"POST /v1/chat/completions" in server.requests[0]
    hung_up = time.monotonic()
    hangup.hang_up()
    assert wait_for(lambda: bool(server.closed_at), PROMPTLY_S), "the server saw no close"
    assert server.closed_at[0] - hung_up < PROMPTLY_S
    thread.join(PROMPTLY_S)
    assert isinstance(outcome.get("error"), AnswerStoppedError)
    backend.close()
    server.close()


def test_a_request_hung_up_before_it_starts_is_never_sent(slow_ollama: FakeOllama) -> None:
    backend = OllamaBackend(Settings(ollama_host=slow_ollama.url))
    hangup = Hangup()
    hangup.hang_up()
    with pytest.raises(AnswerStoppedError):
        collect_text(backend.chat(MODEL, PROMPT, window=2048, max_tokens=16, hangup=hangup))
    assert slow_ollama.requests_to("/api/chat") == []
    backend.close()


def test_without_a_hangup_the_answer_streams_as_before(isolated_env: None) -> None:
    with FakeOllama() as fake:
        backend = OllamaBackend(Settings(ollama_host=fake.url))
        text, usage = collect_text(
            backend.chat(MODEL, PROMPT, window=2048, max_tokens=16, hangup=Hangup())
        )
        backend.close()
    assert text and usage is not None
    assert fake.clients_gone == 0
