"""What a Ray worker runs for one cell of a sweep: `run_lottery` of the cell's config (and its
controls), into the shared run root or, without a shared filesystem, into a worker-local run root
whose finished run directory is returned packed, for the driver to unpack into its own.

This module imports no Ray: `lth.sweeps.driver` wraps `train_cell` in a Ray task, and a `ledger` (a
Ray actor handle) hears which node and process an attempt runs on as soon as it starts.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import jax

from lth.spec.config import from_dict
from lth.errors import LthError
from lth.jobs.lottery import run_lottery
from lth.execution.wandb_tracker import SWEEP_ENV
from lth.store import RunDir
from lth.store.sweeps import check_worker_dir, pack_run_dir, sees_probe


class CellJob(NamedTuple):
    """Everything a worker needs for one attempt of one cell (plain values: it crosses machines)."""

    index: int
    attempt: int
    config: dict[str, Any]  # `lth.spec.config.to_dict` of the cell's config
    runs_root: str  # the driver's run root (absolute)
    filesystem: str  # "shared" (the driver's run root) | "local" (a worker-local one, shipped back)
    probe: tuple[str, str]  # (probe file path, token): a shared run root must show it
    worker_dir: str | None  # the worker-local run root ("local"); None: <tmp>/lth-sweep-runs
    data_root: str | None
    wandb: str
    checkpoint_every: str
    controls: tuple[str, ...]
    control_levels: str | None
    tags: str  # W&B tags of every run of the cell (comma-separated)
    sweep: str = ""  # the sweep directory's name: the config field ``sweep`` of the cell's W&B runs
    cpu_only: bool = False  # no GPU reserved on a cluster with GPUs: train on the CPU


def node_info() -> dict[str, Any]:
    """Where this attempt runs: host name, process id and (inside Ray) the node's id and address."""
    info: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid()}
    try:
        import ray  # optional: only inside a Ray worker

        if not ray.is_initialized():  # get_runtime_context would start a local Ray instance (~40 s)
            return info
        context = ray.get_runtime_context()
        info["node_id"] = context.get_node_id()
        info["node_ip"] = ray.util.get_node_ip_address()
    except Exception:  # not in a Ray worker
        pass
    return info


def default_worker_dir() -> Path:
    return Path(tempfile.gettempdir()) / "lth-sweep-runs"


@contextlib.contextmanager
def wandb_labels(tags: str, sweep: str) -> Iterator[None]:
    """W&B's own WANDB_TAGS, and the sweep's name as the config field ``sweep`` (`SWEEP_ENV`), for the
    runs opened inside (the worker process is reused: restored after)."""
    old = {key: os.environ.get(key) for key in ("WANDB_TAGS", SWEEP_ENV)}
    os.environ.update({"WANDB_TAGS": tags, SWEEP_ENV: sweep})
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def train_cell(job: CellJob, ledger: Any = None) -> dict[str, Any]:
    """Train (or finish) one cell; returns where it ran, how long it took and, when the worker does
    not share the driver's filesystem, its run directory packed (`lth.store.sweeps.pack_run_dir`)."""
    if job.cpu_only:  # Ray hides no GPU from a task that asked for none
        jax.config.update("jax_platforms", "cpu")
    info = node_info()
    if ledger is not None:
        ledger.started.remote(job.index, job.attempt, info)
    shared = job.filesystem == "shared"
    if shared and not sees_probe(*job.probe):
        raise LthError(f"{info['host']} does not see the driver's run root {job.runs_root}: mount it on every node, "
                       "or run the sweep with --filesystem local (run directories shipped back)")
    root = Path(job.runs_root) if shared else Path(job.worker_dir or default_worker_dir())
    if not shared:  # a worker-local run root this node cannot write: one line naming the option, not an OSError
        check_worker_dir(root, f" on {info['host']}")
    config = from_dict(job.config)
    run = RunDir(root, config)
    started = time.perf_counter()
    with wandb_labels(job.tags, job.sweep):
        run_lottery(config, runs_root=root, data_root=job.data_root, wandb=job.wandb, progress=False,
                    checkpoint_every=job.checkpoint_every, controls=job.controls, control_levels=job.control_levels)
    result = {**info, "shared": shared, "seconds": time.perf_counter() - started, "packed": None,
              "run_dir": str(run.path)}
    if not shared:
        started = time.perf_counter()
        result["packed"] = pack_run_dir(run.path)
        result["pack_seconds"] = time.perf_counter() - started
    return result
