"""Run directories: the single owner of every path under a run root.

A run's directory is ``<runs root>/<experiment name>-<config hash>``: the same config always maps to
the same directory, any field change to a new one. Layout:

    config.json                     the full resolved config (every field, defaults included)
    results.json                    per level: mean (and std) over the replicates done
    accuracy_vs_sparsity.png        test accuracy against percent of weights remaining
    ticket.safetensors              the ticket level 0 started from (`lth run --ticket`), if any
    lock                            held by the process running it
    wandb/, wandb_steps/            W&B offline files; the last row logged per W&B run
    wandb_id                        a random token made on W&B's first use: its W&B runs' ids
    replicate_00/                   seed = config.seed (replicate r: seed + r)
        results.json                one record per finished level
        metrics.jsonl               every evaluation as it happens
        masks/level_XX.npz          the mask of every level ({parameter path: bool array})
        checkpoints/rewind          the weights at the rewind step (k > 0)
        checkpoints/level_XX/final  the trained state and mask of a finished level
        checkpoints/level_XX/step_N the state inside a level, every `checkpoint_every`
        controls/<name>/            a control branch: results.json, metrics.jsonl, masks/
        instability/level_XX.json   instability records of a level (and its .png)
        tickets/level_XX.safetensors  exported tickets (`lth ticket export`)
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from lth.spec.config import ExperimentConfig, from_dict, to_dict
from lth.spec.hashing import config_hash
from lth.spec.files import UNREADABLE_JSON
from lth.errors import LthError, MaskError
from lth.store.io import check_output_path, directory_token, read_json_list, write_json
from lth.store.lock import RunLock
from lth.store.records import aggregate, record_problem
from lth.store.replicate import ReplicateDir

CONFIG_FILE = "config.json"
_REPLICATE_GLOB = "replicate_[0-9][0-9]"


def check_output_file(path: str | os.PathLike) -> Path:
    """`check_output_path`, and never one of a run directory's own files: inside a run directory (a
    folder with config.json and replicate_XX folders) output goes only to a replicate's tickets/
    folder, where `lth ticket export` puts tickets by default. A one-line LthError otherwise."""
    path = check_output_path(path)
    target = Path(os.path.abspath(path))
    for parent in target.parents:
        if (parent / CONFIG_FILE).is_file() and any(parent.glob(_REPLICATE_GLOB)):
            inside = target.relative_to(parent).parts
            if not (len(inside) == 3 and Path(inside[0]).match(_REPLICATE_GLOB) and inside[1] == "tickets"):
                raise LthError(f"output {path} is inside the run directory {parent}, whose files are its records: "
                               f"write it outside the run, or under {parent / 'replicate_XX' / 'tickets'}")
            break
    return path


def runs_root(override: str | os.PathLike | None = None) -> Path:
    """The run root: the argument, else $LTH_RUNS, else ./runs. An empty argument is an error (it
    would mean the current directory)."""
    if override is not None:
        if not str(override).strip():
            raise LthError("the run root is empty: give a directory (--runs DIR), or leave it out for ./runs")
        return Path(override)
    return Path(os.environ.get("LTH_RUNS") or "runs")


def artifact_downloads(root: str | os.PathLike | None = None) -> Path:
    """Where W&B ticket artifacts named by `lth run --ticket NAME:ALIAS` are downloaded."""
    return runs_root(root) / "wandb-artifacts"


def check_run_root(override: str | os.PathLike | None = None) -> Path:
    """The run root, checked before anything is written: a directory, or a path under a writable
    directory where one can be made. A one-line LthError otherwise."""
    root = runs_root(override)
    existing = next(p for p in (root, *root.parents) if p.exists() or p == Path(p.anchor or "."))
    if not existing.is_dir():
        raise LthError(f"the run root {root} is not usable: {existing} is not a directory (choose --runs DIR)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise LthError(f"the run root {root} is not usable: {existing} is not writable (choose --runs DIR)")
    return root


def run_name(config: ExperimentConfig) -> str:
    """``<experiment name>-<config hash>``: the run directory's name."""
    return f"{config.name}-{config_hash(config)}"


