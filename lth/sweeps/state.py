"""What a sweep knows about its cells while it runs, written to sweep.json after every change:
each cell's axes, run directory, the `lth run` command that trains it alone, its status
(pending, queued, running, done, failed), every attempt (node, host, process, error) and where
it finished; at the end the summary table and the overlay plot (`lth.analysis.sweeps`)."""

from __future__ import annotations

import datetime
import uuid
from pathlib import Path
from typing import Any

from lth.analysis.tables import Table
from lth.analysis.sweeps import plot_sweep, summary_csv, summary_text, sweep_summary
from lth.sweeps.file import SweepPlan
from lth.store import RunDir
from lth.store.sweeps import SweepDir


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


class SweepState:
    """The cells of `plan` under run root `root`, recorded in `sweep_dir`."""

    def __init__(self, plan: SweepPlan, root: Path, sweep_dir: SweepDir):
        self.plan, self.root, self.sweep_dir = plan, root, sweep_dir
        self.token = uuid.uuid4().hex  # the filesystem probe's
        self.cluster: dict[str, Any] = {}
        self.started = _now()
        self.summary = ""
        self.interrupted = False  # a signal stopped the sweep (its unfinished cells: failed, "interrupted")
        self.table: Table | None = None  # the summary table, once written
        self.timing: dict[str, float] = {}  # connect_s, cells_s (first probe to last result), disconnect_s
        self.cells = [{
            "index": c.index, "cell": c.label, "point": c.point, "replicate": c.replicate, "seed": c.config.seed,
            "run": c.run_name, "run_dir": str(RunDir(root, c.config).path), "command": plan.command(c),
            "status": "pending", "attempts": [],
        } for c in plan.cells]

    # transitions --------------------------------------------------------------------------

    def mark_finished(self, index: int) -> None:
        """Finished before this sweep started (nothing to train)."""
        self.cells[index].update(status="done", skipped=True)

    def mark_submitted(self, index: int, attempt: int) -> None:
        attempts = self.cells[index]["attempts"]
        while len(attempts) <= attempt:
            attempts.append({"attempt": len(attempts)})
        attempts[attempt]["submitted"] = _now()
        self.cells[index]["status"] = "queued"

    def attempt_started(self, index: int, attempt: int, info: dict[str, Any]) -> None:
        cell = self.cells[index]
        if attempt < len(cell["attempts"]):
            cell["attempts"][attempt].update(info, started=_now())
        if cell["status"] == "queued":
            cell["status"] = "running"

    def attempt_failed(self, index: int, attempt: int, error: str, worker_died: bool) -> None:
        self.cells[index]["attempts"][attempt].update(error=error, worker_died=worker_died, ended=_now())

    def mark_failed(self, index: int, error: str) -> None:
        self.cells[index].update(status="failed", error=error)

    def mark_done(self, index: int, attempt: int, result: dict[str, Any]) -> None:
        node = {k: result[k] for k in ("host", "pid", "node_id", "node_ip") if k in result}
        extra = {k: result[k] for k in ("seconds", "shared", "shipped_bytes", "pack_seconds", "unpack_seconds")
                 if k in result}
        self.cells[index]["attempts"][attempt].update(node, ended=_now(), **extra)
        self.cells[index].update(status="done", skipped=False, node=node, **extra)

    def set_cluster(self, info: dict[str, Any], options: Any, shared: bool) -> None:
        self.cluster = {"address": options.address or "local", "nodes": info["nodes"], "cpus": info["cpus"],
                        "gpus": info["gpus"], "cpus_per_run": options.cpus_per_run,
                        "gpus_per_run": options.gpus_per_run, "max_retries": options.max_retries,
                        "filesystem": "shared" if shared else "local"}

    # queries ------------------------------------------------------------------------------

    def status(self) -> str:
        """"interrupted" (by a signal), "running" (cells pending, queued or running) or "finished"."""
        if self.interrupted:
            return "interrupted"
        return "running" if any(c["status"] in ("pending", "queued", "running") for c in self.cells) else "finished"

    def failed(self) -> list[dict[str, Any]]:
        return [c for c in self.cells if c["status"] == "failed"]

    def to_json(self) -> dict[str, Any]:
        p = self.plan
        return {"name": p.name, "hash": p.hash, "sweep_file": p.source, "variant": p.variant, "axes": list(p.axes),
                "controls": list(p.controls), "control_levels": p.control_levels, "runs_root": str(self.root),
                "cluster": self.cluster, "timing": self.timing, "started": self.started, "updated": _now(),
                "status": self.status(),
                "counts": {s: sum(c["status"] == s for c in self.cells)
                           for s in ("pending", "queued", "running", "done", "failed")},
                "cells": self.cells}

    def write(self) -> None:
        self.sweep_dir.write_state(self.to_json())

    # the end ------------------------------------------------------------------------------

    def groups(self) -> list[tuple[str, dict[str, Any], list[Path]]]:
        """(label, axis values, run directories of its finished replicates) per point."""
        groups: dict[str, tuple[str, dict[str, Any], list[Path]]] = {}
        for cell, record in zip(self.plan.cells, self.cells):
            group = groups.setdefault(cell.label, (cell.label, cell.point, []))
            if record["status"] == "done":
                group[2].append(Path(record["run_dir"]))
        return [g for g in groups.values() if g[2]]

    def write_summary(self) -> str:
        """summary.csv and the overlay plot; returns the summary as text (empty with no finished cell)."""
        groups = self.groups()
        if not groups:
            return ""
        table = self.table = sweep_summary(groups, self.plan.controls, self.plan.axes)
        self.sweep_dir.write_summary(summary_csv(table))
        plot_sweep(groups, self.sweep_dir.plot_path, self.plan.controls, self.plan.plot_axis,
                   title=f"sweep {self.plan.dir_name}")
        self.summary = summary_text(table)
        return self.summary
