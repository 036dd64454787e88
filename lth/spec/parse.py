"""Every small text format of the CLI and the configs, parsed in one place: durations ("500it",
"2ep"), checkpoint periods ("10min", "5ep"), level lists ("0-3,7"), rewind-step lists
("0,100,500it"), density lists ("0.2,0.05") and ``--set`` values (JSON, else the text itself).

Each parser raises a one-line `ConfigError` that shows the expected form. No lth imports but
`lth.errors`, and no jax: the CLI parses its arguments before jax is loaded.
"""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple

from lth.spec.files import UNREADABLE_JSON
from lth.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+)\s*(it|ep)\s*$")
_WALL_TIME = re.compile(r"\s*(\d+)\s*(min|s)\s*")
_LEVEL_PART = re.compile(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?")


def parse_duration(text: str) -> tuple[int, str]:
    """'500it' -> (500, 'it'); '2ep' -> (2, 'ep'). Raises ConfigError on anything else."""
    match = _DURATION.match(str(text))
    if not match:
        raise ConfigError(
            f"invalid duration {text!r}: write a whole number of iterations or epochs, e.g. '500it' or '2ep'"
        )
    return int(match.group(1)), match.group(2)


def duration_to_steps(text: str, steps_per_epoch: int) -> int:
    """Convert a duration string to a number of iterations."""
    amount, unit = parse_duration(text)
    return amount if unit == "it" else amount * steps_per_epoch


class CheckpointPeriod(NamedTuple):
    """When to checkpoint inside a level (always at an epoch boundary; level ends are always saved)."""

    steps: int = 0  # > 0: once this many iterations have passed since the last checkpoint
    seconds: float = 0.0  # > 0: once this much wall time has passed since the last checkpoint

    def due(self, steps_since: int, seconds_since: float) -> bool:
        """Whether a checkpoint is due after `steps_since` iterations and `seconds_since` seconds."""
        return (self.steps > 0 and steps_since >= self.steps) or (self.seconds > 0 and seconds_since >= self.seconds)


class CheckpointEvery(NamedTuple):
    """A checkpoint period as written ("10min", "90s", "5ep", "2000it"), parsed once: `seconds` of wall
    time, or a training duration (`amount` of `unit` "it" / "ep") that `period` turns into iterations
    once the data (its steps per epoch) is known."""

    text: str
    seconds: float = 0.0
    amount: int = 0
    unit: str = "it"

    def period(self, steps_per_epoch: int) -> CheckpointPeriod:
        """The period in iterations or seconds, for training with `steps_per_epoch`."""
        if self.seconds:
            return CheckpointPeriod(seconds=self.seconds)
        return CheckpointPeriod(steps=self.amount if self.unit == "it" else self.amount * steps_per_epoch)


def parse_checkpoint_every(text: str | CheckpointEvery) -> CheckpointEvery:
    """'10min' / '90s' (wall time), '5ep' / '2000it' (training); '0ep' or '0min': level ends only.
    A value already parsed is returned as it is."""
    if isinstance(text, CheckpointEvery):
        return text
    match = _WALL_TIME.fullmatch(str(text))
    if match:
        return CheckpointEvery(str(text), seconds=float(match.group(1)) * (60 if match.group(2) == "min" else 1))
    try:
        amount, unit = parse_duration(text)
    except ConfigError:
        raise ConfigError(f"invalid checkpoint period {text!r}: write e.g. '10min', '90s', '5ep' or '2000it' "
                          "('0ep': at level ends only)") from None
    return CheckpointEvery(str(text), amount=amount, unit=unit)


def parse_checkpoint_period(text: str | CheckpointEvery, steps_per_epoch: int) -> CheckpointPeriod:
    """`parse_checkpoint_every(text).period(steps_per_epoch)`."""
    return parse_checkpoint_every(text).period(steps_per_epoch)


def parse_levels(text: str, max_level: int) -> list[int]:
    """'0-3,7,12' -> [0, 1, 2, 3, 7, 12]; ConfigError if malformed or beyond `max_level`."""
    levels: set[int] = set()
    for part in str(text).split(","):
        match = _LEVEL_PART.fullmatch(part)
        if not match:
            raise ConfigError(f"invalid level list {text!r}: write e.g. 0-3,7,12")
        lo, hi = int(match.group(1)), int(match.group(2) or match.group(1))
        if hi < lo:
            raise ConfigError(f"invalid level range {part.strip()!r}: the first level must not exceed the second")
        if hi > max_level:  # checked before the range is built: '0-2000000000' costs nothing
            beyond = f"{max(lo, max_level + 1)}-{hi}" if hi > max(lo, max_level + 1) else str(hi)
            raise ConfigError(f"level(s) {beyond} beyond the run's last level {max_level}")
        levels.update(range(lo, hi + 1))
    return sorted(levels)


def parse_step_list(text: str) -> tuple[tuple[int, str], ...]:
    """'0,100,500it,2ep' -> ((0, 'it'), (100, 'it'), (500, 'it'), (2, 'ep')): rewind steps as durations (a
    bare number is iterations), parsed before the data fixes the steps per epoch."""
    durations = []
    for part in str(text).split(","):
        part = part.strip()
        if part:
            durations.append(parse_duration(part + "it" if part.isdigit() else part))
    if not durations:
        raise ConfigError(f"no rewind step in {text!r}: write e.g. 0,100,500it,2ep")
    return tuple(durations)


def steps_of(durations: tuple[tuple[int, str], ...], steps_per_epoch: int) -> list[int]:
    """Parsed durations (`parse_step_list`) as sorted distinct iterations."""
    return sorted({amount if unit == "it" else amount * steps_per_epoch for amount, unit in durations})


def parse_steps(text: str, steps_per_epoch: int) -> list[int]:
    """'0,100,500it,2ep' -> sorted distinct iterations (a bare number is iterations)."""
    return steps_of(parse_step_list(text), steps_per_epoch)


def parse_densities(text: str) -> tuple[float, ...]:
    """'0.2,0.05,0.02' -> (0.2, 0.05, 0.02): target densities, each in (0, 1]."""
    values = []
    for part in str(text).split(","):
        try:
            value = float(part)
        except ValueError:
            raise ConfigError(f"invalid density list {text!r}: write fractions of the weights, e.g. 0.2,0.05,0.02") \
                from None
        if not 0.0 < value <= 1.0:
            raise ConfigError(f"target density must be in (0, 1], got {value} in {text!r}: e.g. 0.2,0.05,0.02")
        values.append(value)
    return tuple(values)


def parse_value(text: str) -> Any:
    """A ``--set FIELD=VALUE`` value: JSON if it parses (lists become tuples), else the text."""
    try:
        value = json.loads(text)
    except UNREADABLE_JSON:
        return text
    return tuple(tuple(v) if isinstance(v, list) else v for v in value) if isinstance(value, list) else value


def parse_assignment(item: str) -> tuple[str, Any]:
    """'optimizer.name=sgd' -> ('optimizer.name', 'sgd'); ConfigError without '='."""
    field, sep, value = item.partition("=")
    if not sep:
        raise ConfigError(f"--set needs FIELD=VALUE, got {item!r}")
    return field.strip(), parse_value(value)


_NM = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


def parse_nm(text: str) -> tuple[int, int] | None:
    """'2:4' -> (2, 4); '' -> None (unstructured). ConfigError for anything else or N > M."""
    if not text:
        return None
    match = _NM.match(str(text))
    if not match:
        raise ConfigError(f"invalid N:M structure {text!r}: write e.g. '2:4' (keep 2 of every 4 weights)")
    n, m = int(match.group(1)), int(match.group(2))
    if m < 1 or n < 1:
        raise ConfigError(f"N:M structure {text!r} needs N >= 1 and M >= 1, e.g. '2:4'")
    if n > m:
        raise ConfigError(f"N:M structure {text!r} keeps N={n} of every M={m}: N must not exceed M, e.g. '2:4'")
    return n, m
