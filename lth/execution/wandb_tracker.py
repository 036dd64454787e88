"""Weights & Biases: one W&B run per (replicate, branch), offline by default; failures never stop training.

What a project's dashboard shows with no panel built by hand:

* one W&B run per replicate and branch (the main line, each control, a method run), named
  ``<run directory>-r<replicate>[-<control>]``; its history has one row per level, the ``ticket/*``
  metrics (``ticket/accuracy``: at the early stop, or at the end of training without a validation
  set; ``ticket/test_accuracy``, ``ticket/best_test_accuracy``, ``ticket/density``, ...), declared
  with ``define_metric`` against ``ticket/percent_remaining``, so W&B's default line panels plot
  accuracy against the weights remaining; the evaluations inside a level are ``eval/*`` rows
  (``eval/level``, ``eval/iteration``) on W&B's own step;
* the group is the cell (the experiment and its config without the seed: ``<name>-<hash>``) and the
  job type the branch (``imp``, ``imp+reinit``, ``rigl``...): grouped by group and job type, W&B draws
  the replicates, and runs of one config with other seeds, as a mean and a band;
* one ``summary`` run per run directory: the table of every branch's levels (mean and sample std over
  the replicates), a line chart of the headline accuracy per branch, the local plot, and the error
  barriers `lth instability` measured; refreshed after `lth control` and `lth instability`.

Ids are ``<run directory token>-r<replicate>-<branch>`` (`RunDir.wandb_id`: random, made once per run
directory), so a resume continues its runs and two machines never share one. The rows already logged
(recorded per W&B run id in ``wandb_steps/<id>.json``, one small file per run, so replicate worker
processes never write the same file) are not logged again after a resume. W&B never stops training:
any failure prints one warning and turns this tracker off; local files go on.
"""

from __future__ import annotations

from lth.errors import first_line

import functools
import json
import os
from pathlib import Path
from typing import Any

from lth.execution.tracking import Tracker
from lth.spec.config import replace
from lth.spec.hashing import config_hash
from lth.store import RunDir, read_json_list, write_atomic
from lth.store.records import accuracy, is_finite_number

LEVEL_END = 1 << 62  # the position of a level's ticket row: after every evaluation of the level


def cell_group(run: RunDir) -> str:
    """The W&B group of a run: its experiment and its config without the seed (the cell of a study)."""
    return f"{run.config.name}-{config_hash(replace(run.config, seed=0))}"


def digest_alias(digest: str) -> str:
    """The alias of a ticket artifact's version that names its file's content: ``sha256-<12 hex digits>``."""
    return f"sha256-{digest[:12]}"


def start_artifact(run: RunDir) -> str | None:
    """The W&B artifact version of the ticket a ``--ticket`` run started from, as `lth ticket export
    --wandb` names it (``ticket-<its run directory>:sha256-...``); None for other runs, or a ticket
    not exported from a run."""
    if not run.start_ticket_path.exists():
        return None
    from lth.tickets.file import read_header  # only for runs from a ticket

    try:
        header = read_header(run.start_ticket_path)
        return f"ticket-{header['run']}:{digest_alias(header['sha256']['ticket'])}" if header.get("run") else None
    except Exception:  # the copy is checked where training reads it; here it only names a link
        return None


def ticket_row(record: dict[str, Any]) -> dict[str, float]:
    """A level record as the ``ticket/*`` metrics of its history row (numbers only, nulls left out;
    the units alive per layer as ``ticket/units/<layer>``)."""
    row = {f"ticket/{k}": v for k, v in record.items() if is_finite_number(v)}
    row.update({f"ticket/units/{layer}": alive for layer, (alive, _) in record.get("units", {}).items()})
    headline = accuracy(record)
    if headline is not None:
        row["ticket/accuracy"] = headline
    return row


SWEEP_ENV = "LTH_WANDB_SWEEP"  # set by a sweep's worker: the sweep directory's name, a config field of its runs


def open_wandb_run(directory: Path, run_id: str, name: str, group: str, job_type: str, config: dict[str, Any],
                   mode: str):
    """A W&B run (resumed if `run_id` exists) whose offline files go under `directory`/wandb; the
    project is $WANDB_PROJECT, else "lth"; a sweep's runs carry its name as the config field ``sweep``."""
    import wandb  # heavy (~1 s) and optional in effect: only when a W&B run is opened

    if os.environ.get("WANDB_MODE") == "":
        os.environ.pop("WANDB_MODE")  # an empty value fails wandb's own settings validation
    if os.environ.get(SWEEP_ENV):
        config = {**config, "sweep": os.environ[SWEEP_ENV]}
    settings = wandb.Settings(init_timeout=30, silent=True, console="off")
    return wandb.init(project=os.environ.get("WANDB_PROJECT") or "lth", dir=str(directory), id=run_id, name=name,
                      group=group, job_type=job_type, config=config, mode=mode, resume="allow",
                      reinit="finish_previous", settings=settings)


