"""Run directories: the single owner of every path under a run root.

A run's directory is ``<runs root>/<experiment name>-<config hash>``: the same config always maps to
the same directory, any field change to a new one. Layout:

    config.json                     the full resolved config (every field, defaults included)
    results.json                    per level: mean (and std) over the replicates done
    accuracy_vs_sparsity.png        test accuracy against percent of weights remaining
    lock                            held by the process running it
    wandb/, wandb_steps/            W&B offline files; the last step logged per W&B run
    replicate_00/                   seed = config.seed (replicate r: seed + r)
        results.json                one record per finished level
        metrics.jsonl               every evaluation as it happens
        masks/level_XX.npz          the mask of every level ({parameter path: bool array})
        checkpoints/rewind          the weights at the rewind step (k > 0)
        checkpoints/level_XX/final  the trained state and mask of a finished level
        checkpoints/level_XX/step_N the state inside a level, every `checkpoint_every`
        controls/<name>/            a control branch: results.json, metrics.jsonl, masks/
        instability/level_XX.json   instability records of a level (and its .png)
        tickets/level_XX.npz        exported tickets
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lth.config import ExperimentConfig, config_hash, from_dict, to_dict
from lth.errors import LthError, MaskError
from lth.sparsity.masks import Mask, mask_from_arrays, mask_to_arrays
from lth.store import checkpoints
from lth.store.io import read_json_list, read_jsonl, write_atomic, write_json, write_npz_atomic
from lth.store.lock import RunLock
from lth.store.records import aggregate, best_ticket
from lth.training import TrainState

CONFIG_FILE = "config.json"
_REPLICATE_GLOB = "replicate_[0-9][0-9]"


def runs_root(override: str | os.PathLike | None = None) -> Path:
    """The run root: the argument, else $LTH_RUNS, else ./runs."""
    if override is not None:
        return Path(override)
    return Path(os.environ.get("LTH_RUNS") or "runs")


def run_name(config: ExperimentConfig) -> str:
    """``<experiment name>-<config hash>``: the run directory's name."""
    return f"{config.name}-{config_hash(config)}"


def read_config(run_path: str | os.PathLike) -> dict[str, Any]:
    """The config.json of a run directory, as a dict; a one-line LthError if it is unreadable."""
    path = Path(run_path) / CONFIG_FILE
    try:
        value = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        raise LthError(f"{Path(run_path)} is not a run directory (no readable {CONFIG_FILE})") from None
    if not isinstance(value, dict):
        raise LthError(f"{path} does not hold a config (a JSON object)")
    return value


def replicate_paths(run_path: str | os.PathLike) -> list[Path]:
    """The replicate directories of a run, in replicate order."""
    return [p for p in sorted(Path(run_path).glob(_REPLICATE_GLOB)) if p.is_dir()]


# --------------------------------------------------------------------------- one replicate's files


