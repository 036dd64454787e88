"""A sweep's finished runs side by side: per point of its axes, branch (the main line or a control)
and level, the mean and sample standard deviation (ddof=1) over the point's replicates -- as a
`Table`, CSV and text -- and one overlay plot of accuracy vs. percent of weights remaining.

A *group* is (label, axis values, run directories): the runs of one point (its replicates); every
replicate directory of every run counts as one replicate.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lth.analysis.cost_chart import flops_text, plot_accuracy_vs_cost
from lth.analysis.plots import plot_accuracy_vs_sparsity
from lth.analysis.runs import Run
from lth.analysis.tables import Table
from lth.store.records import SPREAD, aggregate

Group = tuple[str, Mapping[str, Any], Sequence[Path]]
SUMMARY_KEYS = ("percent_remaining", "early_stop_test_accuracy", "test_accuracy", "best_test_accuracy",
                "cumulative_train_flops",
                "early_stop_iteration")


def _branch_records(run: Run, branch: str) -> list[list[dict[str, Any]]]:
    """Each replicate's level records of `branch` ("main" or a control name) in one run."""
    if branch == "main":
        return [r for r in run.records if r]
    return [r for r in run.controls.get(branch, []) if r]


def sweep_summary(groups: Sequence[Group], branches: Sequence[str] = (), axes: Sequence[str] = ()) -> Table:
    """One row per (group, branch, level) with `n` replicates: each of SUMMARY_KEYS as its mean and
    `<key>_sample_std` (ddof=1), as `lth.store.records.aggregate` computes them for a run (null with
    one replicate, or where no replicate has the field, e.g. the early stop without a validation set).
    Columns: cell, the axes, branch, level, n, then the keys."""
    columns = ["cell", *axes, "branch", "level", "n", *[c for k in SUMMARY_KEYS for c in (k, f"{k}_{SPREAD}")]]
    rows = []
    for label, point, paths in groups:
        runs = [Run(p) for p in paths]
        for branch in ("main", *branches):
            per_replicate = [records for run in runs for records in _branch_records(run, branch)]
            for record in aggregate(per_replicate):
                rows.append({"cell": label, **{a: point.get(a) for a in axes}, "branch": branch,
                             "level": record["level"], "n": record["replicates"],
                             **{c: record[c] for c in columns if c in record}})
    return Table.from_records(rows, columns)


def summary_csv(table: Table) -> str:
    """The table as CSV (a missing value, e.g. a single replicate's std, left empty)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table.columns)
    for row in table.rows:
        writer.writerow(["" if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in row])
    return out.getvalue()


def _pm(mean: float | None, std: float | None, scale: float, digits: int) -> str:
    if mean is None:
        return "-"
    text = f"{scale * mean:.{digits}f}"
    return text if std is None or math.isnan(std) else f"{text} +- {scale * std:.{digits}f}"


def summary_text(table: Table, cells: bool = True) -> str:
    """The table for a terminal: accuracies in %, mean +- sample std over the n replicates (without
    the cell column unless `cells`; without the early-stop columns where no row has one: no
    validation set)."""
    head = ("cell", "branch", "level", "% remaining", "early-stop acc %", "final acc %", "early-stop it",
            "FLOPs to here", "n")
    lines = []
    for r in table.to_records():
        cost = r.get("cumulative_train_flops")
        lines.append((r["cell"] or "base", r["branch"], str(r["level"]), f"{r['percent_remaining']:.2f}",
                      _pm(r["early_stop_test_accuracy"], r[f"early_stop_test_accuracy_{SPREAD}"], 100, 2),
                      _pm(r["test_accuracy"], r[f"test_accuracy_{SPREAD}"], 100, 2),
                      _pm(r["early_stop_iteration"], r[f"early_stop_iteration_{SPREAD}"], 1, 0),
                      flops_text(cost) if cost is not None else "-", str(r["n"])))
    keep = [i for i in range(len(head)) if (cells or i > 0) and (i < 4 or any(line[i] != "-" for line in lines))]
    head, lines = tuple(head[i] for i in keep), [tuple(line[i] for i in keep) for line in lines]
    widths = [max(len(x[i]) for x in [head, *lines]) for i in range(len(head))]
    left = (0, 1 if cells else 0)
    return "\n".join("  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(x, widths)))
                     for x in [head, *lines])


def run_summary(path: Path, branches: Sequence[str] = ()) -> str:
    """What `lth run` and `lth control` print at the end of a run of several replicates: per branch
    (the main line, then `branches`) and level, mean +- sample std over the replicates (a sweep
    summary of one cell, `summary_text` without the cell column)."""
    return summary_text(sweep_summary([("", {}, [Path(path)])], branches), cells=False)


def plot_sweep(groups: Sequence[Group], path: str | Path, branches: Sequence[str] = (), axis: str | None = None,
               title: str = "") -> Path:
    """Test accuracy vs. % of weights remaining: one line (mean, +-1 std band) per group and branch,
    or with `axis` per value of that axis (the groups sharing it pooled); beside it
    accuracy_vs_cost.png, the same against the training FLOPs of reaching each point
    (`lth.analysis.cost_chart`)."""
    series: dict[str, list[list[dict[str, Any]]]] = {}
    for label, point, paths in groups:
        key = label if axis is None else f"{axis}={point.get(axis)}"
        runs = [Run(p) for p in paths]
        for branch in ("main", *branches):
            name = key if branch == "main" else f"{key} {branch}"
            series.setdefault(name, []).extend(r for run in runs for r in _branch_records(run, branch))
    series = {k: v for k, v in series.items() if v}
    plot_accuracy_vs_cost(series, Path(path).with_name("accuracy_vs_cost.png"), title=title, percent_panel=True)
    return plot_accuracy_vs_sparsity(series, path, title=title)
