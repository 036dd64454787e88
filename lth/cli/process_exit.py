"""The `lth` process's exit, without the interpreter's teardown.

After its last atexit handler, a finished `lth run` process spent ~0.45 s tearing the interpreter down:
freeing jax's and XLA's objects and the modules of jax, flax, orbax and W&B, work whose effect no one
can observe in a process that is about to end (benchmarks/README.md, "The `lth` process's exit").
`arm`, called by the process's `main` before anything else registers a handler, registers
`_exit_now`. atexit runs its handlers last-registered first, once the non-daemon threads have been
joined, so `_exit_now` runs after every handler registered during the run (W&B's, jax's, Ray's,
multiprocessing's). It shuts logging down (whose handler was registered before it), flushes the
standard streams and ends the process with the code `main` returned (`finished`).

The interpreter exits as usual when `main` raised (no code was set), when a stream cannot be
flushed, or when coverage is measuring the process (it saves its data at the teardown).
"""

from __future__ import annotations

import atexit
import logging
import os
import sys

_code: int | None = None


def arm() -> None:
    """Register the fast exit; call it first thing in the `lth` process (never in a caller's process)."""
    atexit.register(_exit_now)


def finished(code: int) -> int:
    """Note the exit code `main` returns; returns it."""
    global _code
    _code = int(code)
    return code


def _exit_now() -> None:
    if _code is None or "coverage" in sys.modules:
        return
    logging.shutdown()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe or stream: the interpreter's own exit reports it
        return
    os._exit(_code)
