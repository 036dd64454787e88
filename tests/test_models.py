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


def test_unknown_model():
    with pytest.raises(ConfigError, match="unknown model 'lenet5000'"):
        get_model("lenet5000", (28, 28, 1), 10)


def test_plain_functions_model():
    model = from_functions("linear", lambda k: {"w": {"kernel": jax.random.normal(k, (4, 2))}},
                           lambda p, x: x @ p["w"]["kernel"])
    params, state = model.init(jax.random.key(1))
    logits, _ = model.apply(params, state, np.ones((3, 4), np.float32), True)
    assert logits.shape == (3, 2)
