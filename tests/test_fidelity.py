"""Fidelity to the references (issue 13): the score batch, controls that follow the main line's
pruning groups and retraining, data order per level, BatchNorm re-estimation, dataset modifiers,
torch's initialisation, the linear and modulewise schedules -- each against a NumPy
re-computation or a hand-worked example."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import tiny_config

from lth import rng
from lth.spec.config import replace
from lth.spec.hashing import config_hash
from lth.data import cifar
from lth.data.dataset import Dataset
from lth.data.modifiers import modify
from lth.errors import ConfigError
from lth.spec.experiments import load_config
from lth.lottery import init_params, lottery_levels, prepare
from lth.lottery.controls import (
    Control,
    LevelInputs,
    check_retraining,
    control_mask,
    control_start,
    counts_of,
    train_control_level,
)
from lth.lottery.setup import score_batch
from lth.data.device import EvalSet
from lth.lottery.path import evaluate_path, reestimate_statistics
from lth.models import get_model
from lth.models.base import from_linen
from lth.sparsity.pruning import kept_at, plan_groups

RECORD_KEYS = ("density", "weights_remaining", "test_accuracy", "early_stop_iteration", "early_stop_test_accuracy",
               "best_test_accuracy", "layer_density")


@pytest.fixture(scope="module")
def lines():
    """The main line of tiny under rewinding and under learning-rate rewinding (2 levels each)."""
    out = {}
    for retraining in ("rewind", "lr_rewind"):
        setup = prepare(tiny_config(levels=2, retraining=retraining))
        out[retraining] = (setup, list(lottery_levels(setup)), *init_params(setup))
    return out


def test_score_batch_is_class_balanced_and_sized_by_the_config():
    for per_class in (10, 3):
        setup = prepare(tiny_config(**{"pruning.score_samples_per_class": per_class}))
        x, y = score_batch(setup)
        labels = np.asarray(y)
        assert x.shape[0] == per_class * 10
        assert np.array_equal(labels, np.repeat(np.arange(10), per_class))  # in class order
        train_x = np.asarray(setup.data.x_train)
        rows = [int(np.flatnonzero((train_x == np.asarray(row)).all(axis=1))[0]) for row in x]
        assert np.array_equal(np.asarray(setup.data.y_train)[rows], labels)  # real training examples
    again = score_batch(setup)
    assert np.array_equal(np.asarray(again[0]), np.asarray(x))  # a function of the seed


@pytest.fixture(scope="module")
def excluding_line():
    """A main line (2 levels of 10 iterations) that never prunes fc2 (read only: every source's control
    below is drawn from the same ticket)."""
    setup = prepare(tiny_config(levels=2, **{"pruning.exclude": ("fc2/kernel",), "training.length": "10it"}))
    return setup, list(lottery_levels(setup)), *init_params(setup)


@pytest.mark.parametrize("source", ["random_global", "magnitude_init", "snip", "grasp", "synflow"])
def test_global_controls_keep_the_main_lines_own_rate_layers(source, excluding_line):
    """Layers the main line prunes at a rate of their own (an override, or none when excluded) keep
    exactly the ticket's count in a global control; the pooled layers keep the ticket's total."""
    setup, outcomes, params0, state0 = excluding_line
    ticket = counts_of(outcomes[2].mask)
    assert ticket["fc2/kernel"] == 512  # excluded: never pruned
    inputs = LevelInputs(2, outcomes[2].mask, outcomes[0].mask)
    ours = counts_of(control_mask(setup, Control(source), inputs, params0, state0))
    assert ours["fc2/kernel"] == 512 and ours["output/kernel"] == ticket["output/kernel"]
    assert ours["fc1/kernel"] == ticket["fc1/kernel"]  # the only pooled layer here


def test_retraining_refusals():
    for control in (Control("snip"), Control("random_layerwise", ("reinit",))):
        for retraining in ("lr_rewind", "finetune"):
            with pytest.raises(ConfigError, match="--retraining rewind"):
                check_retraining(control, retraining)
        check_retraining(control, "rewind")
    check_retraining(Control("random_layerwise"), "lr_rewind")  # keeps trained weights: fine


@pytest.mark.parametrize("retraining", ["rewind", "lr_rewind"])
def test_a_control_built_like_the_main_line_reproduces_its_level(lines, retraining):
    """`Control("imp")` trained through the control path at level 2 (start from the rewind point, or
    from level 1's trained weights with lr_rewind; level 2's data order) equals the main line's level 2."""
    setup, outcomes, params0, state0 = lines[retraining]
    previous = outcomes[1].state
    inputs = LevelInputs(2, outcomes[2].mask, outcomes[0].mask, start=(previous.params, previous.model_state))
    control = Control("imp")
    if retraining == "lr_rewind":
        with pytest.raises(ConfigError, match="LevelInputs.start"):
            control_start(setup, control, 2, outcomes[2].mask, params0, state0, (params0, state0))
    state = control_start(setup, control, 2, outcomes[2].mask, params0, state0, (params0, state0), inputs)
    outcome = train_control_level(setup, control, 2, state, outcomes[2].mask)
    assert outcome.evaluations == outcomes[2].evaluations
    assert {k: outcome.record[k] for k in RECORD_KEYS} == {k: outcomes[2].record[k] for k in RECORD_KEYS}
    for a, b in zip(jax.tree.leaves(outcome.state.params), jax.tree.leaves(outcomes[2].state.params)):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_lr_rewind_starts_from_the_previous_levels_trained_weights(lines):
    setup, outcomes, params0, state0 = lines["lr_rewind"]
    previous = outcomes[1].state
    inputs = LevelInputs(2, outcomes[2].mask, outcomes[0].mask, start=(previous.params, previous.model_state))
    state = control_start(setup, Control("random_layerwise"), 2, outcomes[2].mask, params0, state0,
                          (params0, state0), inputs)
    kept = np.asarray(outcomes[2].mask["fc1"]["kernel"])
    start, trained = np.asarray(state.params["fc1"]["kernel"]), np.asarray(previous.params["fc1"]["kernel"])
    assert np.array_equal(start[kept], trained[kept]) and not np.any(start[~kept])


