"""Masks and weights of tickets compared: overlaps (and their chance level), the weights a mask
keeps and prunes, and the signs kept from initialisation (Zhou et al. 2019)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lth.errors import LthError
from lth.sparsity.masks import Mask, layer_counts, mask_leaves, named_leaves, overlap
from lth.sparsity.masks import sign_agreement as _sign_agreement


def _mask_list(masks: Sequence[Mask] | Mapping[Any, Mask]) -> list[Mask]:
    return list(masks.values()) if isinstance(masks, Mapping) else list(masks)


def mask_overlap_matrix(masks: Sequence[Mask] | Mapping[Any, Mask]) -> np.ndarray:
    """n x n Jaccard overlaps |a AND b| / |a OR b| of the kept weights (`lth.masks.overlap`) between
    every pair of masks (a list, e.g. `Run.masks()`, or a mapping label -> mask: its values)."""
    items = _mask_list(masks)
    n = len(items)
    matrix = np.ones((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            matrix[i, j] = matrix[j, i] = overlap(items[i], items[j])
    return matrix


def random_overlap(a: Mask, b: Mask | None = None) -> float:
    """The expected overlap (Jaccard, as `lth.masks.overlap`) of two independent uniformly random
    masks with the per-layer counts of `a` and `b` (default: `a`'s): the chance level against which
    the overlap of two tickets (e.g. of two seeds) can be read. Per layer of n weights keeping k_a
    and k_b, the expected intersection is k_a k_b / n; the union is k_a + k_b minus it (the ratio
    of the expected sizes, which is exact up to O(1 / weights))."""
    counts_a = layer_counts(a)
    counts_b = layer_counts(b) if b is not None else counts_a
    inter = union = 0.0
    for name, (ka, n) in counts_a.items():
        kb = counts_b[name][0]
        i = ka * kb / n if n else 0.0
        inter += i
        union += ka + kb - i
    return inter / union if union else 1.0


def _prunable_pairs(params: Any, mask: Mask) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    values = named_leaves(params)
    out = {}
    for name, m in mask_leaves(mask).items():
        if name not in values:
            raise LthError(f"the mask names {name!r}, which the params do not have: use a mask of this model")
        w, m = np.asarray(values[name]), np.asarray(m, dtype=bool)
        if w.shape != m.shape:
            raise LthError(f"{name}: params of shape {w.shape} but mask of shape {m.shape}")
        out[name] = (w, m)
    return out


def split_by_mask(params: Any, mask: Mask, alive: Mask | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{layer: (kept values, pruned values)} of the prunable weights of `params` under `mask`.

    `alive` (e.g. the previous level's mask) restricts both to the weights it keeps, so that weights
    pruned at earlier levels (exactly zero) are left out: with the trained params of level L, the
    mask of level L+1 and alive = the mask of level L, this is what pruning level L+1 kept and removed.
    Masks may be pytrees or {path: bool array} dicts.
    """
    alive_leaves = mask_leaves(alive) if alive is not None else {}
    out = {}
    for name, (w, m) in _prunable_pairs(params, mask).items():
        live = np.asarray(alive_leaves[name], dtype=bool) if name in alive_leaves else np.ones_like(m)
        out[name] = (w[m & live], w[~m & live])
    return out


def sign_agreement(params_init: Any, params_final: Any, mask: Mask, per_layer: bool = False) -> Any:
    """The fraction of the weights kept by `mask` whose sign is the same in both params (e.g. at
    initialisation and after training). A float, or {layer: fraction} with `per_layer`.
    Masks may be pytrees or {path: bool array} dicts."""
    _prunable_pairs(params_init, mask)  # one-line errors for a mask of another model
    return _sign_agreement(params_init, params_final, mask, per_layer)
