"""The common path of the file-based datasets: fetch, parse, hold out validation, normalise, cache.

Each dataset lives in ``<data dir>/<name>/``: its raw files (downloaded if missing, see
`lth.data.download`) and one `.npz` cache per validation size, so only the first load parses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from lth.data.dataset import Dataset, load_npz, save_npz_atomic, split_holdout
from lth.data.download import fetch
from lth.errors import ConfigError, DataError

SPLIT_SEED = 0  # the validation split is fixed, independent of the experiment seed
CACHE_VERSION = 1  # bump when the parsing or normalisation changes
_KEYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")

# (files {name: path}) -> (x_train, y_train, x_test, y_test): uint8 NHWC images, integer labels
Parser = Callable[[dict[str, Path]], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]


def normalise(x_NHWC: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 pixels -> float32 (x / 255 - mean) / std, per channel."""
    out = x_NHWC.astype(np.float32, order="C")  # in place from here: no full-size temporaries
    out /= np.float32(255)
    out -= np.asarray(mean, np.float32)
    out /= np.asarray(std, np.float32)
    return out


def file_dataset(
    name: str,
    root: Path,
    validation_size: int | None,
    *,
    parse: Parser,
    default_validation: int,
    mean: Sequence[float],
    std: Sequence[float],
    num_classes: int,
    augmentation: str = "none",
) -> Dataset:
    """Load `name` from its cache, else from its (verified, downloaded if missing) files via `parse`."""
    val = default_validation if validation_size is None else validation_size
    folder = root / name
    cache = folder / f"{name}-v{CACHE_VERSION}-val{val}.npz"
    arrays = load_npz(cache)
    if arrays is None or any(k not in arrays for k in _KEYS):
        x, y, x_test, y_test = parse(fetch(name, folder))
        for labels in (y, y_test):
            if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < num_classes:
                raise DataError(f"{folder}: labels outside 0..{num_classes - 1} in the files of {name}: "
                                f"delete them (they are then downloaded again)")
        if val >= len(y):
            raise ConfigError(f"validation size {val} leaves no training examples of the {len(y)} in {name}: "
                              f"use a validation size below {len(y)}")
        x_train, y_train, x_val, y_val = split_holdout(x, y.astype(np.int32), val, SPLIT_SEED)
        arrays = dict(
            x_train=normalise(x_train, mean, std), y_train=y_train,
            x_val=normalise(x_val, mean, std), y_val=y_val,
            x_test=normalise(x_test, mean, std), y_test=y_test.astype(np.int32),
        )
        save_npz_atomic(cache, **arrays)
    return Dataset(name, *(arrays[k] for k in _KEYS), num_classes=num_classes, augmentation=augmentation)
