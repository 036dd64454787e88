"""Figures: test accuracy and early-stop iteration against percent of weights remaining
(log axis, decreasing to the right, as in Frankle & Carbin 2019)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from lth.runs import aggregate  # noqa: E402

Replicates = Sequence[Sequence[dict[str, Any]]]  # replicate -> level records


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
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


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
