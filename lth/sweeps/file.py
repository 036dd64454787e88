"""Sweep files: `get_sweep(variant)` returns a `Sweep` -- a base experiment and axes over its config
fields -- which `load_sweep` expands into cells, each an ordinary `ExperimentConfig` with its own
content-addressed run directory, all checked before anything starts.

    from lth.sweeps.file import Sweep

    def get_sweep(variant="default"):
        return Sweep(name="rewinding", experiment="lenet300_mnist", variant="quick",
                     set={"levels": 12},                           # fixed changes of the base
                     grid={"rewind": ["0it", "100it", "500it"]},   # every combination of the axes
                     zip={},                                       # axes paired value by value
                     replicates=3,                                 # seeds seed, seed+1, seed+2
                     controls=("imp+reinit",))

A replicate is a cell of its own (seed = base seed + r, its own run directory, its own Ray task):
`lth run` of a cell's config alone writes the same run directory. The summary groups a point's
replicates (mean and sample std). The sweep's hash is that of its cells' config hashes and controls.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from lth.spec.config import ExperimentConfig
from lth.errors import ConfigError, unknown_name
from lth.spec.experiments import find_sweep, load_experiment
from lth.spec.controls import parse_controls
from lth.spec.checks import validate_config
from lth.spec.commands import changed_fields, set_flags
from lth.spec.fields import value_text
from lth.spec.parse import parse_levels
from lth.spec.user_code import call_user_function, import_user_file, names_constant
from lth.sweeps.fields import with_fields
from lth.store import run_name

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class Sweep:
    """A study: the base experiment (`experiment` + `variant`, or a `config`), fixed changes `set`,
    `grid` axes (every combination), `zip` axes (equal lengths, the i-th values together), both over
    config fields by dotted name; `replicates` seeds per point; `controls` trained after every cell's
    main line at `control_levels` (None: the experiment file's CONTROLS and CONTROL_LEVELS);
    `plot_axis`: the overlay plot draws one line per value of this axis (None: one per point)."""

    name: str
    experiment: str | None = None
    variant: str = "default"
    config: ExperimentConfig | None = None
    set: Mapping[str, Any] = field(default_factory=dict)
    grid: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    zip: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    replicates: int = 1
    controls: Sequence[str] | None = None
    control_levels: str | None = None
    plot_axis: str | None = None


class Cell(NamedTuple):
    """One run of a sweep: point `point` (axis -> value) of the axes, replicate `replicate`."""

    index: int
    point: dict[str, Any]
    label: str  # "rewind=100it"
    replicate: int
    config: ExperimentConfig

    @property
    def run_name(self) -> str:
        return run_name(self.config)

    def describe(self) -> str:
        return f"cell {self.index} ({self.label or 'base'}, seed {self.config.seed})"


class SweepPlan(NamedTuple):
    """A loaded, checked sweep: its cells and what every cell runs besides its main line."""

    name: str
    hash: str
    source: str
    variant: str
    axes: tuple[str, ...]
    cells: tuple[Cell, ...]
    controls: tuple[str, ...]
    control_levels: str | None
    plot_axis: str | None
    base: ExperimentConfig  # the experiment file's config (before `set`), or the sweep's config
    base_command: tuple[str, ...] | None  # `lth run EXPERIMENT --variant V`, when the base is a file

    @property
    def dir_name(self) -> str:
        return f"{self.name}-{self.hash}"

    def command(self, cell: Cell) -> str | None:
        """The `lth run` command that trains `cell` alone into the same run directory (None when the
        base is a config, not an experiment file)."""
        if self.base_command is None:
            return None
        changes = changed_fields(self.base, cell.config)
        return shlex.join([*self.base_command, *set_flags(changes)])


def load_sweep(name_or_path: str, variant: str = "default") -> SweepPlan:
    """Import a sweep file, call its `get_sweep(variant)` and expand and check every cell: unknown
    fields, empty or unequal axes, values of the wrong type or that the config rejects, cells that
    are the same run -- each a one-line `ConfigError`, before anything is written or started."""
    path = find_sweep(name_or_path)
    sweep = _call_get_sweep(path, variant)
    where = f"sweep {path.stem}"
    if not isinstance(sweep.name, str) or not _NAME.fullmatch(sweep.name):
        raise ConfigError(f"{where}: name {sweep.name!r} must be letters, digits, '_', '.' or '-'")
    file_base, controls, control_levels, base_command = _base(sweep, where)
    base = with_fields(file_base, dict(sweep.set), f"{where}: set")
    axes = _axes(sweep, where)
    if sweep.plot_axis is not None and sweep.plot_axis not in axes:
        raise ConfigError(f"{where}: plot_axis {sweep.plot_axis!r} is not an axis: choose one of {', '.join(axes)}")
    if not isinstance(sweep.replicates, int) or isinstance(sweep.replicates, bool) or sweep.replicates < 1:
        raise ConfigError(f"{where}: replicates must be a whole number >= 1, got {sweep.replicates!r}")
    if controls:
        parse_controls(controls)
        if control_levels is not None:
            parse_levels(control_levels, 10**6)
    _check_size(sweep, where)
    cells = _cells(base, sweep, axes, where)
    digest = hashlib.sha256(json.dumps({"runs": sorted(c.run_name for c in cells), "controls": list(controls),
                                        "control_levels": control_levels}, sort_keys=True).encode()).hexdigest()[:8]
    return SweepPlan(sweep.name, digest, str(path), variant, tuple(axes), tuple(cells), controls, control_levels,
                     sweep.plot_axis, file_base, base_command)


def _call_get_sweep(path: Path, variant: str) -> Sweep:
    module = import_user_file(path, "sweep")
    get_sweep = getattr(module, "get_sweep", None)
    if not callable(get_sweep):
        raise ConfigError(f"sweep file {str(path)!r} defines no get_sweep(variant)")
    variants = names_constant(module, "VARIANTS", ("default",), path)
    if variant not in variants:
        raise unknown_name("variant", variant, variants, where=f"of sweep {path.stem}")
    sweep = call_user_function(get_sweep, variant, path)
    if not isinstance(sweep, Sweep):
        raise ConfigError(f"get_sweep() of {str(path)!r} must return an lth.sweeps.file.Sweep")
    return sweep


def _base(sweep: Sweep, where: str) -> tuple[ExperimentConfig, tuple[str, ...], str | None, tuple[str, ...] | None]:
    """(base config, controls, control levels, `lth run` prefix) of a sweep."""
    if (sweep.experiment is None) == (sweep.config is None):
        raise ConfigError(f"{where}: give the base as experiment='name' (and variant) or as config=..., not both")
    if sweep.config is not None:
        if not isinstance(sweep.config, ExperimentConfig):
            raise ConfigError(f"{where}: config must be an lth.spec.config.ExperimentConfig")
        return sweep.config, tuple(sweep.controls or ()), sweep.control_levels, None
    experiment = load_experiment(sweep.experiment, sweep.variant)
    controls = experiment.controls if sweep.controls is None else tuple(sweep.controls)
    levels = experiment.control_levels if sweep.controls is None else sweep.control_levels
    command = ("lth", "run", sweep.experiment, "--variant", sweep.variant)
    if controls != experiment.controls or levels != experiment.control_levels:
        command += ("--no-controls",)  # the cell's own controls: `lth control RUN ...`
    return experiment.config, controls, levels, command


def _axes(sweep: Sweep, where: str) -> list[str]:
    """The axis names, grid then zip; every axis non-empty, zip axes of equal length, none twice."""
    for kind, axes in (("grid", sweep.grid), ("zip", sweep.zip)):
        if not isinstance(axes, Mapping):
            raise ConfigError(f"{where}: {kind} must be a dict of field -> values, e.g. {kind}={{'seed': [0, 1]}}, "
                              f"got {type(axes).__name__}")
        for name, values in axes.items():
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
                raise ConfigError(f"{where}: {kind} axis {name!r} must be a list of values, got {values!r}")
            if len(values) == 0:
                raise ConfigError(f"{where}: {kind} axis {name!r} is empty: give it at least one value")
    lengths = {name: len(values) for name, values in sweep.zip.items()}
    if len(set(lengths.values())) > 1:
        raise ConfigError(f"{where}: zip axes must have equal lengths, got {lengths}")
    both = sorted((set(sweep.grid) & set(sweep.zip)) | ((set(sweep.grid) | set(sweep.zip)) & set(sweep.set)))
    if both:
        raise ConfigError(f"{where}: field(s) {both} given twice (in set, grid or zip): give each once")
    return [*sweep.grid, *sweep.zip]


MAX_CELLS = 10_000  # a sweep file's cells; more is a grid written by mistake, or a study to split


def _check_size(sweep: Sweep, where: str) -> None:
    """A one-line ConfigError before any cell is built if the sweep has more than `MAX_CELLS` cells."""
    zipped = len(next(iter(sweep.zip.values()))) if sweep.zip else 1
    count = math.prod(len(v) for v in sweep.grid.values()) * zipped * sweep.replicates
    if count > MAX_CELLS:
        raise ConfigError(f"{where}: {count:,} cells (the grid's product x zip x replicates) is more than "
                          f"{MAX_CELLS:,}: check the axes, or split the study into several sweeps")


def _points(sweep: Sweep) -> list[dict[str, Any]]:
    grid = [dict(zip(sweep.grid, values)) for values in itertools.product(*sweep.grid.values())]
    paired = [dict(zip(sweep.zip, values)) for values in zip(*sweep.zip.values())] if sweep.zip else [{}]
    return [{**g, **z} for g in grid for z in paired]


def _cells(base: ExperimentConfig, sweep: Sweep, axes: list[str], where: str) -> list[Cell]:
    cells: list[Cell] = []
    seen: dict[str, Cell] = {}
    for point in _points(sweep):
        label = " ".join(f"{k}={value_text(v)}" for k, v in point.items())
        config = with_fields(base, point, f"{where}: {label}")
        for r in range(sweep.replicates):
            cell_config = dataclasses.replace(config, seed=config.seed + r)
            try:
                validate_config(cell_config)
            except ConfigError as err:
                raise ConfigError(f"{where}: {label or 'the base'}: {err}") from None
            cell = Cell(len(cells), point, label, r, cell_config)
            if cell.run_name in seen:
                raise ConfigError(f"{where}: {cell.describe()} is the same run as {seen[cell.run_name].describe()}: "
                                  "make the axes (and seeds + replicates) distinct")
            seen[cell.run_name] = cell
            cells.append(cell)
    return cells
