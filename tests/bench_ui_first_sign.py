"""How long from Enter in the chat box to the first sign that an answer is being made (the
"Finding passages and asking the model" status in the new assistant message, not the echoed
question), measured in Debian's chromium against `streamlit run ui/app.py`, the fake Ollama
(with a first-token delay, as a model on CPU has) and a small ingested corpus.

    HF_HUB_OFFLINE=1 python -m tests.bench_ui_first_sign --runs 20 --first-token-delay 1.5

Prints each run's figure and p50/p95/max in milliseconds (goal: p95 < 300 ms). The time is taken
in the page (performance.now() when Enter is pressed, a MutationObserver for the sign), so the
browser's own event delivery counts but Playwright's round trips do not. Not a test: pytest does
not collect it (its name does not start with test_).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from eval.fake_ollama import FakeOllama
from rag.embeddings import Embedder
from rag.settings import load_settings
from tests.test_ui_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    clean_environment,
    free_port,
    wait_until_healthy,
)
from tests.ui_helpers import LIGHTHOUSE_Q, REPO, app_env_values, ingest_corpus, write_corpus

SIGN = "Finding passages and asking the model"
ANSWER_TIMEOUT_MS = 120_000

# Installed before Enter: `window.__kbSign` resolves with the milliseconds from the Enter key
# going down to a chat message beyond the first `before` holding the sign.
WATCH = """([sign, before]) => { window.__kbSign = new Promise(resolve => {
  window.__kbStarted = null;
  const onKey = e => {
    if (e.key === "Enter" && window.__kbStarted === null) window.__kbStarted = performance.now();
  };
  document.addEventListener("keydown", onKey, {capture: true});
  const seen = () => {
    const messages = document.querySelectorAll('[data-testid="stChatMessage"]');
    for (let i = before; i < messages.length; i++) {
      if (messages[i].innerText.includes(sign)) return true;
    }
    return false;
  };
  window.__kbEcho = null;
  const observer = new MutationObserver(() => {
    if (window.__kbStarted !== null && window.__kbEcho === null
        && document.querySelectorAll('[data-testid="stChatMessage"]').length > before) {
      window.__kbEcho = performance.now() - window.__kbStarted;
    }
    if (window.__kbStarted !== null && seen()) {
      observer.disconnect();
      document.removeEventListener("keydown", onKey, {capture: true});
      resolve(performance.now() - window.__kbStarted);
    }
  });
  observer.observe(document.body, {childList: true, subtree: true, characterData: true});
}); }"""


# True once the answer to the question ending in `tag` shows its sources, no Stop button is left
# and the page's script run is over: the app is idle, as when a user asks the next question.
ANSWERED = """(tag) => {
  if (document.querySelector('[data-testid="stStatusWidgetRunningIcon"]')) return false;
  const buttons = [...document.querySelectorAll("button")];
  if (buttons.some(b => b.innerText.includes("Stop"))) return false;
  const messages = [...document.querySelectorAll('[data-testid="stChatMessage"]')];
  const asked = messages.findIndex(m => m.innerText.includes(tag));
  return asked >= 0 && asked + 1 < messages.length
    && messages[asked + 1].innerText.includes("Sources:");
}"""


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


def measure(url: str, runs: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    figures: list[float] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(url)
            box = page.get_by_placeholder("Ask the knowledge base")
            box.wait_for(timeout=ANSWER_TIMEOUT_MS)
            for run in range(runs):
                messages = page.locator('[data-testid="stChatMessage"]')
                before = messages.count()
                tag = f"(run {run + 1})"
                box.fill(f"{LIGHTHOUSE_Q} {tag}")
                page.evaluate(WATCH, [SIGN, before])
                box.press("Enter")
                figures.append(float(page.evaluate("() => window.__kbSign")))
                # The whole answer and the end of its script run, before the next question
                # (the last run's messages stay on the page while a rerun draws, so count none).
                page.wait_for_function(ANSWERED, arg=tag, timeout=ANSWER_TIMEOUT_MS)
                echo = page.evaluate("() => window.__kbEcho")
                print(f"run {run + 1:2d}: {figures[-1]:7.1f} ms (question echoed {echo:.1f} ms)")
        finally:
            browser.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--first-token-delay", type=float, default=1.5, help="seconds")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as folder,
        FakeOllama(first_token_delay_s=args.first_token_delay) as fake,
    ):
        tmp = Path(folder)
        values = app_env_values(tmp, fake.url)
        os.environ.update(values)
        settings = load_settings()
        ingest_corpus(settings, write_corpus(tmp / "docs"), Embedder(settings))
        port = free_port()
        command = [
            sys.executable, "-m", "streamlit", "run", "ui/app.py", "--server.headless", "true",
            "--server.port", str(port), "--server.address", "127.0.0.1",
        ]  # fmt: skip
        with (tmp / "streamlit.log").open("wb") as log:
            server = subprocess.Popen(
                command, cwd=REPO, env={**clean_environment(), **values}, stdout=log, stderr=log
            )
            try:
                url = f"http://127.0.0.1:{port}"
                wait_until_healthy(url, server)
                figures = measure(url, args.runs)
            finally:
                server.terminate()
                server.wait(timeout=20)
    print(
        f"Enter -> first sign of an answer over {len(figures)} runs: "
        f"p50 {statistics.median(figures):.0f} ms, p95 {percentile(figures, 0.95):.0f} ms, "
        f"max {max(figures):.0f} ms (first token delay {args.first_token_delay:g} s)"
    )


if __name__ == "__main__":
    main()
