"""`eval.generate`: a model writes an eval set from the ingested sample documents (the fake
Ollama over HTTP for its wire requests; the in-process fake server beside it)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from eval.dataset import load_eval_set
from eval.fake_ollama import FakeOllama
from eval.generate import QA_SCHEMA, generate_eval_set, pair_from, parse_pair
from eval.metrics import contains_reference
from rag.errors import KBError
from rag.service import Services
from rag.settings import Settings

DOCS = Path(__file__).resolve().parents[1] / "eval" / "sample" / "docs"


@pytest.fixture
def services(
    fake_ollama: FakeOllama,
    eval_settings: Callable[..., Settings],
    eval_sample_store: Path,
    services_factory: Callable[[Settings], Services],
    tmp_path: Path,
) -> Services:
    """The fake Ollama and the in-process fake server `fake`, with the session's embedder."""
    return services_factory(eval_settings(fake_ollama.url, tmp_path / "data"))


def test_the_written_set_loads_and_every_answer_is_in_its_evidence(
    services: Services, fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    fake_ollama.clear_log()
    outcome = generate_eval_set(services, DOCS, "fake-llama3:8b", 8, tmp_path / "set")
    loaded = load_eval_set(tmp_path / "set")
    assert len(loaded.items) == len(outcome.items) == 8
    assert (tmp_path / "set" / "docs").resolve() == DOCS.resolve()
    for item in loaded.items:
        assert item.evidence is not None and contains_reference(item.evidence, item.answers)
    # six documents taken in turns: eight questions cover all six
    assert {item.doc for item in loaded.items} == {p.name for p in DOCS.iterdir()}
    lines = (tmp_path / "set" / "qa.jsonl").read_text(encoding="utf-8").splitlines()
    assert {json.loads(line)["generated_by"] for line in lines} == {"fake-llama3:8b@ollama"}
    info = json.loads((tmp_path / "set" / "generated.json").read_text(encoding="utf-8"))
    assert (info["model"], info["written"], info["docs"]) == ("fake-llama3:8b@ollama", 8, str(DOCS))
    # structured output on the wire: a schema, not streamed, temperature 0, the seed, and the
    # model's trained window (131072) capped by KB_CONTEXT_CAP
    asked = fake_ollama.requests_to("/api/chat")
    assert len(asked) == outcome.tried
    for request in asked:
        assert request.body["stream"] is False and request.body["format"] == QA_SCHEMA
        assert request.options["num_ctx"] == 8192 and request.options["temperature"] == 0
        assert request.options["seed"] == 0


def test_a_model_of_another_server_writes_the_set_under_its_id(
    services: Services, fake_model: Any, tmp_path: Path
) -> None:
    outcome = generate_eval_set(services, DOCS, "fake-small", 4, tmp_path / "set", seed=3)
    assert len(load_eval_set(tmp_path / "set").items) == len(outcome.items) == 4
    info = json.loads((tmp_path / "set" / "generated.json").read_text(encoding="utf-8"))
    assert info["model"] == "fake-small@fake"
    assert [(c.model, c.window, c.schema) for c in fake_model.calls] == [
        ("fake-small", 1024, QA_SCHEMA)
    ] * outcome.tried


def test_the_same_seed_gives_the_same_set_and_another_seed_another(
    services: Services, tmp_path: Path
) -> None:
    def questions(seed: int, folder: str) -> list[tuple[str, str]]:
        generate_eval_set(services, DOCS, "fake-mistral:7b", 5, tmp_path / folder, seed=seed)
        return [(i.question, i.doc or "") for i in load_eval_set(tmp_path / folder).items]

    first = questions(1, "a")
    assert questions(1, "b") == first
    assert questions(2, "c") != first


def test_a_model_that_writes_malformed_json_gives_one_sentence_and_no_set(
    services: Services, fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    fake_ollama.clear_log()
    with pytest.raises(KBError) as raised:
        generate_eval_set(services, DOCS, "fake-broken:1b", 3, tmp_path / "set")
    message = str(raised.value)
    assert message.startswith("The model fake-broken:1b@ollama wrote no usable question for ")
    assert message.endswith(" chunks; try a larger model.") and "\n" not in message
    tried = int(message.split(" for ")[1].split()[0])
    assert tried > 0
    assert len(fake_ollama.requests_to("/api/chat")) == 2 * tried  # asked twice per chunk
    assert not (tmp_path / "set").exists()


def test_a_missing_model_or_a_used_folder_is_refused(
    services: Services, fake_ollama: FakeOllama, fake_model: Any, tmp_path: Path
) -> None:
    with pytest.raises(KBError) as raised:
        generate_eval_set(services, DOCS, "fake-phi3:3.8b", 3, tmp_path / "a")
    assert str(raised.value) == (
        "Model fake-phi3:3.8b is on none of the model servers "
        f"(Ollama at {fake_ollama.url}, {fake_model.describe()}); pull it or start the server "
        "that has it."
    )
    assert not (tmp_path / "a").exists()
    used = tmp_path / "used"
    used.mkdir()
    (used / "qa.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(KBError, match="not empty"):
        generate_eval_set(services, DOCS, "fake-llama3:8b", 3, used)


def test_parse_pair_needs_both_strings() -> None:
    assert parse_pair('{"question": " Who?\\n", "answer": "Ana  Lee"}') == ("Who?", "Ana Lee")
    for reply in ('{"question": "Who?"}', '{"question": "", "answer": "x"}', "[1]", "Sure! {"):
        assert parse_pair(reply) is None
    assert pair_from({"question": "Who?", "answer": " Ana "}) == ("Who?", "Ana")
    for data in ({"question": "Who?", "answer": 3}, ["Who?", "Ana"], None):
        assert pair_from(data) is None
