"""Real W&B offline runs, read back with ``wandb_records`` (no mock, no network)."""

from __future__ import annotations

import json
import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import wandb
from wandb.proto import wandb_internal_pb2 as pb
from wandb_records import BLOCK_SIZE, find_run_files, read_records, read_run, wait_for_run

USER_KEYS = ("a", "level", "acc")  # history keys the tests log; wandb adds _runtime, _timestamp


@pytest.fixture
def wandb_dir(tmp_path, monkeypatch) -> Iterator[Path]:
    """Offline, silent W&B whose every file (runs, cache, artifacts staging) lands in tmp_path."""
    monkeypatch.setenv("WANDB_MODE", "offline")  # conftest sets "disabled"
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    for var, sub in [
        ("WANDB_CACHE_DIR", "cache"),
        ("WANDB_DATA_DIR", "data"),
        ("WANDB_CONFIG_DIR", "config"),
        ("WANDB_ARTIFACT_DIR", "artifacts"),
    ]:
        monkeypatch.setenv(var, str(tmp_path / sub))
    yield tmp_path
    wandb.teardown()  # stop wandb-core; the next wandb.init starts a fresh one


def _finish(run) -> None:
    """``run.finish()`` may return before wandb-core flushed the .wandb file; teardown waits."""
    run.finish()
    wandb.teardown()


def _user_rows(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k in USER_KEYS or k == "_step"} for row in history]


def test_offline_run_roundtrip(wandb_dir):
    run = wandb.init(
        mode="offline",
        dir=wandb_dir,
        project="lth-test",
        group="g",
        name="n",
        job_type="level",
        config={"lr": 0.1, "arch": "lenet", "sizes": [300, 100], "opt": {"momentum": 0.9}},
    )
    run_id = run.id
    run.config.update({"late": 7})
    for step, a in enumerate([1.5, 2.5, 3.5]):
        run.log({"a": a, "level": 2}, step=step)
    run.log({"acc": {"train": 0.5, "test": 0.25}}, step=3)
    run.log({"table": wandb.Table(columns=["x", "y"], data=[[1, 2.0], [3, 4.0]])}, step=4)
    run.summary["best"] = 0.75
    run.summary["final"] = {"sparsity": 0.8}
    _finish(run)

    files = find_run_files(wandb_dir)
    assert len(files) == 1
    f = files[0]
    assert f.name == f"run-{run_id}.wandb"
    assert re.fullmatch(rf"offline-run-\d{{8}}_\d{{6}}-{run_id}", f.parent.name)

    records = read_records(f)
    kinds = [r.WhichOneof("record_type") for r in records]
    assert kinds[0] == "header" and kinds[-1] == "exit"
    assert {"run", "history", "summary", "config"} <= set(kinds)

    out = read_run(f)
    assert read_run(f.parent) == out  # a directory holding one run works too
    assert out["run_id"] == run_id
    assert (out["project"], out["group"], out["name"], out["job_type"]) == (
        "lth-test",
        "g",
        "n",
        "level",
    )
    assert out["resumed"] is False
    assert out["exit_code"] == 0
    assert out["config"] == {
        "lr": 0.1,
        "arch": "lenet",
        "sizes": [300, 100],
        "opt": {"momentum": 0.9},
        "late": 7,
    }

    hist = out["history"]
    assert [row["_step"] for row in hist] == [0, 1, 2, 3, 4]
    assert _user_rows(hist[:4]) == [
        {"_step": 0, "a": 1.5, "level": 2},
        {"_step": 1, "a": 2.5, "level": 2},
        {"_step": 2, "a": 3.5, "level": 2},
        {"_step": 3, "acc": {"train": 0.5, "test": 0.25}},
    ]
    assert all({"_runtime", "_timestamp"} <= set(row) for row in hist)

    # A Table is logged as a reference to a JSON file under the run's files/ dir.
    table = hist[4]["table"]
    assert table["_type"] == "table-file"
    assert (table["nrows"], table["ncols"]) == (2, 2)
    table_json = json.loads((f.parent / "files" / table["path"]).read_text())
    assert table_json["columns"] == ["x", "y"]
    assert table_json["data"] == [[1, 2.0], [3, 4.0]]

    summary = out["summary"]
    assert summary["best"] == 0.75
    assert summary["final"] == {"sparsity": 0.8}
    assert summary["a"] == 3.5  # last logged value
    assert summary["acc"] == {"train": 0.5, "test": 0.25}
    assert summary["_step"] == 4


