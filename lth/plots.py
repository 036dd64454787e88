"""Figures: test accuracy and early-stop iteration against percent of weights remaining
(log axis, decreasing to the right, as in Frankle & Carbin 2019)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import sys

import matplotlib

if "ipykernel" not in sys.modules:  # files only, no window; in Jupyter keep the inline backend
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from lth.runs import aggregate  # noqa: E402

Replicates = Sequence[Sequence[dict[str, Any]]]  # replicate -> level records


def save_figure(fig: Any, path: str | Path, title: str = "") -> Path:
    """Title, tight layout, write a PNG (creating its folder), close the figure; returns the path."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _percent_axis(ax: Any, lowest: float) -> None:
    ax.set_xscale("log")
    ax.set_xticks([t for t in (100, 50, 20, 10, 5, 2, 1, 0.5, 0.2, 0.1) if t >= lowest * 0.8])
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.invert_xaxis()
    ax.set_xlabel("percent of weights remaining")
    ax.grid(True, which="both", alpha=0.3)


def _band(ax: Any, agg: list[dict[str, Any]], key: str, scale: float, style: str, color: str, label: str, alpha=1.0):
    x = np.array([r["percent_remaining"] for r in agg])
    y = scale * np.array([r[key] for r in agg])
    s = scale * np.array([r[f"{key}_std"] for r in agg])
    ax.plot(x, y, style, color=color, label=label, alpha=alpha)
    if np.any(s > 0):
        ax.fill_between(x, y - s, y + s, color=color, alpha=0.15 * alpha)


def plot_accuracy_vs_sparsity(series: Mapping[str, Replicates], path: str | Path, title: str = "",
                              early_stop_panel: bool = False) -> Path:
    """One line per series (label -> replicates' level records), mean with a +-1 std band:
    early-stop test accuracy (solid) and end-of-training test accuracy (dashed). With
    `early_stop_panel`, a second panel shows the early-stop iteration."""
    cols = 2 if early_stop_panel else 1
    fig, axes = plt.subplots(1, cols, figsize=(7 * cols, 4.5), squeeze=False)
    lowest = 100.0
    for i, (label, reps) in enumerate(series.items()):
        agg = aggregate([list(r) for r in reps])
        if not agg:
            continue
        lowest = min(lowest, min(r["percent_remaining"] for r in agg))
        n = f" (n={len(reps)})" if len(reps) > 1 else ""
        _band(axes[0, 0], agg, "early_stop_test_accuracy", 100, "o-", f"C{i}", f"{label}{n}, early stop")
        _band(axes[0, 0], agg, "test_accuracy", 100, "x--", f"C{i}", f"{label}{n}, end of training", alpha=0.6)
        if early_stop_panel:
            _band(axes[0, 1], agg, "early_stop_iteration", 1, "o-", f"C{i}", f"{label}{n}")
    axes[0, 0].set_ylabel("test accuracy (%)")
    if early_stop_panel:
        axes[0, 1].set_ylabel("early-stop iteration")
    for ax in axes[0]:
        _percent_axis(ax, lowest)
        ax.legend(fontsize=7)
    return save_figure(fig, path, title)


