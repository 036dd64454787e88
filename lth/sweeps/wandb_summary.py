"""A sweep's W&B summary run: one per sweep directory, with the sweep's summary table (per cell,
branch and level: the mean and sample std over the cell's replicates), a line chart of the headline
accuracy per cell and branch, and the overlay plot. Its group is the sweep's name (the cells' runs
carry it as the config field ``sweep``); a W&B failure is one warning and never fails the sweep."""

from __future__ import annotations

from lth.errors import first_line

from collections.abc import Callable
from typing import Any

from lth.analysis.tables import Table
from lth.execution.wandb_tracker import open_wandb_run
from lth.store.sweeps import SweepDir


def headline_rows(table: Table) -> list[dict[str, Any]]:
    """The summary's rows with ``series`` (cell and branch) and ``accuracy`` (the early-stop accuracy,
    else the end of training's) and its sample std: the chart's stroke, y value and band."""
    rows = []
    for r in table.to_records():
        early = r.get("early_stop_test_accuracy") is not None
        key = "early_stop_test_accuracy" if early else "test_accuracy"
        rows.append({"series": f"{r['cell'] or 'base'} / {r['branch']}", **r,
                     "accuracy": r.get(key), "accuracy_sample_std": r.get(f"{key}_sample_std")})
    return rows


def log_sweep_summary(sweep_dir: SweepDir, name: str, table: Table, config: dict[str, Any], mode: str,
                      warn: Callable[[str], None]) -> str | None:
    """Log (or refresh) the sweep's summary run; returns its W&B run id, None when W&B is off or failed."""
    if mode == "disabled" or not len(table):
        return None
    try:
        return _log(sweep_dir, name, table, config, mode)
    except Exception as err:  # W&B never fails a sweep
        first = first_line(err)
        warn(f"W&B sweep summary failed ({type(err).__name__}: {first}); the sweep's local files are complete")
        return None


def _log(sweep_dir: SweepDir, name: str, table: Table, config: dict[str, Any], mode: str) -> str:
    import wandb  # heavy: only when a summary is logged

    rows = headline_rows(table)
    columns = list(rows[0])
    data = wandb.Table(columns=columns, data=[[row.get(c) for c in columns] for row in rows])
    sweep_dir.wandb_dir.mkdir(parents=True, exist_ok=True)
    run_id = f"{sweep_dir.wandb_id()}-sweep-summary"
    run = open_wandb_run(sweep_dir.path, run_id, f"{sweep_dir.path.name}-summary", name, "sweep_summary",
                         {**config, "sweep": sweep_dir.path.name}, mode)
    values = {"cells": data,
              "accuracy_vs_sparsity": wandb.plot.line(data, "percent_remaining", "accuracy", stroke="series",
                                                      title="test accuracy (early stop, else end) vs % weights "
                                                            "remaining, mean over replicates")}
    if sweep_dir.plot_path.exists():
        values["accuracy_vs_sparsity_png"] = wandb.Image(str(sweep_dir.plot_path))
    run.log(values)
    run.finish()
    wandb.teardown()
    return run_id
