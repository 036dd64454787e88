"""Files are written with the permissions the umask gives (0644 under umask 022), not 0600 whatever it
is: a run root shared by a group (docs/cluster.md) is readable by the group. Every whole-file write
goes through `lth.spec.files.replacing` (temporary file + rename); these tests look at real files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from helpers import run_cli, tiny_config
from lth.spec.files import replacing, write_atomic


@pytest.fixture
def umask(request):
    """Set the process umask for one test, then put the old one back."""
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002], indirect=True)
def test_a_runs_files_honour_the_umask(umask, tmp_path, capsys):
    """A tiny real run and an exported ticket: config, results, plot, masks, ticket, the dataset cache
    and every other file (the locks too) come out 0666 less the umask: 0644 under 022, 0600 under 077,
    0664 under 002 (a group sharing a run root)."""
    from lth.jobs.lottery import run_lottery

    runs, data = tmp_path / "runs", tmp_path / "data"
    run_lottery(tiny_config(levels=1), runs_root=runs, data_root=data, wandb="disabled", progress=False)
    (run,) = runs.iterdir()
    code, _, err = run_cli(capsys, "ticket", "export", str(run), "--level", "1", "--runs", str(runs))
    assert code == 0, err
    expected = 0o666 & ~umask
    named = [run / "config.json", run / "results.json", run / "accuracy_vs_sparsity.png",
             run / "replicate_00" / "results.json", run / "replicate_00" / "manifest.json",
             run / "replicate_00" / "masks" / "level_01.npz",
             run / "replicate_00" / "tickets" / "level_01.safetensors", *data.glob("*.npz")]
    assert len(named) == 8, sorted(data.iterdir())  # the dataset cache is there too
    assert {str(p.relative_to(tmp_path)): oct(_mode(p)) for p in named} == \
           {str(p.relative_to(tmp_path)): oct(expected) for p in named}
    others = {str(p.relative_to(run)): oct(_mode(p)) for p in run.rglob("*")
              if _mode(p) != (expected if p.is_file() else 0o777 & ~umask)}
    assert others == {}, f"files not {oct(expected)}, directories not {oct(0o777 & ~umask)}"
    assert not list(run.rglob("*.tmp")) and not list(run.rglob(".*.tmp"))


def test_a_new_file_gets_the_umask_and_a_replaced_file_keeps_its_mode(tmp_path):
    path = tmp_path / "sub" / "file.json"
    old = os.umask(0o027)
    try:
        write_atomic(path, b"one")
        assert _mode(path) == 0o640 and path.read_bytes() == b"one"
        path.chmod(0o604)  # a mode given by hand survives the next write
        write_atomic(path, b"two")
        assert _mode(path) == 0o604 and path.read_bytes() == b"two"
    finally:
        os.umask(old)
    assert sorted(p.name for p in path.parent.iterdir()) == ["file.json"]  # no temporary file left


def test_an_error_while_writing_leaves_the_old_file(tmp_path):
    path = tmp_path / "results.json"
    write_atomic(path, b"old")
    with pytest.raises(RuntimeError), replacing(path) as f:
        f.write(b"half")
        raise RuntimeError("killed")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["results.json"]
