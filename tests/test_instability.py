"""Instability analysis: the interpolation path, the error barrier, the trained copies, the curve."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import tiny_config

from lth import rng
from lth.spec.config import replace
from lth.data.device import epoch_order
from lth.errors import ConfigError
from lth.lottery import Hooks, init_params, lottery_levels, prepare
from lth.lottery.instability import copy_keys, instability, instability_curve, train_copies
from lth.lottery.path import alphas, error_along_path, error_barrier, evaluate_path, interpolate
from lth.sparsity.masks import make_mask, mask_leaves, named_leaves


@pytest.fixture(scope="module")
def setup():
    return prepare(tiny_config())


@pytest.fixture(scope="module")
def start(setup):
    params, model_state = init_params(setup)
    return setup.trainer.init_state(params, model_state, 0)


@pytest.fixture(scope="module")
def copies(setup, start):
    return train_copies(setup, start, vectorize=False)


def random_mask(params, density=0.5, seed=0):
    gen = np.random.default_rng(seed)
    full = make_mask(params)
    return jax.tree.map(lambda m: None if m is None else jnp.asarray(gen.random(m.shape) < density), full,
                        is_leaf=lambda x: x is None)


def leaves_equal(a, b):
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b),
                                                                          strict=True))


# --------------------------------------------------------------------------- the path and the barrier


def test_error_barrier_hand_worked():
    # peak 0.30 in the middle, ends 0.10 and 0.20: 0.30 - 0.15
    assert error_barrier([0.10, 0.25, 0.30, 0.12, 0.20]) == pytest.approx(0.15)
    # the maximum at an end: 0.20 - (0.20 + 0.10) / 2
    assert error_barrier(np.array([0.20, 0.15, 0.10])) == pytest.approx(0.05)
    assert error_barrier([0.3, 0.3]) == 0.0
    with pytest.raises(ValueError):
        error_barrier([0.1])


def test_alphas_are_30_evenly_spaced_with_ends():
    a = alphas()
    assert len(a) == 30 and a[0] == 0.0 and a[-1] == 1.0
    np.testing.assert_allclose(np.diff(a), 1 / 29)
    with pytest.raises(ValueError):
        alphas(1)


def test_interpolate_endpoints_exact_and_midpoint(copies):
    a, b = copies[0].params, copies[1].params
    assert not leaves_equal(a, b)
    assert leaves_equal(interpolate(a, b, 0.0), a)
    assert leaves_equal(interpolate(a, b, 1.0), b)
    assert leaves_equal(interpolate(a, a, 0.37), a)
    for x, y, m in zip(jax.tree.leaves(a), jax.tree.leaves(b), jax.tree.leaves(interpolate(a, b, 0.25))):
        np.testing.assert_allclose(m, 0.75 * np.asarray(x) + 0.25 * np.asarray(y), rtol=1e-6, atol=1e-7)
    # jittable with a traced alpha
    mid = jax.jit(interpolate)(a, b, jnp.float32(0.5))
    for x, y, m in zip(jax.tree.leaves(a), jax.tree.leaves(b), jax.tree.leaves(mid)):
        np.testing.assert_allclose(m, 0.5 * (np.asarray(x) + np.asarray(y)), rtol=1e-6, atol=1e-7)


def test_barrier_of_a_network_with_itself_is_zero(setup, copies):
    net = copies[0]
    errors = error_along_path(setup.trainer, net.params, net.params, net.model_state, net.model_state,
                              setup.data.test)
    assert errors.shape == (30,)
    assert np.all(errors == errors[0])
    assert error_barrier(errors) == 0.0
    _, acc = setup.trainer.evaluate(net.params, net.model_state, setup.data.test)
    assert errors[0] == pytest.approx(1.0 - float(acc), abs=1e-7)


def test_path_ends_and_symmetry(setup, copies):
    a, b = copies
    ab = error_along_path(setup.trainer, a.params, b.params, a.model_state, b.model_state, setup.data.test)
    ba = error_along_path(setup.trainer, b.params, a.params, b.model_state, a.model_state, setup.data.test)
    for end, err in ((a, ab[0]), (b, ab[-1])):
        _, acc = setup.trainer.evaluate(end.params, end.model_state, setup.data.test)
        assert err == pytest.approx(1.0 - float(acc), abs=1e-7)
    np.testing.assert_allclose(ab, ba[::-1], atol=1.5e-3)  # at most one test example of 1000 flips
    assert error_barrier(ab) == pytest.approx(error_barrier(ba), abs=1.5e-3)
    # a Model or a plain evaluate function work as well as a Trainer; few α at a time too
    by_model = error_along_path(setup.model, a.params, b.params, a.model_state, None, setup.data.test,
                                num_points=7, alpha_batch=3)
    np.testing.assert_allclose(by_model, error_along_path(setup.trainer.evaluate, a.params, b.params, a.model_state,
                                                          None, setup.data.test, num_points=7), atol=1.5e-3)


def test_model_state_along_the_path():
    """BatchNorm-like state: interpolated (default), end A's, or the two ends' average."""

    def evaluate(params, state, data):  # "loss" reports the state, "accuracy" the params
        return state["stat"], params["w"]

    pa, pb = {"w": jnp.float32(0.0)}, {"w": jnp.float32(1.0)}
    sa, sb = {"stat": jnp.float32(2.0)}, {"stat": jnp.float32(4.0)}
    for mode, want in (("interpolate", 2.0 + 2.0 * alphas(5)), ("a", np.full(5, 2.0)), ("average", np.full(5, 3.0))):
        a, loss, acc = evaluate_path(evaluate, pa, pb, sa, sb, None, num_points=5, bn_state=mode)
        np.testing.assert_allclose(acc, a, atol=1e-7)
        np.testing.assert_allclose(loss, want, atol=1e-6)
    with pytest.raises(ValueError):
        evaluate_path(evaluate, pa, pb, sa, sb, None, bn_state="recompute")


def test_masked_path_stays_in_the_subspace(setup, start):
    mask = random_mask(start.params)
    a, b = train_copies(setup, start, mask, vectorize=False)
    for alpha in (0.0, 0.3, 0.5, 0.9, 1.0):
        for path in (interpolate(a.params, b.params, alpha), interpolate(a.params, b.params, alpha, mask)):
            values = named_leaves(path)
            for name, m in mask_leaves(mask).items():
                assert np.all(np.asarray(values[name])[~np.asarray(m)] == 0.0), (alpha, name)
    # re-applying a mask zeroes the pruned entries of unmasked ends
    c, d = start.params, jax.tree.map(lambda x: x + 1.0, start.params)
    values = named_leaves(interpolate(c, d, 0.5, mask))
    for name, m in mask_leaves(mask).items():
        assert np.all(np.asarray(values[name])[~np.asarray(m)] == 0.0)
    errors = error_along_path(setup.trainer, a.params, b.params, a.model_state, b.model_state, setup.data.test,
                              mask=mask)
    assert errors.shape == (30,) and np.all((errors >= 0) & (errors <= 1))


# --------------------------------------------------------------------------- the copies


def test_copies_differ_and_reach_the_end(setup, start, copies):
    total = setup.trainer.total_steps
    assert [int(c.step) for c in copies] == [total, total]
    assert not leaves_equal(copies[0].params, copies[1].params)
    # their data orders differ from each other and from the main run's
    n, bs = int(setup.data.x_train.shape[0]), setup.trainer.batch_size
    orders = [np.asarray(epoch_order(copy_keys(setup.config.seed, c)[0], 0, n, bs)) for c in (0, 1)]
    main = np.asarray(epoch_order(rng.stream(setup.config.seed, "data_order"), 0, n, bs))
    assert not np.array_equal(orders[0], orders[1])
    assert not np.array_equal(orders[0], main) and not np.array_equal(orders[1], main)


def test_vmapped_copies_equal_sequential(setup, copies):
    params, model_state = init_params(setup)
    start = setup.trainer.init_state(params, model_state, 13)  # a partial first epoch, then the rest
    seq = train_copies(setup, start, vectorize=False)
    vec = train_copies(setup, start, vectorize=True)
    for s, v in zip(seq, vec, strict=True):
        assert int(s.step) == int(v.step) == setup.trainer.total_steps
        pairs = zip(jax.tree.leaves((s.params, s.opt_state)), jax.tree.leaves((v.params, v.opt_state)), strict=True)
        for x, y in pairs:
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)


def test_instability_record_and_determinism(setup, start, copies):
    record = instability(setup, start)
    again = instability(setup, start)
    assert record == again
    assert record["rewind_step"] == 0 and record["copies"] == [0, 1]
    assert record["alphas"] == [float(a) for a in alphas()]
    assert len(record["errors"]) == 30
    assert record["end_errors"] == [record["errors"][0], record["errors"][-1]]
    assert record["barrier"] == error_barrier(record["errors"]) >= 0.0
    assert record["stable"] == (record["barrier"] < 0.02)
    # the ends are the copies trained by train_copies
    for end, err in zip(copies, record["end_errors"]):
        _, acc = setup.trainer.evaluate(end.params, end.model_state, setup.data.test)
        assert err == pytest.approx(1.0 - float(acc), abs=1e-7)
    other = instability(setup, start, copies=(2, 3))
    assert other["errors"] != record["errors"]
    with pytest.raises(ValueError):
        instability(setup, start, copies=(1, 1))


def test_instability_curve_reuses_the_level0_trajectory(setup):
    class Recorder(Hooks):
        def __init__(self):
            self.at = {}

        def chunk_done(self, level, state, mask, new, evaluations):
            self.at[int(state.step)] = state

    # the same compiled trainer, with the lottery's rewind step at 13
    setup13 = dataclasses.replace(setup, config=replace(setup.config, rewind="13it", levels=0), rewind_step=13)
    hooks = Recorder()
    list(lottery_levels(setup13, hooks=hooks))
    seen = []
    records = instability_curve(setup13, (13, 0), callback=seen.append, vectorize=False)
    assert [r["rewind_step"] for r in records] == [0, 13] and seen == records
    assert records[1] == instability(setup13, hooks.at[13], vectorize=False)
    with pytest.raises(ConfigError):
        instability_curve(setup13, (0, setup13.trainer.total_steps))


def test_instability_curve_with_a_mask(setup, start):
    mask = random_mask(start.params, 0.4, seed=1)
    sparse, rewound = (instability_curve(setup, (13,), mask, rewind_dense=d, vectorize=False)[0] for d in (False, True))
    # trained sparse from init vs. the dense trajectory's weights at 13, pruned: different starts
    assert sparse["rewind_step"] == rewound["rewind_step"] == 13
    assert sparse["errors"] != rewound["errors"]


def test_plot_instability(tmp_path):
    from lth.analysis.instability_plots import plot_instability

    a = [float(x) for x in alphas(5)]
    records = [{"rewind_step": k, "alphas": a, "errors": [0.1, 0.1 + b, 0.1 + 2 * b, 0.1 + b, 0.12],
                "barrier": error_barrier([0.1, 0.1 + b, 0.1 + 2 * b, 0.1 + b, 0.12])}
               for k, b in ((0, 0.1), (10, 0.02), (100, 0.0))]
    path = plot_instability(records, tmp_path / "sub" / "instability.png", title="tiny")
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("model, batch_norm", [("lenet300_100", False), ("mlp_tiny", False), ("lenet300_100_bn", True)])
def test_instability_title_names_batchnorm_only_for_models_with_it(model, batch_norm):
    """The plot's title says how BatchNorm statistics were set along the path only where the model has
    them: LeNet-300-100 has none, its BatchNorm variant has."""
    from lth.jobs.instability import instability_title
    from lth.models import get_model
    from lth.spec.catalog import DATASET_REGISTRY, MODEL_REGISTRY

    dataset = DATASET_REGISTRY[MODEL_REGISTRY[model].dataset]
    _, model_state = get_model(model, dataset.input_shape, dataset.num_classes).init(jax.random.key(0))
    title = instability_title("run", 3, 1, "reestimate", model_state)
    assert title.startswith("run level 3: instability (replicate 1")
    assert ("BatchNorm statistics: reestimate" in title) is batch_norm
    assert ("BatchNorm" in title) is batch_norm


def test_instability_command_on_a_finished_run(tmp_path, capsys):
    import json

    from lth.cli import main
    from lth.jobs.lottery import run_lottery

    run_lottery(tiny_config(levels=1), runs_root=tmp_path, wandb="disabled", progress=False)
    (run,) = list(tmp_path.iterdir())
    # a sparse level's ticket was found at the run's own rewind point (0): other k are refused, nothing written
    code = main(["instability", run.name, "--rewind", "13", "--levels", "1", "--runs", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "rewound to iteration 0" in err and "--rewind 13it" in err
    assert not (run / "replicate_00" / "instability").exists()
    out = ""
    for rewind, level in (("0,13", 0), ("0", 1)):  # several k on the dense network, the run's k on the ticket
        code = main(["instability", run.name, "--rewind", rewind, "--levels", str(level), "--runs", str(tmp_path),
                     "--no-progress"])
        printed, err = capsys.readouterr()
        assert code == 0, err
        out += printed
        records = json.loads((run / "replicate_00" / "instability" / f"level_{level:02d}.json").read_text())
        assert [r["rewind_step"] for r in records] == [int(k) for k in rewind.split(",")]
        assert all(len(r["errors"]) == 30 and r["bn_state"] == "interpolate" for r in records)
        assert (run / "replicate_00" / "instability" / f"level_{level:02d}.png").exists()
    assert len([line for line in out.splitlines() if line.strip().startswith(("0 ", "1 "))]) == 3
    # another BatchNorm treatment is a record of its own, beside the first
    first = (run / "replicate_00" / "instability" / "level_01.json").read_bytes()
    code = main(["instability", run.name, "--rewind", "0", "--levels", "1", "--bn-state", "reestimate",
                 "--runs", str(tmp_path), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    (record,) = json.loads((run / "replicate_00" / "instability" / "level_01_reestimate.json").read_text())
    assert record["bn_state"] == "reestimate" and record["rewind_step"] == 0
    assert (run / "replicate_00" / "instability" / "level_01.json").read_bytes() == first
    code = main(["instability", run.name, "--rewind", "35", "--runs", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "not before the end of training" in err


def test_plot_paths_draws_one_labelled_line_per_record():
    from lth.analysis import plot_paths

    a = [float(x) for x in alphas(5)]
    curves = (("interpolate", [0.1, 0.3, 0.5, 0.3, 0.1]), ("reestimate", [0.1, 0.12, 0.1, 0.1, 0.1]))
    paths = {name: {"alphas": a, "errors": errors, "barrier": error_barrier(errors)} for name, errors in curves}
    fig = plot_paths(paths, title="bn")
    (ax,) = fig.axes
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["interpolate (barrier 40.00 points)",
                                                    "reestimate (barrier 2.00 points)"]
    np.testing.assert_allclose(lines[0].get_ydata(), [10, 30, 50, 30, 10])
    np.testing.assert_allclose(lines[1].get_xdata(), a)


def test_the_refusal_suggests_a_run_with_the_same_variant(tmp_path, capsys):
    """A ticket analysed at another k: the suggested `lth run` keeps the run's variant and fields."""
    from lth.cli import main

    args = ["--runs", str(tmp_path), "--no-progress", "--wandb", "disabled"]
    assert main(["run", "lenet300_mnist", "--variant", "smoke", "--levels", "1", *args]) == 0
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    capsys.readouterr()
    code = main(["instability", run.name, "--rewind", "0,20", "--levels", "0,1", *args])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "`lth run lenet300_mnist --variant smoke --set levels=1 --set rewind=20it`" in err
