"""Whole files written atomically, with the permissions a plain `open(path, "w")` gives them.

The one primitive under every write of a whole file: the run store's (`lth.store.io.write_atomic`:
configs, results, plots, tickets, sweep outputs) and the dataset caches of `lth.data`. It lives here,
at the bottom of the layers, so that both use it.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

# what json.loads raises for text that is not JSON lth can read: bad syntax, or nesting deeper than Python's
# recursion limit (a damaged or hostile file)
UNREADABLE_JSON = (json.JSONDecodeError, RecursionError)

# O_EXCL: a fresh file of ours, never one planted under the temporary name (nor a link to one)
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


@contextmanager
def replacing(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file object whose bytes become `path` at the end of the block: written to a temporary
    file beside it, fsynced, then renamed over it, so a crash never leaves a half-written file under
    its name (an error in the block leaves `path` as it was; an OSError of the write names `path`). A
    new file gets 0666 less the umask (0644 under umask 022, 0600 under 077), as `open` would give it;
    a file replaced keeps its mode."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            _keep_mode(path, f.fileno())
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:  # a failed write (a full disk) names the file it was for, never the temporary one
        tmp.unlink(missing_ok=True)
        if err.filename is None or str(err.filename) == str(tmp):
            raise OSError(err.errno, err.strerror or str(err), str(path)) from err
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` as the whole of `path`, atomically (see `replacing`)."""
    with replacing(path) as f:
        f.write(data)


def _create_beside(path: Path) -> tuple[int, Path]:
    """A new hidden temporary file beside `path`, created with mode 0666 for the kernel to apply the
    umask to (tempfile.mkstemp would make it 0600 whatever the umask)."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, _NEW_FILE, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def _keep_mode(path: Path, fd: int) -> None:
    """Give the temporary file the mode of the file it will replace, if there is one."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return
    if hasattr(os, "fchmod"):
        os.fchmod(fd, mode)
