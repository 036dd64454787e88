"""Bad input never gives a traceback, a silent wrong result or a half-written directory: one line on
stderr, exit code 2, nothing written, nothing already there touched (docs/reliability.md)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import run_cli

from lth.spec.parse import parse_levels
from lth.errors import ConfigError, os_error_text
from lth.execution.workers import error_text
from lth.spec.files import replacing
from lth.store import best_ticket

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ("run", "mlp_mnist1d", "--variant", "smoke", "--no-progress")



def snapshot(path: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under `path` (empty if there is none)."""
    if not path.exists():
        return {}
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def assert_clean(code: int, err: str, expect: str | None = None) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("lth: error: "), (code, err)
    if expect is not None:
        assert expect in lines[0], lines[0]


@pytest.mark.parametrize("assignment,expect", [
    ("training.batch_size=abc", "training.batch_size must be an integer"),
    ("seed=abc", "seed must be an integer"),
    ("seed=4294967296", "would train the network of seed 0"),  # the PRNG's 32 bits: 2**32 aliases 0
    ("seed=99999999999999999999", "must be in 0..4294967295"),  # overflows the PRNG
    ("seed=-1", "seed must be >= 0"),
    ("optimizer.learning_rate=abc", "learning_rate must be a finite number"),
    ("optimizer.learning_rate=NaN", "finite number"),
    ("optimizer.learning_rate=Infinity", "finite number"),
    ("pruning.fraction=[1,2]", "pruning.fraction must be a finite number"),
    ('data={"x": 1}', "data is a section of fields"),
    ("training=5", "training is a section of fields, not a value (5): set one of them, e.g. training.batch_size=VALUE"),
    ('pruning.layer_fractions=[["x"]]', "pairs"),
    ("levels=true", "levels must be an integer"),
    ("levels=1.5", "levels must be an integer"),
    ("pruning.exclude=5", "pruning.exclude must be a list of strings"),
    ("pruning.exclude=output/kernel", "pruning.exclude must be a list of strings"),
    ('pruning.prunable=["("]', "invalid regex"),
    ('pruning.prunable=["nomatch"]', "no parameter matches"),
    ("name=../../escape", "not a plain name"),
    ("optimizer.b2=1.5", "optimizer.b2 must be in [0, 1)"),
    ("levels=1000000000", "would keep no weight at level"),
    ("nofield=1", "unknown config field"),
])
def test_bad_set_values_are_one_line_and_write_nothing(capsys, tmp_path, assignment, expect):
    code, _, err = run_cli(capsys, *SMOKE, "--runs", str(tmp_path / "runs"), "--set", assignment)
    assert_clean(code, err, expect)
    assert snapshot(tmp_path) == {}  # not even an empty run directory
    assert not (ROOT.parent / "escape").exists()


@pytest.mark.parametrize("flags,expect", [
    (("--lr", "nan"), "finite number"),
    (("--lr", "inf"), "finite number"),
    (("--lr", "-1"), "learning rate must be > 0"),
    (("--levels", "1000000000"), "would keep no weight at level"),
    (("--batch-size", "0"), "batch size must be >= 1"),
    (("--replicates", "0"), "replicates must be >= 1"),
    (("--seed", "4294967294", "--replicates", "3"), "seeds 4294967294-4294967296"),  # the last replicate's
    (("--checkpoint-every", "soon"), "invalid checkpoint period"),
    (("--runs", ""), "the run root is empty"),
    (("--runs", "/dev/null"), "not a directory"),
    (("--layout", "magic"), "unknown replicate layout"),
])
def test_bad_flags_are_one_line(capsys, tmp_path, monkeypatch, flags, expect):
    monkeypatch.chdir(tmp_path)
    runs = () if "--runs" in flags else ("--runs", str(tmp_path / "runs"))
    code, _, err = run_cli(capsys, *SMOKE, *runs, *flags)
    assert_clean(code, err, expect)
    assert snapshot(tmp_path) == {}


METHOD_SMOKE = ("run", "lenet300_mnist", "--variant", "smoke", "--no-progress")


