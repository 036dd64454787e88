"""Listing the runs under a run root, as they are: finished, running or interrupted (levels done per
replicate), or damaged (what is wrong), with the best ticket of each."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lth.errors import LthError
from lth.spec.config import ExperimentConfig
from lth.store.records import aggregate, best_ticket
from lth.store.replicate import DamagedFileError, ReplicateDir
from lth.store.run_dir import CONFIG_FILE, read_config, replicate_paths, resolve_run, run_name, runs_root


def _run_paths(root: Path) -> list[Path]:
    """Directories under `root` that hold a run (a config.json or replicate directories)."""
    if root.exists() and not root.is_dir():
        raise LthError(f"the run root {root} is not a directory: give the directory that holds the runs (--runs)")
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and ((p / CONFIG_FILE).exists() or replicate_paths(p)))


def describe_run(path: Path) -> dict[str, Any]:
    """One run's row: name, hash, levels planned, levels done per replicate (None: damaged records),
    levels every replicate has done, the best ticket of their aggregate, and any problem found."""
    row: dict[str, Any] = {"name": path.name.rsplit("-", 1)[0], "hash": path.name.rsplit("-", 1)[-1],
                           "path": str(path), "levels_planned": None, "replicate_levels": [], "problems": []}
    try:
        config = read_config(path)
        row["name"], row["levels_planned"] = config.get("name", row["name"]), int(config.get("levels", 0)) + 1
    except (LthError, TypeError, ValueError) as err:
        row["problems"].append(str(err))
    per_replicate = []
    for rep_path in replicate_paths(path):
        try:
            records = ReplicateDir(rep_path, writable=False).read_results()
        except DamagedFileError:
            row["problems"].append(f"{rep_path.name}/results.json is damaged")
            row["replicate_levels"].append(None)
            continue
        row["replicate_levels"].append(len(records))
        per_replicate.append(records)
    done = [n for n in row["replicate_levels"] if n is not None]
    row["replicates"] = len(row["replicate_levels"])
    row["levels_done"] = min(done) if done else 0
    row["best_ticket"] = best_ticket(aggregate([r for r in per_replicate if r]))
    return row


def list_runs(root: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Every run under the root (see `describe_run`), damaged ones included."""
    return [describe_run(path) for path in _run_paths(runs_root(root))]


def find_run(name: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
    """A run directory from a path, a directory name, a config hash (`resolve_run`), or the name of
    an experiment that has one run under the run root; a one-line LthError otherwise."""
    try:
        return resolve_run(name, root)
    except LthError as err:
        same = [row for row in list_runs(root) if row["name"] == os.fspath(name)]
        if len(same) == 1:
            return Path(same[0]["path"])
        if len(same) > 1:
            names = ", ".join(Path(row["path"]).name for row in same)
            raise LthError(f"{len(same)} runs of experiment {os.fspath(name)!r} under {runs_root(root)} ({names}): "
                           "give a directory name or hash") from None
        raise err


def locate_run(run: Any, root: str | os.PathLike | None = None) -> Path:
    """A run directory from anything that names one: a path, a directory name, a config hash, an
    experiment name (`find_run`), an `ExperimentConfig` (the directory its hash names; an error if
    that run was never started) or an object with a `path` (e.g. `lth.analysis.Run`)."""
    if isinstance(run, ExperimentConfig):
        path = runs_root(root) / run_name(run)
        if not (path / CONFIG_FILE).is_file():
            raise LthError(f"no run of this config under {runs_root(root)} (expected {path}): "
                           "run it first with lth.run_lottery(config)")
        return path
    if not isinstance(run, (str, os.PathLike)) and hasattr(run, "path"):
        return Path(run.path)
    return find_run(run, root)
