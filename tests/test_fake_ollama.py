"""The fake Ollama behaves like Ollama where our code relies on it, seen through the client."""

from __future__ import annotations

import json
import time
from typing import Any

import ollama
import pytest

from eval.fake_ollama import DEFAULT_STREAM_ERROR, NO_ANSWER, FakeOllama

EIFFEL = "The Eiffel Tower was finished in 1889."
BANANA = "Bananas are rich in potassium."


def passages_prompt(question: str, filler_words: int = 0) -> str:
    filler = " ".join(["filler"] * filler_words) or "Nothing here."
    return (
        "<passages>\n"
        f"[1] history.md, p. 3, Paris > Monuments\n{EIFFEL} It drew crowds.\n\n"
        f"[2] filler.md\n{filler}\n\n"
        f"[3] fruit.md\nSome fruit is sweet. {BANANA}\n"
        "</passages>\n\n"
        f"Question: {question}"
    )


def ask(
    server: FakeOllama, content: str, model: str = "fake-llama3:8b", **kwargs: Any
) -> ollama.ChatResponse:
    client = ollama.Client(host=server.url)
    messages = [{"role": "system", "content": "Answer from the passages."}]
    return client.chat(
        model=model, messages=[*messages, {"role": "user", "content": content}], **kwargs
    )


def test_prompt_eval_count_is_the_fakes_true_token_count(fake_ollama: FakeOllama) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},  # Be, brief, . = 3 tokens
        {"role": "user", "content": "Hello world!"},  # Hello, world, ! = 3 tokens
    ]
    reply = ollama.Client(host=fake_ollama.url).chat(model="fake-llama3:8b", messages=messages)
    # 3 + 3 content tokens, 4 template tokens per message, 3 for the prompt
    assert reply.prompt_eval_count == 17
    assert reply.done_reason == "stop"
    assert reply.eval_count == 9  # "The provided passages do not contain the answer."
    assert reply.message.content == NO_ANSWER
    for stat in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        assert getattr(reply, stat) > 0


def test_num_ctx_defaults_to_4096_when_not_sent(fake_ollama: FakeOllama) -> None:
    reply = ask(fake_ollama, " ".join(["word"] * 5000))
    assert reply.prompt_eval_count == 4096
    sent = fake_ollama.requests_to("/api/chat")[-1]
    assert "num_ctx" not in sent.options
    assert sent.outcome["num_ctx"] == 4096
    assert sent.outcome["total_tokens"] == 5000 + 5 + 2 * 4 + 3


def test_num_ctx_above_the_trained_context_is_lowered_to_it(fake_ollama: FakeOllama) -> None:
    reply = ask(fake_ollama, " ".join(["word"] * 3000), "fake-tiny:1b", options={"num_ctx": 8192})
    assert reply.prompt_eval_count == 2048
    assert fake_ollama.requests_to("/api/chat")[-1].options["num_ctx"] == 8192


def test_answers_quote_the_best_matching_passage_sentence(fake_ollama: FakeOllama) -> None:
    assert ask(
        fake_ollama, passages_prompt("When was the Eiffel Tower finished?")
    ).message.content == (f"{EIFFEL} [1]")
    assert ask(
        fake_ollama, passages_prompt("Which fruit is rich in potassium?")
    ).message.content == (f"{BANANA} [3]")
    assert (
        ask(fake_ollama, passages_prompt("Who painted the Mona Lisa?")).message.content == NO_ANSWER
    )


def test_too_long_prompt_loses_its_middle_silently(fake_ollama: FakeOllama) -> None:
    long_prompt = passages_prompt("When was the Eiffel Tower finished?", filler_words=600)
    whole = ask(fake_ollama, long_prompt, options={"num_ctx": 8192})
    assert whole.message.content == f"{EIFFEL} [1]"

    cut = ask(fake_ollama, long_prompt, options={"num_ctx": 200})
    assert cut.prompt_eval_count == 200
    assert cut.message.content == NO_ANSWER  # passage [1] sat in the dropped middle

    tail = ask(
        fake_ollama,
        passages_prompt("Which fruit is rich in potassium?", filler_words=600),
        options={"num_ctx": 200},
    )
    assert tail.prompt_eval_count == 200
    assert tail.message.content == f"{BANANA} [3]"  # the tail survives


def test_oldest_messages_are_dropped_before_any_middle_cut(fake_ollama: FakeOllama) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},  # 3 + 4
        {"role": "user", "content": " ".join(["old"] * 300)},  # 300 + 4
        {"role": "assistant", "content": " ".join(["reply"] * 300)},  # 300 + 4
        {"role": "user", "content": "Hello world!"},  # 3 + 4
    ]
    client = ollama.Client(host=fake_ollama.url)
    reply = client.chat(model="fake-llama3:8b", messages=messages, options={"num_ctx": 400})
    # the whole conversation (625) does not fit; system + assistant + last user (321) does
    assert reply.prompt_eval_count == 3 + 7 + 304 + 7
    assert fake_ollama.requests_to("/api/chat")[-1].outcome["kept_messages"] == [0, 2, 3]


def test_unknown_model_is_a_404_like_ollamas(fake_ollama: FakeOllama) -> None:
    client = ollama.Client(host=fake_ollama.url)
    with pytest.raises(ollama.ResponseError) as chat_error:
        client.chat(model="nope:1b", messages=[{"role": "user", "content": "hi"}])
    assert chat_error.value.status_code == 404
    assert chat_error.value.error == 'model "nope:1b" not found, try pulling it first'
    with pytest.raises(ollama.ResponseError) as show_error:
        client.show("nope:1b")
    assert show_error.value.status_code == 404


