"""Figures for exploring runs. These return a matplotlib Figure (not registered with pyplot, so
nothing accumulates): a notebook shows it as a cell's value (after `%matplotlib inline`); elsewhere
call `fig.savefig(path)`. The numbers come from `lth.analysis`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lth.analysis.chart import formatter, legend_outside, legend_size, new_figure, series_style, set_title
from lth.analysis.masks import split_by_mask
from lth.analysis.runs import early_stop_index
from lth.analysis.tables import Table, layer_density_table
from lth.errors import LthError


CURVE_LABELS = {"train_loss": "training loss (last batch)", "val_loss": "validation loss",
                "val_accuracy": "validation accuracy", "test_loss": "test loss", "test_accuracy": "test accuracy"}


def _recorded(curves: Mapping[str, Mapping[str, Any]], metric: str) -> bool:
    """Whether any of the curves has a finite value of `metric` (a run without a validation set
    records no validation loss or accuracy)."""
    return any(np.isfinite(np.asarray(c.get(metric, []), dtype=float)).any() for c in curves.values())


def plot_training_curves(curves: Mapping[str, Mapping[str, Any]], metrics: Sequence[str] | None = None,
                         title: str = "") -> Any:
    """One panel per metric against the iteration, one line per entry of `curves` (label -> the
    arrays of `lth.analysis.training_curves`), one legend beside the panels; a dot marks each line's
    early-stop evaluation (the first minimum of the validation loss) where it has one. `metrics`:
    by default the validation loss and the test accuracy, the training loss in place of the
    validation loss where no curve has one; a metric no curve recorded gets no (empty) panel, the
    title says it was left out."""
    if metrics is None:
        metrics = ("val_loss" if _recorded(curves, "val_loss") else "train_loss", "test_accuracy")
    missing = [m for m in metrics if not _recorded(curves, m)]
    shown = [m for m in metrics if m not in missing]
    if not shown:
        known = [m for m in CURVE_LABELS if _recorded(curves, m)]
        raise LthError(f"none of {list(metrics)} was recorded in these curves: choose from {known}")
    labels = list(curves)
    _, legend_width, _ = legend_size(labels)
    fig, axes = new_figure(1, len(shown), 5.0 * len(shown) + legend_width, 3.8)
    for i, (label, c) in enumerate(curves.items()):
        stop = early_stop_index(c)
        color, marker = series_style(i)
        for ax, metric in zip(axes[0], shown):
            x, y = np.asarray(c["iteration"]), np.asarray(c[metric])
            ax.plot(x, y, "-", color=color, label=label)
            if stop is not None:
                ax.plot(x[stop], y[stop], marker, color=color, label="_early stop")
    for ax, metric in zip(axes[0], shown):
        ax.set_xlabel("iteration")
        ax.set_ylabel(CURVE_LABELS.get(metric, metric))
        ax.grid(True, alpha=0.3)
    legend_outside(axes[0, -1], [line for line in axes[0, 0].get_lines() if line.get_label() in curves])
    note = f"not recorded: {', '.join(CURVE_LABELS.get(m, m) for m in missing)}" if missing else ""
    set_title(fig, "\n".join(t for t in (title, note) if t))
    return fig


def plot_layer_density_heatmap(records: Any, title: str = "") -> Any:
    """Levels (rows) x prunable layers (columns), coloured by the percent of the layer's weights
    remaining (log scale); `records` are one replicate's level records or
    `lth.analysis.layer_density_table` of them."""
    from matplotlib.colors import LogNorm  # heavy: only when a figure is drawn

    table = records if isinstance(records, Table) else layer_density_table(records)
    layers = list(table.columns[2:])
    values = 100 * np.array([row[2:] for row in table.rows], dtype=float).reshape(len(table), len(layers))
    fig, axes = new_figure(1, 1, 2.5 + 1.3 * max(len(layers), 1), max(2.8, 1.2 + 0.32 * len(table)))
    ax = axes[0, 0]
    positive = values[values > 0]
    norm = LogNorm(vmin=max(positive.min(), 0.01) if positive.size else 0.01, vmax=100)
    image = ax.imshow(np.where(values > 0, values, np.nan), aspect="auto", cmap="viridis", norm=norm)
    bar = fig.colorbar(image, ax=ax, label="percent of the layer remaining")
    bar.set_ticks([t for t in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 50, 70, 100) if norm.vmin <= t <= 100])
    bar.ax.yaxis.set_major_formatter(formatter(lambda v, _: f"{v:g}"))
    bar.ax.yaxis.set_minor_formatter(formatter(lambda v, _: ""))
    ax.set_xticks(range(len(layers)), layers, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(table)), [f"{int(lvl)} ({pct:.3g}%)" for lvl, pct in
                                      zip(table.column("level"), table.column("percent_remaining"))], fontsize=8)
    ax.set_ylabel("level (% of weights remaining)")
    if values.size <= 400:
        for (i, j), v in np.ndenumerate(values):
            ax.text(j, i, f"{v:.3g}", ha="center", va="center", fontsize=7,
                    color="black" if v > 10 ** (0.5 * np.log10(norm.vmin * 100)) else "white")
    if title:
        ax.set_title(title)
    return fig


def plot_overlap_matrix(matrix: Any, labels: Sequence[str] | None = None, title: str = "") -> Any:
    """A heat map of pairwise mask overlaps (`lth.analysis.mask_overlap_matrix`), 0 to 1."""
    matrix = np.asarray(matrix, dtype=float)
    n = matrix.shape[0]
    labels = list(labels) if labels is not None else [str(i) for i in range(n)]
    size = 2.5 + 0.45 * n
    fig, axes = new_figure(1, 1, size + 1.2, size)
    ax = axes[0, 0]
    image = ax.imshow(matrix, vmin=0, vmax=1, cmap="magma")
    fig.colorbar(image, ax=ax, label="overlap |a AND b| / |a OR b|")
    ax.set_xticks(range(n), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    if n <= 20:
        for (i, j), v in np.ndenumerate(matrix):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="black" if v > 0.6 else "white")
    if title:
        ax.set_title(title)
    return fig


def plot_weight_histogram(params: Any, mask: Any, alive: Any = None, bins: int = 60, title: str = "") -> Any:
    """Per prunable layer, histograms of the weights `mask` keeps (survivors) and prunes.

    With `alive` (e.g. the previous level's mask) only the weights it keeps are counted: the
    trained params of level L, the mask of level L+1 and alive = level L's mask show what magnitude
    pruning removed at level L+1 (`lth.analysis.split_by_mask`)."""
    split = split_by_mask(params, mask, alive)
    fig, axes = new_figure(1, len(split), 4.0 * len(split), 3.3)
    for ax, (name, (kept, pruned)) in zip(axes[0], split.items()):
        both = np.concatenate([kept, pruned]) if kept.size + pruned.size else np.zeros(1)
        edges = np.linspace(both.min(), both.max() if both.max() > both.min() else both.min() + 1, bins + 1)
        ax.hist(kept, bins=edges, color="C0", alpha=0.7, label=f"kept ({kept.size})")
        ax.hist(pruned, bins=edges, color="C3", alpha=0.7, label=f"pruned ({pruned.size})")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("weight")
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("count")
    if title:
        fig.suptitle(title)
    return fig
