"""The models an eval command asks, found through the hub (`services.models`), whatever server
has them.

A model is named by its id (`name@server`) or by a bare name, which goes to the first server
that lists it (see `rag.llm.hub.ModelHub.resolve`). Results, `run.json` and `generated.json`
keep the id the name resolved to, so a run says which server answered. When no server has a
model, the sentence names the servers that were asked.
"""

from __future__ import annotations

from dataclasses import dataclass

from rag.llm.base import SERVER_SEPARATOR, ModelRef
from rag.llm.hub import ModelHub
from rag.models import effective_window
from rag.service import Services

FIX = "pull it or start the server that has it"


@dataclass(frozen=True)
class ServedModel:
    """A model a server has: `ref.id` is `name@server`; `window` is the window kb packs for,
    in tokens (the model's window capped by the settings, as the chain computes it)."""

    ref: ModelRef
    window: int

    @property
    def id(self) -> str:
        return self.ref.id


def find_model(services: Services, model: str) -> ServedModel:
    """The server that has `model` (an id or a bare name) and the model's window.

    Raises `ModelNotFoundError` when no server has it, `ServerUnreachableError` when its
    server (or, for a bare name, every server) does not answer."""
    ref = services.models.resolve(model)
    facts = services.models.facts(ref.id)
    learned = services.calibration.learned_window(ref.id)
    return ServedModel(ref, effective_window(facts, services.settings, learned))


def not_found(models: ModelHub, model: str, consequence: str = "", subject: str = "model") -> str:
    """One sentence for a model no server has: `Model x is on none of the model servers
    (Ollama at http://...), so <consequence>; pull it or start the server that has it.`"""
    then = f", so {consequence}" if consequence else ""
    return f"{subject.capitalize()} {model} is {_nowhere(models, model)}{then}; {FIX}."


def unreachable(model: str, consequence: str, subject: str = "model") -> str:
    """One sentence for a model whose server does not answer while other servers do."""
    return (
        f"The server of {subject} {model} does not answer, so {consequence}; start it or check "
        "its address in the settings."
    )


def _nowhere(models: ModelHub, model: str) -> str:
    """`not on <that server>` for an id naming a configured server, else every server."""
    _, separator, server = model.rpartition(SERVER_SEPARATOR)
    if separator and server in models.servers:
        return f"not on {models.backend(server).describe()}"
    return f"on none of the model servers ({models.describe()})"
