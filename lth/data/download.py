"""The raw files of the file-based datasets: mirrors, SHA-256 checksums, verified atomic downloads.

`fetch(dataset, folder)` returns the dataset's files in `folder`, downloading the missing ones from
`MIRRORS[dataset]` (tried in order) through pooch (`pooch.retrieve`: the download goes to a
temporary file in `folder`, is checked against `CHECKSUMS[dataset]` and only then renamed; a file
already there is the cache). A file already present is checked here first and refused, not
replaced, if its checksum is wrong. Offline or failing: one line naming the files and the folder.
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

import pooch

from lth.errors import DataError

CONNECT_TIMEOUT = 10.0  # seconds to connect to a mirror (a refused connection fails at once)
READ_TIMEOUT = 60.0  # seconds without a byte from a connected mirror
_CHUNK = 1 << 20

# Base URLs: a file's URL is the base followed by its name.
MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",  # torchvision's mirror
        "https://storage.googleapis.com/cvdf-datasets/mnist/",  # tensorflow_datasets' mirror
    ),
    "fashion_mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",  # Zalando's bucket (HTTP only)
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
    "cifar10": ("https://www.cs.toronto.edu/~kriz/",),
    "cifar100": ("https://www.cs.toronto.edu/~kriz/",),
}

# SHA-256 of every file, {dataset: {file name: hex digest}}. Sources (github.com/tensorflow/datasets):
#   mnist          tensorflow_datasets/url_checksums/mnist.txt (commit 31f1255e57e5), the cvdf-datasets files
#   fashion_mnist  tensorflow_datasets/url_checksums/fashion_mnist.txt (commit 333639b37af6), Zalando's bucket
#   cifar10        tensorflow_datasets/url_checksums/cifar10.csv (commit 2740d30f03c8), cifar-10-python.tar.gz
#   cifar100       tensorflow_datasets/url_checksums/cifar100.csv (commit 2740d30f03c8), cifar-100-python.tar.gz
CHECKSUMS: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
    "cifar10": {
        "cifar-10-python.tar.gz": "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    },
    "cifar100": {
        "cifar-100-python.tar.gz": "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
    },
}


class ChecksumError(ValueError):
    """Downloaded bytes whose SHA-256 is not the expected one (the file was deleted)."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def one_line(err: BaseException) -> str:
    """An exception's message on one line (for DataError messages)."""
    return " ".join(str(err).split()) or type(err).__name__


# the cause inside requests' nested messages ("HTTPConnectionPool(...): Max retries exceeded ... [Errno 111] ...")
_CAUSES = (r"\[Errno -?\d+\][^'\")]*", r"Read timed out\.?(?: \(read timeout=[\d.]+\))?", r"Connection broken: [^'\"]+")


def failure(err: BaseException) -> str:
    """Why a download failed, in a few words."""
    text = one_line(err)
    for pattern in _CAUSES:
        found = re.search(pattern, text)
        if found:
            return found.group(0).strip()
    return text


def download(url: str, dest: Path, sha256: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Download `url` to `dest` with pooch: through a temporary file beside it, renamed only if its
    SHA-256 matches (a bar on stderr when it is a terminal).

    Raises ChecksumError, or the OSError (requests' errors are OSErrors) of the transfer; `dest` is
    then untouched and no temporary file remains.
    """
    downloader = pooch.HTTPDownloader(timeout=(timeout, READ_TIMEOUT), progressbar=sys.stderr.isatty())
    try:
        pooch.retrieve(url, known_hash=f"sha256:{sha256}", fname=dest.name, path=dest.parent, downloader=downloader)
    except ValueError as err:  # pooch: the hash does not match (the temporary file is deleted), or a bad URL
        if "hash" not in str(err):
            raise
        raise ChecksumError(f"its SHA-256 is not the expected {sha256} (deleted)") from None


def fetch(dataset: str, folder: Path) -> dict[str, Path]:
    """The verified files of `dataset` in `folder` ({name: path}), downloading the missing ones.

    A present file with the wrong checksum, or a missing one that no mirror delivers intact, raises a
    one-line DataError that says where to put the file.
    """
    checksums, mirrors = CHECKSUMS[dataset], MIRRORS[dataset]
    paths = {name: folder / name for name in checksums}
    missing = [name for name, path in paths.items() if not path.exists()]
    for name, path in paths.items():
        if name in missing:
            continue
        try:
            actual = sha256_file(path)
        except OSError as err:
            raise DataError(f"dataset {dataset}: cannot read {path} ({one_line(err)}): "
                            f"delete it (it is then downloaded again) or make it readable") from None
        if actual != checksums[name]:
            raise DataError(
                f"dataset {dataset}: {path} has SHA-256 {actual}, expected {checksums[name]}: it is damaged or not the "
                f"original file; delete it (it is then downloaded again) or replace it with the original"
            )
    if missing:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise DataError(f"dataset {dataset}: cannot create {folder} ({one_line(err)}): "
                            f"set $LTH_DATA or --data-dir to a writable directory") from None
    for i, name in enumerate(missing):
        failures = []
        for base in mirrors:
            url = base + name
            try:
                download(url, paths[name], checksums[name])
                break
            except (OSError, ValueError) as err:  # connection errors, timeouts, HTTP errors, checksum
                failures.append(f"{url}: {failure(err)}")
        else:
            raise DataError(
                f"dataset {dataset} needs {', '.join(missing[i:])} in {folder}, and downloading them failed "
                f"({'; '.join(failures)}): put the files there (from any of {', '.join(mirrors)}) and run again"
            )
    return paths
