"""Structured pruning: whole units (a dense layer's neuron, a conv layer's output channel) at a time.

A unit is one channel of a unit space (`lth.models.spaces`): every writer's kernel column, its bias
and the scale and bias of the BatchNorm normalising it (the unit's *members*). A residual stream's
channel is one unit across all its writers. At a structured granularity (`pruning.granularity`)
the mask also covers the members of every prunable space, so a pruned unit is exactly zero and
stays zero (its output is 0, after BatchNorm too), and the rows of the layers reading a pruned unit
(its readers' input rows / channels; ``p * size + c`` after a flatten) are masked as well: the
mask's count is the weights really in use. `percent_remaining` counts those biases and norm entries.

Which spaces are prunable: hidden ones (never the input, never the output: the classes) written by
the granularity's kind of layer ("neuron": dense, "channel": conv, "unit" and "refill": both), none
of whose writer kernels matches `pruning.exclude`. Layers of the other kind are not pruned at all
(their rows reading a pruned unit still are). Counts are exact: a space keeps `kept_at(units at
level 0, fraction, level)` units (`pruning.layer_fractions` matched on its first writer's kernel
path), ranked by the L1 / L2 norm of their members' (masked) values, ties to the lower index.

NumPy on the host: a LeNet-300-100 level takes a few milliseconds (the scores are sums over the
params, the ranking an argsort of a few hundred units); refill's unstructured step is the jitted
exact top-k of `lth.sparsity.topk`.
"""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lth.errors import ConfigError
from lth.models.graph import model_graph
from lth.models.spaces import Space, unit_members, unit_spaces
from lth.spec.config import PruningConfig
from lth.spec.names import STRUCTURED
from lth.sparsity.masks import Mask, Params, apply_mask, first_match, make_mask, named_leaves, path_name
from lth.sparsity.pruning import first_empty_level, kept_at, layer_fraction, plan_groups
from lth.sparsity.topk import keep_top

GRANULARITY_OPS = {"neuron": ("dense",), "channel": ("conv",), "unit": ("dense", "conv"),
                   "refill": ("dense", "conv")}


def is_structured(spec: PruningConfig) -> bool:
    """Whether `spec` prunes whole units (any granularity but "weight")."""
    return spec.granularity in STRUCTURED


def prunable_spaces(spaces: list[Space], spec: PruningConfig) -> list[Space]:
    """The spaces whose units `spec` prunes: hidden, written by the granularity's kind of layer, no
    writer kernel excluded."""
    ops = GRANULARITY_OPS[spec.granularity]
    return [s for s in spaces if s.role == "hidden" and s.op in ops
            and not any(first_match(f"{w}/kernel", spec.exclude) for w in s.writers)]


def structured_spaces(model: str, params: Params, spec: PruningConfig) -> list[Space]:
    """The prunable spaces of registered model `model` on `params` (arrays or shapes)."""
    return prunable_spaces(unit_spaces(model_graph(model), params), spec)


def _kernel(layer: str) -> str:
    return f"{layer}/kernel"


def _unit_leaves(spaces: list[Space], leaves: dict[str, Any]) -> set[str]:
    """Every leaf a structured mask covers beyond the prunable kernels: members and readers' kernels."""
    paths = {path for s in spaces for path, _ in unit_members(s, leaves)}
    return paths | {_kernel(r.layer) for s in spaces for r in s.readers}


def structured_mask(params: Params, spec: PruningConfig, spaces: list[Space], mask: Mask | None = None) -> Mask:
    """The level-0 mask at a structured granularity: `mask` (default: full over `spec.prunable`)
    widened to every member and reader kernel of `spaces`, all kept where `mask` had no entry."""
    extra = sorted(_unit_leaves(spaces, named_leaves(params)))
    full = make_mask(params, (*spec.prunable, *(re.escape(p) for p in extra)))
    if mask is None:
        return full
    return jax.tree.map(lambda f, m: f if m is None else m, full, mask, is_leaf=lambda x: x is None)


def _along(values: np.ndarray, axis: int, shape: tuple[int, ...]) -> np.ndarray:
    """`values` (one per index of `axis`) broadcast to `shape`."""
    index = [1] * len(shape)
    index[axis] = len(values)
    return np.broadcast_to(values.reshape(index), shape)


