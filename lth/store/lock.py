"""The run lock: one process at a time trains a run directory (or a replicate of it).

An exclusive `fcntl.flock` on a `lock` file. The kernel releases it when its holder exits or is
killed, so there is never a stale lock to take over and no window in which two processes both
believe they hold it. The file names its holder (host, PID) for the message a second process gets;
it is left in place on release (removing it would let a third process lock a fresh file while a
second still waits on the old one). On a shared filesystem (NFS v4, Lustre, GPFS) flock is
forwarded to the server's lock manager, so the lock holds across the nodes of a cluster.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from pathlib import Path
from typing import Any

from lth.errors import LthError


class LockedError(LthError):
    """The run (or replicate) is being trained by another process."""


class RunLock:
    """An exclusive lock on `path` (see the module docstring); a context manager."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def holder(self) -> dict[str, Any] | None:
        """The host and PID written by the current holder, if readable."""
        try:
            value = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def acquire(self) -> None:
        """Take the lock or raise a one-line LockedError naming the holder."""
        if self._fd is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)  # less the umask, as every file of a run
        except OSError as err:
            raise LthError(f"cannot create the lock file {self.path} ({err.strerror}): "
                           "choose a writable run root (--runs)") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = self.holder() or {}
            who = f"process {holder.get('pid')} on {holder.get('host')}" if holder else "another process"
            raise LockedError(f"{self.path.parent} is in use by {who}: wait for it to finish") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid()}).encode())
        self._fd = fd

    def release(self) -> None:
        """Let go of the lock (only ever our own: an flock belongs to the open file)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
