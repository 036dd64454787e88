"""Sinks for what a run measures. Local JSONL always; the jitted code only returns metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class JsonlSink:
    """Append one JSON object per line and flush, so a killed run keeps every line written."""

    def __init__(self, path: Path, mode: str = "a"):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, mode, encoding="utf-8")

    def log(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, sort_keys=True) + "\n")
        self._file.flush()

    def close(self) -> None:
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
