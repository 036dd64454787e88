"""What the figures share: a figure not registered with pyplot, a log axis of the percent of weights
remaining with readable tick labels at any span, a style per line that stays distinct beyond the
colour cycle, and a legend beside the axes (never over the curves)."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

COLORS = 10  # matplotlib's default colour cycle, C0 ... C9
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")  # a new marker each time the colours come round again
PERCENT_TICKS = (100, 50, 20, 10, 5, 2, 1, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01)
MIN_TICKS = 4  # fewer of PERCENT_TICKS in the data's span (under a decade): label the data's own values
LEGEND_FONT = 7  # points
LEGEND_ROWS = 28  # entries in one legend column before another column starts


def new_figure(nrows: int, ncols: int, width: float, height: float) -> tuple[Any, np.ndarray]:
    """A matplotlib Figure with constrained layout (not registered with pyplot, so nothing
    accumulates) and its axes as an (nrows, ncols) array."""
    from matplotlib.figure import Figure  # heavy (~0.5 s): only when a figure is drawn

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def formatter(function: Any) -> Any:
    """A matplotlib tick formatter from `function(value, position)`."""
    from matplotlib.ticker import FuncFormatter  # heavy: see new_figure

    return FuncFormatter(function)


def series_style(index: int) -> tuple[str, str]:
    """(colour, marker) of the index-th line: the colour cycle first, then the same colours with the
    next marker, so that no two of len(MARKERS) * COLORS lines look alike."""
    return f"C{index % COLORS}", MARKERS[(index // COLORS) % len(MARKERS)]


def percent_ticks(values: Iterable[float]) -> list[float]:
    """Tick positions for percents of weights remaining: the 1-2-5 ticks (100, 50, 20, ...) within
    the values' span; where fewer than MIN_TICKS of those fall in it (a span under a decade), the
    values themselves, thinned so that neighbours stay at least 1/7 of the span apart."""
    values = sorted({float(v) for v in values if v and v > 0}, reverse=True)
    if not values:
        return [100.0]
    high, low = values[0], values[-1]
    standard = [float(t) for t in PERCENT_TICKS if low * 0.8 <= t <= high * 1.25]
    if len(standard) >= MIN_TICKS:
        return standard
    gap = max(math.log10(high / low), 0.1) / 7
    ticks = [high]
    for value in values[1:]:
        if math.log10(ticks[-1] / value) >= gap:
            ticks.append(value)
    return ticks


def percent_axis(ax: Any, values: Iterable[float]) -> None:
    """A log x axis of the percent of weights remaining, decreasing to the right (as in Frankle &
    Carbin 2019), its ticks labelled at `percent_ticks` of the plotted values."""
    ax.set_xscale("log")
    ax.set_xticks(percent_ticks(values))
    ax.xaxis.set_minor_formatter(formatter(lambda v, _: ""))
    ax.xaxis.set_major_formatter(formatter(lambda v, _: f"{v:.3g}"))
    ax.invert_xaxis()
    ax.set_xlabel("percent of weights remaining")
    ax.grid(True, which="both", alpha=0.3)


def legend_size(labels: Sequence[str]) -> tuple[int, float, float]:
    """(columns, width, height) in inches of a legend of these labels at LEGEND_FONT: what a figure
    adds to its width to hold the legend beside its axes, and the height it needs."""
    columns = max(1, math.ceil(len(labels) / LEGEND_ROWS))
    rows = math.ceil(len(labels) / columns) if labels else 0
    char = 0.55 * LEGEND_FONT / 72  # an average character's width
    width = columns * (0.7 + char * max((len(label) for label in labels), default=0))
    return columns, width, 0.6 + rows * 1.75 * LEGEND_FONT / 72


def legend_outside(ax: Any, handles: Sequence[Any]) -> Any:
    """The figure's one legend, beside `ax` (its rightmost panel) to the right, top-aligned with it, in
    as many columns as `legend_size` says: constrained layout makes room for it, and a figure title
    stays above it. Returns the legend."""
    columns, _, _ = legend_size([h.get_label() for h in handles])
    return ax.legend(handles=list(handles), loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
                     fontsize=LEGEND_FONT, ncols=columns)


def set_title(fig: Any, title: str) -> None:
    """The figure's title, each line wrapped to the figure's width (a long run name is not cut off)."""
    width = max(20, int(fig.get_figwidth() * 72 / (0.6 * 12)))  # characters of the 12-point title font
    if title:
        fig.suptitle("\n".join(textwrap.fill(line, width) for line in title.splitlines()))


def key_line(label: str, linestyle: str = "-", marker: str = "", hollow: bool = False, color: str = "0.35") -> Any:
    """A legend entry (a line not drawn on any axes): grey by default, to explain a line style."""
    from matplotlib.lines import Line2D  # heavy: see new_figure

    return Line2D([], [], color=color, linestyle=linestyle, marker=marker, markersize=5, label=label,
                  markerfacecolor="none" if hollow else color)