class WandbTracker(Tracker):
    """Logs a run to W&B (see the module docstring)."""

    one_run_at_a_time = True  # replicates trained in lockstep are fed to it one after another (WholeLevels)

    def __init__(self, run: RunDir, config: dict[str, Any], mode: str = "offline", warn=None):
        self.run, self.run_path, self.config, self.mode = run, run.path, config, mode
        self.group = cell_group(run)
        self.warn = warn or (lambda msg: None)
        self.active = mode != "disabled"
        self.current = None
        self.current_id = ""
        self._steps_dir = run.wandb_steps_dir
        self.used_ids: list[str] = []

    @functools.cached_property
    def ticket_artifact(self) -> str | None:
        """The artifact version a ``--ticket`` run started from (`start_artifact`), read once."""
        return start_artifact(self.run)

    # rows already logged, per W&B run ----------------------------------------------------------

    def _last(self, run_id: str) -> tuple[tuple[int, int], int]:
        """((level, iteration) of the last row logged, its W&B step); ((-1, -1), -1) when none."""
        try:
            last = json.loads((self._steps_dir / f"{run_id}.json").read_text())
            return (int(last["level"]), int(last["iteration"])), int(last["step"])
        except (FileNotFoundError, json.JSONDecodeError, ValueError, TypeError, KeyError):
            return (-1, -1), -1

    def _log(self, rows: list[tuple[tuple[int, int], dict[str, Any]]]) -> None:
        """Log the rows (position, values) after the last one logged, each at the next W&B step."""
        position, step = self._last(self.current_id)
        fresh = [(p, values) for p, values in rows if p > position]
        for p, values in fresh:
            step += 1
            self.current.log(values, step=step)
        if fresh:
            last = {"level": fresh[-1][0][0], "iteration": fresh[-1][0][1], "step": step}
            write_atomic(self._steps_dir / f"{self.current_id}.json", json.dumps(last).encode())

    # W&B runs ------------------------------------------------------------------------------------

    def _guard(self, what: str, fn, *args, **kwargs):
        if not self.active:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as err:  # W&B must never stop training
            self.active = False
            first = first_line(err)
            self.warn(f"W&B {what} failed ({type(err).__name__}: {first}); W&B logging is off for this run, "
                      "local files continue")
            return None

    def _init(self, run_id: str, name: str, job_type: str, config: dict[str, Any]):
        self._finish_current()
        run = open_wandb_run(self.run_path, run_id, name, self.group, job_type, config, self.mode)
        self.current, self.current_id = run, run_id
        self.used_ids.append(run_id)
        return run

    def _finish_current(self) -> None:
        if self.current is not None:
            run, self.current = self.current, None
            run.finish()

    def _open_branch(self, replicate: int, branch: str) -> None:
        """Make the W&B run of (replicate, branch) the open one (it stays open across its levels)."""
        slug = branch.replace("+", "-")
        run_id = f"{self.run.wandb_id()}-r{replicate}-{slug}"
        if self.current is not None and self.current_id == run_id:
            return
        job_type = self.config.get("method", "imp") if branch == "main" else branch
        config = {**self.config, "replicate": replicate, "branch": job_type,
                  "seed": self.config.get("seed", 0) + replicate, "run_directory": self.run_path.name}
        source = self.ticket_artifact
        if source:
            config["ticket_artifact"] = source
        name = f"{self.run_path.name}-r{replicate}" + ("" if branch == "main" else f"-{slug}")
        wb = self._init(run_id, name, job_type, config)
        wb.define_metric("ticket/percent_remaining")
        wb.define_metric("ticket/*", step_metric="ticket/percent_remaining")
        if source and self.mode == "online":
            try:  # lineage: W&B records the artifact as this run's input (online only: offline W&B refuses)
                wb.use_artifact(source)
            except Exception as err:
                self.warn(f"W&B could not record the use of {source} ({type(err).__name__}): no lineage link")

    # the tracker's events ------------------------------------------------------------------------

    def level_start(self, replicate: int, level: int, percent_remaining: float, first_step: int,
                    branch: str = "main") -> None:
        """Open (or keep open) the W&B run of the replicate's branch ("main", or a control's name)."""
        self._guard("init", self._open_branch, replicate, branch)

    def log_evaluations(self, replicate: int, level: int, evaluations: list[dict[str, float]]) -> None:
        rows = [((level, int(e["iteration"])),
                 {f"eval/{k}": v for k, v in e.items()} | {"eval/level": level}) for e in evaluations]
        if self.current is not None:
            self._guard("log", self._log, rows)

    def level_done(self, replicate: int, record: dict[str, Any], evaluations: list[dict[str, float]]) -> None:
        """The level's ticket row (after its evaluations)."""
        if self.current is not None:
            self._guard("log", self._log, [((int(record["level"]), LEVEL_END), ticket_row(record))])

    def run_done(self, records: list[dict[str, Any]]) -> None:
        """The summary run of the run directory (its main line's `records`, and every control's)."""
        self._guard("summary run", self._summary_run, records)

    def _summary_run(self, records: list[dict[str, Any]]) -> None:
        import wandb  # heavy: see _init

        rows = summary_rows(self.run, records)
        present = {k for row in rows for k in row}
        columns = [c for c in _FIRST if c in present] + sorted(present - set(_FIRST))
        table = wandb.Table(columns=columns, data=[[row.get(c) for c in columns] for row in rows])
        wb = self._init(f"{self.run.wandb_id()}-summary", f"{self.run_path.name}-summary", "summary",
                        {**self.config, "run_directory": self.run_path.name})
        values = {"levels": table,
                  "accuracy_vs_sparsity": wandb.plot.line(table, "percent_remaining", "accuracy", stroke="branch",
                                                          title="test accuracy (early stop, else end) vs % weights "
                                                                "remaining")}
        if self.run.plot_path.exists():
            values["accuracy_vs_sparsity_png"] = wandb.Image(str(self.run.plot_path))
        if (self.run.path / "accuracy_vs_cost.png").exists():
            values["accuracy_vs_cost_png"] = wandb.Image(str(self.run.path / "accuracy_vs_cost.png"))
        barriers = instability_rows(self.run)
        if barriers:
            names = list(barriers[0])
            values["instability"] = wandb.Table(columns=names, data=[[row[c] for c in names] for row in barriers])
        position, _ = self._last(self.current_id)
        self._log([((position[0] + 1, 0), values)])
        for r in records:
            if accuracy(r) is not None:
                wb.summary[f"level_{r['level']:02d}/accuracy"] = accuracy(r)
        self._finish_current()

    def log_ticket(self, replicate: int, path: Path, level: int, record: dict[str, Any], digest: str,
                   best: bool) -> None:
        """Log an exported ticket file as a version of the run's ``ticket`` artifact, from the W&B run of
        the replicate's main line (see `log_ticket_artifact`)."""
        self._guard("ticket artifact", self._log_ticket, replicate, Path(path), level, record, digest, best)

    def _log_ticket(self, replicate: int, path: Path, level: int, record: dict[str, Any], digest: str,
                    best: bool) -> None:
        import wandb  # heavy: see _init

        self._open_branch(replicate, "main")
        metadata = {"run_directory": self.run_path.name, "config_hash": self.run_path.name.rsplit("-", 1)[-1],
                    "replicate": replicate, "level": level, "sha256": digest, "file": str(path.resolve()),
                    **{k: v for k, v in record.items() if isinstance(v, (int, float, str, type(None)))}}
        artifact = wandb.Artifact(f"ticket-{self.run_path.name}", type="ticket", metadata=metadata,
                                  description=f"level {level} of replicate {replicate}: a `lth ticket export` file")
        if self.mode == "online":
            artifact.add_file(str(path), name=path.name)  # uploaded: usable from any machine
        else:  # a reference with its checksum: full offline artifacts break when synced from elsewhere
            artifact.add_reference(path.resolve().as_uri(), name=path.name, checksum=True)
        aliases = [f"r{replicate}-level-{level:02d}", f"level-{level:02d}", digest_alias(digest)]
        aliases += ["best"] if best else []
        self.current.log_artifact(artifact, aliases=aliases)

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


