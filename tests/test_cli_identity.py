"""Run identity: `lth ls` tells the runs of one experiment apart, every command (and the Python API)
finds a run by the same resolver (a unique hash prefix, an experiment name with one run; several
matches: one line listing candidates with what differs), a method run is finished when its densities
are, and a diverged run says what to change instead of "rerun"."""

import pytest
from helpers import run_cli, tiny_config

import lth.analysis as la
from lth.errors import LthError
from lth.jobs.lottery import run_lottery
from lth.store import RunDir
from lth.training.loop import DivergedError

CONFIGS = {
    "seed0": tiny_config(levels=1),
    "seed1": tiny_config(levels=1, seed=1),
    "static": tiny_config(levels=1, method="static", **{"sparse.densities": (0.5,)}),
}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """Three finished runs of experiment 'tiny' (seeds 0 and 1, a static-method run) and one that diverged."""
    path = tmp_path_factory.mktemp("identity") / "runs"
    for config in CONFIGS.values():
        run_lottery(config, runs_root=path, wandb="disabled", progress=False)
    with pytest.raises(DivergedError):
        run_lottery(tiny_config(levels=1, **{"optimizer.learning_rate": 1e6}), runs_root=path, wandb="disabled",
                    progress=False)
    return path


def _hash(root, key):
    return RunDir(root, CONFIGS[key]).path.name.rsplit("-", 1)[1]


def _rows(out):
    return {line.split()[1]: line for line in out.splitlines() if line.startswith("tiny ")}


def test_ls_shows_what_tells_the_runs_of_an_experiment_apart(capsys, root):
    code, out, err = run_cli(capsys, "ls", "--runs", str(root))
    assert code == 0, err
    rows = _rows(out)
    assert len(rows) == 4
    assert "seed=0" in rows[_hash(root, "seed0")] and "seed=1" in rows[_hash(root, "seed1")]
    assert "method=static" in rows[_hash(root, "static")] and "method=imp" in rows[_hash(root, "seed0")]
    diverged = next(line for h, line in rows.items() if h not in {_hash(root, k) for k in CONFIGS})
    assert "optimizer.learning_rate=1000000.0" in diverged


def test_a_method_run_is_finished_when_its_densities_are(capsys, root):
    code, out, _ = run_cli(capsys, "ls", "--runs", str(root))
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("tiny ") and _hash(root, "static") in line)
    assert lines[at].split()[2] == "1/1"  # one density, done
    assert not any(line.startswith(" ") for line in lines[at + 1:at + 2])  # no "unfinished" line under it
    assert "unfinished" not in out


def test_a_diverged_run_says_what_to_change_not_rerun(capsys, root):
    code, out, _ = run_cli(capsys, "ls", "--runs", str(root))
    assert code == 0
    (line,) = [line for line in out.splitlines() if "diverged" in line]
    assert line.lstrip().startswith("r0: diverged at level 0, iteration ")
    assert "the same config diverges again" in line and "lower the learning rate (--lr)" in line
    assert "rerun" not in line
    diverged = next(p for p in root.iterdir() if p.name.rsplit("-", 1)[1] not in {_hash(root, k) for k in CONFIGS})
    code, _, err = run_cli(capsys, "control", diverged.name, "reinit", "--levels", "1", "--runs", str(root))
    assert code == 2 and "diverged at level 0" in err and "lower the learning rate" in err


def test_a_unique_hash_prefix_names_a_run(capsys, root):
    digest = _hash(root, "seed1")
    for prefix in (digest[:4], digest[:6], f"tiny-{digest[:5]}"):
        # instability resolves the run, then refuses a level it does not have: the message names the run
        code, _, err = run_cli(capsys, "instability", prefix, "--rewind", "0", "--levels", "1", "--replicate", "3",
                               "--runs", str(root))
        assert code == 2 and f"tiny-{digest}" in err, err
    assert la.load_run(digest[:4], root=root).path == RunDir(root, CONFIGS["seed1"]).path
    code, _, err = run_cli(capsys, "instability", "zzzz", "--rewind", "0", "--runs", str(root))
    assert code == 2 and "no run 'zzzz'" in err


@pytest.mark.parametrize("argv", [
    ["control", "tiny", "reinit"],
    ["instability", "tiny", "--rewind", "0"],
    ["ticket", "export", "tiny", "--level", "0"],
    ["plot", "tiny"],
])
def test_an_ambiguous_name_lists_candidates_with_what_differs_in_every_command(capsys, root, argv):
    code, _, err = run_cli(capsys, *argv, "--runs", str(root))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"lth: error: 4 runs match 'tiny' under {root}: tiny-")
    assert lines[0].count(" (method=") == 3 and lines[0].count(" seed=") == 3  # 3 candidates and what differs
    assert "and 1 more" in lines[0] and "first 4+ characters" in lines[0]
    with pytest.raises(LthError) as api:  # the Python API says the same
        la.load_run("tiny", root=root)
    assert str(api.value) == lines[0].removeprefix("lth: error: ")


def test_a_misspelt_experiment_name_gets_a_did_you_mean(capsys, root):
    code, _, err = run_cli(capsys, "control", "tinny", "reinit", "--runs", str(root))
    assert code == 2 and "no run 'tinny'" in err and "did you mean tiny?" in err
