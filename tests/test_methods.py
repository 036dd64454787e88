"""Method runs (gradual, static, SET, RigL; lth.jobs.methods), N:M structure for IMP / gradual /
static, the sparse-training controls of a lottery run, and bad combinations through the CLI."""

from __future__ import annotations

import dataclasses

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
from lth.sparsity.masks import make_mask, mask_from_arrays, mask_leaves

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
    # due at t = 0, 10, ..., 50 <= T_end = 52, dropping floor(n * 0.15 (1 + cos(pi t / 52))) per layer; the output
    # layer is kept dense. Density 0.3 (fc1 256, fc2 170 active): t = 50 drops floor(256 * 0.0011) = 0, so 5 updates
    # move weights; density 0.1 (fc1 21, fc2 14): t = 40 drops floor(21 * 0.0377) = 0 too, so 4
    for record, density, moved in zip(records, (0.3, 0.1), (5, 4)):
        want = keep_counts(full, density, "erk")
        assert record["method"] == "rigl" and record["target_density"] == density
        assert record["weights_remaining"] == sum(want.values()) == round(density * record["prunable_weights"])
        assert record["mask_updates"] == moved and record["final_mask_from"] == 10 * (moved - 1) + 1
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
    # gradual: due at t = 0, ..., 50, but t = 0 prunes nothing (s_i = 0); set: t = 50 drops floor(164 * 0.0011) = 0
    assert record["mask_updates"] == {"static": 0, "gradual": 5, "set": 5}[method]


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


def test_gradual_early_stops_only_under_its_final_mask(tmp_path):
    """Dense for 30 iterations, then pruned to 2 % at t = 40 and 50 (t0 = 30 prunes nothing at s_i = 0): the
    dense phase has the lowest validation loss, but the record early-stops among the evaluations at iterations
    >= 51, under the final mask (recomputed here from metrics.jsonl)."""
    config = tiny_config(method="gradual", **FAST, **{"sparse.t0": 30, "sparse.n": 2, "sparse.densities": (0.02,)})
    (record,) = run_lottery(config, runs_root=tmp_path, progress=False, wandb="disabled")
    lines = (_files(tmp_path) / "replicate_00" / "metrics.jsonl").read_text().splitlines()
    evals = [e for e in map(json.loads, lines) if "val_loss" in e]
    assert [e["iteration"] for e in evals] == [10, 20, 30, 40, 50, 60, 70]
    overall = min(evals, key=lambda e: e["val_loss"])
    assert overall["iteration"] <= 50  # the construction: a lower validation loss before the final mask
    assert record["mask_updates"] == 2 and record["final_mask_from"] == 51
    final = [e for e in evals if e["iteration"] >= 51]
    best = min(final, key=lambda e: e["val_loss"])
    assert record["early_stop_iteration"] == best["iteration"] > 50
    assert record["early_stop_test_accuracy"] == best["test_accuracy"]
    assert record["best_test_accuracy"] == max(e["test_accuracy"] for e in final)
    assert record["test_accuracy"] == evals[-1]["test_accuracy"]


def test_every_density_trains_with_level_0s_data_order():
    """Two equal densities of static: the same mask (drawn by its weight count), init and schedule, and -- as
    level 0's data order serves every density -- the same evaluations (with level i's order they differ)."""
    from lth.lottery import prepare
    from lth.lottery.methods import method_levels

    setup = prepare(tiny_config(method="static", **{"training.length": "30it", "sparse.densities": (0.3,)}))
    # a repeated density is refused by the checks (`lth run` would train it twice): set past them here
    twice = dataclasses.replace(setup.config, sparse=dataclasses.replace(setup.config.sparse, densities=(0.3, 0.3)))
    first, second = method_levels(setup.with_config(twice))
    assert first.record["level"] == 0 and second.record["level"] == 1
    assert second.evaluations == first.evaluations


def _numpy_mlp_grads(params, x, y):
    """Gradients (float64, by hand) of the mean cross-entropy of a ReLU MLP fc1, fc2, ..., output."""
    names = [name for name in params if name != "output"] + ["output"]
    hs, h = [], np.asarray(x, np.float64).reshape(len(x), -1)
    for name in names:
        hs.append(h)
        a = h @ np.asarray(params[name]["kernel"], np.float64) + np.asarray(params[name]["bias"], np.float64)
        h = np.maximum(a, 0) if name != "output" else a
    z = h - h.max(1, keepdims=True)
    prob = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    d = (prob - np.eye(z.shape[1])[np.asarray(y)]) / len(x)
    grads = {}
    for i in reversed(range(len(names))):
        grads[names[i]] = hs[i].T @ d
        d = (d @ np.asarray(params[names[i]]["kernel"], np.float64).T) * (hs[i] > 0)
    return grads


