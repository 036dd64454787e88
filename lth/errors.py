"""User-facing errors: one line that says what is wrong and what to do."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class LthError(ValueError):
    """Bad input to lth. The CLI prints its message on one line and exits with code 2."""


class ConfigError(LthError):
    """An invalid configuration value or an unknown name."""


class MaskError(LthError):
    """A mask that does not fit the params (structure or shapes)."""


class DataError(LthError):
    """A dataset that cannot be found, loaded or verified."""


DIVERGED_HINT = "lower the learning rate (--lr) or add a warm-up (--set optimizer.warmup=500it)"
"""What to change when training diverges (a rerun of the same config diverges again)."""


def unknown_name(kind: str, name: object, choices: Iterable[str], where: str = "", then: str = "") -> ConfigError:
    """The one-line error for a name that is not one of `choices`: 'unknown model 'lenet30' [where]:
    did you mean lenet5? (choose one of ...)'; `then` adds what else the user may do."""
    choices = list(choices)
    close = closest(name, choices)
    listed = ", ".join(choices) if choices else "(none found)"
    hint = f"did you mean {close}? (choose one of {listed})" if close else f"choose one of {listed}"
    return ConfigError(f"unknown {kind} {name!r}{f' {where}' if where else ''}: {hint}{then}")


def closest(name: object, choices: Iterable[str]) -> str | None:
    """The choice `name` most likely misspells (difflib, ratio >= 0.6), or None."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6) if isinstance(name, str) else []
    return close[0] if close else None


def first_line(err: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (at most `limit` characters), else its type's name:
    for one-line errors and warnings that quote a library's failure."""
    return (str(err).splitlines() or [type(err).__name__])[0][:limit]
