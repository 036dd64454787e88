"""Figures: test accuracy and early-stop iteration against percent of weights remaining
(log axis, decreasing to the right, as in Frankle & Carbin 2019)."""

from __future__ import annotations

import io
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lth.analysis.chart import key_line, legend_outside, legend_size, new_figure, percent_axis, series_style, \
    set_title
from lth.analysis.runs import legend_labels
from lth.store import ReplicateDir, read_config, replicate_paths, resolve_run, write_atomic
from lth.store.io import check_output_path
from lth.store.records import SPREAD, accuracy, aggregate


def pyplot() -> Any:
    """matplotlib's pyplot, imported on first use (it costs ~0.5 s): the Agg backend (files only, no
    window) outside Jupyter; in Jupyter the inline backend is kept."""
    import matplotlib  # heavy: only when a figure is drawn

    if "ipykernel" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # heavy, as above

    return plt


Replicates = Sequence[Sequence[dict[str, Any]]]  # replicate -> level records


def save_figure(fig: Any, path: str | Path, title: str = "") -> Path:
    """Title, layout (tight unless the figure has its own), write a PNG atomically (creating its
    folder; an older file stays whole if writing fails), close the figure; returns the path."""
    set_title(fig, title)
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    path = check_output_path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=120, format="png")
    pyplot().close(fig)
    write_atomic(path, buffer.getvalue())
    return path


Points = list[tuple[float, float, float]]  # (percent remaining, mean, sample std or 0)


def points(agg: list[dict[str, Any]], key: Any, scale: float, x: str = "percent_remaining") -> Points:
    """(x, mean, std) of the levels where `key` (a field name, or a function of the aggregated record
    giving one, None to leave the level out) and `x` (default: percent remaining) have a value."""
    out = []
    for r in agg:
        field = key(r) if callable(key) else key
        if field is not None and r.get(field) is not None and r.get(x) is not None:
            out.append((r[x], scale * r[field], scale * (r.get(f"{field}_{SPREAD}") or 0.0)))
    return out


def headline_field(record: dict[str, Any]) -> str | None:
    """The field of a level's headline accuracy (`lth.store.records.accuracy`): early stop, else end
    of training."""
    for field in ("early_stop_test_accuracy", "test_accuracy"):
        if record.get(field) is not None:
            return field
    return None


def band(ax: Any, points: Points, color: str, marker: str, label: str, linestyle: str = "-",
          alpha: float = 1.0, hollow: bool = False) -> None:
    """A line through the means with a +-1 sample-std band (where the replicates differ)."""
    if not points:
        return
    x, y, s = (np.array(column) for column in zip(*points))
    ax.plot(x, y, linestyle=linestyle, marker=marker, markersize=5, color=color, label=label, alpha=alpha,
            markerfacecolor="none" if hollow else color)
    if np.any(s > 0):
        ax.fill_between(x, y - s, y + s, color=color, alpha=0.15 * alpha)


def _dense(agg: list[dict[str, Any]]) -> float | None:
    """The headline accuracy (%) of the dense network: level 0 at 100 % of the weights, if there."""
    for r in agg:
        if r["level"] == 0 and abs(r["percent_remaining"] - 100) < 1e-6 and accuracy(r) is not None:
            return 100 * accuracy(r)
    return None


def _ended(record: dict[str, Any]) -> str | None:
    """The end-of-training field where it is not already the headline (a level with an early stop)."""
    return "test_accuracy" if record.get("early_stop_test_accuracy") is not None else None


def _keys(aggs: dict[str, list[dict[str, Any]]]) -> list[Any]:
    """The legend entries that explain the line styles in use."""
    records = [r for agg in aggs.values() for r in agg]
    stopped = any(_ended(r) for r in records)
    if stopped and not all(_ended(r) for r in records):
        solid = "early stop, else end of training"
    else:
        solid = "early stop" if stopped else "end of training (no validation set)"
    keys = [key_line(solid, marker="o")]
    if stopped:
        keys.append(key_line("end of training", "--", "o", hollow=True))
    if any(_dense(agg) is not None for agg in aggs.values()):
        keys.append(key_line("dense network (level 0)", ":"))
    return keys


