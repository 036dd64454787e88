"""Layer graphs (`lth.models.graph`) describe every shipped model exactly, and their unit spaces
(`lth.models.spaces`) name the writers and readers structured pruning and compaction rely on."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lth.models import get_model, model_names
from lth.models.graph import graph_model_names, model_graph, weighted_layers
from lth.models.graph_forward import forward
from lth.models.spaces import unit_members, unit_spaces
from lth.sparsity.masks import named_leaves

# small inputs where the architecture allows (the forward is the same function at any size)
SHAPES = {"lenet300_100": (28, 28, 1), "lenet300_100_bn": (28, 28, 1), "mlp_tiny": (8, 8, 1), "mlp_mnist1d": (40,),
          "lenet5": (28, 28, 1), "conv2": (8, 8, 3), "conv4": (8, 8, 3), "conv6": (8, 8, 3), "vgg11": (32, 32, 3),
          "resnet20": (8, 8, 3), "cnn_mnist1d": (40,), "embed_mlp": (67,)}


def test_every_registered_model_has_a_graph():
    assert graph_model_names() == model_names()


def _perturbed(model_name: str, shape: tuple[int, ...]):
    """A model's params and state with nonzero biases, BatchNorm scales and statistics (so that a graph
    ignoring any of them, or applying them in the wrong order, differs)."""
    model = get_model(model_name, shape, 10)
    params, state = jax.jit(model.init)(jax.random.key(0))
    rng = np.random.default_rng(1)
    params = jax.tree.map(lambda a: np.asarray(a) + 0.1 * rng.standard_normal(a.shape).astype(np.float32), params)
    state = jax.tree.map(lambda a: np.asarray(a) + rng.uniform(size=a.shape).astype(np.float32), state)
    return model, params, state


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_graph_forward_equals_the_model(name):
    model, params, state = _perturbed(name, SHAPES[name])
    x = jax.random.normal(jax.random.key(3), (3, *SHAPES[name]))
    expected, _ = jax.jit(lambda p, s, x: model.apply(p, s, x, False))(params, state, x)
    graph = model_graph(name)
    got = jax.jit(lambda p, s, x: forward(graph, p, s, x))(params, state, x)
    scale = float(jnp.max(jnp.abs(expected)))
    assert scale > 1e-3
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-5, atol=1e-6 * scale)


@pytest.mark.parametrize("name", ["vgg13", "vgg16", "vgg19", "resnet56"])
def test_deeper_graphs_name_every_kernel_of_the_model(name):
    shape = (32, 32, 3)
    params, _ = jax.eval_shape(get_model(name, shape, 10).init, jax.random.key(0))
    kernels = {path.removesuffix("/kernel") for path in named_leaves(params) if path.endswith("/kernel")}
    assert [layer["params"] for layer in weighted_layers(model_graph(name))] == sorted(
        kernels, key=[layer["params"] for layer in weighted_layers(model_graph(name))].index)
    assert {layer["params"] for layer in weighted_layers(model_graph(name))} == kernels


def test_spaces_of_lenet5_and_their_readers():
    params, _ = jax.eval_shape(get_model("lenet5", (28, 28, 1), 10).init, jax.random.key(0))
    spaces = unit_spaces(model_graph("lenet5"), params)
    assert [(s.name, s.size, s.role, s.op) for s in spaces] == [
        ("input", 1, "input", ""), ("conv1", 6, "hidden", "conv"), ("conv2", 16, "hidden", "conv"),
        ("fc1", 120, "hidden", "dense"), ("fc2", 84, "hidden", "dense"), ("output", 10, "output", "dense")]
    conv2 = spaces[2]
    assert [(r.layer, r.positions) for r in conv2.readers] == [("fc1", 25)]  # 5x5 positions x 16 channels = 400 rows


def test_residual_streams_are_one_space_across_their_writers():
    params, _ = jax.eval_shape(get_model("resnet20", (32, 32, 3), 10).init, jax.random.key(0))
    spaces = {s.name: s for s in unit_spaces(model_graph("resnet20"), params)}
    stage2 = spaces["block2_1/conv2"]
    assert stage2.stream and stage2.size == 32
    assert stage2.writers == ["block2_1/conv2", "block2_1/shortcut", "block2_2/conv2", "block2_3/conv2"]
    assert [r.layer for r in stage2.readers] == ["block2_2/conv1", "block2_3/conv1", "block3_1/conv1",
                                                  "block3_1/shortcut"]
    inner = spaces["block2_2/conv1"]
    assert not inner.stream and [r.layer for r in inner.readers] == ["block2_2/conv2"]
    members = unit_members(stage2, named_leaves(params))
    assert ("block2_1/shortcut_bn/scale", 0) in members and ("block2_3/conv2/kernel", -1) in members
    mlp_params, _ = jax.eval_shape(get_model("mlp_mnist1d", (40,), 10).init, jax.random.key(0))
    mlp = unit_spaces(model_graph("mlp_mnist1d"), mlp_params)
    assert [(s.name, s.writers, s.stream) for s in mlp if s.role == "hidden"] == [("fc1", ["fc1", "fc2"], True)]


def test_zeroing_a_stream_unit_in_every_writer_zeroes_it_everywhere():
    """A stream channel zeroed in all its writers (kernel, BN scale and bias) carries zero through every
    residual addition: the reason a stream's channel is one unit."""
    model, params, state = _perturbed("resnet20", (8, 8, 3))
    spaces = {s.name: s for s in unit_spaces(model_graph("resnet20"), params)}
    leaves = named_leaves(params)
    zero = {path for path, _ in unit_members(spaces["block2_1/conv2"], leaves)}

    def zero_unit(path, leaf):
        name = "/".join(str(k.key) for k in path)
        if name not in zero:
            return leaf
        leaf = np.array(leaf)
        leaf[..., 5] = 0.0
        return leaf

    zeroed = jax.tree_util.tree_map_with_path(zero_unit, params)
    x = jax.random.normal(jax.random.key(4), (2, 8, 8, 3))
    stage2 = model_graph("resnet20")[:7]  # stem + stage 1 + stage 2 (3 blocks each)
    from lth.models.graph_forward import run_layers
    h = jax.jit(lambda p, s, x: run_layers(stage2, p, s, x))(zeroed, state, x)
    assert h.shape[-1] == 32 and float(jnp.max(jnp.abs(h[..., 5]))) == 0.0
    assert float(jnp.max(jnp.abs(h[..., 4]))) > 0.0


@pytest.mark.parametrize("name", ["lenet5", "conv2", "resnet20", "cnn_mnist1d"])
def test_shifted_convolutions_compute_what_xla_convolutions_do(name):
    """Padding, strides (ResNet's stride-2 convs and 1x1 shortcuts), 1-D convs: the sum of shifted matmuls
    equals XLA's convolution."""
    model, params, state = _perturbed(name, SHAPES[name])
    x = np.random.default_rng(5).standard_normal((2, *SHAPES[name])).astype(np.float32)
    graph = model_graph(name)
    xla = jax.jit(lambda p, s, x: forward(graph, p, s, x))(params, state, x)
    shifted = jax.jit(lambda p, s, x: forward(graph, p, s, x, conv="shifted"))(params, state, x)
    scale = float(jnp.max(jnp.abs(xla)))
    np.testing.assert_allclose(np.asarray(shifted), np.asarray(xla), rtol=1e-5, atol=1e-6 * scale)