def legend_labels(configs: Sequence[dict[str, Any]]) -> list[str]:
    """Experiment name plus the config fields that differ between the runs (dotted names)."""
    import json

    def flat(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
        out: dict[str, str] = {}
        for key, value in d.items():
            if isinstance(value, dict):
                out.update(flat(value, f"{prefix}{key}."))
            else:
                out[f"{prefix}{key}"] = json.dumps(value)
        return out

    flats = [flat(c) for c in configs]
    keys = sorted({k for f in flats for k in f if k != "name"})
    differing = [k for k in keys if len({f.get(k) for f in flats}) > 1]
    labels = []
    for config, f in zip(configs, flats):
        parts = [f"{k}={f.get(k, '-').strip(chr(34))}" for k in differing]
        labels.append(" ".join([config.get("name", "run"), *parts]))
    return labels


def plot_runs(names: Sequence[str], out: str | Path, root: str | Path | None = None) -> Path:
    """`lth plot`: overlay several runs (mean and spread over replicates) and their early-stop iterations."""
    import json

    from lth.runs import ReplicateDir, resolve_run

    dirs = [resolve_run(n, root) for n in names]
    configs = [json.loads((d / "config.json").read_text()) for d in dirs]
    series = {}
    for label, d in zip(legend_labels(configs), dirs):
        reps = [ReplicateDir(p).read_results() for p in sorted(d.glob("replicate_[0-9][0-9]"))]
        series[label] = [r for r in reps if r]
    return plot_accuracy_vs_sparsity(series, out, early_stop_panel=True)


def plot_run(path: str | Path) -> Path:
    """Redraw a run's accuracy_vs_sparsity.png: the main line and every control found on disk."""
    import json

    from lth.runs import ReplicateDir

    path = Path(path)
    config = json.loads((path / "config.json").read_text())
    reps = sorted(path.glob("replicate_[0-9][0-9]"))
    series = {config.get("name", path.name): [ReplicateDir(r).read_results() for r in reps]}
    controls = sorted({c.name for r in reps for c in (r / "controls").glob("*") if c.is_dir()})
    for name in controls:
        series[name] = [ReplicateDir(r / "controls" / name).read_results() for r in reps
                        if (r / "controls" / name / "results.json").exists()]
    title = f"{config.get('name')}: {config.get('model')} on {config.get('data', {}).get('name')}, rewind to {config.get('rewind')}"
    return plot_accuracy_vs_sparsity(series, path / "accuracy_vs_sparsity.png", title=title)


# --------------------------------------------------------------------------- figures for exploring runs
# These return a matplotlib Figure (not registered with pyplot, so nothing accumulates): a notebook
# shows it as a cell's value (after `%matplotlib inline`); elsewhere call `fig.savefig(path)`.
# The numbers come from `lth.analysis`.


def _figure(nrows: int, ncols: int, width: float, height: float) -> tuple[Any, np.ndarray]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=False)


CURVE_LABELS = {"train_loss": "training loss (last batch)", "val_loss": "validation loss",
                "val_accuracy": "validation accuracy", "test_loss": "test loss", "test_accuracy": "test accuracy"}


def plot_training_curves(curves: Mapping[str, Mapping[str, Any]],
                         metrics: Sequence[str] = ("val_loss", "test_accuracy"), title: str = "") -> Any:
    """One panel per metric against the iteration, one line per entry of `curves` (label -> the
    arrays of `lth.analysis.training_curves`); a dot marks each line's early-stop evaluation (the
    first minimum of the validation loss)."""
    from lth.analysis import early_stop_index

    fig, axes = _figure(1, len(metrics), 5.0 * len(metrics), 3.8)
    for i, (label, c) in enumerate(curves.items()):
        stop = early_stop_index(c)
        for ax, metric in zip(axes[0], metrics):
            x, y = np.asarray(c["iteration"]), np.asarray(c[metric])
            ax.plot(x, y, "-", color=f"C{i}", label=label)
            ax.plot(x[stop], y[stop], "o", color=f"C{i}")
    for ax, metric in zip(axes[0], metrics):
        ax.set_xlabel("iteration")
        ax.set_ylabel(CURVE_LABELS.get(metric, metric))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return fig


def plot_layer_density_heatmap(records: Any, title: str = "") -> Any:
    """Levels (rows) x prunable layers (columns), coloured by the percent of the layer's weights
    remaining (log scale); `records` are one replicate's level records or
    `lth.analysis.layer_density_table` of them."""
    from matplotlib.colors import LogNorm

    from lth.analysis import Table, layer_density_table

    table = records if isinstance(records, Table) else layer_density_table(records)
    layers = list(table.columns[2:])
    values = 100 * np.array([row[2:] for row in table.rows], dtype=float).reshape(len(table), len(layers))
    fig, axes = _figure(1, 1, 2.5 + 1.3 * max(len(layers), 1), max(2.8, 1.2 + 0.32 * len(table)))
    ax = axes[0, 0]
    positive = values[values > 0]
    norm = LogNorm(vmin=max(positive.min(), 0.01) if positive.size else 0.01, vmax=100)
    image = ax.imshow(np.where(values > 0, values, np.nan), aspect="auto", cmap="viridis", norm=norm)
    bar = fig.colorbar(image, ax=ax, label="percent of the layer remaining")
    bar.set_ticks([t for t in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 50, 70, 100) if norm.vmin <= t <= 100])
    bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    bar.ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
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
    fig, axes = _figure(1, 1, size + 1.2, size)
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
    from lth.analysis import split_by_mask

    split = split_by_mask(params, mask, alive)
    fig, axes = _figure(1, len(split), 4.0 * len(split), 3.3)
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
