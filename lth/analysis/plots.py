"""Figures: test accuracy and early-stop iteration against percent of weights remaining
(log axis, decreasing to the right, as in Frankle & Carbin 2019)."""

from __future__ import annotations

import io
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lth.analysis.runs import legend_labels
from lth.store import ReplicateDir, read_config, replicate_paths, resolve_run, write_atomic
from lth.store.io import check_output_path
from lth.store.records import SPREAD, aggregate


def pyplot() -> Any:
    """matplotlib's pyplot, imported on first use (it costs ~0.5 s): the Agg backend (files only, no
    window) outside Jupyter; in Jupyter the inline backend is kept."""
    import matplotlib  # heavy: only when a figure is drawn

    if "ipykernel" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # heavy, as above

    return plt


def formatter(function: Any) -> Any:
    """A matplotlib tick formatter from `function(value, position)`."""
    from matplotlib.ticker import FuncFormatter  # heavy: see pyplot

    return FuncFormatter(function)


Replicates = Sequence[Sequence[dict[str, Any]]]  # replicate -> level records


def save_figure(fig: Any, path: str | Path, title: str = "") -> Path:
    """Title, tight layout, write a PNG atomically (creating its folder; an older file stays whole if
    writing fails), close the figure; returns the path."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = check_output_path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=120, format="png")
    pyplot().close(fig)
    write_atomic(path, buffer.getvalue())
    return path


def _percent_axis(ax: Any, lowest: float) -> None:
    ax.set_xscale("log")
    ax.set_xticks([t for t in (100, 50, 20, 10, 5, 2, 1, 0.5, 0.2, 0.1) if t >= lowest * 0.8])
    ax.xaxis.set_minor_formatter(formatter(lambda v, _: ""))
    ax.xaxis.set_major_formatter(formatter(lambda v, _: f"{v:g}"))
    ax.invert_xaxis()
    ax.set_xlabel("percent of weights remaining")
    ax.grid(True, which="both", alpha=0.3)


def _band(ax: Any, agg: list[dict[str, Any]], key: str, scale: float, style: str, color: str, label: str, alpha=1.0):
    """The mean of `key` against % remaining with a +-1 sample-std band; levels without it are left
    out (no early stop without a validation set), nothing is drawn if none has it."""
    rows = [r for r in agg if r.get(key) is not None]
    if not rows:
        return
    x = np.array([r["percent_remaining"] for r in rows])
    y = scale * np.array([r[key] for r in rows])
    s = scale * np.array([r.get(f"{key}_{SPREAD}") or 0.0 for r in rows])
    ax.plot(x, y, style, color=color, label=label, alpha=alpha)
    if np.any(s > 0):
        ax.fill_between(x, y - s, y + s, color=color, alpha=0.15 * alpha)


def plot_accuracy_vs_sparsity(series: Mapping[str, Replicates], path: str | Path, title: str = "",
                              early_stop_panel: bool = False) -> Path:
    """One line per series (label -> replicates' level records), mean with a +-1 sample-std band:
    early-stop test accuracy (solid) and end-of-training test accuracy (dashed). With
    `early_stop_panel`, a second panel shows the early-stop iteration."""
    cols = 2 if early_stop_panel else 1
    fig, axes = pyplot().subplots(1, cols, figsize=(7 * cols, 4.5), squeeze=False)
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


def plot_runs(names: Sequence[str], out: str | Path, root: str | Path | None = None) -> Path:
    """`lth plot`: overlay several runs (mean and spread over replicates) and their early-stop iterations."""
    dirs = [resolve_run(n, root) for n in names]
    configs = [read_config(d) for d in dirs]
    series = {}
    for label, d in zip(legend_labels(configs), dirs):
        reps = [ReplicateDir(p).read_results() for p in replicate_paths(d)]
        series[label] = [r for r in reps if r]
    return plot_accuracy_vs_sparsity(series, out, early_stop_panel=True)


def plot_run(path: str | Path) -> Path:
    """Redraw a run's accuracy_vs_sparsity.png: the main line and every control found on disk."""
    path = Path(path)
    config = read_config(path)
    reps = [ReplicateDir(r, writable=False) for r in replicate_paths(path)]
    series = {config.get("name", path.name): [rep.read_results() for rep in reps]}
    for name in sorted({name for rep in reps for name in rep.control_names()}):
        series[name] = [rep.control(name).read_results() for rep in reps if rep.control(name).results_path.exists()]
    dataset = config.get("data", {}).get("name")
    title = f"{config.get('name')}: {config.get('model')} on {dataset}, rewind to {config.get('rewind')}"
    return plot_accuracy_vs_sparsity(series, path / "accuracy_vs_sparsity.png", title=title)
