"""Dynamic sparse training: the drop / grow mask updates of SET (Mocanu et al. 2018) and RigL
(Evci et al. 2020), per layer, so every layer keeps its count exactly.

An update of one layer with n active weights and drop fraction f:

1. drop: ``floor(n f)`` of the active weights with the smallest |w| leave the mask (the RigL
   reference's ``n_prune = int(n_ones * drop_fraction)``);
2. grow: as many positions join it, chosen among all positions not kept in step 1 -- *including the
   ones just dropped*, as in both reference codes (google-research/rigl ``_get_update_op`` lifts only
   the kept weights out of the grow ranking; jaxpruner ``SET._update_masks`` raises only them to the
   top): SET at uniformly random positions, RigL where the dense gradient |g| is largest.

New connections are positions inactive before the update and active after it; their weights start at
0 (pruned weights are exactly 0 already) and the training loop resets their optimiser moments to 0
(`lth.training.mask_updates`). A weight dropped and regrown in the same update is not new: it keeps
its value and moments, as in the references (rigl's ``reinit_when_same=False``, jaxpruner's
``masks_activated = old == 0 & new == 1``).

SET's random regrowth (`random_positions`): the eligible positions whose 23 random bits (the bits
of a float32 of ``jax.random.uniform``) are highest, ties to the lower index -- the rigl reference
ranks a float32 uniform draw with ``top_k`` alike (TensorFlow's stateless draw instead of JAX's
threefry). So the count is exact and the draw uniform among the eligible positions but for ties at
the threshold, which the index decides (for e positions eligible, a tie there has a chance of about
e / 2^23 per layer and update: ~2.6 % for LeNet-300-100's first layer, each time moving one choice
between two positions). The positions are those of ranking ``jax.random.uniform(key, shape)`` as
lth did before this draw, at ~10 counting passes over integer codes instead of ~25 over floats.

Ties: the references add Gaussian noise (std 1e-5) to the drop scores "for a slight bit of
randomness" (rigl) or rank exactly (jaxpruner); here both rankings are exact and deterministic, ties
going to the lower flat index (`lth.sparsity.topk.keep_top`) -- TensorFlow's ``top_k``, which the rigl
reference uses for the grow ranking, also puts the lower index first among equals. Drop: the smallest
|w| leave, so among equal magnitudes the higher index leaves first.

Schedules: RigL drops ``alpha / 2 * (1 + cos(pi t / T_end))`` (rigl's ``cosine_decay`` of the drop
fraction with begin step 0; paper defaults alpha = 0.3, dt = 100, T_end = 75 % of training). SET drops
z under the same cosine by default (``sparse.set_drop`` "cosine": the rigl reference's
``drop_fraction_anneal='cosine'`` applies to its SET optimizer too), or a constant z
(``sparse.set_drop`` "constant": Mocanu et al.'s zeta = 0.3 at every update). Mocanu et al. drop the
smallest positive and the largest negative weights separately; the rigl reference (and this code)
drops by |w|. Near T_end the cosine can make ``floor(n f)`` 0 in every layer: such an update moves
no weight (`lth.training.mask_updates.effective_updates` leaves it out of a record's count).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from lth.sparsity.masks import Mask, Params, mask_leaves, named_leaves, path_name
from lth.sparsity.topk import keep_lowest, keep_top

_UNIFORM_BITS = 23  # the random bits of a float32 of jax.random.uniform in [0, 1)


def cosine_drop_fraction(t: Any, alpha: float, t_end: int) -> jax.Array:
    """RigL's drop fraction at iteration t: alpha / 2 * (1 + cos(pi * min(t, T_end) / T_end))."""
    t = jnp.minimum(jnp.asarray(t, jnp.float32), float(t_end))
    return jnp.float32(alpha) / 2 * (1 + jnp.cos(jnp.pi * t / float(t_end)))


def drop_count(active: Any, fraction: Any) -> jax.Array:
    """floor(active * fraction) (int32) of a layer's `active` weight count, as the rigl reference
    (broadcasts: counts or fractions may be arrays, e.g. host side over a schedule's steps)."""
    active = jnp.asarray(active, jnp.int32)
    return jnp.floor(active.astype(jnp.float32) * jnp.asarray(fraction, jnp.float32)).astype(jnp.int32)


def _drop(alive: jax.Array, drop_score: jax.Array, fraction: Any) -> tuple[jax.Array, jax.Array]:
    """(the kept entries of `alive`: all but its ``floor(n f)`` lowest `drop_score` ones; that count)."""
    active = jnp.sum(alive, dtype=jnp.int32)
    n_drop = drop_count(active, fraction)
    return keep_top([drop_score], [alive], active - n_drop)[0], n_drop


def drop_and_grow(alive: jax.Array, drop_score: jax.Array, grow_score: jax.Array, fraction: Any) -> jax.Array:
    """One layer's new mask: drop ``floor(n f)`` lowest `drop_score` entries of `alive`, grow as many
    highest `grow_score` entries among those not kept (just-dropped ones included)."""
    kept, n_drop = _drop(alive, drop_score, fraction)
    return kept | keep_top([grow_score], [~kept], n_drop)[0]


