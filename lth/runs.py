"""Run directories: layout, atomic writes, checkpoints and resumption, the lock, listing.

A run's directory is ``<runs root>/<experiment name>-<config hash>``: the same config always maps to
the same directory, any field change to a new one. Layout:

    config.json                     the full resolved config (every field, defaults included)
    results.json                    per level: mean (and std) over the replicates done
    accuracy_vs_sparsity.png        test accuracy against percent of weights remaining
    lock                            held by the process running it
    replicate_00/                   seed = config.seed (replicate r: seed + r)
        results.json                one record per finished level
        metrics.jsonl               every evaluation as it happens
        masks/level_XX.npz          the mask of every level ({parameter path: bool array})
        checkpoints/rewind          the weights at the rewind step (k > 0)
        checkpoints/level_XX/final  the trained state and mask of a finished level
        checkpoints/level_XX/step_N the state inside a level, every `checkpoint_every`
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import statistics
import tempfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lth import checkpoints
from lth.config import ExperimentConfig, config_hash, to_dict
from lth.errors import LthError, MaskError
from lth.masks import Mask, mask_from_arrays, mask_to_arrays
from lth.train import TrainState


def runs_root(override: str | os.PathLike | None = None) -> Path:
    """The run root: the argument, else $LTH_RUNS, else ./runs."""
    if override is not None:
        return Path(override)
    return Path(os.environ.get("LTH_RUNS") or "runs")


def run_name(config: ExperimentConfig) -> str:
    return f"{config.name}-{config_hash(config)}"


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, fsync, then rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, value: Any) -> None:
    write_atomic(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def read_json_list(path: Path) -> list[dict[str, Any]]:
    try:
        value = json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return []
    return value if isinstance(value, list) else []


# --------------------------------------------------------------------------- the lock


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


# --------------------------------------------------------------------------- one replicate's files


class ReplicateDir:
    """The files of one replicate (one seed) of a run.

    `writable=False` gives a reader: every method that writes does nothing (processes other than 0
    of a multi-process run read the same files, compute the same things, and leave writing to 0).
    """

    def __init__(self, path: Path, writable: bool = True):
        self.path = Path(path)
        self.writable = writable

    results_path = property(lambda self: self.path / "results.json")
    metrics_path = property(lambda self: self.path / "metrics.jsonl")
    masks_dir = property(lambda self: self.path / "masks")
    checkpoints_dir = property(lambda self: self.path / "checkpoints")
    rewind_path = property(lambda self: self.path / "checkpoints" / "rewind")

    def level_dir(self, level: int) -> Path:
        return self.checkpoints_dir / f"level_{level:02d}"

    def mask_path(self, level: int) -> Path:
        return self.masks_dir / f"level_{level:02d}.npz"

    def mkdir(self) -> None:
        if self.writable:
            self.path.mkdir(parents=True, exist_ok=True)

    def read_results(self) -> list[dict[str, Any]]:
        return read_json_list(self.results_path)

    def write_results(self, records: list[dict[str, Any]]) -> None:
        if not self.writable:
            return
        write_json(self.results_path, records)

    def save_mask(self, level: int, mask: Mask) -> Path:
        path = self.mask_path(level)
        if not self.writable:
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **mask_to_arrays(mask))
        os.replace(tmp, path)
        return path

    # checkpoints ---------------------------------------------------------------------------

    def save_state(self, path: Path, state: TrainState, mask: Mask, record: dict[str, Any]) -> None:
        if not self.writable:
            return
        checkpoints.save(path, {"state": state, "mask": mask}, record)

    def save_level_step(self, level: int, state: TrainState, mask: Mask, evaluations: list[dict[str, float]]) -> None:
        """A mid-level checkpoint; older ones of the level are removed once it is written."""
        if not self.writable:
            return
        step = int(state.step)
        self.save_state(checkpoints.step_dir(self.level_dir(level), step), state, mask,
                        {"level": level, "step": step, "evaluations": evaluations})
        for older in checkpoints.list_steps(self.level_dir(level))[1:]:
            shutil.rmtree(checkpoints.step_dir(self.level_dir(level), older), ignore_errors=True)

    def save_level_final(self, level: int, state: TrainState, mask: Mask) -> None:
        if not self.writable:
            return
        self.save_state(self.level_dir(level) / "final", state, mask, {"level": level, "step": int(state.step)})
        for step in checkpoints.list_steps(self.level_dir(level)):
            shutil.rmtree(checkpoints.step_dir(self.level_dir(level), step), ignore_errors=True)

    def save_rewind(self, state: TrainState) -> None:
        if not self.writable:
            return
        checkpoints.save(self.rewind_path, {"params": state.params, "model_state": state.model_state},
                         {"step": int(state.step)})

    def load_final(self, level: int, template: TrainState, mask_template: Mask) -> tuple[TrainState, Mask]:
        """The trained state and mask of a finished level (CheckpointError if missing or damaged)."""
        state, mask, _ = self._load_state(self.level_dir(level) / "final", template, mask_template)
        return state, mask

    def load_rewind(self, template: TrainState) -> tuple[Any, Any]:
        """(params, model state) at the rewind step k > 0."""
        tree, _ = checkpoints.load(self.rewind_path, {"params": template.params, "model_state": template.model_state})
        return jax.tree.map(jnp.asarray, tree["params"]), jax.tree.map(jnp.asarray, tree["model_state"])

    def _load_state(self, path: Path, template: TrainState, mask_template: Mask):
        tree, record = checkpoints.load(path, {"state": template, "mask": mask_template})
        state = jax.tree.map(jnp.asarray, tree["state"])
        mask = jax.tree.map(lambda m: None if m is None else jnp.asarray(m, bool), tree["mask"],
                            is_leaf=lambda x: x is None)
        return state, mask, record

    def find_resume(self, template: TrainState, mask_template: Mask, rewind_step: int, warn) -> Any:
        """The `lottery.Resume` point of this replicate, or None to start from scratch.

        Damaged checkpoints are reported through `warn` (one line each) and skipped: the level
        resumes from the newest good one, or the run from the last good finished level.
        """
        from lth.lottery import Resume

        records = self.read_results()
        previous = previous_mask = None
        while records:
            level = len(records) - 1
            try:
                previous, previous_mask, _ = self._load_state(self.level_dir(level) / "final", template, mask_template)
                break
            except checkpoints.CheckpointError as err:
                warn(f"{err}; level {level} will be recomputed")
                records = records[:-1]
                self.write_results(records)
        level = len(records)
        mid = None
        for step in checkpoints.list_steps(self.level_dir(level)):
            try:
                mid = self._load_state(checkpoints.step_dir(self.level_dir(level), step), template, mask_template)
                break
            except checkpoints.CheckpointError as err:
                warn(f"{err}; trying the previous checkpoint")
        rewind_point = None
        needs_rewind = rewind_step > 0 and (level > 0 or (mid is not None and int(mid[0].step) >= rewind_step))
        if needs_rewind:
            try:
                rewind_point = self.load_rewind(template)
            except checkpoints.CheckpointError as err:
                warn(f"{err}; the replicate restarts from level 0")
                self.reset()
                return None
        if level == 0 and mid is None:
            return None
        resume = Resume(level, previous, previous_mask, rewind_point)
        if mid is not None:
            state, mask, record = mid
            resume = resume._replace(state=state, mask=mask, evaluations=tuple(record["evaluations"]))
        return resume

    def truncate_metrics(self, level: int, step: int) -> None:
        """Drop metrics.jsonl lines past the resume point (they will be recomputed, identically)."""
        if not self.writable:
            return
        if not self.metrics_path.exists():
            return
        from lth.tracking import read_jsonl

        keep = [r for r in read_jsonl(self.metrics_path)
                if r.get("level", 0) < level or (r.get("level") == level and "iteration" in r and r["iteration"] <= step)]
        write_atomic(self.metrics_path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in keep).encode())

    def reset(self) -> None:
        """Forget everything of this replicate (a fresh start)."""
        if not self.writable:
            return
        for path in (self.results_path, self.metrics_path):
            path.unlink(missing_ok=True)
        for path in (self.masks_dir, self.checkpoints_dir):
            shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- the run


class RunDir:
    """The files of one run. Creating the object touches nothing; `create` makes the directory."""

    def __init__(self, root: str | os.PathLike | None, config: ExperimentConfig, writable: bool = True):
        self.config = config
        self.path = runs_root(root) / run_name(config)
        self.writable = writable  # False: a reader that writes nothing (see ReplicateDir)

    config_path = property(lambda self: self.path / "config.json")
    results_path = property(lambda self: self.path / "results.json")
    plot_path = property(lambda self: self.path / "accuracy_vs_sparsity.png")
    lock_path = property(lambda self: self.path / "lock")

    def replicate(self, index: int) -> ReplicateDir:
        return ReplicateDir(self.path / f"replicate_{index:02d}", self.writable)

    def replicates(self) -> list[ReplicateDir]:
        return [ReplicateDir(p) for p in sorted(self.path.glob("replicate_[0-9][0-9]")) if p.is_dir()]

    def create(self) -> None:
        if not self.writable:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.config_path, to_dict(self.config))

    def lock(self) -> RunLock | contextlib.nullcontext:
        return RunLock(self.lock_path) if self.writable else contextlib.nullcontext()

    def write_aggregate(self, per_replicate: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
        records = aggregate(per_replicate)
        if self.writable:
            write_json(self.results_path, records)
        return records


AGGREGATED = ("density", "percent_remaining", "weights_remaining", "test_accuracy", "early_stop_iteration",
              "early_stop_test_accuracy", "early_stop_val_loss", "best_test_accuracy")


def aggregate(per_replicate: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Mean and (population) standard deviation per level over the replicates that finished it.
    Levels are matched by their `level` field, so replicates may hold different sets of levels."""
    by_level: dict[int, list[dict[str, Any]]] = {}
    for records in per_replicate:
        for row in records:
            by_level.setdefault(int(row["level"]), []).append(row)
    out = []
    for level in sorted(by_level):
        rows = by_level[level]
        record: dict[str, Any] = {"level": level, "replicates": len(rows)}
        for key in AGGREGATED:
            values = [float(row[key]) for row in rows]
            record[key] = statistics.fmean(values)
            record[f"{key}_std"] = statistics.pstdev(values) if len(values) > 1 else 0.0
        out.append(record)
    return out


