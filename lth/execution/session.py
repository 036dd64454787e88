"""A session: what every job that trains into a run directory holds while it trains, built in one
place. Under the run's lock: the run directory made (with its config.json), the trackers (the
caller's, then one of every built-in tracker of `TRACKERS`, built only in `worker_trackers`), and the
terminal reporter; on the way out, whatever happened, the reporter and every tracker closed.

Adding a built-in tracker: a `lth.execution.tracking.Tracker` subclass in its own module and one entry in
`TRACKERS`; `tests/test_registries.py` feeds every entry a run's events."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from lth.execution.progress import LevelProgress, warn
from lth.execution.tracking import Tracker
from lth.execution.wandb_tracker import WandbTracker
from lth.spec.config import to_dict
from lth.store import RunDir


@dataclass(frozen=True)
class TrackerContext:
    """What a built-in tracker is built from: the run, its config as a dict, the W&B mode."""

    run: RunDir
    config: dict[str, Any]
    wandb_mode: str


TRACKERS: dict[str, Callable[[TrackerContext], Tracker]] = {
    "wandb": lambda c: WandbTracker(c.run, c.config, c.wandb_mode, warn=warn),
}


@dataclass
class Session:
    """The open side of one run: its directory, its trackers (the caller's, then the built-in ones)
    and its reporter."""

    run: RunDir
    trackers: list[Any]
    reporter: LevelProgress

    @property
    def wandb(self) -> WandbTracker:
        """The run's W&B tracker (offline files inside the run directory, or disabled)."""
        return next(t for t in self.trackers if isinstance(t, WandbTracker))

    def run_done(self, records: list[dict[str, Any]]) -> None:
        """Every tracker told that the run finished with `records`."""
        for tracker in self.trackers:
            tracker.run_done(records)


def worker_trackers(run: RunDir, wandb_mode: str, extra: list[Any] | tuple[Any, ...] = ()) -> list[Any]:
    """The trackers a process training into `run` reports to: `extra`, then one of each of `TRACKERS`."""
    context = TrackerContext(run, to_dict(run.config), wandb_mode)
    return [*extra, *(build(context) for build in TRACKERS.values())]


def refresh_summaries(run: RunDir, wandb_mode: str, records: list[dict[str, Any]]) -> None:
    """Every built-in tracker's summary of a finished `run` made again (after `lth instability`, which
    trains no branch of the run and so opens no session)."""
    for tracker in worker_trackers(run, wandb_mode):
        try:
            tracker.run_done(records)
        finally:
            tracker.close()


@contextlib.contextmanager
def open_session(run: RunDir, wandb_mode: str, *, levels: int, total_steps: int, replicates: int = 1,
                 branches: Sequence[str] = (), progress: bool = True, trackers: list[Any] | tuple[Any, ...] = (),
                 create: bool = True, show_paths: bool = False) -> Iterator[Session]:
    """Hold the run's lock, make its directory (`create`, its path printed with `progress` or
    `show_paths`), and yield its `Session`: the trackers and a reporter of `levels` + 1 levels of
    `total_steps` iterations for `replicates` replicates (of each of `branches`, the controls, if any:
    see `LevelProgress`)."""
    with run.lock():
        if create:
            run.create()
        session = Session(run, worker_trackers(run, wandb_mode, trackers),
                          LevelProgress(levels, total_steps, replicates, enabled=progress, branches=branches))
        if create and progress:
            session.reporter.note(f"run directory: {run.path}")
        elif create and show_paths:
            print(f"run directory: {run.path}", flush=True)
        try:
            yield session
        finally:
            session.reporter.close()
            for tracker in session.trackers:
                tracker.close()
