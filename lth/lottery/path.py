"""Linear mode connectivity: the straight path between two trained networks, its errors and the
error barrier (Frankle, Dziugaite, Roy & Carbin 2020).

    W(α) = (1 − α) W_A + α W_B,   α ∈ linspace(0, 1, 30),

barrier = max_α err(W(α)) − (err(W_A) + err(W_B)) / 2; *stable* when below 2 percentage points.

Non-trainable model state (BatchNorm running statistics) is interpolated leafwise like the weights
by default (``bn_state="interpolate"``), so that α = 0 and α = 1 are exactly the two trained
networks and the path is symmetric; ``"a"`` keeps end A's statistics along the whole path (then
α = 1 is *not* network B), ``"average"`` uses the mean of the two ends' statistics everywhere, and
``"reestimate"`` recomputes them at every α on a fixed subset of the training data (the usual
choice since Jordan et al. 2022, REPAIR: an interpolated network's activations are not those the
interpolated statistics describe; `reestimate_statistics`). Integer leaves (counters) keep end A's
value.

The path is evaluated in one jitted program: ``lax.map`` over α, `alpha_batch` points at a time
with `jax.vmap` (default `ALPHA_BATCH` = 10; on a CPU 1, 5, 10 or 30 at a time ran equally fast
for LeNet-300-100, and 10 bounds the activation memory of VGG-16-sized nets on a GPU).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lth.spec.checks import check_bn_state
from lth.data.device import EvalSet
from lth.models.base import Model
from lth.sparsity.masks import Mask, apply_mask
from lth.training import Trainer, make_evaluate

NUM_POINTS = 30  # Frankle et al. 2020: 30 evenly spaced α
STABLE_BARRIER = 0.02  # "stable": error barrier below 2 percentage points
ALPHA_BATCH = 10  # α evaluated side by side (vmap) inside the compiled path evaluation


# --------------------------------------------------------------------------- the path


def alphas(num_points: int = NUM_POINTS) -> np.ndarray:
    """`num_points` evenly spaced interpolation coefficients in [0, 1], ends included."""
    if num_points < 2:
        raise ValueError(f"num_points must be >= 2 (both ends of the path), got {num_points}")
    return np.linspace(0.0, 1.0, num_points)


def _mix(a: jax.Array, b: jax.Array, alpha: Any) -> jax.Array:
    dtype = jnp.result_type(a)
    if not jnp.issubdtype(dtype, jnp.inexact):
        return a  # integer / bool leaves (e.g. counters): end A's value
    d = b - a
    # the line (1 - α) a + α b, from the nearer end: exact at both ends and exact along the whole
    # path when a == b (d = 0)
    return jnp.where(alpha < 0.5, a + alpha * d, b - (1 - alpha) * d).astype(dtype)


def interpolate(params_a: Any, params_b: Any, alpha: Any, mask: Mask | None = None) -> Any:
    """(1 − α) a + α b leafwise (pure, jittable), computed from the nearer end so that α = 0 gives
    exactly a, α = 1 exactly b, and a == b gives exactly a everywhere. Two ends pruned with the
    same mask give a path in that mask's subspace already (0 − 0 = 0); `mask` re-applies it
    (zeroes pruned entries) all the same."""
    mixed = jax.tree.map(lambda a, b: _mix(a, b, alpha), params_a, params_b)
    return mixed if mask is None else apply_mask(mixed, mask)


def _path_state(state_a: Any, state_b: Any, alpha: Any, bn_state: str) -> Any:
    if bn_state == "interpolate":
        return interpolate(state_a, state_b, alpha)
    if bn_state == "average":
        return interpolate(state_a, state_b, 0.5)
    return state_a


def reestimate_statistics(model: Model, params: Any, model_state: Any, batches_x: jax.Array) -> Any:
    """`model_state` with every floating leaf (BatchNorm's running mean and variance) recomputed for
    `params` on `batches_x` ([batches, batch, ...]): the average over the batches of each batch's
    statistics, each forward pass in training mode (as a reset followed by a cumulative average in
    PyTorch). The statistics of a batch are read off the model's own update whatever its momentum:
    from running values 0 and 1, ``new = m * old + (1 - m) * batch`` gives m and the batch's value.
    A model without state returns it unchanged. Pure and jittable."""
    if not jax.tree.leaves(model_state):
        return model_state
    floating = lambda x: jnp.issubdtype(jnp.result_type(x), jnp.inexact)  # noqa: E731
    zeros = jax.tree.map(lambda x: jnp.zeros_like(x) if floating(x) else x, model_state)
    ones = jax.tree.map(lambda x: jnp.ones_like(x) if floating(x) else x, model_state)

    def batch_statistics(x: jax.Array) -> Any:
        _, from_zero = model.apply(params, zeros, x, True)
        _, from_one = model.apply(params, ones, x, True)
        return jax.tree.map(lambda a, b: a / (1 - (b - a)) if floating(a) else a, from_zero, from_one)

    stats = jax.lax.map(batch_statistics, batches_x)
    return jax.tree.map(lambda s, old: jnp.mean(s, axis=0).astype(old.dtype) if floating(old) else old,
                        stats, model_state)


@functools.partial(jax.jit, static_argnames=("evaluate", "bn_state", "alpha_batch", "model"))
def _path_metrics(params_a, params_b, state_a, state_b, eval_set, alphas_N, mask, bn_batches, *, evaluate,
                  bn_state, alpha_batch, model):
    def at(alpha):
        params = interpolate(params_a, params_b, alpha, mask)
        if bn_state == "reestimate":
            state = reestimate_statistics(model, params, state_a, bn_batches)
        else:
            state = _path_state(state_a, state_b, alpha, bn_state)
        return evaluate(params, state, eval_set)

    return jax.lax.map(at, alphas_N, batch_size=alpha_batch)


@functools.lru_cache(maxsize=32)
def _model_evaluate(model: Model) -> Callable:
    return make_evaluate(model)


def _evaluate_fn(evaluator: Any) -> Callable:
    """A Trainer (its jitted `evaluate`), a Model, or a function (params, state, EvalSet) -> (loss, acc)."""
    if isinstance(evaluator, Model):
        return _model_evaluate(evaluator)
    if hasattr(evaluator, "evaluate"):
        return evaluator.evaluate
    if callable(evaluator):
        return evaluator
    raise TypeError(f"expected a Trainer, a Model or an evaluate function, got {type(evaluator).__name__}")


def evaluate_path(
    evaluator: Trainer | Model | Callable,
    params_a: Any,
    params_b: Any,
    model_state_a: Any,
    model_state_b: Any,
    eval_set: EvalSet,
    *,
    num_points: int = NUM_POINTS,
    mask: Mask | None = None,
    bn_state: str = "interpolate",
    alpha_batch: int = ALPHA_BATCH,
    bn_batches: jax.Array | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(α, loss, accuracy) at `num_points` evenly spaced α, all evaluated in one jitted program.

    `model_state_b` None means end A's state. `alpha_batch`: α evaluated side by side (vmap) inside
    the compiled `lax.map` over α. `bn_state`: see the module docstring; "reestimate" needs the
    model (a Trainer or a Model as `evaluator`) and `bn_batches`, training inputs [batches, batch, ...].
    """
    check_bn_state(bn_state)
    model = evaluator if isinstance(evaluator, Model) else getattr(evaluator, "model", None)
    if bn_state == "reestimate" and (model is None or bn_batches is None):
        raise ValueError("bn_state='reestimate' needs a Trainer or Model evaluator and bn_batches")
    alpha_N = alphas(num_points)
    if model_state_b is None:
        model_state_b = model_state_a
    batch = max(1, min(int(alpha_batch), num_points))
    loss, acc = _path_metrics(params_a, params_b, model_state_a, model_state_b, eval_set,
                              jnp.asarray(alpha_N, jnp.float32), mask, bn_batches, evaluate=_evaluate_fn(evaluator),
                              bn_state=bn_state, alpha_batch=batch, model=model if bn_state == "reestimate" else None)
    return alpha_N, np.asarray(loss, np.float64), np.asarray(acc, np.float64)


def error_along_path(
    evaluator: Trainer | Model | Callable,
    params_a: Any,
    params_b: Any,
    model_state_a: Any,
    model_state_b: Any,
    eval_set: EvalSet,
    *,
    num_points: int = NUM_POINTS,
    mask: Mask | None = None,
    bn_state: str = "interpolate",
    alpha_batch: int = ALPHA_BATCH,
    bn_batches: jax.Array | None = None,
) -> np.ndarray:
    """Error (1 − accuracy) of (1 − α) A + α B at α = linspace(0, 1, num_points); see `evaluate_path`."""
    _, _, acc = evaluate_path(evaluator, params_a, params_b, model_state_a, model_state_b, eval_set,
                              num_points=num_points, mask=mask, bn_state=bn_state, alpha_batch=alpha_batch,
                              bn_batches=bn_batches)
    return 1.0 - acc


def error_barrier(errors: Sequence[float] | np.ndarray) -> float:
    """max over the path of the error minus the mean of the two ends' errors (>= 0)."""
    e = np.asarray(errors, np.float64)
    if e.ndim != 1 or e.size < 2:
        raise ValueError(f"errors must be a 1-D path of at least 2 points, got shape {e.shape}")
    return float(e.max() - 0.5 * (e[0] + e[-1]))
