"""Sparse networks other than IMP's, on the same compiled loop: a pure generator of one outcome per
target density (`method_levels`), and the pieces the controls of a lottery run share with it.

Methods (`config.method`; settings in `config.sparse`, see `lth.spec.config.SparseConfig`):

    imp       the lottery (`lth.lottery.levels`), the default
    static    a fixed random mask with the layer distribution's counts (uniform or ERK), trained once
    snip      SNIP (Lee et al. 2019): a fixed mask, |g * w| top-k per layer at the distribution's counts
    set       SET (Mocanu et al. 2018): the random start mask, drop-and-grow every dt iterations
    rigl      RigL (Evci et al. 2020): as SET, regrowth by the dense gradient, cosine drop fraction
    gradual   Zhu & Gupta (2017): dense at t0, magnitude pruning on the cubic schedule to the target
    earlybird You et al. (2020): the magnitude mask of dense training once it stops changing (the
              Early-Bird ticket), retrained from init (`lth.lottery.earlybird`, its own level loop)

Each density of `config.sparse.densities` is trained from the run's initialisation (iteration 0,
the same init, data order and schedule as the lottery's level 0: every density trains with level 0's
data order, whatever its position) to the end of training: one record in the format of a lottery
level (density, accuracies, early stop), with `level` = the density's position in the list, plus the
method, the target density, how many mask updates changed the mask and the overlap of the final mask
with the initial one. With an N:M `structure` the density is the structure's (no `densities`): static
is a random N:M mask, gradual ramps every group from M to N.

A mask that changes during training (gradual, set, rigl) is compared at its final mask: the record's
early stop and best test accuracy look only at evaluations from `final_mask_from` on, the first
iteration after the last update that moved a weight (`lth.training.mask_updates.final_mask_from`).

Randomness: the start mask of density d is drawn from ``stream(seed, "sparse_mask", kept)`` with
`kept` its weight count, so a density's mask does not depend on the others in the list.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Iterator
from typing import Any


from lth import rng
from lth.spec.config import SparseConfig
from lth.spec.methods import dense_layers, layer_distribution
from lth.models.graph import model_graph, weighted_layers
from lth.lottery.levels import Hooks, LevelOutcome, level_record
from lth.lottery.method_config import METHODS, check_schedule, validate_method
from lth.lottery.train_level import train_level
from lth.lottery.compact_record import record_compact
from lth.lottery.cost import (
    forward_flops, gradual_iteration_flops, layer_positions, total_counts, training_cost
)
from lth.lottery.setup import Setup, init_params, initial_mask, score_batch
from lth.errors import ConfigError
from lth.sparsity import nm
from lth.sparsity.at_init import prune_at_init
from lth.sparsity.distributions import check_density, keep_counts, random_mask
from lth.sparsity.masks import Mask, apply_mask, connections, kept_counts, named_leaves, overlap
from lth.sparsity.pruning import Group
from lth.training import Trainer, TrainState
from lth.training.mask_updates import (
    DYNAMIC,
    count_updates,
    due_steps,
    final_mask_from,
    make_mask_update,
    sparse_state,
)
from lth.training.trainer import with_mask_update


@functools.lru_cache(maxsize=16)
def _method_trainer(trainer: Trainer, method: str, sparse: SparseConfig, exclude: tuple[str, ...]) -> Trainer:
    return with_mask_update(trainer, make_mask_update(method, sparse, trainer.total_steps, exclude))


def method_trainer(setup: Setup, method: str) -> Trainer:
    """The trainer of `method`: the setup's, with the method's mask updates in its iteration (cached,
    so every density and control of a run reuses one compiled program)."""
    if method not in DYNAMIC:
        return setup.trainer
    return _method_trainer(setup.trainer, method, setup.config.sparse, method_exclude(setup))


def start_mask(setup: Setup, method: str, full: Mask, counts: dict[str, int] | None,
               init: tuple[Any, Any] | None = None) -> Mask:
    """The mask a method starts from: full for gradual; SNIP's (`snip_mask`, scored at `init`, the
    (params, model state) training starts from, default the run's) for snip; a random mask with `counts` (or a random
    N:M mask) for static, SET and RigL."""
    config = setup.config
    if method == "gradual":
        return full
    if method == "snip":
        return snip_mask(setup, *(init or init_params(setup)), full, counts)
    if setup.structure is not None:
        n, m = setup.structure
        return nm.nm_random(full, rng.stream(config.seed, "sparse_mask", n, m), n, m, method_exclude(setup))
    return random_mask(full, counts, rng.stream(config.seed, "sparse_mask", sum(counts.values())))


def snip_mask(setup: Setup, params: Any, model_state: Any, full: Mask, counts: dict[str, int]) -> Mask:
    """SNIP (Lee et al. 2019) at per-layer `counts`: in each layer the `counts[layer]` largest |g * w|,
    g the gradient of the loss on `score_batch(setup)` at `params` (`lth.sparsity.scores.snip_scores`)."""
    groups = [Group((name,), keep) for name, keep in counts.items()]
    return prune_at_init("snip", setup.model, params, model_state, full, score_batch(setup), None, None,
                         groups=groups)


def start_state(setup: Setup, method: str, params: Any, model_state: Any, mask: Mask, step: int,
                final_counts: dict[str, int] | None) -> TrainState:
    """The masked start state of `method` at iteration `step` (fresh optimiser); with mask updates the
    mask (and gradual pruning's per-layer start and end counts) travel in the state."""
    state = setup.trainer.init_state(apply_mask(params, mask), model_state, step)
    if method not in DYNAMIC:
        return state
    start = kept_counts(mask)
    if method == "gradual" and setup.config.sparse.s_i > 0 and final_counts is not None:
        density = 1.0 - setup.config.sparse.s_i
        start = keep_counts(mask, density, layer_distribution(setup.config.sparse.distribution, setup.config.method),
                            method_exclude(setup))
    return state._replace(sparse=sparse_state(mask, start, final_counts or start))


def method_exclude(setup: Setup) -> tuple[str, ...]:
    """The layers a method run keeps whole: `pruning.exclude` and those `sparse.dense` keeps dense
    (`lth.spec.methods.dense_layers`; for IMP runs only `pruning.exclude`)."""
    config = setup.config
    if config.method == "imp":
        return tuple(config.pruning.exclude)
    graph = list(weighted_layers(model_graph(config.model)))
    layers = [f"{layer['params']}/kernel" for layer in graph]
    conv = any(layer["op"] == "conv" for layer in graph)
    dense = dense_layers(config.sparse.dense, config.method, layers, conv)
    return (*config.pruning.exclude, *(re.escape(name) for name in dense))


def target_counts(setup: Setup, full: Mask, density: float) -> dict[str, int]:
    """Per-layer counts of `density` under the run's distribution (`method_exclude` kept whole)."""
    distribution = layer_distribution(setup.config.sparse.distribution, setup.config.method)
    return keep_counts(full, density, distribution, method_exclude(setup))


def sparse_record(setup: Setup, method: str, level: int, initial: Mask, final: Mask, start: TrainState,
                  evaluations: list[dict[str, float]], target: float | None, state: TrainState,
                  search_iterations: int = 0) -> dict[str, Any]:
    """A level record plus the method, its target density, the mask updates that changed the mask, the
    final mask's overlap with the initial one, and its training cost (`method_cost` of training from
    `start` to `state`; `search_iterations`: the dense iterations trained to find its mask first, e.g. an
    Early-Bird search). A mask that changes during training early-stops only over evaluations under its
    final mask, from `final_mask_from` on."""
    begin = int(start.step)
    cost = method_cost(setup, method, initial, final, state, begin, int(state.step), search_iterations)
    extra: dict[str, Any] = {"method": method, "mask_updates": 0}
    if method in DYNAMIC:
        rule = method_trainer(setup, method).parts.mask_update
        extra["mask_updates"] = count_updates(rule, begin, setup.total_steps, start.sparse)
        extra["final_mask_from"] = final_mask_from(rule, begin, setup.total_steps, start.sparse)
    record = level_record(level, final, evaluations, compact=record_compact(setup, final), cost=cost,
                          from_iteration=extra.get("final_mask_from"))
    extra["overlap_with_initial_mask"] = overlap(final, initial)
    if target is not None:
        extra["target_density"] = float(target)
    return {**record, **extra}


def method_cost(setup: Setup, method: str, initial: Mask, final: Mask, state: TrainState, start: int, end: int,
                search_iterations: int = 0) -> dict[str, int]:
    """Iterations and training FLOPs of a method's training from `start` to `end` (`lth.lottery.cost`):
    gradual pays each iteration's mask in force, RigL the dense weight gradient at its updates; set,
    static, snip and RigL keep every layer's count, so their forward is the final mask's."""
    positions = layer_positions(setup)
    sparse_forward = forward_flops(kept_counts(final), positions)
    if method == "gradual":
        counts = {name: {k: int(v) for k, v in c.items()} for name, c in
                  (("start", state.sparse.start_counts), ("final", state.sparse.final_counts))}
        per_iteration = gradual_iteration_flops(setup, initial, counts["start"], counts["final"], start, end)
    else:
        per_iteration = (end - start) * sparse_forward
    dense_steps = 0
    if method == "rigl":  # the dense gradient at every due update (computed whether or not the mask moves)
        rule = method_trainer(setup, method).parts.mask_update
        dense_steps = len(due_steps(rule, start, end))
    return training_cost(setup, end - start, per_iteration, dense_gradient_steps=dense_steps,
                         dense_forward=forward_flops(total_counts(final), positions), sparse_forward=sparse_forward,
                         search_iterations=search_iterations)


def check_method(setup: Setup) -> None:
    """One-line ConfigErrors for what needs the model: a target density the excluded layers alone
    exceed or whose distribution leaves a kernel empty, N:M groups that do not divide a layer's input
    dimension."""
    config = setup.config
    full = initial_mask(setup, init_params(setup)[0])
    for density in config.sparse.densities:
        check_density(full, density, method_exclude(setup))
        _check_no_empty_kernel(setup, full, density)
    if setup.structure is not None:
        nm.check_nm_shapes(full, setup.structure[1], method_exclude(setup))


def _check_no_empty_kernel(setup: Setup, full: Mask, density: float) -> None:
    """A one-line ConfigError if the run's distribution keeps no weight of a kernel at `density` (a
    bias or norm scale may be emptied: it is only zero; an emptied kernel cuts the network)."""
    kernels = connections({name: tuple(leaf.shape) for name, leaf in named_leaves(full).items() if leaf is not None})
    empty = [name for name, kept in target_counts(setup, full, density).items() if not kept and name in kernels]
    if empty:
        distribution = layer_distribution(setup.config.sparse.distribution, setup.config.method)
        raise ConfigError(f"density {density:g} would keep no weight of {', '.join(empty)} under the {distribution} "
                          "layer distribution (a kernel without weights cuts the network): use a larger density, "
                          "another sparse.distribution, or keep that layer dense (sparse.dense)")


def method_levels(setup: Setup, hooks: Hooks | None = None, done: frozenset[int] = frozenset()
                  ) -> Iterator[LevelOutcome]:
    """One outcome per target density of `config.sparse.densities` (or the N:M structure's one),
    skipping the positions in `done`; see the module docstring."""
    config, hooks = setup.config, hooks or Hooks()
    method = config.method
    if method == "earlybird":  # a search before the tickets; imported here as it builds on this module
        from lth.lottery.earlybird import earlybird_levels

        yield from earlybird_levels(setup, hooks, done)
        return
    params0, model_state0 = init_params(setup)
    full = initial_mask(setup, params0)
    if setup.structure is not None:
        nm.check_nm_shapes(full, setup.structure[1], method_exclude(setup))
    trainer = method_trainer(setup, method)
    for level, density in enumerate(config.sparse.densities or (None,)):
        if level in done:
            continue
        started = time.perf_counter()
        counts = target_counts(setup, full, density) if density is not None else None
        mask = start_mask(setup, method, full, counts, (params0, model_state0))
        start = start_state(setup, method, params0, model_state0, mask, 0, counts)
        state, final, evaluations = train_level(setup, trainer, level, start, mask, hooks, order_level=0)
        record = sparse_record(setup, method, level, mask, final, start, evaluations, density, state)
        yield LevelOutcome(record, final, state, evaluations, time.perf_counter() - started)


__all__ = ["METHODS", "check_method", "check_schedule", "method_levels", "method_trainer", "snip_mask",
           "sparse_record", "start_mask", "start_state", "target_counts", "validate_method"]