@pytest.mark.parametrize("method", ["static", "snip", "rigl", "earlybird"])
def test_a_method_density_that_empties_a_kernel_is_refused(capsys, tmp_path, method):
    """0.03 % under the uniform distribution with no dense layer keeps 0.3 of the output layer's 1,000
    weights: refused before anything is written, as IMP refuses a level that would keep none."""
    code, _, err = run_cli(capsys, *METHOD_SMOKE, "--runs", str(tmp_path / "runs"), "--method", method,
                           "--densities", "0.0003", "--set", "sparse.distribution=uniform",
                           "--set", "sparse.dense=none")
    assert_clean(code, err, "would keep no weight of output/kernel under the uniform layer distribution")
    assert snapshot(tmp_path) == {}


def test_a_repeated_density_is_refused(capsys, tmp_path):
    code, _, err = run_cli(capsys, *METHOD_SMOKE, "--runs", str(tmp_path / "runs"), "--method", "static",
                           "--densities", "0.5,0.2,0.5")
    assert_clean(code, err, "--densities repeats 0.5")
    assert snapshot(tmp_path) == {}


def test_a_run_root_that_is_a_file_or_under_proc(capsys, tmp_path):
    file = tmp_path / "file"
    file.write_text("x")
    code, _, err = run_cli(capsys, *SMOKE, "--runs", str(file))
    assert_clean(code, err, "not a directory")
    code, _, err = run_cli(capsys, *SMOKE, "--runs", str(file / "below"))
    assert_clean(code, err, "not a directory")
    code, _, err = run_cli(capsys, *SMOKE, "--runs", "/proc/lth-runs")
    assert_clean(code, err)
    assert file.read_text() == "x"


def test_an_unusable_data_directory(capsys, tmp_path):
    file = tmp_path / "data"
    file.write_text("x")
    code, _, err = run_cli(capsys, *SMOKE, "--runs", str(tmp_path / "runs"), "--data-dir", str(file))
    assert_clean(code, err)
    assert file.read_text() == "x" and not (tmp_path / "runs").exists()


EXPERIMENT_FILES = {
    "syntax": ("def get_config(:\n", "syntax error at line 1"),
    "import": ("import no_such_module_lth\n", "ModuleNotFoundError"),
    "raises": ("def get_config(variant):\n    raise ValueError('boom')\n", "raised ValueError: boom"),
    "signature": ("def get_config(a, b):\n    return None\n", "raised TypeError"),
    "not_callable": ("get_config = 5\n", "defines no function get_config"),
    "wrong_type": ("def get_config(variant):\n    return {'name': 'x'}\n", "must return an lth.spec.config"),
    "bad_field": ("import lth\ndef get_config(variant):\n    return lth.ExperimentConfig(levels='3')\n",
                  "levels must be an integer"),
    "exits": ("import sys\nsys.exit(0)\n", "SystemExit: sys.exit(0) called while lth loaded it (line 2)"),
    "exits_in_get_config": ("def get_config(variant):\n    raise SystemExit\n", "raised SystemExit"),
    "raises_at_line": ("\n\ndef get_config(variant):\n    raise ValueError('boom')\n", "boom (line 4)"),
    "variants_string": ("VARIANTS = 'smoke'\ndef get_config(variant):\n    return None\n",
                        "VARIANTS in"),
    "controls_string": ("from lth.spec.experiments import load_config\nCONTROLS = 'rigl'\n"
                        "def get_config(variant):\n    return load_config('lenet300_mnist', 'smoke')\n",
                        "CONTROLS in"),
}


@pytest.mark.parametrize("kind", sorted(EXPERIMENT_FILES))
def test_broken_experiment_files_are_one_line(capsys, tmp_path, kind):
    text, expect = EXPERIMENT_FILES[kind]
    path = tmp_path / f"broken_{kind}.py"
    path.write_text(text)
    code, _, err = run_cli(capsys, "run", str(path), "--runs", str(tmp_path / "runs"))
    assert_clean(code, err, expect)
    assert not (tmp_path / "runs").exists()


