"""What `lth run` and `lth control` print when they end: the mean +- sample std per branch and level
over the replicates (with several), then where the results and the plot are, each path once."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lth.analysis.sweeps import run_summary
from lth.store import RunDir


def print_paths(*paths: tuple[str, Sequence[Path]]) -> None:
    """One line per path, under its label ("results", "plot", ...), the paths aligned."""
    width = max(len(label) for label, _ in paths) + 1
    for label, files in paths:
        for i, path in enumerate(files):
            print(f"{label + ':' if i == 0 else '':<{width}} {path}", flush=True)


def report_run_end(run: RunDir, branches: Sequence[str], results: Sequence[Path], summary: bool = True) -> None:
    """The summary over the run's replicates (with more than one; with `summary`) of the main line and
    `branches` (controls), then the `results` files and the run's plot."""
    replicates = len(run.replicates())
    if summary and replicates > 1:
        print(f"per level, mean +- sample std over {replicates} replicates:")
        print(run_summary(run.path, branches), flush=True)
    print_paths(("results", results), ("plot", run_plots(run)))


def run_plots(run: RunDir) -> list[Path]:
    """A run directory's charts: accuracy vs % of weights, and vs training cost where it was drawn."""
    cost = run.path / "accuracy_vs_cost.png"
    return [run.plot_path, *([cost] if cost.exists() else [])]
