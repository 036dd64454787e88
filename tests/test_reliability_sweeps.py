"""Reliability of `lth sweep` around its cells (issue 28, class 13): controls past a cell's levels,
the summary's paths, and a worker-local run root that cannot be written."""

from __future__ import annotations

import signal
import textwrap
from pathlib import Path

import pytest

from lth.cli import main
from lth.errors import ConfigError
from lth.spec.config import to_dict
from lth.store.sweeps import SweepDir
from lth.sweeps.driver import SweepOutcome
from lth.sweeps.file import load_sweep
from lth.sweeps.report import print_outcome
from lth.sweeps.state import SweepState
from lth.sweeps.task import CellJob, train_cell


def write_sweep(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "study.py"
    path.write_text("from lth.sweeps.file import Sweep\n\n" + textwrap.dedent(body))
    return path


SHORT_CELLS = """
    def get_sweep(variant="default"):
        return Sweep(name="short", experiment="lenet300_mnist", variant="quick", grid={"levels": [2, 20, 3]})
"""


def test_a_sweep_says_once_which_cells_stop_before_their_control_levels(tmp_path, capsys):
    """lenet300_mnist's quick variant trains imp+reinit at levels 7, 12, 17: cells of 2 and 3 levels
    trained none of them, and the sweep said nothing (`lth run` of one such cell said so)."""
    path = write_sweep(tmp_path, SHORT_CELLS)
    assert main(["sweep", str(path), "--dry-run", "--runs", str(tmp_path / "runs")]) == 0
    err = capsys.readouterr().err
    assert err.count("lth: note:") == 1, err
    assert ("lth: note: the sweep's controls (imp+reinit) at level(s) 7, 12, 17 lie past the last level of 2 of "
            "3 cells (0, 2): not trained") in err, err


def test_a_sweep_whose_cells_reach_their_control_levels_says_nothing(tmp_path, capsys):
    path = write_sweep(tmp_path, SHORT_CELLS.replace("[2, 20, 3]", "[17, 20]"))
    assert main(["sweep", str(path), "--dry-run", "--runs", str(tmp_path / "runs")]) == 0
    assert capsys.readouterr().err == ""


def test_the_summary_names_only_files_that_were_written(tmp_path, capsys):
    """A sweep whose cells all failed printed the paths of a summary.csv and plot it never wrote."""
    plan = load_sweep(str(write_sweep(tmp_path, SHORT_CELLS)))
    sweep_dir = SweepDir(tmp_path / "runs", plan.dir_name)
    state = SweepState(plan, tmp_path / "runs", sweep_dir)
    for cell in plan.cells:
        state.mark_failed(cell.index, "boom")
    state.write()
    print_outcome(SweepOutcome(sweep_dir.path, state, state.failed()), len(plan.cells))
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"sweep: {sweep_dir.state_path}"], out
    assert "lth: sweep: not written: summary.csv, accuracy_vs_sparsity.png (no cell finished)" in err, err
    assert not sweep_dir.summary_path.exists() and not sweep_dir.plot_path.exists()


def test_a_worker_local_run_root_that_cannot_be_written_is_one_line_naming_the_option(tmp_path):
    """On a node where --worker-dir cannot be written (a remote cluster: not checked before Ray starts),
    the cell failed with a raw NotADirectoryError and was retried."""
    (tmp_path / "file").write_text("")
    plan = load_sweep(str(write_sweep(tmp_path, SHORT_CELLS)))
    job = CellJob(0, 0, to_dict(plan.cells[0].config), str(tmp_path / "runs"), "local", ("", ""),
                  str(tmp_path / "file" / "runs"), None, "disabled", "10min", (), None, "")
    with pytest.raises(ConfigError, match=r"--worker-dir .*/file/runs cannot be written on .*: choose another "
                                          r"--worker-dir"):
        train_cell(job)
    assert not (tmp_path / "runs").exists()


def _disposition(sig: int) -> int:
    """The kernel's disposition of `sig` for this process (0: SIG_DFL, 1: SIG_IGN, else a handler's
    address): what Python's signal.getsignal, which reports its own record, does not see."""
    import ctypes

    class SigAction(ctypes.Structure):
        _fields_ = [("handler", ctypes.c_void_p), ("mask", ctypes.c_ulong * 16), ("flags", ctypes.c_int),
                    ("restorer", ctypes.c_void_p)]

    action = SigAction()
    assert ctypes.CDLL(None, use_errno=True).sigaction(sig, None, ctypes.byref(action)) == 0
    return action.handler or 0


def test_rays_shutdown_leaves_the_signals_lth_ignores_ignored(monkeypatch):
    """Class 8's last gap: Ray's driver reset SIGTERM to SIG_DFL inside `ray.shutdown()` (absl's
    failure signal handler, uninstalled), under lth's SIG_IGN: a second SIGTERM during the shutdown of
    an interrupted sweep ended the process with -15 instead of 130."""
    from lth.sweeps import cluster

    ray = cluster.import_ray()
    assert not ray.is_initialized()
    real, seen = ray.shutdown, []

    def shutdown(*args, **kwargs):
        real(*args, **kwargs)
        seen.append(_disposition(signal.SIGTERM))

    monkeypatch.setattr(ray, "shutdown", shutdown)
    with cluster.ray_cluster(None, 1):
        pass
    assert seen == [1]  # SIG_IGN, as `signals_ignored` set it for the shutdown
