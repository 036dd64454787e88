"""Weights & Biases: one W&B run per (replicate, level), offline by default; failures never stop training."""

from __future__ import annotations

import json
import os
from typing import Any

from lth.store import RunDir, write_atomic


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


class WandbTracker(Tracker):
    """Logs a run to W&B: one W&B run per (replicate, level), grouped by the run directory's name.

    * each level run has the full config (+ level, replicate, seed, percent remaining) as its W&B
      config, validation / test curves with the iteration as step, and the level record as summary:
      the dashboard overlays every level's curves, and a scatter/line panel of
      summary.percent_remaining vs summary.early_stop_test_accuracy, grouped by `group` or any
      config field, gives the accuracy-vs-sparsity chart across replicates and runs;
    * one `summary` run per run directory logs the per-level wandb.Table, a line plot of accuracy
      vs sparsity and the plot image.

    Ids are deterministic (config hash, replicate, level), so a resumed run continues the same W&B
    runs; steps already logged (recorded per W&B run id in `wandb_steps/<id>.json`, one small file per
    run, so replicate worker processes never write the same file) are not logged again. W&B never
    stops training: any failure prints one warning and turns this tracker off; local files go on.
    """

    one_run_at_a_time = True  # replicates trained in lockstep are fed to it one after another (WholeLevels)

    def __init__(self, run: RunDir, config: dict[str, Any], mode: str = "offline", warn=None):
        self.run, self.run_path, self.config, self.mode = run, run.path, config, mode
        self.group = self.run_path.name
        self.warn = warn or (lambda msg: None)
        self.active = mode != "disabled"
        self.current = None
        self.current_id = ""
        self._steps_dir = run.wandb_steps_dir
        self.used_ids: list[str] = []

    def _last_step(self, run_id: str) -> int:
        try:
            return int(json.loads((self._steps_dir / f"{run_id}.json").read_text()))
        except (FileNotFoundError, json.JSONDecodeError, ValueError, TypeError):
            return -1

    def _record_step(self, run_id: str, step: int) -> None:
        write_atomic(self._steps_dir / f"{run_id}.json", json.dumps(step).encode())

    def _guard(self, what: str, fn, *args, **kwargs):
        if not self.active:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as err:  # W&B must never stop training
            self.active = False
            first = (str(err).splitlines() or [type(err).__name__])[0][:200]
            self.warn(f"W&B {what} failed ({type(err).__name__}: {first}); W&B logging is off for this run, "
                      "local files continue")
            return None

    def _init(self, run_id: str, name: str, job_type: str, config: dict[str, Any]):
        import wandb  # heavy (~1 s) and optional in effect: only when a W&B run is opened

        self._finish_current()
        if os.environ.get("WANDB_MODE") == "":
            os.environ.pop("WANDB_MODE")  # an empty value fails wandb's own settings validation
        settings = wandb.Settings(init_timeout=30, silent=True, console="off")
        run = wandb.init(
            project=os.environ.get("WANDB_PROJECT") or "lth", dir=str(self.run_path), id=run_id, name=name,
            group=self.group, job_type=job_type, config=config, mode=self.mode, resume="allow",
            reinit="finish_previous", settings=settings,
        )
        self.current, self.current_id = run, run_id
        self.used_ids.append(run_id)
        return run

    def _finish_current(self) -> None:
        if self.current is not None:
            run, self.current = self.current, None
            run.finish()

    def level_start(self, replicate: int, level: int, percent_remaining: float, first_step: int,
                    branch: str = "main") -> None:
        """Open the W&B run of a level; `branch` names a control ("imp+reinit"), its own job type."""
        suffix = f"-{branch.replace('+', '-')}" if branch != "main" else ""
        run_id = f"{self.group}-r{replicate}{suffix}-l{level}"
        config = {**self.config, "level": level, "replicate": replicate, "branch": branch,
                  "seed": self.config.get("seed", 0) + replicate, "percent_remaining": percent_remaining}
        name = f"r{replicate}{suffix}-level{level:02d}"
        self._guard("init", self._init, run_id, name, "level" if branch == "main" else branch, config)

    def log_evaluations(self, replicate: int, level: int, evaluations: list[dict[str, float]]) -> None:
        def log():
            last = self._last_step(self.current_id)
            fresh = [e for e in evaluations if e["iteration"] > last]
            for e in fresh:
                self.current.log({k: v for k, v in e.items() if k != "iteration"} | {"iteration": e["iteration"]},
                                 step=e["iteration"])
            if fresh:
                self._record_step(self.current_id, fresh[-1]["iteration"])

        if self.current is not None:
            self._guard("log", log)

    def level_done(self, replicate: int, record: dict[str, Any], evaluations: list[dict[str, float]]) -> None:
        def summarize():
            for key, value in record.items():
                self.current.summary[key] = value
            self._finish_current()

        if self.current is not None:
            self._guard("summary", summarize)

    def run_done(self, records: list[dict[str, Any]]) -> None:
        """The summary run of the run directory: the per-level table, the line plot and the image."""
        def summary_run():
            import wandb  # heavy: see _init

            wb = self._init(f"{self.group}-summary", "summary", "summary", self.config)
            columns = ["level", "percent_remaining", "early_stop_test_accuracy", "test_accuracy",
                       "best_test_accuracy", "early_stop_iteration", "replicates"]
            table = wandb.Table(columns=columns, data=[[r.get(c, 1) for c in columns] for r in records])
            wb.log({
                "levels": table,
                "accuracy_vs_sparsity": wandb.plot.line(table, "percent_remaining", "early_stop_test_accuracy",
                                                        title="early-stop test accuracy vs % weights remaining"),
                "accuracy_vs_sparsity_png": wandb.Image(str(self.run.plot_path)),
            })
            for r in records:
                wb.summary[f"level_{r['level']:02d}/early_stop_test_accuracy"] = r["early_stop_test_accuracy"]
            self._finish_current()

        self._guard("summary run", summary_run)

    def close(self) -> None:
        self._guard("finish", self._finish_current)
        if self.mode != "disabled":
            try:
                import wandb  # heavy: see _init

                wandb.teardown()  # waits for the W&B service to flush the offline files
            except Exception:
                pass

    def sync_command(self) -> str | None:
        """The command that uploads this run's offline W&B files."""
        if self.mode != "offline":
            return None
        return f"wandb sync {self.run_path / 'wandb'}/offline-run-*"


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
