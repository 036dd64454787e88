"""Read W&B offline run files (``run-<id>.wandb``) without network or mocks.

wandb 0.31 ships no Python reader for these files (the old
``wandb.sdk.internal.datastore`` is gone; the Go ``wandb-core`` writes them).
The format, as measured on files written by wandb 0.31.0:

* a 7-byte file header: ``b":W&B"``, magic ``0xBEE1`` (uint16 little-endian),
  version ``0`` (one byte);
* then a LevelDB-log-style stream of 32 KiB blocks, counted from the start of
  the file (the file header lives in the first block).  Each record is cut into
  chunks; a chunk has a 7-byte header ``<crc:uint32 LE><length:uint16 LE><type:uint8>``
  with type FULL=1, FIRST=2, MIDDLE=3, LAST=4.  A block's trailing bytes that
  cannot hold a chunk header (fewer than 7) are zero padding.
* the checksum is the plain CRC-32 of zlib (``zlib.crc32(type_byte + data)``),
  *not* CRC-32C, and is unmasked.  It is verified here.
* each reassembled record is a serialized ``wandb_internal_pb2.Record``.

Caveat (measured, wandb 0.31.0 offline): ``run.finish()`` can return before
``wandb-core`` has flushed the file -- about 1 run in 15 still held only the
7-byte header right after ``finish()``.  Either call ``wandb.teardown()`` after
``finish()`` (it waits for the service process to exit; 0 incomplete files in
30 tries), or read with ``wait_for_run`` (polls until the ``exit`` record).
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2 as pb

Record = pb.Record

HEADER_IDENT = b":W&B"
HEADER_MAGIC = 0xBEE1
HEADER_VERSION = 0
FILE_HEADER = struct.Struct("<4sHB")  # 7 bytes
CHUNK_HEADER = struct.Struct("<IHB")  # 7 bytes: crc32, length, type
BLOCK_SIZE = 32 * 1024

FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
_TYPE_NAMES = {FULL: "FULL", FIRST: "FIRST", MIDDLE: "MIDDLE", LAST: "LAST"}


def _iter_payloads(data: bytes, path: str, verify_crc: bool = True) -> Iterator[bytes]:
    """Yield the reassembled record payloads of a whole ``.wandb`` stream."""
    if len(data) < FILE_HEADER.size:
        raise ValueError(f"{path}: file too short for a W&B header ({len(data)} bytes)")
    ident, magic, version = FILE_HEADER.unpack_from(data, 0)
    if ident != HEADER_IDENT or magic != HEADER_MAGIC or version != HEADER_VERSION:
        raise ValueError(
            f"{path}: bad W&B header {data[:FILE_HEADER.size]!r} "
            f"(want ident {HEADER_IDENT!r}, magic {HEADER_MAGIC:#06x}, version {HEADER_VERSION})"
        )

    pos = FILE_HEADER.size
    pending: list[bytes] | None = None  # chunks of a record started by FIRST
    while pos < len(data):
        left_in_block = BLOCK_SIZE - pos % BLOCK_SIZE
        if left_in_block < CHUNK_HEADER.size:
            pad = data[pos : pos + left_in_block]
            if pad.strip(b"\x00"):
                raise ValueError(f"{path}: non-zero block padding at offset {pos}")
            pos += left_in_block
            continue
        if len(data) - pos < CHUNK_HEADER.size:
            raise ValueError(f"{path}: truncated chunk header at offset {pos}")
        crc, length, ctype = CHUNK_HEADER.unpack_from(data, pos)
        start = pos + CHUNK_HEADER.size
        if length > left_in_block - CHUNK_HEADER.size:
            raise ValueError(
                f"{path}: chunk at offset {pos} of length {length} crosses a block boundary"
            )
        if start + length > len(data):
            raise ValueError(
                f"{path}: truncated chunk at offset {pos}: need {length} bytes, "
                f"have {len(data) - start}"
            )
        chunk = data[start : start + length]
        if ctype not in _TYPE_NAMES:
            raise ValueError(f"{path}: unknown chunk type {ctype} at offset {pos}")
        if verify_crc and zlib.crc32(bytes([ctype]) + chunk) != crc:
            raise ValueError(f"{path}: CRC mismatch in {_TYPE_NAMES[ctype]} chunk at offset {pos}")

        if ctype == FULL:
            if pending is not None:
                raise ValueError(f"{path}: FULL chunk at offset {pos} inside an unfinished record")
            yield chunk
        elif ctype == FIRST:
            if pending is not None:
                raise ValueError(f"{path}: FIRST chunk at offset {pos} inside an unfinished record")
            pending = [chunk]
        else:  # MIDDLE or LAST
            if pending is None:
                raise ValueError(
                    f"{path}: {_TYPE_NAMES[ctype]} chunk at offset {pos} without a FIRST chunk"
                )
            pending.append(chunk)
            if ctype == LAST:
                yield b"".join(pending)
                pending = None
        pos = start + length

    if pending is not None:
        raise ValueError(f"{path}: stream ends inside a record (FIRST without LAST)")


def read_records(path: str | Path, verify_crc: bool = True) -> list[Record]:
    """Parse a ``run-<id>.wandb`` file into its ``Record`` protobufs, in file order.

    Raises ``ValueError`` on a bad header, a CRC mismatch, a truncated or
    otherwise malformed chunk stream, or a payload that is not a ``Record``.
    """
    path = Path(path)
    data = path.read_bytes()
    records: list[Record] = []
    for i, payload in enumerate(_iter_payloads(data, str(path), verify_crc)):
        rec = Record()
        try:
            rec.ParseFromString(payload)
        except Exception as exc:  # google.protobuf.message.DecodeError
            raise ValueError(f"{path}: record {i} is not a valid Record protobuf: {exc}") from exc
        records.append(rec)
    return records


def wait_for_run(path: str | Path, timeout: float = 10.0, poll: float = 0.02) -> list[Record]:
    """``read_records`` once the file holds a finished run (ends with an ``exit`` record).

    Use it when ``wandb-core`` may still be writing (see the module docstring).
    Raises ``TimeoutError`` if the run is not complete after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            records = read_records(path)
            if records and records[-1].WhichOneof("record_type") == "exit":
                return records
            last_error = None
        except (OSError, ValueError) as exc:  # missing, or cut mid-chunk while being written
            last_error = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"{path}: no complete run (exit record) after {timeout}s"
                + (f"; last error: {last_error}" if last_error else "")
            )
        time.sleep(poll)