def test_level_lists_are_checked_before_they_are_built():
    with pytest.raises(ConfigError, match="beyond the run's last level 5"):
        parse_levels("0-2000000000", 5)  # instant: the range is never built
    with pytest.raises(ConfigError, match="invalid level list"):
        parse_levels("0-", 5)


def test_nan_records_never_name_a_best_ticket():
    nan = float("nan")
    assert best_ticket([{"level": 0, "density": 1.0, "early_stop_test_accuracy": nan}]) is None
    records = [{"level": 0, "density": 1.0, "early_stop_test_accuracy": 0.9},
               {"level": 1, "density": 0.5, "early_stop_test_accuracy": nan}]
    assert best_ticket(records)["level"] == 0


def test_a_diverging_run_stops_with_one_line_and_keeps_nothing_wrong(capsys, tmp_path):
    code, _, err = run_cli(capsys, *SMOKE, "--runs", str(tmp_path), "--lr", "1e6", "--iterations", "20")
    assert_clean(code, err, "diverged at iteration")
    for results in tmp_path.rglob("results.json"):  # no record with a NaN or a diverged level's numbers
        assert json.loads(results.read_text()) == []


def test_an_all_false_starting_mask_is_refused(capsys, tmp_path):
    import numpy as np

    from lth.spec.experiments import load_config
    from lth.lottery import init_params, prepare
    from lth.sparsity.masks import make_mask, mask_to_arrays

    config = load_config("mlp_mnist1d", "smoke")
    params0, _ = init_params(prepare(config))
    arrays = {k: np.zeros_like(v) for k, v in mask_to_arrays(make_mask(params0, config.pruning.prunable)).items()}
    np.savez(tmp_path / "empty.npz", **arrays)
    code, _, err = run_cli(capsys, *SMOKE, "--runs", str(tmp_path / "runs"), "--mask", str(tmp_path / "empty.npz"))
    assert_clean(code, err, "keeps no weight of")
    assert not (tmp_path / "runs").exists()


def test_control_online_without_credentials_fails_at_once(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    code, _, err = run_cli(capsys, *SMOKE, "--runs", str(tmp_path), "--wandb", "disabled")
    assert code == 0, err
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    before = snapshot(run)
    code, _, err = run_cli(capsys, "control", run.name, "reinit", "--runs", str(tmp_path), "--wandb", "online")
    assert_clean(code, err, "W&B online mode needs credentials")
    assert snapshot(run) == before


def _run_with_a_full_disk(runs: Path, *args: str) -> subprocess.CompletedProcess:
    """`lth run` under a file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored; both inherited by worker
    processes), which makes writes fail as a full disk does. The dataset is cached first and the
    compilation cache is off, so that the writes that fail are the run's own."""
    script = (
        "import resource, signal, sys\n"
        "from lth.data import load_dataset\n"
        "from lth.spec.experiments import load_config\n"
        "data = load_config('mlp_mnist1d', 'quick').data\n"
        "load_dataset(data.name, data.validation_size)\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))\n"
        "from lth.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n")
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(ROOT), "LTH_CACHE": "off"}
    return subprocess.run([sys.executable, "-c", script, "run", "mlp_mnist1d", "--variant", "quick", "--no-controls",
                           "--no-progress", "--runs", str(runs), *args], env=env, capture_output=True, text=True,
                          timeout=600)


def test_a_full_disk_is_one_line_and_keeps_what_was_finished(tmp_path):
    proc = _run_with_a_full_disk(tmp_path, "--levels", "3")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "error: no room to write (" in lines[0], proc.stderr[-3000:]
    assert "replicate_00" in lines[0]  # a write of the run's own, named
    assert not list(tmp_path.rglob("*orbax-checkpoint-tmp*"))  # no half-written checkpoint left
    for results in tmp_path.rglob("replicate_00/results.json"):  # what was finished is intact
        assert isinstance(json.loads(results.read_text()), list)


