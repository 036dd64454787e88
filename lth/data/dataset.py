"""The in-memory dataset record, deterministic splits and the `.npz` cache."""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lth.errors import DataError
from lth.spec.files import replacing


@dataclass(frozen=True)
class Dataset:
    """Train / validation / test arrays on the host: float32 inputs, int32 labels."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    augmentation: str = "none"  # "none" | "crop_flip" (random 4-pixel-padded crop + horizontal flip)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "validation": len(self.y_val), "test": len(self.y_test)}


def data_dir(override: str | os.PathLike | None = None) -> Path:
    """Where datasets are cached: the argument, else $LTH_DATA, else ~/.cache/lth. A one-line
    DataError if that (or the nearest existing folder above it) is not a directory."""
    if override is not None and str(override).strip():
        path = Path(override)
    elif os.environ.get("LTH_DATA"):
        path = Path(os.environ["LTH_DATA"])
    else:
        path = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lth"
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise DataError(f"the data directory {path} is not usable: {existing} is not a directory "
                        "(choose --data-dir DIR or $LTH_DATA)")
    return path


def split_holdout(x: np.ndarray, y: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, ...]:
    """Hold `size` examples out of (x, y) by a fixed-seed permutation: (x_rest, y_rest, x_out, y_out)."""
    order = np.random.default_rng(seed).permutation(len(y))
    out, rest = order[:size], order[size:]
    return x[rest], y[rest], x[out], y[out]


def save_npz_atomic(path: Path, **arrays: np.ndarray) -> None:
    """Write an .npz so that a crash never leaves a partial file under `path` (mode: as the umask gives)."""
    with replacing(path) as f:
        np.savez(f, **arrays)


def load_npz(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of a cache file, or None if it is missing or unreadable (then it is rebuilt)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
        return None
