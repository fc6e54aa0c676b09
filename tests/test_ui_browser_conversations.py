"""Conversations, the password and charts in a real browser (`streamlit run`, Debian's chromium,
Playwright): a conversation reopens after a reload and exports as Markdown; a deep link behind
the password lands on its page once unlocked, and the page says why a reload asks again; the
Evaluation page draws its charts without any `/media/` address; OIDC sign-in through
Streamlit's `st.login` against a small provider on loopback survives a reload. Screenshots go
to tests/artifacts/."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from eval.fake_ollama import FakeOllama
from rag.settings import load_settings
from tests.oidc_provider import CLIENT_ID, CLIENT_SECRET, OIDCProvider
from tests.test_ui_browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    ask,
    clean_environment,
    free_port,
    wait_until_healthy,
)
from tests.ui_helpers import (
    LIGHTHOUSE_A,
    LIGHTHOUSE_Q,
    REPO,
    app_environment,
    ingest_corpus,
    write_corpus,
)
from ui.conversations import owner_key

PASSWORD = "correct horse"
TIMEOUT_MS = 60_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium: apt-get install -y chromium"
    ),
]


@contextmanager
def served(
    values: dict[str, str], log_path: Path, port: int | None = None, site: Path = REPO
) -> Iterator[str]:
    """`streamlit run ui/app.py` with these settings, on a loopback port (a free one unless
    given), started in `site` (whose `.streamlit/` Streamlit reads); its URL."""
    port = port or free_port()
    command = [
        sys.executable, "-m", "streamlit", "run", str(REPO / "ui" / "app.py"),
        "--server.headless", "true", "--server.port", str(port),
        "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
    ]  # fmt: skip
    environment = {**clean_environment(), **values, "PYTHONPATH": str(REPO)}
    with log_path.open("wb") as log:
        server = subprocess.Popen(command, cwd=site, env=environment, stdout=log, stderr=log)
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


@pytest.fixture
def app_values(
    fake_ollama: FakeOllama,
    tmp_path: Path,
    ui_embedder: Any,
    isolated_env: None,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, str]:
    values = app_environment(monkeypatch, tmp_path, fake_ollama.url)
    ingest_corpus(load_settings(), write_corpus(tmp_path / "docs"), ui_embedder)
    return values


@contextmanager
def chromium_page() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                viewport={"width": 1280, "height": 1000}, accept_downloads=True
            )
            yield context.new_page()
        finally:
            browser.close()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_a_conversation_reopens_after_a_reload_and_exports_as_markdown(
    app_values: dict[str, str], tmp_path: Path
) -> None:
    with served(app_values, tmp_path / "streamlit.log") as url, chromium_page() as page:
        page.goto(url)
        ask(page, LIGHTHOUSE_Q, LIGHTHOUSE_A)
        sidebar = page.get_by_test_id("stSidebar")
        sidebar.get_by_role("button", name=LIGHTHOUSE_Q).wait_for(timeout=TIMEOUT_MS)
        page.wait_for_url("**/?c=*", timeout=TIMEOUT_MS)
        address = page.url
        page.reload()
        messages = page.get_by_test_id("stChatMessage")
        messages.filter(has_text=LIGHTHOUSE_A).first.wait_for(timeout=TIMEOUT_MS)
        assert messages.first.inner_text().strip().endswith(LIGHTHOUSE_Q)
        messages.nth(1).get_by_text("Sources:").wait_for(timeout=TIMEOUT_MS)  # details too
        assert page.url == address
        shot(page, "conversation-reopened.png")

        # a fresh tab without the address: the conversation is listed and opens on a click
        page.goto(url)
        page.get_by_test_id("stSidebar").get_by_role("button", name=LIGHTHOUSE_Q).click()
        messages.filter(has_text=LIGHTHOUSE_A).first.wait_for(timeout=TIMEOUT_MS)

        sidebar.get_by_text("This conversation: rename, export, delete").click()
        export = sidebar.get_by_role("button", name="Export as Markdown")
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        with page.expect_download(timeout=TIMEOUT_MS) as download:
            export.click()
        text = Path(download.value.path()).read_text(encoding="utf-8")
        assert text.startswith(f"# {LIGHTHOUSE_Q}\n") and LIGHTHOUSE_A in text
        assert download.value.suggested_filename == "When-was-the-Tarnwick-lighthouse-built.md"
        # the export came over the session's connection: no address anyone else could fetch
        assert download.value.url.startswith("blob:")
        assert not [r for r in requests if urlsplit(r).path.startswith("/media/")]
        shot(page, "conversation-export.png")


def test_a_locked_deep_link_lands_on_its_page_and_says_why_a_reload_asks_again(
    app_values: dict[str, str], tmp_path: Path
) -> None:
    values = {**app_values, "KB_APP_PASSWORD": PASSWORD}
    with served(values, tmp_path / "streamlit.log") as url, chromium_page() as page:
        page.goto(f"{url}/library")
        field = page.get_by_label("Password", exact=True)
        field.wait_for(timeout=TIMEOUT_MS)
        page.get_by_text("asked again after every reload").wait_for()
        shot(page, "password-deep-link.png")
        field.fill(PASSWORD)
        page.get_by_role("button", name="Unlock").click()
        page.get_by_role("heading", name="Library").first.wait_for(timeout=TIMEOUT_MS)
        assert page.url.rstrip("/").endswith("/library")
        shot(page, "password-unlocked-library.png")
        page.reload()
        page.get_by_label("Password", exact=True).wait_for(
            timeout=TIMEOUT_MS
        )  # asked again, as it said


def test_evaluation_charts_are_drawn_without_a_media_address(
    app_values: dict[str, str], tmp_path: Path
) -> None:
    run = Path(app_values["KB_DATA_DIR"]) / "eval-runs" / "20250102-090000"
    run.mkdir(parents=True)
    (run / "summary.csv").write_text(
        "model,exact_match,f1,latency_p50_s\nfake-llama3:8b,0.5,0.62,1.5\n"
        "fake-mistral:7b,0.25,0.41,0.9\n",
        encoding="utf-8",
    )
    (run / "results.jsonl").write_text(json.dumps({"model": "fake-llama3:8b"}) + "\n")
    (run / "metrics.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # a run's chart file, not shown
    requests: list[str] = []
    with served(app_values, tmp_path / "streamlit.log") as url, chromium_page() as page:
        page.on("request", lambda request: requests.append(request.url))
        page.goto(f"{url}/evaluation")
        charts = page.get_by_test_id("stVegaLiteChart")
        charts.nth(1).wait_for(timeout=TIMEOUT_MS)
        charts.nth(1).locator("canvas, svg").first.wait_for(timeout=TIMEOUT_MS)
        page.get_by_text("your knowledge base is not changed").wait_for()
        charts.nth(1).scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "evaluation-charts.png"))
    # Streamlit's own fonts are under /static/media/; a run's content would be under /media/
    assert not [r for r in requests if urlsplit(r).path.startswith("/media/")]


def test_oidc_sign_in_against_a_loopback_provider_survives_a_reload(
    app_values: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    site = tmp_path / "site"
    (site / ".streamlit").mkdir(parents=True)
    shutil.copy(REPO / ".streamlit" / "config.toml", site / ".streamlit" / "config.toml")
    with OIDCProvider("alice", "Alice Example") as provider:
        (site / ".streamlit" / "secrets.toml").write_text(
            "[auth]\n"
            f'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
            'cookie_secret = "a-cookie-secret-for-the-sign-in-test-only"\n'
            f'client_id = "{CLIENT_ID}"\nclient_secret = "{CLIENT_SECRET}"\n'
            f'server_metadata_url = "{provider.metadata_url}"\n',
            encoding="utf-8",
        )
        log = tmp_path / "streamlit.log"
        with served(app_values, log, port, site) as url, chromium_page() as page:
            page.goto(url)
            page.get_by_role("button", name="Sign in").click()
            signed_in = page.get_by_text("Signed in as Alice Example")
            signed_in.wait_for(timeout=TIMEOUT_MS)
            assert provider.tokens_issued == 1
            ask(page, LIGHTHOUSE_Q, LIGHTHOUSE_A)
            page.wait_for_url("**/?c=*", timeout=TIMEOUT_MS)
            page.reload()  # Streamlit's HttpOnly identity cookie keeps the user signed in
            signed_in.wait_for(timeout=TIMEOUT_MS)
            messages = page.get_by_test_id("stChatMessage")
            messages.filter(has_text=LIGHTHOUSE_A).first.wait_for(timeout=TIMEOUT_MS)
            assert provider.tokens_issued == 1  # not signed in again
            cookies = page.context.cookies()
            assert all(c["httpOnly"] for c in cookies if c["name"].startswith("_streamlit_user"))
            shot(page, "oidc-signed-in.png")
    owner = owner_key(provider.issuer, "alice")
    folder = Path(app_values["KB_DATA_DIR"]) / "conversations"
    assert [p.name for p in folder.iterdir()] == [owner]
    assert len(list((folder / owner).glob("*.json"))) == 1
