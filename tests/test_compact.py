"""Compaction of every model family: the compact network computes what the masked model computes
(its own flax apply in evaluation mode), its cost matches hand-worked LeNet examples, --align pads."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lth.errors import LthError
from lth.models import get_model
from lth.models.graph import model_graph
from lth.models.spaces import unit_members, unit_spaces
from lth.sparsity.alive import alive_units, compact_cost
from lth.sparsity.masks import apply_mask, make_mask, named_leaves
from lth.tickets.compact import compact_forward, compact_network
from lth.tickets.file import nest

SHAPES = {"lenet300_100": (28, 28, 1), "lenet300_100_bn": (28, 28, 1), "mlp_mnist1d": (40,), "mlp_tiny": (8, 8, 1),
          "lenet5": (28, 28, 1), "conv2": (8, 8, 3), "vgg11": (32, 32, 3), "resnet20": (8, 8, 3),
          "cnn_mnist1d": (40,)}
ALL_LEAVES = (r".*kernel", r".*bias", r".*scale")  # so that whole units (every member) can be masked


def _model(name, seed=0):
    model = get_model(name, SHAPES[name], 10)
    params, state = model.init(jax.random.key(seed))
    rng = np.random.default_rng(seed)
    # nonzero biases and BatchNorm statistics, as training leaves them
    params = nest([(p, v + (0.2 * rng.standard_normal(v.shape)).astype(v.dtype) if "kernel" not in p else v)
                   for p, v in named_leaves(params).items()])
    state = nest([(p, np.abs(v + 0.5 * rng.standard_normal(v.shape)).astype(v.dtype) + 0.1)
                  for p, v in named_leaves(state).items()])
    return model, params, state


def _random_mask(name, params, density, seed, whole_units=2, dead_in=1):
    """Kernels keep `density` of their entries at random; in every hidden space `whole_units` units
    lose every member (kernel column, bias, norm) and `dead_in` more lose only their kernel column
    (a constant: its bias stays)."""
    rng = np.random.default_rng(seed)
    mask = {p: None if m is None else np.asarray(rng.random(np.shape(m)) < density if p.endswith("kernel")
                                                 else np.ones(np.shape(m), bool))
            for p, m in named_leaves(make_mask(params, ALL_LEAVES)).items()}
    leaves = named_leaves(params)
    for space in unit_spaces(model_graph(name), params):
        if space.role != "hidden":
            continue
        units = rng.choice(space.size, whole_units + dead_in, replace=False)
        for path, axis in unit_members(space, leaves):
            chosen = units if path.endswith("kernel") else units[:whole_units]
            np.moveaxis(mask[path], axis, 0)[chosen] = False
    return nest(list(mask.items()))


def _check_same(model, params, state, mask, name, align=1):
    x = jnp.asarray(np.random.default_rng(1).standard_normal((2, *SHAPES[name])), jnp.float32)
    reference, _ = model.apply(apply_mask(params, mask), state, x, False)
    net = compact_network(name, params, state, mask, SHAPES[name], align)
    out = compact_forward(net, x)
    scale = max(1.0, float(jnp.max(jnp.abs(reference))))
    np.testing.assert_allclose(np.asarray(out), np.asarray(reference), rtol=1e-5, atol=1e-5 * scale)
    sizes = sum(int(np.size(v)) for v in jax.tree.leaves(net.params))
    assert net.report["params"] == sizes
    return net


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_compact_network_computes_the_masked_function(name):
    model, params, state = _model(name)
    mask = _random_mask(name, params, 0.2 if name != "mlp_tiny" else 0.08, seed=2)
    net = _check_same(model, params, state, mask, name)
    spaces = net.report["spaces"]
    hidden = [v for k, v in spaces.items() if k not in ("input", "output")]
    assert all(v["alive"] < v["total"] for v in hidden if v["total"] > 4)  # whole units and zeros are gone
    assert sum(v["zero"] for v in hidden) >= 2
    assert spaces["output"]["alive"] == 10
    assert net.report["params"] < net.report["dense_params"] and net.report["macs"] < net.report["dense_macs"]
    assert not any(layer.get("norm") for layer in _weighted(net.graph))


def _weighted(layers):
    for layer in layers:
        if layer["op"] == "residual":
            yield from _weighted(layer["body"] + layer["shortcut"])
        else:
            yield layer


@pytest.mark.parametrize("name", ("lenet300_100_bn", "lenet5", "mlp_mnist1d"))
def test_trained_ticket_compacts_exactly(name):
    """A few SGD steps in training mode (BatchNorm statistics move), then a 10 % magnitude-free mask."""
    model = get_model(name, SHAPES[name], 10)
    params, state = model.init(jax.random.key(3))
    x = jnp.asarray(np.random.default_rng(4).standard_normal((8, *SHAPES[name])), jnp.float32)
    y = jnp.arange(8) % 10
    tx = optax.sgd(0.05)
    opt = tx.init(params)

    def loss(p, s):
        logits, s = model.apply(p, s, x, True)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), s

    for _ in range(3):
        (_, state), grads = jax.value_and_grad(loss, has_aux=True)(params, state)
        updates, opt = tx.update(grads, opt)
        params = optax.apply_updates(params, updates)
    mask = _random_mask(name, params, 0.1, seed=5, whole_units=1, dead_in=2)
    net = _check_same(model, params, state, mask, name)
    assert any(v["folded"] + v["kept_constant"] for v in net.report["spaces"].values())


def test_a_constant_unit_is_folded_where_exact_and_kept_before_zero_padding():
    """LeNet-5: conv2 (no padding) reads conv1, so a conv1 unit without inputs but with a bias folds;
    Conv-2: conv2 pads, so conv1's constant unit stays (its kernel column zero, its bias the value)."""
    for name, expect in (("lenet5", "folded"), ("conv2", "kept_constant")):
        model, params, state = _model(name)
        mask = make_mask(params)
        mask["conv1"]["kernel"] = mask["conv1"]["kernel"].at[..., 0].set(False)
        net = _check_same(model, params, state, mask, name)
        assert net.report["spaces"]["conv1"][expect] == 1
        assert net.report["spaces"]["conv1"]["alive"] == (5 if expect == "folded" else 64)


