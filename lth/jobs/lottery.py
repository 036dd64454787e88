"""`run_lottery`: the IMP driver (`lth.lottery`) wired to the run directory, W&B, progress and the plot,
for a checked plan (`lth.plans.run`)."""

from __future__ import annotations

import importlib
import threading
from pathlib import Path
from typing import Any

import jax

from lth.analysis.plots import plot_run, pyplot
from lth.errors import ConfigError
from lth.jobs.controls import train_control_plan
from lth.jobs.methods import run_method_plan
from lth.jobs.report import report_run_end
from lth.lottery import Setup, build_setup, init_params, initial_mask
from lth.lottery.ahead import start_ahead
from lth.lottery.setup import data_parallel_setup
from lth.plans.control import plan_controls
from lth.plans.run import RunPlan, plan_run
from lth.execution.from_ticket import keep_ticket, start_from_ticket
from lth.execution.layout import choose_layout
from lth.execution.progress import warn
from lth.execution.replicates import run_replicate, run_replicates_together
from lth.execution.session import Session, open_session
from lth.execution.workers import run_replicates_in_workers
from lth.sparsity.masks import Mask, mask_digest
from lth.spec.config import ExperimentConfig, replace
from lth.spec.parse import CheckpointPeriod
from lth.store import ReplicateDir, RunDir, aggregate, load_mask
from lth.store.queries import levels_done, run_records
from lth.store.resume import check_finished
from lth.store.run_dir import check_run_root
from lth.tickets import Ticket


def run_lottery(
    config: ExperimentConfig,
    *,
    runs_root: str | Path | None = None,
    data_root: str | Path | None = None,
    mask: Mask | str | Path | None = None,
    ticket: Ticket | str | Path | None = None,
    replicates: int = 1,
    checkpoint_every: str = "10min",
    progress: bool = True,
    wandb: str | None = None,
    trackers: list[Any] | None = None,
    controls: tuple[str, ...] = (),
    control_levels: str | list[int] | None = None,
    data_parallel: bool = False,
    workers: int | None = None,
    layout: str | None = None,
    allow_mixed_numerics: bool = False,
) -> list[dict[str, Any]]:
    """Run, resume or finish a lottery experiment; return its per-level records.

    With one replicate the records are that replicate's; with several, the mean (and `*_sample_std`, ddof=1) over
    replicates per level (each replicate's own records are in ``replicate_XX/results.json``).
    Replicate r uses seed ``config.seed + r``. Finished levels are never recomputed; an interrupted
    level resumes from its latest checkpoint and ends bit-identical to an uninterrupted run. Inside a
    level a checkpoint is saved at the first epoch boundary after `checkpoint_every` has passed:
    wall time ("10min", the default; "90s") or training ("5ep", "2000it"); "0ep" = level ends only.

    Everything is validated before the run directory is created, so bad input raises a
    `ConfigError` / `MaskError` (both `ValueError`) and leaves nothing behind. `mask` is an optional
    starting mask (a mask pytree or a saved `.npz`); its digest becomes part of the config. `ticket`
    (a `lth.tickets.Ticket` or its file): level 0 starts from its mask and weights, at its start
    iteration (`lth.execution.from_ticket`); its digest becomes part of the config, a copy goes into the run
    directory. On the experiment it came from, level 0 retrains the ticket's level exactly.

    `wandb`: "offline" (default, or $WANDB_MODE), "online" or "disabled"; offline files are written
    inside the run directory. Local files (results, metrics.jsonl, plots) are written in every mode.
    `trackers`: more `lth.execution.tracking.Tracker`s to report to.

    `controls` (e.g. ("imp+reinit", "random_layerwise")) are trained afterwards for `control_levels`
    (default: every level) by `lth.jobs.controls.run_controls`; finished ones are not recomputed.

    `data_parallel`: shard every batch over all devices (`lth.training.sharded`; params and masks
    replicated). In a multi-process launch (`lth.training.processes.initialize_distributed`,
    docs/multihost.md) it is required, and the devices are those of all processes: every process
    computes everything, process 0 alone writes the run directory, checkpoints, logs and W&B (extra
    `trackers` are called in every process). Results equal single-device training to float
    tolerance, not bit for bit: resume a run on the device count it started with.

    `layout`: how several replicates run (`lth.execution.layout`): "sequential", "workers" (processes
    pinned to CPU cores; `workers` of them, default one per core and replicate to train;
    byte-identical to sequential), "vmap" or "devices" (one vmapped program, on one device or split
    over the local devices; equal to sequential up to float summation order). Default: workers on
    CPU, devices (one device: vmap) on accelerators, sequential with data-parallel training.

    Every replicate records its numerics context (backend, devices, CPU threads, versions, XLA
    flags); resuming a replicate under another context is refused unless `allow_mixed_numerics`.
    A rerun of a finished run checks its files (and repairs what redundant copies allow).
    """
    return run_plan(plan_run(config, runs_root=runs_root, data_root=data_root, mask=mask, ticket=ticket,
                             replicates=replicates, checkpoint_every=checkpoint_every, progress=progress, wandb=wandb,
                             trackers=trackers, controls=controls, control_levels=control_levels,
                             data_parallel=data_parallel, workers=workers, layout=layout,
                             allow_mixed_numerics=allow_mixed_numerics))