def test_data_order_per_level_or_fixed():
    per_level = [rng.level_keys(0, "per_level", level) for level in range(3)]
    fixed = [rng.level_keys(0, "fixed", level) for level in range(3)]
    as_list = lambda keys: [np.asarray(jax.random.key_data(k)).tolist() for pair in keys for k in pair]  # noqa: E731
    assert len({str(k) for k in as_list(per_level)}) == 6  # every level and stream its own
    assert len({str(k) for k in as_list(fixed)}) == 2  # one order and one augmentation for all
    a = list(lottery_levels(prepare(tiny_config(levels=1, **{"training.length": "10it"}))))
    b = list(lottery_levels(prepare(tiny_config(levels=1, data_order="fixed", **{"training.length": "10it"}))))
    assert a[1].evaluations != b[1].evaluations


class _BatchNormNet(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
        h = nn.Dense(6, name="dense")(x)
        return nn.BatchNorm(use_running_average=not train, momentum=0.9, name="bn")(h)


def test_reestimated_batchnorm_statistics_equal_numpy():
    """The average over batches of each batch's mean and (biased) variance of the pre-BN activations."""
    model = from_linen("bn_net", _BatchNormNet(), (5,))
    params, state = model.init(jax.random.key(0))
    batches = jax.random.normal(jax.random.key(1), (4, 32, 5)) * 3.0 + 1.0
    stats = reestimate_statistics(model, params, state, batches)["batch_stats"]["bn"]
    kernel, bias = np.asarray(params["dense"]["kernel"]), np.asarray(params["dense"]["bias"])
    h = np.asarray(batches) @ kernel + bias  # [4, 32, 6]
    np.testing.assert_allclose(np.asarray(stats["mean"]), h.mean(axis=1).mean(axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(stats["var"]), h.var(axis=1).mean(axis=0), rtol=1e-4, atol=1e-5)


def test_the_path_with_reestimated_statistics():
    """evaluate_path(bn_state="reestimate") at each alpha equals evaluating the interpolated weights
    with statistics re-estimated for them (NumPy check above), which differ from the interpolated ones."""
    model = from_linen("bn_net", _BatchNormNet(), (5,))
    (pa, sa), (pb, _) = model.init(jax.random.key(0)), model.init(jax.random.key(1))
    sb = jax.tree.map(lambda v: v + 1.0, sa)  # end B's running statistics: anything else than A's
    x = jax.random.normal(jax.random.key(2), (2, 50, 5))
    labels = jax.random.randint(jax.random.key(3), (2, 50), 0, 6)
    test = EvalSet(x, labels, jnp.ones((2, 50), jnp.float32))
    batches = jax.random.normal(jax.random.key(4), (3, 16, 5))
    alpha, loss, _ = evaluate_path(model, pa, pb, sa, sb, test, num_points=5, bn_state="reestimate",
                                   bn_batches=batches)
    _, interpolated, _ = evaluate_path(model, pa, pb, sa, sb, test, num_points=5)
    for a, got in zip(alpha, loss):
        params = jax.tree.map(lambda u, v: (1 - a) * u + a * v, pa, pb)
        state = reestimate_statistics(model, params, sa, batches)
        logits = np.concatenate([np.asarray(model.apply(params, state, xb, False)[0]) for xb in x])
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        want = -log_p[np.arange(100), np.asarray(labels).reshape(-1)].mean()
        assert got == pytest.approx(want, rel=1e-4)
    assert not np.allclose(loss, interpolated)


def test_no_validation_set_means_no_early_stop():
    outcomes = list(lottery_levels(prepare(tiny_config(levels=0, **{"data.validation_size": 0}))))
    record = outcomes[0].record
    assert record["early_stop"] == "none: no validation set"  # nothing to select on: no early stop
    assert record["early_stop_iteration"] is None and record["early_stop_test_accuracy"] is None
    assert record["final_iteration"] == 35 and record["test_accuracy"] == outcomes[0].evaluations[-1]["test_accuracy"]
    assert all(math.isnan(e["val_loss"]) for e in outcomes[0].evaluations)


def _dataset(n: int = 103) -> Dataset:
    x = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    y = (np.arange(n) % 10).astype(np.int32)
    return Dataset(name="toy", x_train=x, y_train=y, x_val=x[:0], y_val=y[:0], x_test=x[:5], y_test=y[:5],
                   num_classes=10)


def test_dataset_modifiers():
    ds = _dataset()
    sub = modify(ds, subsample_fraction=0.25, seed=3)
    assert len(sub.y_train) == math.ceil(0.25 * 103) == 26
    rows = sub.x_train[:, 0].astype(int) // 2
    assert np.all(np.diff(rows) > 0)  # a subset, in the original order
    assert np.array_equal(sub.y_train, ds.y_train[rows])
    noisy = modify(ds, random_labels_fraction=0.5, seed=3)
    assert np.array_equal(noisy.x_train, ds.x_train)
    changed = np.flatnonzero(noisy.y_train != ds.y_train)
    assert 0 < len(changed) <= math.ceil(0.5 * 103)  # a drawn label may equal the true one
    assert np.array_equal(modify(ds, random_labels_fraction=0.5, seed=3).y_train, noisy.y_train)
    assert not np.array_equal(modify(ds, random_labels_fraction=0.5, seed=4).y_train, noisy.y_train)
    assert modify(ds) is ds
    base = tiny_config()
    assert config_hash(base) != config_hash(replace(base, **{"data.random_labels_fraction": 0.1}))
    assert config_hash(base) != config_hash(replace(base, **{"data.transformation_seed": 1}))


def test_pytorch_initialisation_ranges():
    """torch.nn.Linear's default: kernel and bias U(+-1/sqrt(fan_in))."""
    model = get_model("mlp_mnist1d", (40,), 10, init="pytorch")
    params, _ = model.init(jax.random.key(0))
    for layer, fan_in in (("fc1", 40), ("fc2", 500), ("output", 500)):
        bound = 1 / math.sqrt(fan_in)
        for leaf in ("kernel", "bias"):
            w = np.asarray(params[layer][leaf])
            assert np.abs(w).max() <= bound, (layer, leaf)
            assert w.size < 400 or np.abs(w).max() > 0.95 * bound, (layer, leaf)  # the whole range is used
        kernel = np.asarray(params[layer]["kernel"])
        assert abs(kernel.std() - bound / math.sqrt(3)) < 0.05 * bound  # uniform, not normal
    with pytest.raises(ConfigError, match="init"):
        get_model("conv2", (32, 32, 3), 10, init="pytorch")


def test_linear_schedule_hand_worked():
    # the MNIST-1D notebook: round L prunes L/99 of the level-0 count (np.linspace(0, 1, 100))
    assert [kept_at(500, 1 / 99, level, "linear") for level in (0, 1, 2, 98)] == [
        500 - int(500 * 0 / 99), 500 - int(500 * 1 / 99), 500 - int(500 * 2 / 99), 500 - int(500 * 98 / 99)]
    assert kept_at(500, 1 / 99, 99, "linear") == 0
    assert kept_at(1000, 0.2, 2, "geometric") == 640


def test_modulewise_groups_a_layers_kernel_with_its_bias():
    config = tiny_config(**{"pruning.strategy": "modulewise", "pruning.prunable": (r".*kernel", r".*bias")})
    base = {"fc1/kernel": 1280, "fc1/bias": 32, "fc2/kernel": 512, "fc2/bias": 16, "output/kernel": 160,
            "output/bias": 10}
    groups = {g.names: g.keep for g in plan_groups(base, config.pruning, 1)}
    assert groups[("fc1/kernel", "fc1/bias")] == round(1312 * 0.7)
    assert groups[("fc2/kernel", "fc2/bias")] == round(528 * 0.7)
    assert groups[("output/kernel",)] == round(160 * 0.85)  # its override: a group of its own
    assert groups[("output/bias",)] == round(10 * 0.7)  # the default rate, its kernel being apart


def test_cifar_setups_follow_the_papers():
    """Frankle et al. 2020: ResNet-20 and VGG-16 on all 50,000 images with OpenLTH's schedules; the
    Frankle & Carbin Conv-2/4/6 keep their 5,000-image validation split."""
    resnet = load_config("resnet20_cifar10")
    assert resnet.data.validation_size == 0 and resnet.training.length == "160ep"
    assert resnet.optimizer.milestones == ("80ep", "120ep") and resnet.optimizer.gamma == 0.1
    assert resnet.pruning.strategy == "global" and resnet.pruning.exclude == () and resnet.rewind == "500it"
    assert load_config("vgg16_cifar10").data.validation_size == 0
    for name in ("conv2_cifar10", "conv4_cifar10", "conv6_cifar10"):  # None: the loader's own split
        assert load_config(name).data.validation_size is None and cifar.VALIDATION_SIZE == 5000, name
    notebook = load_config("mlp_mnist1d", "notebook")
    assert notebook.init == "pytorch" and notebook.data.validation_size == 0
    assert notebook.pruning.schedule == "linear" and notebook.pruning.strategy == "modulewise"
