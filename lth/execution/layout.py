"""How the replicates of a run are laid out on this machine (`lth run --layout`):

* ``sequential``: one replicate after another in this process;
* ``workers``: replicates in worker processes pinned to CPU cores (`lth.execution.workers`), the CPU
  default; byte-identical to sequential;
* ``vmap``: all replicates as one vmapped program on the default device (`lth.training.stacked`);
* ``devices``: that program with the replicates split over the local devices, the accelerator
  default. vmap and devices equal sequential up to float summation order.
"""

from __future__ import annotations

import os

import jax

from lth.spec.checks import check_workers
from lth.errors import ConfigError, unknown_name
from lth.spec.names import LAYOUTS


def default_layout(replicates: int, workers: int) -> str:
    """The layout when the user names none: worker processes on CPU (when there are several cores
    and replicates), the vmapped program spread over the devices on an accelerator."""
    if replicates < 2:
        return "sequential"
    if jax.default_backend() == "cpu":
        return "workers" if workers > 1 else "sequential"
    return "devices" if jax.local_device_count() > 1 else "vmap"


def check_layout(layout: str, *, data_parallel: bool = False) -> None:
    """A one-line `ConfigError` for an unknown layout or one that cannot run here."""
    if layout not in LAYOUTS:
        raise unknown_name("replicate layout", layout, LAYOUTS)
    if layout in ("vmap", "devices"):
        if data_parallel:
            raise ConfigError(f"--layout {layout} and --data-parallel are two ways to use the devices: choose one")
        if jax.process_count() > 1:
            raise ConfigError(f"--layout {layout} runs in one process: for several hosts use --data-parallel")


def choose_workers(workers: int | None, replicates: int, data_parallel: bool = False) -> int:
    """How many replicate worker processes: the argument (>= 1), else on CPU one per core and
    replicate to train, else 1. Data-parallel runs use every device in one process."""
    check_workers(workers)
    if workers is not None:
        return 1 if data_parallel else min(workers, max(replicates, 1))
    if data_parallel or replicates < 2 or jax.default_backend() != "cpu":
        return 1
    return max(1, min(replicates, len(os.sched_getaffinity(0))))


def choose_layout(layout: str | None, workers: int | None, replicates: int,
                  data_parallel: bool = False) -> tuple[str, int]:
    """(layout, worker processes) of a run with `replicates` replicates to train."""
    if layout is None:
        if data_parallel:
            return "sequential", 1
        count = choose_workers(workers, replicates)
        if workers is not None:
            layout = "workers" if count > 1 else "sequential"
        else:
            layout = default_layout(replicates, count)
        return layout, count if layout == "workers" else 1
    check_layout(layout, data_parallel=data_parallel)
    if layout == "workers":
        return layout, choose_workers(workers, replicates, data_parallel)
    if workers is not None and workers != 1:
        raise ConfigError(f"--workers applies to --layout workers, not {layout}: drop --workers or change the layout")
    return layout, 1