def test_a_full_disk_in_worker_processes_is_the_same_one_line(tmp_path):
    """A worker's OSError crossed back to the parent as "OSError: [Errno 27] File too large: ..."."""
    proc = _run_with_a_full_disk(tmp_path, "--levels", "1", "--replicates", "2", "--workers", "2")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith("lth: error: replicate 0: no room to write (") and "Errno" not in lines[0], lines
    assert "replicate 1: no room to write (" in lines[0] and "finished levels are kept" in lines[0], lines
    assert not list(tmp_path.rglob("*orbax-checkpoint-tmp*"))


def test_a_failed_atomic_write_names_its_file_not_the_temporary_one(tmp_path):
    """A full disk while a dataset cache was written said "no room to write (File too large)": no path."""
    target = tmp_path / "cache.npz"
    with pytest.raises(OSError) as caught, replacing(target):
        raise OSError(errno.EFBIG, "File too large")
    assert caught.value.errno == errno.EFBIG and caught.value.filename == str(target)
    assert os_error_text(caught.value).startswith(f"no room to write ({target}) (File too large)")
    assert list(tmp_path.iterdir()) == []


def test_a_workers_error_reads_as_the_cli_would_print_it():
    assert error_text(OSError(errno.ENOSPC, "No space left on device", "/r/x")) == os_error_text(
        OSError(errno.ENOSPC, "No space left on device", "/r/x"))
    assert error_text(OSError(errno.EACCES, "Permission denied", "/r")).startswith("Permission denied (/r): check")
    assert error_text(ConfigError("bad")) == "bad"
    assert error_text(RuntimeError("one\ntwo")) == "RuntimeError: one"


def test_a_fifo_as_ticket_or_mask_is_one_line_not_a_hang(capsys, tmp_path):
    fifo = tmp_path / "t.safetensors"
    os.mkfifo(fifo)
    for argv, expect in ((("ticket", "inspect", str(fifo)), "ticket file"),
                         ((*SMOKE, "--runs", str(tmp_path / "runs"), "--ticket", str(fifo)), "ticket file"),
                         ((*SMOKE, "--runs", str(tmp_path / "runs"), "--mask", str(fifo)), "mask file")):
        code, _, err = run_cli(capsys, *argv)
        assert_clean(code, err, f"{expect} '{fifo}' is not a regular file")
    assert not (tmp_path / "runs").exists()


def test_json_nested_past_the_recursion_limit_reads_as_damaged(capsys, tmp_path):
    """A results.json or manifest of 100,000 '[' raised RecursionError (a traceback); now it is damaged."""
    from lth.store.replicate import DamagedFileError, ReplicateDir

    rep = ReplicateDir(tmp_path / "replicate_00")
    rep.path.mkdir()
    rep.results_path.write_text("[" * 100_000)
    rep.manifest_path.write_text("[" * 100_000)
    with pytest.raises(DamagedFileError, match="is damaged"):
        rep.read_results()
    assert rep.manifest_damaged() and rep.read_manifest() == {}
    code, _, err = run_cli(capsys, *SMOKE, "--runs", str(tmp_path / "runs"), "--set", "levels=" + "[" * 100_000)
    assert_clean(code, err)


def test_control_levels_past_the_runs_last_level_are_said_not_skipped_in_silence(capsys, tmp_path):
    """lenet300_mnist's quick variant trains imp+reinit at levels 7, 12, 17: with --levels 2 none
    exists; the run says so (one note), and with all its levels it says nothing."""
    quick = ("run", "lenet300_mnist", "--variant", "quick", "--dry-run", "--runs", str(tmp_path / "runs"))
    code, _, err = run_cli(capsys, *quick, "--levels", "2")
    assert code == 0 and err.strip().splitlines() == [
        "lth: note: the experiment's controls (imp+reinit) at level(s) 7, 12, 17 lie past this run's last level 2: "
        "not trained (run more levels, or `lth control RUN NAME --levels L` for levels it has)"], err
    code, _, err = run_cli(capsys, *quick, "--levels", "12")
    assert code == 0 and "level(s) 17 lie past" in err
    code, _, err = run_cli(capsys, *quick)
    assert code == 0 and err == ""
    assert not (tmp_path / "runs").exists()
