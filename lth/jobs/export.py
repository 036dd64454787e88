"""`lth ticket export`'s W&B side: an exported ticket file as a version of its run's ``ticket``
artifact (the file itself is written by `lth.tickets.export_from_run`)."""

from __future__ import annotations

import os
from typing import Any

from lth.execution.session import worker_trackers
from lth.execution.wandb_tracker import WandbTracker
from lth.store import best_ticket, open_run


def log_ticket_artifact(run_path: str | os.PathLike, info: dict[str, Any], wandb_mode: str) -> None:
    """Log the ticket `info` (what `export_from_run` returned) from the W&B run of its replicate's main
    line, with the aliases ``r<replicate>-level-XX``, ``level-XX`` and, for the replicate's best
    ticket (`lth.store.best_ticket`), ``best``. A W&B failure is one warning; the file stays."""
    run = open_run(run_path)
    replicate, level = info["replicate"], info["level"]
    records = run.replicate(replicate).read_results()
    best = best_ticket(records)
    for tracker in worker_trackers(run, wandb_mode):
        if isinstance(tracker, WandbTracker):
            tracker.log_ticket(replicate, info["path"], level, records[level], info["digest"],
                               best is not None and best["level"] == level)
            if tracker.active:
                print(f"W&B: ticket artifact ticket-{run.path.name}, alias r{replicate}-level-{level:02d}")
        tracker.close()
