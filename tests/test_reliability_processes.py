"""Processes: workers die with their parent, SIGTERM ends a run like Ctrl-C, and a replicate never
mixes two numerics contexts without being told to (docs/reliability.md)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import tiny_config

from lth.errors import ConfigError
from lth.jobs.lottery import run_lottery
from lth.store.lock import RunLock

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(ROOT)}


def _lth(*args: str, cores: set[int] | None = None, **kwargs) -> subprocess.Popen:
    preexec = (lambda: os.sched_setaffinity(0, cores)) if cores else None
    return subprocess.Popen([sys.executable, "-m", "lth.cli", *args], env=ENV, preexec_fn=preexec,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def _children(pid: int) -> list[int]:
    """The child processes of `pid`, whichever of its threads started them (a task's `children` file
    lists only the children that thread forked)."""
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:  # the thread or the process is gone
            pass
    return children


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())  # a zombie is dead


def _start_workers(tmp_path: Path) -> tuple[subprocess.Popen, list[int]]:
    """`lth run` with 2 replicates in worker processes, once both workers are training (20 levels: long
    enough that the run cannot end before the test has seen both workers, however fast the machine)."""
    proc = _lth("run", "mlp_mnist1d", "--variant", "quick", "--levels", "20", "--replicates", "2",
                "--layout", "workers", "--no-progress", "--runs", str(tmp_path))
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        metrics = list(tmp_path.glob("*/replicate_0[01]/metrics.jsonl"))
        workers = [c for c in _children(proc.pid) if "spawn_main" in _cmdline(c)]
        if len(metrics) == 2 and all(m.stat().st_size for m in metrics) and len(workers) >= 2:
            return proc, workers
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("the workers never started training")


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_workers_die_with_their_parent(tmp_path, how):
    proc, workers = _start_workers(tmp_path)
    proc.send_signal(how)
    _, err = proc.communicate(timeout=60)
    if how == signal.SIGTERM:  # the same one line as Ctrl-C
        assert proc.returncode == 130 and err.strip().splitlines()[-1] == \
            "lth: interrupted; finished levels are kept in the run directory", err[-2000:]
    deadline = time.monotonic() + 10
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers), "a worker outlived its parent"
    sizes = {m: m.stat().st_size for m in tmp_path.glob("*/replicate_*/metrics.jsonl")}
    time.sleep(1.5)
    assert sizes == {m: m.stat().st_size for m in tmp_path.glob("*/replicate_*/metrics.jsonl")}  # nobody writes
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    for lock in (run / "lock", run / "replicate_00" / "lock", run / "replicate_01" / "lock"):
        with RunLock(lock):  # free at once: nothing to take over
            pass


def test_a_worker_replicate_equals_that_replicate_trained_alone_on_one_core(tmp_path):
    """The main lines compared: the smoke variant's random controls are left out of both runs."""
    both = _lth("run", "mlp_mnist1d", "--variant", "smoke", "--replicates", "2", "--layout", "workers",
                "--no-controls", "--no-progress", "--runs", str(tmp_path / "workers"))
    assert both.wait(timeout=300) == 0, both.communicate()[1][-3000:]
    alone = _lth("run", "mlp_mnist1d", "--variant", "smoke", "--seed", "1", "--no-controls", "--no-progress",
                 "--runs", str(tmp_path / "alone"), cores={min(os.sched_getaffinity(0))})
    assert alone.wait(timeout=300) == 0, alone.communicate()[1][-3000:]
    (worker,) = (tmp_path / "workers").glob("*/replicate_01/results.json")
    (single,) = (tmp_path / "alone").glob("*/replicate_00/results.json")
    assert worker.read_bytes() == single.read_bytes()
    contexts = [json.loads(p.read_text())["numerics"] for p in (worker.parent / "manifest.json",
                                                                 single.parent / "manifest.json")]
    assert contexts[0] == contexts[1] and contexts[0]["cpu_threads"] == 1


def test_resuming_under_other_numerics_is_refused_unless_allowed(tmp_path, capsys):
    config = tiny_config(levels=2)
    run_lottery(config, runs_root=tmp_path, progress=False, wandb="disabled")
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    rep = run / "replicate_00"
    records = json.loads((rep / "results.json").read_text())
    (rep / "results.json").write_text(json.dumps(records[:2]))  # level 2 to do again
    manifest = json.loads((rep / "manifest.json").read_text())
    manifest["numerics"]["cpu_threads"] = 64
    (rep / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match=r"replicate 0 ran with other numerics \(cpu_threads 64 ->") as err:
        run_lottery(config, runs_root=tmp_path, progress=False, wandb="disabled")
    assert "--allow-mixed-numerics" in str(err.value)
    assert json.loads((rep / "results.json").read_text()) == records[:2]  # untouched
    run_lottery(config, runs_root=tmp_path, progress=False, wandb="disabled", allow_mixed_numerics=True)
    assert "resumes with other numerics" in capsys.readouterr().err
    assert len(json.loads((rep / "results.json").read_text())) == 3