def _per_unit(array: np.ndarray, axis: int, size: int) -> np.ndarray:
    """(units, entries) view of a member: its unit axis first."""
    return np.moveaxis(array, axis, 0).reshape(size, -1)


def kept_units(mask: Mask, spaces: list[Space]) -> dict[str, np.ndarray]:
    """{space name: bool per unit}: a unit is alive while its first writer's kernel column keeps a weight."""
    leaves = named_leaves(mask)
    alive = {}
    for s in spaces:
        kernel = leaves[_kernel(s.writers[0])]
        alive[s.name] = (np.ones(s.size, bool) if kernel is None
                         else _per_unit(np.asarray(kernel), -1, s.size).any(axis=1))
    return alive


def unit_counts(mask: Mask, spaces: list[Space]) -> dict[str, int]:
    """{space name: units alive} (`kept_units`)."""
    return {name: int(a.sum()) for name, a in kept_units(mask, spaces).items()}


def unit_scores(params: Params, mask: Mask, spaces: list[Space], norm: str = "l1") -> dict[str, np.ndarray]:
    """{space name: score per unit}: the L1 ("l1") or L2 ("l2") norm of all its members' masked values."""
    values = named_leaves(apply_mask(params, mask))
    scores = {}
    for s in spaces:
        total = np.zeros(s.size, np.float64)
        for path, axis in unit_members(s, values):
            member = _per_unit(np.asarray(values[path], np.float64), axis, s.size)
            total += np.abs(member).sum(1) if norm == "l1" else np.square(member).sum(1)
        scores[s.name] = total if norm == "l1" else np.sqrt(total)
    return scores


def unit_keeps(spaces: list[Space], spec: PruningConfig, level: int) -> dict[str, int]:
    """{space name: units kept after `level` levels}: `kept_at` of its level-0 units at its fraction
    (`layer_fraction` of its first writer's kernel path: overrides apply)."""
    groups = plan_groups({_kernel(s.name): s.size for s in spaces}, spec, level)
    return {g.names[0].removesuffix("/kernel"): g.keep for g in groups}


def check_unit_levels(spaces: list[Space], spec: PruningConfig, levels: int) -> None:
    """A one-line ConfigError if a space would keep no unit by level `levels` (`first_empty_level`)."""
    empty = first_empty_level({_kernel(s.name): s.size for s in spaces}, spec, levels) if spaces else None
    if empty is not None:
        group, level = empty
        name = group.names[0].removesuffix("/kernel")
        size = next(s.size for s in spaces if s.name == name)
        raise ConfigError(f"the units of {name} would all be pruned at level {level} ({size} at level 0, pruned by "
                          f"{100 * layer_fraction(group.names[0], spec):g} % a level): use --levels {level - 1} or "
                          "fewer, or a smaller prune fraction")


def top_units(scores: np.ndarray, alive: np.ndarray, keep: int) -> np.ndarray:
    """Bool per unit: the `keep` highest-scoring alive units (at least one, at most the alive ones),
    ties to the lower index (a stable sort)."""
    key = np.where(alive, np.asarray(scores, np.float64), -np.inf)
    order = np.argsort(-key, kind="stable")
    kept = np.zeros(len(alive), bool)
    kept[order[:max(1, min(int(keep), int(alive.sum())))]] = True
    return kept & alive


def apply_units(mask: Mask, spaces: list[Space], kept: dict[str, np.ndarray]) -> Mask:
    """`mask` AND the pattern of the units `kept` per space: each dead unit's members and its
    readers' input rows (``p * size + c`` after a flatten; input channel c of a conv) False."""
    leaves = {k: None if v is None else np.asarray(v, bool) for k, v in named_leaves(mask).items()}
    for s in spaces:
        units = kept[s.name]
        for path, axis in unit_members(s, leaves):
            if leaves[path] is not None:
                leaves[path] = leaves[path] & _along(units, axis, leaves[path].shape)
        for reader in s.readers:
            path = _kernel(reader.layer)
            if leaves[path] is not None:
                leaves[path] = leaves[path] & _along(np.tile(units, reader.positions), -2, leaves[path].shape)
    return jax.tree_util.tree_map_with_path(
        lambda p, m: None if m is None else jnp.asarray(leaves[path_name(p)]), mask, is_leaf=lambda x: x is None)


