"""Errors and what `lth run` shows before and while it runs: did-you-mean for misspelt names, options and
choices; the valid fields of a section for a wrong --set; an option and a --set that give one field two
values; --dry-run (every field with its value, the run directory, nothing written); --no-progress
keeps the paths."""

import os
import subprocess
import sys

import pytest
from helpers import ROOT, run_cli

from lth.spec.config import PruningConfig, TrainingConfig, field_types, replace
from lth.spec.experiments import load_config
from lth.spec.fields import flat_fields, value_text
from lth.store import run_name

MISSPELT = [
    (["run", "lenet300_mnsit"], "unknown experiment 'lenet300_mnsit': did you mean lenet300_mnist?"),
    (["run", "lenet300_mnist", "--varient", "quick"], "unrecognized arguments: --varient quick: did you mean "
                                                      "--variant? (see `lth run --help`)"),
    (["run", "lenet300_mnist", "--set", "pruning.fration=0.3"], "unknown config field 'pruning.fration': did you "
                                                                "mean pruning.fraction?"),
    (["control", "RUN", "random_layrwise"], "unknown control source 'random_layrwise': did you mean "
                                            "random_layerwise?"),
    (["run", "lenet300_mnist", "--strategy", "globl"], "did you mean global?"),
    (["rn", "lenet300_mnist"], "did you mean run?"),
    (["ls", "--chek"], "unrecognized arguments: --chek: did you mean --check? (see `lth ls --help`)"),
]


@pytest.mark.parametrize("argv,message", MISSPELT, ids=[" ".join(a) for a, _ in MISSPELT])
def test_misspellings_get_a_did_you_mean(capsys, runs_dir, argv, message):
    code, out, err = run_cli(capsys, *argv, *(["--runs", str(runs_dir)] if argv[0] != "rn" else []))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("lth: error: "), err
    assert message in lines[0]
    assert not runs_dir.exists()


def test_a_misspelt_option_from_the_real_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lth.cli", "run", "lenet300_mnist", "--varient", "quick"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "LTH_RUNS": str(tmp_path / "runs")})
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines()[-1] == ("lth: error: unrecognized arguments: --varient quick: did you "
                                                    "mean --variant? (see `lth run --help`)")


@pytest.mark.parametrize("section,fields", [("pruning", PruningConfig), ("training", TrainingConfig)])
def test_a_wrong_set_field_lists_the_fields_of_its_section(capsys, runs_dir, section, fields):
    code, _, err = run_cli(capsys, "run", "lenet300_mnist", "--set", f"{section}.nonsense=1", "--runs", str(runs_dir))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert all(f"{section}.{name}" in err for name in field_types(fields)), err
    code, _, err = run_cli(capsys, "run", "lenet300_mnist", "--set", f"{section}=1", "--runs", str(runs_dir))
    assert code == 2 and f"{section} is a section of fields" in err
    assert all(f"{section}.{name}" in err for name in field_types(fields)), err
    assert not runs_dir.exists()


CONFLICTS = [
    (["--set", "training.batch_size=128", "--batch-size", "64"], "--batch-size 64 and --set training.batch_size=128 "
                                                                 "both set training.batch_size: give one of them"),
    (["--epochs", "2", "--set", "training.length=3ep"], "--epochs 2 and --set training.length=3ep both set "
                                                        "training.length"),
    (["--set", "seed=1", "--set", "seed=2"], "--set seed=1 and --set seed=2 both set seed"),
    (["--densities", "0.5", "--set", "sparse.densities=[0.2]"], "both set sparse.densities"),
]


@pytest.mark.parametrize("extra,message", CONFLICTS, ids=[" ".join(e) for e, _ in CONFLICTS])
def test_an_option_and_a_set_giving_one_field_two_values_is_an_error(capsys, runs_dir, extra, message):
    code, out, err = run_cli(capsys, "run", "mlp_mnist1d", "--variant", "smoke", *extra, "--runs", str(runs_dir))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and message in lines[0], err
    assert not runs_dir.exists()


def test_dry_run_prints_every_field_and_the_run_directory_and_writes_nothing(tmp_path):
    """--dry-run in a fresh process: the resolved config field by field, the directory the run would
    write (the one the run then writes), and nothing written, not even the run root."""
    runs = tmp_path / "runs"
    argv = ["run", "mlp_mnist1d", "--variant", "smoke", "--no-controls", "--seed", "3", "--batch-size", "50",
            "--set", "training.batch_size=50", "--runs", str(runs)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "disabled"}
    proc = subprocess.run([sys.executable, "-m", "lth.cli", *argv, "--dry-run"], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert list(tmp_path.iterdir()) == []  # no run root, nothing else
    config = replace(load_config("mlp_mnist1d", "smoke"), seed=3, **{"training.batch_size": 50})
    lines = proc.stdout.splitlines()
    assert f"run directory: {runs / run_name(config)} (new)" in lines
    printed = [line.split("#")[0].strip() for line in lines if line.startswith("  ")]
    assert printed == [f"{field}={value_text(value)}" for field, value in flat_fields(config).items()]
    (seed,) = [line for line in lines if line.strip().startswith("seed=")]
    assert seed.split("#")[1].strip() == "--seed (experiment: 0)"


def test_no_progress_still_prints_the_paths(capsys, runs_dir):
    argv = ["run", "mlp_mnist1d", "--variant", "smoke", "--levels", "1", "--no-controls", "--no-progress"]
    code, out, err = run_cli(capsys, *argv, "--runs", str(runs_dir), "--dry-run")
    assert code == 0 and not runs_dir.exists(), err
    (planned,) = [line.removesuffix(" (new)") for line in out.splitlines() if line.startswith("run directory: ")]
    code, out, err = run_cli(capsys, *argv, "--runs", str(runs_dir))
    assert code == 0, err
    (run,) = runs_dir.iterdir()
    assert planned == f"run directory: {run}"  # where the dry run said
    assert out.splitlines() == [f"run directory: {run}", f"results: {run / 'results.json'}",
                                f"plot:    {run / 'accuracy_vs_sparsity.png'}",
                                f"         {run / 'accuracy_vs_cost.png'}"]
    code, out, err = run_cli(capsys, "control", run.name, "imp+reinit", "--levels", "1", "--no-progress",
                             "--runs", str(runs_dir))
    assert code == 0, err
    assert out.splitlines() == [f"results: {run / 'controls' / 'imp+reinit' / 'results.json'}",
                                f"plot:    {run / 'accuracy_vs_sparsity.png'}",
                                f"         {run / 'accuracy_vs_cost.png'}"]
