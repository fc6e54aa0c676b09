"""No connection leaves loopback during an ingest and a full question (issue: zero egress).

The ingest and the question run in a fresh interpreter, so nothing a test imported before (or
an environment variable such as HF_HUB_OFFLINE) can hide a library that phones home: the
Hugging Face and transformers offline switches are removed from its environment, and the
egress guard is on from before the first import of the project.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from eval.fake_ollama import FakeOllama

REPO = Path(__file__).resolve().parents[1]

SCRIPT = """
import json, sys
from pathlib import Path
from tests.egress_guard import EgressGuard

guard = EgressGuard()
with guard:
    from ingest.pipeline import ingest
    from rag.service import build_services
    from rag.settings import load_settings

    settings = load_settings()
    report = ingest(settings, [Path(sys.argv[1])])
    with build_services(settings) as services, services.open_chain() as chain:
        listed = [m.id for m in services.models.list_models()]
        result = chain.ask(sys.argv[2])
print(json.dumps({
    "blocked": [str(attempt) for attempt in guard.blocked],
    "servers": services.models.servers,
    "listed": listed,
    "failed": report.failed,
    "chunks": report.chunks_written,
    "answer": result.answer,
    "cited": [c.path for c in result.citations],
}))
"""


def test_ingest_and_question_stay_on_loopback(fake_ollama: FakeOllama, tmp_path: Path) -> None:
    """With a stray `OPENAI_API_KEY` and no `OPENAI_BASE_URL`: the `openai` client would send to
    the public OpenAI API by default; kb builds no client for it at all."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "tides.md").write_text(
        "# Tides\n\nThe spring tide at Lisvik reaches four metres above chart datum.\n"
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("HF_", "TRANSFORMERS_", "KB_", "QDRANT_", "OLLAMA_", "OPENAI_"))
    }
    env |= {
        "OLLAMA_HOST": fake_ollama.url,
        "KB_MODEL": "fake-llama3:8b",
        "KB_QDRANT_PATH": str(tmp_path / "qdrant"),
        "KB_DATA_DIR": str(tmp_path / "data"),
        "KB_CONFIG": str(tmp_path / "none.toml"),
        "PYTHONPATH": str(REPO),
        "OPENAI_API_KEY": "sk-a-stray-key-from-another-project",
    }
    question = "How high does the spring tide at Lisvik reach?"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(docs), question],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-2000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["blocked"] == []
    assert outcome["servers"] == ["ollama"]  # no OpenAI client without an explicit URL
    assert "fake-llama3:8b@ollama" in outcome["listed"]
    assert outcome["failed"] == [] and outcome["chunks"] > 0
    assert "four metres" in outcome["answer"]
    assert outcome["cited"] == ["tides.md"]
    assert fake_ollama.requests_to("/api/chat"), "the question reached the (loopback) model"


def test_the_guarded_interpreter_does_record_an_outside_connection(tmp_path: Path) -> None:
    """The harness above can fail: the same guard in a fresh interpreter catches a connect."""
    script = (
        "import json, socket\n"
        "from tests.egress_guard import EgressGuard\n"
        "guard = EgressGuard()\n"
        "with guard:\n"
        "    try:\n"
        "        socket.create_connection(('203.0.113.1', 80), timeout=0.2)\n"
        "    except OSError:\n"
        "        pass\n"
        "print(json.dumps([str(a) for a in guard.blocked]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    blocked = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(blocked) == 1 and "203.0.113.1" in blocked[0]
