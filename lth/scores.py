"""Pruning at initialisation: SNIP, GraSP, SynFlow, magnitude and random scores -> masks.

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

Sanity checks of Frankle et al. 2021 ("Missing the Mark") as pure functions: `shuffle_mask`
(permute each layer's mask within the layer) and `invert_scores` (reverse the order: ``-s``; not
``1/s``, which does not reverse the order of scores of mixed sign and maps 0 to inf or NaN).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lth.config import PruningConfig
from lth.errors import ConfigError, LthError
from lth.masks import (
    Mask,
    Params,
    apply_mask,
    check_mask,
    first_match,
    layer_counts,
    mask_leaves,
    named_leaves,
    path_name,
)
from lth.models.base import Model
from lth.pruning import STRATEGIES, Group, magnitude_scores, prune_by_scores
from lth.train import cross_entropy

Scores = dict[str, jax.Array]

METHODS = ("magnitude", "snip", "grasp", "synflow", "random")

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
    train: bool = False, temperature: float = 1.0,
) -> Scores:
    """GraSP (Wang et al. 2020) as a keep-higher score: ``+(H g) * w`` at the masked params.

    GraSP's own score is ``S = -(H g) * w`` and it removes the highest S; keeping the highest
    ``-S = (H g) * w`` is the same rule (see the module docstring). Negate the result
    (`invert_scores`) for the inverted-GraSP sanity check of Frankle et al. 2021.

    `temperature` divides the logits before the loss; the reference codes (Wang et al.'s and
    Synaptic-Flow's) use T = 200, the default here is the plain loss (T = 1). Their split of the
    batch into two halves only rescales g and H g when the halves are of equal size, so one batch
    is used here. No normalisation (it does not change the ranking).
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


def _dtype_key(dtype: Any) -> Any:
    return None if dtype is None else jnp.dtype(dtype)


def _check_dtype(dtype: Any) -> None:
    if dtype is not None and jnp.dtype(dtype) == jnp.float64 and not jax.config.jax_enable_x64:
        raise ConfigError("SynFlow in float64 needs jax_enable_x64: jax.config.update('jax_enable_x64', True)")


@functools.lru_cache(maxsize=_CACHE)
def _synflow_fn(model: Model, input_shape: tuple[int, ...], dtype: Any):
    return jax.jit(functools.partial(_synflow_raw, model, input_shape, dtype))


@functools.lru_cache(maxsize=_CACHE)
def _synflow_round_fn(model: Model, input_shape: tuple[int, ...], dtype: Any):
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
    _check_dtype(dtype)
    return _synflow_fn(model, tuple(input_shape), _dtype_key(dtype))(params, model_state, mask)


def random_scores(mask: Mask, key: jax.Array) -> Scores:
    """I.i.d. uniform [0, 1) scores, one key per prunable leaf (``fold_in(key, leaf index)``)."""
    return {
        name: jax.random.uniform(jax.random.fold_in(key, i), jnp.shape(m))
        for i, (name, m) in enumerate(mask_leaves(mask).items())
    }


# ---------------------------------------------------------------------------------- scores -> mask


def _check_density(target_density: float) -> None:
    if not (isinstance(target_density, (int, float, np.floating)) and 0.0 < float(target_density) <= 1.0):
        raise ConfigError(f"target density must be in (0, 1], got {target_density!r}: e.g. 0.1 keeps 10% of the weights")


def density_groups(
    mask: Mask, target_density: float, strategy: str = "global", exclude: Sequence[str] = ()
) -> list[Group]:
    """Threshold groups that keep the fraction `target_density` of the prunable weights.

    `global`: one group over all prunable layers, keeping ``round(N * d)`` (N: their total size).
    `layerwise`: each layer keeps ``round(N_l * d)``. Layers matching an `exclude` regex are in no
    group, so they keep their mask. Sizes, not the mask's kept counts, define N: a mask that
    already keeps fewer weights than that keeps what it has (pruned weights never come back).
    """
    _check_density(target_density)
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown pruning strategy {strategy!r}: choose one of {', '.join(STRATEGIES)}")
    sizes = {name: size for name, (_, size) in layer_counts(mask).items() if first_match(name, exclude) is None}
    if strategy == "layerwise":
        return [Group((name,), int(round(size * target_density))) for name, size in sizes.items()]
    if not sizes:
        return []
    return [Group(tuple(sizes), int(round(sum(sizes.values()) * target_density)))]


def _spec_grouping(spec: PruningConfig | None) -> tuple[str, tuple[str, ...]]:
    if spec is None:
        return "global", ()
    if spec.layer_fractions:
        raise ConfigError(
            "per-layer prune fractions do not apply to pruning at initialisation to a target density: "
            "use `exclude` for layers to keep whole"
        )
    return spec.strategy, tuple(spec.exclude)


def synflow_prune(
    model: Model,
    params: Params,
    model_state: Any,
    mask: Mask,
    input_shape: Sequence[int],
    target_density: float,
    rounds: int = 100,
    spec: PruningConfig | None = None,
    *,
    dtype: Any = None,
    invert: bool = False,
) -> Mask:
    """Iterative SynFlow: `rounds` rounds of score-and-prune to `target_density`.
    With `invert`, every round keeps the lowest scores instead (the inverted sanity check).

    Round r = 1..rounds keeps ``round(N * d_r)`` weights with the exponential schedule
    ``d_r = target_density ** (r / rounds)`` (as Synaptic-Flow's ``prune_loop``), rescoring the
    network masked by the previous round; the last round keeps exactly ``round(N * target_density)``.
    Grouping: `spec` None -> one global group over all prunable layers (the papers' setting);
    otherwise ``spec.strategy`` ('global' | 'layerwise') and ``spec.exclude`` are used (note that
    PruningConfig's default strategy is 'layerwise'); ``spec.fraction`` is unused.

    The score function is compiled once with the mask as an argument; the loop is in Python.
    """
    _check_density(target_density)
    if not isinstance(rounds, (int, np.integer)) or rounds < 1:
        raise ConfigError(f"SynFlow rounds must be an integer >= 1, got {rounds!r}")
    _check_dtype(dtype)
    check_mask(mask, params)
    strategy, exclude = _spec_grouping(spec)
    round_scores = _synflow_round_fn(model, tuple(input_shape), _dtype_key(dtype))

    for r in range(1, rounds + 1):
        density = target_density ** (r / rounds)
        scores, finite = round_scores(params, model_state, mask)
        if not bool(finite):
            raise LthError(
                f"SynFlow scores overflowed in round {r}: compute them in float64 "
                "(jax.config.update('jax_enable_x64', True) and dtype=jnp.float64)"
            )
        if invert:
            scores = invert_scores(scores)
        mask = prune_by_scores(scores, mask, density_groups(mask, density, strategy, exclude))
    return mask


def prune_at_init(
    method: str,
    model: Model,
    params: Params,
    model_state: Any,
    mask: Mask,
    batch: tuple[jax.Array, jax.Array] | None,
    input_shape: Sequence[int] | None,
    target_density: float,
    strategy: str = "global",
    *,
    key: jax.Array | None = None,
    exclude: Sequence[str] = (),
    rounds: int = 100,
    invert: bool = False,
) -> Mask:
    """Prune `mask` at initialisation to `target_density` with one of `METHODS` (`invert`: keep the
    lowest scores instead -- Frankle et al. 2021's inversion sanity check).

    One shot for magnitude / snip / grasp / random (global: one threshold over all prunable layers,
    ``round(N * d)`` kept; layerwise: ``round(N_l * d)`` per layer); SynFlow is iterative
    (`rounds`, exponential schedule, see `synflow_prune`). `batch` = (x, y) is needed by snip and
    grasp, `input_shape` (without the batch axis; default ``batch[0].shape[1:]``) by synflow, `key`
    by random. Layers matching an `exclude` regex keep their mask.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown pruning-at-init method {method!r}: choose one of {', '.join(METHODS)}")
    _check_density(target_density)
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown pruning strategy {strategy!r}: choose one of {', '.join(STRATEGIES)}")
    check_mask(mask, params)
    if method in ("snip", "grasp") and batch is None:
        raise ConfigError(f"{method} scores need a batch (x, y) of training data")
    if method == "synflow":
        if input_shape is None:
            if batch is None:
                raise ConfigError("synflow needs input_shape (the shape of one example) or a batch")
            input_shape = tuple(np.shape(batch[0])[1:])
        spec = PruningConfig(strategy=strategy, exclude=tuple(exclude))
        return synflow_prune(model, params, model_state, mask, input_shape, target_density, rounds, spec,
                             invert=invert)
    if method == "magnitude":
        scores = magnitude_at_init(params, mask)
    elif method == "random":
        if key is None:
            raise ConfigError("random pruning needs a PRNG key: prune_at_init(..., key=jax.random.key(seed))")
        scores = random_scores(mask, key)
    elif method == "snip":
        scores = snip_scores(model, params, model_state, mask, *batch)
    else:
        scores = grasp_scores(model, params, model_state, mask, *batch)
    if invert:
        scores = invert_scores(scores)
    return prune_by_scores(scores, mask, density_groups(mask, target_density, strategy, exclude))


# ------------------------------------------------------------------------------- sanity checks


def shuffle_mask(mask: Mask, key: jax.Array) -> Mask:
    """A new mask with each prunable layer's entries permuted within the layer.

    Per-layer counts are preserved exactly; the layer at index i uses ``fold_in(key, i)``. Pure:
    the input mask is not modified (the widely copied implementation only rebinds a local name
    and so leaves the mask unchanged).
    """
    shuffled = {}
    for i, (name, m) in enumerate(mask_leaves(mask).items()):
        flat = jnp.reshape(m, -1)
        perm = jax.random.permutation(jax.random.fold_in(key, i), flat.size)
        shuffled[name] = flat[perm].reshape(jnp.shape(m))
    return jax.tree_util.tree_map_with_path(
        lambda path, m: None if m is None else shuffled[path_name(path)], mask, is_leaf=lambda x: x is None
    )


def invert_scores(scores: Any) -> Any:
    """Reverse the ranking: ``-s`` for every leaf (the lowest score is now kept first).

    Not ``1/s`` (the copied implementation's ``v.div_(v**2)``): that reverses the order only among
    scores of one sign and sends 0 to NaN: -1 < 2 but 1/-1 = -1 < 1/2 = 0.5.
    """
    return jax.tree.map(lambda s: -jnp.asarray(s), scores)


__all__ = [
    "METHODS",
    "density_groups",
    "grasp_hvp",
    "grasp_scores",
    "invert_scores",
    "magnitude_at_init",
    "prune_at_init",
    "random_scores",
    "shuffle_mask",
    "snip_scores",
    "synflow_prune",
    "synflow_scores",
]
