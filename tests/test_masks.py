"""Mask pytrees on flax linen params and flax nnx State."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lth.errors import MaskError
from lth.models import get_model
from lth.sparsity.masks import (
    apply_mask,
    check_mask,
    count_prunable,
    count_remaining,
    density,
    layer_densities,
    make_mask,
    mask_digest,
    mask_from_arrays,
    mask_to_arrays,
    overlap,
)


@pytest.fixture(scope="module")
def linen_params():
    params, _ = get_model("lenet300_100", (28, 28, 1), 10).init(jax.random.key(0))
    return params


def test_kernels_prunable_biases_never(linen_params):
    mask = make_mask(linen_params)
    assert set(mask) == {"fc1", "fc2", "output"}
    for layer in mask.values():
        assert layer["bias"] is None
        assert layer["kernel"].dtype == jnp.bool_ and bool(layer["kernel"].all())
    assert count_prunable(mask) == 784 * 300 + 300 * 100 + 100 * 10 == 266_200


def test_hand_worked_density():
    params = {"d": {"kernel": jnp.ones((2, 5)), "bias": jnp.ones(5)}, "e": {"kernel": jnp.ones((10, 1))}}
    mask = make_mask(params)
    mask["d"]["kernel"] = mask["d"]["kernel"].at[0].set(False)  # 5 of 10 pruned
    mask["e"]["kernel"] = mask["e"]["kernel"].at[:2].set(False)  # 2 of 10 pruned
    assert count_remaining(mask) == 13
    assert density(mask) == pytest.approx(13 / 20)
    assert layer_densities(mask) == {"d/kernel": 0.5, "e/kernel": 0.8}
    masked = apply_mask(params, mask)
    assert float(masked["d"]["kernel"].sum()) == 5.0
    assert float(masked["d"]["bias"].sum()) == 5.0  # unmasked leaf passes through


def test_prunable_rule_is_a_regex_over_paths(linen_params):
    mask = make_mask(linen_params, prunable=(r"fc.*/kernel", r"output/bias"))
    assert mask["output"]["kernel"] is None
    assert mask["output"]["bias"] is not None
    with pytest.raises(MaskError, match="no parameter matches"):
        make_mask(linen_params, prunable=(r"conv.*",))
    with pytest.raises(MaskError, match="invalid parameter-path regex"):
        make_mask(linen_params, prunable=(r"(",))


def test_nnx_state():
    class Net(nnx.Module):
        def __init__(self, rngs):
            self.hidden = nnx.Linear(6, 4, rngs=rngs)
            self.norm = nnx.LayerNorm(4, rngs=rngs)
            self.out = nnx.Linear(4, 3, rngs=rngs)

        def __call__(self, x):
            return self.out(self.norm(self.hidden(x)))

    graphdef, params, rest = nnx.split(Net(nnx.Rngs(0)), nnx.Param, ...)
    mask = make_mask(params)
    assert layer_densities(mask) == {"hidden/kernel": 1.0, "out/kernel": 1.0}  # norm scale/bias never
    mask = jax.tree.map(lambda m: None if m is None else m.at[0].set(False), mask, is_leaf=lambda x: x is None)
    masked = apply_mask(params, mask)
    assert float(jnp.abs(masked["hidden"]["kernel"][...][0]).sum()) == 0.0
    assert density(mask) == pytest.approx((5 * 4 + 3 * 3) / (6 * 4 + 4 * 3))
    y = nnx.merge(graphdef, masked, rest)(jnp.ones((2, 6)))
    assert y.shape == (2, 3)
    check_mask(mask, params)


def test_check_mask_rejects_wrong_structure_and_shape(linen_params):
    other, _ = get_model("mlp_tiny", (28, 28, 1), 10).init(jax.random.key(0))
    with pytest.raises(MaskError, match="does not fit the params"):
        check_mask(make_mask(other), linen_params)
    bad = make_mask(linen_params)
    bad["fc2"]["kernel"] = jnp.ones((100, 300), bool)
    with pytest.raises(MaskError, match=r"fc2/kernel has shape \(100, 300\)"):
        check_mask(bad, linen_params)


def test_arrays_round_trip_and_mismatch(linen_params):
    mask = make_mask(linen_params)
    mask["fc1"]["kernel"] = mask["fc1"]["kernel"].at[:10].set(False)
    arrays = mask_to_arrays(mask)
    back = mask_from_arrays(arrays, linen_params)
    assert mask_digest(back) == mask_digest(mask)
    np.testing.assert_array_equal(back["fc1"]["kernel"], mask["fc1"]["kernel"])
    with pytest.raises(MaskError, match="shape"):
        mask_from_arrays({**arrays, "fc1/kernel": np.ones((3, 3), bool)}, linen_params)
    with pytest.raises(MaskError, match="does not have"):
        mask_from_arrays({"conv9/kernel": np.ones((3, 3), bool)}, linen_params)


def test_overlap():
    a = {"l": {"kernel": jnp.array([True, True, False, False])}}
    b = {"l": {"kernel": jnp.array([True, False, True, False])}}
    assert overlap(a, b) == pytest.approx(1 / 3)
    assert overlap(a, a) == 1.0