def test_snip_method_keeps_the_layerwise_snip_top_k_at_the_distributions_counts():
    from lth.lottery import init_params, prepare
    from lth.lottery.methods import method_levels, start_mask, target_counts
    from lth.lottery.setup import score_batch

    setup = prepare(tiny_config(method="snip", **{"training.length": "20it", "sparse.densities": (0.1,)}))
    params, model_state = init_params(setup)
    full = make_mask(params)
    counts = target_counts(setup, full, 0.1)
    assert counts == keep_counts(full, 0.1, "erk", ("output/kernel",))  # auto: ERK, an MLP's output layer dense
    mask = start_mask(setup, "snip", full, counts, (params, model_state))
    x, y = score_batch(setup)
    grads = _numpy_mlp_grads(params, x, y)
    for layer, keep in counts.items():
        name = layer.split("/")[0]
        score = np.abs(grads[name] * np.asarray(params[name]["kernel"], np.float64)).reshape(-1)
        got = np.asarray(mask[name]["kernel"]).reshape(-1)
        assert got.sum() == keep
        want = np.zeros_like(got)
        want[np.argsort(-score, kind="stable")[:keep]] = True
        kth = np.sort(score)[::-1][keep - 1]
        differ = np.flatnonzero(got != want)  # only float32-vs-float64 near-ties at the threshold may differ
        assert np.allclose(score[differ], kth, rtol=1e-4), (layer, differ, score[differ], kth)
    (outcome,) = method_levels(setup)
    assert outcome.record["method"] == "snip" and outcome.record["mask_updates"] == 0
    saved = {f"{layer}/kernel": np.asarray(outcome.mask[layer]["kernel"]) for layer in outcome.mask}
    assert all(np.array_equal(saved[k], np.asarray(v)) for k, v in mask_leaves(mask).items())  # trained fixed


def test_reference_dense_layers_and_distributions_per_method():
    """Which layers a method run keeps dense and how it spreads a density, by default: as its
    references (rigl's MNIST trainer: an MLP's output layer; rigl's CIFAR / ImageNet trainers: a conv
    net's first layer; Zhu & Gupta / jaxpruner: gradual prunes every layer, uniformly)."""
    from lth.spec.methods import dense_layers, layer_distribution

    mlp, conv = ["fc1/kernel", "fc2/kernel", "output/kernel"], ["conv1/kernel", "conv2/kernel", "output/kernel"]
    assert dense_layers("reference", "rigl", mlp, conv=False) == ["output/kernel"]
    assert dense_layers("reference", "static", conv, conv=True) == ["conv1/kernel"]
    assert dense_layers("reference", "gradual", conv, conv=True) == []
    assert dense_layers("first+output", "gradual", conv, conv=True) == ["conv1/kernel", "output/kernel"]
    assert dense_layers("none", "set", mlp, conv=False) == []
    assert [layer_distribution("auto", m) for m in ("gradual", "rigl", "static")] == ["uniform", "erk", "erk"]
    assert layer_distribution("erk", "gradual") == "erk"


def test_a_conv_static_run_keeps_its_first_layer_dense(tmp_path):
    config = tiny_config(model="conv2", method="static", **{"data.name": "synthetic_cifar10", "training.length": "2it",
                                                            "training.eval_every": "2it", "sparse.densities": (0.1,),
                                                            "sparse.distribution": "uniform"})
    (record,) = run_lottery(config, runs_root=tmp_path, progress=False, wandb="disabled")
    assert record["layer_density"]["conv1/kernel"] == 1.0
    assert all(d < 1.0 for name, d in record["layer_density"].items() if name != "conv1/kernel")
    assert record["weights_remaining"] == round(0.1 * record["prunable_weights"])


def test_the_sparse_methods_experiment_compares_under_the_lotterys_own_counts():
    """`sparse_methods_lenet300`: static_uniform at a level's density keeps exactly the lottery's
    per-layer counts (within one weight), so rigl / set / gradual (the lottery's counts) and
    static_uniform differ in how they choose weights only. (Before: output at 10 % a level, uniform
    at 2.9 % -- a different distribution.)"""
    from lth.lottery.setup import build_setup
    from lth.spec.experiments import load_config
    from lth.sparsity.distributions import keep_counts
    from lth.sparsity.masks import layer_counts
    from lth.sparsity.pruning import plan_groups

    config = load_config("sparse_methods_lenet300")
    setup = build_setup(config)
    full = make_mask(setup.initial[0])
    sizes = {name: n for name, (_, n) in layer_counts(full).items()}
    for level in (3, 7, 10, 13, 16):
        lottery = {g.names[0]: g.keep for g in plan_groups(sizes, config.pruning, level)}
        density = sum(lottery.values()) / sum(sizes.values())
        uniform = keep_counts(full, density, "uniform", config.pruning.exclude)
        assert lottery["output/kernel"] == uniform["output/kernel"] == 1000
        assert all(abs(lottery[k] - uniform[k]) <= 1 for k in sizes), (level, lottery, uniform)
