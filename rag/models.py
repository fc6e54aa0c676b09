"""What we know about each model, whatever its server: the window kb packs for, and the KV cache.

The adapters (`rag/llm/`) read each server's own facts into `ModelFacts`; here they become the
window kb actually uses (`effective_window`) and, for memory, the KV cache that window costs
(`kv_cache_mib`).
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

from rag.catalog import lookup
from rag.errors import ModelNotFoundError
from rag.llm.base import ModelFacts, ModelRef
from rag.llm.hub import ModelHub, same_model
from rag.settings import Settings

# When nothing states a window: small enough for any model served today, so a first request is
# not rejected; a server's "maximum context length" error then teaches the real one.
CONSERVATIVE_WINDOW = 2048
F16_BYTES = 2
MIB = 2**20


def not_pulled_facts(name: str, server: str = "") -> ModelFacts:
    entry = lookup(name)
    return ModelFacts(
        name=name,
        server=server,
        license=entry.license if entry else None,
        notes=entry.note if entry else None,
        pulled=False,
    )


def window_facts(facts: ModelFacts, settings: Settings, learned: int | None = None) -> ModelFacts:
    """The facts with the window kb packs for, in this order: what the server states (or, for
    Ollama, the trained context), `KB_CONTEXT_WINDOWS`, a window `learned` from the server's
    own "too long" error, else `CONSERVATIVE_WINDOW`. A learned window smaller than the stated
    one wins: the server rejected prompts that fit the stated one (llama.cpp with `--parallel`
    gives each slot a share of `n_ctx`)."""
    if facts.window is not None:
        if learned is not None and learned < facts.window:
            return facts.with_window(learned, "learned")
        return facts
    setting = settings.window_setting(facts.id)
    if setting is not None:
        return facts.with_window(setting, "setting")
    if learned is not None:
        return facts.with_window(learned, "learned")
    return facts.with_window(CONSERVATIVE_WINDOW, "default")


def effective_window(facts: ModelFacts, settings: Settings, learned: int | None = None) -> int:
    """The window to pack for (Ollama's num_ctx), in tokens: the model's window (see
    `window_facts`), capped by `KB_CONTEXT_CAPS`/`KB_CONTEXT_CAP`."""
    window = window_facts(facts, settings, learned).window or CONSERVATIVE_WINDOW
    return min(window, settings.cap_for(facts.id))


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


FACTS_MAX_AGE_S = 60.0


def configured_models(settings: Settings) -> list[str]:
    """`KB_MODEL` then `KB_MODELS`, each once, as written (ids or bare names)."""
    return list(dict.fromkeys([settings.model, *settings.models]))


def list_model_facts(models: ModelHub, settings: Settings) -> list[ModelFacts]:
    """Every model of every reachable server, the configured ones first; configured models
    found on no server are included, as configured, with `pulled=False`. Raises
    `ServerUnreachableError` when no server answers."""
    listed = models.list_models()
    facts: list[ModelFacts] = []
    found: set[str] = set()
    for wanted in configured_models(settings):
        match = next((m for m in listed if _names(m.ref, wanted)), None)
        if match is None:
            facts.append(not_pulled_facts(wanted))
        elif match.id not in found:
            facts.append(_facts_of(models, match.ref, listed))
            found.add(match.id)
    for model in listed:
        if model.id not in found:
            facts.append(_facts_of(models, model.ref, listed))
            found.add(model.id)
    return facts


def _names(ref: ModelRef, wanted: str) -> bool:
    """Whether a configured id or bare name names this model."""
    return ref.id == wanted or same_model(ref.name, wanted)


def _facts_of(models: ModelHub, ref: ModelRef, listed: list) -> ModelFacts:
    try:
        facts = models.backend(ref.server).facts(ref.name)
    except ModelNotFoundError:  # removed between the listing and the facts
        return not_pulled_facts(ref.name, ref.server)
    size = next((m.size_bytes for m in listed if m.ref == ref), None)
    return facts if facts.size_bytes is not None else replace(facts, size_bytes=size)


def model_row(facts: ModelFacts, settings: Settings, learned: int | None = None) -> dict[str, Any]:
    """One model as plain data: its facts (with `id`, `name@server`) plus the window kb uses,
    where that window comes from, and the KV cache it costs in MiB."""
    window = None
    if facts.pulled:
        facts = window_facts(facts, settings, learned)
        window = effective_window(facts, settings)  # the window is settled: only the cap is left
    kv = kv_cache_mib(facts, window) if window is not None else None
    return {
        "id": facts.id,
        **asdict(facts),
        "effective_window": window,
        "kv_cache_mib": round(kv, 1) if kv is not None else None,
    }
