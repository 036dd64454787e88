"""Run directories: where a run's files live, and atomic writes of its records and masks.

A run's directory is ``<runs root>/<experiment name>-<config hash>``: the same config always maps to
the same directory, any field change to a new one. Files:

    config.json               the full resolved config (every field)
    metrics.jsonl             every evaluation as it happens (one JSON object per line)
    results.json              one record per finished level
    masks/level_XX.npz        the mask of every level ({parameter path: bool array})
    accuracy_vs_sparsity.png  test accuracy against percent of weights remaining
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from lth.config import ExperimentConfig, config_hash, to_dict
from lth.errors import MaskError
from lth.masks import Mask, mask_from_arrays, mask_to_arrays


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


class RunDir:
    """The files of one run. Creating the object touches nothing; `create` makes the directory."""

    def __init__(self, root: str | os.PathLike | None, config: ExperimentConfig):
        self.config = config
        self.path = runs_root(root) / run_name(config)

    config_path = property(lambda self: self.path / "config.json")
    metrics_path = property(lambda self: self.path / "metrics.jsonl")
    results_path = property(lambda self: self.path / "results.json")
    masks_dir = property(lambda self: self.path / "masks")
    plot_path = property(lambda self: self.path / "accuracy_vs_sparsity.png")

    def mask_path(self, level: int) -> Path:
        return self.masks_dir / f"level_{level:02d}.npz"

    def create(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.config_path, to_dict(self.config))

    def read_results(self) -> list[dict[str, Any]]:
        """The finished levels' records ([] if none)."""
        try:
            return json.loads(self.results_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return []

    def write_results(self, records: list[dict[str, Any]]) -> None:
        write_json(self.results_path, records)

    def save_mask(self, level: int, mask: Mask) -> Path:
        path = self.mask_path(level)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **mask_to_arrays(mask))
        os.replace(tmp, path)
        return path


def load_mask(path: str | os.PathLike, params: Any) -> Mask:
    """Load a mask saved by `RunDir.save_mask` for `params`; one-line MaskError if it does not fit."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise MaskError(f"mask file {str(path)!r} not found: pass a runs/<run>/masks/level_XX.npz file") from None
    except (OSError, ValueError, EOFError) as err:
        raise MaskError(f"mask file {str(path)!r} is not a readable .npz mask ({err})") from None
    return mask_from_arrays(arrays, params)


def best_ticket(records: list[dict[str, Any]], tolerance: float = 0.005) -> dict[str, Any] | None:
    """The sparsest level whose early-stop test accuracy is within `tolerance` (0.5 points) of level 0's."""
    if not records:
        return None
    dense = records[0]["early_stop_test_accuracy"]
    matching = [r for r in records if r["early_stop_test_accuracy"] >= dense - tolerance]
    return min(matching, key=lambda r: r["density"]) if matching else None


def list_runs(root: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Every run directory under the root: name, levels done / planned, best ticket, path."""
    rows = []
    base = runs_root(root)
    for config_path in sorted(base.glob("*/config.json")):
        try:
            config = json.loads(config_path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        path = config_path.parent
        try:
            records = json.loads((path / "results.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            records = []
        rows.append(
            {
                "name": path.name,
                "levels_done": len(records),
                "levels_planned": int(config.get("levels", 0)) + 1,
                "best_ticket": best_ticket(records),
                "path": str(path),
            }
        )
    return rows
