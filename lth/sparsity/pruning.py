"""Scores -> new masks: magnitude pruning, global or layerwise, with per-layer rates.

Counts are exact. Level L of a lottery run keeps ``round(N * (1 - p) ** L)`` of the N weights that
were kept at level 0 (per layer for `layerwise`, per pool for `global`), so after L levels a layer's
density is (1-p)^L to within one weight -- rounding never accumulates across levels. Each level
removes (as near as rounding allows) the fraction p of the weights that *remain*; pruned weights
never come back (they rank below every kept weight).

Ranking is exact and deterministic (`lth.sparsity.topk.keep_top`): higher score first, ties broken
by the lower flat index (in the order of the pytree leaves).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lth.spec.config import PruningConfig
from lth.spec.checks import validate_spec
from lth.errors import ConfigError
from lth.spec.names import PRUNING_SCHEDULES, PRUNING_STRATEGIES
from lth.sparsity.masks import Mask, Params, first_match, kept_counts, mask_leaves, named_leaves, path_name
from lth.sparsity.topk import keep_top

STRATEGIES, SCHEDULES = PRUNING_STRATEGIES, PRUNING_SCHEDULES


class Group(NamedTuple):
    """Layers that share one threshold, and how many of their weights to keep."""

    names: tuple[str, ...]
    keep: int


def layer_fraction(name: str, spec: PruningConfig) -> float:
    """The per-level prune fraction of one layer: 0 if excluded, else its override, else the default."""
    if first_match(name, spec.exclude) is not None:
        return 0.0
    for pattern, fraction in spec.layer_fractions:
        if first_match(name, (pattern,)) is not None:
            return float(fraction)
    return float(spec.fraction)


def kept_at(base: int, fraction: float, level: int, schedule: str = "geometric") -> int:
    """Weights of `base` kept after `level` levels: ``round(base (1 - fraction) ** level)``
    ("geometric": the fraction of what remains, Frankle & Carbin), or ``base - floor(base * level *
    fraction)`` ("linear": the fraction of the level-0 count, the MNIST-1D notebook's linspace)."""
    if schedule == "linear":
        return base - int(base * min(1.0, level * fraction))
    return int(round(base * (1.0 - fraction) ** level))


def module_of(name: str) -> str:
    """The module a leaf belongs to: ``fc1/kernel`` -> ``fc1`` (a name without a ``/`` is its own)."""
    return name.rsplit("/", 1)[0] if "/" in name else name


def plan_groups(base_counts: dict[str, int], spec: PruningConfig, level: int) -> list[Group]:
    """How many weights each threshold group keeps after `level` levels of pruning.

    `base_counts` are the weights kept per layer at level 0. `layerwise`: every leaf is a group.
    `modulewise`: the leaves of one module (``fc1/kernel`` and ``fc1/bias``) share a threshold, as
    a torch layer's parameter vector in the MNIST-1D notebook. `global`: the leaves at the default
    rate share one threshold. Leaves with an override or an exclusion are always groups of their own.
    """
    validate_spec(spec)
    if level < 0:
        raise ConfigError(f"pruning level must be >= 0, got {level}")
    groups: list[Group] = []
    pools: dict[str, list[str]] = {}
    for name, base in base_counts.items():
        fraction = layer_fraction(name, spec)
        if spec.strategy == "layerwise" or fraction != spec.fraction:
            groups.append(Group((name,), kept_at(base, fraction, level, spec.schedule)))
        else:
            pools.setdefault(module_of(name) if spec.strategy == "modulewise" else "", []).append(name)
    for names in pools.values():
        total = sum(base_counts[n] for n in names)
        groups.append(Group(tuple(names), kept_at(total, spec.fraction, level, spec.schedule)))
    return groups


def prune_by_scores(scores: Any, mask: Mask, groups: list[Group]) -> Mask:
    """New mask keeping, in each group, its `keep` highest-scoring weights among those still kept.

    `scores` is a pytree with at least the mask's prunable leaves (same paths and shapes). One
    compiled program per mask structure and grouping: the counts are traced, so every level of a
    run reuses the program its first level (or level 0's warm-up, `lth.lottery.levels.warm_pruning`) compiled.
    """
    score_leaves = named_leaves(scores)
    return _keep_in_groups(_keep_by_scores, {n: jnp.asarray(score_leaves[n]) for g in groups for n in g.names},
                           mask, groups)


def _keep_in_groups(program: Any, values: dict[str, jax.Array], mask: Mask, groups: list[Group]) -> Mask:
    """The mask from `program(values, alive, keeps, names)`; layers in no group keep their mask."""
    alive = mask_leaves(mask)
    names = tuple(group.names for group in groups)
    kept = program(values, {n: alive[n] for g in names for n in g},
                   jnp.asarray([group.keep for group in groups], dtype=jnp.int32), names) if groups else {}
    return _rebuild(mask, {**alive, **kept})


def _keep_groups(scores: dict[str, jax.Array], alive: dict[str, jax.Array], keeps: jax.Array,
                 names: tuple[tuple[str, ...], ...]) -> dict[str, jax.Array]:
    """{leaf: kept} of every group: its `keeps[i]` highest scores among the alive (`keep_top`)."""
    kept: dict[str, jax.Array] = {}
    for i, group in enumerate(names):
        kept.update(zip(group, keep_top([scores[n] for n in group], [alive[n] for n in group], keeps[i])))
    return kept


_keep_by_scores = jax.jit(_keep_groups, static_argnames="names")
_keep_by_magnitude = jax.jit(lambda values, alive, keeps, names: _keep_groups(
    {n: jnp.abs(v) for n, v in values.items()}, alive, keeps, names), static_argnames="names")


def first_empty_level(base_counts: dict[str, int], spec: PruningConfig, levels: int) -> tuple[Group, int] | None:
    """The first level <= `levels` at which a threshold group of weights (kept at level 0) would keep
    none, with that group; None if every group keeps a weight through `levels`. Counts only fall
    with the level, so a bisection finds it in O(log levels) plans."""

    def empty(level: int) -> list[Group]:
        groups = plan_groups(base_counts, spec, level)
        return [g for g in groups if g.keep == 0 and sum(base_counts[n] for n in g.names)]

    if not empty(levels):
        return None
    low, high = 0, levels
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if empty(middle) else (middle + 1, high)
    return empty(low)[0], low


def _rebuild(mask: Mask, leaves: dict[str, jax.Array]) -> Mask:
    return jax.tree_util.tree_map_with_path(
        lambda path, m: None if m is None else leaves[path_name(path)], mask, is_leaf=lambda x: x is None
    )


def magnitude_scores(params: Params, mask: Mask) -> dict[str, jax.Array]:
    """|w| for every prunable leaf, keyed by path."""
    values = named_leaves(params)
    return {name: jnp.abs(values[name]) for name in mask_leaves(mask)}


def prune_magnitude(
    params: Params,
    mask: Mask,
    spec: PruningConfig,
    level: int = 1,
    base_counts: dict[str, int] | None = None,
) -> Mask:
    """Magnitude pruning: drop the smallest |w| among the weights `mask` keeps.

    With the defaults it removes the fraction ``spec.fraction`` (or the per-layer override) of the
    weights that remain. A lottery driver passes its level-0 counts as `base_counts` and the level
    number, so that densities after L levels are exactly (1-p)^L to within one weight.
    """
    if base_counts is None:
        base_counts = kept_counts(mask)
    groups = plan_groups(base_counts, spec, level)
    values = named_leaves(params)  # |w| is taken inside the one compiled program (`magnitude_scores` eagerly)
    return _keep_in_groups(_keep_by_magnitude, {n: jnp.asarray(values[n]) for g in groups for n in g.names}, mask,
                           groups)

