"""A config as flat dotted fields: each value as the text `--set FIELD=VALUE` takes back, what tells
configs apart, and how many records a finished run of a config has. Jax-free: `lth ls`, the run
resolver's errors and `lth run --dry-run` use it before (or without) importing jax."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from lth.spec.config import ExperimentConfig, to_dict
from lth.spec.parse import parse_value


def value_text(value: Any) -> str:
    """`value` as `--set FIELD=VALUE` writes it: a string bare where it reads back as itself, anything
    else as compact JSON (`[0.2,0.05]`, `null`, `true`)."""
    if isinstance(value, str) and parse_value(value) == value:
        return value
    return json.dumps(value, separators=(",", ":"))


def flat_fields(config: ExperimentConfig | dict[str, Any]) -> dict[str, Any]:
    """{dotted field name: value} of every field, in the dataclasses' order ('training.batch_size': 60)."""
    data = to_dict(config) if isinstance(config, ExperimentConfig) else config

    def walk(d: dict[str, Any], prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in d.items():
            out.update(walk(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
        return out

    return walk(data, "")


def differing_fields(configs: Sequence[ExperimentConfig | dict[str, Any]], ignore: Sequence[str] = ("name",)
                     ) -> list[dict[str, str]]:
    """Per config, {field: value text} of the fields whose values are not the same in all of them
    (`ignore` left out; a field one config lacks counts as '-')."""
    flats = [{k: value_text(v) for k, v in flat_fields(c).items()} for c in configs]
    keys = list(dict.fromkeys(k for f in flats for k in f if k not in ignore))
    differing = [k for k in keys if len({f.get(k, "-") for f in flats}) > 1]
    return [{k: f.get(k, "-") for k in differing} for f in flats]


def short_text(fields: dict[str, str], width: int = 60, value_width: int = 20) -> str:
    """'seed=1 training.length=2ep' of `fields`, long values (digests) cut to `value_width` and the
    whole to `width` characters ('...' where cut)."""
    def cut(text: str, n: int) -> str:
        return text if len(text) <= n else text[: n - 3] + "..."

    return cut(" ".join(f"{k}={cut(v, value_width)}" for k, v in fields.items()), width)


def records_planned(config: ExperimentConfig) -> int:
    """The records of a finished replicate: levels 0..L of IMP, one per target density of another
    method (one with an N:M structure, which fixes the density)."""
    if config.method != "imp":
        return len(config.sparse.densities) or 1
    return config.levels + 1
