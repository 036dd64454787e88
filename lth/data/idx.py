"""MNIST and Fashion-MNIST from their gzipped IDX files (LeCun et al.; Xiao et al., 2017).

60,000 train (5,000 held out for validation, as Frankle & Carbin) / 10,000 test, 28 x 28 x 1.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from lth.data.dataset import Dataset
from lth.data.files import file_dataset
from lth.errors import DataError

IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049  # 0x00000803: ubyte, 3 dims; 0x00000801: ubyte, 1 dim
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
FASHION_MEAN, FASHION_STD = 0.2860, 0.3530
VALIDATION_SIZE = 5000


def read_idx(path: Path, magic: int) -> np.ndarray:
    """The uint8 array of a gzipped IDX file whose magic number must be `magic`."""
    fix = f"delete {path} (it is then downloaded again)"
    try:
        data = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path} is not a gzip file ({err}): {fix}") from None
    if len(data) < 4 or int.from_bytes(data[:4], "big") != magic:
        found = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
        raise DataError(f"{path} is not an IDX file with magic number {magic} (found {found}): {fix}")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if len(data) != header + int(np.prod(shape)):
        raise DataError(f"{path} holds {len(data) - header} bytes of data, its header says {shape}: {fix}")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def _parse(files: dict[str, Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    out = []
    for split in ("train", "t10k"):
        images = read_idx(files[f"{split}-images-idx3-ubyte.gz"], IMAGES_MAGIC)
        labels = read_idx(files[f"{split}-labels-idx1-ubyte.gz"], LABELS_MAGIC)
        if images.shape[1:] != (28, 28) or len(images) != len(labels):
            folder = files[f"{split}-images-idx3-ubyte.gz"].parent
            raise DataError(f"{folder}: {split} images {images.shape} and labels {labels.shape} are not 28 x 28 images "
                            f"with one label each: delete the {split}-* files there (they are then downloaded again)")
        out += [images[..., None], labels]
    return tuple(out)


def mnist(root: Path, validation_size: int | None = None) -> Dataset:
    """MNIST: 55,000 train / 5,000 validation (held out of train) / 10,000 test, normalised as OpenLTH."""
    return file_dataset("mnist", root, validation_size, parse=_parse, default_validation=VALIDATION_SIZE,
                        mean=(MNIST_MEAN,), std=(MNIST_STD,), num_classes=10)


def fashion_mnist(root: Path, validation_size: int | None = None) -> Dataset:
    """Fashion-MNIST: 55,000 train / 5,000 validation (held out of train) / 10,000 test."""
    return file_dataset("fashion_mnist", root, validation_size, parse=_parse, default_validation=VALIDATION_SIZE,
                        mean=(FASHION_MEAN,), std=(FASHION_STD,), num_classes=10)
