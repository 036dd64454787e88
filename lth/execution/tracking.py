"""What a run reports to its trackers (`Tracker`), and how a tracker that holds one open run at a time
hears replicates trained in lockstep (`WholeLevels`). The W&B tracker: `lth.execution.wandb_tracker`."""

from __future__ import annotations

from typing import Any



class Tracker:
    """What a run reports to a tracker (all optional; subclass and override what you need). Called
    outside jit, in every process of a run; `replicate` is the replicate index."""

    def level_start(self, replicate: int, level: int, percent_remaining: float, first_step: int,
                    branch: str = "main") -> None:
        """A level (of the main line, or of a control `branch`) starts training at `first_step`."""

    def log_evaluations(self, replicate: int, level: int, evaluations: list[dict[str, float]]) -> None:
        """New evaluations of the level being trained (dicts with an "iteration")."""

    def level_done(self, replicate: int, record: dict[str, Any], evaluations: list[dict[str, float]]) -> None:
        """The level ended with `record` (a results.json row) after `evaluations`."""

    def run_done(self, records: list[dict[str, Any]]) -> None:
        """Every replicate of the main line is done; `records` are the run's results."""

    def close(self) -> None:
        """The run (or its controls) is over: flush and let go."""


class WholeLevels:
    """Feeds a tracker that holds one open run at a time (W&B: one run per replicate and level) the
    replicates of a lockstep group one after another: each replicate's level is logged whole when it
    ends, with all its evaluations (those before a resume too; the tracker skips steps it has)."""

    def __init__(self, tracker: Any):
        self.tracker, self.starts = tracker, {}

    def level_start(self, replicate: int, *args: Any, **kwargs: Any) -> None:
        self.starts[replicate] = (args, kwargs)

    def log_evaluations(self, *args: Any) -> None:
        pass

    def level_done(self, replicate: int, record: dict[str, Any], evaluations: list[dict[str, float]]) -> None:
        args, kwargs = self.starts.pop(replicate)
        self.tracker.level_start(replicate, *args, **kwargs)
        self.tracker.log_evaluations(replicate, record["level"], evaluations)
        self.tracker.level_done(replicate, record, evaluations)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tracker, name)


def one_run_at_a_time(trackers: list[Any]) -> list[Any]:
    """`trackers` with those that hold one open run at a time wrapped in `WholeLevels`."""
    return [WholeLevels(t) if getattr(t, "one_run_at_a_time", False) else t for t in trackers]
