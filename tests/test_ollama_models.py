"""The Ollama gateway, model facts and `python -m rag models`, over HTTP against the fake."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import ollama
import pytest

from eval.fake_ollama import DEFAULT_MODELS, FAKE_VERSION, FakeOllama, unused_loopback_url
from rag.catalog import lookup
from rag.cli import main
from rag.errors import (
    KBError,
    ModelNotFoundError,
    OllamaResponseError,
    OllamaTimeoutError,
    OllamaUnreachableError,
)
from rag.llm.base import ModelFacts
from rag.llm.hub import ModelHub
from rag.llm.ollama import OllamaBackend, OllamaGateway, facts_from_show, normalize_host
from rag.models import effective_window, kv_cache_mib, list_model_facts, window_facts
from rag.settings import Settings

SettingsFactory = Callable[..., Settings]  # the settings_factory fixture of conftest.py

QUESTION = "<passages>\n[1] fruit.md\nBananas are rich in potassium.\n</passages>\n\nQuestion: "
FRUIT = [{"role": "user", "content": QUESTION + "Which fruit is rich in potassium?"}]


def assert_one_sentence(err: KBError) -> None:
    message = str(err)
    assert "\n" not in message and message.endswith(".")
    assert ". " not in message, message


def answer(gateway: OllamaGateway, model: str = "fake-llama3:8b") -> str:
    return "".join(c.message.content or "" for c in gateway.chat(model, FRUIT))


@pytest.fixture
def second_fake() -> Iterator[FakeOllama]:
    server = FakeOllama().start()
    try:
        yield server
    finally:
        server.stop()


def test_normalize_host_fills_in_scheme_and_port() -> None:
    assert normalize_host("localhost") == "http://localhost:11434"
    assert normalize_host("10.0.0.5:8000/") == "http://10.0.0.5:8000"
    assert normalize_host("http://ollama") == "http://ollama:80"
    assert normalize_host("https://gpu.example:443/ollama/") == "https://gpu.example:443/ollama"


def test_gateway_lists_shows_and_reports_version(
    fake_ollama: FakeOllama, settings_factory: SettingsFactory
) -> None:
    with OllamaGateway(settings_factory()) as gateway:
        installed = sorted(m.name for m in DEFAULT_MODELS if m.installed)
        assert [m.model for m in gateway.list_models()] == installed
        assert gateway.version() == FAKE_VERSION
        assert gateway.is_reachable()
        shown = gateway.show("fake-llama3:8b")
        assert shown.modelinfo is not None and shown.modelinfo["llama.context_length"] == 131072


def test_chat_streams_chunks_and_sends_the_options(
    fake_ollama: FakeOllama, settings_factory: SettingsFactory
) -> None:
    with OllamaGateway(settings_factory()) as gateway:
        chunks = list(gateway.chat("fake-llama3:8b", FRUIT, options={"num_ctx": 2048}))
        whole = list(gateway.chat("fake-llama3:8b", FRUIT, stream=False))
    assert len(chunks) == 10  # 9 tokens and the final chunk
    assert "".join(c.message.content or "" for c in chunks) == "Bananas are rich in potassium. [1]"
    assert chunks[-1].done and chunks[-1].prompt_eval_count == whole[0].prompt_eval_count
    assert len(whole) == 1 and whole[0].message.content == "Bananas are rich in potassium. [1]"
    sent = fake_ollama.requests_to("/api/chat")
    assert sent[0].options == {"num_ctx": 2048}
    assert sent[1].body is not None and sent[1].body["stream"] is False


def test_facts_are_read_from_show_and_tags(
    fake_ollama: FakeOllama, settings_factory: SettingsFactory
) -> None:
    with ModelHub([OllamaBackend(settings_factory())]) as models:
        facts = {f.name: f for f in list_model_facts(models, settings_factory())}
    llama = facts["fake-llama3:8b"]
    assert llama == ModelFacts(
        name="fake-llama3:8b",
        server="ollama",
        window=131072,
        window_source="trained",
        family="llama",
        parameter_count=8_030_261_248,
        parameter_size="8.0B",
        quantization="Q4_K_M",
        architecture="llama",
        context_length=131072,
        block_count=32,
        head_count=32,
        head_count_kv=8,
        embedding_length=4096,
        size_bytes=4_920_753_328,
        license="Meta Llama 3 Community License",
        notes="Meta; 8K context, 8B and 70B.",
    )
    qwen = facts["fake-qwen2:7b"]
    assert (qwen.architecture, qwen.context_length, qwen.head_count_kv) == ("qwen2", 32768, 4)
    assert qwen.license is not None and qwen.license.startswith("Apache-2.0")
    assert list(facts)[:2] == ["fake-llama3:8b", "fake-mistral:7b"]  # configured ones first
    assert all(f.pulled for f in facts.values())


def test_configured_models_that_are_not_pulled_are_listed_as_such(
    fake_ollama: FakeOllama, settings_factory: SettingsFactory
) -> None:
    settings = settings_factory(models=["fake-llama3:8b", "llama3.2"])
    with ModelHub([OllamaBackend(settings)]) as models:
        facts = {f.name: f for f in list_model_facts(models, settings)}
        with pytest.raises(ModelNotFoundError):
            models.facts("llama3.2")
    missing = facts["llama3.2"]
    assert not missing.pulled and missing.context_length is None
    assert missing.license == "Llama 3.2 Community License"


def test_context_length_is_found_whatever_the_architecture_prefix() -> None:
    shown = ollama.ShowResponse(
        model_info={
            "general.architecture": "newarch",
            "weird.context_length": 65536,
            "weird.attention.head_count": [16, 16, 32],
        }
    )
    facts = facts_from_show("some-model:1b", shown)
    assert facts.context_length == 65536
    assert facts.head_count == 32  # a per-layer list counts as its largest value
    assert facts.license is None


def test_kv_cache_mib_hand_checked() -> None:
    llama = ModelFacts("l", block_count=32, head_count=32, head_count_kv=8, embedding_length=4096)
    # 2 (K,V) x 32 layers x 8 KV heads x 128 dims x 2 bytes = 131072 bytes per token
    assert kv_cache_mib(llama, 8192) == 1024.0
    assert kv_cache_mib(llama, 131072) == 16384.0
    qwen = ModelFacts("q", block_count=28, head_count=28, head_count_kv=4, embedding_length=3584)
    assert kv_cache_mib(qwen, 8192) == 448.0  # 2 x 28 x 4 x 128 x 2 = 57344 bytes per token
    tiny = ModelFacts("t", block_count=22, head_count=32, head_count_kv=4, embedding_length=2048)
    assert kv_cache_mib(tiny, 2048) == 44.0  # 2 x 22 x 4 x 64 x 2 = 22528 bytes per token
    gemma_like = ModelFacts("g", block_count=10, head_count_kv=8, key_length=256, value_length=256)
    assert kv_cache_mib(gemma_like, 1024) == 80.0  # 10 x 8 x (256 + 256) x 2 = 81920 per token
    assert kv_cache_mib(ModelFacts("unknown"), 4096) is None


def test_effective_window_is_the_trained_context_under_the_cap(
    settings_factory: SettingsFactory,
) -> None:
    settings = settings_factory(context_caps={"fake-mistral": 4096})

    def trained(name: str, context: int) -> ModelFacts:
        return ModelFacts(name, "ollama", context_length=context, window=context)

    assert effective_window(trained("fake-llama3:8b", 131072), settings) == 8192
    assert effective_window(trained("fake-tiny:1b", 2048), settings) == 2048
    assert effective_window(trained("fake-mistral:7b", 32768), settings) == 4096
    assert effective_window(ModelFacts("mystery:1b"), settings) == 2048
    roomy = settings_factory(context_cap=16384)
    assert effective_window(trained("fake-llama3:8b", 131072), roomy) == 16384


def test_the_window_comes_from_the_server_a_setting_a_learned_error_or_a_default(
    settings_factory: SettingsFactory,
) -> None:
    settings = settings_factory(context_windows={"set:1b": 3000}, context_cap=100_000)
    stated = ModelFacts("big", "vllm", window=32768, window_source="server")
    assert window_facts(stated, settings).window_source == "server"
    assert window_facts(stated, settings, learned=8192).window == 8192  # rejected below 32768
    assert window_facts(stated, settings, learned=65536).window == 32768
    assert window_facts(ModelFacts("set:1b", "llamacpp"), settings).window == 3000
    learned = window_facts(ModelFacts("other", "llamacpp"), settings, learned=1536)
    assert (learned.window, learned.window_source) == (1536, "learned")
    default = window_facts(ModelFacts("other", "llamacpp"), settings)
    assert (default.window, default.window_source) == (2048, "default")


def test_requests_are_spread_round_robin_per_model(
    fake_ollama: FakeOllama, second_fake: FakeOllama, settings_factory: SettingsFactory
) -> None:
    settings = settings_factory(ollama_hosts=[fake_ollama.url, second_fake.url])
    with OllamaGateway(settings) as gateway:
        for _ in range(4):
            answer(gateway)
        answer(gateway, "fake-mistral:7b")
    assert len(fake_ollama.requests_to("/api/chat")) == 3  # two llama turns, then mistral's first
    assert len(second_fake.requests_to("/api/chat")) == 2


def test_a_down_host_is_skipped_and_remembered(
    fake_ollama: FakeOllama, second_fake: FakeOllama, settings_factory: SettingsFactory
) -> None:
    settings = settings_factory(ollama_hosts=[fake_ollama.url, second_fake.url])
    remembering = OllamaGateway(settings)
    forgetful = OllamaGateway(settings, host_down_for_s=0)
    fake_ollama.stop()
    for _ in range(3):
        assert answer(remembering).startswith("Bananas")
        assert answer(forgetful).startswith("Bananas")
    assert len(second_fake.requests_to("/api/chat")) == 6

    fake_ollama.start()  # back on the same port
    for _ in range(4):
        answer(remembering)
    assert fake_ollama.requests_to("/api/chat") == []  # still marked down
    for _ in range(4):
        answer(forgetful)
    assert len(fake_ollama.requests_to("/api/chat")) == 2  # back in the rotation
    remembering.close()
    forgetful.close()


def test_a_model_missing_on_one_host_is_served_by_another(
    fake_ollama: FakeOllama, settings_factory: SettingsFactory
) -> None:
    only_tiny = [m for m in DEFAULT_MODELS if m.name == "fake-tiny:1b"]
    with FakeOllama(only_tiny) as small:
        settings = settings_factory(ollama_hosts=[small.url, fake_ollama.url])
        with OllamaGateway(settings) as gateway:
            assert answer(gateway, "fake-mistral:7b").startswith("Bananas")
            assert answer(gateway, "fake-mistral:7b").startswith("Bananas")
    assert len(fake_ollama.requests_to("/api/chat")) == 2


def test_unreachable_when_every_host_is_down(settings_factory: SettingsFactory) -> None:
    first, second = unused_loopback_url(), unused_loopback_url()
    with OllamaGateway(settings_factory(ollama_host=first)) as gateway:
        with pytest.raises(OllamaUnreachableError) as error:
            answer(gateway)
        assert not gateway.is_reachable()
    assert str(error.value) == (
        f"Ollama is not reachable at {first}; start it with `ollama serve` "
        "(or `docker compose up ollama`), or set OLLAMA_HOST."
    )
    assert_one_sentence(error.value)
    gateway = OllamaGateway(settings_factory(ollama_hosts=[first, second]))
    with pytest.raises(OllamaUnreachableError, match="set KB_OLLAMA_HOSTS") as error:
        gateway.list_models()
    assert f"{first}, {second};" in str(error.value)


def test_model_not_pulled_names_the_pull_command(
    fake_ollama: FakeOllama, settings_factory: SettingsFactory
) -> None:
    with OllamaGateway(settings_factory()) as gateway:
        with pytest.raises(ModelNotFoundError) as error:
            answer(gateway, "nope:1b")
        with pytest.raises(ModelNotFoundError):
            gateway.show("nope:1b")
    assert str(error.value) == (
        f"Model nope:1b is not pulled on Ollama at {fake_ollama.url}; run `ollama pull nope:1b` "
        "there, or choose another model with KB_MODEL."
    )
    assert_one_sentence(error.value)


def test_slow_first_token_is_a_timeout_naming_the_setting(
    fake_ollama: FakeOllama, settings_factory: SettingsFactory
) -> None:
    fake_ollama.first_token_delay_s = 5
    gateway = OllamaGateway(settings_factory(ollama_timeout_s=0.3))
    with pytest.raises(OllamaTimeoutError) as error:
        answer(gateway)
    assert str(error.value) == (
        f"Ollama at {fake_ollama.url} did not answer within 0.3 seconds; raise "
        "KB_OLLAMA_TIMEOUT_S or choose a smaller model."
    )
    assert_one_sentence(error.value)


def test_mid_stream_error_comes_after_the_chunks_before_it(
    fake_ollama: FakeOllama, settings_factory: SettingsFactory
) -> None:
    fake_ollama.fail_after_tokens = 3
    received: list[str] = []
    with OllamaGateway(settings_factory()) as gateway:
        with pytest.raises(OllamaResponseError) as error:
            for chunk in gateway.chat("fake-llama3:8b", FRUIT):
                received.append(chunk.message.content or "")
        assert received == ["Bananas", " are", " rich"]
        assert str(error.value) == (
            f"Ollama at {fake_ollama.url} answered with an error (an error was encountered while "
            "running the model: fake failure); check its log, then try again."
        )
        with pytest.raises(OllamaResponseError, match=r"\(status 500: an error was"):
            list(gateway.chat("fake-llama3:8b", FRUIT, stream=False))
    assert_one_sentence(error.value)


def family_of(model: str, family: str | None = None) -> str | None:
    entry = lookup(model, family)
    return entry.family if entry else None


def test_catalog_matches_names_families_and_tags() -> None:
    assert family_of("llama3.1:70b-instruct-q4_K_M") == "Llama 3.1"
    assert family_of("dolphin-llama3:8b") == "Llama 3"
    assert family_of("hf.co/org/qwen2.5-7b-instruct-gguf:Q4") == "Qwen2.5"
    assert family_of("codellama:7b") == "Code Llama"
    assert family_of("mistral-nemo") == "Mistral NeMo"
    assert family_of("mistral:7b") == "Mistral 7B"
    assert family_of("my-finetune:1b", family="gemma2") == "Gemma 2"
    assert family_of("my-finetune:1b", family="llama") is None  # Mistral reports "llama" too


def test_cli_models_json(
    fake_ollama: FakeOllama,
    isolated_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", fake_ollama.url)
    monkeypatch.setenv("KB_MODEL", "fake-llama3:8b")
    monkeypatch.setenv("KB_MODELS", "fake-tiny:1b,llama3.2")
    assert main(["models", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert list(rows)[:3] == ["fake-llama3:8b", "fake-tiny:1b", "llama3.2"]
    assert rows["fake-llama3:8b"]["id"] == "fake-llama3:8b@ollama"
    llama = rows["fake-llama3:8b"]
    assert (llama["context_length"], llama["effective_window"], llama["kv_cache_mib"]) == (
        131072,
        8192,
        1024.0,
    )
    assert (rows["fake-tiny:1b"]["effective_window"], rows["fake-tiny:1b"]["kv_cache_mib"]) == (
        2048,
        44.0,
    )
    assert rows["llama3.2"]["pulled"] is False
    assert rows["llama3.2"]["effective_window"] is None

    assert main(["models"]) == 0  # piped: tab-separated, a header and a line per model
    lines = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    header = lines[0]
    table = {line[0]: dict(zip(header, line, strict=True)) for line in lines[1:]}
    assert header[:3] == ["id", "model", "server"] and header[-1] == "default"
    assert table["fake-llama3:8b@ollama"]["default"] == "*"
    assert table["fake-llama3:8b@ollama"]["window"] == "8,192"
    assert table["fake-qwen2:7b@ollama"]["server"] == "ollama"
    assert table["llama3.2"]["family"] == "not found"


def test_cli_prints_one_sentence_and_exits_2_when_ollama_is_down(
    isolated_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    down = unused_loopback_url()
    monkeypatch.setenv("OLLAMA_HOST", down)
    assert main(["models", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().startswith(f"Ollama is not reachable at {down};")
    assert captured.err.count("\n") == 1