def prune_units(params: Params, mask: Mask, spaces: list[Space], spec: PruningConfig, level: int,
                sign: float = 1.0) -> Mask:
    """Level `level`'s structured mask: in each space the `unit_keeps` alive units of highest
    `sign` x norm (`spec.unit_score`) of `params` under `mask`; the others pruned (`apply_units`)."""
    alive = kept_units(mask, spaces)
    scores = unit_scores(params, mask, spaces, spec.unit_score)
    keeps = unit_keeps(spaces, spec, level)
    return apply_units(mask, spaces, {n: top_units(sign * scores[n], alive[n], keeps[n]) for n in alive})


def refill_units(params: Params, mask: Mask, spaces: list[Space], spec: PruningConfig, level: int,
                 base_counts: dict[str, int] | None = None) -> Mask:
    """IMP-Refill (Chen et al. 2022, "Coarsening the Granularity", ICML; their code:
    VITA-Group/Structure-LTH, `pruning_utils.py` `prune_model_custom_fillback`, criteria "remain",
    called every round by `main_imp_fillback.py`, whose refilled mask is the next round's start).

    Per space: (1) unstructured magnitude pruning of each writer kernel, over the alive units'
    whole columns (the paper's masks keep a refilled channel dense), to ``kept_at(level-0 weights,
    fraction, level)`` (`base_counts`, default the kernel's size); (2) the units ranked by how
    many of their weights survived, and the top ``floor(S / F) + 1`` kept (S the survivors of the
    space, F one unit's fan-in summed over its writers; at most the alive units): the paper keeps
    the channels whose count is above the (C - floor(S / F))-th smallest plus one tied channel,
    floor(S / F) + 1 with distinct counts; (3) those units dense again (`apply_units`).

    Deviations: ties go to the lower index (the paper draws a tied channel at random); the
    unstructured step is layerwise (the paper's is global over conv layers); dense layers' neurons
    are refilled like channels ("refill" prunes both kinds; the paper prunes convs but the first);
    the readers' rows of pruned units are masked (the paper leaves them, their trained values
    rank lowest here as the masked params hold zeros there).
    """
    values, alive = named_leaves(params), kept_units(mask, spaces)
    kept = {}
    for s in spaces:
        counts, fan_in = np.zeros(s.size, np.int64), 0
        for writer in s.writers:
            path = _kernel(writer)
            value = jnp.asarray(values[path])
            base = value.size if base_counts is None else base_counts.get(path, value.size)
            keep = kept_at(base, layer_fraction(path, spec), level, spec.schedule)
            columns = jnp.asarray(_along(alive[s.name], -1, value.shape))
            (survivors,) = keep_top([jnp.abs(value)], [columns], jnp.int32(keep))
            counts += _per_unit(np.asarray(survivors), -1, s.size).sum(1)
            fan_in += value.size // s.size
        kept[s.name] = top_units(counts, alive[s.name], int(counts.sum()) // fan_in + 1)
    return apply_units(mask, spaces, kept)


def structured_level_mask(params: Params, mask: Mask, spaces: list[Space], spec: PruningConfig, level: int,
                          base_counts: dict[str, int] | None = None) -> Mask:
    """Level `level`'s mask at `spec.granularity`: `refill_units` or `prune_units`."""
    if spec.granularity == "refill":
        return refill_units(params, mask, spaces, spec, level, base_counts)
    return prune_units(params, mask, spaces, spec, level)


def random_units(full_mask: Mask, spaces: list[Space], counts: dict[str, int], key: jax.Array) -> Mask:
    """`full_mask` with, per space, `counts[name]` units chosen uniformly at random (a key per space)."""
    kept = {}
    for i, s in enumerate(spaces):
        scores = np.asarray(jax.random.uniform(jax.random.fold_in(key, i), (s.size,)))
        kept[s.name] = top_units(scores, np.ones(s.size, bool), counts[s.name])
    return apply_units(full_mask, spaces, kept)


def shuffle_units(mask: Mask, spaces: list[Space], key: jax.Array) -> Mask:
    """A full mask with each space's alive units permuted within the space (counts per space kept)."""
    alive = kept_units(mask, spaces)
    full = jax.tree.map(jnp.ones_like, mask)
    kept = {s.name: alive[s.name][np.asarray(jax.random.permutation(jax.random.fold_in(key, i), s.size))]
            for i, s in enumerate(spaces)}
    return apply_units(full, spaces, kept)