def find_run_files(directory: str | Path) -> list[Path]:
    """All ``run-*.wandb`` files below ``directory`` (recursively), sorted by path.

    Offline run directories are named ``offline-run-<YYYYmmdd_HHMMSS>-<id>``
    (wandb appends ``-1``, ``-2``... when that name is taken), so sorting by path
    orders runs by start time to the second.  The ``latest-run`` symlink is skipped.
    """
    files = {
        f.resolve()
        for f in Path(directory).rglob("run-*.wandb")
        if "latest-run" not in f.parts and f.is_file()
    }
    return sorted(files)


def _json(value_json: str) -> Any:
    return json.loads(value_json) if value_json else None


def _set(target: dict[str, Any], key: str, nested_key: list[str] | Any, value: Any) -> None:
    """Store ``value`` under ``key`` or under the path ``nested_key``."""
    keys = list(nested_key) if nested_key else [key]
    for k in keys[:-1]:
        target = target.setdefault(k, {})
    target[keys[-1]] = value


def _unset(target: dict[str, Any], key: str, nested_key: list[str] | Any) -> None:
    keys = list(nested_key) if nested_key else [key]
    for k in keys[:-1]:
        target = target.get(k)
        if not isinstance(target, dict):
            return
    target.pop(keys[-1], None)


def _history_value(item: Any) -> Any:
    """A history item's value: ``value_json`` or, if set, the typed ``value`` oneof."""
    which = item.WhichOneof("value")
    if which is None:
        return _json(item.value_json)
    if which == "none":
        return None
    if which == "json":
        return _json(item.json)
    return getattr(item, which)


def read_run(path: str | Path, wait: float | None = None) -> dict[str, Any]:
    """Summarize one offline run file (``run-<id>.wandb``).

    ``path`` may also be a directory that holds exactly one run file (e.g. an
    ``offline-run-...`` directory); use ``find_run_files`` for several.
    With ``wait`` (seconds), first wait for the run to be complete (``wait_for_run``).

    Returns a dict with:
      ``run_id``, ``project``, ``group``, ``name``, ``job_type``, ``tags``,
      ``resumed`` (from the ``run`` record; ``None`` if absent),
      ``config`` (run config; values JSON-decoded, the ``_wandb`` key removed),
      ``history`` (one dict per history record, values JSON-decoded, with ``_step``),
      ``summary`` (the summary after applying every summary record in order),
      ``exit_code`` (from the ``exit`` record, ``None`` if the run did not finish),
      ``record_types`` (the ``record_type`` of every record, in order).
    """
    path = Path(path)
    if path.is_dir():
        files = find_run_files(path)
        if len(files) != 1:
            raise ValueError(f"{path}: expected exactly one run-*.wandb file, found {len(files)}")
        path = files[0]

    out: dict[str, Any] = {
        "run_id": None,
        "project": None,
        "group": None,
        "name": None,
        "job_type": None,
        "tags": [],
        "resumed": None,
        "config": {},
        "history": [],
        "summary": {},
        "exit_code": None,
        "record_types": [],
    }
    config: dict[str, Any] = {}
    records = read_records(path) if wait is None else wait_for_run(path, timeout=wait)
    for rec in records:
        kind = rec.WhichOneof("record_type")
        out["record_types"].append(kind)
        if kind == "run":
            run = rec.run
            out["run_id"] = run.run_id or out["run_id"]
            out["project"] = run.project or out["project"]
            out["group"] = run.run_group or out["group"]
            out["name"] = run.display_name or out["name"]
            out["job_type"] = run.job_type or out["job_type"]
            out["tags"] = list(run.tags)
            out["resumed"] = bool(run.resumed)
            for item in run.config.update:
                _set(config, item.key, item.nested_key, _json(item.value_json))
            for item in run.summary.update:
                _set(out["summary"], item.key, item.nested_key, _json(item.value_json))
        elif kind == "config":
            for item in rec.config.update:
                _set(config, item.key, item.nested_key, _json(item.value_json))
            for item in rec.config.remove:
                _unset(config, item.key, item.nested_key)
        elif kind == "history":
            row: dict[str, Any] = {}
            for item in rec.history.item:
                _set(row, item.key, item.nested_key, _history_value(item))
            if "_step" not in row and rec.history.HasField("step"):
                row["_step"] = rec.history.step.num
            out["history"].append(row)
        elif kind == "summary":
            for item in rec.summary.update:
                _set(out["summary"], item.key, item.nested_key, _json(item.value_json))
            for item in rec.summary.remove:
                _unset(out["summary"], item.key, item.nested_key)
        elif kind == "exit":
            out["exit_code"] = rec.exit.exit_code
    config.pop("_wandb", None)
    out["config"] = config
    return out
