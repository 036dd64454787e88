"""Layer distributions of a target density: how many weights each prunable layer keeps.

`keep_counts(mask, density, distribution, exclude)` gives exact integer counts: they sum to
``round(density * N)`` (N: all prunable weights, excluded layers included) and each layer's count is
within one weight of its real-valued share (largest remainders, ties to the earlier layer).

* ``uniform``: every layer that may be pruned has the same density.
* ``erk`` (Erdős–Rényi–Kernel, Evci et al. 2020): a layer's density is proportional to
  (sum of its dims) / (product of its dims), scaled by one factor eps so that the total is the
  target. Layers whose density would exceed 1 are kept dense and eps is solved again for the rest,
  until no layer exceeds 1 -- the loop of the RigL reference code
  (google-research/rigl, ``sparse_utils.get_sparsities_erdos_renyi``): each pass makes every layer
  with the *largest* raw ratio dense (all of them on a tie) and counts their weights towards the
  target. The difference from the reference: it balances ``n - floor(s n)`` kept weights per layer
  (so its eps is solved for a total up to one weight per layer above the target) and then keeps
  ``n - floor(s_l n)`` in each layer; here the balance is in real numbers and the counts are rounded
  exactly to the target. So the reference keeps at least as many weights as this code in every layer
  and at most L + 1 more (L: the number of layers), the extra going mostly to the largest layer.
  Measured on Conv-2 (5 layers) at the 999 densities 0.001, 0.002, ..., 0.999 against a NumPy port of
  ``get_sparsities_erdos_renyi`` and its per-layer floor: 0 to 5 more weights per layer (5 in fc1,
  4.2 M weights; at most 1 in the other layers), 1 to 7 more in total
  (`tests/test_sparse_rules.py::test_erk_counts_against_the_rigl_reference_on_conv2`).

`exclude` (``pruning.exclude``): layers that are counted in the density but never pruned. They are
dense from the start, like the reference's layers that would exceed density 1 (their weights count
towards the target; the reference's ``custom_sparsity_map`` instead leaves its layers out of the
balance). So a target below the excluded layers' share of N cannot be reached (ConfigError).

Pure functions of shapes and numbers (NumPy), plus `random_mask` (a uniformly random mask with
given per-layer counts, from an explicit key).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import numpy as np

from lth.errors import ConfigError, unknown_name
from lth.spec.names import DISTRIBUTIONS
from lth.sparsity.masks import Mask, first_match, layer_counts, mask_leaves
from lth.sparsity.pruning import Group, prune_by_scores
from lth.sparsity.scores import random_scores


Shapes = dict[str, tuple[int, ...]]


def _size(shape: Sequence[int]) -> int:
    return int(np.prod(shape, dtype=np.int64))


def erk_ratio(shape: Sequence[int]) -> float:
    """The ERK raw ratio of a layer: (sum of its dims) / (product of its dims)."""
    return float(np.sum(shape)) / _size(shape)


def erk_densities(shapes: Shapes, density: float, dense: Sequence[str] = ()) -> dict[str, float]:
    """Per-layer densities of ERK at overall `density`; the layers in `dense` are kept whole (see
    the module docstring for the loop that makes layers whose density would exceed 1 dense)."""
    dense_set = set(dense)
    target = density * sum(_size(s) for s in shapes.values())
    while True:
        free = [name for name in shapes if name not in dense_set]
        if not free:
            return {name: 1.0 for name in shapes}
        rhs = target - sum(_size(shapes[name]) for name in dense_set)
        divisor = sum(erk_ratio(shapes[name]) * _size(shapes[name]) for name in free)
        eps = rhs / divisor
        largest = max(erk_ratio(shapes[name]) for name in free)
        if eps * largest <= 1.0:
            break
        dense_set.update(name for name in free if erk_ratio(shapes[name]) == largest)
    return {name: 1.0 if name in dense_set else eps * erk_ratio(shape) for name, shape in shapes.items()}


def uniform_densities(shapes: Shapes, density: float, dense: Sequence[str] = ()) -> dict[str, float]:
    """Per-layer densities with one density for every layer not in `dense` (those are kept whole)."""
    total = sum(_size(s) for s in shapes.values())
    whole = sum(_size(shapes[name]) for name in dense)
    rest = total - whole
    share = (density * total - whole) / rest if rest else 1.0
    return {name: 1.0 if name in dense else share for name in shapes}


def exact_counts(shapes: Shapes, densities: dict[str, float], total: int) -> dict[str, int]:
    """Integer keep counts, one per layer, summing to `total`: layers of density 1 keep all their
    weights; every other layer's real share ``densities[l] * size(l)`` is floored and the weights
    still missing go one each to the largest fractional parts (ties to the earlier layer)."""
    sizes = {name: _size(shape) for name, shape in shapes.items()}
    names = list(shapes)
    free = [name for name in names if densities[name] < 1.0]
    counts = {name: sizes[name] for name in names if name not in free}
    real = {name: max(densities[name], 0.0) * sizes[name] for name in free}
    counts.update({name: min(sizes[name], int(math.floor(real[name]))) for name in free})
    order = sorted(free, key=lambda name: (-(real[name] - counts[name]), names.index(name)))
    missing = total - sum(counts.values())
    step = 1 if missing > 0 else -1
    for name in (order if step > 0 else order[::-1]) * 2:  # |missing| <= len(free) up to float error
        if missing and 0 <= counts[name] + step <= sizes[name]:
            counts[name] += step
            missing -= step
    return {name: counts[name] for name in names}


def excluded_layers(mask: Mask, exclude: Sequence[str]) -> list[str]:
    return [name for name in mask_leaves(mask) if first_match(name, exclude) is not None]


def lowest_density(mask: Mask, exclude: Sequence[str] = ()) -> float:
    """The smallest reachable overall density: the excluded layers' share of the prunable weights."""
    sizes = {name: size for name, (_, size) in layer_counts(mask).items()}
    return sum(sizes[name] for name in excluded_layers(mask, exclude)) / sum(sizes.values())


