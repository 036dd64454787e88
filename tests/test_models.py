"""Models: published parameter counts and initialisation."""

import jax
import numpy as np
import pytest

from lth.errors import ConfigError
from lth.models import from_functions, get_model


def n_params(tree):
    return sum(int(np.size(x)) for x in jax.tree.leaves(tree))


def test_lenet300_100_counts_and_glorot_normal_init():
    params, state = get_model("lenet300_100", (28, 28, 1), 10).init(jax.random.key(0))
    assert n_params(params) == 266_610  # Frankle & Carbin: 266,610 with biases
    assert state == {}
    w = np.asarray(params["fc1"]["kernel"])
    assert w.shape == (784, 300)
    assert w.std() == pytest.approx(np.sqrt(2 / (784 + 300)), rel=0.02)  # Gaussian Glorot
    assert np.abs(w).max() > 3.5 * np.sqrt(2 / (784 + 300))  # an untruncated normal has tails
    assert float(np.abs(np.asarray(params["fc1"]["bias"])).sum()) == 0.0


def test_mnist1d_mlp_is_residual():
    model = get_model("mlp_mnist1d", (40,), 10)
    params, state = model.init(jax.random.key(0))
    assert [params[k]["kernel"].shape for k in ("fc1", "fc2", "output")] == [(40, 500), (500, 500), (500, 10)]
    x = np.random.default_rng(0).normal(size=(3, 40)).astype(np.float32)
    zeroed = {**params, "fc2": jax.tree.map(np.zeros_like, params["fc2"])}
    # with fc2 zeroed, the residual block is the identity: output(relu(fc1 x))
    logits, _ = model.apply(zeroed, state, x, False)
    h = np.maximum(x @ params["fc1"]["kernel"] + params["fc1"]["bias"], 0)
    np.testing.assert_allclose(logits, h @ params["output"]["kernel"] + params["output"]["bias"], rtol=1e-5, atol=1e-5)


def test_lenet300_100_bn_normalises_each_hidden_layer_before_its_relu():
    model = get_model("lenet300_100_bn", (28, 28, 1), 10)
    params, state = model.init(jax.random.key(0))
    assert n_params(params) == 266_610 + 2 * (300 + 100)  # LeNet-300-100 + BatchNorm scale and bias
    assert set(state["batch_stats"]) == {"bn1", "bn2"}
    x = np.random.default_rng(0).normal(size=(8, 28, 28, 1)).astype(np.float32)
    logits, after = model.apply(params, state, x, True)
    # training mode normalises by the batch's statistics (biased variance, eps 1e-5), hand-computed
    h = x.reshape(8, -1) @ params["fc1"]["kernel"] + params["fc1"]["bias"]
    h = np.maximum((h - h.mean(0)) / np.sqrt(h.var(0) + 1e-5), 0)
    h = h @ params["fc2"]["kernel"] + params["fc2"]["bias"]
    h2 = np.maximum((h - h.mean(0)) / np.sqrt(h.var(0) + 1e-5), 0)
    np.testing.assert_allclose(logits, h2 @ params["output"]["kernel"] + params["output"]["bias"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(after["batch_stats"]["bn2"]["mean"], 0.1 * h.mean(0), rtol=1e-4, atol=1e-5)


def test_unknown_model():
    with pytest.raises(ConfigError, match="unknown model 'lenet5000'"):
        get_model("lenet5000", (28, 28, 1), 10)


def test_plain_functions_model():
    model = from_functions("linear", lambda k: {"w": {"kernel": jax.random.normal(k, (4, 2))}},
                           lambda p, x: x @ p["w"]["kernel"])
    params, state = model.init(jax.random.key(1))
    logits, _ = model.apply(params, state, np.ones((3, 4), np.float32), True)
    assert logits.shape == (3, 2)
