"""Several processes of one run (`jax.distributed`): who writes, waiting for each other, starting up.

Every process computes everything; process 0 alone writes the run directory (see docs/multihost.md).
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jaxlib
from jax.experimental import multihost_utils

from lth.errors import ConfigError


def is_main_process() -> bool:
    """True in process 0: the one that writes run directories, logs and checkpoints."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Wait until every process gets here (a no-op in a single process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def initialize_distributed(environ: Mapping[str, str] | None = None) -> bool:
    """Start `jax.distributed` when launched as several processes; False (nothing done) otherwise.

    Recognises SLURM (``srun``: ``SLURM_NTASKS`` > 1; jax reads the rest) and a plain launch with
    ``JAX_COORDINATOR_ADDRESS=host:port``, ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``. Call it
    before anything else touches jax (it must precede the first computation).
    """
    env = os.environ if environ is None else environ
    if jax.distributed.is_initialized():
        return True
    if "JAX_NUM_PROCESSES" in env or "JAX_PROCESS_ID" in env:
        missing = [k for k in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID") if k not in env]
        if missing:
            raise ConfigError(f"a multi-process launch needs {', '.join(missing)} too: see docs/multihost.md")
        if int(env["JAX_NUM_PROCESSES"]) < 2:
            return False
        jax.distributed.initialize(env["JAX_COORDINATOR_ADDRESS"], int(env["JAX_NUM_PROCESSES"]),
                                   int(env["JAX_PROCESS_ID"]))
        return True
    if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:
        jax.distributed.initialize()
        return True
    return False


def numerics_context() -> dict[str, Any]:
    """What the numbers of this process depend on besides the config and the seed: the backend and
    its devices, the CPU cores it may use (XLA:CPU's thread count: the same config and seed give
    other floats on 2 cores than on 1), the CPU model, jax / jaxlib versions and XLA flags. Equal
    contexts give bit-identical runs; replicates computed under different ones are not comparable
    to the last bit."""
    return {
        "backend": jax.default_backend(),
        "devices": jax.device_count(),
        "device_kind": jax.devices()[0].device_kind,
        "processes": jax.process_count(),
        "cpu_threads": len(os.sched_getaffinity(0)),
        "cpu": _cpu_model(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def context_difference(stored: dict[str, Any], current: dict[str, Any]) -> str:
    """'cpu_threads 2 -> 1, jax 0.10.1 -> 0.10.2' for the keys that differ ('' if none)."""
    keys = sorted(set(stored) | set(current))
    return ", ".join(f"{k} {stored.get(k)!r} -> {current.get(k)!r}" for k in keys if stored.get(k) != current.get(k))