def load_mask(path: str | os.PathLike, params: Any) -> Mask:
    """Load a mask saved by `ReplicateDir.save_mask` for `params`; one-line MaskError if it does not fit."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise MaskError(f"mask file {str(path)!r} not found: pass a runs/<run>/replicate_XX/masks/level_XX.npz file") from None
    except Exception as err:  # zipfile, pickle and OS errors of a damaged file
        raise MaskError(f"mask file {str(path)!r} is not a readable .npz mask ({type(err).__name__})") from None
    return mask_from_arrays(arrays, params)


def best_ticket(records: list[dict[str, Any]], tolerance: float = 0.005) -> dict[str, Any] | None:
    """The sparsest level whose early-stop test accuracy is within `tolerance` (0.5 points) of level 0's."""
    if not records:
        return None
    dense = records[0]["early_stop_test_accuracy"]
    matching = [r for r in records if r["early_stop_test_accuracy"] >= dense - tolerance]
    return min(matching, key=lambda r: r["density"]) if matching else None


def list_runs(root: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Every run under the root: name, hash, levels done / planned, replicates, best ticket, path."""
    rows = []
    for config_path in sorted(runs_root(root).glob("*/config.json")):
        try:
            config = json.loads(config_path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        path = config_path.parent
        records = read_json_list(path / "results.json")
        rows.append({
            "name": config.get("name", path.name),
            "hash": path.name.rsplit("-", 1)[-1],
            "levels_done": len(records),
            "levels_planned": int(config.get("levels", 0)) + 1,
            "replicates": max((r.get("replicates", 1) for r in records), default=0),
            "best_ticket": best_ticket(records),
            "path": str(path),
        })
    return rows


def resolve_run(name: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
    """A run directory from a path, a directory name, or a config hash under the run root."""
    path = Path(name)
    if (path / "config.json").is_file():
        return path
    base = runs_root(root)
    matches = [p.parent for p in base.glob("*/config.json")
               if p.parent.name == str(name) or p.parent.name.endswith(f"-{name}")]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise LthError(f"no run {str(name)!r} under {base}: give a run directory, a name or a hash (see `lth ls`)")
    raise LthError(f"{str(name)!r} matches {len(matches)} runs under {base}: give the full directory name")
