"""Which models a user can pick: the pulled ones, the configured ones first."""

from __future__ import annotations

from rag.models import canonical_model_name
from rag.settings import Settings


def model_choices(settings: Settings, pulled: list[str]) -> list[str]:
    """Pulled models, those of KB_MODEL and KB_MODELS first (in that order), then the rest."""
    have = {canonical_model_name(name): name for name in pulled}
    configured = [
        canonical_model_name(n) for n in dict.fromkeys([settings.model, *settings.models])
    ]
    first = [have[name] for name in configured if name in have]
    return first + sorted(name for name in pulled if name not in first)


def missing_models(settings: Settings, pulled: list[str]) -> list[str]:
    """Configured models Ollama does not have, as configured (for `ollama pull NAME`)."""
    have = {canonical_model_name(name) for name in pulled}
    configured = dict.fromkeys([settings.model, *settings.models])
    return [name for name in configured if canonical_model_name(name) not in have]