def accuracy_figure(series: Mapping[str, Replicates], title: str = "", early_stop_panel: bool = False) -> Any:
    """One line per series (label -> replicates' level records), mean with a +-1 sample-std band of
    the headline test accuracy (solid: early stop, else end of training), the end of training dashed
    where there is an early stop, and the dense network's accuracy (level 0) dotted. With
    `early_stop_panel` and an early stop in some series, a second panel shows the early-stop
    iteration. One legend beside the axes; past 10 lines the colours repeat with other markers.
    Returns a matplotlib Figure."""
    aggs = {label: agg for label, reps in series.items() if (agg := aggregate([list(r) for r in reps]))}
    stops = {label: points(agg, "early_stop_iteration", 1) for label, agg in aggs.items()}
    panels = 2 if early_stop_panel and any(stops.values()) else 1
    keys, handles = _keys(aggs), []
    labels = [f"{label} (n={len(series[label])})" if len(series[label]) > 1 else label for label in aggs]
    dense = {label: _dense(agg) for label, agg in aggs.items()}
    labels = [f"{name}, dense {dense[label]:.1f} %" if dense[label] is not None else name
              for name, label in zip(labels, aggs)]
    _, legend_width, legend_height = legend_size([k.get_label() for k in keys] + labels)
    fig, axes = new_figure(1, panels, 6.5 * panels + legend_width, max(4.5, legend_height))
    ax = axes[0, 0]
    for i, (label, name) in enumerate(zip(aggs, labels)):
        color, marker = series_style(i)
        band(ax, points(aggs[label], headline_field, 100), color, marker, name)
        band(ax, points(aggs[label], _ended, 100), color, marker, f"{name}, end of training", "--", alpha=0.6,
              hollow=True)
        if dense[label] is not None:
            ax.axhline(dense[label], color=color, linestyle=":", linewidth=1.2,
                       label=f"dense network (level 0) of {label}: {dense[label]:.1f} %")
        if panels == 2:
            band(axes[0, 1], stops[label], color, marker, name)
        handles.append(key_line(name, marker=marker, color=color))
    ax.set_ylabel("test accuracy (%)")
    if panels == 2:
        axes[0, 1].set_ylabel("early-stop iteration")
    percents = [r["percent_remaining"] for agg in aggs.values() for r in agg]
    for panel in axes[0]:
        percent_axis(panel, percents)
    legend_outside(axes[0, -1], keys + handles)
    set_title(fig, title)
    return fig


def plot_accuracy_vs_sparsity(series: Mapping[str, Replicates], path: str | Path, title: str = "",
                              early_stop_panel: bool = False) -> Path:
    """`accuracy_figure` written to a PNG at `path`; returns the path."""
    return save_figure(accuracy_figure(series, early_stop_panel=early_stop_panel), path, title)


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
    """Redraw a run's accuracy_vs_sparsity.png and accuracy_vs_cost.png (`lth.analysis.cost_chart`):
    the main line and every control found on disk. Returns the first's path."""
    from lth.analysis.cost_chart import plot_accuracy_vs_cost  # it imports this module: here, not at the top

    path = Path(path)
    config = read_config(path)
    reps = [ReplicateDir(r, writable=False) for r in replicate_paths(path)]
    series = {config.get("name", path.name): [rep.read_results() for rep in reps]}
    for name in sorted({name for rep in reps for name in rep.control_names()}):
        series[name] = [rep.control(name).read_results() for rep in reps if rep.control(name).results_path.exists()]
    dataset = config.get("data", {}).get("name")
    title = f"{config.get('name')}: {config.get('model')} on {dataset}, rewind to {config.get('rewind')}"
    plot_accuracy_vs_cost(series, path / "accuracy_vs_cost.png", title=title)
    return plot_accuracy_vs_sparsity(series, path / "accuracy_vs_sparsity.png", title=title)
