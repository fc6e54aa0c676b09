"""The hub over several model servers: ids carry their server, bare names resolve, and every
failure stays one sentence that names the right cause."""

from __future__ import annotations

from typing import Any

import pytest

from rag.errors import KBError, ModelAuthError, ModelNotFoundError, ServerUnreachableError
from rag.llm import open_models
from rag.llm.base import ChatBackend, ModelRef, collect_text
from rag.llm.hub import ModelHub
from rag.settings import Settings, load_settings
from tests.fake_model import FakeBackend


class RefusingBackend(FakeBackend):
    """A server that answers, but refuses the API key."""

    def list_models(self) -> list[Any]:
        raise ModelAuthError(f"{self.describe()} refused the API key; set it in OPENAI_API_KEY.")


def test_ids_carry_their_server_and_bare_names_go_to_the_first_server_listing_them() -> None:
    first = FakeBackend(name="alpha", models={"shared": 4096, "only-a": 2048})
    second = FakeBackend(name="beta", models={"shared": 8192, "only-b": 1024})
    hub = ModelHub([first, second])

    assert isinstance(first, ChatBackend)
    assert [m.id for m in hub.list_models()] == [
        "shared@alpha", "only-a@alpha", "shared@beta", "only-b@beta",
    ]  # fmt: skip
    assert hub.resolve("shared") == ModelRef("alpha", "shared")
    assert hub.resolve("shared@beta") == ModelRef("beta", "shared")
    assert hub.resolve("only-b") == ModelRef("beta", "only-b")
    assert hub.facts("shared@beta").window == 8192
    _, usage = collect_text(
        hub.chat("only-b", [{"role": "user", "content": "hi"}], window=1024, max_tokens=8)
    )
    assert usage is not None and second.calls and not first.calls
    with pytest.raises(ModelNotFoundError, match=r"none of the model servers.*shared@alpha"):
        hub.resolve("missing")


def test_a_server_that_is_down_is_left_out_until_none_answers() -> None:
    up = FakeBackend(name="up")
    down = FakeBackend(name="down", reachable=False)
    hub = ModelHub([down, up])
    assert hub.reachability() == {"down": False, "up": True}
    assert {m.ref.server for m in hub.list_models()} == {"up"}
    up.reachable = False
    hub = ModelHub([down, up])
    with pytest.raises(ServerUnreachableError, match="No model server is reachable"):
        hub.list_models()


def test_a_refused_key_is_reported_as_such_not_as_unreachable() -> None:
    hub = ModelHub([RefusingBackend(name="keyed"), FakeBackend(name="down", reachable=False)])
    with pytest.raises(ModelAuthError, match="refused the API key"):
        hub.list_models()
    with pytest.raises(ModelAuthError):
        hub.resolve("anything")


def test_two_servers_of_one_name_are_refused() -> None:
    with pytest.raises(KBError, match="share a name"):
        ModelHub([FakeBackend(name="same"), FakeBackend(name="same")])


def test_a_stray_openai_key_is_named_in_the_unreachable_sentence(
    isolated_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "http://127.0.0.1:9")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-stray")
    hub = open_models(load_settings())
    assert hub.servers == ["ollama"]  # no client for the public OpenAI API
    message = hub.unreachable_message()
    assert "; OPENAI_API_KEY is set but OPENAI_BASE_URL is not" in message
    assert message.endswith("to use that server.") and "\n" not in message


def test_ollama_can_be_switched_off_and_servers_named(
    isolated_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KB_OLLAMA_ENABLED", "false")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8080/v1")
    monkeypatch.setenv(
        "KB_OPENAI_SERVERS", '[{"name": "vllm", "url": "http://gpu1:8000/v1", "api_key": "k"}]'
    )
    hub = open_models(load_settings())
    assert hub.servers == ["vllm", "127.0.0.1:8080"]
    monkeypatch.delenv("OPENAI_BASE_URL")
    monkeypatch.delenv("KB_OPENAI_SERVERS")
    # no model server at all: search still works; any model call says why in one sentence
    hub = open_models(load_settings())
    assert not hub.is_reachable()
    with pytest.raises(ServerUnreachableError, match="KB_OLLAMA_ENABLED is false") as raised:
        hub.resolve("llama3.2")
    assert str(raised.value) == hub.unreachable_message()
    with pytest.raises(ServerUnreachableError, match="KB_OLLAMA_ENABLED is false"):
        hub.list_models()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http://127.0.0.1:8101/v1", "KB_OPENAI_SERVERS could not be read: it must be JSON"),
        ('[{"name": "a"}]', "KB_OPENAI_SERVERS is invalid (url): field required"),
        ('[{"name": "a", "url": "127.0.0.1:8080"}]', "KB_OPENAI_SERVERS is invalid (url)"),
    ],
)
def test_a_wrong_server_list_is_one_sentence_naming_the_variable(
    isolated_env: None, monkeypatch: pytest.MonkeyPatch, value: str, expected: str
) -> None:
    monkeypatch.setenv("KB_OPENAI_SERVERS", value)
    with pytest.raises(KBError) as caught:
        load_settings()
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_settings_accept_json_text_and_empty_values() -> None:
    settings = Settings(
        openai_servers='[{"name": "lm", "url": "http://127.0.0.1:1234/v1"}]',
        openai_base_url="",
        context_windows='{"smollm2": 4096}',
    )
    assert [s.name for s in settings.all_openai_servers] == ["lm"]
    assert settings.window_setting("smollm2@lm") == 4096
