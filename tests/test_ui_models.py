"""The Models page: the `python -m rag models` table (server, window and where it comes from),
and pull commands for missing models."""

from __future__ import annotations

import pytest

from tests.ui_helpers import AppEnv, new_app, no_exception, switch


def test_the_models_table_and_pull_commands(
    ui_app_env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KB_MODELS", "fake-llama3:8b,fake-phi3:3.8b,nonesuch:1b")
    monkeypatch.setenv("KB_CONTEXT_CAP", "4096")
    app = switch(new_app(), "models")
    no_exception(app)
    rows = {row["model"]: row for row in app.dataframe[0].value.to_dict("records")}
    llama = rows["fake-llama3:8b"]
    assert llama["default"] and llama["available"] and llama["server"] == "ollama"
    assert (llama["family"], llama["parameters"], llama["quantization"]) == (
        "llama",
        "8.0B",
        "Q4_K_M",
    )
    assert (llama["trained context"], llama["window"]) == (131072, 4096)
    assert llama["window from"] == "the model's trained context, capped by KB_CONTEXT_CAP"
    assert llama["KV cache (MiB)"] == 512.0  # 2 (K,V) x 8 heads x 128 x 32 layers x 2 B x 4096
    tiny = rows["fake-tiny:1b"]  # pulled but not configured: listed too, under the cap
    assert (tiny["window"], tiny["window from"]) == (2048, "the model's trained context")
    phi3 = rows["fake-phi3:3.8b"]  # configured, on no server: nothing known, said as blanks
    assert not phi3["available"] and not phi3["default"]
    assert (phi3["family"], phi3["parameters"], phi3["quantization"]) == ("", "", "")
    assert sum(row["default"] for row in rows.values()) == 1
    [commands] = [c.value for c in app.code]
    assert commands.splitlines() == [
        "ollama pull fake-phi3:3.8b",
        "ollama pull nonesuch:1b",
    ]
