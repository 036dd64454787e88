"""CIFAR-10 and CIFAR-100 from the python-version tarballs (Krizhevsky, 2009), read without extracting.

50,000 train (5,000 held out for validation) / 10,000 test, 32 x 32 x 3; CIFAR-100 uses the 100 fine
labels. The batches are Python 2 pickles: they are read only from a tarball whose SHA-256 matched, and
through `CifarUnpickler`, which admits nothing but the numpy calls that rebuild CIFAR's arrays.
"""

from __future__ import annotations

import io
import pickle
import tarfile
import zlib
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from numpy._core.multiarray import _reconstruct

from lth.data.dataset import Dataset
from lth.data.download import one_line
from lth.data.files import file_dataset
from lth.errors import DataError

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
VALIDATION_SIZE = 5000


def _plain_dtype(spec: Any, align: bool = False, copy: bool = False) -> np.dtype:
    """`numpy.dtype` as a pickle may call it, refusing dtypes that hold Python objects."""
    dtype = np.dtype(spec, align, copy)
    if dtype.hasobject:
        raise pickle.UnpicklingError(f"refusing the object dtype {dtype}")
    return dtype


# What a CIFAR batch references: numpy arrays, pickled by numpy 1 (numpy.core) or 2 (numpy._core).
# Dicts, lists, strings, bytes and numbers need no lookup.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _plain_dtype,
}


class CifarUnpickler(pickle.Unpickler):
    """An unpickler for CIFAR batches: numpy arrays and builtin containers only, every other global refused."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}, which no CIFAR batch contains") from None


def load_batch(data: bytes) -> Any:
    """Unpickle one CIFAR batch; Python 2 `str` (keys and raw array bytes) comes back as `bytes`."""
    return CifarUnpickler(io.BytesIO(data), encoding="bytes").load()


def read_batches(tarball: Path, prefix: str, names: Sequence[str]) -> dict[str, Any]:
    """The unpickled members `<prefix>/<name>` of `tarball`, read in one pass without extracting.

    Refuses member paths outside `prefix/` (absolute, `..` or another folder) and non-file members.
    """
    fix = f"delete {tarball} (it is then downloaded again)"
    wanted = {f"{prefix}/{name}": name for name in names}
    batches: dict[str, Any] = {}
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            for member in tar:
                path = PurePosixPath(member.name)  # drops "./" and repeated slashes
                if path.is_absolute() or ".." in path.parts or path.parts[:1] != (prefix,):
                    raise DataError(f"{tarball} has the unexpected member {member.name!r} (not under {prefix}/): {fix}")
                if path.as_posix() not in wanted:
                    continue
                if not member.isfile():
                    raise DataError(f"{tarball}: member {member.name} is not a regular file: {fix}")
                data = tar.extractfile(member).read()
                try:
                    batches[wanted[path.as_posix()]] = load_batch(data)
                except Exception as err:  # any unpickling failure, a refused global included
                    raise DataError(
                        f"{tarball}: member {member.name} is not a CIFAR batch ({one_line(err)}): {fix}"
                    ) from None
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise DataError(f"{tarball} cannot be read as a .tar.gz ({one_line(err)}): {fix}") from None
    missing = [member for member, name in wanted.items() if name not in batches]
    if missing:
        raise DataError(f"{tarball} lacks {', '.join(missing)}: {fix}")
    return batches


def batch_arrays(batch: Any, label_key: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images NHWC, int64 labels) of an unpickled batch: b"data" is N x 3072, the R, G, B planes
    of each image one after the other, each plane row-major 32 x 32."""
    data = batch.get(b"data") if isinstance(batch, dict) else None
    labels = batch.get(label_key) if isinstance(batch, dict) else None
    y = np.asarray(labels) if isinstance(labels, list | np.ndarray) else np.zeros(0, np.float32)
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072
            and y.ndim == 1 and y.dtype.kind in "iu" and len(y) == len(data)):
        raise DataError(f"{where} is not a CIFAR batch (b'data': uint8 N x 3072, {label_key!r}: N integers): "
                        f"delete the tarball (it is then downloaded again)")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), y.astype(np.int64)


def _parser(tarball_name: str, prefix: str, train: Sequence[str], test: str, label_key: bytes):
    def parse(files: dict[str, Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        tarball = files[tarball_name]
        batches = read_batches(tarball, prefix, [*train, test])
        parts = {name: batch_arrays(batch, label_key, f"{tarball}: {prefix}/{name}") for name, batch in batches.items()}
        x = np.concatenate([parts[name][0] for name in train])
        y = np.concatenate([parts[name][1] for name in train])
        return x, y, *parts[test]

    return parse


_parse_cifar10 = _parser("cifar-10-python.tar.gz", "cifar-10-batches-py",
                         [f"data_batch_{i}" for i in range(1, 6)], "test_batch", b"labels")
_parse_cifar100 = _parser("cifar-100-python.tar.gz", "cifar-100-python", ["train"], "test", b"fine_labels")


def cifar10(root: Path, validation_size: int | None = None) -> Dataset:
    """CIFAR-10: 45,000 train / 5,000 validation (held out of train) / 10,000 test, crop + flip augmentation."""
    return file_dataset("cifar10", root, validation_size, parse=_parse_cifar10, default_validation=VALIDATION_SIZE,
                        mean=CIFAR10_MEAN, std=CIFAR10_STD, num_classes=10, augmentation="crop_flip")


def cifar100(root: Path, validation_size: int | None = None) -> Dataset:
    """CIFAR-100 (fine labels): 45,000 train / 5,000 validation / 10,000 test, crop + flip augmentation."""
    return file_dataset("cifar100", root, validation_size, parse=_parse_cifar100, default_validation=VALIDATION_SIZE,
                        mean=CIFAR100_MEAN, std=CIFAR100_STD, num_classes=100, augmentation="crop_flip")
