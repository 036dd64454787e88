"""Output that reads well in a log: bars only on a terminal; otherwise one table row per level and a
heartbeat line per minute of a long level -- for `lth run` (a real process, its output in a file),
`lth control` and `lth instability`. The table: every replicate's own rows (also from worker
processes), each control's rows under its name, the mean +- sample std per branch and level over the
replicates, and each path once."""

import io
import json
import os
import statistics
import subprocess
import sys

from helpers import ROOT, run_cli, tiny_config

from lth.jobs.controls import run_controls
from lth.jobs.instability import run_instability
from lth.jobs.lottery import run_lottery
from lth.execution.progress import HEADER, LevelProgress, on_terminal


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_heartbeat_every_minute_with_iteration_rate_and_eta():
    out, clock = io.StringIO(), Clock()
    progress = LevelProgress(levels=3, total_steps=5000, stream=out, bars=False)
    progress.clock = clock
    progress.start_level(0, 1, 0, 80.0)
    lines = []
    for seconds, iterations in ((30, 1000), (61, 1000), (90, 500), (125, 500)):
        clock.now = 1000.0 + seconds
        progress.advance(iterations, [{"val_loss": 0.25, "val_accuracy": 0.9}] if seconds == 90 else [])
        lines.append(out.getvalue().splitlines())
    text = out.getvalue()
    assert "\r" not in text and progress.bar is None
    beats = [line for line in text.splitlines() if ": iteration " in line]
    # at 61 s: 2000 of 5000 iterations, 2000 / 61 = 32.8 it/s, 3000 left -> 91.5 s = 1m32s
    # at 125 s (64 s after the previous line): 3000 done, 24 it/s, 2000 left -> 83.3 s = 1m23s
    assert beats == ["level 1/3 (80.0% left, run ETA ?): iteration 2000/5000, 33 it/s, ETA 1m32s",
                     "level 1/3 (80.0% left, run ETA ?): iteration 3000/5000, 24 it/s, ETA 1m23s, "
                     "val_loss 0.2500, val_acc 90.00%"]
    assert len(lines[0]) == 1 and lines[0][0] == HEADER  # nothing before the first minute
    progress.end_level({"level": 1, "percent_remaining": 80.0, "early_stop_test_accuracy": 0.9,
                        "early_stop_iteration": 100, "test_accuracy": 0.91}, 130.0)
    assert out.getvalue().splitlines()[-1].split()[:3] == ["0", "1", "80.00"]


def test_bars_only_on_a_terminal(monkeypatch):
    leader, follower = os.openpty()  # a real terminal
    try:
        with open(follower, "w") as tty:
            assert on_terminal(tty) and not on_terminal(io.StringIO())
            monkeypatch.setattr(sys, "stderr", tty)
            assert LevelProgress(1, 10, stream=tty).bars
            assert not LevelProgress(1, 10, stream=io.StringIO()).bars  # stdout a file, stderr a terminal
            monkeypatch.setattr(sys, "stderr", io.StringIO())
            assert not LevelProgress(1, 10, stream=tty).bars  # stderr a file
    finally:
        os.close(leader)


def test_a_run_with_its_output_in_a_file_has_no_bars_and_a_line_per_level(tmp_path):
    log = tmp_path / "log.txt"
    env = {**os.environ, "WANDB_MODE": "disabled", "LTH_RUNS": str(tmp_path / "runs")}
    with open(log, "w") as f:
        proc = subprocess.run([sys.executable, "-m", "lth.cli", "run", "lenet300_mnist", "--variant", "smoke"],
                              stdout=f, stderr=subprocess.STDOUT, env=env, timeout=300)
    text = log.read_text()
    assert proc.returncode == 0, text
    assert "\r" not in text and "it/s" not in text
    lines = text.splitlines()
    assert lines.count(HEADER) == 1
    rows = [line.split() for line in lines if line[:1] == " " and line.split()[:1] == ["0"]]
    assert [row[1] for row in rows] == ["0", "1", "2"]  # levels 0, 1, 2 of the smoke variant
    assert [row[2] for row in rows] == ["100.00", "80.04", "64.06"]


def test_controls_and_instability_in_a_log(tmp_path, capsys):
    config = tiny_config(levels=1, **{"training.length": "20it"})
    run_lottery(config, runs_root=tmp_path, wandb="disabled", progress=False)
    (run,) = tmp_path.iterdir()
    capsys.readouterr()
    run_controls(run, "imp+reinit", "1", wandb="disabled")
    out, err = capsys.readouterr()
    assert "\r" not in out + err
    rows = [line.split() for line in out.splitlines() if line.split()[:1] == ["0"]]
    assert [row[1:3] for row in rows] == [["imp+reinit", "1"]]  # the control's name labels its row
    run_instability(run, "0", "1")
    out, err = capsys.readouterr()
    assert "\r" not in out + err
    assert [line.split()[:4] for line in out.splitlines() if "barrier" in line] == [["level", "1", "k=", "0"]]


EXPERIMENT = """from helpers import tiny_config

CONTROLS = ("imp+reinit",)
CONTROL_LEVELS = "1,2"


def get_config(variant):
    return tiny_config()
"""


def _rows(out: str, width: int) -> list[list[str]]:
    """The table rows of `out` with `width` columns (main line: 9, a control's: 10)."""
    return [line.split() for line in out.splitlines() if len(line.split()) == width and line.split()[0].isdigit()]


