"""Figures of instability analysis (Frankle et al. 2020): the test error along the linear path
between two copies for several rewind steps, and the error barrier against the rewind step."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lth.analysis.chart import new_figure
from lth.analysis.plots import pyplot, save_figure
from lth.lottery.path import STABLE_BARRIER


def _path_axis(ax: Any, legend: bool) -> None:
    """Labels, limits and grid of a test-error-against-α panel (and its legend when it has lines)."""
    ax.set_xlabel("interpolation α")
    ax.set_ylabel("test error (%)")
    ax.set_xlim(0, 1)
    ax.grid(True, alpha=0.3)
    if legend:
        ax.legend(fontsize="small")


def plot_instability(records: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Two panels from `lth.lottery.instability.instability` records: test error (%) against α, one line
    per rewind step k; and the error barrier (percentage points) against k (symlog axis, so that
    k = 0 shows), with the 2-point "stable" threshold dashed. Writes a PNG; returns its path."""
    records = sorted(records, key=lambda r: r["rewind_step"])
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = plt.cm.viridis(np.linspace(0.0, 0.9, max(len(records), 1)))
    for record, color in zip(records, colors):
        left.plot(record["alphas"], 100 * np.asarray(record["errors"]), "-", color=color,
                  label=f"k = {record['rewind_step']}")
    _path_axis(left, bool(records))

    steps = np.array([r["rewind_step"] for r in records], dtype=float)
    barriers = 100 * np.array([r["barrier"] for r in records], dtype=float)
    right.plot(steps, barriers, "o-", color="C0")
    right.axhline(100 * STABLE_BARRIER, color="gray", linestyle="--", linewidth=1, label="stable (2 points)")
    positive = steps[steps > 0]
    right.set_xscale("symlog", linthresh=float(positive.min()) if positive.size else 1.0)
    right.set_xlim(0, 1.5 * float(steps.max()) if steps.size and steps.max() > 0 else 1.0)
    right.set_ylim(bottom=0)
    right.set_xlabel("rewind step k (iterations)")
    right.set_ylabel("error barrier (percentage points)")
    right.grid(True, which="both", alpha=0.3)
    right.legend(fontsize="small")
    return save_figure(fig, path, title)


def plot_paths(paths: Mapping[str, dict[str, Any]], title: str = "") -> Any:
    """Test error (%) against α of several instability records on one panel, one line per entry of
    `paths` (label -> record, e.g. one per BatchNorm treatment), each labelled with its barrier.
    Returns a matplotlib Figure (shown by Jupyter, saved with `save_figure`)."""
    fig, axes = new_figure(1, 1, 5.5, 3.8)
    ax = axes[0, 0]
    for i, (label, record) in enumerate(paths.items()):
        ax.plot(record["alphas"], 100 * np.asarray(record["errors"]), ".-", color=f"C{i}",
                label=f"{label} (barrier {100 * record['barrier']:.2f} points)")
    _path_axis(ax, bool(paths))
    if title:
        fig.suptitle(title)
    return fig
