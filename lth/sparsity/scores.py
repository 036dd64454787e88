"""Pruning-at-initialisation scores: SNIP, GraSP, SynFlow, magnitude and random (`lth.sparsity.at_init`
turns them into masks).

Every score function is pure and returns ``{param path: array}`` for the prunable leaves of a mask,
the format of `lth.pruning.magnitude_scores`, which `lth.pruning.prune_by_scores` consumes.

Sign convention: **a higher score is kept** (for every function here). In particular:

* SNIP (Lee et al. 2019): ``|g * w|``, g = grad of the mean cross-entropy on a batch.
* GraSP (Wang et al. 2020): the paper's score is ``S = -(H g) * w`` and GraSP *removes the
  weights with the highest S* (removing weight q changes the squared gradient norm by about
  ``-2 w_q (H g)_q = 2 S_q`` to first order, so a high S means its removal does not reduce
  -- or even raises -- the gradient flow). Keeping the highest ``-S = (H g) * w`` is therefore the
  same rule, and `grasp_scores` returns ``+(H g) * w``. This is what both reference codes do:
  alecwangcq/GraSP (``-theta * Hg``, then drops the top-k of it) and ganguli-lab/Synaptic-Flow
  (``Hg * theta``, keeps the top-k). Note: ``-(H g) * w`` as a keep-higher score is the *inverted*
  GraSP of Frankle et al. 2021's sanity check, not GraSP.
* SynFlow (Tanaka et al. 2020): ``|dR/dw * w|`` with ``R = sum(f_|theta|(1))``.
* Magnitude at init: ``|w0|``. Random: i.i.d. uniform scores from an explicit key.

Masks: scores are computed on the masked network ``f(m * w)``, so gradients (and the
Hessian-vector product of GraSP) live on the kept weights only and pruned weights score 0; they
never come back either way, since `prune_by_scores` only ranks weights that the mask still keeps.

The inversion sanity check of Frankle et al. 2021 ("Missing the Mark") is `invert_scores` (reverse
the order: ``-s``; not ``1/s``, which does not reverse the order of scores of mixed sign and maps 0
to inf or NaN); the shuffle check is `lth.sparsity.at_init.shuffle_mask`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lth.errors import ConfigError
from lth.models.base import Model, cross_entropy
from lth.sparsity.masks import Mask, Params, apply_mask, mask_leaves, named_leaves
from lth.sparsity.pruning import magnitude_scores

Scores = dict[str, jax.Array]

SCORERS = ("magnitude", "snip", "grasp", "synflow", "random")  # the pruning-at-init scores (not `config.method`)
GRASP_TEMPERATURE = 200.0  # both reference codes divide the logits by T = 200 for GraSP

# Compiled score functions are cached per (model, options): a Model is a NamedTuple of functions,
# hashed by identity, and every array (params, state, mask, batch) is an argument, never a
# constant, so calls at other densities, masks or seeds reuse one compiled program.
_CACHE = 32


# ----------------------------------------------------------------------------------------- scores


def _prunable(tree: Any, mask: Mask) -> Scores:
    """{path: leaf} of `tree` for the prunable leaves of `mask`."""
    leaves = named_leaves(tree)
    return {name: leaves[name] for name in mask_leaves(mask)}


def _masked_loss(model: Model, model_state: Any, mask: Mask, x: jax.Array, y: jax.Array, train: bool,
                 temperature: float):
    """params -> mean cross-entropy of the masked network f(m * w) on (x, y)."""

    def loss(params: Params) -> jax.Array:
        logits, _ = model.apply(apply_mask(params, mask), model_state, x, train)
        return jnp.mean(cross_entropy(logits / temperature, y))

    return loss


def magnitude_at_init(params: Params, mask: Mask) -> Scores:
    """|w0| for every prunable leaf (magnitude pruning at initialisation)."""
    return magnitude_scores(params, mask)


@functools.lru_cache(maxsize=_CACHE)
def _snip_fn(model: Model, train: bool):
    @jax.jit
    def scores(params: Params, model_state: Any, mask: Mask, x: jax.Array, y: jax.Array) -> Scores:
        loss = _masked_loss(model, model_state, mask, x, y, train, 1.0)
        g = _prunable(jax.grad(loss)(params), mask)
        w = _prunable(apply_mask(params, mask), mask)
        return {name: jnp.abs(g[name] * w[name]) for name in g}

    return scores


def snip_scores(
    model: Model, params: Params, model_state: Any, mask: Mask, x: jax.Array, y: jax.Array, *,
    train: bool = False,
) -> Scores:
    """SNIP (Lee et al. 2019): |g * w|, g = d(mean cross-entropy on (x, y))/dw at the masked params.

    This equals |dL/dc| for a multiplicative gate c = 1 on each weight (the paper's connection
    sensitivity); the paper's normalisation by the sum does not change the ranking and is left out.
    `train` is passed to `model.apply` (BatchNorm batch statistics if True; default: eval mode, as
    the Synaptic-Flow reference code scores in ``model.eval()``); the new model state is dropped.
    """
    return _snip_fn(model, bool(train))(params, model_state, mask, x, y)


@functools.lru_cache(maxsize=_CACHE)
def _hvp_fn(model: Model, train: bool, temperature: float):
    @jax.jit
    def hvp(params: Params, model_state: Any, mask: Mask, x: jax.Array, y: jax.Array) -> tuple[Params, Params]:
        loss = _masked_loss(model, model_state, mask, x, y, train, temperature)
        g = jax.grad(loss)(params)
        _, hg = jax.jvp(jax.grad(loss), (params,), (g,))
        return g, hg

    return hvp


def grasp_hvp(
    model: Model, params: Params, model_state: Any, mask: Mask, x: jax.Array, y: jax.Array, *,
    train: bool = False, temperature: float = 1.0,
) -> tuple[Params, Params]:
    """(g, H g) of the mean cross-entropy of the masked network f(m * w), as params pytrees.

    H g is one forward-over-reverse Hessian-vector product, ``jvp(grad(L), (w,), (g,))``; both g and
    H g are zero on pruned entries (L depends on the kept weights only).
    """
    return _hvp_fn(model, bool(train), float(temperature))(params, model_state, mask, x, y)


def grasp_scores(
    model: Model, params: Params, model_state: Any, mask: Mask, x: jax.Array, y: jax.Array, *,
    train: bool = False, temperature: float = GRASP_TEMPERATURE,
) -> Scores:
    """GraSP (Wang et al. 2020) as a keep-higher score: ``+(H g) * w`` at the masked params.

    GraSP's own score is ``S = -(H g) * w`` and it removes the highest S; keeping the highest
    ``-S = (H g) * w`` is the same rule (see the module docstring). Negate the result
    (`invert_scores`) for the inverted-GraSP sanity check of Frankle et al. 2021.

    `temperature` divides the logits before the loss: T = 200, as both reference codes
    (alecwangcq/GraSP's ``GraSP(..., T=200)``, Synaptic-Flow's ``self.temp = 200``); T = 1 is the
    plain loss and, on LeNet-300-100 at 10 % density, a mask that shares only part of its weights
    with the reference rule's. Their split of the batch into two halves only rescales g and H g
    when the halves are of equal size, so one batch is used here. No normalisation (it does not
    change the ranking). Not reproduced: Wang et al.'s code re-initialises the fully connected
    layers (Xavier normal) of the network it scores (``reinit=True``); Synaptic-Flow does not.
    """
    _, hg = grasp_hvp(model, params, model_state, mask, x, y, train=train, temperature=temperature)
    hg = _prunable(hg, mask)
    w = _prunable(apply_mask(params, mask), mask)
    return {name: hg[name] * w[name] for name in hg}


def _abs_floats(tree: Any, dtype: Any) -> Any:
    def leaf(x: Any) -> Any:
        if isinstance(x, (jax.Array, np.ndarray)) and jnp.issubdtype(x.dtype, jnp.floating):
            x = jnp.abs(x)
            return x if dtype is None else x.astype(dtype)
        return x

    return jax.tree.map(leaf, tree)


def _synflow_raw(model: Model, input_shape: tuple[int, ...], dtype: Any, params: Params, model_state: Any,
                 mask: Mask) -> Scores:
    """|dR/dw * w| at |m * w|, R = sum of the outputs on an all-ones input (eval mode)."""
    theta = _abs_floats(apply_mask(params, mask), dtype)
    state = _abs_floats(model_state, dtype)
    x = jnp.ones((1, *input_shape), dtype=jnp.float32 if dtype is None else dtype)

    def flow(theta: Params) -> jax.Array:
        out, _ = model.apply(theta, state, x, False)
        return jnp.sum(out)

    grads = _prunable(jax.grad(flow)(theta), mask)
    w = _prunable(theta, mask)
    return {name: jnp.abs(grads[name] * w[name]) for name in grads}


def dtype_key(dtype: Any) -> Any:
    return None if dtype is None else jnp.dtype(dtype)


def check_dtype(dtype: Any) -> None:
    if dtype is not None and jnp.dtype(dtype) == jnp.float64 and not jax.config.jax_enable_x64:
        raise ConfigError("SynFlow in float64 needs jax_enable_x64: jax.config.update('jax_enable_x64', True)")


@functools.lru_cache(maxsize=_CACHE)
def _synflow_fn(model: Model, input_shape: tuple[int, ...], dtype: Any):
    return jax.jit(functools.partial(_synflow_raw, model, input_shape, dtype))


@functools.lru_cache(maxsize=_CACHE)
def synflow_round_fn(model: Model, input_shape: tuple[int, ...], dtype: Any):
    """Scores divided by their largest kept value (the ranking only), and whether all are finite."""

    @jax.jit
    def round_scores(params: Params, model_state: Any, mask: Mask) -> tuple[Scores, jax.Array]:
        raw = _synflow_raw(model, input_shape, dtype, params, model_state, mask)
        alive = mask_leaves(mask)
        top = jnp.max(jnp.stack([jnp.max(jnp.where(alive[n], s, 0)) for n, s in raw.items()]))
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(s)) for s in raw.values()]))
        scale = jnp.where(top > 0, top, 1)
        return {n: s / scale for n, s in raw.items()}, finite & jnp.isfinite(top)

    return round_scores


def synflow_scores(
    model: Model, params: Params, model_state: Any, mask: Mask, input_shape: Sequence[int], *,
    dtype: Any = None,
) -> Scores:
    """SynFlow (Tanaka et al. 2020): ``|dR/dw * w|`` with ``R = 1^T f_|theta|(1)``.

    The network is run with *every* floating-point parameter and model-state leaf replaced by its
    absolute value (kernels, biases, BatchNorm scale/offset and statistics), as the reference code
    does (``param.abs_()`` over the whole ``state_dict``), in eval mode (``model.eval()`` there;
    ``train=False`` here), on one all-ones input of shape ``(1, *input_shape)``; R is the sum of the
    outputs. For a bias-free ReLU network R = 1^T |W_L| ... |W_1| 1 (x @ kernel convention:
    ``1^T |K_1| ... |K_L| 1``) and the scores of every layer sum to R (conservation).

    Overflow: R grows like the product of the layers' absolute row sums; deep nets (VGG-19-like)
    can overflow float32 at initialisation. Pass ``dtype=jnp.float64`` (with
    ``jax_enable_x64``) to compute in float64; `synflow_prune` normalises each round's scores by
    their maximum before ranking and raises if they are not finite.
    """
    check_dtype(dtype)
    return _synflow_fn(model, tuple(input_shape), dtype_key(dtype))(params, model_state, mask)


def random_scores(mask: Mask, key: jax.Array) -> Scores:
    """I.i.d. uniform [0, 1) scores, one key per prunable leaf (``fold_in(key, leaf index)``)."""
    return {
        name: jax.random.uniform(jax.random.fold_in(key, i), jnp.shape(m))
        for i, (name, m) in enumerate(mask_leaves(mask).items())
    }


def invert_scores(scores: Any) -> Any:
    """Reverse the ranking: ``-s`` for every leaf (the lowest score is now kept first).

    Not ``1/s`` (the copied implementation's ``v.div_(v**2)``): that reverses the order only among
    scores of one sign and sends 0 to NaN: -1 < 2 but 1/-1 = -1 < 1/2 = 0.5.
    """
    return jax.tree.map(lambda s: -jnp.asarray(s), scores)


__all__ = [
    "GRASP_TEMPERATURE", "SCORERS", "check_dtype", "dtype_key", "grasp_hvp", "grasp_scores", "invert_scores",
    "magnitude_at_init", "random_scores", "snip_scores", "synflow_round_fn", "synflow_scores",
]
