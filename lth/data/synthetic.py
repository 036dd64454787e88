"""Small synthetic image datasets for smoke tests of the big models: no files, a fixed seed, learnable.

Each class has a fixed template (MNIST-shaped: a random 28 x 28 pattern; CIFAR-shaped: a random
colour, which survives crops and flips); an image is its class's template plus Gaussian pixel noise,
clipped to [0, 1] and normalised with the real dataset's statistics. 512 train / 128 validation /
128 test by default.

`random_mnist` is for timing, not learning: MNIST's shapes and sizes (60,000 training and 10,000
test images, no validation split by default, as OpenLTH's MNIST), uniform random pixels and labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lth.data.cifar import CIFAR10_MEAN, CIFAR10_STD
from lth.data.dataset import Dataset, split_holdout
from lth.data.idx import MNIST_MEAN, MNIST_STD
from lth.errors import ConfigError

SEED = 0
NUM_CLASSES = 10
N_TRAIN, N_VAL, N_TEST = 512, 128, 128
NOISE = 0.35  # pixel noise std, in [0, 1] pixel units


def synthetic_images(
    shape: tuple[int, int, int], n: int, seed: int, colour_only: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(float32 images in [0, 1], int32 labels): class template + noise; same seed, same arrays."""
    rng = np.random.default_rng(seed)
    h, w, c = shape
    templates_KxHxWxC = rng.uniform(0.1, 0.9, (NUM_CLASSES, 1, 1, c) if colour_only else (NUM_CLASSES, h, w, c))
    y = rng.integers(0, NUM_CLASSES, n).astype(np.int32)
    x = np.broadcast_to(templates_KxHxWxC[y], (n, h, w, c)) + rng.normal(0.0, NOISE, (n, h, w, c))
    return np.clip(x, 0.0, 1.0).astype(np.float32), y


def _synthetic(
    name: str,
    shape: tuple[int, int, int],
    validation_size: int | None,
    mean: Sequence[float],
    std: Sequence[float],
    augmentation: str,
) -> Dataset:
    val = N_VAL if validation_size is None else validation_size
    pool = N_TRAIN + N_VAL
    if val >= pool:
        raise ConfigError(f"validation size {val} leaves no training examples of the {pool} in {name}: "
                          f"use a validation size below {pool}")
    colour_only = augmentation == "crop_flip"
    x, y = synthetic_images(shape, pool + N_TEST, SEED, colour_only)
    mean_C, std_C = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    x = (x - mean_C) / std_C
    x_train, y_train, x_val, y_val = split_holdout(x[:pool], y[:pool], val, SEED)
    return Dataset(name, x_train, y_train, x_val, y_val, x[pool:], y[pool:], num_classes=NUM_CLASSES,
                   augmentation=augmentation)


def synthetic_mnist(root: Path, validation_size: int | None = None) -> Dataset:
    """28 x 28 x 1, 10 classes, no augmentation; `root` is unused (nothing is written)."""
    return _synthetic("synthetic_mnist", (28, 28, 1), validation_size, (MNIST_MEAN,), (MNIST_STD,), "none")


def synthetic_cifar10(root: Path, validation_size: int | None = None) -> Dataset:
    """32 x 32 x 3, 10 classes, crop + flip augmentation; `root` is unused (nothing is written)."""
    return _synthetic("synthetic_cifar10", (32, 32, 3), validation_size, CIFAR10_MEAN, CIFAR10_STD, "crop_flip")


RANDOM_MNIST_TRAIN, RANDOM_MNIST_TEST = 60_000, 10_000


def random_mnist(root: Path, validation_size: int | None = None) -> Dataset:
    """MNIST-sized random data (benchmarks: e.g. OpenLTH's setup without a download); `validation_size`
    (default 0) is held out of the 60,000 training images; `root` is unused."""
    val = 0 if validation_size is None else validation_size
    if val >= RANDOM_MNIST_TRAIN:
        raise ConfigError(f"validation size {val} leaves no training examples of the {RANDOM_MNIST_TRAIN} in "
                          f"random_mnist: use a validation size below {RANDOM_MNIST_TRAIN}")
    rng = np.random.default_rng(SEED)
    n = RANDOM_MNIST_TRAIN + RANDOM_MNIST_TEST
    x = rng.random((n, 28, 28, 1), dtype=np.float32)
    x -= np.float32(MNIST_MEAN)
    x /= np.float32(MNIST_STD)
    y = rng.integers(0, NUM_CLASSES, n).astype(np.int32)
    pool = RANDOM_MNIST_TRAIN
    if val:
        x_train, y_train, x_val, y_val = split_holdout(x[:pool], y[:pool], val, SEED)
    else:  # no copy of the 188 MB of training images
        x_train, y_train, x_val, y_val = x[:pool], y[:pool], x[:0], y[:0]
    return Dataset("random_mnist", x_train, y_train, x_val, y_val, x[pool:], y[pool:], num_classes=NUM_CLASSES)