def check_density(mask: Mask, density: float, exclude: Sequence[str] = ()) -> None:
    """ConfigError unless `density` is reachable: in (0, 1] and at least the excluded layers' share."""
    if not (isinstance(density, (int, float)) and 0.0 < float(density) <= 1.0):
        raise ConfigError(f"target density must be in (0, 1], got {density!r}: e.g. 0.05 keeps 5% of the weights")
    low = lowest_density(mask, exclude)
    if density < low:
        raise ConfigError(f"target density {density} is below {low:.4f}, what the excluded layers "
                          f"{excluded_layers(mask, exclude)} alone keep: raise it or exclude fewer layers")


def keep_counts(mask: Mask, density: float, distribution: str = "erk", exclude: Sequence[str] = ()) -> dict[str, int]:
    """{layer: weights kept} at overall `density` under `distribution` (see the module docstring);
    the shapes are the mask's prunable leaves."""
    if distribution not in DISTRIBUTIONS:
        raise unknown_name("layer distribution", distribution, DISTRIBUTIONS)
    check_density(mask, density, exclude)
    shapes = {name: tuple(np.shape(m)) for name, m in mask_leaves(mask).items()}
    dense = excluded_layers(mask, exclude)
    rule = erk_densities if distribution == "erk" else uniform_densities
    total = int(round(density * sum(_size(s) for s in shapes.values())))
    return exact_counts(shapes, rule(shapes, float(density), dense), total)


def random_mask(mask: Mask, counts: dict[str, int], key: jax.Array) -> Mask:
    """A uniformly random mask keeping `counts[layer]` of each layer's entries that `mask` keeps."""
    return prune_by_scores(random_scores(mask, key), mask, [Group((name,), k) for name, k in counts.items()])


__all__ = ["DISTRIBUTIONS", "check_density", "erk_densities", "erk_ratio", "exact_counts", "keep_counts",
           "lowest_density", "random_mask", "uniform_densities"]
