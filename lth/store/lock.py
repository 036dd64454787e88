"""The run lock: one process at a time trains a run directory."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from lth.errors import LthError


class RunLock:
    """An exclusive lock file naming its holder (host and PID). A lock left by a dead process on
    this host is taken over; a live holder makes `acquire` raise a one-line LthError."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.held = False

    def _holder(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    @staticmethod
    def _alive(holder: dict[str, Any]) -> bool:
        if holder.get("host") != socket.gethostname():
            return True  # cannot tell: assume it is running
        try:
            os.kill(int(holder["pid"]), 0)
        except ProcessLookupError:
            return False
        except (PermissionError, KeyError, ValueError, TypeError):
            return True
        return True

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = json.dumps({"host": socket.gethostname(), "pid": os.getpid()}).encode()
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is not None and self._alive(holder):
                    raise LthError(
                        f"run {self.path.parent} is in use by process {holder.get('pid')} on {holder.get('host')}: "
                        f"wait for it to finish, or delete {self.path} if that process is gone"
                    ) from None
                self.path.unlink(missing_ok=True)  # stale: its holder is dead
                continue
            with os.fdopen(fd, "wb") as f:
                f.write(me)
            self.held = True
            return
        raise LthError(f"could not take the lock {self.path}: delete it if no process is using the run")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
