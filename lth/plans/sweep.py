"""The plan of how `lth sweep` runs its cells (the cluster, resources, retries, filesystem, checkpoints,
W&B), checked once before anything starts; what the cells compute is the sweep file's (`lth.sweeps.file`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from lth.plans.wandb_mode import checked_wandb_mode
from lth.spec.checks import check_sweep_options
from lth.store import runs_root


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
    return SweepOptions(runs_root(root).resolve(), str(Path(data_root).resolve()) if data_root else None, address,
                        float(cpus), None if gpus is None else float(gpus), retries, filesystem,
                        str(Path(worker_dir).resolve()) if worker_dir else None, checkpoint_every, mode, local_cpus)
