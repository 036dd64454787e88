"""`run_method`: a run of a sparse method other than IMP (`lth.lottery.methods`: gradual, static,
SNIP, SET, RigL), one record per target density, wired to the run directory, W&B, progress and the plot.

The run directory has the lottery's layout: ``replicate_XX/results.json`` holds one record per
density (`level` = its position in ``sparse.densities``), ``masks/level_XX.npz`` the final mask, and
for a mask that changes during training ``masks/level_XX/step_N.npz`` the mask at every chunk end
(epoch) where it had changed -- its history, at the resolution of the compiled chunks. A rerun skips
the finished densities; an interrupted one restarts from its beginning (no checkpoints inside).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lth.analysis.plots import plot_run
from lth.spec.config import ExperimentConfig
from lth.spec.fields import records_planned
from lth.lottery import Setup, build_setup
from lth.jobs.report import print_paths, run_plots
from lth.lottery.methods import check_method, method_levels
from lth.execution.progress import warn
from lth.execution.recorder import Recorder
from lth.execution.replicates import level_errors
from lth.execution.session import open_session
from lth.plans.run import RunPlan, plan_run
from lth.sparsity.masks import Mask, mask_digest
from lth.store import JsonlSink, ReplicateDir, RunDir
from lth.store.queries import levels_done, run_records
from lth.store.run_dir import check_run_root
from lth.training import TrainState
from lth.training.processes import numerics_context


class MaskHistory(Recorder):
    """The Recorder of a method run, which also keeps the mask whenever it changed since the last chunk."""

    last: str | None = None

    def level_start(self, level: int, state: TrainState, mask: Mask) -> None:
        super().level_start(level, state, mask)
        self.last = mask_digest(mask)

    def chunk_done(self, level: int, state: TrainState, mask: Mask, new: list[dict[str, float]],
                   evaluations: list[dict[str, float]]) -> None:
        super().chunk_done(level, state, mask, new, evaluations)
        if state.sparse is not None and mask_digest(mask) != self.last:
            self.files.save_mask(level, mask, step=int(state.step))
            self.last = mask_digest(mask)


def run_method(config: ExperimentConfig, *, runs_root: str | Path | None = None, data_root: str | Path | None = None,
               replicates: int = 1, progress: bool = True, wandb: str | None = None,
               trackers: list[Any] | None = None) -> list[dict[str, Any]]:
    """Train (or finish) `config.method` at every target density, for `replicates` seeds (one after
    the other; replicate r has seed ``config.seed + r``); returns the records (means and
    `*_sample_std` over replicates when there are several). Bad settings raise a one-line ConfigError
    before anything is written; the run's lock is held while it trains, every file is written
    atomically, and each replicate's manifest records its numerics context."""
    return run_method_plan(plan_run(config, runs_root=runs_root, data_root=data_root, replicates=replicates,
                                    progress=progress, wandb=wandb, trackers=trackers))


def run_method_plan(plan: RunPlan) -> list[dict[str, Any]]:
    """`run_method` of a checked plan (`lth.plans.run.plan_run` of a config whose method is not imp)."""
    config, replicates = plan.config, plan.replicates
    setup = build_setup(config, plan.data_root)
    check_method(setup)
    run = RunDir(check_run_root(plan.runs_root), config)
    count = records_planned(config)
    reps = [run.replicate(r) for r in range(replicates)]
    if run.results_path.exists() and all(levels_done(rep) == count for rep in reps):
        if plan.progress or plan.show_paths:
            print(f"{run.path}: all {count} densities of {replicates} replicate(s) done")
        return run_records(run, reps)
    with open_session(run, plan.wandb, levels=count - 1, total_steps=setup.total_steps, replicates=replicates,
                      progress=plan.progress, show_paths=plan.show_paths, trackers=plan.trackers) as session:
        per_replicate = []
        for r, rep in enumerate(reps):
            _train_replicate(setup, rep, r, session.reporter, session.trackers)
            per_replicate.append(rep.read_results())
            run.write_aggregate(per_replicate)
        plot_run(run.path)
        session.wandb.run_done(run_records(run, reps))
    if plan.progress or plan.show_paths:
        print_paths(("results", [run.results_path]), ("plot", run_plots(run)))
    return run_records(run, reps)


def _train_replicate(setup: Setup, rep: ReplicateDir, replicate: int, reporter: Any, trackers: list[Any]) -> None:
    """The unfinished densities of one replicate; an interrupted density restarts from its beginning."""
    if rep.path.exists() and levels_done(rep) == 0:
        if rep.results_path.exists():
            warn(f"{rep.results_path} is damaged: training replicate {replicate} again from its start")
        rep.reset()
    done = rep.read_results() if rep.results_path.exists() else []
    rep.mkdir()
    rep.truncate_metrics(len(done), -1, warn)  # an interrupted density's lines: it restarts
    rep.update_manifest(numerics=numerics_context())
    recorders: list[MaskHistory] = []
    with level_errors(recorders), JsonlSink(rep.metrics_path) as sink:
        recorders.append(MaskHistory(rep, sink, reporter, trackers, replicate, records=done))
        finished = frozenset(int(record["level"]) for record in done)
        for outcome in method_levels(setup.for_replicate(replicate), recorders[0], finished):
            recorders[0].level_done(outcome)
