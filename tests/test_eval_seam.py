"""`eval/` reaches models only through the seam (`rag.llm.base`, `rag.llm.hub`) and the
composition root (`rag.service`): no server client, no adapter, nothing from `tests/`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

EVAL = Path(__file__).resolve().parents[1] / "eval"
# Server clients and adapters: only `rag/llm/` may import them.
FORBIDDEN_MODULES = (
    "ollama",
    "openai",
    "rag.ollama_client",
    "rag.llm.ollama",
    "rag.llm.openai_compat",
    "tests",
)
FORBIDDEN_NAMES = ("OllamaGateway", "OllamaBackend", "OpenAICompatBackend")


def imported_modules(tree: ast.AST) -> list[str]:
    modules: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.append(node.module)
    return modules


def is_forbidden(module: str) -> bool:
    return any(module == bad or module.startswith(f"{bad}.") for bad in FORBIDDEN_MODULES)


@pytest.mark.parametrize("path", sorted(EVAL.glob("*.py")), ids=lambda path: path.name)
def test_no_eval_module_imports_a_server_client_or_the_tests(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assert [m for m in imported_modules(tree) if is_forbidden(m)] == []
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    names |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert names.isdisjoint(FORBIDDEN_NAMES)


def test_the_check_sees_the_imports_it_forbids() -> None:
    tree = ast.parse("import ollama\nfrom rag.llm.ollama import OllamaBackend\nfrom tests import x")
    assert [m for m in imported_modules(tree) if is_forbidden(m)] == [
        "ollama", "rag.llm.ollama", "tests",
    ]  # fmt: skip
    assert not is_forbidden("rag.llm.hub") and not is_forbidden("ollamalike")
