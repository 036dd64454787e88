"""Damage never costs finished work silently: every damaged file is reported in one line and repaired
from what else is on disk, recomputed bit for bit, or refused with the repair (docs/reliability.md)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import copy_run, tiny_config

from lth.cli import main
from lth.errors import LthError
from lth.jobs.lottery import run_lottery

CONFIG = dict(levels=2, rewind="13it")


def train_run(root: Path) -> Path:
    run_lottery(tiny_config(**CONFIG), runs_root=root, progress=False, wandb="disabled")
    (run,) = [p for p in root.iterdir() if p.is_dir()]
    return run


def finished_run(root: Path, reference: Path) -> Path:
    """The finished run under `root`: a copy of the module's `reference` (`copy_run`), so that each test
    damages its own copy and the config is trained once per module."""
    return copy_run(reference, root)


def interrupt_before(run: Path, level: int) -> None:
    """Make a finished run look killed just before `level` started (as a kill -9 leaves it)."""
    rep = run / "replicate_00"
    records = json.loads((rep / "results.json").read_text())
    (rep / "results.json").write_text(json.dumps(records[:level], indent=2, sort_keys=True) + "\n")
    for later in range(level, len(records)):
        shutil.rmtree(rep / "checkpoints" / f"level_{later:02d}", ignore_errors=True)
        (rep / "masks" / f"level_{later:02d}.npz").unlink(missing_ok=True)
    rows = [json.loads(line) for line in (rep / "metrics.jsonl").read_text().splitlines()]
    (rep / "metrics.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows
                                               if r["level"] < level))
    (run / "results.json").unlink()


def rerun(root: Path, capsys) -> tuple[list[dict], str]:
    records = run_lottery(tiny_config(**CONFIG), runs_root=root, progress=False, wandb="disabled")
    return records, capsys.readouterr().err


def evaluation_rows(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "replicate_00" / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "iteration" in r]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    return train_run(tmp_path_factory.mktemp("reference"))


def results_bytes(run: Path) -> bytes:
    return (run / "replicate_00" / "results.json").read_bytes()


def test_a_damaged_results_file_of_a_finished_run_is_rebuilt_without_retraining(tmp_path, capsys, reference):
    run = finished_run(tmp_path, reference)
    rows = evaluation_rows(run)
    path = run / "replicate_00" / "results.json"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncate -s 50%
    _, err = rerun(tmp_path, capsys)
    assert "results.json is damaged" in err and "rebuilt it from the checkpoints of levels 0-2" in err
    assert results_bytes(run) == results_bytes(reference)
    assert evaluation_rows(run) == rows  # nothing was trained again
    assert (run / "replicate_00" / "masks" / "level_02.npz").exists()


def test_results_from_an_older_lth_without_records_in_checkpoints_are_refused(tmp_path, capsys, reference):
    run = finished_run(tmp_path, reference)
    for metadata in (run / "replicate_00" / "checkpoints").glob("level_*/final/record/metadata"):
        record = json.loads(metadata.read_text())
        record.pop("record")
        metadata.write_text(json.dumps(record))
    (run / "replicate_00" / "results.json").write_text("[{")
    before = sorted(p.name for p in (run / "replicate_00" / "masks").iterdir())
    with pytest.raises(LthError, match="results.json is damaged.*delete .*replicate_00 to retrain") as err:
        run_lottery(tiny_config(**CONFIG), runs_root=tmp_path, progress=False, wandb="disabled")
    assert "\n" not in str(err.value)
    assert sorted(p.name for p in (run / "replicate_00" / "masks").iterdir()) == before  # nothing wiped


def test_a_bad_metrics_line_loses_no_later_line(tmp_path, capsys, reference):
    run = finished_run(tmp_path, reference)
    interrupt_before(run, 2)
    path = run / "replicate_00" / "metrics.jsonl"
    lines = path.read_text().splitlines()
    lines[3] = lines[3][:10]  # one damaged line in the middle
    path.write_text("\n".join(lines) + "\n")
    _, err = rerun(tmp_path, capsys)
    assert "metrics.jsonl" in err and "line 4" in err  # the damaged line is reported
    assert results_bytes(run) == results_bytes(reference)
    kept = evaluation_rows(run)
    assert len(kept) == len(evaluation_rows(reference)) - 1  # only the damaged line is gone
    assert kept[3:] == evaluation_rows(reference)[4:]


def test_a_damaged_rewind_checkpoint_is_recomputed_bit_for_bit(tmp_path, capsys, reference):
    run = finished_run(tmp_path, reference)
    interrupt_before(run, 2)
    level_rows = [r for r in evaluation_rows(run) if r["level"] < 2]
    data = run / "replicate_00" / "checkpoints" / "rewind" / "tree" / "manifest.ocdbt"
    data.write_bytes(data.read_bytes()[:20])
    _, err = rerun(tmp_path, capsys)
    assert "recomputed the rewind weights" in err and "bit-identical" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 2  # the damage, the recomputation
    assert results_bytes(run) == results_bytes(reference)
    assert [r for r in evaluation_rows(run) if r["level"] < 2] == level_rows  # levels 0-1 kept, not retrained


def test_a_damaged_checkpoint_is_one_line_and_its_level_recomputed(tmp_path, capsys, reference):
    run = finished_run(tmp_path, reference)
    interrupt_before(run, 2)
    manifest = run / "replicate_00" / "checkpoints" / "level_01" / "final" / "tree" / "manifest.ocdbt"
    manifest.write_bytes(manifest.read_bytes()[:20])  # the damage that made orbax print ~25 tracebacks
    _, err = rerun(tmp_path, capsys)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "level_01/final is damaged" in lines[0] and "recomputed" in lines[0], err
    assert results_bytes(run) == results_bytes(reference)


def test_a_finished_run_is_checked_and_repaired_on_rerun(tmp_path, capsys, reference):
    run = finished_run(tmp_path, reference)
    mask = run / "replicate_00" / "masks" / "level_01.npz"
    mask.write_bytes(mask.read_bytes()[:100])
    _, err = rerun(tmp_path, capsys)
    assert "restored from the level's checkpoint" in err
    assert mask.read_bytes() and results_bytes(run) == results_bytes(reference)
    shutil.rmtree(run / "replicate_00" / "checkpoints" / "level_02")  # unrepairable: level 2 is recomputed
    rows = len(evaluation_rows(run))
    _, err = rerun(tmp_path, capsys)
    assert "level 2" in err and "recomputed" in err
    assert results_bytes(run) == results_bytes(reference)
    assert len(evaluation_rows(run)) == rows  # its rows replaced, not doubled


def test_ls_check_verifies_every_checkpoint(tmp_path, capsys, reference):
    run = finished_run(tmp_path, reference)
    data_dir = run / "replicate_00" / "checkpoints" / "level_02" / "final" / "tree"
    manifest = data_dir / "manifest.ocdbt"
    manifest.write_bytes(manifest.read_bytes()[:20])  # not seen by the cheap check of a rerun
    assert main(["ls", "--runs", str(tmp_path), "--check"]) == 0
    out = capsys.readouterr().out
    assert "2 finished level(s) sound, 1 to recompute" in out
    rerun(tmp_path, capsys)
    assert results_bytes(run) == results_bytes(reference)


def test_ls_shows_unfinished_and_damaged_runs(tmp_path, capsys, reference):
    run = finished_run(tmp_path, reference)
    interrupt_before(run, 1)
    broken = tmp_path / "broken-00000000"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    assert main(["ls", "--runs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1/3" in out and "r0: 1" in out  # per-replicate progress of the interrupted run
    assert "broken" in out and "damaged:" in out and "config.json" in out


def test_a_resumed_control_writes_each_row_once(tmp_path, capsys, reference):
    from lth.jobs.controls import run_controls

    run = finished_run(tmp_path, reference)
    run_controls(run, "reinit", "0-2", progress=False, wandb="disabled")
    branch = run / "replicate_00" / "controls" / "imp+reinit"
    full = (branch / "metrics.jsonl").read_text()
    records = json.loads((branch / "results.json").read_text())
    (branch / "results.json").write_text(json.dumps(records[:1]))  # killed during its level 1
    run_controls(run, "reinit", "0-2", progress=False, wandb="disabled")
    rows = [json.loads(line) for line in (branch / "metrics.jsonl").read_text().splitlines()]
    keys = [(r["level"], r.get("iteration", "done")) for r in rows]
    assert len(keys) == len(set(keys)) == len(full.splitlines())


def test_ls_check_keeps_a_finished_method_run_and_reports_what_does_not_verify(tmp_path, capsys):
    """A method run keeps no level checkpoints: the check verifies its masks against their digests,
    changes no byte of a sound run, and reports (never drops) a density whose mask does not verify."""
    from lth.jobs.methods import run_method

    config = tiny_config(method="rigl", **{"sparse.densities": (0.5, 0.3), "sparse.dt": 10})
    run_method(config, runs_root=tmp_path, progress=False, wandb="disabled")
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    before = {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file() and p.name != "lock"}
    assert main(["ls", "--runs", str(tmp_path), "--check"]) == 0
    assert "2 finished densities verified" in capsys.readouterr().out
    for command in (["control", str(run), "reinit"], ["instability", str(run), "--rewind", "0it"]):
        code = main(command)  # densities are not levels: one line, nothing trained
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and "is a rigl run" in err, err
    assert {p: p.read_bytes() for p in before} == before
    history = sorted((run / "replicate_00" / "masks" / "level_01").glob("step_*.npz"))
    assert history, "RigL keeps its changing mask's history"
    history[0].write_bytes(history[0].read_bytes()[:50])
    assert main(["ls", "--runs", str(tmp_path), "--check"]) == 0
    out, err = capsys.readouterr()
    assert "1 finished density verified, 1 could not be verified" in out
    assert f"{history[0]} is missing or does not match its digest" in err and "record is kept" in err
    assert (run / "replicate_00" / "results.json").read_bytes() == before[run / "replicate_00" / "results.json"]
    assert main(["ls", "--runs", str(tmp_path)]) == 0 and "2/2" in capsys.readouterr().out


def test_a_damaged_manifest_is_reported_and_rebuilt_never_emptied(tmp_path, capsys, reference):
    """A damaged manifest.json read as {} switched the guards off: an altered (valid) mask file of a
    finished run was accepted, and a resume could mix numerics. Now: one warning, every mask file
    without a digest verified against its level checkpoint (the altered one restored), the digests
    recorded again, and a resume refused until the user vouches for the numerics."""
    import numpy as np

    run = finished_run(tmp_path, reference)
    rep = run / "replicate_00"
    good = (rep / "masks" / "level_01.npz").read_bytes()
    with np.load(rep / "masks" / "level_01.npz") as f:
        altered = {k: np.roll(f[k], 1) for k in f.files}  # a valid mask file, other entries kept
    np.savez_compressed(rep / "masks" / "level_01.npz", **altered)
    (rep / "manifest.json").write_text('{"masks": {"level_00.npz"')
    _, err = rerun(tmp_path, capsys)
    assert "manifest.json is damaged" in err and len(err.strip().splitlines()) == 2, err
    assert "level_01.npz was damaged or missing; restored from the level's checkpoint" in err
    assert (rep / "masks" / "level_01.npz").read_bytes() == good and results_bytes(run) == results_bytes(reference)
    manifest = json.loads((rep / "manifest.json").read_text())
    assert manifest["rebuilt"] and set(manifest["masks"]) == {"level_00.npz", "level_01.npz", "level_02.npz"}

    interrupt_before(run, 2)
    (rep / "manifest.json").write_bytes(b"\x00garbage")
    with pytest.raises(LthError, match="numerics it ran with are unknown.*--allow-mixed-numerics"):
        rerun(tmp_path, capsys)
    run_lottery(tiny_config(**CONFIG), runs_root=tmp_path, progress=False, wandb="disabled", allow_mixed_numerics=True)
    assert results_bytes(run) == results_bytes(reference)


def test_ls_flags_a_foreign_config_and_replicates_that_are_not_directories(tmp_path, capsys, reference):
    run = finished_run(tmp_path, reference)
    copy = tmp_path / "tiny-00000000"
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "replicate_00")
    (copy / "replicate_00").write_text("x")
    loop = tmp_path / "tiny-11111111"
    shutil.copytree(run, loop)
    shutil.rmtree(loop / "replicate_00")
    (loop / "replicate_00").symlink_to(loop / "replicate_00")
    assert main(["ls", "--runs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count(f"its config.json names run {run.name}, not this directory") == 2
    assert out.count("replicate_00 is not a directory") == 2
    assert out.count("damaged:") == 4  # the run itself is clean


def _edit_record(path: Path, level: int, field: str, text: str) -> None:
    """Set `field` of level `level`'s record in a results.json to the JSON literal `text` (NaN and
    Infinity as Python's json writes them)."""
    records = json.loads(path.read_text())
    records[level][field] = "__EDIT__"
    path.write_text(json.dumps(records, indent=2, sort_keys=True).replace('"__EDIT__"', text) + "\n")


@pytest.mark.parametrize("field,text", [("test_accuracy", "NaN"), ("test_accuracy", "Infinity"),
                                        ("test_accuracy", '"0.9"'), ("test_accuracy", "1.5"),
                                        ("test_accuracy", "null"), ("density", "-Infinity"),
                                        ("best_test_accuracy", "NaN")])
def test_a_record_edited_to_a_number_that_cannot_be_is_damage_rebuilt_from_the_checkpoints(
        tmp_path, capsys, reference, field, text):
    """A results.json whose numbers were edited to NaN, Infinity or a string was read as it was: `lth
    ls` showed the NaN, a rerun said "all levels done", a plot drew nothing where the level was."""
    run = finished_run(tmp_path, reference)
    rows = evaluation_rows(run)
    _edit_record(run / "replicate_00" / "results.json", 1, field, text)
    assert main(["ls", "--runs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "replicate_00/results.json is damaged" in out and "nan" not in out.lower(), out
    assert main(["plot", str(run)]) == 2  # a plot of it is the one line, not a gap where the level was
    assert "results.json is damaged (level 1" in capsys.readouterr().err
    _, err = rerun(tmp_path, capsys)
    assert f"results.json is damaged (level 1: {field} is" in err and "rebuilt it from the checkpoints" in err, err
    assert results_bytes(run) == results_bytes(reference)
    assert evaluation_rows(run) == rows  # nothing trained again


def test_ls_check_and_the_runs_mean_never_take_a_non_finite_record(tmp_path, capsys, reference):
    from lth.store.run_dir import open_run

    run = finished_run(tmp_path, reference)
    mean = json.loads((run / "results.json").read_text())
    _edit_record(run / "results.json", 2, "test_accuracy", "NaN")  # the mean over replicates: computed again
    assert open_run(run, writable=False).read_aggregate() == mean
    _edit_record(run / "replicate_00" / "results.json", 2, "test_accuracy", "Infinity")
    assert main(["ls", "--runs", str(tmp_path), "--check"]) == 0
    captured = capsys.readouterr()
    assert "level 2: test_accuracy is inf, not a finite number" in captured.err, captured.err
    assert "3 finished level(s) sound" in captured.out, captured.out
    assert results_bytes(run) == results_bytes(reference)
    assert json.loads((run / "results.json").read_text()) == mean


def test_a_run_without_a_validation_set_keeps_its_null_early_stop_fields(tmp_path, capsys):
    """Not damage: without a validation set lth itself writes the early-stop fields as null (and NaN
    validation losses only into metrics.jsonl)."""
    run_lottery(tiny_config(levels=1, **{"data.validation_size": 0}), runs_root=tmp_path, progress=False,
                wandb="disabled")
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    records = json.loads((run / "replicate_00" / "results.json").read_text())
    assert records[0]["early_stop_test_accuracy"] is None and records[0]["early_stop_val_loss"] is None
    assert main(["ls", "--runs", str(tmp_path), "--check"]) == 0
    captured = capsys.readouterr()
    assert "damaged" not in captured.out + captured.err and "2 finished level(s) sound" in captured.out, captured


def test_a_second_failed_read_of_a_damaged_checkpoint_adds_no_traceback():
    """A race (1 of 3 tries under load in the torture test): after lth's one line for a damaged
    checkpoint, orbax's read coroutine of a second array raised as it was closed, and Python printed
    "Exception ignored in: <coroutine ...>" with 30 lines of TensorStore spec. Failed array reads
    (from any object: the torture run met more than that coroutine) are dropped, nothing else."""
    from types import SimpleNamespace

    from lth.store.checkpoints import _closed_loop_filter

    async def _read_array_index_and_device_put():
        return None

    async def other():
        return None

    seen: list = []
    hook = _closed_loop_filter(seen.append)
    for coroutine, message in ((_read_array_index_and_device_put(), "Encountered error while reading array index: "
                                "(slice(0, 500, 1),)"), (other(), "Encountered error while reading array index"),
                               (_read_array_index_and_device_put(), "something else")):
        hook(SimpleNamespace(exc_value=Exception(message), object=coroutine))
        coroutine.close()
    assert [str(u.exc_value) for u in seen] == ["something else"]  # a failed array read, from any object


def test_a_leftover_read_task_of_a_damaged_checkpoint_logs_nothing(caplog):
    """The same race's third form: an orbax read task that failed after lth's one line is collected
    later and asyncio logged "Task exception was never retrieved" with TensorStore's OUT_OF_RANGE
    error. Only a failed read of a checkpoint is dropped; another lost task error still shows."""
    import asyncio
    import gc

    from lth.store.checkpoints import _quiet

    _quiet()

    async def fails(message):
        raise ValueError(message)

    for message in ('OUT_OF_RANGE: Error reading "state.opt_state.mu.fc1.bias/0" in OCDBT database at local file',
                    "Encountered error while reading array index: (slice(0, 500, 1),). See full TensorStore details",
                    "something else went wrong"):
        loop = asyncio.new_event_loop()
        task = loop.create_task(fails(message))
        loop.run_until_complete(asyncio.sleep(0))  # the task runs and fails; nobody retrieves its error
        loop.close()
        del task
        gc.collect()
    logged = [str(r.exc_info[1]) for r in caplog.records if r.name == "asyncio" and r.exc_info]
    assert logged == ["something else went wrong"], logged
