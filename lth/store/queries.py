"""The arguments of the commands that read a run or a file (`lth control`, `lth instability`,
`lth ticket`, `lth run --mask / --ticket`), checked against the files they name without jax: the
command line calls these before it imports jax, and the library functions call them first too.
Checks that need the model, the data or the run's arrays stay with the library functions."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

from lth.spec.checks import check_bn_state
from lth.spec.controls import Control, check_retraining, parse_controls
from lth.errors import ConfigError, LthError
from lth.spec.parse import parse_levels, parse_steps
from lth.store import ReplicateDir, RunDir, check_mask_file, open_run, replicate_paths, resolve_run


class ControlArgs(NamedTuple):
    """What `lth control` trains: the run, its controls and the chosen levels of its main line."""

    path: Path
    run: RunDir
    controls: list[Control]
    levels: list[int]


def control_args(run: str | os.PathLike, controls: Iterable[str] | str, levels: str | Iterable[int] | None,
                 runs_root: str | os.PathLike | None = None) -> ControlArgs:
    """The run (a directory, name or hash), its controls and levels (None: all); one-line errors for
    an unknown run or control, a control the run's retraining has no meaning for, a bad level list,
    or levels the main line has not finished."""
    path = resolve_run(run, runs_root)
    run_dir = open_run(path)
    config = run_dir.config
    parsed = parse_controls(controls)
    for control in parsed:  # before anything trains: a combination without meaning is one line
        check_retraining(control, config.retraining)
    if levels is None:
        chosen = list(range(config.levels + 1))
    else:
        chosen = parse_levels(levels, config.levels) if isinstance(levels, str) else sorted(set(levels))
    _check_finished(run_dir.replicates(), chosen, path)
    return ControlArgs(path, run_dir, parsed, chosen)


def _check_finished(reps: list[ReplicateDir], chosen: list[int], path: Path) -> None:
    if not reps:
        raise ConfigError(f"run {path} has no finished levels: run it first (lth run ...)")
    for rep in reps:
        done = len(rep.read_results())
        missing = [level for level in chosen if level >= done]
        if missing:
            raise ConfigError(f"{rep.path.name} of {path.name} has finished levels 0-{done - 1}, not {missing}: "
                              "finish the main line first (rerun `lth run` with its config)")


def instability_args(run: str | os.PathLike, rewind_steps: str, levels: str = "0", replicate: int = 0,
                     runs_root: str | os.PathLike | None = None,
                     bn_state: str = "interpolate") -> tuple[Path, RunDir, list[int]]:
    """(run directory, its RunDir, chosen levels) of `lth instability`; one-line errors for an unknown
    bn_state or run, a bad level list or rewind-step syntax, or levels the replicate has not finished.
    (Whether the steps fit the training needs the data: `run_instability` checks it.)"""
    check_bn_state(bn_state)
    path = resolve_run(run, runs_root)
    run_dir = open_run(path)
    chosen = parse_levels(levels, run_dir.config.levels)
    parse_steps(rewind_steps, steps_per_epoch=1)  # the syntax (epochs in iterations need the data)
    done_levels = len(run_dir.replicate(replicate).read_results())
    missing = [level for level in chosen if level >= done_levels]
    if missing:
        raise ConfigError(f"replicate {replicate} of {path.name} has not finished level(s) {missing}: run it first")
    return path, run_dir, chosen


def check_replicate(name: str, count: int, replicate: int) -> None:
    """A one-line LthError unless run `name`, of `count` replicates, has replicate `replicate`."""
    if not 0 <= replicate < count:
        raise LthError(f"run {name} has {count} replicate(s): no replicate {replicate}")


def check_level(name: str, done: int, level: int, replicate: int) -> None:
    """A one-line LthError unless `level` is among the `done` finished levels of the replicate."""
    if not 0 <= level < done:
        raise LthError(f"run {name}, replicate {replicate} has finished levels 0-{done - 1}: no level {level}"
                       if done else f"run {name}, replicate {replicate} has no finished level yet")


def check_finished_level(path: Path, level: int, replicate: int = 0) -> None:
    """`check_replicate` and `check_level` for the run in `path`, from its files."""
    reps = replicate_paths(path)
    check_replicate(path.name, len(reps), replicate)
    check_level(path.name, len(ReplicateDir(reps[replicate], writable=False).read_results()), level, replicate)


def check_ticket_file(path: str | os.PathLike) -> None:
    """A one-line LthError unless `path` is a file (what is in it is checked when it is loaded)."""
    where = str(path)
    if not Path(path).exists():
        raise LthError(f"ticket file {where!r} not found: export one with `lth ticket export RUN --level L`")
    if Path(path).is_dir():
        raise LthError(f"ticket file {where!r} is a directory: pass a .safetensors file of `lth ticket export`")


def check_start_files(mask: Any, ticket: Any, initial_mask: str | None = None) -> None:
    """`lth run --mask / --ticket`: not both (a ticket brings its mask), and a file each where one is named."""
    if ticket is not None and (mask is not None or initial_mask is not None):
        raise ConfigError("a ticket brings its own mask: pass --ticket or --mask, not both")
    if isinstance(mask, (str, os.PathLike)):
        check_mask_file(mask)
    if isinstance(ticket, (str, os.PathLike)):
        check_ticket_file(ticket)
