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

    backends: list[ChatBackend] = [OllamaBackend(settings)]
    backends += [OpenAICompatBackend(server, settings) for server in settings.all_openai_servers]
    return backends


def open_models(settings: Settings, extra: Sequence[ChatBackend] = ()) -> ModelHub:
    """Every configured server behind one hub; `extra` backends (tests' fake model) after them."""
    return ModelHub([*open_backends(settings), *extra])