def test_resume_fixed_id_offline(wandb_dir):
    """Offline, ``resume="allow"`` with a fixed id starts a *new* directory every time.

    There is no server to resume from, so the second run is not marked resumed
    and its steps start again at 0; both files are complete, separate runs.
    """
    steps = {}
    for attempt in range(2):
        run = wandb.init(
            mode="offline",
            dir=wandb_dir,
            project="lth-test",
            id="fixedid",
            resume="allow",
            config={"attempt": attempt},
        )
        assert run.id == "fixedid"
        assert run.starting_step == 0
        for i in range(2):
            run.log({"a": 10 * attempt + i})
        steps[attempt] = run.step
        _finish(run)

    files = find_run_files(wandb_dir)
    assert len(files) == 2
    names = [f.parent.name for f in files]
    assert len(set(names)) == 2
    for name in names:  # the second is "...-fixedid-1" when both start in the same second
        assert re.fullmatch(r"offline-run-\d{8}_\d{6}-fixedid(-\d+)?", name), name
    assert all(f.name == "run-fixedid.wandb" for f in files)
    assert (wandb_dir / "wandb" / "latest-run").is_symlink()

    runs = sorted((read_run(f) for f in files), key=lambda r: r["config"]["attempt"])
    for attempt, out in enumerate(runs):
        assert out["run_id"] == "fixedid"
        assert out["resumed"] is False
        assert out["exit_code"] == 0
        assert _user_rows(out["history"]) == [
            {"_step": 0, "a": 10 * attempt},
            {"_step": 1, "a": 10 * attempt + 1},
        ]
    assert steps == {0: 2, 1: 2}


def test_wait_for_run_without_teardown(wandb_dir):
    run = wandb.init(mode="offline", dir=wandb_dir, project="lth-test", config={"x": 1})
    run.log({"a": 1.0})
    run.finish()  # no teardown: the file may still be being written
    (f,) = find_run_files(wandb_dir)
    records = wait_for_run(f, timeout=10)
    assert records[-1].WhichOneof("record_type") == "exit"
    out = read_run(f, wait=10)
    assert out["config"] == {"x": 1}
    assert _user_rows(out["history"]) == [{"_step": 0, "a": 1.0}]


def test_wait_for_run_times_out(tmp_path):
    path = tmp_path / "run-x.wandb"
    path.write_bytes(_write_stream([_history_record(0, 3)]))  # no exit record
    with pytest.raises(TimeoutError, match="no complete run"):
        wait_for_run(path, timeout=0.1)


# --- malformed and synthetic streams ------------------------------------------------


def _chunk(ctype: int, data: bytes) -> bytes:
    return struct.pack("<IHB", zlib.crc32(bytes([ctype]) + data), len(data), ctype) + data


def _write_stream(payloads: list[bytes]) -> bytes:
    """A reference writer (LevelDB log layout, as wandb writes it) for synthetic files."""
    out = bytearray(b":W&B" + struct.pack("<HB", 0xBEE1, 0))
    for payload in payloads:
        rest, first = payload, True
        while True:
            left = BLOCK_SIZE - len(out) % BLOCK_SIZE
            if left < 7:
                out += b"\x00" * left
                continue
            piece, rest = rest[: left - 7], rest[left - 7 :]
            last = not rest
            ctype = (1 if last else 2) if first else (4 if last else 3)
            out += _chunk(ctype, piece)
            first = False
            if last:
                break
    return bytes(out)


def _history_record(step: int, n_bytes: int) -> bytes:
    rec = pb.Record()
    rec.history.step.num = step
    item = rec.history.item.add()
    item.key = "blob"
    item.value_json = json.dumps("x" * n_bytes)
    step_item = rec.history.item.add()
    step_item.nested_key.append("_step")
    step_item.value_json = str(step)
    return rec.SerializeToString()


def test_synthetic_multiblock_with_padding(tmp_path):
    # Record 0 fills the first block up to 3 bytes (zero padding follows); the next
    # records span blocks as FIRST/MIDDLE/LAST chunks.
    target = BLOCK_SIZE - 7 - 7 - 3  # file header, chunk header, 3 bytes of padding
    n0 = next(n for n in range(target - 64, target) if len(_history_record(0, n)) == target)
    sizes = [n0, 40_000, 70_000, 5]
    data = _write_stream([_history_record(i, n) for i, n in enumerate(sizes)])
    assert data[BLOCK_SIZE - 3 : BLOCK_SIZE] == b"\x00\x00\x00"
    assert data[BLOCK_SIZE + 6] == 2  # a FIRST chunk opens the second block
    path = tmp_path / "run-synth.wandb"
    path.write_bytes(data)
    out = read_run(path)
    assert [row["_step"] for row in out["history"]] == [0, 1, 2, 3]
    assert [len(row["blob"]) for row in out["history"]] == sizes

    bad = bytearray(data)
    bad[BLOCK_SIZE - 2] = 1
    path.write_bytes(bytes(bad))
    with pytest.raises(ValueError, match="non-zero block padding"):
        read_records(path)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: b"XW&B" + d[4:], "bad W&B header"),
        (lambda d: d[:5], "too short"),
        (lambda d: d[:-3], "truncated chunk"),
        (lambda d: d[:20] + bytes([d[20] ^ 0xFF]) + d[21:], "CRC mismatch"),
        (lambda d: d[:7] + _chunk(3, b"abc") + d[7:], "without a FIRST chunk"),
        (lambda d: d + _chunk(2, b"abc"), "ends inside a record"),
        (lambda d: d + _chunk(9, b"abc"), "unknown chunk type"),
        (lambda d: d + _chunk(1, b"\xff\xff\xff"), "not a valid Record"),
    ],
)
def test_malformed_streams(tmp_path, mutate, message):
    good = _write_stream([_history_record(0, 10), _history_record(1, 10)])
    path = tmp_path / "run-bad.wandb"
    path.write_bytes(good)
    assert len(read_records(path)) == 2
    path.write_bytes(mutate(good))
    with pytest.raises(ValueError, match=message):
        read_records(path)
