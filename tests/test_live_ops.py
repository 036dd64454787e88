"""`lth.models.live_ops`: a model's init without the forward pass flax runs for the shapes, same bits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lth import rng
from lth.models import get_model
from lth.models.live_ops import live_equations, without_dead_ops


def _leaves_bytes(tree):
    return [(leaf.dtype, leaf.shape, np.asarray(leaf).tobytes()) for leaf in jax.tree.leaves(tree)]


@pytest.mark.parametrize("name,shape", [("lenet300_100_bn", (28, 28, 1)),
                                        ("conv2", (32, 32, 3)), ("embed_mlp", (2,))])
def test_the_init_gives_the_bits_of_flaxs_eager_init(name, shape):
    model = get_model(name, shape, 113 if name == "embed_mlp" else 10)
    eager = model.init.__wrapped__  # the init as flax runs it, forward pass included
    for seed in (0, 5):
        key = rng.stream(seed, "init")
        live, full = model.init(key), eager(key)
        assert jax.tree.structure(live) == jax.tree.structure(full)
        assert _leaves_bytes(live) == _leaves_bytes(full)


def test_the_forward_pass_is_dropped_and_the_draws_kept():
    model = get_model("lenet300_100", (28, 28, 1), 10)
    jaxpr = jax.make_jaxpr(model.init.__wrapped__)(jax.random.key(0)).jaxpr
    before = [eqn.primitive.name for eqn in jaxpr.eqns]
    after = [eqn.primitive.name for eqn in live_equations(jaxpr).eqns]
    assert before.count("dot_general") == 3 and "dot_general" not in after  # one per layer, then none
    assert after.count("jit") == before.count("jit") == 3  # the random draws (jitted by jax.random) stay


def test_effects_are_kept_and_a_function_needing_values_runs_as_is():
    seen = []

    def noisy(x):
        jax.debug.callback(lambda v: seen.append(float(v)), x + 1.0)  # its result is dropped: kept anyway
        return x * 2.0

    assert float(without_dead_ops(noisy)(jnp.float32(3.0))) == 6.0
    assert seen == [4.0]

    def branches(x):
        return x * 2.0 if float(x) > 0 else -x  # needs the value: cannot be traced

    assert float(without_dead_ops(branches)(jnp.float32(-3.0))) == 3.0
    assert float(without_dead_ops(branches)(jnp.float32(2.0))) == 4.0


def test_the_init_still_traces_for_shapes():
    model = get_model("conv2", (32, 32, 3), 10)
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    assert jax.tree.map(lambda s: s.shape, shapes) == jax.tree.map(jnp.shape, model.init(jax.random.key(0)))
