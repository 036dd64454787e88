"""Method runs (gradual, static, SET, RigL; lth.jobs.methods), N:M structure for IMP / gradual /
static, the sparse-training controls of a lottery run, and bad combinations through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import tiny_config
from test_cli import run_cli

from lth.errors import ConfigError
from lth.lottery.controls import Control, check_retraining
from lth.jobs.controls import run_controls
from lth.jobs.lottery import run_lottery
from lth.sparsity import nm
from lth.sparsity.distributions import keep_counts
from lth.sparsity.masks import make_mask, mask_from_arrays

FAST = {"training.length": "70it", "sparse.dt": 10}


def _files(root):
    (run,) = [p for p in root.iterdir() if p.is_dir()]
    return run


def _load_mask(path, params):
    with np.load(path) as f:
        return mask_from_arrays({k: f[k] for k in f.files}, params)


def _template():
    from lth.lottery import init_params, prepare

    setup = prepare(tiny_config())
    return init_params(setup)[0]


def test_rigl_run_one_record_per_density_with_its_mask_history(tmp_path):
    config = tiny_config(method="rigl", **FAST, **{"sparse.densities": (0.3, 0.1)})
    records = run_lottery(config, runs_root=tmp_path, progress=False, wandb="disabled")
    params = _template()
    full = make_mask(params)
    assert [r["level"] for r in records] == [0, 1]
    for record, density in zip(records, (0.3, 0.1)):
        want = keep_counts(full, density, "erk")
        assert record["method"] == "rigl" and record["target_density"] == density
        assert record["weights_remaining"] == sum(want.values()) == round(density * record["prunable_weights"])
        assert record["mask_updates"] == 6  # t = 0, 10, ..., 50 <= T_end = 52
        assert 0.0 < record["overlap_with_initial_mask"] < 1.0  # the mask moved, and kept some of its start
        assert {"early_stop_iteration", "early_stop_test_accuracy", "test_accuracy"} <= set(record)
    run = _files(tmp_path)
    history = sorted((run / "replicate_00" / "masks" / "level_01").glob("step_*.npz"))
    assert history  # the mask after every chunk where it changed
    for path in [*history, run / "replicate_00" / "masks" / "level_01.npz"]:
        mask = _load_mask(path, params)
        got = {f"{layer}/kernel": int(np.asarray(mask[layer]["kernel"]).sum()) for layer in mask}
        assert got == keep_counts(full, 0.1, "erk", ("output/kernel",))  # an MLP's output layer dense (rigl's MNIST)
    assert (run / "accuracy_vs_sparsity.png").exists()
    manifest = json.loads((run / "replicate_00" / "manifest.json").read_text())
    assert "numerics" in manifest and {"level_00.npz", "level_01.npz"} <= set(manifest["masks"])
    assert all(f"level_01/{path.name}" in manifest["masks"] for path in history)  # the history's digests too
    again = run_lottery(config, runs_root=tmp_path, progress=False, wandb="disabled")  # finished: nothing retrained
    assert again == records
    (run / "replicate_00" / "results.json").write_text('[{"level": 0')  # damaged: the replicate is trained again
    assert run_lottery(config, runs_root=tmp_path, progress=False, wandb="disabled") == records


@pytest.mark.parametrize("method, distribution", [("static", "uniform"), ("gradual", "erk"), ("set", "uniform")])
def test_other_methods_reach_their_exact_counts(tmp_path, method, distribution):
    config = tiny_config(method=method, **FAST, **{"sparse.densities": (0.2,), "sparse.distribution": distribution})
    (record,) = run_lottery(config, runs_root=tmp_path, progress=False, wandb="disabled")
    dense = () if method == "gradual" else ("output/kernel",)  # the references': rigl's MNIST code, Zhu & Gupta
    want = keep_counts(make_mask(_template()), 0.2, distribution, dense)
    assert record["weights_remaining"] == sum(want.values())
    assert record["layer_density"] == pytest.approx(
        {name: k / size for (name, k), size in zip(want.items(), (40 * 32, 32 * 16, 16 * 10))})
    assert record["mask_updates"] == {"static": 0, "gradual": 6, "set": 6}[method]


def test_nm_structure_for_gradual_static_and_imp(tmp_path):
    params = _template()
    for method in ("gradual", "static"):
        config = tiny_config(method=method, **FAST, **{"sparse.structure": "2:4", "sparse.dense": "none"})
        (record,) = run_lottery(config, runs_root=tmp_path / method, progress=False, wandb="disabled")
        mask = _load_mask(_files(tmp_path / method) / "replicate_00" / "masks" / "level_00.npz", params)
        assert all((counts == 2).all() for counts in nm.group_counts(mask, 4).values())
        assert record["density"] == pytest.approx(0.5)
    imp = tiny_config(levels=2, **{"sparse.structure": "2:4"})
    records = run_lottery(imp, runs_root=tmp_path / "imp", progress=False, wandb="disabled")
    masks = _files(tmp_path / "imp") / "replicate_00" / "masks"
    level1 = nm.group_counts(_load_mask(masks / "level_01.npz", params), 4)
    level2 = nm.group_counts(_load_mask(masks / "level_02.npz", params), 4)
    # hidden layers prune 30 % per level: round(4 * 0.7) = 3, then max(2, round(4 * 0.49)) = 2; output 15 %: 3, 3
    assert (level1["fc1/kernel"] == 3).all() and (level2["fc1/kernel"] == 2).all()
    assert (level2["output/kernel"] == 3).all()
    assert records[2]["density"] < records[1]["density"] < 1.0


def test_sparse_training_controls_of_a_lottery_run(tmp_path):
    config = tiny_config(levels=1, **{"sparse.dt": 5})
    main = run_lottery(config, runs_root=tmp_path, progress=False, wandb="disabled")
    run = _files(tmp_path)
    # set is left out here (its runs and updates are tested above and in test_mask_updates): each
    # control compiles its own program
    results = run_controls(run, "rigl,static_erk,gradual", "1", progress=False, wandb="disabled")
    level = main[1]
    for name in ("rigl", "gradual"):
        (record,) = results[name]
        assert record["weights_remaining"] == level["weights_remaining"]
        assert record["layer_density"] == pytest.approx(level["layer_density"])  # the level's layer distribution
        assert record["control"] == name and record["mask_updates"] > 0
    (erk,) = results["static_erk"]
    assert erk["weights_remaining"] == level["weights_remaining"] and erk["mask_updates"] == 0
    assert (run / "replicate_00" / "controls" / "rigl" / "masks" / "level_01.npz").exists()
    assert (run / "accuracy_vs_sparsity.png").exists()


BAD = [
    (["--method", "rigl"], "needs target densities"),
    (["--method", "rigl", "--densities", "1.5"], "must be in (0, 1]"),
    (["--method", "sparse_magic", "--densities", "0.1"], "unknown method"),
    (["--densities", "0.1"], "are for the other methods"),
    (["--method", "gradual", "--set", "sparse.structure=3:2"], "N must not exceed M"),
    (["--method", "static", "--set", "sparse.structure=2:3"], "do not divide"),
    (["--method", "rigl", "--set", "sparse.structure=2:4"], "not supported"),
    (["--method", "rigl", "--densities", "0.1", "--set", "sparse.t_end=1.5"], "past the end of training"),
    (["--method", "set", "--densities", "0.1", "--set", "sparse.dt=0"], "dt must be at least 1"),
    (["--method", "gradual", "--densities", "0.1", "--set", "sparse.n=10"], "past the end of training"),
    (["--method", "static", "--densities", "0.01", "--set", 'pruning.exclude=["fc1/.*"]'], "excluded layers"),
    (["--method", "static", "--densities", "0.1", "--set", "sparse.distribution=lognormal"], "unknown layer"),
]


@pytest.mark.parametrize("argv, message", BAD)
def test_bad_combinations_one_line_exit_2(capsys, runs_dir, argv, message):
    code, out, err = run_cli(capsys, "run", "mlp_mnist1d", "--variant", "smoke", "--runs", str(runs_dir), *argv)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not runs_dir.exists() or not any(runs_dir.iterdir())


def test_bad_control_one_line(capsys, tmp_path):
    # a lottery of 10 iterations (a level 0 only): the controls are refused before anything trains
    config = tiny_config(levels=0, **{"training.length": "10it", "training.eval_every": "5it"})
    run_lottery(config, runs_root=tmp_path, progress=False, wandb="disabled")
    run = _files(tmp_path)
    code, _, err = run_cli(capsys, "control", str(run), "rigl+shuffle", "--runs", str(tmp_path))
    assert code == 2 and "take no transforms" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(capsys, "control", str(run), "gradual", "--runs", str(tmp_path))  # 10 iterations, dt 100
    assert code == 2 and "fits no step" in err and len(err.strip().splitlines()) == 1
    assert json.loads((run / "config.json").read_text())["method"] == "imp"
    assert not (run / "replicate_00" / "controls").exists()


@pytest.mark.parametrize("source", ["rigl", "set", "gradual", "static_erk", "static_uniform"])
def test_sparse_training_controls_refused_without_weight_rewinding(source):
    check_retraining(Control(source), "rewind")  # the runs they are meant for
    for retraining in ("lr_rewind", "finetune"):
        with pytest.raises(ConfigError, match=f"control {source} trains a sparse network .* {retraining}"):
            check_retraining(Control(source), retraining)
