"""Replicates in worker processes, each pinned to its own CPU core (the CPU default layout).

A worker trains whole replicates with `lth.execution.replicates.run_replicate` into the shared run
directory, exactly as that replicate trained alone on one core would (`taskset -c N`): the same
numerics context, so the same bits. It holds the replicate's own lock while it trains, and it dies
with its parent: the kernel kills it when the parent goes (PR_SET_PDEATHSIG on Linux), and a
watchdog thread exits it within a second where that is not available, so a killed run never leaves
workers writing into its directory. Workers are started with "spawn": a process holding XLA's
threads is never forked.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from lth.spec.config import from_dict, to_dict
from lth.errors import LthError, first_line, os_error_text
from lth.lottery import init_params
from lth.spec.parse import CheckpointPeriod
from lth.execution.progress import FollowerProgress, LevelProgress
from lth.execution.replicates import run_replicate
from lth.execution.session import worker_trackers
from lth.execution.tracking import Tracker
from lth.sparsity.masks import Mask, mask_from_arrays, mask_to_arrays
from lth.store import RunDir
from lth.tickets import run_setup

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """Exit as soon as the parent process is gone (see the module docstring)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the watchdog below is enough
        pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="lth-parent-watchdog").start()


def _worker(parent: int, core: int, tasks: Any, results: Any, job: dict[str, Any]) -> None:
    """A worker process: pinned to `core`, trains the replicates it takes from `tasks`."""
    _die_with_parent(parent)
    os.sched_setaffinity(0, {core})
    while True:
        try:
            replicate = tasks.get_nowait()
        except queue.Empty:
            return
        try:
            results.put(("done", replicate, _replicate_job(replicate, results, **job), None))
        except BaseException as err:  # noqa: BLE001 - reported to the parent, one line
            results.put(("done", replicate, 0, error_text(err)))
            if not isinstance(err, Exception):
                return


def error_text(err: BaseException) -> str:
    """A worker's error as the parent prints it: the one line the CLI prints for the same error in
    its own process (an LthError's message; an OSError, a full disk above all, as `os_error_text`)."""
    if isinstance(err, LthError):
        return str(err)
    if isinstance(err, OSError):
        return os_error_text(err)
    return f"{type(err).__name__}: {first_line(err)}"


class ForwardedEvents(Tracker):
    """In a worker: the level events of its replicates, sent to the parent for the run's own trackers."""

    def __init__(self, results: Any):
        self.results = results

    def level_start(self, *args: Any, **kwargs: Any) -> None:
        self.results.put(("event", "level_start", args, kwargs))

    def log_evaluations(self, *args: Any, **kwargs: Any) -> None:
        self.results.put(("event", "log_evaluations", args, kwargs))

    def level_done(self, *args: Any, **kwargs: Any) -> None:
        self.results.put(("event", "level_done", args, kwargs))


class ForwardedRows:
    """In a worker: the notes and table rows of its replicates, sent to the parent's reporter (the
    lead of the worker's `FollowerProgress`), which prints them with the run's table."""

    def __init__(self, results: Any):
        self.results = results

    def note(self, message: str) -> None:
        self.results.put(("note", message))

    def print_row(self, *args: Any) -> None:
        self.results.put(("row", *args))


def _replicate_job(replicate: int, results: Any, config_dict: dict[str, Any], runs_root: str, data_root: Any,
                   mask_arrays: dict[str, Any] | None, every: CheckpointPeriod, wandb_mode: str,
                   allow_mixed_numerics: bool, forward_events: bool) -> int:
    """One replicate in this worker: no progress bars, its table rows printed by the parent; returns
    the levels it has."""
    run = RunDir(runs_root, from_dict(config_dict))
    setup = run_setup(run, data_root).for_replicate(replicate)  # a run from a ticket: its copy in the run directory
    mask = mask_from_arrays(mask_arrays, init_params(setup)[0]) if mask_arrays is not None else None
    trackers = worker_trackers(run, wandb_mode, [ForwardedEvents(results)] if forward_events else [])
    reporter = FollowerProgress(ForwardedRows(results))
    try:
        records = run_replicate(setup, run.replicate(replicate), mask, replicate, every, reporter, trackers,
                                allow_mixed_numerics=allow_mixed_numerics)
    finally:
        for tracker in trackers:
            tracker.close()
    return len(records)


def run_replicates_in_workers(run: RunDir, todo: list[int], workers: int, data_root: Any, mask: Mask | None,
                              every: CheckpointPeriod, wandb_mode: str, reporter: LevelProgress,
                              allow_mixed_numerics: bool = False, trackers: Sequence[Any] = ()) -> None:
    """Train the replicates `todo` in `workers` processes pinned to distinct cores; the level events
    of their replicates reach `trackers` here, in this process, and their table rows and notes
    `reporter`. A worker's error is raised here (one
    line) once the others have finished; their finished levels are kept. If this process is
    interrupted, the workers are stopped before it returns."""
    context = multiprocessing.get_context("spawn")  # never fork a process that holds XLA threads
    tasks, results = context.Queue(), context.Queue()
    for replicate in todo:
        tasks.put(replicate)
    job = {"config_dict": to_dict(run.config), "runs_root": str(run.path.parent), "data_root": data_root,
           "mask_arrays": mask_to_arrays(mask) if mask is not None else None, "every": every,
           "wandb_mode": wandb_mode, "allow_mixed_numerics": allow_mixed_numerics, "forward_events": bool(trackers)}
    cores = sorted(os.sched_getaffinity(0))[:workers]
    procs = [context.Process(target=_worker, args=(os.getpid(), core, tasks, results, job), daemon=True)
             for core in cores]
    reporter.note(f"training {len(todo)} replicate(s) in {len(procs)} worker processes (one core each)")
    errors = []
    try:
        for proc in procs:
            proc.start()
        for replicate, levels, error in _results(results, procs, len(todo), trackers, reporter):
            if error:
                errors.append((replicate, error))
            else:
                reporter.note(f"replicate {replicate}: {levels} levels done")
    finally:
        for proc in procs:  # stop the workers whatever happened here (an interrupt included)
            if proc.is_alive():
                proc.terminate()
            proc.join()
    if errors:
        raise LthError("; ".join(f"replicate {replicate}: {error}" for replicate, error in sorted(errors)))


def _results(results: Any, procs: list[Any], count: int, trackers: Sequence[Any], reporter: LevelProgress
             ) -> Iterator[tuple[int, int, Any]]:
    """The (replicate, levels, error) of `count` replicates as the workers report them; the events
    they forward on the way are handed to `trackers`, their rows and notes to `reporter`."""
    done = 0
    while done < count:
        message = _next_message(results, procs)
        if message[0] == "event":
            _, name, args, kwargs = message
            for tracker in trackers:
                getattr(tracker, name)(*args, **kwargs)
            continue
        if message[0] == "row":
            reporter.print_row(*message[1:])
            continue
        if message[0] == "note":
            reporter.note(message[1])
            continue
        done += 1
        yield message[1:]


def _next_message(results: Any, procs: list[Any]) -> tuple[Any, ...]:
    """The next message a worker sends; an error if every worker died silently."""
    while True:
        try:
            return results.get(timeout=1.0)
        except queue.Empty:
            if not any(proc.is_alive() for proc in procs):
                codes = ", ".join(str(proc.exitcode) for proc in procs)
                raise LthError(f"the worker processes exited without finishing (exit codes {codes}): "
                               "rerun to resume their replicates") from None