class ReplicateDir:
    """The files of one replicate (one seed) of a run, or of one of its control branches.

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
    controls_dir = property(lambda self: self.path / "controls")

    def level_dir(self, level: int) -> Path:
        return self.checkpoints_dir / f"level_{level:02d}"

    def mask_path(self, level: int) -> Path:
        return self.masks_dir / f"level_{level:02d}.npz"

    def instability_path(self, level: int) -> Path:
        """Where `lth instability` keeps a level's records (a .png beside it)."""
        return self.path / "instability" / f"level_{level:02d}.json"

    def ticket_path(self, level: int) -> Path:
        """Where `lth export` writes a level's ticket by default."""
        return self.path / "tickets" / f"level_{level:02d}.npz"

    def control(self, name: str) -> ReplicateDir:
        """The files of control branch `name` of this replicate (same layout, no checkpoints)."""
        return ReplicateDir(self.controls_dir / name, self.writable)

    def control_names(self) -> list[str]:
        """The control branches on disk."""
        return sorted(p.name for p in self.controls_dir.glob("*") if p.is_dir())

    def mkdir(self) -> None:
        if self.writable:
            self.path.mkdir(parents=True, exist_ok=True)

    def read_results(self) -> list[dict[str, Any]]:
        return read_json_list(self.results_path)

    def write_results(self, records: list[dict[str, Any]]) -> None:
        if self.writable:
            write_json(self.results_path, records)

    def read_metrics(self) -> list[dict[str, Any]]:
        """The rows of metrics.jsonl ([] when there is none)."""
        return read_jsonl(self.metrics_path) if self.metrics_path.exists() else []

    def save_mask(self, level: int, mask: Mask) -> Path:
        path = self.mask_path(level)
        if self.writable:
            write_npz_atomic(path, mask_to_arrays(mask))
        return path

    # checkpoints ---------------------------------------------------------------------------

    def save_state(self, path: Path, state: TrainState, mask: Mask, record: dict[str, Any]) -> None:
        if self.writable:
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
        if self.writable:
            checkpoints.save(self.rewind_path, {"params": state.params, "model_state": state.model_state},
                             {"step": int(state.step)})

    def load_final(self, level: int, template: TrainState, mask_template: Mask) -> tuple[TrainState, Mask]:
        """The trained state and mask of a finished level (CheckpointError if missing or damaged)."""
        state, mask, _ = self.load_state(self.level_dir(level) / "final", template, mask_template)
        return state, mask

    def load_rewind(self, template: TrainState) -> tuple[Any, Any]:
        """(params, model state) at the rewind step k > 0."""
        tree, _ = checkpoints.load(self.rewind_path, {"params": template.params, "model_state": template.model_state})
        return jax.tree.map(jnp.asarray, tree["params"]), jax.tree.map(jnp.asarray, tree["model_state"])

    def load_state(self, path: Path, template: TrainState, mask_template: Mask
                   ) -> tuple[TrainState, Mask, dict[str, Any]]:
        """(state, mask, record) of the checkpoint at `path` (CheckpointError if missing or damaged)."""
        tree, record = checkpoints.load(path, {"state": template, "mask": mask_template})
        state = jax.tree.map(jnp.asarray, tree["state"])
        mask = jax.tree.map(lambda m: None if m is None else jnp.asarray(m, bool), tree["mask"],
                            is_leaf=lambda x: x is None)
        return state, mask, record

    def truncate_metrics(self, level: int, step: int) -> None:
        """Drop metrics.jsonl lines past the resume point (they will be recomputed, identically)."""
        if not self.writable or not self.metrics_path.exists():
            return

        def kept(r: dict[str, Any]) -> bool:
            same_level = r.get("level") == level
            return r.get("level", 0) < level or (same_level and "iteration" in r and r["iteration"] <= step)

        keep = [r for r in read_jsonl(self.metrics_path) if kept(r)]
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

    def __init__(self, root: str | os.PathLike | None, config: ExperimentConfig, writable: bool = True,
                 path: str | os.PathLike | None = None):
        self.config = config
        self.path = Path(path) if path is not None else runs_root(root) / run_name(config)
        self.writable = writable  # False: a reader that writes nothing (see ReplicateDir)

    config_path = property(lambda self: self.path / CONFIG_FILE)
    results_path = property(lambda self: self.path / "results.json")
    plot_path = property(lambda self: self.path / "accuracy_vs_sparsity.png")
    lock_path = property(lambda self: self.path / "lock")
    wandb_steps_dir = property(lambda self: self.path / "wandb_steps")

    def control_results_path(self, name: str) -> Path:
        """A control's results aggregated over the replicates."""
        return self.path / "controls" / name / "results.json"

    def replicate(self, index: int) -> ReplicateDir:
        return ReplicateDir(self.path / f"replicate_{index:02d}", self.writable)

    def replicates(self) -> list[ReplicateDir]:
        """The replicates on disk, in order."""
        return [ReplicateDir(p, self.writable) for p in replicate_paths(self.path)]

    def create(self) -> None:
        if self.writable:
            self.path.mkdir(parents=True, exist_ok=True)
            write_json(self.config_path, to_dict(self.config))

    def lock(self) -> RunLock | contextlib.nullcontext:
        return RunLock(self.lock_path) if self.writable else contextlib.nullcontext()

    def write_aggregate(self, per_replicate: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
        records = aggregate(per_replicate)
        if self.writable:
            write_json(self.results_path, records)
        return records

    def read_aggregate(self) -> list[dict[str, Any]]:
        """The run's results.json (mean and std per level over the replicates)."""
        return read_json_list(self.results_path)


def open_run(path: str | os.PathLike, writable: bool = True) -> RunDir:
    """The RunDir of an existing run directory, from its config.json."""
    path = Path(path)
    return RunDir(path.parent, from_dict(read_config(path)), writable, path=path)


def load_mask(path: str | os.PathLike, params: Any) -> Mask:
    """Load a mask saved by `ReplicateDir.save_mask` for `params`; one-line MaskError if it does not fit."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise MaskError(f"mask file {str(path)!r} not found: "
                        "pass a runs/<run>/replicate_XX/masks/level_XX.npz file") from None
    except Exception as err:  # zipfile, pickle and OS errors of a damaged file
        raise MaskError(f"mask file {str(path)!r} is not a readable .npz mask ({type(err).__name__})") from None
    return mask_from_arrays(arrays, params)


def list_runs(root: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Every run under the root: name, hash, levels done / planned, replicates, best ticket, path."""
    rows = []
    for config_path in sorted(runs_root(root).glob(f"*/{CONFIG_FILE}")):
        try:
            config = read_config(config_path.parent)
        except LthError:
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
    if (path / CONFIG_FILE).is_file():
        return path
    base = runs_root(root)
    matches = [p.parent for p in base.glob(f"*/{CONFIG_FILE}")
               if p.parent.name == str(name) or p.parent.name.endswith(f"-{name}")]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise LthError(f"no run {str(name)!r} under {base}: give a run directory, a name or a hash (see `lth ls`)")
    raise LthError(f"{str(name)!r} matches {len(matches)} runs under {base}: give the full directory name")
