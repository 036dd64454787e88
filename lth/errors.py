"""User-facing errors: one line that says what is wrong and what to do."""

from __future__ import annotations

import difflib
import errno
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


def os_error_text(err: OSError) -> str:
    """The one line for an OSError, wherever it happened (this process, a worker process, a sweep
    cell): a full disk says so and that finished levels are kept; anything else names the path."""
    what = err.strerror or type(err).__name__
    where = f" ({err.filename})" if err.filename else ""
    if no_room(err):
        return f"no room to write{where} ({what}): free some space, or use --runs / --data-dir elsewhere; " \
               "finished levels are kept"
    return f"{what}{where}: check the path and its permissions"


def no_room(err: BaseException) -> bool:
    """Whether `err` is a write that failed for want of space (a full disk, a file-size limit, a quota)."""
    return isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
