"""File-based datasets (MNIST, Fashion-MNIST, CIFAR-10/100) on tiny files in the real on-disk formats:
parsing, channel order, splits, the cache, verified atomic downloads through pooch from a real HTTP
server on 127.0.0.1, offline errors, the restricted unpickler; and the synthetic datasets."""

import gzip
import hashlib
import http.server
import io
import json
import os
import pickle
import signal
import struct
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lth.data import download, load_dataset
from lth.data.cifar import load_batch
from lth.errors import ConfigError, DataError

MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
CLOSED_PORT = "http://127.0.0.1:9/"  # the discard port: nothing listens, the connection is refused at once


# --------------------------------------------------------------------------- tiny files in the real formats


def idx_gz(array: np.ndarray) -> bytes:
    """A gzipped IDX file of a uint8 array: magic 0x0000 08 <ndim> (2051 for images, 2049 for labels), dims."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def write_mnist(folder: Path, n_train: int = 40, n_test: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    """The four IDX files; test image k is black except pixel (k, 2k) = 255."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_x": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_y": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_x": np.zeros((n_test, 28, 28), np.uint8),
        "test_y": (np.arange(n_test) % 10).astype(np.uint8),
    }
    for k in range(n_test):
        arrays["test_x"][k, k, 2 * k] = 255
    folder.mkdir(parents=True, exist_ok=True)
    for name, key in zip(MNIST_FILES, ("train_x", "train_y", "test_x", "test_y")):
        (folder / name).write_bytes(idx_gz(arrays[key]))
    return arrays


def _py2_str(b: bytes) -> bytes:  # SHORT_BINSTRING / BINSTRING: a Python 2 str
    return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<I", len(b)) + b


def _py2_int(v: int) -> bytes:  # BININT
    return b"J" + struct.pack("<i", v)


def _py2_array(a: np.ndarray) -> bytes:
    """A uint8 array as numpy under Python 2 pickled it: _reconstruct(ndarray, (0,), 'b') then BUILD."""
    assert a.dtype == np.uint8
    shape = b"(" + b"".join(_py2_int(d) for d in a.shape) + b"t"
    dtype = (b"cnumpy\ndtype\n" + _py2_str(b"u1") + b"K\x00K\x01\x87R"
             + b"(K\x03" + _py2_str(b"|") + b"NNN" + _py2_int(-1) + _py2_int(-1) + b"K\x00tb")
    return (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + _py2_str(b"b") + b"\x87R"
            + b"(K\x01" + shape + dtype + b"\x89" + _py2_str(a.tobytes()) + b"tb")


def py2_pickle(d: dict) -> bytes:
    """A dict {bytes: uint8 array | list of int or bytes | int | bytes} as Python 2's cPickle (protocol 2) wrote
    CIFAR's batches: str keys and values, numpy arrays through numpy.core.multiarray._reconstruct."""
    out = bytearray(b"\x80\x02}(")
    for key, value in d.items():
        out += _py2_str(key)
        if isinstance(value, np.ndarray):
            out += _py2_array(value)
        elif isinstance(value, list):
            out += b"](" + b"".join(_py2_int(v) if isinstance(v, int) else _py2_str(v) for v in value) + b"e"
        elif isinstance(value, int):
            out += _py2_int(value)
        else:
            out += _py2_str(value)
    return bytes(out + b"u.")


