"""Models: the table of `python -m rag models`, and how to pull configured models Ollama lacks."""

from __future__ import annotations

from typing import Any

import streamlit as st

from rag.cli import model_row
from rag.errors import KBError
from rag.models import canonical_model_name, list_model_facts
from rag.settings import Settings
from ui.plain import escape_markdown, show_error
from ui.resources import get_gateway, ollama_reachable, page_start

COLUMNS = {
    "name": "model",
    "family": "family",
    "parameter_size": "parameters",
    "quantization": "quantization",
    "context_length": "trained context",
    "effective_window": "window used",
    "kv_cache_mib": "KV cache (MiB)",
    "license": "license",
    "pulled": "pulled",
}


def table_rows(rows: list[dict[str, Any]], settings: Settings) -> list[dict[str, Any]]:
    default = canonical_model_name(settings.model)
    shown = []
    for row in rows:
        cells = {label: row[key] for key, label in COLUMNS.items()}
        cells["default"] = row["name"] == default
        shown.append(cells)
    return shown


def pull_commands(rows: list[dict[str, Any]], settings: Settings) -> list[str]:
    """`ollama pull NAME` for every configured model that is not pulled."""
    configured = {canonical_model_name(n) for n in [settings.model, *settings.models]}
    return [f"ollama pull {r['name']}" for r in rows if not r["pulled"] and r["name"] in configured]


def main() -> None:
    settings = page_start(needs_ollama=True)
    st.title("Models")
    if not ollama_reachable(settings):
        configured = ", ".join(dict.fromkeys([settings.model, *settings.models]))
        st.info(f"Configured models: {escape_markdown(configured)}. The table needs Ollama.")
        return
    try:
        facts = list_model_facts(get_gateway(settings), settings)
    except KBError as err:
        show_error(err)
        return
    rows = [model_row(f, settings) for f in facts]
    st.dataframe(table_rows(rows, settings), hide_index=True)
    st.caption(
        "window used: the num_ctx kb asks for (the trained context, capped by KB_CONTEXT_CAP); "
        "KV cache: the memory that window costs at f16."
    )
    missing = pull_commands(rows, settings)
    if missing:
        st.warning("Some configured models are not pulled yet. Pull them with:")
        st.code("\n".join(missing), language="bash")


if __name__ == "__main__":
    main()