def instability_rows(run: RunDir) -> list[dict[str, Any]]:
    """One row per `lth instability` record of every replicate: where the error barrier was measured
    (level, rewind step, BatchNorm statistics) and its value."""
    return [{"replicate": i, "level": r["level"], "rewind_step": r.get("rewind_step"), "bn_state": r.get("bn_state"),
             "barrier": r.get("barrier"), "stable": r.get("stable")}
            for i, rep in enumerate(run.replicates()) for r in rep.instability_records()]


_FIRST = ["branch", "level", "percent_remaining", "accuracy", "accuracy_sample_std", "replicates"]


def summary_rows(run: RunDir, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (branch, level): the main line's `records` and each control's results (the mean
    and sample std over the replicates `lth control` wrote), with the headline accuracy (at the early
    stop, else the end)."""
    branches = {run.config.method: records}
    for name in sorted({n for rep in run.replicates() for n in rep.control_names()}):
        if run.control_results_path(name).exists():
            branches[name] = read_json_list(run.control_results_path(name))
    rows = []
    for branch, branch_records in branches.items():
        for record in branch_records:
            row = {k: v for k, v in record.items() if isinstance(v, (int, float, type(None))) and k != "control"}
            std = record.get("early_stop_test_accuracy_sample_std") if record.get("early_stop_test_accuracy") \
                is not None else record.get("test_accuracy_sample_std")
            rows.append({"branch": branch, **row, "accuracy": accuracy(record), "accuracy_sample_std": std})
    return rows
