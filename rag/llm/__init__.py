"""Model access: one seam (`base.ChatBackend`), one adapter per server kind, a hub over them.

`open_models(settings)` is the factory the composition root calls: Ollama at `OLLAMA_HOST`
(or `KB_OLLAMA_HOSTS`), plus one OpenAI-compatible backend per server of `OPENAI_BASE_URL`
and `KB_OPENAI_SERVERS`.
"""

from __future__ import annotations

from collections.abc import Sequence

from rag.llm.base import ChatBackend
from rag.llm.hub import ModelHub
from rag.settings import Settings


def open_backends(settings: Settings) -> list[ChatBackend]:
    from rag.llm.ollama import OllamaBackend
    from rag.llm.openai_compat import OpenAICompatBackend

    backends: list[ChatBackend] = [OllamaBackend(settings)] if settings.ollama_enabled else []
    backends += [OpenAICompatBackend(server, settings) for server in settings.all_openai_servers]
    return backends


def open_models(settings: Settings, extra: Sequence[ChatBackend] = ()) -> ModelHub:
    """Every configured server behind one hub; `extra` backends (tests' fake model) after them."""
    return ModelHub([*open_backends(settings), *extra], hint=configuration_hint(settings))


def configuration_hint(settings: Settings) -> str | None:
    """A clause for a likely slip: an OpenAI key set for a server that is not configured (kb
    never sends it to the public OpenAI API)."""
    if settings.openai_api_key is not None and not settings.openai_base_url:
        return (
            "OPENAI_API_KEY is set but OPENAI_BASE_URL is not, so set it to your server's API "
            "base (e.g. http://127.0.0.1:8080/v1) to use that server"
        )
    return None
