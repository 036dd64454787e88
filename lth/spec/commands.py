"""`lth run` commands from configs: the dotted fields in which two configs differ, `--set` arguments
(values written by `lth.spec.fields.value_text`), and the command that reproduces a config (its
experiment's closest variant plus `--set` for the rest), for suggestions that keep the user's variant."""

from __future__ import annotations

import dataclasses
import shlex
from typing import Any

from lth.errors import ConfigError
from lth.spec.config import ExperimentConfig, replace
from lth.spec.experiments import experiment_variants, load_config
from lth.spec.fields import value_text


def changed_fields(base: Any, config: Any, prefix: str = "") -> dict[str, Any]:
    """The dotted fields in which `config` differs from `base`."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        a, b = getattr(base, f.name), getattr(config, f.name)
        if dataclasses.is_dataclass(b):
            out.update(changed_fields(a, b, f"{prefix}{f.name}."))
        elif a != b:
            out[f"{prefix}{f.name}"] = b
    return out


def set_flags(changes: dict[str, Any]) -> list[str]:
    """``--set FIELD=VALUE`` arguments for `changes`."""
    return [arg for k, v in changes.items() for arg in ("--set", f"{k}={value_text(v)}")]


def run_command(config: ExperimentConfig, **changes: Any) -> str | None:
    """The `lth run` command that trains `config` with the dotted fields `changes` changed: its
    experiment (named like the config), the variant with the fewest differing fields, and `--set` for
    those; None when no experiment file has the config's name."""
    try:
        variants = experiment_variants(config.name)
    except ConfigError:
        return None
    target = replace(config, **changes) if changes else config
    best: tuple[int, str, dict[str, Any]] | None = None
    for variant in variants:
        try:
            diff = changed_fields(load_config(config.name, variant), target)
        except (ConfigError, TypeError, AttributeError):
            continue
        if best is None or len(diff) < best[0]:
            best = (len(diff), variant, diff)
    if best is None:
        return None
    _, variant, diff = best
    words = ["lth", "run", config.name, *(["--variant", variant] if variant != "default" else []), *set_flags(diff)]
    return shlex.join(words)
