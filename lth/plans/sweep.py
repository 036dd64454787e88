"""The plan of how `lth sweep` runs its cells (the cluster, resources, retries, filesystem, checkpoints,
W&B), checked once before anything starts; what the cells compute is the sweep file's (`lth.sweeps.file`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

from lth.plans.wandb_mode import checked_wandb_mode
from lth.spec.checks import check_sweep_options
from lth.errors import ConfigError
from lth.store import runs_root
from lth.store.run_dir import check_run_root
from lth.store.sweeps import check_worker_dir


class SweepOptions(NamedTuple):
    """How a sweep runs (not what it computes)."""

    runs_root: Path
    data_root: str | None = None
    address: str | None = None
    cpus_per_run: float = 1.0
    gpus_per_run: float | None = None  # None: 1 when the cluster has GPUs, else 0
    max_retries: int = 2
    filesystem: str = "auto"
    worker_dir: str | None = None
    checkpoint_every: str = "10min"
    wandb: str = "offline"
    local_cpus: int | None = None


def plan_sweep_options(root: Any, data_root: Any, address: str | None, cpus: float, gpus: float | None, retries: int,
                   filesystem: str, worker_dir: Any, checkpoint_every: str, wandb: str | None,
                   local_cpus: int | None = None) -> SweepOptions:
    """The checked options of `lth sweep` (one-line ConfigErrors for options that cannot work, before
    anything starts or jax is imported)."""
    check_sweep_options(address, cpus, gpus, retries, filesystem, checkpoint_every, local_cpus)
    mode = checked_wandb_mode(wandb)
    check_run_root(root)  # before Ray starts (12-20 s): an unusable root is one line at once
    if address is None:  # the local cluster this sweep starts: its size is known now
        _check_local_cluster(float(cpus), local_cpus or os.cpu_count() or 1, worker_dir)
    return SweepOptions(runs_root(root).resolve(), str(Path(data_root).resolve()) if data_root else None, address,
                        float(cpus), None if gpus is None else float(gpus), retries, filesystem,
                        str(Path(worker_dir).resolve()) if worker_dir else None, checkpoint_every, mode, local_cpus)


def _check_local_cluster(cpus_per_run: float, local_cpus: int, worker_dir: Any) -> None:
    """One-line errors for a local cluster that cannot run a cell, before it starts: more CPUs per cell
    than it has, a --worker-dir (local filesystem) that cannot be written on this machine."""
    if cpus_per_run > local_cpus:
        raise ConfigError(f"each cell asks for {cpus_per_run:g} CPU(s), and the local Ray cluster this sweep starts "
                          f"has {local_cpus} (this machine's cores): lower --cpus-per-run, or join a larger cluster "
                          "(--address)")
    if worker_dir is not None:  # the workers' run root, on this machine: checked now, not per cell after Ray started
        check_worker_dir(worker_dir)
