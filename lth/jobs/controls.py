"""`run_controls`: the controls of a finished run (`lth.lottery.controls`) trained into
``replicate_XX/controls/<name>/`` through the same recorder as the main line's levels."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from lth.analysis.plots import plot_run
from lth.lottery import Setup, init_params
from lth.lottery.levels import level0_at
from lth.lottery.controls import (
    Control, LevelInputs, check_controls, control_mask, control_start, finalize_mask, oneshot_early_step,
    train_control_level,
)
from lth.jobs.report import report_run_end
from lth.plans.control import ControlPlan, plan_controls
from lth.execution.progress import warn
from lth.execution.recorder import Recorder
from lth.execution.session import Session, open_session
from lth.execution.replicates import recompute_checked_rewind
from lth.store.checkpoints import CheckpointError
from lth.store import JsonlSink, ReplicateDir, aggregate, load_mask, write_json
from lth.lottery.cost import control_base, fixed_mask_cost
from lth.store.queries import run_records
from lth.tickets import run_setup


class MainLine:
    """What the controls of one replicate need from its main line, loaded once and on demand."""

    def __init__(self, setup: Setup, rep: ReplicateDir):
        self.setup, self.rep = setup, rep
        self.params0, self.model_state0 = init_params(setup)
        self.template = setup.trainer.init_state(self.params0, self.model_state0)
        self.full_mask = load_mask(rep.mask_path(0), self.params0)
        self.rewind_point = (self.params0, self.model_state0) if setup.rewind_step == 0 else self._rewind()
        self._finals: dict[int, Any] = {}
        self._early: Any = None

    def _rewind(self) -> tuple[Any, Any]:
        """The main line's rewind weights; a damaged checkpoint is recomputed from the seed (as the
        main line does, checked against its digest) with a warning."""
        try:
            return self.rep.load_rewind(self.template)
        except CheckpointError as err:
            warn(f"{err}; the rewind weights will be recomputed from the seed")
            return recompute_checked_rewind(self.setup, self.rep, self.full_mask)

    def mask(self, level: int) -> Any:
        return load_mask(self.rep.mask_path(level), self.params0)

    def final(self, level: int) -> tuple[Any, Any]:
        """The trained (params, model state) at the end of `level`."""
        if level not in self._finals:
            state, _ = self.rep.load_final(level, self.template, self.full_mask)
            self._finals[level] = (state.params, state.model_state)
        return self._finals[level]

    def early(self) -> Any:
        """Level 0's params at iteration `pruning.oneshot_early_at`, trained again from the seed (not
        stored by the main line; bit-identical to its own on the same machine and thread count)."""
        if self._early is None:
            self._early = level0_at(self.setup, oneshot_early_step(self.setup), self.full_mask)[0]
        return self._early

    def inputs(self, control: Control, level: int) -> LevelInputs:
        """The main-line inputs of `control` at `level` (only what its source needs is loaded)."""
        inputs = LevelInputs(level, self.mask(level), self.full_mask)
        if control.source == "oneshot":
            inputs.dense_final = self.final(0)[0]
        if control.kind == "oneshot_early":
            inputs.dense_final = self.early()
        if control.source == "imp" and "invert" in control.transforms and level > 0:
            inputs.previous_final = self.final(level - 1)[0]
            inputs.previous_mask = self.mask(level - 1)
        if self.setup.config.retraining != "rewind" and level > 0:  # retrained from trained weights
            inputs.start = self.final(0 if control.source == "oneshot" else level - 1)
        return inputs


def _train_control(line: MainLine, control: Control, chosen: list[int], recorder: Recorder) -> list[dict[str, Any]]:
    """The levels `chosen` of one control of one replicate (finished ones are kept)."""
    setup = line.setup
    for level in chosen:
        if level in recorder.records:
            continue
        inputs = line.inputs(control, level)
        mask = finalize_mask(setup, control, level, control_mask(setup, control, inputs, line.params0,
                                                                 line.model_state0))
        state = control_start(setup, control, level, mask, line.params0, line.model_state0, line.rewind_point,
                              inputs)
        recorder.level_done(train_control_level(setup, control, level, state, mask, recorder))
    return recorder.sorted_records()


def run_controls(
    run: str | os.PathLike,
    controls: Iterable[str] | str,
    levels: str | Iterable[int] | None = None,
    *,
    runs_root: str | os.PathLike | None = None,
    data_root: str | os.PathLike | None = None,
    wandb: str | None = None,
    progress: bool = True,
) -> dict[str, list[dict[str, Any]]]:
    """Train controls of a finished lottery run for chosen levels; return {control name: records}.

    `run` is a run directory, name or hash; `levels` a level list ("0-3,7"), or None for all. Results
    go to ``replicate_XX/controls/<name>/`` (records, masks, metrics), for every replicate of the
    run; finished control levels are not recomputed.
    The run's accuracy-vs-sparsity plot is redrawn with one series per control.
    """
    return run_control_plan(plan_controls(run, controls, levels, runs_root=runs_root, wandb=wandb,
                                          data_root=data_root, progress=progress))


def run_control_plan(plan: ControlPlan) -> dict[str, list[dict[str, Any]]]:
    """`run_controls` of a checked plan (`lth.plans.control.plan_controls`): `train_control_plan`, then
    (with `plan.progress`) the summary over the replicates and where the results are."""
    results = train_control_plan(plan)
    if plan.progress or plan.show_paths:
        report_run_end(plan.run, list(results), [plan.run.control_results_path(name) for name in results],
                       summary=plan.progress)
    return {name: (per_rep[0] if len(per_rep) == 1 else aggregate(per_rep)) for name, per_rep in results.items()}


def train_control_plan(plan: ControlPlan) -> dict[str, list[list[dict[str, Any]]]]:
    """Train the plan's controls (a table row per level, labelled with the control's name), redraw the
    run's plot, write each control's aggregated results; returns {name: each replicate's records}."""
    run_dir, chosen = plan.run, list(plan.levels)
    setup = run_setup(run_dir, plan.data_root)
    check_controls(setup, list(plan.controls))
    reps = run_dir.replicates()
    names = [c.name for c in plan.controls]
    results: dict[str, list[list[dict[str, Any]]]] = {name: [] for name in names}
    with open_session(run_dir, plan.wandb, levels=len(chosen) - 1, total_steps=setup.total_steps,
                      replicates=len(reps), branches=names, progress=plan.progress, create=False) as session:
        for r, rep in enumerate(reps):
            line = MainLine(setup.for_replicate(r), rep)
            for control in plan.controls:
                recorder = _branch_recorder(session, rep, control, r, chosen, _cost_base(line, control))
                with recorder.sink:
                    results[control.name].append(_train_control(line, control, chosen, recorder))
        plot_run(plan.path)
        for name, per_rep in results.items():
            write_json(run_dir.control_results_path(name), aggregate(per_rep))
        session.run_done(run_records(run_dir, reps))  # the W&B summary, with the controls' rows
    return results


def _cost_base(line: MainLine, control: Control) -> Any:
    """The `Recorder.cost_base` of a control: what its level's cumulative cost builds on (`control_base`)."""
    setup = line.setup
    main = {int(r["level"]): r for r in line.rep.read_results()}
    dense = fixed_mask_cost(setup, line.full_mask, 0, 1)["train_flops"]
    early = oneshot_early_step(setup) if control.kind == "oneshot_early" else 0
    return lambda records, record: control_base(control.kind, int(record["level"]), setup.config.retraining, main,
                                                max(setup.rewind_step, early), dense)


def _branch_recorder(session: Session, rep: ReplicateDir, control: Control, replicate: int,
                     chosen: list[int], cost_base: Any) -> Recorder:
    """The recorder of one control of one replicate: its finished levels kept, the metrics lines of an
    interrupted one dropped (it is trained anew)."""
    branch = rep.control(control.name)
    done = {record["level"] for record in branch.read_results()}
    branch.filter_metrics(lambda row: row.get("level") in done, warn)
    return Recorder(branch, JsonlSink(branch.metrics_path), session.reporter, session.trackers, replicate,
                    branch=control.name, records=branch.read_results(),
                    positions={level: i for i, level in enumerate(chosen)}, cost_base=cost_base)
