"""The one settings object: environment variables and an optional `kb.toml`, built once, passed in.

Upstream variable names are kept where they exist (`OLLAMA_HOST`, `QDRANT_URL`, `QDRANT_API_KEY`);
everything of our own is `KB_<FIELD>`. A `kb.toml` (or the file named by `KB_CONFIG`) uses the
field names as keys; the environment wins over the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from rag.errors import SettingsError

DEFAULT_EMBED_MODEL = "all-MiniLM-L6-v2"
UPSTREAM_NAMES = {
    "ollama_host": "OLLAMA_HOST",
    "qdrant_url": "QDRANT_URL",
    "qdrant_api_key": "QDRANT_API_KEY",
}


def _upstream(field: str) -> AliasChoices:
    return AliasChoices(UPSTREAM_NAMES[field], field)


CommaList = Annotated[list[str], NoDecode]


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
    chunk_size: int = Field(64, ge=16, le=8192, description="Tokens of the embedding model.")
    chunk_overlap: int = Field(0, ge=0, le=4096)
    max_file_mb: float = Field(50.0, gt=0)

    # -- models --
    ollama_host: str = Field(
        "http://localhost:11434", min_length=1, validation_alias=_upstream("ollama_host")
    )
    ollama_hosts: CommaList = Field(
        default_factory=list, description="Several Ollama hosts; requests are spread across them."
    )
    model: str = Field("llama3.2", min_length=1, description="Default chat model.")
    models: CommaList = Field(default_factory=lambda: ["llama3.2", "mistral"])
    context_cap: int = Field(8192, ge=256, description="Upper bound of num_ctx for any model.")
    context_caps: dict[str, int] = Field(default_factory=dict, description="Per-model caps.")
    answer_tokens: int = Field(512, ge=16, description="Tokens reserved for the answer.")
    safety_margin: int = Field(64, ge=0)
    ollama_timeout_s: float = Field(120.0, gt=0)

    # -- retrieval --
    retrieval_candidates: int = Field(40, ge=1, le=1000)
    context_tokens: int | None = Field(
        None, ge=64, description="Fixed context budget; unset = sized to the model's window."
    )

    # -- app and data --
    data_dir: Path = Field(Path("data"), description="Calibration, marks and evaluation runs.")
    upload_max_mb: float = Field(25.0, gt=0)
    app_password: SecretStr | None = None

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

    def cap_for(self, model: str) -> int:
        base = model.split(":")[0]
        return self.context_caps.get(model, self.context_caps.get(base, self.context_cap))


def env_name(field: str) -> str:
    return UPSTREAM_NAMES.get(field, f"KB_{field.upper()}")


def load_settings(**overrides: Any) -> Settings:
    """Build the settings once; a wrong value ends in one sentence naming the setting."""
    try:
        return Settings(**overrides)
    except ValidationError as err:
        raise SettingsError(_describe(err)) from None
    except (OSError, ValueError) as err:  # an unreadable or malformed kb.toml
        raise SettingsError(f"Could not read the settings file: {err}.") from None


def _describe(err: ValidationError) -> str:
    first = err.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else "?"
    field = next((f for f, alias in UPSTREAM_NAMES.items() if alias == field), field)
    value = first.get("input")
    shown = f" (got {value!r})" if isinstance(value, str | int | float) else ""
    reason = first["msg"].removeprefix("Value error, ")
    return f"Setting {env_name(field)} is invalid{shown}: {reason[0].lower()}{reason[1:]}."