def _expected_row(replicate: int, record: dict, *name: str) -> list[str]:
    """rep, [control,] level, % remaining, final accuracy: the columns of the replicate's own record."""
    return [str(replicate), *name, str(record["level"]), f"{record['percent_remaining']:.2f}",
            f"{100 * record['test_accuracy']:.2f}%"]


def _mean_std(values: list[float]) -> str:
    return f"{100 * statistics.fmean(values):.2f} +- {100 * statistics.stdev(values):.2f}"


def test_replicates_table_of_lth_run_in_worker_processes(tmp_path):
    """`lth run --replicates 2` with a control, its replicates in worker processes: every level of
    every replicate prints with its own values, the control's rows under its name, then the mean +-
    sample std of every branch and level, and each path once. (The workers' rows were never
    printed; the control's rows, unnamed, stood in for the replicates'; "plot:" came twice.)"""
    (tmp_path / "tiny_controls.py").write_text(EXPERIMENT)
    env = {**os.environ, "WANDB_MODE": "disabled", "LTH_RUNS": str(tmp_path / "runs"),
           "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    proc = subprocess.run([sys.executable, "-m", "lth.cli", "run", str(tmp_path / "tiny_controls.py"), "--replicates",
                           "2", "--layout", "workers"], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    (run,) = (tmp_path / "runs").iterdir()
    main = [json.loads((run / f"replicate_{r:02d}" / "results.json").read_text()) for r in range(2)]
    control = [json.loads((run / f"replicate_{r:02d}" / "controls" / "imp+reinit" / "results.json").read_text())
               for r in range(2)]
    assert len(main[0]) == 3 and len(control[0]) == 2  # levels 0-2; the control at levels 1 and 2
    printed = sorted(row[:3] + row[5:6] for row in _rows(out, 9))
    assert printed == sorted(_expected_row(r, record) for r in range(2) for record in main[r])
    from lth.execution.progress import short_count  # the compact network's MACs, from each record

    macs = sorted(short_count(record["compact_macs"]) for records in main for record in records)
    assert sorted(row[6] for row in _rows(out, 9)) == macs
    costs = sorted(short_count(record["cumulative_train_flops"]) for records in main for record in records)
    assert sorted(row[7] for row in _rows(out, 9)) == costs  # the training FLOPs of reaching each level
    printed = sorted(row[:4] + row[6:7] for row in _rows(out, 10))
    assert printed == sorted(_expected_row(r, record, "imp+reinit") for r in range(2) for record in control[r])
    headers = [line.split()[:3] for line in out.splitlines() if line.startswith("rep ")]
    assert headers == [["rep", "level", "%"], ["rep", "control", "level"]]  # the main line's table, the control's
    summary = out[out.index("mean +- sample std over 2 replicates"):].splitlines()
    for branch, per_replicate in (("main", main), ("imp+reinit", control)):
        for level, records in enumerate(zip(*per_replicate)):
            level = records[0]["level"]
            (line,) = [line for line in summary if line.split()[:2] == [branch, str(level)]]
            assert _mean_std([r["test_accuracy"] for r in records]) in line and line.split()[-1] == "2"
    for label in ("run directory:", "results:", "plot:"):
        assert out.count(label) == 1, out
    assert f"plot:    {run / 'accuracy_vs_sparsity.png'}" in out
    assert str(run / "controls" / "imp+reinit" / "results.json") in out


def test_lth_control_labels_its_rows_with_the_control(capsys, runs_dir):
    """`lth control RUN CONTROL` on a finished run: each row carries the control's name (they were
    anonymous), the paths print once, and one replicate has no mean +- std table."""
    from lth.jobs.lottery import run_lottery

    run_lottery(tiny_config(levels=1, **{"training.length": "20it"}), runs_root=runs_dir, wandb="disabled",
                progress=False)
    (run,) = runs_dir.iterdir()
    code, out, err = run_cli(capsys, "control", str(run), "random_layerwise,imp+reinit", "--levels", "0,1",
                             "--wandb", "disabled")
    assert code == 0, err
    rows = _rows(out, 10)
    for name in ("random_layerwise", "imp+reinit"):
        records = json.loads((run / "replicate_00" / "controls" / name / "results.json").read_text())
        assert [row[:4] + row[6:7] for row in rows if row[1] == name] == [_expected_row(0, r, name) for r in records]
    assert len(rows) == 4 and "mean +- sample std" not in out
    assert out.count("plot:") == 1 and out.count("results:") == 1


def test_the_summary_has_no_early_stop_columns_without_a_validation_set():
    """The mean +- std table leaves out the early-stop columns where no row has an early stop (a run
    without a validation set), and keeps them where one has."""
    from lth.analysis.sweeps import SUMMARY_KEYS, summary_text
    from lth.analysis.tables import Table

    def table(early: float | None) -> Table:
        record = {"cell": "", "branch": "main", "level": 0, "n": 2, **{k: None for k in SUMMARY_KEYS},
                  **{f"{k}_sample_std": None for k in SUMMARY_KEYS}, "percent_remaining": 100.0,
                  "test_accuracy": 0.5, "test_accuracy_sample_std": 0.01, "early_stop_test_accuracy": early}
        return Table.from_records([record], list(record))

    head, row = summary_text(table(None), cells=False).splitlines()
    assert head.split() == ["branch", "level", "%", "remaining", "final", "acc", "%", "n"]
    assert row.split() == ["main", "0", "100.00", "50.00", "+-", "1.00", "2"]
    head, row = summary_text(table(0.4), cells=False).splitlines()
    assert "early-stop acc %" in head and row.split()[3] == "40.00"
