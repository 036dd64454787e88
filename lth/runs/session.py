"""A session: what every job that trains into a run directory holds while it trains, built in one
place. Under the run's lock: the run directory made (with its config.json), the trackers (the W&B
tracker, built only here and in `worker_trackers`, plus the caller's), and the terminal reporter;
on the way out, whatever happened, the reporter and every tracker closed."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from lth.runs.progress import LevelProgress, warn
from lth.runs.tracking import WandbTracker
from lth.spec.config import to_dict
from lth.store import RunDir


@dataclass
class Session:
    """The open side of one run: its directory, its trackers (the W&B one last) and its reporter."""

    run: RunDir
    trackers: list[Any]
    reporter: LevelProgress

    @property
    def wandb(self) -> WandbTracker:
        """The run's W&B tracker (offline files inside the run directory, or disabled)."""
        return self.trackers[-1]

    def run_done(self, records: list[dict[str, Any]]) -> None:
        """Every tracker told that the run finished with `records`."""
        for tracker in self.trackers:
            tracker.run_done(records)


def worker_trackers(run: RunDir, wandb_mode: str, extra: list[Any] | tuple[Any, ...] = ()) -> list[Any]:
    """The trackers a process training into `run` reports to: `extra`, then the run's W&B tracker."""
    return [*extra, WandbTracker(run, to_dict(run.config), wandb_mode, warn=warn)]


@contextlib.contextmanager
def open_session(run: RunDir, wandb_mode: str, *, levels: int, total_steps: int, slots: int = 1,
                 progress: bool = True, trackers: list[Any] | tuple[Any, ...] = (), create: bool = True
                 ) -> Iterator[Session]:
    """Hold the run's lock, make its directory (`create`), and yield its `Session`: the trackers and a
    reporter of `levels` + 1 levels of `total_steps` iterations for `slots` replicates (or branches)."""
    with run.lock():
        if create:
            run.create()
        session = Session(run, worker_trackers(run, wandb_mode, trackers),
                          LevelProgress(levels, total_steps, slots, enabled=progress))
        if create:
            session.reporter.note(f"run directory: {run.path}")
        try:
            yield session
        finally:
            session.reporter.close()
            for tracker in session.trackers:
                tracker.close()
