"""Models: the table of `python -m rag models` (every model of every reachable server, its
window and where that window comes from), and how to get configured models no server has."""

from __future__ import annotations

from typing import Any

import streamlit as st

from rag.errors import KBError
from rag.models import configured_models, list_model_facts, model_row
from rag.service import Services
from rag.settings import Settings, env_name
from ui.answer_view import WINDOW_SOURCES
from ui.models_choice import find_model, missing_models, split_model_id
from ui.plain import escape_markdown, show_error
from ui.resources import get_services, models_reachable, page_start

OLLAMA_SERVER = "ollama"  # the server name of Ollama's models (`llama3.2:latest@ollama`)
COLUMNS = {
    "name": "model",
    "server": "server",
    "family": "family",
    "parameter_size": "parameters",
    "quantization": "quantization",
    "context_length": "trained context",
    "effective_window": "window",
    "kv_cache_mib": "KV cache (MiB)",
    "license": "license",
    "pulled": "available",
}


def window_from(row: dict[str, Any], settings: Settings) -> str:
    """Where a model's window comes from, in plain words (and whether a cap lowered it)."""
    source = WINDOW_SOURCES.get(row.get("window_source") or "", "")
    window, used = row.get("window"), row.get("effective_window")
    if window is not None and used is not None and used < window:
        setting = env_name("context_caps" if settings.context_caps else "context_cap")
        return f"{source}, capped by {setting}" if source else f"capped by {setting}"
    return source


TEXT_COLUMNS = ("family", "parameters", "quantization", "license")
# What a reader needs first, left, so it shows without scrolling; the rest after.
FIRST = ("model", "server", "available", "default", "window", "window from")


def table_rows(rows: list[dict[str, Any]], settings: Settings) -> list[dict[str, Any]]:
    default = find_model(settings.model, [row["id"] for row in rows if row["pulled"]])
    shown = []
    for row in rows:
        cells = {label: row[key] for key, label in COLUMNS.items()}
        cells["server"] = cells["server"] or "(none)"
        for name in TEXT_COLUMNS:  # what a server does not say: blank, not "None"
            cells[name] = cells[name] or ""
        cells["window from"] = window_from(row, settings)
        cells["default"] = row["id"] == default
        shown.append({name: cells[name] for name in FIRST} | cells)
    return shown


def get_commands(rows: list[dict[str, Any]], settings: Settings) -> tuple[list[str], list[str]]:
    """For the configured models no server offers: `ollama pull NAME` for Ollama's (bare names
    and `@ollama` ids), and the ids meant for another server (to load there)."""
    available = [row["id"] for row in rows if row["pulled"]]
    pulls, elsewhere = [], []
    for model in missing_models(settings, available):
        name, server = split_model_id(model)
        if server in ("", OLLAMA_SERVER):
            pulls.append(f"ollama pull {name}")
        else:
            elsewhere.append(model)
    return pulls, elsewhere


def model_rows(services: Services) -> list[dict[str, Any]]:
    """`python -m rag models --json`'s rows. Raises `KBError`."""
    settings, learned = services.settings, services.calibration.learned_window
    facts = list_model_facts(services.models, settings)
    return [model_row(f, settings, learned(f.id)) for f in facts]


def main() -> None:
    settings = page_start(needs_models=True)
    st.title("Models")
    if not models_reachable(settings):
        configured = ", ".join(configured_models(settings))
        st.info(
            f"Configured models: {escape_markdown(configured)}; the table needs a model "
            "server, see above."
        )
        return
    try:
        rows = model_rows(get_services(settings))
    except KBError as err:
        show_error(err)
        return
    st.dataframe(table_rows(rows, settings), hide_index=True)
    st.caption(
        "window: the tokens kb packs the prompt and answer into (for Ollama the model's trained "
        "context, asked for on every request; for other servers what the server states), "
        "capped by KB_CONTEXT_CAP; KV cache: the memory that window costs at f16."
    )
    pulls, elsewhere = get_commands(rows, settings)
    if pulls:
        st.warning("Some configured models are not pulled yet. Pull them with:")
        st.code("\n".join(pulls), language="bash")
    if elsewhere:
        st.warning(
            f"No server offers {escape_markdown(', '.join(elsewhere))}; load each on the "
            "server its id names, or fix KB_MODEL or KB_MODELS."
        )


if __name__ == "__main__":
    main()
