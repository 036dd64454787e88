"""The store's side of sweeps: a sweep's directory under the run root, and run directories packed
into bytes and unpacked on another machine (workers without the driver's filesystem).

    <runs root>/sweeps/<sweep name>-<sweep hash>/
        sweep.json       the cells: their axes, run directories, status, attempts and nodes
        summary.csv      per cell and level: mean and sample std over the cell's replicates
        accuracy_vs_sparsity.png   one line per cell (or per value of the sweep's plot axis)
        probe.json       a token that tells a worker whether it sees this filesystem
        wandb/, wandb_id the sweep's W&B summary run (offline files) and its random id token
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from lth.errors import ConfigError
from lth.store.io import directory_token, write_atomic, write_json
from lth.store.run_dir import runs_root

SWEEPS = "sweeps"
LOCK_FILE = "lock"


class SweepDir:
    """The files of one sweep. Creating the object touches nothing."""

    def __init__(self, root: str | os.PathLike | None, name: str):
        self.path = runs_root(root) / SWEEPS / name

    state_path = property(lambda self: self.path / "sweep.json")
    summary_path = property(lambda self: self.path / "summary.csv")
    plot_path = property(lambda self: self.path / "accuracy_vs_sparsity.png")
    probe_path = property(lambda self: self.path / "probe.json")
    wandb_dir = property(lambda self: self.path / "wandb")

    def wandb_id(self) -> str:
        """The sweep directory's own random token (the id of its W&B summary run), made on first use."""
        return directory_token(self.path / "wandb_id")

    def write_state(self, state: dict[str, Any]) -> None:
        write_json(self.state_path, state)

    def write_summary(self, csv_text: str) -> None:
        write_atomic(self.summary_path, csv_text.encode())

    def write_probe(self, token: str) -> None:
        write_json(self.probe_path, {"token": token})


def check_worker_dir(path: str | os.PathLike, where: str = "") -> None:
    """One line if the workers' run root (`--worker-dir`, a worker-local filesystem) cannot be written
    (`where`: on which host): made and written to once, because `os.access` says yes to /proc as root."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
        probe = Path(path) / f".lth-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"--worker-dir {path} cannot be written{where} ({err.strerror or type(err).__name__}): "
                          "choose another --worker-dir, or drop --filesystem local") from None


def sees_probe(probe_path: str | os.PathLike, token: str) -> bool:
    """Whether this process sees the driver's filesystem: the probe file there holds `token`."""
    try:
        return json.loads(Path(probe_path).read_text()).get("token") == token
    except (OSError, ValueError, AttributeError):
        return False


def pack_run_dir(path: str | os.PathLike) -> bytes:
    """A run directory as an uncompressed tar archive (names relative to it; its lock left out)."""
    path = Path(path)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for item in sorted(path.iterdir()):
            if item.name != LOCK_FILE:
                tar.add(item, arcname=item.name)
    return buffer.getvalue()


def unpack_run_dir(data: bytes, path: str | os.PathLike) -> int:
    """Put a packed run directory at `path` (which may hold a lock or an older partial copy); returns
    the bytes unpacked. The archive is extracted beside it first ("data" filter: no absolute paths,
    links out or devices), then moved in entry by entry with results.json last, so an interrupted
    unpack never shows a finished run."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    incoming = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.incoming-"))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
            tar.extractall(incoming, filter="data")
        entries = sorted(incoming.iterdir(), key=lambda p: (p.name == "results.json", p.name))
        for entry in entries:
            target = path / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(entry, target)
    finally:
        shutil.rmtree(incoming, ignore_errors=True)
    return len(data)
