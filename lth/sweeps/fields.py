"""Config fields by dotted name, as sweep files give them: each value put in the form a config
stores (lists as tuples, an integer as a float where the field is a float, so that 1 and 1.0 are one
run) and checked by `lth.spec.config.replace` (the field's type), with errors naming the sweep file and the
valid fields (the fields in which two configs differ: `lth.spec.commands.changed_fields`)."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from lth.spec.config import ExperimentConfig, field_types, replace
from lth.errors import ConfigError


def with_fields(config: ExperimentConfig, changes: dict[str, Any], where: str) -> ExperimentConfig:
    """`config` with dotted fields set; a one-line ConfigError (prefixed by `where`) for an unknown
    field or a value of the wrong type."""
    checked = {}
    for name, value in changes.items():
        owner, leaf = _field(config, name, where)
        checked[name] = _stored(value, field_types(type(owner))[leaf])
    try:
        return replace(config, **checked) if checked else config
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


def _field(config: Any, name: str, where: str) -> tuple[Any, str]:
    """(the config object holding field `name`, its last part); ConfigError naming the valid fields."""
    owner, parts = config, name.split(".")
    for i, part in enumerate(parts):
        names = [f.name for f in dataclasses.fields(owner)]
        if part not in names:
            prefix = ".".join(parts[:i])
            raise ConfigError(f"{where}: unknown config field {name!r}: {prefix or 'the config'} has "
                              f"{', '.join(names)}")
        if i == len(parts) - 1:
            if dataclasses.is_dataclass(getattr(owner, part)):
                raise ConfigError(f"{where}: {name!r} is a group of fields: sweep over one of them, e.g. "
                                  f"{name}.{dataclasses.fields(getattr(owner, part))[0].name}")
            return owner, part
        owner = getattr(owner, part)
        if not dataclasses.is_dataclass(owner):
            raise ConfigError(f"{where}: unknown config field {name!r}: {'.'.join(parts[:i + 1])} has no fields")
    raise AssertionError("unreachable")


def _stored(value: Any, hint: Any) -> Any:
    """`value` as a config stores it: lists (nested too) as tuples; an integer as a float where the
    field is a float."""
    if isinstance(value, list):
        return tuple(_stored(v, None) for v in value)
    floats = hint is float or float in typing.get_args(hint)
    if floats and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value