def test_dead_border_pixels_leave_the_input():
    model, params, state = _model("lenet300_100")
    mask = make_mask(params)
    border = np.ones((28, 28, 1), bool)
    border[2:-2, 2:-2] = False
    mask["fc1"]["kernel"] = jnp.asarray(np.where(border.reshape(-1, 1), False, np.ones((784, 300), bool)))
    net = _check_same(model, params, state, mask, "lenet300_100")
    assert net.input_index.tolist() == np.flatnonzero(~border.reshape(-1)).tolist()
    assert net.params["fc1"]["kernel"].shape == (24 * 24, 300)


def test_lenet_costs_match_hand_computed_numbers():
    graph, params = model_graph("lenet5"), get_model("lenet5", (28, 28, 1), 10).init(jax.random.key(0))[0]
    spaces = unit_spaces(graph, params)
    full = {s.index: np.ones(s.size, bool) for s in spaces}
    cost = compact_cost(graph, spaces, full, (28, 28, 1))
    # conv1 28x28 out, 5x5x1x6; pool 14; conv2 10x10 out, 5x5x6x16; pool 5; fc 400-120-84-10
    macs = 28 * 28 * 25 * 6 + 10 * 10 * 25 * 6 * 16 + 400 * 120 + 120 * 84 + 84 * 10
    assert cost["dense_macs"] == cost["macs"] == macs == 416_520
    assert cost["dense_params"] == 25 * 6 + 6 + 25 * 6 * 16 + 16 + 400 * 120 + 120 + 120 * 84 + 84 + 84 * 10 + 10
    half = dict(full)
    conv2 = next(s for s in spaces if s.name == "conv2")
    half[conv2.index] = np.arange(16) < 8  # 8 of 16 conv2 channels: fc1 reads 5*5*8 = 200 inputs
    cost = compact_cost(graph, spaces, half, (28, 28, 1), align=1)
    assert cost["macs"] == 28 * 28 * 25 * 6 + 10 * 10 * 25 * 6 * 8 + 200 * 120 + 120 * 84 + 84 * 10
    mlp = model_graph("lenet300_100")
    p = get_model("lenet300_100", (28, 28, 1), 10).init(jax.random.key(0))[0]
    sp = unit_spaces(mlp, p)
    alive = {s.index: np.ones(s.size, bool) for s in sp}
    alive[sp[1].index] = np.arange(300) < 37  # 37 of fc1's units
    cost = compact_cost(mlp, sp, alive, (28, 28, 1), align=16)  # 37 -> 48, 100 -> 112
    assert cost["dense_macs"] == 784 * 300 + 300 * 100 + 100 * 10 == 266_200
    assert cost["macs"] == 784 * 48 + 48 * 112 + 112 * 10
    assert cost["params"] == cost["macs"] + 48 + 112 + 10
    assert cost["units"]["fc1"] == [37, 300]


@pytest.mark.parametrize("name", ("lenet300_100", "resnet20"))
def test_align_pads_hidden_widths_with_zero_units(name):
    model, params, state = _model(name)
    mask = _random_mask(name, params, 0.2, seed=7)
    net = _check_same(model, params, state, mask, name, align=8)
    for path, leaf in named_leaves(net.params).items():
        if path.endswith("kernel") and not path.startswith("output"):
            assert leaf.shape[-1] % 8 == 0
    assert net.params["output"]["kernel"].shape[-1] == 10
    plain = compact_network(name, params, state, mask, SHAPES[name])
    assert net.report["params"] >= plain.report["params"]


def test_alive_units_needs_only_masks_and_shapes():
    _, params, _ = _model("mlp_tiny")
    mask = _random_mask("mlp_tiny", params, 0.08, seed=2)
    graph = model_graph("mlp_tiny")
    spaces = unit_spaces(graph, params)
    shapes = {p: np.shape(v) for p, v in named_leaves(params).items()}
    masks = {p: None if m is None else np.asarray(m) for p, m in named_leaves(mask).items()}
    alive = alive_units(graph, spaces, masks, shapes)
    net = compact_network("mlp_tiny", params, {}, mask, SHAPES["mlp_tiny"])
    assert [int(a.sum()) for a in alive.values()] == [v["alive"] for v in net.report["spaces"].values()]
    assert math.prod(net.params["fc1"]["kernel"].shape) == int(alive[0].sum() * alive[1].sum())


def test_bad_align_is_one_line():
    _, params, state = _model("mlp_tiny")
    with pytest.raises(LthError, match="align must be a positive integer"):
        compact_network("mlp_tiny", params, state, make_mask(params), SHAPES["mlp_tiny"], align=0)
