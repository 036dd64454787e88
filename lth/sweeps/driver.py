"""`run_sweep`: every cell of a sweep (`lth.sweeps.file`) as a Ray task on a local or joined
cluster, with the guarantees of a single run.

* Finished cells are skipped (no Ray started when all are); unfinished ones resume from their run
  directories (`run_lottery` does, on a shared filesystem).
* A cell that raises or whose worker dies is retried up to `max_retries` times, the others go on;
  an `LthError` (a config or input problem: the same every time) is not retried. Failed cells are
  named with their one-line errors in the outcome.
* Two sweeps never train the same run at once: on a shared filesystem the worker holds the run's
  lock (`lth.store.lock`: an flock, released by the kernel when the worker dies, so a retry finds it
  free); without one the driver holds it in its own run root while the cell is out.
* Without a shared filesystem (`filesystem="local"`, or "auto" finding a node that does not see the
  run root) a cell trains into a worker-local run root and its finished run directory comes back
  through Ray, unpacked into the driver's run root exactly as `lth run` would have written it.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, NamedTuple

from lth.spec.config import to_dict
from lth.spec.fields import records_planned
from lth.errors import LthError, no_room, os_error_text
from lth.sweeps import cluster
from lth.plans.run import control_levels_of
from lth.sweeps.file import Cell, SweepPlan
from lth.sweeps.progress import SweepProgress
from lth.sweeps.state import SweepState
from lth.sweeps.task import CellJob, train_cell
from lth.sweeps.wandb_summary import log_sweep_summary
from lth.execution.progress import warn
from lth.plans.sweep import SweepOptions, plan_sweep_options
from lth.store import RunDir, RunLock
from lth.store.sweeps import SweepDir, unpack_run_dir

class SweepOutcome(NamedTuple):
    """A finished (or partly failed) sweep: its directory, the state of every cell, the failed ones."""

    path: Path
    state: SweepState
    failed: list[dict[str, Any]]


def run_sweep(plan: SweepPlan, *, runs_root: str | Path | None = None, data_root: str | Path | None = None,
              address: str | None = None, cpus_per_run: float = 1.0, gpus_per_run: float | None = None,
              max_retries: int = 2, filesystem: str = "auto", worker_dir: str | Path | None = None,
              checkpoint_every: str = "10min", wandb: str | None = None, progress: bool = True,
              local_cpus: int | None = None, options: SweepOptions | None = None) -> SweepOutcome:
    """Run every unfinished cell of `plan` on Ray; write ``<runs root>/sweeps/<name>-<hash>/``
    (sweep.json, summary.csv, the overlay plot); return the outcome (see the module docstring).

    `address`: None starts a local cluster (`local_cpus`, default the machine's cores) and stops it
    at the end; "auto", "HOST:PORT" or "ray://HOST:PORT" joins one. Each cell asks Ray for
    `cpus_per_run` CPUs and `gpus_per_run` GPUs (default: one when the cluster has GPUs, else none;
    cells without GPUs train on the CPU). `filesystem`: "shared", "local" or "auto" (probe). `options`:
    these options already checked (`lth.plans.sweep.plan_sweep_options`; the others are then unused).
    """
    if options is None:
        options = plan_sweep_options(runs_root, data_root, address, cpus_per_run, gpus_per_run, max_retries,
                                     filesystem, worker_dir, checkpoint_every, wandb, local_cpus)
    sweep_dir = SweepDir(options.runs_root, plan.dir_name)
    state = SweepState(plan, options.runs_root, sweep_dir)
    todo = [cell for cell in plan.cells if not cell_finished(options.runs_root, plan, cell)]
    for cell in plan.cells:
        if cell not in todo:
            state.mark_finished(cell.index)
    reporter = SweepProgress(len(plan.cells), enabled=progress)
    reporter.skipped(len(plan.cells) - len(todo))
    try:
        if todo:  # the sweep directory is written once the cluster answers
            clock = time.perf_counter()
            with cluster.ray_cluster(options.address, options.local_cpus) as ray:
                state.timing["connect_s"], clock = time.perf_counter() - clock, time.perf_counter()
                _Driver(ray, plan, options, state, reporter).run(todo)
                state.timing["cells_s"], clock = time.perf_counter() - clock, time.perf_counter()
            state.timing["disconnect_s"] = time.perf_counter() - clock
    finally:
        reporter.close()
        if not todo or sweep_dir.state_path.exists():
            state.write()
    state.write_summary()
    if state.table is not None:
        log_sweep_summary(sweep_dir, plan.dir_name, state.table, sweep_wandb_config(plan), options.wandb, warn)
    return SweepOutcome(sweep_dir.path, state, state.failed())


def sweep_wandb_config(plan: SweepPlan) -> dict[str, Any]:
    """What the sweep's W&B summary run records as its config."""
    return {"sweep_name": plan.name, "sweep_hash": plan.hash, "variant": plan.variant, "axes": list(plan.axes),
            "controls": list(plan.controls), "cells": len(plan.cells), "sweep_file": str(plan.source)}


def cell_finished(root: Path, plan: SweepPlan, cell: Cell) -> bool:
    """Whether a cell's run directory holds every level of its main line and of its controls. A cell
    whose files cannot be read (a damaged results file) is not finished: its run repairs it as `lth
    run` does (or fails alone, with its error in sweep.json), and the other cells go on."""
    run = RunDir(root, cell.config)
    rep = run.replicate(0)
    try:
        if not run.results_path.exists() or len(rep.read_results()) < records_planned(cell.config):
            return False
        levels = control_levels_of(plan.controls, plan.control_levels, cell.config.levels)
        done_by_control = [{int(r["level"]) for r in rep.control(name).read_results()} for name in plan.controls]
    except LthError:
        return False
    return all(set(levels) <= done for done in done_by_control)


class _Ledger:
    """A Ray actor that hears each attempt start (cell, attempt, node info), for the driver to poll."""

    def __init__(self):
        self.events: list[tuple[int, int, dict[str, Any]]] = []

    def started(self, index: int, attempt: int, info: dict[str, Any]) -> None:
        self.events.append((index, attempt, info))

    def drain(self) -> list[tuple[int, int, dict[str, Any]]]:
        events, self.events = self.events, []
        return events


def failure_text(err: BaseException) -> tuple[str, bool, bool]:
    """(one-line error, retry it?, did the worker die?) of a failed Ray task."""
    import ray.exceptions  # optional dependency: see lth.sweeps.cluster

    if isinstance(err, ray.exceptions.RayTaskError):
        cause = err.cause if isinstance(err.cause, BaseException) else err
        first = (str(cause).strip().splitlines() or [""])[0][:300]
        if isinstance(cause, LthError):
            return first, False, False
        if no_room(cause):  # a full disk in a cell: the line `lth run` prints
            return os_error_text(cause), True, False
        return f"{type(cause).__name__}: {first}", True, False
    first = (str(err).strip().splitlines() or [""])[0][:300]
    return f"{type(err).__name__}: {first}", True, True


class _Driver:
    """Submits the cells, follows them, retries and records them (one sweep, one cluster connection)."""

    def __init__(self, ray: Any, plan: SweepPlan, options: SweepOptions, state: SweepState,
                 reporter: SweepProgress):
        self.ray, self.plan, self.options, self.state, self.reporter = ray, plan, options, state, reporter
        self.pending: dict[Any, tuple[Cell, int]] = {}
        self.locks: dict[int, RunLock] = {}
        self.task: Any = None  # the Ray task, made once the resources per cell are known
        self.cpu_only = False
        self.ledger = ray.remote(num_cpus=0)(_Ledger).remote()

    def run(self, todo: list[Cell]) -> None:
        info = cluster.describe(self.ray)
        if self.options.gpus_per_run is None:
            self.options = self.options._replace(gpus_per_run=1.0 if info["gpus"] >= 1 else 0.0)
        self.cpu_only = self.options.gpus_per_run == 0 and info["gpus"] > 0  # keep JAX off the GPUs Ray gave others
        self._check_resources(info)
        # resources in the decorator, not in .options(): Ray then starts a fresh worker process for each GPU
        # task (max_calls=1), so JAX initialises on the GPU that Ray gave that task
        self.task = self.ray.remote(max_retries=0, num_cpus=self.options.cpus_per_run,
                                    num_gpus=self.options.gpus_per_run)(train_cell)
        shared = self._filesystem()
        self.state.set_cluster(info, self.options, shared)
        self.state.write()
        slots = min(info["cpus"] // self.options.cpus_per_run if self.options.cpus_per_run else len(todo),
                    info["gpus"] // self.options.gpus_per_run if self.options.gpus_per_run else len(todo))
        self.reporter.note(f"sweep {self.plan.dir_name}: {len(todo)} cell(s) to train on {info['nodes']} Ray node(s) "
                           f"({info['cpus']:g} CPUs, {info['gpus']:g} GPUs: {int(slots)} at a time), "
                           f"{'shared' if shared else 'worker-local'} run root")
        try:
            for cell in todo:
                self._submit(cell, 0, shared)
            self.state.write()
            while self.pending:
                ready, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=1.0)
                self._drain_ledger()
                for ref in ready:
                    self._finish(ref, shared)
                if ready:
                    self.state.write()
        except KeyboardInterrupt:  # Ctrl-C, SIGTERM (SLURM), SIGHUP: sweep.json says so
            self.state.interrupted = True
            raise
        finally:
            with cluster.signals_ignored():  # a second signal must not cut the cleanup short
                for ref, (cell, _) in self.pending.items():  # stop what is out, keep what is finished
                    with contextlib.suppress(Exception):
                        self.ray.cancel(ref, force=True)
                    self.state.mark_failed(cell.index, "interrupted")
                for index in list(self.locks):
                    self._release(index)
                self.state.write()  # before the cluster's shutdown: sweep.json says what happened whatever follows

    def _check_resources(self, info: dict[str, Any]) -> None:
        o = self.options
        if info["cpus"] < o.cpus_per_run or info["gpus"] < o.gpus_per_run:
            raise LthError(f"each cell asks for {o.cpus_per_run:g} CPU(s) and {o.gpus_per_run:g} GPU(s), the Ray "
                           f"cluster has {info['cpus']:g} and {info['gpus']:g}: lower --cpus-per-run / "
                           "--gpus-per-run or add nodes")

    def _filesystem(self) -> bool:
        """Whether the workers write into the driver's run root (they check the probe file there)."""
        self.state.sweep_dir.write_probe(self.state.token)
        if self.options.filesystem == "auto":
            return cluster.shared_filesystem(self.ray, self.state.sweep_dir.probe_path, self.state.token)
        return self.options.filesystem == "shared"

    def _submit(self, cell: Cell, attempt: int, shared: bool) -> None:
        if not shared and cell.index not in self.locks:  # the driver's run root is the one that counts
            lock = RunLock(RunDir(self.options.runs_root, cell.config).lock_path)
            try:
                lock.acquire()
            except LthError as err:
                self.state.mark_failed(cell.index, str(err))
                self.reporter.cell_failed(cell.index, cell.describe(), str(err))
                return
            self.locks[cell.index] = lock
        o = self.options
        job = CellJob(cell.index, attempt, to_dict(cell.config), str(o.runs_root), "shared" if shared else "local",
                      (str(self.state.sweep_dir.probe_path), self.state.token), o.worker_dir, o.data_root, o.wandb,
                      o.checkpoint_every, self.plan.controls, self.plan.control_levels,
                      f"sweep:{self.plan.name},sweep:{self.plan.dir_name}", self.plan.dir_name, self.cpu_only)
        env = {"env_vars": {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}} if 0 < o.gpus_per_run < 1 else None
        ref = self.task.options(name=f"lth-{cell.run_name}", runtime_env=env).remote(job, self.ledger)
        self.pending[ref] = (cell, attempt)
        self.state.mark_submitted(cell.index, attempt)

    def _drain_ledger(self) -> None:
        for index, attempt, info in self.ray.get(self.ledger.drain.remote()):
            self.state.attempt_started(index, attempt, info)
            if any(c.index == index for c, _ in self.pending.values()):
                self.reporter.cell_started(index)

    def _finish(self, ref: Any, shared: bool) -> None:
        cell, attempt = self.pending.pop(ref)
        try:
            result = self.ray.get(ref)
            if result["packed"] is not None:
                started = time.perf_counter()
                size = unpack_run_dir(result["packed"], RunDir(self.options.runs_root, cell.config).path)
                result = {**result, "packed": None, "shipped_bytes": size,
                          "unpack_seconds": time.perf_counter() - started}
        except Exception as err:  # a failed task: retried or reported, the other cells go on
            self._drain_ledger()  # the attempt's host and process, if it died before saying so
            text, retry, died = failure_text(err)
            self.state.attempt_failed(cell.index, attempt, text, died)
            if retry and attempt < self.options.max_retries:
                self.reporter.cell_retried(cell.index, cell.describe(), text, attempt, self.options.max_retries + 1)
                self._submit(cell, attempt + 1, shared)
                return
            self.state.mark_failed(cell.index, text)
            self.reporter.cell_failed(cell.index, cell.describe(), text)
        else:
            self.state.mark_done(cell.index, attempt, result)
            where = result.get("node_ip") or result.get("host", "?")
            self.reporter.cell_done(cell.index, cell.describe(), result["seconds"], where)
        self._release(cell.index)

    def _release(self, index: int) -> None:
        """Let go of the driver's lock of a cell's run (worker-local runs; its file stays, as lth.store.lock says)."""
        lock = self.locks.pop(index, None)
        if lock is not None:
            lock.release()
