"""What we know about each Ollama model: read from `/api/show` and `/api/tags`, plus the catalog.

The numbers that matter for packing a prompt are the trained context length and the window we
actually ask for (`effective_window`), and for memory the KV cache that window costs
(`kv_cache_mib`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ollama

from rag.catalog import lookup
from rag.errors import ModelNotFoundError
from rag.settings import Settings

if TYPE_CHECKING:
    from rag.ollama_client import OllamaGateway

CONSERVATIVE_WINDOW = 2048  # when a model does not say how long a context it was trained on
F16_BYTES = 2
MIB = 2**20


@dataclass(frozen=True)
class ModelFacts:
    name: str
    family: str | None = None
    parameter_count: int | None = None
    parameter_size: str | None = None
    quantization: str | None = None
    architecture: str | None = None
    context_length: int | None = None  # trained context, in tokens
    block_count: int | None = None
    head_count: int | None = None
    head_count_kv: int | None = None
    embedding_length: int | None = None
    key_length: int | None = None  # per-head K width, when the model states it (e.g. Gemma)
    value_length: int | None = None
    size_bytes: int | None = None
    license: str | None = None
    notes: str | None = None
    pulled: bool = True


def _as_int(value: Any) -> int | None:
    """An integer fact; a per-layer list (some architectures) counts as its largest value."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list | tuple):
        numbers = [v for v in (_as_int(item) for item in value) if v is not None]
        return max(numbers) if numbers else None
    return None


def _info_value(info: Mapping[str, Any], architecture: str | None, suffix: str) -> Any:
    """`<arch>.<suffix>`, else any key ending in `.<suffix>` whatever its prefix."""
    if architecture and f"{architecture}.{suffix}" in info:
        return info[f"{architecture}.{suffix}"]
    return next((v for k, v in info.items() if k.endswith(f".{suffix}")), None)


def facts_from_show(
    name: str, shown: ollama.ShowResponse, listed: ollama.ListResponse.Model | None = None
) -> ModelFacts:
    info: Mapping[str, Any] = shown.modelinfo or {}
    details = shown.details or (listed.details if listed else None)
    architecture = info.get("general.architecture")
    family = details.family if details else None
    entry = lookup(name, family)

    def fact(suffix: str) -> int | None:
        return _as_int(_info_value(info, architecture, suffix))

    return ModelFacts(
        name=name,
        family=family,
        parameter_count=_as_int(info.get("general.parameter_count")),
        parameter_size=details.parameter_size if details else None,
        quantization=details.quantization_level if details else None,
        architecture=str(architecture) if architecture else None,
        context_length=fact("context_length"),
        block_count=fact("block_count"),
        head_count=fact("attention.head_count"),
        head_count_kv=fact("attention.head_count_kv"),
        embedding_length=fact("embedding_length"),
        key_length=fact("attention.key_length"),
        value_length=fact("attention.value_length"),
        size_bytes=int(listed.size) if listed and listed.size is not None else None,
        license=entry.license if entry else None,
        notes=entry.note if entry else None,
    )


def not_pulled_facts(name: str) -> ModelFacts:
    entry = lookup(name)
    return ModelFacts(
        name=name,
        license=entry.license if entry else None,
        notes=entry.note if entry else None,
        pulled=False,
    )


def effective_window(facts: ModelFacts, settings: Settings) -> int:
    """The num_ctx to ask for: the trained context, capped by the settings."""
    trained = facts.context_length or CONSERVATIVE_WINDOW
    return min(trained, settings.cap_for(facts.name))


def _kv_values_per_token_per_layer(facts: ModelFacts) -> float | None:
    kv_heads = facts.head_count_kv or facts.head_count  # no KV head count: plain multi-head
    if kv_heads is None:
        return None
    if facts.key_length and facts.value_length:
        return kv_heads * (facts.key_length + facts.value_length)
    if facts.embedding_length and facts.head_count:
        return 2 * kv_heads * facts.embedding_length / facts.head_count
    return None


def kv_cache_mib(facts: ModelFacts, window: int) -> float | None:
    """MiB of an f16 KV cache for `window` tokens: K and V, per layer, per KV head, per head dim."""
    per_layer = _kv_values_per_token_per_layer(facts)
    if per_layer is None or facts.block_count is None:
        return None
    return per_layer * facts.block_count * F16_BYTES * window / MIB


def canonical_model_name(name: str) -> str:
    """Ollama's full name: `llama3.2` is `llama3.2:latest`."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


FACTS_MAX_AGE_S = 60.0


def model_facts(gateway: OllamaGateway, name: str, max_age_s: float = 0.0) -> ModelFacts:
    return facts_from_show(name, gateway.show(name, max_age_s=max_age_s))


def list_model_facts(gateway: OllamaGateway, settings: Settings) -> list[ModelFacts]:
    """Every pulled model, the configured ones first; configured models not pulled anywhere are
    included with `pulled=False`."""
    listed = {canonical_model_name(m.model or ""): m for m in gateway.list_models()}
    configured = [
        canonical_model_name(n) for n in dict.fromkeys([settings.model, *settings.models])
    ]
    ordered = list(dict.fromkeys([*configured, *sorted(listed)]))
    facts = []
    for name in ordered:
        if name not in listed:
            facts.append(not_pulled_facts(name))
            continue
        try:
            facts.append(facts_from_show(name, gateway.show(name), listed[name]))
        except ModelNotFoundError:  # removed between the listing and the show
            facts.append(not_pulled_facts(name))
    return facts
