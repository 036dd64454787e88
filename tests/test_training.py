"""Masked training: pruned weights and their optimiser moments stay exactly zero; schedules; early stop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import backend_compiles

from lth.spec.config import OptimizerConfig
from lth.data.dataset import Dataset
from lth.data.device import epoch_order, to_device
from lth.models import get_model
from lth.sparsity.masks import make_mask, mask_leaves, named_leaves
from lth.training import chunk_plan, make_schedule, make_trainer, summarize, train


def synthetic(n=240, d=12, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(d, classes))
    def make(m):
        x = rng.normal(size=(m, d)).astype(np.float32)
        return x, np.argmax(x @ w, 1).astype(np.int32)
    return Dataset("synthetic", *make(n), *make(60), *make(60), num_classes=classes)


def half_mask(params, seed=0):
    rng = np.random.default_rng(seed)
    mask = make_mask(params)
    return jax.tree.map(lambda m: None if m is None else jnp.asarray(rng.random(m.shape) < 0.5), mask,
                        is_leaf=lambda x: x is None)


@pytest.mark.parametrize("opt", [
    OptimizerConfig(name="adam", learning_rate=1e-2),
    OptimizerConfig(name="adamw", learning_rate=1e-2, weight_decay=0.1),
    OptimizerConfig(name="sgd", learning_rate=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
])
def test_pruned_weights_and_moments_stay_zero(opt):
    ds = synthetic()
    model = get_model("mlp_tiny", ds.input_shape, ds.num_classes)
    params, state = model.init(jax.random.key(0))
    mask = half_mask(params)
    trainer = make_trainer(model, opt, total_steps=40, steps_per_epoch=8, batch_size=30, eval_every=10)
    st = trainer.init_state(params, state)  # params NOT pre-masked: the first update must zero them
    for st, _ in train(trainer, st, mask, to_device(ds), jax.random.key(1)):
        pass
    assert int(st.step) == 40
    p = named_leaves(st.params)
    for name, m in mask_leaves(mask).items():
        m = np.asarray(m)
        assert np.all(np.asarray(p[name])[~m] == 0.0)
        assert np.all(np.asarray(p[name])[m] != 0.0)  # survivors trained
        for leaf_path, moment in jax.tree_util.tree_flatten_with_path(st.opt_state)[0]:
            names = "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in leaf_path)
            if np.shape(moment) == m.shape and names.endswith(name.split("/")[0] + "/kernel"):
                assert np.all(np.asarray(moment)[~m] == 0.0), names


def test_one_compilation_per_chunk_length():
    ds = synthetic()
    model = get_model("mlp_tiny", ds.input_shape, ds.num_classes)
    params, state = model.init(jax.random.key(0))
    trainer = make_trainer(model, OptimizerConfig(), total_steps=20, steps_per_epoch=8, batch_size=30, eval_every=5)
    data = to_device(ds)
    order = epoch_order(jax.random.key(0), 0, int(data.x_train.shape[0]), 30)
    start, key = trainer.init_state(params, state), jax.random.key(1)
    masks = (make_mask(params), half_mask(params, 1), half_mask(params, 2))
    with backend_compiles() as compiles:
        trainer.train_chunk(start, masks[0], data, order, jnp.int32(0), key, length=8)
        first = len(compiles)
        for mask in masks[1:]:  # another mask: the same program
            trainer.train_chunk(start, mask, data, order, jnp.int32(0), key, length=8)
        assert len(compiles) == first
        trainer.train_chunk(start, masks[2], data, order, jnp.int32(0), key, length=4)  # the final chunk of 4
        assert len(compiles) == first + 1
        for mask in masks:  # whole runs under every mask: nothing new
            for _ in train(trainer, trainer.init_state(params, state), mask, data, jax.random.key(0)):
                pass
        assert len(compiles) == first + 1


def test_evaluation_schedule_and_records():
    ds = synthetic()
    model = get_model("mlp_tiny", ds.input_shape, ds.num_classes)
    params, state = model.init(jax.random.key(0))
    trainer = make_trainer(model, OptimizerConfig(), total_steps=22, steps_per_epoch=8, batch_size=30, eval_every=5)
    evals = [e for _, chunk in train(trainer, trainer.init_state(params, state), make_mask(params), to_device(ds),
                                     jax.random.key(0)) for e in chunk]
    assert [e["iteration"] for e in evals] == [5, 10, 15, 20, 22]  # every 5, and the last
    loss, acc = trainer.evaluate(params, state, to_device(ds).test)
    logits, _ = model.apply(params, state, ds.x_test, False)
    assert float(acc) == pytest.approx(float(np.mean(np.argmax(logits, 1) == ds.y_test)))
    assert float(loss) > 0


def test_padded_evaluation_ignores_padding():
    from lth.data.device import eval_set

    ds = synthetic()
    model = get_model("mlp_tiny", ds.input_shape, ds.num_classes)
    params, state = model.init(jax.random.key(0))
    trainer = make_trainer(model, OptimizerConfig(), total_steps=1, steps_per_epoch=8, batch_size=30, eval_every=1)
    whole = trainer.evaluate(params, state, eval_set(ds.x_test, ds.y_test, 60))
    padded = trainer.evaluate(params, state, eval_set(ds.x_test, ds.y_test, 25))  # 3 batches, 15 padding rows
    np.testing.assert_allclose(np.array(whole), np.array(padded), rtol=1e-6)


def test_schedules():
    step = make_schedule(OptimizerConfig(learning_rate=0.1, schedule="step", milestones=("20it", "3ep"), gamma=0.1),
                         total_steps=50, steps_per_epoch=10)
    assert [float(step(s)) for s in (0, 19, 20, 29, 30, 49)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    cos = make_schedule(OptimizerConfig(learning_rate=1.0, schedule="cosine"), total_steps=100, steps_per_epoch=10)
    assert float(cos(0)) == pytest.approx(1.0) and float(cos(50)) == pytest.approx(0.5) and float(cos(100)) < 1e-6
    warm = make_schedule(OptimizerConfig(learning_rate=1.0, warmup="4it"), total_steps=100, steps_per_epoch=10)
    assert [float(warm(s)) for s in (0, 1, 3, 10)] == pytest.approx([0.25, 0.5, 1.0, 1.0])


def test_chunk_plan_cuts_at_epochs_and_breaks():
    assert chunk_plan(0, 25, 10) == [(0, 0, 10), (1, 0, 10), (2, 0, 5)]
    assert chunk_plan(0, 25, 10, breaks=(13,)) == [(0, 0, 10), (1, 0, 3), (1, 3, 7), (2, 0, 5)]
    assert chunk_plan(13, 25, 10) == [(1, 3, 7), (2, 0, 5)]


def test_summarize_early_stop():
    evals = [
        {"iteration": 100, "val_loss": 0.5, "val_accuracy": 0.8, "test_accuracy": 0.81},
        {"iteration": 200, "val_loss": 0.3, "val_accuracy": 0.9, "test_accuracy": 0.88},
        {"iteration": 300, "val_loss": 0.3, "val_accuracy": 0.9, "test_accuracy": 0.93},
        {"iteration": 400, "val_loss": 0.4, "val_accuracy": 0.9, "test_accuracy": 0.90},
    ]
    s = summarize(evals)
    assert s["early_stop_iteration"] == 200  # first minimum
    assert s["early_stop_test_accuracy"] == 0.88
    assert s["test_accuracy"] == 0.90 and s["best_test_accuracy"] == 0.93


def test_summarize_from_the_final_mask_on():
    """With `from_iteration` (the first iteration under a final mask) the early stop and the best accuracy
    look only at the evaluations from there on; with none there, they are None and `early_stop` says why."""
    evals = [
        {"iteration": 100, "val_loss": 0.2, "val_accuracy": 0.95, "test_accuracy": 0.95},  # before the final mask
        {"iteration": 200, "val_loss": 0.5, "val_accuracy": 0.8, "test_accuracy": 0.81},
        {"iteration": 300, "val_loss": 0.4, "val_accuracy": 0.85, "test_accuracy": 0.84},
        {"iteration": 400, "val_loss": 0.45, "val_accuracy": 0.83, "test_accuracy": 0.86},
    ]
    assert summarize(evals)["early_stop_iteration"] == 100
    s = summarize(evals, from_iteration=200)  # iteration 200 is the first evaluation after an update at 199
    assert s["early_stop_iteration"] == 300 and s["early_stop_test_accuracy"] == 0.84
    assert s["best_test_accuracy"] == 0.86 and s["test_accuracy"] == 0.86 and "early_stop" not in s
    assert summarize(evals, from_iteration=201)["early_stop_iteration"] == 300
    none = summarize(evals, from_iteration=401)
    assert none["early_stop_iteration"] is None and none["best_test_accuracy"] is None
    assert "401" in none["early_stop"] and none["test_accuracy"] == 0.86 and none["final_iteration"] == 400


def test_nnx_model_trains_with_a_mask():
    from flax import nnx

    from lth.models import from_nnx

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.hidden = nnx.Linear(12, 16, rngs=rngs)
            self.out = nnx.Linear(16, 3, rngs=rngs)

        def __call__(self, x):
            return self.out(nnx.relu(self.hidden(x)))

    ds = synthetic()
    model = from_nnx("nnx_net", Net)
    params, state = model.init(jax.random.key(0))
    mask = half_mask(params)
    trainer = make_trainer(model, OptimizerConfig(learning_rate=1e-2), total_steps=24, steps_per_epoch=8,
                           batch_size=30, eval_every=8)
    evals = []
    for st, chunk in train(trainer, trainer.init_state(params, state), mask, to_device(ds), jax.random.key(1)):
        evals += chunk
    kernel = np.asarray(st.params["hidden"]["kernel"][...])
    assert np.all(kernel[~np.asarray(mask["hidden"]["kernel"])] == 0.0)
    assert evals[-1]["test_accuracy"] > 0.5  # it learned (3 classes, chance 1/3)


def test_steps_loop_matches_the_scan_loop():
    """The per-iteration loop (used for convolutional models on CPU) computes what the scan does."""
    ds = synthetic()
    model = get_model("mlp_tiny", ds.input_shape, ds.num_classes)
    params, state = model.init(jax.random.key(0))
    mask = half_mask(params)
    results = {}
    for loop in ("scan", "steps"):
        trainer = make_trainer(model, OptimizerConfig(learning_rate=1e-2), total_steps=20, steps_per_epoch=8,
                               batch_size=30, eval_every=5, loop=loop)
        evals = []
        for st, chunk in train(trainer, trainer.init_state(params, state), mask, to_device(ds), jax.random.key(1)):
            evals += chunk
        results[loop] = (st, evals)
    (a, ea), (b, eb) = results["scan"], results["steps"]
    assert [e["iteration"] for e in ea] == [e["iteration"] for e in eb]
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([e["val_loss"] for e in ea], [e["val_loss"] for e in eb], rtol=1e-5)


def test_loop_choice():
    from lth.training import choose_loop, uses_convolution

    assert not uses_convolution(get_model("mlp_tiny", (12,), 3), (12,))
    assert uses_convolution(get_model("conv2", (32, 32, 3), 10), (32, 32, 3))
    assert choose_loop(get_model("lenet300_100", (28, 28, 1), 10), (28, 28, 1)) == "scan"
    expected = "steps" if jax.default_backend() == "cpu" else "scan"
    assert choose_loop(get_model("resnet20", (32, 32, 3), 10), (32, 32, 3)) == expected
