"""The model interface the core uses, and adapters from flax linen, flax nnx and plain functions.

The core never imports a framework's module classes: it sees a `Model`, i.e. an `init(key)` giving
(params, state) and an `apply(params, state, x, train)` giving (logits, new state). `state` holds
non-trainable model state such as BatchNorm statistics (an empty dict for most models); it is never
pruned and is rewound with the weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lth.models.live_ops import without_dead_ops


class Model(NamedTuple):
    """A network as two pure functions."""

    name: str
    init: Callable[[jax.Array], tuple[Any, Any]]  # key -> (params, state)
    apply: Callable[[Any, Any, jax.Array, bool], tuple[jax.Array, Any]]  # -> (logits, state)


def cross_entropy(logits_BxC: jax.Array, labels_B: jax.Array) -> jax.Array:
    """Per-example softmax cross-entropy with integer labels: the loss every model here trains on
    (and the one the pruning-at-init scores differentiate)."""
    return optax.softmax_cross_entropy_with_integer_labels(logits_BxC, labels_B)


def from_linen(name: str, module: Any, input_shape: Sequence[int]) -> Model:
    """Wrap a flax linen module whose ``__call__(x, train)`` returns logits.

    Collections other than ``params`` (e.g. ``batch_stats``) become the model state and are
    updated in training mode.
    """
    dummy = jnp.zeros((1, *input_shape), jnp.float32)

    @without_dead_ops  # flax's init runs the forward pass for the shapes: not its ops (`lth.models.live_ops`)
    def init(key: jax.Array) -> tuple[Any, Any]:
        variables = dict(module.init(key, dummy, train=False))
        params = variables.pop("params")
        return params, variables

    def apply(params: Any, state: Any, x: jax.Array, train: bool) -> tuple[jax.Array, Any]:
        variables = {"params": params, **state}
        if train and state:
            logits, updates = module.apply(variables, x, train=True, mutable=list(state))
            return logits, {**state, **updates}
        return module.apply(variables, x, train=train), state

    return Model(name, init, apply)


def from_nnx(name: str, make_module: Callable[[Any], Any]) -> Model:
    """Wrap a flax nnx module factory ``make_module(rngs)``; params are its ``nnx.Param`` State."""
    from flax import nnx  # only for nnx models: linen users never pay its import

    graphdef, _, _ = nnx.split(jax.eval_shape(lambda: make_module(nnx.Rngs(0))), nnx.Param, ...)

    def init(key: jax.Array) -> tuple[Any, Any]:
        _, params, rest = nnx.split(make_module(nnx.Rngs(params=key)), nnx.Param, ...)
        return params, rest

    def apply(params: Any, state: Any, x: jax.Array, train: bool) -> tuple[jax.Array, Any]:
        module = nnx.merge(graphdef, params, state)
        logits = module(x)
        _, _, new_state = nnx.split(module, nnx.Param, ...)
        return logits, new_state

    return Model(name, init, apply)


def from_functions(
    name: str, init_params: Callable[[jax.Array], Any], apply_fn: Callable[[Any, jax.Array], jax.Array]
) -> Model:
    """Any params pytree with a plain ``apply_fn(params, x) -> logits`` (equinox, haiku, by hand)."""
    return Model(name, lambda key: (init_params(key), {}), lambda p, s, x, train: (apply_fn(p, x), s))
