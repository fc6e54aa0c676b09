"""Licence and a short note for well-known open model families, for display only.

The licences are summaries; the model card of the exact tag you pull is what binds you.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class CatalogEntry:
    key: str  # how Ollama names the family, e.g. "llama3.1" or "qwen2.5"
    family: str
    license: str
    note: str
    # The key names a generation only in Ollama's library (its `qwen` is Qwen 1.5); elsewhere
    # a name like "qwen-coder" says nothing about the generation, so it is not matched.
    ollama_tag_only: bool = False


CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry("llama2", "Llama 2", "Llama 2 Community License", "Meta; 4K context."),
    CatalogEntry(
        "codellama", "Code Llama", "Llama 2 Community License", "Meta's code model on Llama 2."
    ),
    CatalogEntry(
        "llama3", "Llama 3", "Meta Llama 3 Community License", "Meta; 8K context, 8B and 70B."
    ),
    CatalogEntry(
        "llama3.1", "Llama 3.1", "Llama 3.1 Community License", "Meta; 128K context, 8B to 405B."
    ),
    CatalogEntry(
        "llama3.2",
        "Llama 3.2",
        "Llama 3.2 Community License",
        "Meta; 1B and 3B text models with 128K context; the vision models exclude EU users.",
    ),
    CatalogEntry(
        "llama3.3", "Llama 3.3", "Llama 3.3 Community License", "Meta; 70B, 128K context."
    ),
    CatalogEntry(
        "llama4", "Llama 4", "Llama 4 Community License", "Meta; mixture of experts, multimodal."
    ),
    CatalogEntry("tinyllama", "TinyLlama", "Apache-2.0", "1.1B trained on 3T tokens; 2K context."),
    CatalogEntry("mistral", "Mistral 7B", "Apache-2.0", "Mistral AI; 32K context from v0.2."),
    CatalogEntry(
        "mistral-nemo", "Mistral NeMo", "Apache-2.0", "Mistral AI with NVIDIA; 12B, 128K context."
    ),
    CatalogEntry(
        "mistral-small",
        "Mistral Small",
        "Apache-2.0 (24B); Mistral Research License (22B)",
        "Mistral AI; the licence depends on the version of the tag.",
    ),
    CatalogEntry(
        "mistral-large",
        "Mistral Large",
        "Mistral Research License",
        "Mistral AI; commercial use needs a licence from Mistral AI.",
    ),
    CatalogEntry(
        "mixtral", "Mixtral", "Apache-2.0", "Mistral AI mixture of experts, 8x7B and 8x22B."
    ),
    CatalogEntry(
        "codestral",
        "Codestral",
        "Mistral AI Non-Production License",
        "Mistral AI code model; no production use without a licence.",
    ),
    CatalogEntry(
        "qwen",
        "Qwen 1.5",
        "Tongyi Qianwen License",
        "Alibaba; terms differ between sizes.",
        ollama_tag_only=True,
    ),
    CatalogEntry(
        "qwen2", "Qwen2", "Apache-2.0 (72B: Tongyi Qianwen License)", "Alibaba; 32K context."
    ),
    CatalogEntry(
        "qwen2.5",
        "Qwen2.5",
        "Apache-2.0 (3B: Qwen Research License, 72B: Qwen License)",
        "Alibaba; 128K context from 7B up.",
    ),
    CatalogEntry("qwen3", "Qwen3", "Apache-2.0", "Alibaba; dense and mixture-of-experts models."),
    CatalogEntry("qwq", "QwQ", "Apache-2.0", "Alibaba's 32B reasoning model."),
    CatalogEntry("phi3", "Phi-3", "MIT", "Microsoft; 3.8B and 14B, 4K or 128K context variants."),
    CatalogEntry("phi3.5", "Phi-3.5", "MIT", "Microsoft; 3.8B, 128K context."),
    CatalogEntry("phi4", "Phi-4", "MIT", "Microsoft; 14B, 16K context."),
    CatalogEntry("gemma", "Gemma", "Gemma Terms of Use", "Google; with a prohibited use policy."),
    CatalogEntry("gemma2", "Gemma 2", "Gemma Terms of Use", "Google; 8K context."),
    CatalogEntry("gemma3", "Gemma 3", "Gemma Terms of Use", "Google; 128K context from 4B up."),
    CatalogEntry("codegemma", "CodeGemma", "Gemma Terms of Use", "Google's code model."),
    CatalogEntry(
        "falcon",
        "Falcon",
        "Apache-2.0 (7B, 40B); Falcon-180B TII License",
        "Technology Innovation Institute.",
    ),
    CatalogEntry(
        "falcon2", "Falcon 2", "TII Falcon License 2.0", "Technology Innovation Institute."
    ),
    CatalogEntry(
        "falcon3", "Falcon 3", "TII Falcon License 2.0", "Technology Innovation Institute."
    ),
    CatalogEntry(
        "deepseek-r1",
        "DeepSeek-R1",
        "MIT",
        "DeepSeek reasoning model; distilled sizes also carry their Qwen or Llama licence.",
    ),
    CatalogEntry(
        "deepseek-v3",
        "DeepSeek-V3",
        "MIT (V3-0324) or DeepSeek Model License",
        "DeepSeek; 671B mixture of experts.",
    ),
    CatalogEntry("deepseek-v2", "DeepSeek-V2", "DeepSeek Model License", "DeepSeek; MoE."),
    CatalogEntry("deepseek2", "DeepSeek-V2", "DeepSeek Model License", "DeepSeek; MoE."),
    CatalogEntry("deepseek-coder", "DeepSeek Coder", "DeepSeek License", "DeepSeek code model."),
    CatalogEntry("deepseek-llm", "DeepSeek LLM", "DeepSeek License", "DeepSeek; 7B and 67B."),
    CatalogEntry(
        "command-r",
        "Command R",
        "CC-BY-NC-4.0",
        "Cohere; non-commercial use only, plus Cohere's acceptable use policy.",
    ),
    CatalogEntry(
        "command-r-plus",
        "Command R+",
        "CC-BY-NC-4.0",
        "Cohere; non-commercial use only, plus Cohere's acceptable use policy.",
    ),
    CatalogEntry("granite", "Granite", "Apache-2.0", "IBM."),
    CatalogEntry("smollm2", "SmolLM2", "Apache-2.0", "Hugging Face; 135M to 1.7B."),
    CatalogEntry("olmo2", "OLMo 2", "Apache-2.0", "Allen AI; fully open data and code."),
)

# Ollama reports Mistral and many fine-tunes as family "llama": that family names no licence.
_AMBIGUOUS_FAMILIES = frozenset({"llama"})


def _base_name(model: str) -> str:
    """`hf.co/org/Llama-3.2-3B:Q4` -> `llama-3.2-3b`: last path segment, no tag, lower case."""
    last = model.strip().lower().rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def _matches(name: str, key: str) -> bool:
    # The key must start the name or follow a separator and must not run on into more letters or
    # digits: "llama3" finds "dolphin-llama3" but not "codellama3" or "llama30". Longer keys are
    # tried first, so "llama3.1" wins over "llama3".
    return re.search(rf"(?:^|[-_/.]){re.escape(key)}(?![a-z0-9])", name) is not None


def _by_longest_key() -> list[CatalogEntry]:
    return sorted(CATALOG, key=lambda entry: len(entry.key), reverse=True)


def lookup(
    model: str, family: str | None = None, *, ollama_name: bool = True
) -> CatalogEntry | None:
    """The entry for a model name, else for its Ollama family (when that family is telling).
    `ollama_name=False` for names from other servers (aliases, file names), where keys that
    name a generation only in Ollama's library do not apply."""
    entries = [e for e in _by_longest_key() if ollama_name or not e.ollama_tag_only]
    name = _base_name(model)
    found = next((e for e in entries if _matches(name, e.key)), None)
    if found is None and family and family.lower() not in _AMBIGUOUS_FAMILIES:
        family_name = family.lower()
        found = next((e for e in entries if _matches(family_name, e.key)), None)
    return found
