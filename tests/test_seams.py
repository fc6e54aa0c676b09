"""The seams hold: each server's client library is imported by its adapter alone, adapters only
by the factory, and product code imports nothing from `tests/`."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PRODUCT = ("ingest", "rag", "ui", "eval")

# module (or package prefix) -> the only files that may import it
ONLY_IMPORTED_BY = {
    "ollama": {"rag/llm/ollama.py"},
    "openai": {"rag/llm/openai_compat.py"},
    "rag.llm.ollama": {"rag/llm/__init__.py"},
    "rag.llm.openai_compat": {"rag/llm/__init__.py"},
    "rag.ollama_client": set(),
    "tests": set(),
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def product_files() -> list[Path]:
    return sorted(p for package in PRODUCT for p in (REPO / package).rglob("*.py"))


def test_each_client_library_is_imported_by_its_adapter_alone() -> None:
    files = product_files()
    assert len(files) > 40  # the walk found the packages
    offences = []
    for path in files:
        relative = path.relative_to(REPO).as_posix()
        for module in imported_modules(path):
            for guarded, allowed in ONLY_IMPORTED_BY.items():
                inside = module == guarded or module.startswith(f"{guarded}.")
                if inside and relative not in allowed:
                    offences.append(f"{relative} imports {module}")
    assert offences == []


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import ollama\nfrom tests.fake_model import FakeBackend\n")
    assert {"ollama", "tests.fake_model"} <= imported_modules(sample)