def test_show_and_tags_carry_the_gguf_facts(fake_ollama: FakeOllama) -> None:
    client = ollama.Client(host=fake_ollama.url)
    shown = client.show("fake-qwen2:7b")
    assert shown.modelinfo is not None and shown.details is not None
    assert shown.modelinfo["general.architecture"] == "qwen2"
    assert shown.modelinfo["qwen2.context_length"] == 32768
    assert shown.modelinfo["qwen2.attention.head_count_kv"] == 4
    assert shown.details.quantization_level == "Q4_0"
    names = [m.model for m in client.list().models]
    assert "fake-llama3:8b" in names and "fake-phi3:3.8b" not in names  # phi3 is not pulled


def test_stream_arrives_chunk_by_chunk(fake_ollama: FakeOllama) -> None:
    fake_ollama.token_delay_s = 0.05
    arrivals: list[float] = []
    pieces: list[str] = []
    final = None
    for chunk in ask(
        fake_ollama, passages_prompt("Which fruit is rich in potassium?"), stream=True
    ):
        if chunk.done:
            final = chunk
            break
        arrivals.append(time.monotonic())
        pieces.append(chunk.message.content or "")
    assert "".join(pieces) == f"{BANANA} [3]"
    assert len(pieces) == 9  # Bananas are rich in potassium . [ 3 ]
    assert final is not None and final.eval_count == 9 and final.done_reason == "stop"
    # had the chunks been buffered, they would all have arrived at once
    assert arrivals[-1] - arrivals[0] >= 0.8 * 8 * 0.05


def test_error_object_arrives_after_the_first_chunks(fake_ollama: FakeOllama) -> None:
    fake_ollama.fail_after_tokens = 3
    received: list[str] = []
    with pytest.raises(ollama.ResponseError) as error:
        for chunk in ask(
            fake_ollama, passages_prompt("Which fruit is rich in potassium?"), stream=True
        ):
            received.append(chunk.message.content or "")
    assert received == ["Bananas", " are", " rich"]
    assert error.value.error == DEFAULT_STREAM_ERROR


def test_num_predict_caps_the_answer(fake_ollama: FakeOllama) -> None:
    reply = ask(
        fake_ollama,
        passages_prompt("Which fruit is rich in potassium?"),
        options={"num_predict": 4},
    )
    assert reply.message.content == "Bananas are rich in"
    assert reply.eval_count == 4
    assert reply.done_reason == "length"


def test_structured_output_follows_the_schema(fake_ollama: FakeOllama) -> None:
    schema = {
        "type": "object",
        "properties": {
            "score": {"type": "integer", "minimum": 4, "maximum": 5},
            "reason": {"type": "string"},
            "optional": {"type": "string"},
        },
        "required": ["score", "reason"],
    }
    question = passages_prompt("Which fruit is rich in potassium?")
    assert json.loads(ask(fake_ollama, question, format=schema).message.content or "") == {
        "score": 4,
        "reason": BANANA,
    }
    assert json.loads(ask(fake_ollama, question, format="json").message.content or "") == {
        "answer": BANANA
    }


def test_broken_model_returns_malformed_json(fake_ollama: FakeOllama) -> None:
    reply = ask(fake_ollama, passages_prompt("Which fruit?"), "fake-broken:1b", format="json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(reply.message.content or "")


def test_rewrite_adds_the_previous_questions_content_words(fake_ollama: FakeOllama) -> None:
    client = ollama.Client(host=fake_ollama.url)
    history = [
        {"role": "user", "content": "When was the Eiffel Tower built?"},
        {"role": "assistant", "content": "In 1889 [1]."},
        {"role": "user", "content": "Rewrite as a standalone question: How tall is it?"},
    ]
    reply = client.chat(model="fake-llama3:8b", messages=history)
    assert reply.message.content == "How tall is it (Eiffel Tower built)?"
    inline = (
        "Rewrite as a standalone question:\n"
        "User: Who designed the Eiffel Tower?\nAssistant: Gustave Eiffel's company.\n"
        "Follow-up: When was the tower finished?"
    )
    reply = client.chat(model="fake-llama3:8b", messages=[{"role": "user", "content": inline}])
    assert reply.message.content == "When was the tower finished (designed Eiffel)?"


def test_pull_streams_status_and_installs_the_model(fake_ollama: FakeOllama) -> None:
    client = ollama.Client(host=fake_ollama.url)
    with pytest.raises(ollama.ResponseError):
        client.show("fake-phi3:3.8b")
    statuses = [p.status for p in client.pull("fake-phi3:3.8b", stream=True)]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert client.show("fake-phi3:3.8b").modelinfo["phi3.context_length"] == 131072
    with pytest.raises(ollama.ResponseError, match="file does not exist"):
        list(client.pull("nope:1b", stream=True))


def test_ps_reports_the_context_length_last_used(fake_ollama: FakeOllama) -> None:
    ask(fake_ollama, "Hello", options={"num_ctx": 1024})
    loaded = ollama.Client(host=fake_ollama.url).ps().models
    assert [(m.model, m.context_length) for m in loaded] == [("fake-llama3:8b", 1024)]


def test_a_stopped_server_refuses_connections(fake_ollama: FakeOllama) -> None:
    fake_ollama.stop()
    with pytest.raises(ConnectionError):
        ollama.Client(host=fake_ollama.url).list()
    fake_ollama.start()  # same port again
    assert ollama.Client(host=fake_ollama.url).list().models
