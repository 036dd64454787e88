"""OpenLTH's dataset modifiers, on the training split only: train on a fixed random subset, and
replace a fixed random fraction of the training labels with uniformly random ones (label noise, as
sparse double descent needs). Both are functions of `seed` (the config's `data.transformation_seed`)
alone, so every replicate and level sees the same modified data, and they are part of the run's hash.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from lth.data.dataset import Dataset


def subsample(ds: Dataset, fraction: float, seed: int) -> Dataset:
    """The dataset with ``ceil(fraction * n)`` training examples (OpenLTH's count), chosen by a
    seeded permutation and kept in their original order."""
    if fraction >= 1.0:
        return ds
    n = len(ds.y_train)
    keep = np.sort(np.random.default_rng([seed, 1]).permutation(n)[: math.ceil(fraction * n)])
    return dataclasses.replace(ds, x_train=ds.x_train[keep], y_train=ds.y_train[keep])


def randomize_labels(ds: Dataset, fraction: float, seed: int) -> Dataset:
    """The dataset with ``ceil(fraction * n)`` training labels (chosen by a seeded permutation)
    replaced by labels drawn uniformly from all classes (a drawn label may equal the true one, as in
    OpenLTH)."""
    if fraction <= 0.0:
        return ds
    rng = np.random.default_rng([seed, 2])
    n = len(ds.y_train)
    chosen = rng.permutation(n)[: math.ceil(fraction * n)]
    labels = ds.y_train.copy()
    labels[chosen] = rng.integers(0, ds.num_classes, size=chosen.size, dtype=labels.dtype)
    return dataclasses.replace(ds, y_train=labels)


def modify(ds: Dataset, random_labels_fraction: float = 0.0, subsample_fraction: float = 1.0,
           seed: int = 0) -> Dataset:
    """Randomise labels first, then subsample (OpenLTH's order: the noisy fraction is of the whole
    training set)."""
    return subsample(randomize_labels(ds, random_labels_fraction, seed), subsample_fraction, seed)
