"""The plans of the commands that work on a finished run: `lth control` (its controls at chosen levels
of the main line) and `lth instability` (rewind steps at chosen levels of one replicate). Each reads
the run's config and records once, checks every argument against them, and hands the job what it
read: the job opens nothing again."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lth.errors import ConfigError
from lth.plans.wandb_mode import checked_wandb_mode
from lth.spec.checks import check_bn_state
from lth.spec.controls import Control, check_control, parse_controls
from lth.spec.parse import parse_levels, parse_step_list
from lth.store import ReplicateDir, RunDir, open_run, resolve_run
from lth.store.queries import unfinished_text

PathLike = str | os.PathLike


@dataclass(frozen=True)
class ControlPlan:
    """What `lth control` trains: the run, its controls (parsed, each meaningful under the run's
    retraining), the chosen levels of its main line (all finished), and how it reports (`progress`:
    bars and table; `show_paths`: where the results went, printed even without progress)."""

    path: Path
    run: RunDir
    controls: tuple[Control, ...]
    levels: tuple[int, ...]
    wandb: str = "offline"
    data_root: PathLike | None = None
    progress: bool = True
    show_paths: bool = False


def plan_controls(run: PathLike, controls: Iterable[str | Control] | str, levels: str | Iterable[int] | None = None,
                  *, runs_root: PathLike | None = None, wandb: str | None = None, data_root: PathLike | None = None,
                  progress: bool = True, show_paths: bool = False) -> ControlPlan:
    """The run (a directory, name or hash), its controls and levels (None: all); one-line errors for
    an unknown run, control or W&B mode, a control the run's retraining has no meaning for, a bad
    level list, or levels the main line has not finished."""
    given = controls if isinstance(controls, str) else list(controls)
    parsed = given if given and all(isinstance(c, Control) for c in given) else parse_controls(given)
    wandb_mode = checked_wandb_mode(wandb)
    path = resolve_run(run, runs_root)
    run_dir = open_run(path)
    config = run_dir.config
    _check_imp_run(config.method, path, "lth control trains controls of an IMP run's levels")
    for control in parsed:  # before anything trains: a combination without meaning is one line
        check_control(control, config)
    if levels is None:
        chosen = list(range(config.levels + 1))
    else:
        chosen = parse_levels(levels, config.levels) if isinstance(levels, str) else sorted(set(levels))
    _check_finished(run_dir.replicates(), chosen, path)
    return ControlPlan(path, run_dir, tuple(parsed), tuple(chosen), wandb_mode, data_root, progress, show_paths)


def _check_imp_run(method: str, path: Path, what: str) -> None:
    """A one-line ConfigError for a method run (`--method static|snip|set|rigl|gradual|earlybird`): its
    records are target densities, each trained once from init, not levels of a lottery."""
    if method != "imp":
        raise ConfigError(f"{what}, but {path.name} is a {method} run (its records are target densities, each "
                          f"trained once from init): use an IMP run, or compare {method} with IMP as the "
                          "sparse_methods_lenet300 experiment does (CONTROLS)")


def _check_finished(reps: list[ReplicateDir], chosen: list[int], path: Path) -> None:
    if not reps:
        raise ConfigError(f"run {path} has no finished levels: run it first (lth run ...)")
    for rep in reps:
        done = len(rep.read_results())
        missing = [level for level in chosen if level >= done]
        if missing:
            finished = f"has finished levels 0-{done - 1}, not {missing}" if done else "has no finished level"
            raise ConfigError(f"{rep.path.name} of {path.name} {finished}: {unfinished_text(rep, done)}")


@dataclass(frozen=True)
class InstabilityPlan:
    """What `lth instability` computes: the run, the replicate and its chosen (finished) levels, the
    rewind steps as durations (iterations once the data is known), and the BatchNorm treatment."""

    path: Path
    run: RunDir
    levels: tuple[int, ...]
    rewind_steps: tuple[tuple[int, str], ...]
    replicate: int = 0
    bn_state: str = "interpolate"
    data_root: PathLike | None = None
    progress: bool = True
    wandb: str = "offline"


def plan_instability(run: PathLike, rewind_steps: str, levels: str = "0", *, replicate: int = 0,
                     runs_root: PathLike | None = None, bn_state: str = "interpolate",
                     data_root: PathLike | None = None, progress: bool = True,
                     wandb: str | None = None) -> InstabilityPlan:
    """One-line errors for an unknown bn_state or run, a bad level list or rewind-step syntax, or
    levels the replicate has not finished. (Whether the steps fit the training needs the data: the
    job checks it.)"""
    check_bn_state(bn_state)
    wandb_mode = checked_wandb_mode(wandb)
    path = resolve_run(run, runs_root)
    run_dir = open_run(path)
    _check_imp_run(run_dir.config.method, path, "lth instability measures the levels of an IMP run")
    chosen = parse_levels(levels, run_dir.config.levels)
    steps = parse_step_list(rewind_steps)
    done_levels = len(run_dir.replicate(replicate).read_results())
    missing = [level for level in chosen if level >= done_levels]
    if missing:
        raise ConfigError(f"replicate {replicate} of {path.name} has not finished level(s) {missing}: run it first")
    return InstabilityPlan(path, run_dir, tuple(chosen), steps, replicate, bn_state, data_root, progress, wandb_mode)
