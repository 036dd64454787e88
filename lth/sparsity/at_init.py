"""Pruning at initialisation: scores (`lth.sparsity.scores`) -> masks at a target density, and the
shuffle sanity check of Frankle et al. 2021 ("Missing the Mark").

`prune_at_init` prunes once (magnitude, SNIP, GraSP, random) or iteratively (SynFlow, 100 rounds
with an exponential density schedule) to a target density, one threshold over all prunable layers
(global) or one per layer; `shuffle_mask` permutes each layer's mask within the layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lth.spec.config import PruningConfig
from lth.errors import ConfigError, LthError, unknown_name
from lth.models.base import Model
from lth.sparsity.masks import Mask, Params, check_mask, first_match, layer_counts, mask_leaves, path_name
from lth.sparsity.pruning import STRATEGIES, Group, prune_by_scores
from lth.sparsity.scores import (
    GRASP_TEMPERATURE,
    SCORERS,
    check_dtype,
    dtype_key,
    grasp_scores,
    invert_scores,
    magnitude_at_init,
    random_scores,
    snip_scores,
    synflow_round_fn,
)


def _check_density(target_density: float) -> None:
    if not (isinstance(target_density, (int, float, np.floating)) and 0.0 < float(target_density) <= 1.0):
        raise ConfigError(f"target density must be in (0, 1], got {target_density!r}: "
                          "e.g. 0.1 keeps 10% of the weights")


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
        raise unknown_name("pruning strategy", strategy, STRATEGIES)
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


def scheduled_groups(groups: list[Group], mask: Mask, fraction: float) -> list[Group]:
    """The groups of an intermediate round: each keeps ``round(alive * (keep / alive) ** fraction)``
    of the `alive` weights `mask` keeps in it (SynFlow's exponential schedule, per group)."""
    kept = {name: k for name, (k, _) in layer_counts(mask).items()}
    out = []
    for group in groups:
        alive = sum(kept[n] for n in group.names)
        keep = alive if alive == 0 else int(round(alive * (group.keep / alive) ** fraction))
        out.append(Group(group.names, min(alive, keep)))
    return out


def synflow_prune(
    model: Model,
    params: Params,
    model_state: Any,
    mask: Mask,
    input_shape: Sequence[int],
    target_density: float | None,
    rounds: int = 100,
    spec: PruningConfig | None = None,
    *,
    dtype: Any = None,
    invert: bool = False,
    groups: list[Group] | None = None,
) -> Mask:
    """Iterative SynFlow: `rounds` rounds of score-and-prune to `target_density` (or to the counts
    of explicit threshold `groups`). With `invert`, every round keeps the lowest scores instead.

    Round r = 1..rounds keeps ``round(N * d_r)`` weights with the exponential schedule
    ``d_r = target_density ** (r / rounds)`` (as Synaptic-Flow's ``prune_loop``), rescoring the
    network masked by the previous round; the last round keeps exactly ``round(N * target_density)``.
    Grouping: `spec` None -> one global group over all prunable layers (the papers' setting);
    otherwise ``spec.strategy`` ('global' | 'layerwise') and ``spec.exclude`` are used (note that
    PruningConfig's default strategy is 'layerwise'); ``spec.fraction`` is unused. With `groups`,
    each group follows the same schedule from its alive count to its `keep` (`scheduled_groups`).

    The score function is compiled once with the mask as an argument; the loop is in Python.
    """
    if groups is None:
        _check_density(target_density)
    if not isinstance(rounds, (int, np.integer)) or rounds < 1:
        raise ConfigError(f"SynFlow rounds must be an integer >= 1, got {rounds!r}")
    check_dtype(dtype)
    check_mask(mask, params)
    strategy, exclude = _spec_grouping(spec)
    round_scores = synflow_round_fn(model, tuple(input_shape), dtype_key(dtype))
    start = mask
    for r in range(1, rounds + 1):
        scores, finite = round_scores(params, model_state, mask)
        if not bool(finite):
            raise LthError(
                f"SynFlow scores overflowed in round {r}: compute them in float64 "
                "(jax.config.update('jax_enable_x64', True) and dtype=jnp.float64)"
            )
        if invert:
            scores = invert_scores(scores)
        round_groups = (scheduled_groups(groups, start, r / rounds) if groups is not None
                        else density_groups(mask, target_density ** (r / rounds), strategy, exclude))
        mask = prune_by_scores(scores, mask, round_groups)
    return mask


def prune_at_init(
    method: str,
    model: Model,
    params: Params,
    model_state: Any,
    mask: Mask,
    batch: tuple[jax.Array, jax.Array] | None,
    input_shape: Sequence[int] | None,
    target_density: float | None,
    strategy: str = "global",
    *,
    key: jax.Array | None = None,
    exclude: Sequence[str] = (),
    rounds: int = 100,
    invert: bool = False,
    groups: list[Group] | None = None,
    temperature: float = GRASP_TEMPERATURE,
) -> Mask:
    """Prune `mask` at initialisation to `target_density` with one of `SCORERS` (`invert`: keep the
    lowest scores instead -- Frankle et al. 2021's inversion sanity check).

    One shot for magnitude / snip / grasp / random (global: one threshold over all prunable layers,
    ``round(N * d)`` kept; layerwise: ``round(N_l * d)`` per layer); SynFlow is iterative
    (`rounds`, exponential schedule, see `synflow_prune`). `groups` (threshold groups and their
    kept counts, e.g. a lottery level's) replace `target_density`, `strategy` and `exclude`.
    `batch` = (x, y) is needed by snip and grasp (`temperature` divides GraSP's logits: 200, as
    both reference codes), `input_shape` (without the batch axis; default ``batch[0].shape[1:]``)
    by synflow, `key` by random. Layers matching an `exclude` regex keep their mask.
    """
    if method not in SCORERS:
        raise unknown_name("pruning-at-init method", method, SCORERS)
    if groups is None:
        _check_density(target_density)
    if strategy not in STRATEGIES:
        raise unknown_name("pruning strategy", strategy, STRATEGIES)
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
                             invert=invert, groups=groups)
    scores = _one_shot_scores(method, model, params, model_state, mask, batch, key, temperature)
    if invert:
        scores = invert_scores(scores)
    if groups is None:
        groups = density_groups(mask, target_density, strategy, exclude)
    return prune_by_scores(scores, mask, groups)


def _one_shot_scores(method: str, model: Model, params: Params, model_state: Any, mask: Mask, batch: Any,
                     key: jax.Array | None, temperature: float) -> Any:
    if method == "magnitude":
        return magnitude_at_init(params, mask)
    if method == "random":
        if key is None:
            raise ConfigError("random pruning needs a PRNG key: prune_at_init(..., key=jax.random.key(seed))")
        return random_scores(mask, key)
    if method == "snip":
        return snip_scores(model, params, model_state, mask, *batch)
    return grasp_scores(model, params, model_state, mask, *batch, temperature=temperature)


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


__all__ = ["density_groups", "prune_at_init", "scheduled_groups", "shuffle_mask", "synflow_prune"]
