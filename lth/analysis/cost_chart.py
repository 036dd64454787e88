"""What a ticket cost: test accuracy against the cumulative training FLOPs of reaching it (log x),
beside accuracy against the percent of weights remaining (`lth.lottery.cost` defines the count)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lth.analysis.chart import formatter, key_line, legend_outside, legend_size, new_figure, percent_axis, \
    series_style, set_title
from lth.analysis.plots import Replicates, band, headline_field, points, save_figure
from lth.store.records import aggregate

COST = "cumulative_train_flops"


def flops_text(value: float, _: Any = None) -> str:
    """FLOPs with an SI prefix: 3.2e12 -> '3.2T'."""
    for scale, suffix in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def cost_figure(series: Mapping[str, Replicates], title: str = "", percent_panel: bool = True) -> Any:
    """One line per series (label -> replicates' records): the headline test accuracy (early stop,
    else end of training; mean and +-1 sample-std band over replicates) against the cumulative
    training FLOPs of each record (log x), and with `percent_panel` first against the percent of
    weights remaining. Records without a cost (runs recorded before costs were) are left out of the
    cost panel. Returns a matplotlib Figure."""
    aggs = {label: agg for label, reps in series.items() if (agg := aggregate([list(r) for r in reps]))}
    labels = [f"{label} (n={len(series[label])})" if len(series[label]) > 1 else label for label in aggs]
    keys = [key_line("early stop, else end of training", marker="o")]
    _, legend_width, legend_height = legend_size([k.get_label() for k in keys] + labels)
    panels = 2 if percent_panel else 1
    fig, axes = new_figure(1, panels, 6.0 * panels + legend_width, max(4.5, legend_height))
    handles = []
    gap = _label_gap([r[COST] for agg in aggs.values() for r in agg if r.get(COST)])
    labelled: list[tuple[float, float]] = []  # where a percent label went: others that close are left out
    for i, (label, name) in enumerate(zip(aggs, labels)):
        color, marker = series_style(i)
        if percent_panel:
            band(axes[0, 0], points(aggs[label], headline_field, 100), color, marker, name)
        cost = sorted(points(aggs[label], headline_field, 100, x=COST))
        band(axes[0, -1], cost, color, marker, name)
        if not percent_panel:  # the percent of weights beside the points, those too close to the last left out
            for (x, y, _), percent in zip(cost, _percents(aggs[label])):
                if all(abs(math.log10(x / lx)) >= gap or abs(y - ly) >= 0.25 for lx, ly in labelled):
                    axes[0, -1].annotate(f"{percent:.3g}%", (x, y), textcoords="offset points", xytext=(4, 4),
                                         fontsize=7, color=color)
                    labelled.append((x, y))
        handles.append(key_line(name, marker=marker, color=color))
    if percent_panel:
        percent_axis(axes[0, 0], [r["percent_remaining"] for agg in aggs.values() for r in agg])
    ax = axes[0, -1]
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(formatter(flops_text))
    ax.xaxis.set_minor_formatter(formatter(_minor_text if _within_decade(ax) else lambda v, _: ""))
    ax.set_xlabel("training FLOPs to reach it (cumulative, log)")
    ax.grid(True, which="both", alpha=0.3)
    for panel in axes[0]:
        panel.set_ylabel("test accuracy (%)")
    legend_outside(axes[0, -1], keys + handles)
    set_title(fig, title)
    return fig


def _label_gap(costs: list[float]) -> float:
    """The least distance (in decades) between two labelled points of a line: 1/20 of the costs' span."""
    positive = [c for c in costs if c > 0]
    return math.log10(max(positive) / min(positive)) / 20 if positive else 0.0


def _percents(agg: list[dict[str, Any]]) -> list[float]:
    """The percent remaining of the records `points(..., x=COST)` keeps, in the order of their cost."""
    kept = [r for r in agg if r.get(COST) is not None and headline_field(r) is not None]
    return [r["percent_remaining"] for r in sorted(kept, key=lambda r: r[COST])]


def _minor_text(value: float, _: Any = None) -> str:
    """A minor log tick's label at 2, 3 and 5 times a power of ten only (the others stay blank)."""
    leading = value / 10 ** math.floor(math.log10(value)) if value > 0 else 0
    return flops_text(value) if round(leading) in (2, 3, 5) and abs(leading - round(leading)) < 1e-6 else ""


def _within_decade(ax: Any) -> bool:
    """Whether the plotted x values span less than a decade (no major log tick may fall among them)."""
    xs = [x for line in ax.get_lines() for x in line.get_xdata()]
    return bool(xs) and max(xs) < 10 * min(xs)


def plot_accuracy_vs_cost(series: Mapping[str, Replicates], path: str | Path, title: str = "",
                          percent_panel: bool = False) -> Path | None:
    """`cost_figure` written to a PNG at `path` (None, nothing written, when no record has a cost)."""
    if not any(r.get(COST) is not None for reps in series.values() for rep in reps for r in rep):
        return None
    return save_figure(cost_figure(series, percent_panel=percent_panel), path, title)
