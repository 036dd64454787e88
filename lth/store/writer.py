"""Saves off the critical path: a replicate's write jobs run in order on one background thread.

The caller copies what a job will write to the host first (`host_copy`, cheap), so training goes on
with -- and may donate -- its device buffers while the job (an orbax save, its digest, the records)
runs on the writer's thread. Jobs run one at a time in submission order: a job that saves a level's
checkpoint and then its record writes the record only once the checkpoint is complete on disk, and
a later job never starts before an earlier one has finished.

The first job that fails stops the writer: the jobs queued after it are dropped (nothing is written
on top of a failed save; everything submitted before it is on disk), and its error -- the one-line
OSError or `CheckpointError` the save raised -- is raised in the caller's thread at the next sync
point (`check`, `submit`, `wait`, `close`). `close` (the end of a ``with`` block: a normal end, an
error, Ctrl-C or SIGTERM) waits for every pending job, so a run never exits with a save half done.

`background=False` runs every job at once in the caller's thread (what a multi-process run does:
its process 0 saves alone, in step with the others).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

import jax
import numpy as np

Job = Callable[[], None]


def host_copy(tree: Any) -> Any:
    """The pytree with every array leaf copied into host memory of its own (None leaves kept).

    On CPU `jax.device_get` returns views of the device buffers; the copy keeps what a background
    save writes valid whatever training does next with them."""
    return jax.tree.map(np.array, jax.device_get(tree))


class BackgroundWriter:
    """Runs write jobs in order on one worker thread (see the module docstring); a context manager.

    `on_late_error`: told (one line) of a failed save that `close` finds while another exception is
    already ending the run (that exception goes on; the failed save's level is simply not done)."""

    def __init__(self, background: bool = True, on_late_error: Callable[[str], None] | None = None):
        self.background = background
        self.on_late_error = on_late_error
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._error: BaseException | None = None  # of the first failed job
        self._reported = False
        self._thread: threading.Thread | None = None
        if background:  # not a daemon: an interpreter exit waits for the save in progress
            self._thread = threading.Thread(target=self._work, name="lth-writer")
            self._thread.start()

    def submit(self, job: Job) -> None:
        """Queue `job` (run it now without a background thread); first raise a failed job's error."""
        self.check()
        if self._thread is None:
            job()
        else:
            self._jobs.put(job)

    def check(self) -> None:
        """Raise the error of a failed job, once (later jobs are dropped all the same)."""
        if self._error is not None and not self._reported:
            self._reported = True
            raise self._error

    def wait(self) -> None:
        """Block until every submitted job has run (or been dropped); then `check`."""
        if self._thread is not None:
            self._jobs.join()
        self.check()

    def close(self) -> None:
        """Wait for every pending job and stop the thread; raise a failed job's error not yet raised."""
        if self._thread is not None and self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join()
        self.check()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                if self._error is None:
                    job()
            except BaseException as err:  # raised in the caller's thread at its next sync point
                self._error = err
            finally:
                self._jobs.task_done()

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        try:
            self.close()
        except Exception as err:
            if value is None:
                raise
            if self.on_late_error is not None:
                self.on_late_error(f"{err} (a save that was still being written when the run stopped)")
