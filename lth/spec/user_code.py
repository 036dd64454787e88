"""Experiment and sweep files are user code: importing them and calling their `get_config` /
`get_sweep` turns whatever they raise -- a syntax error, an exception, `sys.exit` -- into a one-line
ConfigError naming the file and the line, and their module constants (VARIANTS, CONTROLS) are
checked for the shapes lth reads them as."""

from __future__ import annotations

import importlib.util
import inspect
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any
from collections.abc import Callable

from lth.errors import ConfigError


def describe_error(err: BaseException, path: Path) -> str:
    """'ValueError: boom (line 7)': the error's type, its message's first line, and the line of
    `path` it came from (the innermost frame in that file), if any."""
    text = str(err).strip().splitlines()
    if isinstance(err, SystemExit):
        text = [f"sys.exit({err.code!r}) called while lth loaded it"]
    where = [frame.lineno for frame in traceback.extract_tb(err.__traceback__)
             if Path(frame.filename).resolve() == path.resolve()]
    line = f" (line {where[-1]})" if where else ""
    return (f"{type(err).__name__}: {text[0][:200]}" if text else type(err).__name__) + line


def import_user_file(path: Path, kind: str) -> ModuleType:
    """The module of the `kind` ("experiment", "sweep") file at `path`, executed; one line on any error."""
    spec = importlib.util.spec_from_file_location(f"lth_{kind}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    try:
        spec.loader.exec_module(module)
    except SyntaxError as err:
        raise ConfigError(f"{kind} file {str(path)!r} has a syntax error at line {err.lineno} ({err.msg}): "
                          "fix the file") from None
    except (Exception, SystemExit) as err:  # user code: anything it raises is reported in one line
        raise ConfigError(f"{kind} file {str(path)!r} failed to load ({describe_error(err, path)}): fix the "
                          "file") from None
    return module


def call_user_function(function: Callable[..., Any], variant: str, path: Path) -> Any:
    """`function(variant)` (or `function()` if it takes no argument) of the file at `path`; one line
    on any error it raises (a ConfigError of lth's passes through as it is)."""
    name = getattr(function, "__name__", "the function")
    try:
        takes = inspect.signature(function).parameters
        return function(variant) if takes else function()
    except ConfigError:
        raise
    except (Exception, SystemExit) as err:
        raise ConfigError(f"{name}({variant!r}) of {str(path)!r} raised {describe_error(err, path)}: fix the "
                          "file") from None


_EXAMPLES = {"VARIANTS": '("default", "smoke")', "CONTROLS": '("random_layerwise",)'}


def names_constant(module: ModuleType, name: str, default: tuple[str, ...], path: Path,
                   per_variant: bool = False) -> Any:
    """The module constant `name` (VARIANTS, CONTROLS) as a tuple of names, or with `per_variant` also a
    dict of variant -> names; a one-line ConfigError for another shape (a bare string would be read
    letter by letter)."""
    value = getattr(module, name, default)
    items = value.values() if per_variant and isinstance(value, dict) else [value]
    for names in items:
        if isinstance(names, (str, bytes)) or not isinstance(names, (list, tuple)) or \
                not all(isinstance(n, str) for n in names):
            shape = "a tuple of names" + (" (or a dict of variant -> names)" if per_variant else "")
            raise ConfigError(f"{name} in {str(path)!r} must be {shape}, e.g. {name} = {_EXAMPLES.get(name, '(...)')}, "
                              f"got {value!r}")
    return {k: tuple(v) for k, v in value.items()} if isinstance(value, dict) else tuple(value)
