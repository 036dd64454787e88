"""N:M structured masks: in every group of M consecutive weights along a kernel's *input* dimension
(axis -2 of a flax kernel: ``[in, out]`` or ``[h, w, in, out]``; axis 0 of a vector) at most N are
kept -- e.g. 2:4, the pattern sparse tensor cores run.

`nm_keep` keeps the `n` highest scores of each group among its alive entries (ties to the lower
index, as a stable sort); with scores |w| it is magnitude N:M pruning. jaxpruner's
``topk_n_by_m_mask_calculator`` ranks with a double argsort along its (default: last) axis; its
``ranks >= m - n`` keeps the n largest too, with ties to the *higher* index (an ascending argsort puts
the lower index first and so ranks it lower). `n` may be traced, so one compiled program serves a
whole ramp of n (N:M gradual: M:M down to N:M).

As the structure of the other methods (`structured_keep` per level or step): IMP level L keeps
``max(N, round(M (1 - p)^L))`` of every M (the group shrinks with the level's fraction p until N:M is
reached); gradual pruning ramps the per-group count from M to N on Zhu & Gupta's cubic; a static
mask is a random N:M mask. Excluded layers (``pruning.exclude``) are never structured.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lth.spec.config import PruningConfig
from lth.errors import ConfigError
from lth.spec.parse import parse_nm
from lth.sparsity.masks import Mask, Params, first_match, mask_leaves, named_leaves, path_name
from lth.sparsity.pruning import layer_fraction

def group_axis(ndim: int) -> int:
    """The axis the groups run along: the input dimension (-2) of a kernel, 0 of a vector."""
    return -2 if ndim >= 2 else 0


def _grouped(x: jax.Array, m: int) -> jax.Array:
    """[..., in, out] -> [..., out, in / m, m] (the input axis last, cut into groups)."""
    moved = jnp.moveaxis(x, group_axis(x.ndim), -1)
    return moved.reshape(*moved.shape[:-1], moved.shape[-1] // m, m)


def _ungrouped(g: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    axis = group_axis(len(shape))
    moved_shape = tuple(np.moveaxis(np.empty(shape, dtype=np.uint8), axis, -1).shape)
    return jnp.moveaxis(g.reshape(moved_shape), -1, axis)


def nm_keep(scores: jax.Array, alive: jax.Array, n: Any, m: int) -> jax.Array:
    """In every group of `m` (see the module docstring), the `n` highest `scores` among `alive`."""
    shape = tuple(jnp.shape(scores))
    s = _grouped(jnp.asarray(scores, jnp.float32), m)
    a = _grouped(jnp.asarray(alive, bool), m)
    s = jnp.where(a, s, -jnp.inf)
    i = jnp.arange(m)
    # rank of entry i in its group: entries with a higher score, or an equal one at a lower index
    beats = (s[..., None, :] > s[..., :, None]) | ((s[..., None, :] == s[..., :, None]) & (i[None, :] < i[:, None]))
    rank = jnp.sum(beats, axis=-1)
    return _ungrouped(a & (rank < n), shape)


def structured_layers(mask: Mask, exclude: Sequence[str] = ()) -> list[str]:
    """The prunable layers that N:M applies to (all but the excluded)."""
    return [name for name in mask_leaves(mask) if first_match(name, exclude) is None]


def check_nm_shapes(mask: Mask, m: int, exclude: Sequence[str] = ()) -> None:
    """ConfigError unless every structured layer's input dimension divides into groups of `m`."""
    leaves = mask_leaves(mask)
    for name in structured_layers(mask, exclude):
        shape = tuple(np.shape(leaves[name]))
        size = shape[group_axis(len(shape))]
        if size % m:
            raise ConfigError(f"N:M groups of M={m} do not divide {name}'s input dimension {size} (shape {shape}): "
                              f"choose an M that divides it, or exclude the layer (pruning.exclude)")


def _rebuild(mask: Mask, leaves: dict[str, jax.Array]) -> Mask:
    return jax.tree_util.tree_map_with_path(
        lambda path, m: None if m is None else leaves.get(path_name(path), m), mask, is_leaf=lambda x: x is None)


def nm_prune(scores: dict[str, Any], mask: Mask, n: Any, m: int, exclude: Sequence[str] = ()) -> Mask:
    """Keep the `n` highest-scoring alive weights of every group of `m` in each structured layer."""
    leaves = mask_leaves(mask)
    new = {name: nm_keep(scores[name], leaves[name], n, m) for name in structured_layers(mask, exclude)}
    return _rebuild(mask, new)


def nm_magnitude(params: Params, mask: Mask, n: Any, m: int, exclude: Sequence[str] = ()) -> Mask:
    """Magnitude N:M pruning (|w|) of the weights `mask` keeps."""
    values = named_leaves(params)
    return nm_prune({name: jnp.abs(values[name]) for name in mask_leaves(mask)}, mask, n, m, exclude)


def nm_random(mask: Mask, key: jax.Array, n: int, m: int, exclude: Sequence[str] = ()) -> Mask:
    """A random N:M mask (uniform scores; layer i uses ``fold_in(key, i)``)."""
    scores = {name: jax.random.uniform(jax.random.fold_in(key, i), jnp.shape(leaf))
              for i, (name, leaf) in enumerate(mask_leaves(mask).items())}
    return nm_prune(scores, mask, n, m, exclude)


def level_group_keep(n: int, m: int, fraction: float, level: int) -> int:
    """N:M IMP: the weights of every group of M kept at level L, ``max(N, round(M (1 - p)^L))``."""
    return max(n, int(round(m * (1.0 - fraction) ** level)))


def nm_level_mask(params: Params, mask: Mask, spec: PruningConfig, level: int, n: int, m: int) -> Mask:
    """N:M IMP: level L's mask from the trained `params` of level L - 1, every group of M of a layer
    keeping `level_group_keep` with the layer's prune fraction (its override, or the default)."""
    values, leaves = named_leaves(params), mask_leaves(mask)
    new = {name: nm_keep(jnp.abs(values[name]), leaves[name], level_group_keep(n, m, layer_fraction(name, spec), level),
                         m) for name in structured_layers(mask, spec.exclude)}
    return _rebuild(mask, new)


def group_counts(mask: Mask, m: int, exclude: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """{layer: kept entries of every group} (host side; for checks and tests)."""
    leaves = mask_leaves(mask)
    return {name: np.asarray(_grouped(jnp.asarray(leaves[name]), m).sum(-1)) for name in
            structured_layers(mask, exclude)}


__all__ = ["check_nm_shapes", "group_counts", "level_group_keep", "nm_keep", "nm_level_mask", "nm_magnitude",
           "nm_prune", "nm_random", "parse_nm", "structured_layers"]
