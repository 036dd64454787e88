"""The command line answers before it imports jax: `lth --help`, `lth ls`, `lth experiments` and
argument / config errors run in a process where jax is never imported (checked by what the process
has imported, not by timing)."""

import json
import os
import subprocess
import sys

from helpers import ROOT, tiny_config

# Runs `lth.cli.main` on each argv in turn (in one process) and prints, per command, its exit code,
# whether jax has been imported by then, and its first line on stderr.
PROBE = """
import contextlib, io, json, sys
from lth.cli import main
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code
    print(json.dumps({"argv": argv, "code": code, "jax": "jax" in sys.modules, "error": err.getvalue()}))
"""


def _probe(commands: list[list[str]], tmp_path) -> list[dict]:
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(ROOT), "LTH_RUNS": str(tmp_path / "runs")}
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(commands)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines()]


def _finished_looking_run(root) -> str:
    """A run directory as `lth ls` reads it: config.json and one replicate's records (levels 0-2); its path."""
    from lth.store import RunDir

    run = RunDir(root, tiny_config())
    run.create()
    rep = run.replicate(0)
    rep.mkdir()
    rep.write_results([{"level": level, "percent_remaining": 100 * 0.7 ** level, "early_stop_test_accuracy": 0.9,
                        "density": 0.7 ** level} for level in range(3)])
    return str(run.path)


ARGUMENT_ERRORS = [
    ["run", "no_such_experiment"],
    ["run", "lenet300_mnist", "--variant", "huge"],
    ["run", "lenet300_mnist", "--levels", "-1"],
    ["run", "lenet300_mnist", "--prune-fraction", "1.5"],
    ["run", "lenet300_mnist", "--set", "model=resnet9000"],
    ["run", "lenet300_mnist", "--dataset", "imagenet"],
    ["run", "lenet300_mnist", "--set", "optimizer.name=rmsprop"],
    ["run", "lenet300_mnist", "--batch-size", "0"],
    ["run", "lenet300_mnist", "--rewind", "yesterday"],
    ["run", "lenet300_mnist", "--method", "magic"],
    ["run", "lenet300_mnist", "--set", "sparse.structure=5:4"],
    ["run", "lenet300_mnist", "--set", "pruning.speed=3"],
    ["run", "lenet300_mnist", "--replicates", "0"],
    ["run", "lenet300_mnist", "--workers", "0"],
    ["run", "lenet300_mnist", "--layout", "diagonal"],
    ["run", "lenet300_mnist", "--checkpoint-every", "sometimes"],
    ["run", "lenet300_mnist", "--levels", "many"],
    ["frobnicate"],
]


def test_listing_help_and_argument_errors_import_no_jax(tmp_path):
    _finished_looking_run(tmp_path / "runs")
    results = _probe([["--help"], ["experiments"], ["ls"], *ARGUMENT_ERRORS], tmp_path)
    assert [r["argv"] for r in results] == [["--help"], ["experiments"], ["ls"], *ARGUMENT_ERRORS]
    for r in results:
        assert not r["jax"], f"`lth {' '.join(r['argv'])}` imported jax"
    assert [r["code"] for r in results[:3]] == [0, 0, 0]
    for r in results[3:]:
        assert r["code"] == 2 and r["error"].startswith("lth: error: ") and r["error"].count("\n") == 1, r


def test_ls_lists_the_run_without_jax(tmp_path):
    _finished_looking_run(tmp_path / "runs")
    proc = subprocess.run([sys.executable, "-c", "import sys\nfrom lth.cli import main\nmain(['ls'])\n"
                           "print('jax imported' if 'jax' in sys.modules else 'no jax')"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "LTH_RUNS": str(tmp_path / "runs")})
    assert proc.returncode == 0, proc.stderr
    (row,) = [line for line in proc.stdout.splitlines() if line.startswith("tiny")]
    assert row.split()[2:4] == ["3/3", "1"] and "49.00%  90.00%" in row  # the best ticket: the sparsest level at 90 %
    assert proc.stdout.splitlines()[-1] == "no jax"


