"""Writing and reading the files of a run: atomic writes, JSON, JSON lines, compressed arrays.

Every write of a whole file goes to a temporary file beside it, is fsynced, then renamed, so a
crash never leaves a half-written file under its final name. JSONL files are appended line by line
and flushed, so a killed run keeps every line written.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, fsync, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, value: Any) -> None:
    """`value` as indented, key-sorted JSON, written atomically."""
    write_atomic(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def read_json_list(path: Path) -> list[dict[str, Any]]:
    """A JSON list from `path`; [] if the file is missing, unreadable or not a list."""
    try:
        value = json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return []
    return value if isinstance(value, list) else []


def write_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """`np.savez_compressed` of `arrays`, written atomically."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_atomic(path, buffer.getvalue())


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


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Read a JSONL file back, ignoring a trailing partial line (a crash mid-write)."""
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows
