"""Run records: resume after SIGKILL (bit-identical), damaged checkpoints, the lock, replicates, listing."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import tiny_config

from lth.errors import LthError
from lth.jobs.lottery import run_lottery
from lth.store import RunDir, aggregate, list_runs

ROOT = Path(__file__).resolve().parent.parent


def resumable_config(**changes):
    # 4 epochs of 35 iterations per level; checkpoints every epoch; rewind to 13it
    return tiny_config(**{"training.length": "4ep", "training.eval_every": "10it", "rewind": "13it", "levels": 3,
                          **changes})


def results_bytes(root):
    (path,) = list(Path(root).glob("*/replicate_00/results.json"))
    return path.read_bytes()


CHILD = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from helpers import tiny_config
    from lth.jobs.lottery import run_lottery
    config = tiny_config(**{{"training.length": "4ep", "training.eval_every": "10it", "rewind": "13it", "levels": 3}})
    run_lottery(config, runs_root={root!r}, checkpoint_every="1ep", progress=False)
""")


def start_child(root):
    env = {**os.environ, "WANDB_MODE": "disabled"}
    code = CHILD.format(tests=str(ROOT / "tests"), root=str(root))
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.fixture(scope="module")
def resumable_reference(tmp_path_factory):
    """The uninterrupted run of `resumable_config()` (read only): the record both kills are compared to."""
    reference = tmp_path_factory.mktemp("reference")
    run_lottery(resumable_config(), runs_root=reference, checkpoint_every="1ep", progress=False)
    return reference


@pytest.mark.parametrize("kill_when", ["mid_level_1", "level_2_started"])
def test_sigkill_then_rerun_is_bit_identical(tmp_path, kill_when, resumable_reference):
    reference = resumable_reference
    killed = tmp_path / "killed"
    child = start_child(killed)
    deadline = time.time() + 120
    rep = None
    while time.time() < deadline and child.poll() is None:
        reps = list(killed.glob("*/replicate_00"))
        rep = reps[0] if reps else None
        if rep is not None:
            if kill_when == "mid_level_1" and list((rep / "checkpoints" / "level_01").glob("step_*")):
                break
            if kill_when == "level_2_started" and (rep / "checkpoints" / "level_01" / "final").exists():
                break
        time.sleep(0.005)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode in (-signal.SIGKILL, 0), child.stderr.read().decode()[-2000:]
    done_before = len(json.loads((rep / "results.json").read_text())) if (rep / "results.json").exists() else 0
    assert done_before < 4, "the child finished before it was killed: nothing was tested"

    # the killed process's lock went with it
    run_lottery(resumable_config(), runs_root=killed, checkpoint_every="1ep", progress=False)
    assert results_bytes(killed) == results_bytes(reference)
    # metrics.jsonl has each evaluation once, in order
    ref_file = next(reference.glob("*/replicate_00/metrics.jsonl"))
    ref_rows = [r for r in map(json.loads, ref_file.read_text().splitlines()) if "iteration" in r]
    rows = [r for r in map(json.loads, (rep / "metrics.jsonl").read_text().splitlines()) if "iteration" in r]
    assert rows == ref_rows


# orbax's background readers of the deliberately damaged file report to an already closed event loop
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_damaged_checkpoint_is_reported_and_the_level_resumes_from_the_previous_one(tmp_path, capsys):
    import shutil

    reference = tmp_path / "reference"
    run_lottery(resumable_config(levels=1), runs_root=reference, checkpoint_every="1ep", progress=False)

    root = tmp_path / "damaged"
    shutil.copytree(reference, root)  # the same finished run (training it again writes these bytes)
    (rep,) = list(root.glob("*/replicate_00"))
    # simulate a crash during level 1 after two mid-level checkpoints, the newest one truncated
    results = json.loads((rep / "results.json").read_text())
    (rep / "results.json").write_text(json.dumps(results[:1]))
    level1 = rep / "checkpoints" / "level_01"
    # the final state of level 1 becomes a mid-level checkpoint, then is damaged: the level must
    # report it and start again from its beginning (no older good checkpoint)
    shutil.copytree(level1 / "final", level1 / "step_000000105")
    shutil.rmtree(level1 / "final")
    data_files = [p for p in (level1 / "step_000000105").rglob("*") if p.is_file() and p.parent.name == "d"]
    for path in data_files:
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    capsys.readouterr()
    run_lottery(resumable_config(levels=1), runs_root=root, checkpoint_every="1ep", progress=False)
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("lth: warning:")]
    assert len(warnings) == 1 and "step_000000105" in warnings[0]
    assert "damaged" in warnings[0] or "digest" in warnings[0]
    assert results_bytes(root) == results_bytes(reference)


def test_flipped_bytes_fail_the_digest(tmp_path):
    from lth.store import checkpoints

    tree = {"w": np.arange(1000, dtype=np.float32)}
    checkpoints.save(tmp_path / "c", tree, {"note": 1})
    back, record = checkpoints.load(tmp_path / "c", tree)
    np.testing.assert_array_equal(back["w"], tree["w"]) and record == {"note": 1}
    record_file = next(p for p in (tmp_path / "c").rglob("*") if p.is_file() and p.parent.name == "record")
    record = json.loads(record_file.read_text())
    record["digest"] = "0" * 64
    record_file.write_text(json.dumps(record))
    with pytest.raises(checkpoints.CheckpointError, match="fails its digest"):
        checkpoints.load(tmp_path / "c", tree)


def test_run_refuses_while_another_process_holds_it(tmp_path, capsys):
    from lth.cli import main

    config = tiny_config()
    run = RunDir(tmp_path, config)
    run.create()
    hold = ("import sys, time; from lth.store.lock import RunLock; RunLock(sys.argv[1]).acquire(); "
            "print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(run.lock_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LthError, match=f"in use by process {holder.pid}"):
            run_lottery(config, runs_root=tmp_path, progress=False)
        assert not (run.path / "replicate_00").exists()
        code = main(["run", "mlp_mnist1d", "--variant", "smoke", "--runs", str(tmp_path)])
        assert code == 0  # another config: another directory, no conflict
    finally:
        holder.kill()
        holder.wait()


def test_replicates_and_aggregate(tmp_path):
    records = run_lottery(tiny_config(levels=1), runs_root=tmp_path, replicates=3, progress=False)
    (run,) = list(tmp_path.iterdir())
    reps = [json.loads((run / f"replicate_{r:02d}" / "results.json").read_text()) for r in range(3)]
    assert [len(r) for r in reps] == [2, 2, 2]
    accs = [r[1]["early_stop_test_accuracy"] for r in reps]
    assert len(set(accs)) > 1  # different seeds
    assert records[1]["replicates"] == 3
    assert records[1]["early_stop_test_accuracy"] == pytest.approx(np.mean(accs))
    assert records[1]["early_stop_test_accuracy_sample_std"] == pytest.approx(np.std(accs, ddof=1))
    # replicate 0 equals a single-replicate run of the same seed
    single = run_lottery(tiny_config(levels=1), runs_root=tmp_path / "single", progress=False)
    assert single == reps[0]
    # more replicates later: the finished ones are reused, not recomputed
    before = (run / "replicate_00" / "results.json").stat().st_mtime_ns
    run_lottery(tiny_config(levels=1), runs_root=tmp_path, replicates=4, progress=False)
    assert (run / "replicate_00" / "results.json").stat().st_mtime_ns == before
    assert json.loads((run / "results.json").read_text())[0]["replicates"] == 4
    rows = list_runs(tmp_path)
    assert rows[0]["replicates"] == 4 and rows[0]["levels_done"] == 2


def test_aggregate_hand_worked():
    a = [{"level": 0, **{k: 1.0 for k in ("density", "percent_remaining", "weights_remaining", "test_accuracy",
                                             "early_stop_iteration", "early_stop_test_accuracy",
                                             "early_stop_val_loss", "best_test_accuracy")}}]
    b = [{**a[0], "test_accuracy": 0.5}]
    (row,) = aggregate([a, b])
    assert row["test_accuracy"] == 0.75 and row["replicates"] == 2
    assert row["test_accuracy_sample_std"] == pytest.approx(np.sqrt(0.125))  # (2 * 0.25^2) / (2 - 1)


def test_replicates_in_pinned_worker_processes_equal_one_by_one(tmp_path):
    """Worker processes (one core each) compute byte-identical records to the sequential loop."""
    from lth.execution.layout import choose_workers

    config = tiny_config(levels=1)
    sequential = run_lottery(config, runs_root=tmp_path / "seq", replicates=2, workers=1, progress=False,
                             wandb="disabled")
    parallel = run_lottery(config, runs_root=tmp_path / "par", replicates=2, workers=2, progress=False,
                           wandb="disabled")
    assert parallel == sequential
    for r in range(2):
        (a,) = (tmp_path / "seq").glob(f"*/replicate_{r:02d}/results.json")
        (b,) = (tmp_path / "par").glob(f"*/replicate_{r:02d}/results.json")
        assert a.read_bytes() == b.read_bytes()
    assert choose_workers(None, 1) == 1 and choose_workers(3, 2) == 2 and choose_workers(4, 4, data_parallel=True) == 1
    with pytest.raises(LthError, match="workers must be >= 1"):
        choose_workers(0, 2)


def test_checkpoint_period_parsing():
    from lth.errors import ConfigError
    from lth.spec.parse import CheckpointPeriod
    from lth.spec.parse import parse_checkpoint_period

    assert parse_checkpoint_period("10min", 35) == CheckpointPeriod(seconds=600.0)
    assert parse_checkpoint_period("90s", 35) == CheckpointPeriod(seconds=90.0)
    assert parse_checkpoint_period("5ep", 35) == CheckpointPeriod(steps=175)
    assert parse_checkpoint_period("2000it", 35) == CheckpointPeriod(steps=2000)
    never = parse_checkpoint_period("0ep", 35)
    assert not never.due(10**9, 10**9) and not parse_checkpoint_period("0min", 35).due(10**9, 10**9)
    assert CheckpointPeriod(seconds=600).due(1, 600) and not CheckpointPeriod(seconds=600).due(10**6, 599)
    with pytest.raises(ConfigError, match=r"invalid checkpoint period '10h'.*'10min'"):
        parse_checkpoint_period("10h", 35)


def test_time_based_checkpoints_follow_the_wall_clock(tmp_path, monkeypatch):
    """checkpoint_every="10min": a mid-level checkpoint at the first epoch boundary after 10 minutes."""
    import lth.execution.recorder
    from lth.store import ReplicateDir

    now = [0.0]

    def clock():  # every reading advances 4 minutes: a checkpoint at every third epoch boundary or so
        now[0] += 240.0
        return now[0]

    saved = []
    original = ReplicateDir.save_level_step
    monkeypatch.setattr(lth.execution.recorder, "clock", clock)
    monkeypatch.setattr(ReplicateDir, "save_level_step",
                        lambda self, level, state, *a: (saved.append((level, int(state.step))),
                                                        original(self, level, state, *a)))
    run_lottery(resumable_config(levels=0, **{"training.length": "8ep"}), runs_root=tmp_path, progress=False,
                wandb="disabled", checkpoint_every="10min")
    steps = [step for _, step in saved]
    assert steps and all(step % 35 == 0 for step in steps), steps  # epoch boundaries only
    assert len(steps) < 7  # not at every one of the 7 inner boundaries: only once 10 minutes have passed
    saved.clear()
    run_lottery(resumable_config(levels=0, **{"training.length": "8ep"}), runs_root=tmp_path / "b", progress=False,
                wandb="disabled", checkpoint_every="0min")
    assert saved == []