def pattern_image() -> np.ndarray:
    """One CIFAR row (3072 bytes: R plane, G plane, B plane, each row-major 32 x 32): R=255 at (1, 2),
    G=255 at (3, 4), B=255 at (5, 6), black elsewhere."""
    planes = np.zeros((3, 32, 32), np.uint8)
    planes[0, 1, 2] = planes[1, 3, 4] = planes[2, 5, 6] = 255
    return planes.reshape(3072)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_cifar(folder: Path, kind: str, n_train: int = 30, n_test: int = 6, seed: int = 0,
                members: dict[str, bytes] | None = None) -> dict[str, np.ndarray]:
    """cifar-10-python.tar.gz (5 data batches + test_batch + batches.meta) or cifar-100-python.tar.gz
    (train + test + meta); test image 0 is `pattern_image()`. `members` replaces / adds members."""
    rng = np.random.default_rng(seed)
    classes = 10 if kind == "cifar10" else 100
    x_train = rng.integers(0, 256, (n_train, 3072), dtype=np.uint8)
    y_train = rng.integers(0, classes, n_train)
    x_test = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    x_test[0] = pattern_image()
    y_test = rng.integers(0, classes, n_test)
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "cifar10":
        prefix, tarball = "cifar-10-batches-py", "cifar-10-python.tar.gz"
        content = {f"{prefix}/data_batch_{i + 1}": py2_pickle({
            b"batch_label": f"training batch {i + 1} of 5".encode(), b"labels": y[:].tolist(), b"data": x,
            b"filenames": [b"img%d.png" % j for j in range(len(y))]})
            for i, (x, y) in enumerate(zip(np.array_split(x_train, 5), np.array_split(y_train, 5)))}
        content[f"{prefix}/test_batch"] = py2_pickle({b"batch_label": b"testing batch 1 of 1",
                                                      b"labels": y_test.tolist(), b"data": x_test})
        content[f"{prefix}/batches.meta"] = py2_pickle({b"label_names": [b"airplane"] * 10, b"num_vis": 3072})
        content[f"{prefix}/readme.html"] = b"<html></html>"
    else:
        prefix, tarball = "cifar-100-python", "cifar-100-python.tar.gz"
        content = {f"{prefix}/{split}": py2_pickle({b"batch_label": split.encode(), b"fine_labels": y.tolist(),
                                                    b"coarse_labels": (y // 5).tolist(), b"data": x})
                   for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test))}
        content[f"{prefix}/meta"] = py2_pickle({b"fine_label_names": [b"apple"] * 100})
    content.update(members or {})
    with tarfile.open(folder / tarball, "w:gz") as tar:
        dir_info = tarfile.TarInfo(prefix)
        dir_info.type = tarfile.DIRTYPE
        tar.addfile(dir_info)
        for name, data in content.items():
            _add(tar, name, data)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def trust(monkeypatch):
    """trust(dataset, folder): make the checksum table expect the tiny files in `folder`; no real mirror."""

    def register(dataset: str, folder: Path) -> None:
        monkeypatch.setitem(download.CHECKSUMS, dataset, {p.name: sha256(p) for p in sorted(folder.iterdir())})
        monkeypatch.setitem(download.MIRRORS, dataset, (CLOSED_PORT,))

    return register


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- parsing, normalisation, splits


@pytest.mark.parametrize("name, mean, std", [("mnist", 0.1307, 0.3081), ("fashion_mnist", 0.2860, 0.3530)])
def test_idx_datasets(tmp_path, trust, name, mean, std):
    raw = write_mnist(tmp_path / name)
    trust(name, tmp_path / name)
    ds = load_dataset(name, validation_size=8, root=tmp_path)
    assert ds.name == name and ds.num_classes == 10 and ds.augmentation == "none"
    assert ds.sizes() == {"train": 32, "validation": 8, "test": 10}
    assert ds.input_shape == (28, 28, 1)
    assert ds.x_train.dtype == ds.x_val.dtype == ds.x_test.dtype == np.float32
    assert ds.y_train.dtype == ds.y_val.dtype == ds.y_test.dtype == np.int32
    # the test set keeps the file's order: image k is black except (k, 2k)
    np.testing.assert_array_equal(ds.y_test, raw["test_y"])
    black, white = -mean / std, (1 - mean) / std
    for k in range(10):
        assert ds.x_test[k, k, 2 * k, 0] == pytest.approx(white, rel=1e-6)
        assert np.count_nonzero(~np.isclose(ds.x_test[k], black, rtol=1e-6)) == 1
    # train and validation partition the training file, with their labels
    expected = (raw["train_x"].astype(np.float32) / 255 - mean) / std
    got = np.concatenate([ds.x_train, ds.x_val])[..., 0]
    key = lambda x: sorted(a.tobytes() for a in x)  # noqa: E731
    assert key(got) == key(expected.astype(np.float32))
    assert not {a.tobytes() for a in ds.x_train} & {a.tobytes() for a in ds.x_val}
    by_image = {a.tobytes(): int(y) for a, y in zip(expected.astype(np.float32), raw["train_y"])}
    assert [by_image[a[..., 0].tobytes()] for a in ds.x_val] == ds.y_val.tolist()


def test_split_is_deterministic_and_cached(tmp_path, trust):
    for root in ("a", "b"):
        write_mnist(tmp_path / root / "mnist")
    trust("mnist", tmp_path / "a" / "mnist")
    a = load_dataset("mnist", validation_size=8, root=tmp_path / "a")
    b = load_dataset("mnist", validation_size=8, root=tmp_path / "b")  # parsed again from its own files
    for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    assert list((tmp_path / "a" / "mnist").glob("mnist-*-val8.npz"))
    for name in MNIST_FILES:  # the second load reads the cache alone
        (tmp_path / "a" / "mnist" / name).unlink()
    again = load_dataset("mnist", validation_size=8, root=tmp_path / "a")
    np.testing.assert_array_equal(a.x_val, again.x_val)
    np.testing.assert_array_equal(a.y_train, again.y_train)
    other = load_dataset("mnist", validation_size=12, root=tmp_path / "b")
    assert other.sizes() == {"train": 28, "validation": 12, "test": 10}


def test_validation_size_too_large(tmp_path, trust):
    write_mnist(tmp_path / "mnist")
    trust("mnist", tmp_path / "mnist")
    with pytest.raises(ConfigError, match="validation size 40 leaves no training examples"):
        load_dataset("mnist", validation_size=40, root=tmp_path)


@pytest.mark.parametrize("name, mean, std, classes", [
    ("cifar10", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 10),
    ("cifar100", (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), 100),
])
def test_cifar_channel_order_labels_split(tmp_path, trust, name, mean, std, classes):
    raw = write_cifar(tmp_path / name, name)
    trust(name, tmp_path / name)
    ds = load_dataset(name, validation_size=5, root=tmp_path)
    assert ds.name == name and ds.num_classes == classes and ds.augmentation == "crop_flip"
    assert ds.sizes() == {"train": 25, "validation": 5, "test": 6}
    assert ds.input_shape == (32, 32, 3)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == ds.y_test.dtype == np.int32
    np.testing.assert_array_equal(ds.y_test, raw["y_test"])  # the fine labels for CIFAR-100
    # test image 0: R at (row 1, col 2), G at (3, 4), B at (5, 6), in NHWC
    mean, std = np.float32(mean), np.float32(std)
    black, white = -mean / std, (1 - mean) / std
    img = ds.x_test[0]
    for (r, c, ch) in ((1, 2, 0), (3, 4, 1), (5, 6, 2)):
        assert img[r, c, ch] == pytest.approx(white[ch], rel=1e-5)
        others = [o for o in range(3) if o != ch]
        np.testing.assert_allclose(img[r, c, others], black[others], rtol=1e-5)
    assert np.count_nonzero(np.abs(img - black) > 1e-5) == 3
    # the five batches (or `train`) concatenated, then split: train + validation = all, disjoint
    expected = ((raw["x_train"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(np.float32) / 255 - mean) / std)
    key = lambda x: sorted(np.round(a, 4).tobytes() for a in x)  # noqa: E731
    assert key(np.concatenate([ds.x_train, ds.x_val])) == key(expected)
    assert not {a.tobytes() for a in ds.x_train} & {a.tobytes() for a in ds.x_val}
    assert sorted(np.concatenate([ds.y_train, ds.y_val]).tolist()) == sorted(raw["y_train"].tolist())


def test_py2_pickle_helper_is_what_numpy_reads(tmp_path):
    """The test pickles are Python 2 style (str -> bytes) and decode to the arrays written."""
    x = np.arange(2 * 3072, dtype=np.uint64).astype(np.uint8).reshape(2, 3072)
    data = py2_pickle({b"data": x, b"labels": [3, 7]})
    assert b"cnumpy.core.multiarray\n_reconstruct" in data
    batch = load_batch(data)
    assert batch[b"labels"] == [3, 7]
    np.testing.assert_array_equal(batch[b"data"], x)


# --------------------------------------------------------------------------- downloads (pooch, a real HTTP server)


class Server:
    """An HTTP server on 127.0.0.1 in a thread, serving `folder`; `mode` "partial" sends half of each file
    then closes the connection, "stall" sends half and then nothing until stopped. Records every GET."""

    def __init__(self, folder: Path, mode: str = "whole"):
        self.folder, self.mode, self.gets = folder, mode, []
        self.release = threading.Event()
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(server.folder), **kwargs)

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                server.gets.append(self.path)
                if server.mode == "whole":
                    return super().do_GET()
                data = (server.folder / self.path.lstrip("/")).read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                if server.mode == "stall":
                    server.release.wait(30)
                self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


@pytest.fixture
def serve():
    """serve(folder, mode="whole") -> a running Server; every server is stopped after the test."""
    servers = []

    def start(folder: Path, mode: str = "whole") -> Server:
        servers.append(Server(folder, mode))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def mirror_of(tmp_path, monkeypatch, dataset="mnist"):
    """Tiny files in the real format in tmp_path/mirror, and the checksum table expecting them."""
    source = tmp_path / "mirror"
    (write_mnist if dataset == "mnist" else lambda f: write_cifar(f, dataset))(source)
    monkeypatch.setitem(download.CHECKSUMS, dataset, {p.name: sha256(p) for p in sorted(source.iterdir())})
    return source


def test_download_verified_and_cached_then_served_from_the_cache(tmp_path, monkeypatch, serve):
    source = mirror_of(tmp_path, monkeypatch)
    server = serve(source)
    monkeypatch.setitem(download.MIRRORS, "mnist", (server.url,))
    ds = load_dataset("mnist", validation_size=8, root=tmp_path / "data")
    folder = tmp_path / "data" / "mnist"
    assert sorted(server.gets) == sorted(f"/{name}" for name in MNIST_FILES)
    assert sorted(p.name for p in folder.iterdir() if p.suffix != ".npz") == sorted(MNIST_FILES)  # no .part left
    for name in MNIST_FILES:
        assert sha256(folder / name) == sha256(source / name)
    for cache in folder.glob("*.npz"):  # the parsed cache gone: the second load reads the downloaded files
        cache.unlink()
    again = load_dataset("mnist", validation_size=8, root=tmp_path / "data")
    assert len(server.gets) == 4  # nothing downloaded again
    np.testing.assert_array_equal(ds.x_train, again.x_train)


def test_download_from_the_second_mirror(tmp_path, monkeypatch, serve):
    source = mirror_of(tmp_path, monkeypatch, "cifar10")
    server = serve(source)
    monkeypatch.setitem(download.MIRRORS, "cifar10", (CLOSED_PORT, server.url))
    ds = load_dataset("cifar10", validation_size=5, root=tmp_path / "data")
    assert ds.sizes() == {"train": 25, "validation": 5, "test": 6}
    assert server.gets == ["/cifar-10-python.tar.gz"]


def test_downloaded_file_with_wrong_checksum_is_rejected_and_deleted(tmp_path, monkeypatch, serve):
    source = tmp_path / "mirror"
    write_mnist(source)
    server = serve(source)
    monkeypatch.setitem(download.MIRRORS, "mnist", (server.url,))  # the real checksums: no match
    with pytest.raises(DataError) as err:
        load_dataset("mnist", root=tmp_path / "data")
    message = one_line(err)
    assert "SHA-256" in message and "train-images-idx3-ubyte.gz" in message and "deleted" in message
    assert server.gets == ["/train-images-idx3-ubyte.gz"]
    assert list((tmp_path / "data" / "mnist").iterdir()) == []  # neither the file nor a temporary one


def test_server_stopped_gives_the_offline_message_at_once(tmp_path, monkeypatch, serve):
    source = mirror_of(tmp_path, monkeypatch)
    server = serve(source)
    server.stop()  # its port refuses connections now
    monkeypatch.setitem(download.MIRRORS, "mnist", (server.url, CLOSED_PORT + "mirror2/"))
    start = time.monotonic()
    with pytest.raises(DataError) as err:
        load_dataset("mnist", root=tmp_path / "data")
    assert time.monotonic() - start < 5
    message = one_line(err)
    assert "dataset mnist needs" in message and str(tmp_path / "data" / "mnist") in message
    assert all(name in message for name in MNIST_FILES)
    assert server.url in message and CLOSED_PORT + "mirror2/" in message and "Connection refused" in message
    assert list((tmp_path / "data" / "mnist").iterdir()) == []


def test_read_timeout_of_a_stalled_mirror(tmp_path, monkeypatch, serve):
    source = mirror_of(tmp_path, monkeypatch, "cifar10")
    server = serve(source, mode="stall")
    monkeypatch.setitem(download.MIRRORS, "cifar10", (server.url,))
    monkeypatch.setattr(download, "READ_TIMEOUT", 0.5)
    start = time.monotonic()
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", root=tmp_path / "data")
    assert time.monotonic() - start < 10
    assert "timed out" in one_line(err)
    assert list((tmp_path / "data" / "cifar10").iterdir()) == []


def test_connection_closed_mid_download_leaves_no_file(tmp_path, monkeypatch, serve):
    source = mirror_of(tmp_path, monkeypatch, "cifar10")
    server = serve(source, mode="partial")
    monkeypatch.setitem(download.MIRRORS, "cifar10", (server.url,))
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", root=tmp_path / "data")
    assert "cifar-10-python.tar.gz" in one_line(err)
    assert list((tmp_path / "data" / "cifar10").iterdir()) == []


INTERRUPTED_DOWNLOAD = """
import faulthandler, json, signal, sys
faulthandler.register(signal.SIGUSR1, all_threads=True)  # where it hangs, if it ever does
# a signal sent to a process lands on any thread that does not block it: the threads the imports start
# (BLAS, XLA) block SIGINT, so Ctrl-C reaches the main thread, blocked in the socket read (with another
# thread taking it, the read went on until the server gave up: a flake in loaded suite runs)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
from lth.data import download, load_dataset
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
# Ctrl-C as in a shell: a SIGINT disposition of "ignore" is inherited through exec (Python then keeps
# it), and in full suite runs the xdist worker starting this child had it (third flake symptom)
signal.signal(signal.SIGINT, signal.default_int_handler)
checksums, url, root = json.loads(sys.argv[1])
download.CHECKSUMS["cifar10"], download.MIRRORS["cifar10"] = checksums, (url,)
load_dataset("cifar10", root=root)
"""


def test_interrupt_during_download_leaves_no_file(tmp_path, monkeypatch, serve):
    """Ctrl-C while the bytes trickle in: a process of its own (a pytest-xdist worker does not turn SIGINT
    into KeyboardInterrupt in the test's thread), interrupted once the server has sent half the file."""
    source = mirror_of(tmp_path, monkeypatch, "cifar10")
    server = serve(source, mode="stall")
    job = json.dumps([download.CHECKSUMS["cifar10"], server.url, str(tmp_path / "data")])
    child = subprocess.Popen([sys.executable, "-c", INTERRUPTED_DOWNLOAD, job], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not server.gets and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.05)
        time.sleep(0.5)  # the first half is on its way: the child waits for the rest
        child.send_signal(signal.SIGINT)
        try:
            _, err = child.communicate(timeout=60)
        except subprocess.TimeoutExpired:  # seen once in a loaded suite run: show every thread's stack
            child.send_signal(signal.SIGUSR1)
            time.sleep(2)
            child.kill()
            pytest.fail("the interrupted download did not end within 60 s:\n" + child.communicate()[1][-4000:])
    finally:
        child.kill()
    assert "KeyboardInterrupt" in err, f"(SIGINT here: {signal.getsignal(signal.SIGINT)})\n{err[-2000:]}"
    assert server.gets == ["/cifar-10-python.tar.gz"]
    assert list((tmp_path / "data" / "cifar10").iterdir()) == []


@pytest.fixture
def no_network(monkeypatch):
    """Every HTTP(S) request through a proxy that refuses connections: the real mirrors cannot be reached."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(var, CLOSED_PORT)
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)


def test_offline_error_names_the_real_mirrors(tmp_path, no_network):
    with pytest.raises(DataError) as err:
        load_dataset("cifar100", root=tmp_path)
    message = one_line(err)
    assert "cifar-100-python.tar.gz" in message and str(tmp_path / "cifar100") in message
    assert "https://www.cs.toronto.edu/~kriz/" in message


def test_present_file_with_wrong_checksum_is_refused(tmp_path, monkeypatch):
    write_cifar(tmp_path / "cifar10", "cifar10")
    monkeypatch.setitem(download.CHECKSUMS, "cifar10", {"cifar-10-python.tar.gz": "0" * 64})
    monkeypatch.setitem(download.MIRRORS, "cifar10", (CLOSED_PORT,))
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", validation_size=5, root=tmp_path)
    message = one_line(err)
    tarball = tmp_path / "cifar10" / "cifar-10-python.tar.gz"
    assert str(tarball) in message and "expected " + "0" * 64 in message and "delete it" in message
    assert tarball.exists()  # the user's file is reported, not deleted
    assert not list((tmp_path / "cifar10").glob("*.npz"))


# --------------------------------------------------------------------------- the pickles and the tarball


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_unpickler_refuses_os_system(tmp_path, trust):
    marker = tmp_path / "pwned"
    evil = pickle.dumps({b"data": _Evil(marker), b"labels": [0]}, protocol=pickle.HIGHEST_PROTOCOL)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load (posix|nt).system"):
        load_batch(evil)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load builtins.eval"):
        load_batch(pickle.dumps(eval))
    with pytest.raises(pickle.UnpicklingError, match="object dtype"):
        load_batch(pickle.dumps(np.array([1, "a"], dtype=object), protocol=pickle.HIGHEST_PROTOCOL))
    # through the loader: a verified tarball whose first batch is the malicious pickle
    write_cifar(tmp_path / "cifar10", "cifar10", members={"cifar-10-batches-py/data_batch_1": evil})
    trust("cifar10", tmp_path / "cifar10")
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", validation_size=5, root=tmp_path)
    assert "data_batch_1" in one_line(err) and "refusing" in one_line(err)
    assert not marker.exists()


@pytest.mark.parametrize("member", ["../evil", "/etc/evil", "elsewhere/data_batch_1"])
def test_tarball_member_outside_its_folder_is_refused(tmp_path, trust, member):
    write_cifar(tmp_path / "cifar10", "cifar10", members={member: b"x"})
    trust("cifar10", tmp_path / "cifar10")
    with pytest.raises(DataError, match="unexpected member") as err:
        load_dataset("cifar10", validation_size=5, root=tmp_path)
    one_line(err)


def test_tarball_missing_a_batch(tmp_path, trust):
    folder = tmp_path / "cifar100"
    folder.mkdir()
    with tarfile.open(folder / "cifar-100-python.tar.gz", "w:gz") as tar:
        _add(tar, "cifar-100-python/test", py2_pickle({b"fine_labels": [1], b"data": pattern_image()[None]}))
    trust("cifar100", folder)
    with pytest.raises(DataError, match="lacks cifar-100-python/train") as err:
        load_dataset("cifar100", root=tmp_path)
    one_line(err)


# --------------------------------------------------------------------------- the command line


def test_cli_offline_exit_2_one_line_no_run_directory(tmp_path, monkeypatch, capsys, no_network):
    from lth.cli import main

    monkeypatch.setenv("LTH_DATA", str(tmp_path / "data"))
    runs = tmp_path / "runs"
    code = main(["run", "lenet300_mnist", "--dataset", "mnist", "--variant", "smoke", "--runs", str(runs),
                 "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("lth: error: dataset mnist needs")
    assert str(tmp_path / "data" / "mnist") in err and "train-images-idx3-ubyte.gz" in err
    assert not runs.exists() or not any(runs.iterdir())


# --------------------------------------------------------------------------- synthetic datasets


@pytest.mark.parametrize("name, shape, augmentation", [
    ("synthetic_mnist", (28, 28, 1), "none"), ("synthetic_cifar10", (32, 32, 3), "crop_flip"),
])
def test_synthetic_datasets(tmp_path, name, shape, augmentation):
    ds = load_dataset(name, root=tmp_path)
    assert ds.sizes() == {"train": 512, "validation": 128, "test": 128}
    assert ds.input_shape == shape and ds.num_classes == 10 and ds.augmentation == augmentation
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    assert list(tmp_path.iterdir()) == []  # nothing written
    again = load_dataset(name, root=tmp_path)
    np.testing.assert_array_equal(ds.x_train, again.x_train)
    np.testing.assert_array_equal(ds.y_test, again.y_test)
    # learnable: the nearest class mean of the training set is far above chance on the test set
    means = np.stack([ds.x_train[ds.y_train == k].mean(0) for k in range(10)])
    dist = ((ds.x_test[:, None] - means[None]) ** 2).reshape(len(ds.y_test), 10, -1).sum(-1)
    assert (dist.argmin(1) == ds.y_test).mean() > 0.5
    sizes = load_dataset(name, validation_size=40, root=tmp_path).sizes()
    assert sizes == {"train": 600, "validation": 40, "test": 128}


def test_random_mnist_has_mnists_shapes_and_sizes(tmp_path):
    ds = load_dataset("random_mnist", root=tmp_path)
    assert ds.sizes() == {"train": 60_000, "validation": 0, "test": 10_000}
    assert ds.input_shape == (28, 28, 1) and ds.num_classes == 10 and ds.augmentation == "none"
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    assert list(tmp_path.iterdir()) == []  # nothing written
    np.testing.assert_array_equal(ds.y_train, load_dataset("random_mnist", root=tmp_path).y_train)
    assert set(np.unique(ds.y_test)) == set(range(10))
    held = load_dataset("random_mnist", validation_size=5_000, root=tmp_path)
    assert held.sizes() == {"train": 55_000, "validation": 5_000, "test": 10_000}
    with pytest.raises(ConfigError, match="leaves no training examples"):
        load_dataset("random_mnist", validation_size=60_000, root=tmp_path)
