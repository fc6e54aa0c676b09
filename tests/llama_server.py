"""A real llama-cpp-python server (`python -m llama_cpp.server`) for tests, on loopback.

    from tests.llama_server import llama_server_factory  # noqa: F401  (a pytest fixture)

    def test_x(llama_server_factory):
        server = llama_server_factory()           # or llama_server_factory(n_ctx=512)
        server.url                                # http://127.0.0.1:<port>/v1
        server.alias                              # the model's id in /v1/models

The model is the GGUF file named by `KB_TEST_GGUF`, else the SmolLM2-135M-Instruct file that
`python tests/fetch_test_model.py` fetched (it answers in well under a second on a CPU).
Without that file, or without `llama_cpp` and its server extras
(`pip install 'llama-cpp-python[server]'`), a test that asks for a server is skipped with the
reason; under CI (`CI=true`) it fails instead, so a CI run never passes by
skipping. One server is started per `n_ctx` and per test session, and stopped at its end.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.fetch_test_model import model_path

GGUF_VARIABLE = "KB_TEST_GGUF"
SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context")
STARTUP_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.2
LOG_TAIL_CHARS = 2000


@dataclass
class LlamaServer:
    """A running `python -m llama_cpp.server`. `url` is its API base (ending in `/v1`), `root`
    its root (for `/extras/...`), `alias` its one model's id, `n_ctx` its window (None: the
    server's default, 2048)."""

    process: subprocess.Popen[bytes]
    root: str
    alias: str
    n_ctx: int | None
    log_path: Path

    @property
    def url(self) -> str:
        return f"{self.root}/v1"

    def log(self) -> str:
        """What the server wrote so far (stdout and stderr): its errors go only there."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def logged(server: LlamaServer, text: str, within_s: float = 10.0) -> bool:
    """Whether the server's log shows `text` within `within_s` (it writes with a lag)."""
    deadline = time.monotonic() + within_s
    while text not in server.log():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def require_llama_server() -> Path:
    """The GGUF file to serve; skips the test (fails it under CI) when the file or the
    server's packages are missing."""
    missing = [name for name in SERVER_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        _unavailable(
            f"llama-cpp-python's server is not installed (missing {', '.join(missing)}); "
            "pip install 'llama-cpp-python[server]'"
        )
    value = os.environ.get(GGUF_VARIABLE, "")
    gguf = Path(value) if value else model_path()
    if not value and not gguf.is_file():
        _unavailable(
            f"no test model: run `python tests/fetch_test_model.py` (it fetches SmolLM2 into "
            f"{gguf.parent}), or set {GGUF_VARIABLE} to a small GGUF chat model"
        )
    if not gguf.is_file():
        _unavailable(f"{GGUF_VARIABLE} names {gguf}, which is not a file")
    return gguf


def start_llama_server(
    gguf: Path,
    log_dir: Path,
    *,
    n_ctx: int | None = None,
    alias: str | None = None,
    startup_timeout_s: float = STARTUP_TIMEOUT_S,
) -> LlamaServer:
    """Start a server for `gguf` on a free loopback port and wait until `/v1/models` answers.
    `alias` defaults to the file's name without `.gguf`. Raises RuntimeError (with the end of
    the server's log) when it exits or does not answer within `startup_timeout_s`."""
    alias = alias or gguf.name.removesuffix(".gguf")
    port = _free_port()
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(gguf),
        "--model_alias", alias,
        "--host", "127.0.0.1",
        "--port", str(port),
        # The default (True) breaks off a stream as soon as another request waits: Compare's
        # parallel lanes would get half answers.
        "--interrupt_requests", "False",
    ]  # fmt: skip
    if n_ctx is not None:
        command += ["--n_ctx", str(n_ctx)]
    log_path = log_dir / f"llama-server-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    server = LlamaServer(process, f"http://127.0.0.1:{port}", alias, n_ctx, log_path)
    try:
        _wait_until_ready(server, startup_timeout_s)
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="session")
def llama_server_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., LlamaServer]]:
    """`llama_server_factory(n_ctx=None)`: the session's server with that window, started on
    first use (skipped, or failed under CI, when it cannot be)."""
    servers: dict[int | None, LlamaServer] = {}
    log_dir = tmp_path_factory.mktemp("llama-server")

    def get(n_ctx: int | None = None) -> LlamaServer:
        if n_ctx not in servers:
            gguf = require_llama_server()
            servers[n_ctx] = start_llama_server(gguf, log_dir, n_ctx=n_ctx)
        server = servers[n_ctx]
        if server.process.poll() is not None:
            pytest.fail(f"the llama-cpp-python server exited:\n{server.log()[-LOG_TAIL_CHARS:]}")
        return server

    yield get
    for server in servers.values():
        server.stop()


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: tests of the real server must run, not skip)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_ready(server: LlamaServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"llama-cpp-python's server exited with {server.process.returncode}:\n"
                f"{server.log()[-LOG_TAIL_CHARS:]}"
            )
        try:
            if httpx.get(f"{server.url}/models", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(POLL_INTERVAL_S)
    raise RuntimeError(
        f"llama-cpp-python's server did not answer within {timeout_s:g} s:\n"
        f"{server.log()[-LOG_TAIL_CHARS:]}"
    )
