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
import re
import shutil
from pathlib import Path
from typing import Any

import jax
import numpy as np

from lth.errors import LthError


class CheckpointError(LthError):
    """A checkpoint that is missing, truncated or fails its digest."""


def _quiet() -> None:
    try:
        import absl.logging  # orbax's logger; only present with orbax

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:  # pragma: no cover
        pass


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
    h = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        array = np.asarray(jax.device_get(leaf))
        h.update(f"{jax.tree_util.keystr(path)}|{array.dtype}|{array.shape}|".encode())
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def _checkpointer(only_this_process: bool = False):
    """orbax's checkpointer; `only_this_process`: a save by process 0 alone in a multi-process run
    (orbax's default save synchronises all processes and would wait for the others forever)."""
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
    import orbax.checkpoint as ocp  # heavy: see _checkpointer

    path = Path(path).absolute()
    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    alone = jax.process_count() > 1
    if alone:
        tree = jax.device_get(tree)
    record = {**record, "digest": tree_digest(tree)}
    _checkpointer(alone).save(path, args=ocp.args.Composite(tree=ocp.args.StandardSave(tree),
                                                            record=ocp.args.JsonSave(record)))


def load(path: Path, template: Any) -> tuple[Any, dict[str, Any]]:
    """Restore a checkpoint into the structure of `template`; CheckpointError if it is damaged."""
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