# The argument errors of the commands that read a run or a file, each with a piece of its message:
# they answer from the run's files (config.json, records) or the file system alone. RUN: a run of
# levels 0-2, one replicate (`_finished_looking_run`).
RUN_ERRORS = [
    (["control", "no_such_run", "reinit"], "no run 'no_such_run'"),
    (["control", "RUN", "reinit,magic"], "unknown control source 'magic'"),
    (["control", "RUN", "imp"], "'imp' alone is the main line"),
    (["control", "RUN", "reinit", "--levels", "0-x"], "invalid level list"),
    (["control", "RUN", "reinit", "--levels", "2-1"], "invalid level range"),
    (["control", "RUN", "reinit", "--levels", "0-9"], "beyond the run's last level 2"),
    (["instability", "no_such_run", "--rewind", "0"], "no run 'no_such_run'"),
    (["instability", "RUN", "--rewind", "5parsecs"], "invalid duration '5parsecs'"),
    (["instability", "RUN", "--rewind", ","], "no rewind step"),
    (["instability", "RUN", "--rewind", "0", "--bn-state", "magic"], "unknown bn_state 'magic'"),
    (["instability", "RUN", "--rewind", "0", "--levels", "7"], "beyond the run's last level 2"),
    (["instability", "RUN", "--rewind", "0", "--replicate", "3"], "replicate 3 of"),
    (["ticket", "inspect", "missing.safetensors"], "ticket file 'missing.safetensors' not found"),
    (["ticket", "inspect", "."], "is a directory"),
    (["ticket", "compact", "missing.safetensors"], "ticket file 'missing.safetensors' not found"),
    (["ticket", "compact", "."], "is a directory"),
    (["ticket", "compact", "missing.safetensors", "--align", "0"], "must be a positive integer, got 0"),
    (["ticket", "export", "no_such_run", "--level", "0"], "no run 'no_such_run'"),
    (["ticket", "export", "RUN", "--level", "5"], "has finished levels 0-2: no level 5"),
    (["ticket", "export", "RUN", "--level", "0", "--replicate", "3"], "1 replicate(s): no replicate 3"),
    (["plot", "RUN", "no_such_run"], "no run 'no_such_run'"),
    (["sweep", "no_such_sweep"], "unknown sweep 'no_such_sweep'"),
    (["sweep", "lenet300_rewinding", "--cpus-per-run", "0"], "cpus per run must be > 0"),
    (["sweep", "lenet300_rewinding", "--gpus-per-run", "-1"], "gpus per run >= 0"),
    (["sweep", "lenet300_rewinding", "--max-retries", "-1"], "max retries must be >= 0"),
    (["sweep", "lenet300_rewinding", "--address", "nowhere"], "invalid Ray address 'nowhere'"),
    (["sweep", "lenet300_rewinding", "--checkpoint-every", "often"], "invalid checkpoint period"),
    (["run", "lenet300_mnist", "--mask", "missing.npz"], "mask file 'missing.npz' not found"),
    (["run", "lenet300_mnist", "--ticket", "missing.safetensors"], "ticket file 'missing.safetensors' not found"),
    (["run", "lenet300_mnist", "--ticket", "t.safetensors", "--mask", "m.npz"], "pass --ticket or --mask, not both"),
]


def test_run_and_file_argument_errors_import_no_jax(tmp_path):
    run = _finished_looking_run(tmp_path / "runs")
    commands = [[run if a == "RUN" else a for a in argv] for argv, _ in RUN_ERRORS]
    results = _probe(commands, tmp_path)
    assert [r["argv"] for r in results] == commands
    for r, (_, expected) in zip(results, RUN_ERRORS):
        assert not r["jax"], f"`lth {' '.join(r['argv'])}` imported jax"
        assert r["code"] == 2 and r["error"].startswith("lth: error: ") and r["error"].count("\n") == 1, r
        assert expected in r["error"], r


def test_a_finished_run_passes_the_checks_before_jax(tmp_path):
    """The checks let a valid command through: it reaches the code that needs jax (which then fails
    here, as the run has records but no masks or checkpoints)."""
    run = _finished_looking_run(tmp_path / "runs")
    results = _probe([["control", run, "reinit", "--levels", "0-2"], ["ticket", "export", run, "--level", "2"]],
                     tmp_path)
    assert all(r["jax"] for r in results), results
