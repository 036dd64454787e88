"""The command line: an end-to-end run, and bad input -> one line on stderr, exit code 2, nothing written."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import run_cli




def test_end_to_end_smoke_run(capsys, runs_dir):
    code, out, err = run_cli(capsys, "run", "lenet300_mnist", "--variant", "smoke", "--runs", str(runs_dir))
    assert code == 0, err
    (run,) = list(runs_dir.iterdir())
    assert run.name.startswith("lenet300_mnist-")
    records = json.loads((run / "replicate_00" / "results.json").read_text())
    assert [r["level"] for r in records] == [0, 1, 2]
    assert [round(r["percent_remaining"], 2) for r in records] == [100.0, 80.04, 64.06]  # 20 % hidden, 10 % output
    assert (run / "accuracy_vs_sparsity.png").stat().st_size > 10_000
    assert "early-stop acc" in out and "64.06" in out  # the table
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "lenet300_100" and config["training"]["length"] == "60it"

    code, out, _ = run_cli(capsys, "ls", "--runs", str(runs_dir))
    assert out.splitlines()[0] == f"runs under {runs_dir} (directories <experiment>-<hash>)"
    (row,) = [line for line in out.splitlines() if line.startswith("lenet300_mnist")]
    name, hash_, levels, reps = row.split()[:4]
    assert run.name == f"{name}-{hash_}" and levels == "3/3" and reps == "1" and row.endswith(" -")  # nothing differs


def test_ls_lists_a_run_without_a_validation_set_by_its_end_of_training_accuracy(capsys, runs_dir):
    """`lth ls` once crashed (TypeError) as soon as the run root held a run with no early stop."""
    from helpers import tiny_config

    from lth.jobs.lottery import run_lottery

    records = run_lottery(tiny_config(levels=1, **{"data.validation_size": 0}), runs_root=runs_dir, wandb="disabled",
                          progress=False)
    code, out, err = run_cli(capsys, "ls", "--runs", str(runs_dir))
    assert code == 0, err
    (row,) = [line for line in out.splitlines() if line.startswith("tiny")]
    assert f"{100 * records[0]['test_accuracy']:.2f}%" in row


def test_overrides_change_the_run(capsys, runs_dir):
    code, _, err = run_cli(capsys, "run", "mlp_mnist1d", "--variant", "smoke", "--levels", "1", "--prune-fraction",
                           "0.5", "--strategy", "global", "--set", "optimizer.name=sgd", "--set",
                           "optimizer.momentum=0.9", "--no-progress", "--runs", str(runs_dir))
    assert code == 0, err
    (run,) = list(runs_dir.iterdir())
    config = json.loads((run / "config.json").read_text())
    assert config["levels"] == 1 and config["pruning"]["fraction"] == 0.5 and config["pruning"]["strategy"] == "global"
    assert config["optimizer"]["name"] == "sgd" and config["optimizer"]["momentum"] == 0.9
    records = json.loads((run / "replicate_00" / "results.json").read_text())
    assert records[1]["density"] == pytest.approx(0.5, abs=1e-3)


BAD = [
    (["run", "no_such_experiment"], "unknown experiment 'no_such_experiment'"),
    (["run", "lenet300_mnist", "--variant", "huge"], "unknown variant"),
    (["run", "lenet300_mnist", "--set", "model=resnet9000"], "unknown model 'resnet9000'"),
    (["run", "lenet300_mnist", "--dataset", "imagenet"], "unknown dataset 'imagenet'"),
    (["run", "lenet300_mnist", "--prune-fraction", "1.5"], "prune fraction must be in (0, 1)"),
    (["run", "lenet300_mnist", "--prune-fraction", "0"], "prune fraction must be in (0, 1)"),
    (["run", "lenet300_mnist", "--levels", "-2"], "levels must be >= 0"),
    (["run", "lenet300_mnist", "--variant", "quick", "--batch-size", "100000"], "batch size 100000 is larger"),
    (["run", "lenet300_mnist", "--variant", "smoke", "--rewind", "500it"], "rewind point '500it'"),
    (["run", "lenet300_mnist", "--rewind", "yesterday"], "invalid duration"),
    (["run", "lenet300_mnist", "--set", "pruning.speed=3"], "unknown config field"),
    (["run", "lenet300_mnist", "--set", "oops"], "--set needs FIELD=VALUE"),
    (["run", "lenet300_mnist", "--levels", "many"], "invalid int value"),
    (["frobnicate"], "invalid choice"),
]


@pytest.mark.parametrize("argv,message", BAD, ids=[" ".join(a[1:] or a) for a, _ in BAD])
def test_bad_input_one_line_exit_2(capsys, runs_dir, argv, message):
    code, _, err = run_cli(capsys, *argv, *(["--runs", str(runs_dir)] if argv[0] == "run" else []))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert message in lines[0]
    assert "Traceback" not in err
    assert not runs_dir.exists()


def _save_wrong_mask(path):
    np.savez(path, **{"fc1/kernel": np.ones((784, 299), bool)})


def test_mask_that_does_not_fit(capsys, runs_dir, tmp_path):
    wrong = tmp_path / "wrong.npz"
    _save_wrong_mask(wrong)
    smoke = ("run", "lenet300_mnist", "--variant", "smoke", "--runs", str(runs_dir))
    code, _, err = run_cli(capsys, *smoke, "--mask", str(wrong))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "fc1/kernel has shape (784, 299) in the mask but (784, 300)" in err
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file")
    code, _, err = run_cli(capsys, *smoke, "--mask", str(garbage))
    assert code == 2 and "not a readable .npz mask" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(capsys, *smoke, "--mask", str(tmp_path / "nope.npz"))
    assert code == 2 and "not found" in err
    assert not runs_dir.exists()


def test_real_entry_point_exit_code(tmp_path):
    """The installed `lth` program itself: exit code 2, one line, no traceback."""
    env = {**os.environ, "LTH_RUNS": str(tmp_path / "runs"), "WANDB_MODE": "disabled"}
    proc = subprocess.run([sys.executable, "-m", "lth.cli", "run", "lenet300_mnist", "--prune-fraction", "2"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    expected = "lth: error: prune fraction must be in (0, 1), got 2.0: e.g. 0.2 prunes 20% per level"
    assert proc.stderr.strip().splitlines() == [expected]
    assert not (tmp_path / "runs").exists()


def test_plot_compares_runs_with_differing_fields_in_the_legend(capsys, runs_dir, tmp_path):
    from lth.analysis import legend_labels

    for rewind in ("0it", "10it"):
        code, _, err = run_cli(capsys, "run", "mlp_mnist1d", "--variant", "smoke", "--rewind", rewind, "--no-progress",
                               "--runs", str(runs_dir))
        assert code == 0, err
    runs = sorted(p.name for p in runs_dir.iterdir())
    out = tmp_path / "cmp.png"
    code, stdout, err = run_cli(capsys, "plot", *runs, "--out", str(out), "--runs", str(runs_dir))
    assert code == 0, err
    assert out.stat().st_size > 10_000
    configs = [json.loads((runs_dir / r / "config.json").read_text()) for r in runs]
    assert sorted(legend_labels(configs)) == ["mlp_mnist1d rewind=0it", "mlp_mnist1d rewind=10it"]
    code, _, err = run_cli(capsys, "plot", "nope", "--runs", str(runs_dir))
    assert code == 2 and "no run 'nope'" in err


def test_output_cut_short_by_its_reader_is_no_error(tmp_path):
    """`lth run ... --dry-run | head -1`: once the reader has gone, the rest of the output is dropped
    quietly (exit 0, no "Broken pipe" error line). Here the reader is gone before the first write."""
    import os
    import subprocess
    import sys

    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run([sys.executable, "-m", "lth.cli", "run", "mlp_mnist1d", "--variant", "smoke",
                               "--dry-run"], stdout=write, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                              env={**os.environ, "WANDB_MODE": "disabled"})
    finally:
        os.close(write)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