@jax.jit
def random_positions(eligible: jax.Array, count: jax.Array, key: jax.Array) -> jax.Array:
    """`count` (<= the eligible count) of the `eligible` positions, uniformly at random without
    replacement: those whose 23 random bits (`jax.random.bits(key)` >> 9, the bits of
    ``jax.random.uniform(key)``'s float32 in [0, 1)) are highest, ties to the lower index -- the same
    positions as ranking ``jax.random.uniform(key, shape)`` with `keep_top`, as SET did before, with
    no float draw and fewer counting passes (`lth.sparsity.topk.keep_lowest`): the bisection starts
    from the range where the count-th code of i.i.d. uniform codes lies (`_likely_range`), checked
    by one counting pass (the whole range where the check fails, so the result never depends on it).
    """
    uniform_bits = jax.random.bits(key, eligible.shape) >> jnp.uint32(32 - _UNIFORM_BITS)
    top = (1 << _UNIFORM_BITS) - 1
    code = jnp.where(eligible, jnp.uint32(top) - uniform_bits, jnp.uint32(0xFFFFFFFF))  # highest bits first
    low, high = _likely_range(count, jnp.sum(eligible, dtype=jnp.int32), top)
    holds = (jnp.sum(code < low, dtype=jnp.int32) < count) & (jnp.sum(code <= high, dtype=jnp.int32) >= count)
    return keep_lowest(code, count, jnp.where(holds, low, 0), jnp.where(holds, high, top)).kept


def _likely_range(count: jax.Array, eligible: jax.Array, top: int) -> tuple[jax.Array, jax.Array]:
    """Codes [low, high] that hold the count-th lowest of `eligible` i.i.d. uniform codes in [0, top]
    but for a small chance (its Beta(count, eligible - count + 1) law's mean +- 6 standard deviations,
    one code wider each side: a miss is rare for counts in the hundreds, ~1e-3 for a count of 1, whose
    law is skewed; a miss costs only the full range's passes)."""
    k, m = count.astype(jnp.float32), eligible.astype(jnp.float32)
    mean = k / (m + 1)
    sd = jnp.sqrt(k * (m - k + 1) / ((m + 1) ** 2 * (m + 2)))
    low = jnp.floor((mean - 6 * sd) * (top + 1)) - 1
    high = jnp.ceil((mean + 6 * sd) * (top + 1)) + 1
    return (jnp.clip(low, 0, top).astype(jnp.uint32), jnp.clip(high, 0, top).astype(jnp.uint32))


@jax.jit
def set_drop_and_grow(alive: jax.Array, magnitude: jax.Array, key: jax.Array, fraction: Any) -> jax.Array:
    """One layer's SET update: `drop_and_grow` with the regrowth drawn by `random_positions`."""
    kept, n_drop = _drop(alive, magnitude, fraction)
    return kept | random_positions(~kept, n_drop, key)


def _rebuild(mask: Mask, leaves: dict[str, jax.Array]) -> Mask:
    return jax.tree_util.tree_map_with_path(lambda path, m: None if m is None else leaves[path_name(path)], mask,
                                            is_leaf=lambda x: x is None)


def update_masks(mask: Mask, drop_scores: dict[str, Any], grow_scores: dict[str, Any], fraction: Any) -> Mask:
    """`drop_and_grow` on every prunable layer of `mask`."""
    new = {name: drop_and_grow(m, drop_scores[name], grow_scores[name], fraction)
           for name, m in mask_leaves(mask).items()}
    return _rebuild(mask, new)


def set_update(mask: Mask, params: Params, key: jax.Array, fraction: Any) -> Mask:
    """SET: drop by |w|, grow at uniformly random positions (layer i draws with ``fold_in(key, i)``)."""
    values = named_leaves(params)
    new = {name: set_drop_and_grow(m, jnp.abs(values[name]), jax.random.fold_in(key, i), fraction)
           for i, (name, m) in enumerate(mask_leaves(mask).items())}
    return _rebuild(mask, new)


def rigl_update(mask: Mask, params: Params, grads: Any, fraction: Any) -> Mask:
    """RigL: drop by |w|, grow where the dense gradient |g| is largest."""
    values, gradients = named_leaves(params), named_leaves(grads)
    names = list(mask_leaves(mask))
    return update_masks(mask, {n: jnp.abs(values[n]) for n in names}, {n: jnp.abs(gradients[n]) for n in names},
                        fraction)


def new_connections(old: Mask, new: Mask) -> Mask:
    """True where a position joins the mask (inactive in `old`, active in `new`)."""
    return jax.tree.map(lambda a, b: None if a is None else (~a) & b, old, new, is_leaf=lambda x: x is None)


__all__ = ["cosine_drop_fraction", "drop_and_grow", "drop_count", "new_connections", "random_positions",
           "rigl_update", "set_drop_and_grow", "set_update", "update_masks"]
