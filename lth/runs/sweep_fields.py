"""Config fields by dotted name, as sweep files give them: each value checked against the field's
type before it goes into a config (`lth.config.replace` alone would accept a string for an int and
fail later, deep in training), and the fields in which two configs differ."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Sequence
from typing import Any

from lth.config import ExperimentConfig, replace
from lth.errors import ConfigError


def with_fields(config: ExperimentConfig, changes: dict[str, Any], where: str) -> ExperimentConfig:
    """`config` with dotted fields set, each value checked against the field's type (ints become
    floats where a float is expected, lists tuples)."""
    checked = {}
    for name, value in changes.items():
        owner, leaf = _field(config, name, where)
        hint = typing.get_type_hints(type(owner))[leaf]
        ok, coerced = _coerce(value, hint)
        if not ok:
            raise ConfigError(f"{where}: {name} = {value!r} is not of type {_hint_text(hint)}")
        checked[name] = coerced
    return replace(config, **checked) if checked else config


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


def _coerce(value: Any, hint: Any) -> tuple[bool, Any]:
    """(whether `value` fits the type `hint`, the value as stored)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            ok, coerced = _coerce(value, arg)
            if ok:
                return True, coerced
        return False, value
    if hint is type(None):
        return value is None, value
    if hint is bool or hint is str:
        return isinstance(value, hint), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return number, float(value) if number else value
    if origin is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            return False, value
        args = typing.get_args(hint)
        items = args[:1] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        if len(items) != len(value):
            return False, value
        pairs = [_coerce(v, a) for v, a in zip(value, items)]
        return all(ok for ok, _ in pairs), tuple(c for _, c in pairs)
    return True, value


def _hint_text(hint: Any) -> str:
    return getattr(hint, "__name__", None) if isinstance(hint, type) else str(hint).replace("typing.", "")


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

