"""The app in a real browser: `streamlit run ui/app.py` against the fake Ollama and a temp store,
driven through Debian's chromium with Playwright. A question typed into the chat streams back
an answer with a [n] citation; a document planting a remote image shows it as text; no request
leaves loopback. A screenshot goes to tests/artifacts/."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from eval.fake_ollama import FakeOllama
from rag.settings import UPSTREAM_NAMES, load_settings
from tests.ui_helpers import (
    CORPUS,
    IMAGE_MD,
    IMAGE_TAG,
    LIGHTHOUSE_A,
    LIGHTHOUSE_Q,
    REPO,
    SIGNALS_Q,
    app_environment,
    ingest_corpus,
    write_corpus,
)
from ui.plain import WORD_JOINER

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = REPO / "tests" / "artifacts"
START_TIMEOUT_S = 90
ANSWER_TIMEOUT_MS = 120_000  # the first question loads the embedder in the app's process
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium: apt-get install -y chromium"
    ),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_healthy(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"streamlit exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    raise AssertionError(f"streamlit did not answer at {url} within {START_TIMEOUT_S} s")


def clean_environment() -> dict[str, str]:
    """This process's environment without any kb setting from the developer's shell."""
    upstream = set(UPSTREAM_NAMES.values())
    return {k: v for k, v in os.environ.items() if not k.startswith("KB_") and k not in upstream}


@pytest.fixture
def app_url(
    fake_ollama: FakeOllama,
    tmp_path: Path,
    ui_embedder: Any,
    isolated_env: None,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[str]:
    values = app_environment(monkeypatch, tmp_path, fake_ollama.url)
    ingest_corpus(load_settings(), write_corpus(tmp_path / "docs"), ui_embedder)
    yield from serve_app(values, tmp_path)


@pytest.fixture
def empty_app_url(
    fake_ollama: FakeOllama, tmp_path: Path, isolated_env: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The app over an empty store."""
    yield from serve_app(app_environment(monkeypatch, tmp_path, fake_ollama.url), tmp_path)


def serve_app(values: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """`streamlit run ui/app.py` with `values` as its environment, until the test is over."""
    port = free_port()
    command = [
        sys.executable, "-m", "streamlit", "run", "ui/app.py",
        "--server.headless", "true", "--server.port", str(port),
        "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
    ]  # fmt: skip
    log = (tmp_path / "streamlit.log").open("wb")
    server = subprocess.Popen(
        command, cwd=REPO, env={**clean_environment(), **values}, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, server)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def ask(page: Any, question: str, expected: str) -> None:
    box = page.get_by_placeholder("Ask the knowledge base")
    box.fill(question)
    box.press("Enter")
    message = page.locator('[data-testid="stChatMessage"]').filter(has_text=expected)
    message.first.wait_for(timeout=ANSWER_TIMEOUT_MS)


def test_chat_in_chromium_streams_a_cited_answer_and_stays_on_loopback(app_url: str) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    requests: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("request", lambda request: requests.append(request.url))
            page.goto(app_url)
            ask(page, LIGHTHOUSE_Q, f"{LIGHTHOUSE_A} from granite quarried on the island. [1]")
            ask(page, SIGNALS_Q, "in red. [1]")  # the whole answer has arrived
            answer = page.locator('[data-testid="stChatMessage"]').last
            answer.get_by_text("Sources:").click()  # open its passages
            planted = answer.get_by_text('beacon on the mast is <img src="')
            planted.nth(1).wait_for()  # in the answer and in the passage
            shown = answer.inner_text().replace(WORD_JOINER, "")
            images = page.locator('img[src*="example.invalid"]').count()
            links = page.locator('a[href*="example.invalid"]').count()
            print(
                [
                    page.locator('a[href*="example.invalid"]')
                    .nth(i)
                    .evaluate("e => e.parentElement.outerHTML")
                    for i in range(links)
                ]
            )
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "ui-chat.png"), full_page=True)
        finally:
            browser.close()
    assert shown.count(IMAGE_MD) == 2 and shown.count(IMAGE_TAG) == 2  # shown as text
    assert images == 0 and links == 0
    assert requests, "the browser recorded no request at all"
    remote = [
        url for url in requests if urlsplit(url).scheme not in ("data", "blob")
        and urlsplit(url).hostname not in LOOPBACK
    ]  # fmt: skip
    assert not remote, remote


def launch(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def last_message(page: Any) -> Any:
    return page.locator('[data-testid="stChatMessage"]').last


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"ui-first-session-{name}.png"), full_page=True)


