"""PNG charts of an answers run, drawn with matplotlib's Agg canvas (no display, no pyplot state).

- `quality_vs_latency.png`: each model a point, token F1 against median latency; up and to
  the left is better.
- `metrics.png`: one small bar chart per figure, one bar per model, the value written on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eval.report import Column, ModelFigures, answer_columns

SCATTER_FILE = "quality_vs_latency.png"
BARS_FILE = "metrics.png"
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def write_charts(folder: Path, figures: dict[str, ModelFigures], judged: bool) -> list[Path]:
    """Both charts into `folder`; returns their paths (none when there is no model)."""
    if not figures:
        return []
    rows = {model: f.row() for model, f in figures.items()}
    colours = {model: PALETTE[i % len(PALETTE)] for i, model in enumerate(rows)}
    metrics = [column for column in answer_columns(judged) if column.title]
    return [
        _save(quality_vs_latency(rows, colours), folder / SCATTER_FILE),
        _save(metric_bars(rows, colours, metrics), folder / BARS_FILE),
    ]


def _save(figure: Any, path: Path) -> Path:
    figure.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _value_text(value: float, kind: str) -> str:
    if kind == "share":
        return f"{value:.2f}"
    if kind == "seconds":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
    if kind == "score":
        return f"{value:.1f}"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def quality_vs_latency(rows: dict[str, dict[str, Any]], colours: dict[str, str]) -> Any:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 5))
    ax = figure.subplots()
    plotted = {m: r for m, r in rows.items() if r["f1"] is not None and r["latency_p50_s"]}
    for model, row in plotted.items():
        x, y = row["latency_p50_s"], row["f1"]
        label = f"{model}: F1 {y:.2f}, p50 {_value_text(x, 'seconds')}"
        ax.scatter([x], [y], s=120, color=colours[model], zorder=3, label=label)
    longest = max((r["latency_p50_s"] for r in plotted.values()), default=1.0)
    ax.set_xlim(0, longest * 1.25)
    if plotted:
        # below the plot, so that no label ever hides a point or another label
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=9, frameon=False)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("median latency per answer (seconds)")
    ax.set_ylabel("token F1 (answerable questions)")
    ax.set_title("Answer quality against latency (better: up and left)")
    ax.grid(True, alpha=0.3)
    missing = sorted(set(rows) - set(plotted))
    if missing:
        ax.text(0.01, 0.01, f"no figures: {', '.join(missing)}", transform=ax.transAxes,
                fontsize=8, color="grey")  # fmt: skip
    return figure


def metric_bars(
    rows: dict[str, dict[str, Any]], colours: dict[str, str], metrics: Sequence[Column]
) -> Any:
    from matplotlib.figure import Figure

    columns = 4
    lines = -(-len(metrics) // columns)
    width = max(12.0, 1.1 * len(rows) * columns)
    figure = Figure(figsize=(width, 2.9 * lines), layout="constrained")
    axes = figure.subplots(lines, columns, squeeze=False).flatten()
    for ax, metric in zip(axes, metrics, strict=False):
        _bars(ax, rows, colours, metric)
    for ax in axes[len(metrics) :]:
        ax.set_visible(False)
    figure.suptitle("Figures per model (shares 0-1: higher is better; times: lower is better)")
    return figure


def _bars(
    ax: Any, rows: dict[str, dict[str, Any]], colours: dict[str, str], metric: Column
) -> None:
    models = list(rows)
    values = [rows[m][metric.key] for m in models]
    heights = [v if v is not None else 0.0 for v in values]
    bars = ax.bar(range(len(models)), heights, color=[colours[m] for m in models])
    if all(value is None for value in values):
        ax.text(0.5, 0.5, "no figures", transform=ax.transAxes, ha="center", color="grey")
    for bar, value in zip(bars, values, strict=True):
        text = _value_text(value, metric.kind) if value is not None else "n/a"
        ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    xytext=(0, 2), textcoords="offset points", ha="center", fontsize=8)  # fmt: skip
    ax.set_title(metric.title, fontsize=10)
    ax.set_xticks(range(len(models)), models, fontsize=8, rotation=15 if len(models) > 2 else 0)
    if metric.kind == "share":
        ax.set_ylim(0, 1.15)
    elif metric.kind == "score":
        ax.set_ylim(0, 5.6)
    else:
        top = max((v for v in values if v is not None), default=0.0)
        ax.set_ylim(0, top * 1.2 if top > 0 else 1)
    ax.spines[["top", "right"]].set_visible(False)
