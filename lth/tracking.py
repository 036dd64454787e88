"""Sinks for what a run measures. Local JSONL always; the jitted code only returns metrics."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class JsonlSink:
    """Append one JSON object per line and flush, so a killed run keeps every line written.
    `enabled=False`: write nothing (processes other than 0 of a multi-process run)."""

    def __init__(self, path: Path, mode: str = "a", enabled: bool = True):
        self._file = None
        if enabled:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, mode, encoding="utf-8")

    def log(self, record: dict[str, Any]) -> None:
        if self._file is not None:
            self._file.write(json.dumps(record, sort_keys=True) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def __enter__(self) -> JsonlSink:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Read a JSONL file back, ignoring a trailing partial line (a crash mid-write)."""
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


# --------------------------------------------------------------------------- Weights & Biases

WANDB_MODES = ("online", "offline", "disabled")


def resolve_wandb_mode(mode: str | None) -> str:
    """The W&B mode: the argument, else $WANDB_MODE, else offline (no account, no network)."""
    from lth.errors import ConfigError

    mode = mode or os.environ.get("WANDB_MODE") or "offline"
    mode = {"dryrun": "offline", "run": "online"}.get(mode, mode)
    if mode not in WANDB_MODES:
        raise ConfigError(f"unknown W&B mode {mode!r}: choose one of {', '.join(WANDB_MODES)}")
    return mode


def wandb_credentials_present() -> bool:
    """An API key in $WANDB_API_KEY or in ~/.netrc (or $NETRC) for the W&B host."""
    import netrc
    from urllib.parse import urlparse

    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname or "api.wandb.ai"
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


class WandbTracker:
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

    one_run_at_a_time = True  # replicates trained in lockstep are fed to it one after another (lth.lottery)

    def __init__(self, run_path: Path, config: dict[str, Any], mode: str = "offline", warn=None):
        self.run_path, self.config, self.mode = Path(run_path), config, mode
        self.group = self.run_path.name
        self.warn = warn or (lambda msg: None)
        self.active = mode != "disabled"
        self.current = None
        self.current_id = ""
        self._steps_dir = self.run_path / "wandb_steps"
        self.used_ids: list[str] = []

    def _last_step(self, run_id: str) -> int:
        try:
            return int(json.loads((self._steps_dir / f"{run_id}.json").read_text()))
        except (FileNotFoundError, json.JSONDecodeError, ValueError, TypeError):
            return -1

    def _record_step(self, run_id: str, step: int) -> None:
        from lth.runs import write_atomic

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
        import wandb

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

    def run_done(self, run: Any, records: list[dict[str, Any]]) -> None:
        def summary_run():
            import wandb

            wb = self._init(f"{self.group}-summary", "summary", "summary", self.config)
            columns = ["level", "percent_remaining", "early_stop_test_accuracy", "test_accuracy",
                       "best_test_accuracy", "early_stop_iteration", "replicates"]
            table = wandb.Table(columns=columns, data=[[r.get(c, 1) for c in columns] for r in records])
            wb.log({
                "levels": table,
                "accuracy_vs_sparsity": wandb.plot.line(table, "percent_remaining", "early_stop_test_accuracy",
                                                        title="early-stop test accuracy vs % weights remaining"),
                "accuracy_vs_sparsity_png": wandb.Image(str(run.plot_path)),
            })
            for r in records:
                wb.summary[f"level_{r['level']:02d}/early_stop_test_accuracy"] = r["early_stop_test_accuracy"]
            self._finish_current()

        self._guard("summary run", summary_run)

    def close(self) -> None:
        self._guard("finish", self._finish_current)
        if self.mode != "disabled":
            try:
                import wandb

                wandb.teardown()  # waits for the W&B service to flush the offline files
            except Exception:
                pass

    def sync_command(self) -> str | None:
        """The command that uploads this run's offline W&B files."""
        if self.mode != "offline":
            return None
        return f"wandb sync {self.run_path / 'wandb'}/offline-run-*"
