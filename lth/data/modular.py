"""Modular addition, generated: the grokking task of Minegishi, Iwasawa & Matsuo (2023, "Grokking
Tickets", arXiv 2310.19470), after Power et al. (2022).

Every unordered pair a <= b of residues mod p is one example, labelled (a + b) mod p: the reference
code (gouki510/Grokking-Tickets, data_module.py `gen_train_test` with `is_symmetric_input=True`, as
every config of it sets) enumerates the same p (p + 1) / 2 pairs (2,278 for p = 67), shuffles them
and trains on the first 40 % (`frac_train = 0.4`: 911 pairs), testing on the other 1,367. The
shuffle here is NumPy's with a fixed seed (`SPLIT_SEED`), so every replicate sees the same split;
the reference seeds Python's `random` with the run's seed, a different split per seed.

An example's input is the sum of the one-hot vectors of a and b, float32 of shape (p,) (a 2 where
a = b): the reference embeds a and b, projects each by the same matrix and sums the two (`OnlyMLP`),
and as both maps are linear that equals embedding and projecting the sum of the one-hots, i.e. a
bias-free Dense layer on this input (`lth.models.modular`). So the model is a plain stack of dense
layers (compaction and structured pruning read it), and its embedding is a `kernel` that the default
pruning rule covers. There is no validation split by default (the reference has none);
`validation_size` holds that many pairs out of the training ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lth.data.dataset import Dataset, split_holdout
from lth.errors import ConfigError

MODULUS = 67
TRAIN_FRACTION = 0.4
SPLIT_SEED = 0


def modular_pairs(p: int) -> tuple[np.ndarray, np.ndarray]:
    """(pairs_Nx2 int32, labels_N int32): every a <= b < p, row-major, labelled (a + b) mod p."""
    a, b = np.triu_indices(p)
    pairs = np.stack([a, b], axis=1).astype(np.int32)
    return pairs, ((a + b) % p).astype(np.int32)


def two_hot(pairs_Nx2: np.ndarray, p: int) -> np.ndarray:
    """float32 (N, p): one-hot of a plus one-hot of b (2.0 at a when a = b)."""
    eye = np.eye(p, dtype=np.float32)
    return eye[pairs_Nx2[:, 0]] + eye[pairs_Nx2[:, 1]]


def modular_split(p: int, train_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, test indices) into `modular_pairs(p)`: a fixed-seed permutation, the first
    floor(train_fraction * N) for training (the reference's `int(frac_train * len(pairs))`)."""
    n = p * (p + 1) // 2
    order = np.random.default_rng(seed).permutation(n)
    cut = int(train_fraction * n)
    return order[:cut], order[cut:]


def modular_addition(root: Path, validation_size: int | None = None, p: int = MODULUS,
                     train_fraction: float = TRAIN_FRACTION) -> Dataset:
    """(a + b) mod p on the unordered pairs, 40 % train / 60 % test, no validation split by default;
    `root` is unused (nothing is written: building it takes milliseconds)."""
    pairs, labels = modular_pairs(p)
    train, test = modular_split(p, train_fraction, SPLIT_SEED)
    val = 0 if validation_size is None else validation_size
    if val >= len(train):
        raise ConfigError(f"validation size {val} leaves no training pairs of the {len(train)} in modular_addition: "
                          f"use a validation size below {len(train)}")
    x = two_hot(pairs, p)
    x_train, y_train, x_val, y_val = x[train], labels[train], x[train][:0], labels[train][:0]
    if val:
        x_train, y_train, x_val, y_val = split_holdout(x_train, y_train, val, SPLIT_SEED + 1)
    return Dataset("modular_addition", x_train, y_train, x_val, y_val, x[test], labels[test], num_classes=p)
