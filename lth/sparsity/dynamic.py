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
from lth.sparsity.topk import keep_top


def cosine_drop_fraction(t: Any, alpha: float, t_end: int) -> jax.Array:
    """RigL's drop fraction at iteration t: alpha / 2 * (1 + cos(pi * min(t, T_end) / T_end))."""
    t = jnp.minimum(jnp.asarray(t, jnp.float32), float(t_end))
    return jnp.float32(alpha) / 2 * (1 + jnp.cos(jnp.pi * t / float(t_end)))


def drop_count(active: Any, fraction: Any) -> jax.Array:
    """floor(active * fraction) (int32) of a layer's `active` weight count, as the rigl reference
    (broadcasts: counts or fractions may be arrays, e.g. host side over a schedule's steps)."""
    active = jnp.asarray(active, jnp.int32)
    return jnp.floor(active.astype(jnp.float32) * jnp.asarray(fraction, jnp.float32)).astype(jnp.int32)


def drop_and_grow(alive: jax.Array, drop_score: jax.Array, grow_score: jax.Array, fraction: Any) -> jax.Array:
    """One layer's new mask: drop ``floor(n f)`` lowest `drop_score` entries of `alive`, grow as many
    highest `grow_score` entries among those not kept (just-dropped ones included)."""
    active = jnp.sum(alive, dtype=jnp.int32)
    n_drop = drop_count(active, fraction)
    kept = keep_top([drop_score], [alive], active - n_drop)[0]
    grown = keep_top([grow_score], [~kept], n_drop)[0]
    return kept | grown


def _rebuild(mask: Mask, leaves: dict[str, jax.Array]) -> Mask:
    return jax.tree_util.tree_map_with_path(lambda path, m: None if m is None else leaves[path_name(path)], mask,
                                            is_leaf=lambda x: x is None)


def update_masks(mask: Mask, drop_scores: dict[str, Any], grow_scores: dict[str, Any], fraction: Any) -> Mask:
    """`drop_and_grow` on every prunable layer of `mask`."""
    new = {name: drop_and_grow(m, drop_scores[name], grow_scores[name], fraction)
           for name, m in mask_leaves(mask).items()}
    return _rebuild(mask, new)


def set_update(mask: Mask, params: Params, key: jax.Array, fraction: Any) -> Mask:
    """SET: drop by |w|, grow at uniformly random positions (layer i uses ``fold_in(key, i)``)."""
    values = named_leaves(params)
    names = list(mask_leaves(mask))
    drop = {name: jnp.abs(values[name]) for name in names}
    grow = {name: jax.random.uniform(jax.random.fold_in(key, i), jnp.shape(values[name]))
            for i, name in enumerate(names)}
    return update_masks(mask, drop, grow, fraction)


def rigl_update(mask: Mask, params: Params, grads: Any, fraction: Any) -> Mask:
    """RigL: drop by |w|, grow where the dense gradient |g| is largest."""
    values, gradients = named_leaves(params), named_leaves(grads)
    names = list(mask_leaves(mask))
    return update_masks(mask, {n: jnp.abs(values[n]) for n in names}, {n: jnp.abs(gradients[n]) for n in names},
                        fraction)


def new_connections(old: Mask, new: Mask) -> Mask:
    """True where a position joins the mask (inactive in `old`, active in `new`)."""
    return jax.tree.map(lambda a, b: None if a is None else (~a) & b, old, new, is_leaf=lambda x: x is None)


__all__ = ["cosine_drop_fraction", "drop_and_grow", "drop_count", "new_connections", "rigl_update", "set_update",
           "update_masks"]
