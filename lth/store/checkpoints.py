"""Checkpoints through orbax-checkpoint: a pytree of arrays plus a JSON record, saved atomically.

orbax writes into a temporary directory and renames it when complete, so a crash while writing
never leaves a checkpoint under its final name. On top of that every checkpoint stores a SHA-256
digest of its arrays in its JSON record; `load` recomputes it, so a truncated or corrupted file is
reported (`CheckpointError`) rather than silently loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from lth.errors import LthError


class CheckpointError(LthError):
    """A checkpoint that is missing, truncated or fails its digest."""


def _quiet() -> None:
    """orbax logs every failure (with tracebacks, from each of its threads, some after `save` or
    `load` has already raised) on the "absl" logger; lth reports each as one line of its own
    (`CheckpointError`, or an OSError for a full disk), so that logger is kept to CRITICAL."""
    logging.getLogger("absl").setLevel(logging.CRITICAL)
    asyncio_logger = logging.getLogger("asyncio")
    if not any(isinstance(f, _LeftoverReadFilter) for f in asyncio_logger.filters):
        asyncio_logger.addFilter(_LeftoverReadFilter())
    if not getattr(sys.unraisablehook, "lth_closed_loop_filter", False):
        sys.unraisablehook = _closed_loop_filter(sys.unraisablehook)


def _closed_loop_filter(hook: Any) -> Any:
    """After orbax gives up on a damaged checkpoint (one line from `load`), tensorstore's pending
    reads still call back into orbax's finished event loop from threads of their own; each
    `RuntimeError: Event loop is closed` reaches `sys.unraisablehook`; so does, now and then (a race:
    1 of 3 tries under load), the failed read of a second array, raised as orbax's read coroutine is
    closed (a 30-line "Exception ignored in: <coroutine ...>" after lth's one line). Those, and only
    those, are dropped; everything else goes to the previous hook."""

    def unraisablehook(unraisable: Any) -> None:
        value = unraisable.exc_value
        if isinstance(value, RuntimeError) and str(value) == "Event loop is closed":
            return
        if _leftover_read_error(value):
            return
        hook(unraisable)

    unraisablehook.lth_closed_loop_filter = True
    return unraisablehook


class _LeftoverReadFilter(logging.Filter):
    """The third form of the race above (1 of 133 damage cases of the torture test): an orbax read
    task of a damaged checkpoint that failed after `load` had given up is garbage-collected later,
    and asyncio logs "Task exception was never retrieved" with TensorStore's error ("OUT_OF_RANGE:
    Error reading ... in OCDBT database ...") after lth's one line. Those, and only those, are
    dropped from the "asyncio" logger (in either words, `_leftover_read_error`: the torture run met
    orbax's too)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (str(record.msg).startswith("Task exception was never retrieved") and _leftover_read_error(error))


def _leftover_read_error(error: BaseException | None) -> bool:
    """Whether `error` is a failed read of a checkpoint's array, in either of the words it comes in:
    orbax's ("Encountered error while reading array index ...") or TensorStore's ("Error reading ...
    in OCDBT database ...")."""
    text = str(error) if error is not None else ""
    return text.startswith("Encountered error while reading array index") or (
        "Error reading" in text and "OCDBT database" in text)


@contextlib.contextmanager
def _silence_asyncio():
    """orbax reports failed reads from background tasks on the asyncio logger; we report them once."""
    logger = logging.getLogger("asyncio")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def tree_digest(tree: Any) -> str:
    """SHA-256 over the paths, dtypes, shapes and bytes of every array leaf."""
    import jax  # heavy: imported by what saves, loads or digests arrays, not with the store (`lth ls`)

    h = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        array = np.asarray(jax.device_get(leaf))
        h.update(f"{jax.tree_util.keystr(path)}|{array.dtype}|{array.shape}|".encode())
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def _checkpointer(only_this_process: bool = False):
    """orbax's checkpointer; `only_this_process`: a save by process 0 alone in a multi-process run
    (orbax's default save synchronises all processes and would wait for the others forever)."""
    import jax
    import orbax.checkpoint as ocp  # heavy (~0.3 s): imported on the first checkpoint, not with lth

    _quiet()
    if not only_this_process:
        return ocp.Checkpointer(ocp.CompositeCheckpointHandler())
    options = ocp.options.MultiprocessingOptions(primary_host=jax.process_index(),
                                                 active_processes={jax.process_index()})
    return ocp.Checkpointer(
        ocp.CompositeCheckpointHandler(composite_options=ocp.CompositeOptions(multiprocessing_options=options)),
        multiprocessing_options=options)


def save(path: Path, tree: Any, record: dict[str, Any]) -> None:
    """Save `tree` (arrays) and `record` (JSON) under `path`, replacing an older checkpoint there.

    In a multi-process run only process 0 calls this (lth.store), with the process's host copies of
    the (replicated) arrays."""
    import jax
    import orbax.checkpoint as ocp  # heavy: see _checkpointer

    path = Path(path).absolute()
    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    alone = jax.process_count() > 1
    if alone:
        tree = jax.device_get(tree)
    record = {**record, "digest": tree_digest(tree)}
    try:
        with _silence_asyncio():
            _checkpointer(alone).save(path, args=ocp.args.Composite(tree=ocp.args.StandardSave(tree),
                                                                    record=ocp.args.JsonSave(record)))
    except Exception as err:  # orbax / tensorstore raise ValueError & co. for failed writes
        _remove_temporaries(path)
        raise _write_error(err, path) from None


def _remove_temporaries(path: Path, attempts: int = 50) -> None:
    """Delete the half-written `<path>.orbax-checkpoint-tmp*` directories of a failed save. Tensorstore's
    threads may still be finishing a write when the error reaches us (seen on a loaded machine: a file
    created after rmtree listed the folder), so it tries again until they are gone (at most ~5 s)."""
    for _ in range(attempts):
        temporaries = list(path.parent.glob(f"{path.name}.orbax-checkpoint-tmp*"))
        if not temporaries:
            return
        for temporary in temporaries:
            shutil.rmtree(temporary, ignore_errors=True)
        time.sleep(0.1)


def _write_error(err: Exception, path: Path) -> Exception:
    """An OSError (disk full, file too large, ...) when tensorstore names one, else a CheckpointError."""
    code = re.search(r"os_error_code='?(\d+)", str(err))
    if code:
        number = int(code.group(1))
        return OSError(number, os.strerror(number), str(path))
    if isinstance(err, OSError):
        return err
    first = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
    return CheckpointError(f"cannot write checkpoint {path} ({first})")


def load(path: Path, template: Any) -> tuple[Any, dict[str, Any]]:
    """Restore a checkpoint into the structure of `template`; CheckpointError if it is damaged."""
    import jax
    import orbax.checkpoint as ocp  # heavy: see _checkpointer

    path = Path(path).absolute()
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} not found")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    try:
        with _silence_asyncio():
            restored = _checkpointer().restore(
                path, args=ocp.args.Composite(tree=ocp.args.StandardRestore(abstract), record=ocp.args.JsonRestore())
            )
    except Exception as err:  # orbax / tensorstore raise many types for damaged files
        first = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        raise CheckpointError(f"checkpoint {path} is damaged ({first})") from None
    tree, record = restored["tree"], dict(restored["record"])
    if tree_digest(tree) != record.pop("digest", None):
        raise CheckpointError(f"checkpoint {path} fails its digest (truncated or corrupted)")
    return tree, record


_STEP_DIR = re.compile(r"^step_(\d{9})$")


def step_dir(level_dir: Path, step: int) -> Path:
    return Path(level_dir) / f"step_{step:09d}"


def list_steps(level_dir: Path) -> list[int]:
    """Steps of the complete checkpoints in a level directory, newest first (temporaries ignored)."""
    if not Path(level_dir).is_dir():
        return []
    steps = [int(m.group(1)) for p in Path(level_dir).iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir()]
    return sorted(steps, reverse=True)
