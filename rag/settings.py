"""The one settings object: environment variables and an optional `kb.toml`, built once, passed in.

Upstream variable names are kept where they exist (`OLLAMA_HOST`, `QDRANT_URL`, `QDRANT_API_KEY`);
everything of our own is `KB_<FIELD>`. A `kb.toml` (or the file named by `KB_CONFIG`) uses the
field names as keys; the environment wins over the file.
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings import (
    SettingsError as PydanticSettingsError,
)

from rag.errors import SettingsError

DEFAULT_EMBED_MODEL = "all-MiniLM-L6-v2"
UPSTREAM_NAMES = {
    "ollama_host": "OLLAMA_HOST",
    "qdrant_url": "QDRANT_URL",
    "qdrant_api_key": "QDRANT_API_KEY",
    "openai_base_url": "OPENAI_BASE_URL",
    "openai_api_key": "OPENAI_API_KEY",
}


def _upstream(field: str) -> AliasChoices:
    return AliasChoices(UPSTREAM_NAMES[field], field)


CommaList = Annotated[list[str], NoDecode]


class OpenAIServer(BaseModel):
    """One OpenAI-compatible server (llama.cpp's server, vLLM, LM Studio, ...). `url` is its
    API base, usually ending in `/v1`; `name` marks its models (`model@name`); `api_key` is
    needed only by servers started with one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:\-]+$")
    url: str = Field(min_length=1, pattern=r"^https?://")
    api_key: SecretStr | None = None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="KB_", extra="ignore", populate_by_name=True, frozen=True
    )

    # -- store --
    qdrant_path: Path = Field(Path("data/qdrant"), description="Folder of the embedded Qdrant.")
    qdrant_url: str | None = Field(None, validation_alias=_upstream("qdrant_url"))
    qdrant_api_key: SecretStr | None = Field(None, validation_alias=_upstream("qdrant_api_key"))
    collection: str = Field("kb", min_length=1, pattern=r"^[A-Za-z0-9_\-]+$")
    shard_number: int | None = Field(None, ge=1, description="Shards of a new collection.")
    replication_factor: int | None = Field(None, ge=1, description="Copies of each shard.")
    store_lock_wait_s: float = Field(5.0, ge=0, description="How long to retry a locked store.")

    # -- embeddings and chunking --
    embed_model: str = Field(DEFAULT_EMBED_MODEL, min_length=1)
    embed_device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps.")
    embed_batch_size: int = Field(16, ge=1, le=4096)
    embed_backend: str = Field(
        "auto",
        pattern=r"^(auto|torch|onnx|onnx-int8)$",
        description="auto (onnx-int8 on a CPU, torch on a GPU), torch, onnx or onnx-int8.",
    )
    chunk_size: int = Field(64, ge=16, le=8192, description="Tokens of the embedding model.")
    chunk_overlap: int = Field(0, ge=0, le=4096)
    max_file_mb: float = Field(50.0, gt=0)
    ocr: bool = Field(True, description="Read PDF pages without a text layer by OCR (on/off).")
    ocr_engine: Literal["rapidocr", "tesseract"] = Field(
        "rapidocr", description="rapidocr (bundled: Chinese, English) or tesseract (Debian's)."
    )
    ocr_languages: str = Field(
        "eng", pattern=r"^[A-Za-z_]+(\+[A-Za-z_]+)*$", description="tesseract's, e.g. eng+fra+deu."
    )

    # -- models --
    ollama_host: str = Field(
        "http://localhost:11434", min_length=1, validation_alias=_upstream("ollama_host")
    )
    ollama_enabled: bool = Field(
        True, description="Offer Ollama's models; false for OpenAI-compatible servers only."
    )
    ollama_hosts: CommaList = Field(
        default_factory=list, description="Several Ollama hosts; requests are spread across them."
    )
    model: str = Field("llama3.2", min_length=1, description="Default chat model.")
    models: CommaList = Field(default_factory=lambda: ["llama3.2", "mistral"])
    context_cap: int = Field(8192, ge=256, description="Upper bound of num_ctx for any model.")
    context_caps: dict[str, int] = Field(default_factory=dict, description="Per-model caps.")
    answer_tokens: int = Field(512, ge=16, description="Tokens reserved for the answer.")
    temperature: float | None = Field(
        0.0,
        ge=0,
        le=2,
        description="Sampling temperature of answers; 0 answers a question the same way from the "
        "same passages (greedy), empty leaves it to the model server.",
    )
    safety_margin: int = Field(64, ge=0)
    ollama_timeout_s: float = Field(120.0, gt=0)
    openai_base_url: str | None = Field(
        None, pattern=r"^https?://", validation_alias=_upstream("openai_base_url")
    )
    openai_api_key: SecretStr | None = Field(None, validation_alias=_upstream("openai_api_key"))
    openai_name: str | None = Field(
        None, description="Label of the OPENAI_BASE_URL server in model ids; default host:port."
    )
    openai_servers: list[OpenAIServer] = Field(
        default_factory=list,
        description='Several OpenAI-compatible servers, as JSON: [{"name", "url", "api_key"}].',
    )
    openai_timeout_s: float = Field(300.0, gt=0, description="Per request to those servers.")
    context_windows: dict[str, int] = Field(
        default_factory=dict,
        description="Per-model window for servers that do not state one (model name or id).",
    )

    # -- retrieval --
    retrieval_candidates: int = Field(40, ge=1, le=1000)
    # 500 estimated tokens: the smallest budget within 2 points of the best contains-answer in
    # a sweep of 500 / 1,200 / the whole window with Qwen2.5-Coder-0.5B (squad-dev's first 100
    # questions: 0.59 / 0.60 / 0.59), at a third of the whole window's time to first token;
    # the gold passage is packed for 93.4% of squad-dev's first 500 questions at 500, 96.4% at
    # 1,200 (see README, "How well, how fast").
    context_tokens: int | None = Field(
        500,
        ge=64,
        description="Context budget for the passages, in estimated tokens; "
        "empty = all the model's window leaves.",
    )
    first_token_target_s: float | None = Field(
        15.0,
        gt=0,
        description="Cap the context so a model's first token comes within this "
        "many seconds at its measured prompt speed; unset = no cap.",
    )

    # -- app and data --
    data_dir: Path = Field(Path("data"), description="Calibration, marks and evaluation runs.")
    upload_max_mb: float = Field(25.0, gt=0)
    app_password: SecretStr | None = None

    @field_validator(
        "openai_base_url",
        "openai_api_key",
        "openai_name",
        "context_tokens",
        "first_token_target_s",
        "temperature",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # compose passes `${OPENAI_BASE_URL:-}`: an empty variable means "not set"
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("openai_servers", "context_windows", "context_caps", mode="before")
    @classmethod
    def _json_text(cls, value: Any, info: ValidationInfo) -> Any:
        # the environment source decodes JSON itself; `kb.toml` and callers may pass the text
        if isinstance(value, str):
            empty: Any = [] if info.field_name == "openai_servers" else {}
            return json.loads(value) if value.strip() else empty
        return value

    @field_validator("ollama_hosts", "models", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("chunk_overlap")
    @classmethod
    def _overlap_below_size(cls, value: int, info: Any) -> int:
        size = info.data.get("chunk_size")
        if size is not None and value >= size:
            raise ValueError(f"must be smaller than chunk_size ({size})")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = Path(os.environ.get("KB_CONFIG", "kb.toml"))
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)

    @property
    def uses_server(self) -> bool:
        return bool(self.qdrant_url)

    @property
    def all_ollama_hosts(self) -> list[str]:
        return list(self.ollama_hosts) or [self.ollama_host]

    @property
    def all_openai_servers(self) -> list[OpenAIServer]:
        """`KB_OPENAI_SERVERS`, and `OPENAI_BASE_URL` (with `OPENAI_API_KEY`) as one more."""
        servers = list(self.openai_servers)
        if self.openai_base_url:
            name = self.openai_name or _host_label(self.openai_base_url)
            key = self.openai_api_key
            servers.append(OpenAIServer(name=name, url=self.openai_base_url, api_key=key))
        return servers

    def cap_for(self, model: str) -> int:
        return _per_model(self.context_caps, model) or self.context_cap

    def window_setting(self, model: str) -> int | None:
        """`KB_CONTEXT_WINDOWS` for a model id (`name@server`) or its bare name."""
        return _per_model(self.context_windows, model)


def _per_model(table: dict[str, int], model: str) -> int | None:
    """A per-model value by model id, bare name, or name without its Ollama tag."""
    name = model.rsplit("@", 1)[0]
    for key in (model, name, name.split(":")[0]):
        if key in table:
            return table[key]
    return None


def _host_label(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "server"
    return f"{host}:{parts.port}" if parts.port else host


def env_name(field: str) -> str:
    return UPSTREAM_NAMES.get(field, f"KB_{field.upper()}")


def load_settings(**overrides: Any) -> Settings:
    """Build the settings once; a wrong value ends in one sentence naming the setting."""
    try:
        return Settings(**overrides)
    except ValidationError as err:
        raise SettingsError(_describe(err)) from None
    except PydanticSettingsError as err:  # a variable that should hold JSON does not
        raise SettingsError(_describe_unparsable(err)) from None
    except (OSError, ValueError) as err:  # an unreadable or malformed kb.toml
        raise SettingsError(f"Could not read the settings file: {err}.") from None


def _describe_unparsable(err: Exception) -> str:
    found = re.search(r'field "(\w+)"', str(err))
    field = found.group(1) if found else "?"
    return (
        f"Setting {env_name(field)} could not be read: it must be JSON, e.g. "
        f"{_JSON_EXAMPLES.get(field, '{}')}."
    )


_JSON_EXAMPLES = {
    "openai_servers": '[{"name": "vllm", "url": "http://127.0.0.1:8000/v1"}]',
    "context_caps": '{"llama3.2": 8192}',
    "context_windows": '{"smollm2": 4096}',
}


def _describe(err: ValidationError) -> str:
    first = err.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else "?"
    field = next((f for f, alias in UPSTREAM_NAMES.items() if alias == field), field)
    value = first.get("input")
    shown = f" (got {value!r})" if isinstance(value, str | int | float) else ""
    reason = first["msg"].removeprefix("Value error, ")
    inner = [str(part) for part in first["loc"][1:] if isinstance(part, str)]
    where = f" ({'.'.join(inner)})" if inner else ""
    return f"Setting {env_name(field)} is invalid{where}{shown}: {reason[0].lower()}{reason[1:]}."
