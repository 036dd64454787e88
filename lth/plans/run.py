"""The plan of `lth run` / `lth.run_lottery`: the config and every execution option, checked once and
parsed into typed values before anything heavy is imported or anything is written. The job
(`lth.jobs.lottery.run_plan`) trusts it and checks nothing again."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lth.errors import ConfigError
from lth.plans.wandb_mode import checked_wandb_mode
from lth.spec.checks import check_run_options, validate_config
from lth.spec.config import ExperimentConfig
from lth.spec.controls import Control, check_control, parse_controls
from lth.spec.parse import CheckpointEvery, parse_checkpoint_every, parse_levels
from lth.plans.ticket_source import check_ticket_artifact
from lth.store.queries import check_start_files

PathLike = str | os.PathLike


@dataclass(frozen=True)
class RunPlan:
    """What `lth run` does, checked: the config (validated), the replicates and their layout, the
    checkpoint period (parsed), the W&B mode (resolved, credentials checked), the controls (parsed)
    and the main-line levels they train, the start (a mask or ticket: a pytree, a `Ticket` or a file
    that exists), the roots, and the extra trackers. `progress`: bars and table; `show_paths`: the
    run directory, result paths and W&B sync command printed even without progress (--no-progress)."""

    config: ExperimentConfig
    replicates: int = 1
    layout: str | None = None
    workers: int | None = None
    checkpoint_every: CheckpointEvery = parse_checkpoint_every("10min")
    wandb: str = "offline"
    controls: tuple[Control, ...] = ()
    control_levels: tuple[int, ...] = ()
    mask: Any = None
    ticket: Any = None
    data_parallel: bool = False
    allow_mixed_numerics: bool = False
    progress: bool = True
    show_paths: bool = False
    runs_root: PathLike | None = None
    data_root: PathLike | None = None
    trackers: tuple[Any, ...] = ()


def plan_run(config: ExperimentConfig, *, runs_root: PathLike | None = None, data_root: PathLike | None = None,
             mask: Any = None, ticket: Any = None, replicates: int = 1,
             checkpoint_every: str | CheckpointEvery = "10min",
             progress: bool = True, wandb: str | None = None, trackers: list[Any] | tuple[Any, ...] | None = None,
             controls: tuple[str, ...] | tuple[Control, ...] = (), control_levels: str | list[int] | None = None,
             data_parallel: bool = False, workers: int | None = None, layout: str | None = None,
             allow_mixed_numerics: bool = False, show_paths: bool = False) -> RunPlan:
    """The checked plan of a run (the arguments of `lth.run_lottery`); a one-line `ConfigError` /
    `MaskError` / `LthError` for anything wrong that needs neither the data nor jax."""
    validate_config(config)
    check_run_options(replicates, workers, layout, config.seed)
    every = parse_checkpoint_every(checkpoint_every)
    if config.method != "imp":
        _check_method_options(config.method, mask, data_parallel, layout)
    wandb_mode = checked_wandb_mode(wandb)
    artifact = check_ticket_artifact(ticket, wandb_mode)  # downloaded when the run starts
    check_start_files(mask, ticket, config.initial_mask, ticket_is_file=not artifact)
    parsed = tuple(c if isinstance(c, Control) else parse_controls([c])[0] for c in controls)
    for control in parsed:  # before the main line trains: a control without meaning in this run is one line
        check_control(control, config)
    return RunPlan(config, replicates, layout, workers, every, wandb_mode, parsed,
                   control_levels_of(parsed, control_levels, config.levels), mask, ticket, data_parallel,
                   allow_mixed_numerics, progress, show_paths, runs_root, data_root, tuple(trackers or ()))


def _check_method_options(method: str, mask: Any, data_parallel: bool, layout: str | None) -> None:
    """One-line errors for run options that a method run (`lth.jobs.methods`) does not take."""
    if mask is not None:
        raise ConfigError(f"--mask starts a lottery from a saved mask; method {method} chooses its own masks")
    if data_parallel or layout not in (None, "sequential"):
        raise ConfigError(f"method {method} trains its replicates one after the other: drop --data-parallel / "
                          "--layout (the vmapped trainer runs them together from Python: lth.training.stacked)")


def control_levels_of(controls: tuple[Any, ...], control_levels: Any, levels: int) -> tuple[int, ...]:
    """The main-line levels an experiment's (or a sweep's) controls train: `control_levels` (a level
    list or levels; None: all) of a run of `levels` levels, those beyond it (--levels) left out."""
    return tuple(level for level in _wanted_levels(controls, control_levels, levels) if level <= levels)


def control_levels_beyond(controls: tuple[Any, ...], control_levels: Any, levels: int) -> tuple[int, ...]:
    """The levels of `control_levels` past a run of `levels` levels (`control_levels_of` leaves them
    out: the command line says so, rather than training nothing in silence)."""
    return tuple(level for level in _wanted_levels(controls, control_levels, levels) if level > levels)


def controls_beyond_note(names: Sequence[str], control_levels: Any, levels: Sequence[int],
                         whose: str = "the experiment's") -> str:
    """The note for controls at levels past the last level of runs of `levels` levels (one run: `lth
    run`; a sweep's cells), naming those runs; "" when every run reaches them."""
    short = {index: beyond for index, n in enumerate(levels)
             if (beyond := control_levels_beyond(tuple(names), control_levels, n))}
    if not short:
        return ""
    if len(levels) == 1:
        where = f"this run's last level {levels[0]}"
    else:
        cells = ", ".join(map(str, list(short)[:5])) + (", ..." if len(short) > 5 else "")
        where = f"the last level of {len(short)} of {len(levels)} cells ({cells})"
    beyond = sorted(set().union(*short.values()))
    return (f"{whose} controls ({', '.join(names)}) at level(s) {', '.join(map(str, beyond))} lie past {where}: "
            "not trained (run more levels, or `lth control RUN NAME --levels L` for levels it has)")


def _wanted_levels(controls: tuple[Any, ...], control_levels: Any, levels: int) -> tuple[int, ...]:
    if not controls:
        return ()
    wanted = control_levels if control_levels is not None else f"0-{levels}"
    return tuple(parse_levels(wanted, 10**6) if isinstance(wanted, str) else wanted)

