"""Which models a user can pick: every model of every reachable server, as ids (`name@server`),
the configured ones first, each shown with its server.

Settings (KB_MODEL, KB_MODELS), Compare marks and older session state may hold bare names; a
bare name matches a listed id whose name is the same model (`rag.llm.hub.same_model`: Ollama's
`:latest` may be left out), on the first server that lists it.
"""

from __future__ import annotations

from collections.abc import Iterable

from rag.llm.base import SERVER_SEPARATOR
from rag.llm.hub import same_model
from rag.models import configured_models
from rag.settings import Settings

LABEL_SEPARATOR = " · "


def split_model_id(model: str) -> tuple[str, str]:
    """(name, server) of a model id; a bare name has the server ""."""
    name, separator, server = model.rpartition(SERVER_SEPARATOR)
    return (name, server) if separator and name and server else (model, "")


def model_label(model: str) -> str:
    """How a model is shown in pickers and headings: `name · server` (a bare name as is)."""
    name, server = split_model_id(model)
    return f"{name}{LABEL_SEPARATOR}{server}" if server else name


def matches(wanted: str, model_id: str) -> bool:
    """Whether `wanted` (an id or a bare name) names the listed `model_id`."""
    if wanted == model_id:
        return True
    wanted_name, wanted_server = split_model_id(wanted)
    name, server = split_model_id(model_id)
    if wanted_server and wanted_server != server:
        return False
    return same_model(name, wanted_name)


def find_model(wanted: str, model_ids: Iterable[str]) -> str | None:
    """The first listed id that `wanted` names, or None."""
    return next((model_id for model_id in model_ids if matches(wanted, model_id)), None)


def model_choices(settings: Settings, model_ids: list[str]) -> list[str]:
    """The listed ids, those of KB_MODEL and KB_MODELS first (in that order), then the rest by
    server (in the servers' order) and name."""
    first: list[str] = []
    for wanted in configured_models(settings):
        found = find_model(wanted, model_ids)
        if found is not None and found not in first:
            first.append(found)
    servers = list(dict.fromkeys(split_model_id(m)[1] for m in model_ids))
    rest = [m for m in dict.fromkeys(model_ids) if m not in first]
    rest.sort(key=lambda m: (servers.index(split_model_id(m)[1]), split_model_id(m)[0]))
    return first + rest


def missing_models(settings: Settings, model_ids: list[str]) -> list[str]:
    """Configured models no reachable server lists, as configured."""
    return [m for m in configured_models(settings) if find_model(m, model_ids) is None]


def unambiguous_id(name: str, model_ids: Iterable[str]) -> str:
    """A bare name as the one listed id it names; an id, or a name that names no listed model
    or several (the same model on two servers), as it is."""
    if split_model_id(name)[1]:
        return name
    named = [model_id for model_id in dict.fromkeys(model_ids) if matches(name, model_id)]
    return named[0] if len(named) == 1 else name


def kept_choice(stored: str | None, choices: list[str]) -> str | None:
    """The choice a session made earlier, as one of `choices` (an old bare name becomes the id
    it names), or None when no choice matches it."""
    if stored is None:
        return None
    return stored if stored in choices else find_model(stored, choices)


def kept_choices(stored: Iterable[str], choices: list[str]) -> list[str]:
    """`kept_choice` for several, each once, less those no longer offered."""
    kept = (kept_choice(model, choices) for model in stored)
    return list(dict.fromkeys(model for model in kept if model is not None))


def pull_hint(settings: Settings, model_ids: list[str]) -> str:
    """The name to put in `ollama pull NAME`: the first configured model no server lists."""
    missing = missing_models(settings, model_ids)
    return split_model_id(missing[0])[0] if missing else "NAME"


def no_model_message(settings: Settings, model_ids: list[str]) -> str:
    """One sentence for when no server offers a model."""
    return (
        "No model server offers a model yet; pull one with "
        f"`ollama pull {pull_hint(settings, model_ids)}`, or start an OpenAI-compatible server "
        "(OPENAI_BASE_URL)."
    )
