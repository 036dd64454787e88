"""Writing and reading the files of a run: atomic writes, JSON, JSON lines, compressed arrays.

Every write of a whole file goes to a temporary file beside it, is fsynced, then renamed, so a
crash never leaves a half-written file under its final name; a new file gets the permissions the
umask gives it (`write_atomic`, from `lth.spec.files`, which the dataset caches use too). JSONL files
are appended line by line and flushed, so a killed run keeps every line written.
"""

from __future__ import annotations

import io
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lth.errors import LthError
from lth.spec.files import UNREADABLE_JSON, write_atomic


def check_output_path(path: str | os.PathLike) -> Path:
    """`path` as a file to write, checked first: not a directory, device, FIFO or socket, under a
    directory (made if it is missing) that can be written; a symlink is written through (its target
    is returned). A one-line LthError otherwise; nothing is written. Outputs of commands that may point
    into a run directory: `lth.store.run_dir.check_output_file`."""
    path = Path(path)
    if not path.name or path.is_dir():
        raise LthError(f"output {path} is a directory: give a file name, e.g. {path / 'out.png'}")
    if path.is_symlink():  # written through: the link stays, its target gets the bytes
        path = Path(os.path.realpath(path))
    if path.exists() and not path.is_file():
        raise LthError(f"output {path} is not a regular file (a device, FIFO or socket): give a file path")
    existing = next(p for p in path.parents if p.exists() or p == Path(p.anchor or "."))
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise LthError(f"cannot write {path}: {existing} is not a writable directory")
    return path


def write_json(path: Path, value: Any) -> None:
    """`value` as indented, key-sorted JSON, written atomically."""
    write_atomic(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def read_json_list(path: Path) -> list[dict[str, Any]]:
    """A JSON list from `path`; [] if the file is missing, unreadable or not a list (for files that
    can be recomputed; the run store's records use `lth.store.replicate.ReplicateDir.read_results`)."""
    try:
        value = json.loads(Path(path).read_text())
    except (FileNotFoundError, *UNREADABLE_JSON):
        return []
    return value if isinstance(value, list) else []


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """The bytes of `np.savez_compressed` of `arrays`."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


class JsonlSink:
    """Append one JSON object per line and flush, so a killed run keeps every line written.
    `enabled=False`: write nothing (processes other than 0 of a multi-process run)."""

    def __init__(self, path: Path, mode: str = "a", enabled: bool = True):
        self._file = None
        if enabled:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, mode, encoding="utf-8")

    def log(self, record: dict[str, Any]) -> None:
        """Append `record` as one line."""
        if self._file is not None:
            self._file.write(json.dumps(record, sort_keys=True) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def __enter__(self) -> JsonlSink:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_jsonl(path: Path, on_bad: Callable[[int, str], None] | None = None) -> list[dict[str, Any]]:
    """Read a JSONL file back: every line that is a JSON object, in order. A line that is not (a
    crash mid-write, a damaged byte) is skipped and the lines after it are kept; `on_bad(line
    number, text)` hears of each, except a partial last line, which is what a kill leaves."""
    rows = []
    lines = Path(path).read_bytes().decode("utf-8", errors="replace").split("\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except UNREADABLE_JSON:
            row = None
        if isinstance(row, dict):
            rows.append(row)
        elif on_bad is not None and number < len(lines):  # the last piece has no newline: a partial line
            on_bad(number, line)
    return rows


def directory_token(path: Path, writable: bool = True) -> str:
    """The random 8-hex-digit token kept in the file `path`, made on first use (of several processes
    the first one wins, by a hard link); "readonly" when it is missing and cannot be made."""
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        token = ""
    if len(token) == 8 and all(c in "0123456789abcdef" for c in token):
        return token
    if not writable:
        return "readonly"
    fresh = secrets.token_hex(4)
    tmp = path.with_name(f".{path.name}.{fresh}.tmp")
    tmp.write_text(fresh)
    try:
        os.replace(tmp, path) if token else os.link(tmp, path)  # a damaged token is replaced
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_text().strip()