def run_plan(plan: RunPlan) -> list[dict[str, Any]]:
    """`run_lottery` of a checked plan (`lth.plans.run.plan_run`; `lth run` builds it from its arguments)."""
    if plan.config.method != "imp":  # gradual, static, SET, RigL: one record per target density
        return run_method_plan(plan)
    main = jax.process_index() == 0
    report = (plan.progress or plan.show_paths) and main  # the paths to act on: also with --no-progress
    _check_processes(plan)
    layout, _ = choose_layout(plan.layout, plan.workers, plan.replicates, plan.data_parallel)  # before any writing
    # when this process trains the main line itself, its start-up work runs in threads (`lth.lottery.ahead`)
    itself = layout == "sequential" and not plan.data_parallel
    setup = build_setup(plan.config, plan.data_root, ahead=start_ahead if itself else None)
    try:
        return _run_setup(plan, setup, main, report)
    finally:  # done, or stopped by bad input (a ticket or mask that does not fit): no start-up work left to do
        if setup.ahead is not None:
            setup.ahead.cancel()


def _run_setup(plan: RunPlan, setup: Setup, main: bool, report: bool) -> list[dict[str, Any]]:
    """`run_plan` once the setup is built (and its start-up work started)."""
    if plan.data_parallel:
        setup = data_parallel_setup(setup)
    every = plan.checkpoint_every.period(setup.trainer.steps_per_epoch)
    setup, mask, ticket = start_from_ticket(setup, plan.ticket, plan.mask, plan.runs_root)
    if ticket is None:
        setup, mask = _with_initial_mask(setup, mask)
    run = RunDir(check_run_root(plan.runs_root), setup.config, writable=main)  # several processes: process 0 writes
    reps = [run.replicate(r) for r in range(plan.replicates)]
    if _finished(setup, run, reps, mask):
        if report:
            print(f"{run.path}: all {setup.config.levels + 1} levels of {plan.replicates} replicate(s) done")
        _run_controls(run, plan, report=report)
        return run_records(run, reps)
    if ticket is not None:
        keep_ticket(run, ticket)
    wandb_mode = plan.wandb if main else "disabled"
    per_replicate, wandb_tracker = _train_replicates(run, reps, setup, mask, every, plan, wandb_mode)
    _run_controls(run, plan, report=report)
    if report and wandb_tracker.sync_command() and wandb_tracker.active:
        print(f"W&B (offline): upload with  {wandb_tracker.sync_command()}")
    if not main:  # process 0 may still be writing the files: the same records, from memory
        return per_replicate[0] if plan.replicates == 1 else aggregate(per_replicate)
    return run_records(run, reps)


def _finished(setup: Setup, run: RunDir, reps: list[ReplicateDir], mask: Mask | None) -> bool:
    """Whether every replicate has every level and its files check out (`check_finished`, under the
    run's lock; damaged copies repaired, the run's results.json rewritten from the replicates')."""
    levels = setup.config.levels + 1
    if not run.config_path.is_file() or any(levels_done(rep) < levels for rep in reps):
        return False
    if setup.ahead is not None:  # nothing to train, most likely: the programs compiled ahead would go unused
        setup.ahead.cancel_compiles()
    params0, model_state0 = init_params(setup)
    template, mask0 = setup.trainer.init_state(params0, model_state0), initial_mask(setup, params0, mask)
    with run.lock():
        done = all(len(check_finished(rep, template, mask0, warn)) == levels for rep in reps)
        if done:
            run.write_aggregate([rep.read_results() for rep in reps])
    return done


