"""`eval.generate`: a model writes an eval set from the ingested sample documents (fake Ollama)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from eval.dataset import load_eval_set
from eval.generate import generate_eval_set, parse_pair
from eval.metrics import contains_reference
from rag.errors import KBError
from rag.settings import Settings
from tests.fake_ollama import FakeOllama

DOCS = Path(__file__).resolve().parents[1] / "eval" / "sample" / "docs"


@pytest.fixture
def settings(
    fake_ollama: FakeOllama,
    eval_settings: Callable[..., Settings],
    eval_sample_store: Path,
    tmp_path: Path,
) -> Settings:
    return eval_settings(fake_ollama.url, tmp_path / "data")


def test_the_written_set_loads_and_every_answer_is_in_its_evidence(
    settings: Settings, embedder: Any, tmp_path: Path
) -> None:
    outcome = generate_eval_set(
        settings, DOCS, "fake-llama3:8b", 8, tmp_path / "set", embedder=embedder
    )
    loaded = load_eval_set(tmp_path / "set")
    assert len(loaded.items) == len(outcome.items) == 8
    assert (tmp_path / "set" / "docs").resolve() == DOCS.resolve()
    for item in loaded.items:
        assert item.evidence is not None and contains_reference(item.evidence, item.answers)
    # six documents taken in turns: eight questions cover all six
    assert {item.doc for item in loaded.items} == {p.name for p in DOCS.iterdir()}
    info = json.loads((tmp_path / "set" / "generated.json").read_text(encoding="utf-8"))
    assert (info["model"], info["written"], info["docs"]) == ("fake-llama3:8b", 8, str(DOCS))


def test_the_same_seed_gives_the_same_set_and_another_seed_another(
    settings: Settings, embedder: Any, tmp_path: Path
) -> None:
    def questions(seed: int, folder: str) -> list[tuple[str, str]]:
        generate_eval_set(
            settings, DOCS, "fake-mistral:7b", 5, tmp_path / folder, seed=seed, embedder=embedder
        )
        return [(i.question, i.doc or "") for i in load_eval_set(tmp_path / folder).items]

    first = questions(1, "a")
    assert questions(1, "b") == first
    assert questions(2, "c") != first


def test_a_model_that_writes_malformed_json_gives_one_sentence_and_no_set(
    settings: Settings, embedder: Any, tmp_path: Path
) -> None:
    with pytest.raises(KBError, match="wrote no usable question"):
        generate_eval_set(settings, DOCS, "fake-broken:1b", 3, tmp_path / "set", embedder=embedder)
    assert not (tmp_path / "set").exists()


def test_a_missing_model_or_a_used_folder_is_refused(
    settings: Settings, embedder: Any, tmp_path: Path
) -> None:
    with pytest.raises(KBError, match="not pulled"):
        generate_eval_set(settings, DOCS, "fake-phi3:3.8b", 3, tmp_path / "a", embedder=embedder)
    used = tmp_path / "used"
    used.mkdir()
    (used / "qa.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(KBError, match="not empty"):
        generate_eval_set(settings, DOCS, "fake-llama3:8b", 3, used, embedder=embedder)


def test_parse_pair_needs_both_strings() -> None:
    assert parse_pair('{"question": " Who?\\n", "answer": "Ana  Lee"}') == ("Who?", "Ana Lee")
    for reply in ('{"question": "Who?"}', '{"question": "", "answer": "x"}', "[1]", "Sure! {"):
        assert parse_pair(reply) is None
