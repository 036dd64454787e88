"""Figures: test accuracy against percent of weights remaining (log axis, decreasing to the right)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402


def plot_accuracy_vs_sparsity(
    series: Mapping[str, Sequence[dict[str, Any]]], path: str | Path, title: str = ""
) -> Path:
    """One line per series (label -> level records): early-stop test accuracy (solid) and final
    test accuracy (dashed), x = percent of weights remaining on a log axis as in Frankle & Carbin."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (label, records) in enumerate(series.items()):
        pct = [r["percent_remaining"] for r in records]
        color = f"C{i}"
        ax.plot(pct, [100 * r["early_stop_test_accuracy"] for r in records], "o-", color=color,
                label=f"{label} (early stop)")
        ax.plot(pct, [100 * r["test_accuracy"] for r in records], "x--", color=color, alpha=0.6,
                label=f"{label} (end of training)")
    ax.set_xscale("log")
    lowest = min((r["percent_remaining"] for rs in series.values() for r in rs), default=1.0)
    ax.set_xticks([t for t in (100, 50, 20, 10, 5, 2, 1, 0.5, 0.2, 0.1) if t >= lowest * 0.8])
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.invert_xaxis()
    ax.set_xlabel("percent of weights remaining")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