def test_a_first_session_from_an_empty_store_to_a_cited_answer_a_stop_and_ollama_down(
    empty_app_url: str, fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    """Each step is reachable from what the page shows: the empty store links to the Library,
    the Library uploads, the answer's [1] and its passage open the source, Stop stops, and a
    question after Ollama stopped gets a sentence."""
    sync_api = pytest.importorskip("playwright.sync_api")
    upload = tmp_path / "lighthouse.md"
    upload.write_text(CORPUS["harbour/lighthouse.md"], encoding="utf-8")
    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(empty_app_url)
            # 1. an empty store: the page says how to add documents, and links to the Library
            page.get_by_text("The knowledge base is empty.").wait_for(timeout=ANSWER_TIMEOUT_MS)
            page.get_by_role("link", name="Open the Library").wait_for()
            page.get_by_placeholder("Ask the knowledge base").wait_for()
            shot(page, "1-empty")
            page.get_by_role("link", name="Open the Library").click()
            # 2. upload in the Library: one limit is written, kb's, in the uploader's label
            page.get_by_text("Upload files (up to 25 MB each)").wait_for()
            # Streamlit's own ceiling is hidden by kb's style, which the browser applies a moment
            # after it draws the label: wait for it rather than read it once
            ceiling = page.get_by_test_id("stFileUploaderDropzoneInstructions")
            sync_api.expect(ceiling).to_be_hidden(timeout=5_000)
            page.locator('input[type="file"]').set_input_files(str(upload))
            # the file is sent to the server on its own: submit once its size is shown
            size = f"{upload.stat().st_size:.1f}B"
            page.get_by_text(size).wait_for(timeout=ANSWER_TIMEOUT_MS)
            page.get_by_role("button", name="Ingest uploads").click()
            # the first ingest loads the embedder in the app's process: slow on a busy machine
            page.get_by_text("chunks embedded.").wait_for(timeout=2 * ANSWER_TIMEOUT_MS)
            shot(page, "2-uploaded")
            # 3. ask, follow the [1] and open the passage's source
            page.get_by_role("link", name="Chat").click()
            ask(page, LIGHTHOUSE_Q, f"{LIGHTHOUSE_A} from granite quarried on the island. [1]")
            last_message(page).get_by_role("link", name="[1]").click()
            last_message(page).get_by_role("button", name="Open source").first.click()
            dialog = page.get_by_role("dialog")
            dialog.get_by_text("Tarnwick lighthouse was built in 1871").wait_for()
            source = dialog.inner_text()
            shot(page, "3-source")
            page.keyboard.press("Escape")
            # 4. stop an answer that is still coming
            fake_ollama.token_delay_s = 0.4
            box = page.get_by_placeholder("Ask the knowledge base")
            box.fill("How many keepers lived in the lighthouse?")
            box.press("Enter")
            sign = last_message(page).get_by_text("Finding passages and asking the model")
            sign.wait_for(timeout=ANSWER_TIMEOUT_MS)
            page.get_by_role("button", name="Stop").click()
            stopped = page.get_by_text("Stopped before")
            stopped.wait_for(timeout=ANSWER_TIMEOUT_MS)
            shot(page, "4-stopped")
            deadline = time.monotonic() + 20
            while fake_ollama.clients_gone == 0 and time.monotonic() < deadline:
                time.sleep(0.1)
            # 6. Ollama stops mid-session: the next question gets an answer or a sentence
            fake_ollama.token_delay_s = 0.0
            fake_ollama.stop()
            box.fill(LIGHTHOUSE_Q)
            box.press("Enter")
            reply = page.locator('[data-testid="stChatMessage"]').nth(5)
            # searched (passages), answered, or one sentence naming the server
            reply.get_by_text("Ollama").first.or_(reply.get_by_text("best first").first).or_(
                reply.get_by_text(f"{LIGHTHOUSE_A} from granite quarried on the island. [1]")
            ).first.wait_for(timeout=ANSWER_TIMEOUT_MS)
            shot(page, "6-ollama-down")
            replied = reply.inner_text()
            # the first answer, now an earlier one: its text and a closed switch, and none of
            # the details it showed as the newest answer left behind on the page
            earlier = page.locator('[data-testid="stChatMessage"]').nth(1).inner_text()
        finally:
            browser.close()
    assert "Tarnwick lighthouse" in source and "lighthouse.md" in source
    assert fake_ollama.clients_gone >= 1  # the stop closed the request to the model server
    assert "Ollama" in replied or LIGHTHOUSE_A in replied
    assert "Sources and details" in earlier
    assert "Sources:" not in earlier and "Open source" not in earlier


def test_a_new_question_shows_nothing_of_the_last_reply_while_its_answer_is_coming(
    app_url: str, fake_ollama: FakeOllama
) -> None:
    """The third question takes the place where the second one's answer and sources were
    drawn; none of them may stay there (stale and still clickable) while it waits."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(app_url)
            ask(page, LIGHTHOUSE_Q, f"{LIGHTHOUSE_A} from granite quarried on the island. [1]")
            ask(page, SIGNALS_Q, "in red. [1]")
            last_message(page).get_by_role("button", name="Open source").wait_for()
            page.get_by_test_id("stStatusWidgetRunningIcon").wait_for(state="detached")
            fake_ollama.first_token_delay_s = 4.0
            box = page.get_by_placeholder("Ask the knowledge base")
            box.fill("How many keepers lived in the lighthouse?")
            box.press("Enter")
            last_message(page).get_by_text("Finding passages and asking the model").wait_for()
            waiting = last_message(page).inner_text()
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "ui-chat-waiting.png"), full_page=True)
        finally:
            browser.close()
    assert "Open source" not in waiting and "Sources:" not in waiting, waiting
    assert "in red" not in waiting