def _train_replicates(run: RunDir, reps: list[ReplicateDir], setup: Setup, mask: Mask | None,
                      every: CheckpointPeriod, plan: RunPlan, wandb_mode: str
                      ) -> tuple[list[list[dict[str, Any]]], Any]:
    """Train every unfinished replicate in the run's session, in the layout chosen; then the run's
    aggregate, plot and W&B summary. Returns each replicate's records and the W&B tracker."""
    config, main = setup.config, run.writable
    # the layout follows from the replicates asked for, not from how many are left: a replicate
    # resumes under the numerics it started with
    layout, workers = choose_layout(plan.layout, plan.workers, len(reps), plan.data_parallel)
    if main:  # the plot at the end imports matplotlib (~0.5 s): done in a thread while the levels train
        threading.Thread(target=_import_plotting, name="lth-import-plotting", daemon=True).start()
    with open_session(run, wandb_mode, levels=config.levels, total_steps=setup.total_steps, replicates=len(reps),
                      progress=plan.progress and main, show_paths=plan.show_paths and main,
                      trackers=plan.trackers) as session:
        todo = [r for r, rep in enumerate(reps) if levels_done(rep) < config.levels + 1]
        if layout == "workers" and todo:
            run_replicates_in_workers(run, todo, min(workers, len(todo)), plan.data_root, mask, every, wandb_mode,
                                      session.reporter, plan.allow_mixed_numerics, trackers=plan.trackers)
        elif layout in ("vmap", "devices"):
            run_replicates_together(setup, reps, todo, mask, layout, every, session.reporter, session.trackers,
                                    plan.allow_mixed_numerics)
        per_replicate = _each_replicate(session, setup, reps, mask, every, plan.allow_mixed_numerics)
        if main:
            plot_run(run.path)
            session.run_done(run_records(run, reps))
    return per_replicate, session.wandb


def _import_plotting() -> None:
    """Import what `plot_run` draws with (pyplot and its Agg backend, the figure modules)."""
    pyplot()
    importlib.import_module("lth.analysis.cost_chart")
    importlib.import_module("matplotlib.figure")


def _each_replicate(session: Session, setup: Setup, reps: list[ReplicateDir], mask: Mask | None,
                    every: CheckpointPeriod, allow_mixed_numerics: bool) -> list[list[dict[str, Any]]]:
    """Every replicate one after the other (after workers or vmap, this only reads the finished
    records), the run's results.json rewritten after each."""
    per_replicate = []
    for r, rep in enumerate(reps):
        per_replicate.append(run_replicate(setup.for_replicate(r), rep, mask, r, every, session.reporter,
                                           session.trackers, allow_mixed_numerics))
        session.run.write_aggregate(per_replicate)
    return per_replicate


def _check_processes(plan: RunPlan) -> None:
    """One-line errors for options that a multi-process launch cannot take."""
    processes = jax.process_count()
    if processes > 1 and not plan.data_parallel:
        raise ConfigError(f"this run has {processes} processes: add --data-parallel to train one network over all "
                          "of their devices (see docs/multihost.md)")
    if processes > 1 and plan.controls:
        raise ConfigError("controls run in one process: use --no-controls here and `lth control` afterwards")


def _run_controls(run: RunDir, plan: RunPlan, report: bool) -> None:
    """The experiment's controls at their levels, after the main line (finished ones are kept); with
    `report`, then the summary of every branch over the replicates and where the files are."""
    names: list[str] = []
    if plan.controls and plan.control_levels:
        controls = plan_controls(run.path, plan.controls, list(plan.control_levels), wandb=plan.wandb,
                                 data_root=plan.data_root, progress=plan.progress, show_paths=plan.show_paths)
        names = list(train_control_plan(controls))
    if report:
        report_run_end(run, names, [run.results_path, *map(run.control_results_path, names)], summary=plan.progress)


def _with_initial_mask(setup: Setup, mask: Mask | str | Path | None) -> tuple[Setup, Mask | None]:
    """The setup with a starting mask's digest in its config, and the mask checked against the model."""
    if mask is None:
        return setup, None
    params0, _ = init_params(setup)
    mask = initial_mask(setup, params0, load_mask(mask, params0) if isinstance(mask, (str, Path)) else mask)
    return setup.with_config(replace(setup.config, initial_mask=mask_digest(mask))), mask
