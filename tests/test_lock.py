"""The run lock: exclusive, released by the kernel when its holder dies, never two holders at once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lth.errors import LthError
from lth.store.lock import LockedError, RunLock

ROOT = Path(__file__).resolve().parents[1]

HOLD = """
import sys, time
from lth.store.lock import RunLock
lock = RunLock(sys.argv[1]); lock.acquire(); print("held", flush=True); time.sleep(60)
"""

STRESS = """
import os, sys, time
from lth.store.lock import LockedError, RunLock
lock, inside, seconds = RunLock(sys.argv[1]), sys.argv[2], float(sys.argv[3])
end, entered, violations = time.monotonic() + seconds, 0, 0
while time.monotonic() < end:
    try:
        lock.acquire()
    except LockedError:
        continue
    try:  # the critical section: nobody else may be inside
        fd = os.open(inside, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        violations += 1
    else:
        entered += 1
        os.close(fd)
        os.unlink(inside)
    lock.release()
print(entered, violations, flush=True)
"""


def _python(code: str, *args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, stdout=subprocess.PIPE, text=True, **kwargs)


def test_a_held_lock_refuses_names_its_holder_and_dies_with_it(tmp_path):
    path = tmp_path / "run" / "lock"
    holder = _python(HOLD, str(path))
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockedError, match=f"in use by process {holder.pid} on "):
            RunLock(path).acquire()
    finally:
        holder.kill()  # kill -9: no chance to clean up
        holder.wait()
    lock = RunLock(path)
    lock.acquire()  # the kernel released it with its holder: nothing stale to take over
    assert lock.holder()["pid"] == os.getpid()
    lock.release()
    assert path.exists()  # left in place (see lth.store.lock)
    RunLock(path).release()  # releasing a lock one does not hold touches nothing


def test_two_processes_never_hold_it_at_once(tmp_path):
    """The stress test of the old lock (~60,000 violations in 20 s): two processes taking and
    releasing it as fast as they can, each checking nobody else is in the critical section."""
    path, inside = tmp_path / "lock", tmp_path / "inside"
    procs = [_python(STRESS, str(path), str(inside), "3") for _ in range(2)]
    outs = [p.communicate(timeout=60)[0].split() for p in procs]
    entered = [int(o[0]) for o in outs]
    assert [int(o[1]) for o in outs] == [0, 0]
    assert all(n > 50 for n in entered), entered  # both really competed


def test_an_unusable_lock_location_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(LthError, match="cannot create the lock file") as err:
        RunLock(blocker / "lock").acquire()
    assert "\n" not in str(err.value)


def test_the_lock_is_taken_at_once_when_free(tmp_path):
    started = time.monotonic()
    with RunLock(tmp_path / "lock") as lock:
        assert lock.held
    assert not lock.held and time.monotonic() - started < 1.0
