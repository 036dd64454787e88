"""Datasets by name: `load_dataset(name)` returns a host-side `Dataset`; `lth.data.device` puts it on device."""

from __future__ import annotations

import os

from lth.data.cifar import cifar10, cifar100
from lth.data.dataset import Dataset, data_dir
from lth.data.embedded import mnist1d, mnist5k
from lth.data.idx import fashion_mnist, mnist
from lth.data.modifiers import modify
from lth.data.modular import modular_addition
from lth.data.synthetic import random_mnist, synthetic_cifar10, synthetic_mnist
from lth.spec.checks import check_dataset_name
from lth.errors import ConfigError

_REGISTRY = {
    "mnist5k": mnist5k,
    "mnist1d": mnist1d,
    "mnist": mnist,
    "fashion_mnist": fashion_mnist,
    "cifar10": cifar10,
    "cifar100": cifar100,
    "synthetic_mnist": synthetic_mnist,
    "synthetic_cifar10": synthetic_cifar10,
    "random_mnist": random_mnist,
    "modular_addition": modular_addition,
}


def dataset_names() -> list[str]:
    return sorted(_REGISTRY)


def load_dataset(name: str, validation_size: int | None = None, root: str | os.PathLike | None = None, *,
                 random_labels_fraction: float = 0.0, subsample_fraction: float = 1.0,
                 transformation_seed: int = 0) -> Dataset:
    """Load (building and caching on first use) a registered dataset; `validation_size` 0: no
    validation set. The modifiers (`lth.data.modifiers`) change the training split only."""
    check_dataset_name(name)
    if validation_size is not None and validation_size < 0:
        raise ConfigError(f"validation size must be >= 0 (0: no validation set), got {validation_size}")
    ds = _REGISTRY[name](data_dir(root), validation_size)
    return modify(ds, random_labels_fraction, subsample_fraction, transformation_seed)


__all__ = ["Dataset", "check_dataset_name", "data_dir", "dataset_names", "load_dataset"]
