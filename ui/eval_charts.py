"""An evaluation run's charts drawn in the browser from its figures (Vega-Lite), not as images.

The run folder keeps its PNG charts for `report.md`, but the page does not show them with
`st.image`: Streamlit serves an image at a `/media/….png` address that anyone who has it can
fetch without the app's password. A Vega-Lite chart travels with the page over the session's
own connection, so a locked app shows its figures only to unlocked sessions.
"""

from __future__ import annotations

from typing import Any

from eval.report import ANSWER_COLUMNS, JUDGE_COLUMNS, Column

SHARE_CHART_TITLE = "Figures per model (0-1, higher is better)"
SCATTER_TITLE = "Answer quality against latency (better: up and left)"
LATENCY_AXIS = "median latency per answer (s)"
F1_AXIS = "token F1 (answerable questions)"
ZERO_TO_ONE = {"domain": [0, 1]}


def _charted(kind: str) -> list[Column]:
    return [c for c in (*ANSWER_COLUMNS, *JUDGE_COLUMNS) if c.title and c.kind == kind]


def share_rows(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (model, 0-1 figure) that has a number: `{model, figure, value}`."""
    rows = []
    for row in summary:
        for column in _charted("share"):
            value = row.get(column.key)
            if isinstance(value, int | float):
                rows.append({"model": str(row.get("model", "")), "figure": column.title,
                             "value": float(value)})  # fmt: skip
    return rows


def share_chart(summary: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A grouped bar chart of every 0-1 figure, one bar per model (None: nothing to draw)."""
    rows = share_rows(summary)
    if not rows:
        return None
    return {
        "description": SHARE_CHART_TITLE,
        "data": {"values": rows},
        "mark": {"type": "bar", "tooltip": True},
        "encoding": {
            "y": {"field": "figure", "type": "nominal", "sort": None, "title": None},
            "yOffset": {"field": "model", "type": "nominal"},
            "x": {
                "field": "value",
                "type": "quantitative",
                "scale": {"domain": [0, 1]},
                "title": None,
            },
            "color": {"field": "model", "type": "nominal", "legend": {"orient": "bottom"}},
        },
    }


def scatter_chart(summary: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Token F1 against median latency, one point per model (None: no model has both)."""
    rows = [
        {"model": str(r.get("model", "")), "f1": r["f1"], "latency_s": r["latency_p50_s"]}
        for r in summary
        if isinstance(r.get("f1"), int | float) and isinstance(r.get("latency_p50_s"), int | float)
    ]
    if not rows:
        return None
    return {
        "description": SCATTER_TITLE,
        "data": {"values": rows},
        "mark": {"type": "point", "filled": True, "size": 120, "tooltip": True},
        "encoding": {
            "x": {
                "field": "latency_s",
                "type": "quantitative",
                "title": "median latency per answer (s)",
            },
            "y": {
                "field": "f1",
                "type": "quantitative",
                "scale": {"domain": [0, 1]},
                "title": "token F1 (answerable questions)",
            },
            "color": {"field": "model", "type": "nominal", "legend": {"orient": "bottom"}},
        },
    }


def show_charts(summary: list[dict[str, Any]]) -> None:
    """Draw the run's charts (nothing when its summary has no figure to chart)."""
    import streamlit as st

    for spec in (scatter_chart(summary), share_chart(summary)):
        if spec is not None:
            # the heading outside the chart: Vega-Lite's own title is drawn over what is above
            st.markdown(f"**{spec['description']}**")
            st.vega_lite_chart(spec, width="stretch")
