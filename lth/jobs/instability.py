"""`run_instability`: instability analysis (`lth.lottery.instability`) of a finished run's levels,
recorded in ``replicate_XX/instability/level_XX.json`` (and a plot beside it) through the recorder."""

from __future__ import annotations

import os
from typing import Any

import jax

from lth.analysis.instability_plots import plot_instability
from lth.errors import ConfigError
from lth.lottery import init_params
from lth.lottery.instability import instability_curve
from lth.plans.control import InstabilityPlan, plan_instability
from lth.spec.commands import run_command
from lth.spec.parse import steps_of
from lth.execution.progress import LevelProgress
from lth.execution.recorder import Recorder
from lth.execution.session import refresh_summaries
from lth.store import JsonlSink, load_mask, read_json_list
from lth.store.queries import run_records
from lth.tickets import run_setup


def run_instability(
    run: str | os.PathLike,
    rewind_steps: str,
    levels: str = "0",
    *,
    replicate: int = 0,
    runs_root: str | os.PathLike | None = None,
    data_root: str | os.PathLike | None = None,
    progress: bool = True,
    bn_state: str = "interpolate",
    wandb: str | None = None,
) -> dict[int, list[dict[str, Any]]]:
    """Instability analysis of a finished run: for each chosen level (0 = the dense network; L = the
    level's ticket, trained dense to k and masked there, as an IMP ticket rewound to k) and each
    rewind step k, two copies trained to the end with different data orders, and the error barrier
    along the linear path between them. A ticket (L > 0) is analysed only at the k IMP rewound it
    to (another k needs the ticket IMP finds rewound there: a run with that --rewind). Records go
    to ``replicate_XX/instability/level_XX.json`` and a plot beside them; finished (level, k) pairs
    are not recomputed; the run's W&B summary run (`wandb` mode: default offline) then shows every
    barrier measured. Returns {level: records}."""
    return run_instability_plan(plan_instability(run, rewind_steps, levels, replicate=replicate, runs_root=runs_root,
                                                 bn_state=bn_state, data_root=data_root, progress=progress,
                                                 wandb=wandb))


def run_instability_plan(plan: InstabilityPlan) -> dict[int, list[dict[str, Any]]]:
    """`run_instability` of a checked plan (`lth.plans.control.plan_instability`)."""
    run_dir, chosen, replicate, bn_state = plan.run, list(plan.levels), plan.replicate, plan.bn_state
    config = run_dir.config
    setup = run_setup(run_dir, plan.data_root)
    steps = steps_of(plan.rewind_steps, setup.trainer.steps_per_epoch)
    beyond = [k for k in steps if k >= setup.total_steps]
    if beyond:
        raise ConfigError(f"rewind step(s) {beyond} not before the end of training ({setup.total_steps} iterations)")
    other = [k for k in steps if k != setup.rewind_step]
    if other and any(level > 0 for level in chosen):
        command = run_command(config, rewind=f"{other[0]}it") or f"lth run {config.name} --rewind {other[0]}it"
        raise ConfigError(f"the tickets of this run were found by IMP rewound to iteration {setup.rewind_step}; "
                          f"at k = {other[0]} a ticket is the one IMP finds rewound to {other[0]} (Frankle et al. "
                          f"2020): run `{command}` and analyse that run at --rewind {other[0]}, or use --levels 0 "
                          "(the dense network) for several k")
    rep = run_dir.replicate(replicate)
    setup = setup.for_replicate(replicate)
    params0, model_state = init_params(setup)
    reporter = LevelProgress(config.levels, setup.total_steps, enabled=plan.progress)
    recorder = Recorder(rep, JsonlSink(rep.metrics_path, enabled=False), reporter, [], replicate)
    out: dict[int, list[dict[str, Any]]] = {}
    with run_dir.lock():
        try:
            for level in chosen:
                file = rep.instability_path(level, bn_state)
                records = {r["rewind_step"]: r for r in read_json_list(file)}
                todo = [k for k in steps if k not in records]
                if todo:
                    mask = load_mask(rep.mask_path(level), params0) if level > 0 else None
                    _curve(setup, level, todo, mask, records, recorder, bn_state)
                out[level] = [records[k] for k in sorted(records)]
                plot_instability(out[level], file.with_suffix(".png"),
                                 title=instability_title(config.name, level, replicate, bn_state, model_state))
        finally:
            reporter.close()
        refresh_summaries(run_dir, plan.wandb, run_records(run_dir, run_dir.replicates()))
    return out


def instability_title(name: str, level: int, replicate: int, bn_state: str, model_state: Any) -> str:
    """The instability plot's title; it names the treatment of the BatchNorm statistics only for a
    model that has them (non-trainable model state: `lth.models.base`), not for LeNet or the MLPs."""
    treatment = f", BatchNorm statistics: {bn_state}" if jax.tree.leaves(model_state) else ""
    return f"{name} level {level}: instability (replicate {replicate}{treatment})"


def _curve(setup: Any, level: int, todo: list[int], mask: Any, records: dict[int, dict[str, Any]],
           recorder: Recorder, bn_state: str) -> None:
    """The records of the rewind steps `todo` of one level, each saved as soon as it is computed,
    with a progress bar for the copies of each step."""
    pending = iter(todo)
    copies = 2

    def start_next() -> None:
        k = next(pending, None)
        if k is not None:
            recorder.rewind_step_start(level, k, copies * (setup.total_steps - k))

    def save(record: dict[str, Any]) -> None:
        recorder.instability_done(level, records, record)
        start_next()

    start_next()
    instability_curve(setup, todo, mask, rewind_dense=level > 0, callback=save, on_chunk=recorder.advance,
                      bn_state=bn_state)