def read_config(run_path: str | os.PathLike) -> dict[str, Any]:
    """The config.json of a run directory, as a dict; a one-line LthError if it is unreadable."""
    path = Path(run_path) / CONFIG_FILE
    try:
        value = json.loads(path.read_text())
    except (OSError, *UNREADABLE_JSON):
        raise LthError(f"{Path(run_path)} is not a run directory (no readable {CONFIG_FILE})") from None
    if not isinstance(value, dict):
        raise LthError(f"{path} does not hold a config (a JSON object)")
    return value


def replicate_paths(run_path: str | os.PathLike) -> list[Path]:
    """The replicate directories of a run, in replicate order."""
    return [p for p in sorted(Path(run_path).glob(_REPLICATE_GLOB)) if p.is_dir()]


def stray_replicates(run_path: str | os.PathLike) -> list[Path]:
    """Entries named like replicates that are not directories (a file, a broken or looping symlink)."""
    return [p for p in sorted(Path(run_path).glob(_REPLICATE_GLOB)) if not p.is_dir()]


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
    start_ticket_path = property(lambda self: self.path / "ticket.safetensors")  # `lth run --ticket`: a copy

    wandb_id_path = property(lambda self: self.path / "wandb_id")

    def wandb_id(self) -> str:
        """The run directory's own random token, made once, when W&B first logs from it (the first of
        several processes wins): two machines running one config into a shared W&B project never
        write into the same W&B run, and a resume continues its own."""
        return directory_token(self.wandb_id_path, self.writable)

    def control_results_path(self, name: str) -> Path:
        """A control's results aggregated over the replicates."""
        return self.path / "controls" / name / "results.json"

    def replicate(self, index: int) -> ReplicateDir:
        return ReplicateDir(self.path / f"replicate_{index:02d}", self.writable)

    def replicates(self) -> list[ReplicateDir]:
        """The replicates on disk, in order."""
        return [ReplicateDir(p, self.writable) for p in replicate_paths(self.path)]

    def create(self) -> None:
        """Make the run directory and write its config.json (a one-line LthError if that fails)."""
        if self.writable:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
                write_json(self.config_path, to_dict(self.config))
            except OSError as err:
                raise LthError(f"cannot create the run directory {self.path} ({err.strerror}): "
                               "choose a writable run root (--runs DIR)") from None

    def lock(self) -> RunLock | contextlib.nullcontext:
        return RunLock(self.lock_path) if self.writable else contextlib.nullcontext()

    def write_aggregate(self, per_replicate: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
        records = aggregate(per_replicate)
        if self.writable:
            write_json(self.results_path, records)
        return records

    def read_aggregate(self) -> list[dict[str, Any]]:
        """The run's results.json (mean and std per level over the replicates); computed again from
        the replicates' records (not written) when a number in it cannot be right (`record_problem`)."""
        records = read_json_list(self.results_path)
        if all(record_problem(record) is None for record in records):
            return records
        return aggregate([ReplicateDir(p, writable=False).read_results() for p in replicate_paths(self.path)])


def open_run(path: str | os.PathLike, writable: bool = True) -> RunDir:
    """The RunDir of an existing run directory, from its config.json."""
    path = Path(path)
    return RunDir(path.parent, from_dict(read_config(path)), writable, path=path)


def check_mask_file(path: str | os.PathLike) -> None:
    """A one-line MaskError if there is no mask file at `path` (what is in it needs the model)."""
    if not Path(path).exists():
        raise MaskError(f"mask file {str(path)!r} not found: "
                        "pass a runs/<run>/replicate_XX/masks/level_XX.npz file")
    if not Path(path).is_file():  # a directory, or a FIFO that would wait for a writer forever
        raise MaskError(f"mask file {str(path)!r} is not a regular file: "
                        "pass a runs/<run>/replicate_XX/masks/level_XX.npz file")


def load_mask(path: str | os.PathLike, params: Any) -> Any:
    """Load a mask saved by `ReplicateDir.save_mask` for `params`; one-line MaskError if it does not fit."""
    check_mask_file(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as err:  # zipfile, pickle and OS errors of a damaged file
        raise MaskError(f"mask file {str(path)!r} is not a readable .npz mask ({type(err).__name__})") from None
    from lth.sparsity.masks import mask_from_arrays  # heavy (jax): the store's readers of records need none

    return mask_from_arrays(arrays, params)
