"""The iterative magnitude pruning (IMP) driver: a pure generator of level outcomes.

Level 0 trains the dense network (or a given starting mask). Each next level prunes the previous
level's trained weights, rewinds the survivors to the rewind point (iteration 0 = init, or step k),
starts a fresh optimiser state with the schedule at step k, and retrains to the same end. With
``data_order="per_level"`` (the default, as both reference codes) every level draws its own data
order and augmentation, ``fold_in(seed stream, level)``: reproducible, and a control of level L
uses level L's; with ``"fixed"`` one order serves every level, so a level differs from the dense
run only by its mask.

`lottery_levels` yields one `LevelOutcome` per level and writes nothing: files, logs and progress
belong to its `Hooks` (`lth.execution` wires them to the run directory, W&B and the terminal).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import numpy as np

from lth.data.device import DeviceData
from lth.errors import ConfigError
from lth.lottery.compact_record import record_compact
from lth.lottery.cost import fixed_mask_cost
from lth.lottery.swamp import evaluate_average, scale_cost, train_particles
from lth.lottery.setup import (
    Setup, data_keys, init_params, initial_mask, level0_state, level_first_iteration, retrained, start_step
)
from lth.sparsity.masks import (
    Mask, apply_mask, connections, kept_counts, layer_counts, layer_densities, mask_leaves, overlap, sign_agreement
)
from lth.sparsity.nm import check_nm_shapes, nm_level_mask
from lth.sparsity.pruning import prune_magnitude
from lth.sparsity.structured import is_structured, structured_level_mask, structured_spaces
from lth.training import Trainer, TrainState, summarize, train
from lth.training.loop import val_minimum
from lth.training.stacked import train_stacked


class LevelOutcome(NamedTuple):
    """A finished level: its record, mask, final state, evaluations and wall time."""

    record: dict[str, Any]  # one row of results.json (deterministic: no timings)
    mask: Mask
    state: TrainState  # at the end of training
    evaluations: list[dict[str, float]]
    seconds: float  # wall time of the level (training, evaluation and pruning)


def level_record(level: int, mask: Mask, evaluations: list[dict[str, float]], *, previous_mask: Mask | None = None,
                 params_init: Any = None, params_final: Any = None, params_previous: Any = None,
                 compact: dict[str, Any] | None = None, cost: dict[str, int] | None = None,
                 from_iteration: int | None = None) -> dict[str, Any]:
    """The results.json row of a level: density, early-stop and final accuracies, per-layer density,
    what compaction would leave (`compact`: `lth.lottery.compact_record.record_compact`'s units alive
    per layer, compact params and MACs), what it cost to train (`cost`: `lth.lottery.cost`'s
    iterations and training FLOPs), and (when given) the mask's overlap with the previous
    level's, the fraction of surviving weights whose trained sign equals their sign at init, and
    the same against the previous level's trained weights (`params_previous`: 1 - the sign flips of
    level L's retraining relative to where level L-1 ended; Gadhikar & Burkholz 2024). The early stop
    and best accuracy look at the evaluations from `from_iteration` on (`lth.training.summarize`)."""
    counts = layer_counts(mask)
    kept = sum(k for k, _ in counts.values())
    total = sum(n for _, n in counts.values())
    return {
        "level": level,
        "density": kept / total,
        "percent_remaining": 100.0 * kept / total,
        "weights_remaining": kept,
        "prunable_weights": total,
        **summarize(evaluations, from_iteration),
        "layer_density": layer_densities(mask),
        **(compact or {}),
        **(cost or {}),
        **({"overlap_with_previous": overlap(mask, previous_mask)} if previous_mask is not None else {}),
        **({"sign_agreement_with_init": sign_agreement(params_init, params_final, mask)}
           if params_init is not None and params_final is not None else {}),
        **({"sign_agreement_with_previous": sign_agreement(params_previous, params_final, mask)}
           if params_previous is not None and params_final is not None else {}),
    }


class Hooks:
    """Callbacks of `lottery_levels` (override what you need); they run outside jit."""

    def level_start(self, level: int, state: TrainState, mask: Mask) -> None:
        """Before training a level: its starting state (pruned and rewound) and its mask."""

    def chunk_done(
        self, level: int, state: TrainState, mask: Mask, new: list[dict[str, float]],
        evaluations: list[dict[str, float]],
    ) -> None:
        """After every compiled chunk (an epoch, or part of one at the rewind step): the chunk's
        evaluations (`new`) and all of the level's so far."""

    def rewind_captured(self, state: TrainState) -> None:
        """Level 0 reached the rewind step k > 0: `state` holds the weights later levels rewind to."""


class Resume(NamedTuple):
    """Where an interrupted lottery continues (found in a run directory by `lth.store.resume`)."""

    level: int  # the first level not finished
    previous: TrainState | None  # final state of level - 1 (None for level 0)
    previous_mask: Mask | None
    rewind_point: tuple[Any, Any] | None  # (params, model state) at step k > 0, once reached
    state: TrainState | None = None  # a mid-level state of `level` to continue from
    mask: Mask | None = None  # the mask of `level`, with `state`
    evaluations: tuple[dict[str, float], ...] = ()  # the evaluations of `level` before `state`
    rewind_damaged: bool = False  # the stored rewind weights are unreadable: recompute them (`recompute_rewind`)


def lottery_levels(
    setup: Setup,
    mask: Mask | None = None,
    *,
    hooks: Hooks | None = None,
    resume: Resume | None = None,
) -> Iterator[LevelOutcome]:
    """Yield one `LevelOutcome` per level, 0 to `config.levels` (from `resume.level` if given).

    No files, no printing: side effects belong to `hooks`. A resumed run computes exactly what an
    uninterrupted one does: chunks are cut at the same iterations and the data order is a function
    of (seed, epoch) only.
    """
    for (outcome,) in lottery_levels_together([setup], [mask], hooks=[hooks or Hooks()], resumes=[resume]):
        yield outcome


TrainMany = Callable[..., Iterator[tuple[list[TrainState], list[list[dict[str, float]]]]]]


def train_each(trainer: Trainer, states: list[TrainState], masks: list[Mask], data: DeviceData,
               order_keys: list[jax.Array], augment_keys: list[jax.Array], *, breaks: Iterable[int] = (),
               val_mins: list[float] | None = None) -> Iterator[tuple[list[TrainState], list[list[dict[str, float]]]]]:
    """`lth.training.train` for a single replicate, in the (states, evaluations) per-replicate form of
    `lottery_levels_together` (one replicate only: several are trained by `lth.training.stacked`)."""
    if len(states) != 1:
        raise ValueError("train_each trains one replicate; use lth.training.stacked.train_stacked for several")
    for state, evals in train(trainer, states[0], masks[0], data, order_keys[0], augment_keys[0], breaks=breaks,
                              val_min=val_mins[0] if val_mins else math.nan):
        yield [state], [evals]


@dataclass
class _Seed:
    """What the IMP driver keeps per replicate between levels."""

    params0: Any
    model_state0: Any
    mask0: Mask
    base_counts: dict[str, int]
    rewind_point: tuple[Any, Any] | None
    previous: TrainState | None = None
    previous_mask: Mask | None = None


def _seed(setup: Setup, mask: Mask | None, resume: Resume | None) -> _Seed:
    params0, model_state0 = init_params(setup)
    mask0 = initial_mask(setup, params0, mask)
    if setup.structure is not None:
        check_nm_shapes(mask0, setup.structure[1], setup.config.pruning.exclude)
    seed = _Seed(params0, model_state0, mask0, kept_counts(mask0),
                 (params0, model_state0) if setup.rewind_step == start_step(setup) else None)
    if resume is not None:
        seed.previous, seed.previous_mask = resume.previous, resume.previous_mask
        seed.rewind_point = resume.rewind_point or seed.rewind_point
    return seed


def _level_start(setup: Setup, seed: _Seed, level: int, resume: Resume | None
                 ) -> tuple[TrainState, Mask, list[dict[str, float]]]:
    """The starting (state, mask, evaluations so far) of `level`: resumed, dense, or pruned and rewound."""
    config, trainer = setup.config, setup.trainer
    if resume is not None and level == resume.level and resume.state is not None:
        return resume.state, resume.mask, list(resume.evaluations)
    if level == 0:  # from the seed's init at 0, or from a start (a ticket) at its step
        return level0_state(setup, seed.params0, seed.model_state0, seed.mask0), seed.mask0, []
    assert seed.previous is not None and seed.rewind_point is not None
    mask = prune_level(setup, seed.previous.params, seed.previous_mask, level, seed.base_counts)
    kernels = connections({name: tuple(np.shape(m)) for name, m in mask_leaves(mask).items()})
    empty = [name for name, (kept, size) in layer_counts(mask).items() if size and not kept and name in kernels]
    if empty:  # only global pruning can get here: layerwise counts are checked by prepare()
        raise ConfigError(f"level {level} would keep no weight of {', '.join(empty)} (global pruning took them all): "
                          f"the network would be cut; use --levels {level - 1} or fewer, or layerwise pruning")
    if config.retraining == "rewind":
        params, model_state = seed.rewind_point
    else:  # learning-rate rewinding and fine-tuning keep the trained weights
        params, model_state = seed.previous.params, seed.previous.model_state
    return trainer.init_state(apply_mask(params, mask), model_state, setup.rewind_step), mask, []


def recompute_rewind(setup: Setup, mask: Mask | None = None) -> tuple[Any, Any]:
    """(params, model state) at the rewind step k, trained again from the seed exactly as level 0
    trained them (the same chunks, data order and augmentation): bit-identical on the same machine
    and thread count, so a damaged rewind checkpoint can be replaced and checked against its digest."""
    return level0_at(setup, setup.rewind_step, mask)


def level0_at(setup: Setup, k: int, mask: Mask | None = None) -> tuple[Any, Any]:
    """(params, model state) of level 0 at iteration k, trained again from the seed as level 0 trained
    them (see `recompute_rewind`; the oneshot_early control prunes these)."""
    if k == 0:
        return init_params(setup)
    seed = _seed(setup, mask, None)
    state, level_mask, _ = _level_start(setup, seed, 0, None)
    order_key, augment_key = data_keys(setup, 0)
    for state, _ in train(setup.trainer, state, level_mask, setup.data, order_key, augment_key, breaks=(k,)):
        if int(state.step) == k:
            break
    return state.params, state.model_state


def prune_level(setup: Setup, params: Any, mask: Mask, level: int, base_counts: dict[str, int]) -> Mask:
    """Level `level`'s mask from the previous level's trained params: magnitude pruning, N:M
    magnitude pruning with the group count shrinking per level (`Setup.structure`), or whole units
    at a structured `pruning.granularity` (`lth.sparsity.structured`)."""
    config, structure = setup.config, setup.structure
    if is_structured(config.pruning):
        spaces = structured_spaces(config.model, params, config.pruning)
        return structured_level_mask(params, mask, spaces, config.pruning, level, base_counts)
    if structure is None:
        return prune_magnitude(params, mask, config.pruning, level, base_counts)
    return nm_level_mask(params, mask, config.pruning, level, *structure)


def warm_pruning(setup: Setup, seed: _Seed) -> None:
    """Compile the pruned levels' pruning program during level 0, on its shapes (run once, the mask
    discarded): its keep counts are traced, so level 1 and every later level reuse it, and the first
    pruned level costs what a steady one does (rewinding and the optimiser's init are level 0's programs).
    Nothing to do when the run's start-up work did it (`lth.lottery.ahead`: the same shapes)."""
    if setup.ahead is not None and setup.ahead.result("pruning"):
        return
    jax.block_until_ready(prune_level(setup, seed.params0, seed.mask0, 1, seed.base_counts))


def resume_point(resume: Resume | None) -> tuple[int, int | None]:
    """(level, iteration or None) where a replicate resumes: replicates trained together share it."""
    if resume is None:
        return 0, None
    return resume.level, None if resume.state is None else int(resume.state.step)


def lottery_levels_together(
    setups: list[Setup],
    masks: list[Mask | None] | None = None,
    *,
    hooks: list[Hooks] | None = None,
    resumes: list[Resume | None] | None = None,
    train_many: TrainMany = train_each,
) -> Iterator[list[LevelOutcome]]:
    """`lottery_levels` for replicates that advance in lockstep: yields, per level, one outcome per setup.

    The setups differ only in their seed; `train_many` trains all of them chunk by chunk
    (`train_each`: one replicate; `lth.training.stacked.train_stacked`: several as one vmapped
    program). The replicates must resume from the same point (level and iteration): group them by
    `resume_point` first.
    """
    n = len(setups)
    masks = masks if masks is not None else [None] * n
    hooks = hooks if hooks is not None else [Hooks() for _ in range(n)]
    resumes = resumes if resumes is not None else [None] * n
    if len({resume_point(r) for r in resumes}) > 1:
        raise ValueError("replicates trained together must resume from the same level and iteration")
    config, trainer, k = setups[0].config, setups[0].trainer, setups[0].rewind_step
    seeds = [_seed(setup, mask, resume) for setup, mask, resume in zip(setups, masks, resumes)]
    first_level = resume_point(resumes[0])[0]
    particles = config.particles  # SWAMP (`lth.lottery.swamp`): N particles per replicate, averaged
    if particles > 1:
        train_many = train_particles(particles, train_stacked if train_many is train_each else train_many)

    for level in range(first_level, config.levels + 1):
        started = time.perf_counter()
        states, level_masks, evaluations = map(list, zip(*(
            _level_start(setup, seed, level, resume) for setup, seed, resume in zip(setups, seeds, resumes))))
        if level == 0 and config.levels > 0:
            warm_pruning(setups[0], seeds[0])
        for r in range(n):
            hooks[r].level_start(level, states[r], level_masks[r])
            if level == 0 and k > 0 and int(states[r].step) == k:  # a start at the rewind step is the rewind point
                hooks[r].rewind_captured(states[r])
        breaks = (k,) if level == 0 and k > 0 else ()
        level_trainer = setups[0].retrain_trainer if retrained(setups[0], level) else trainer
        order_keys, augment_keys = zip(*(data_keys(setup, level) for setup in setups))
        val_mins = [val_minimum(e) for e in evaluations]  # a level resumed mid-way: its evaluations so far
        for states, evals in train_many(level_trainer, states, level_masks, setups[0].data, list(order_keys),
                                        list(augment_keys), breaks=breaks, val_mins=val_mins):
            for r, (seed, state) in enumerate(zip(seeds, states)):
                if level == 0 and k > 0 and int(state.step) == k:
                    seed.rewind_point = (state.params, state.model_state)
                    hooks[r].rewind_captured(state)
                evaluations[r].extend(evals[r])
                hooks[r].chunk_done(level, state, level_masks[r], evals[r], evaluations[r])
        jax.block_until_ready([state.params for state in states])
        seconds = time.perf_counter() - started
        outcomes = []
        for seed, state, mask, evals in zip(seeds, states, level_masks, evaluations):
            cost = fixed_mask_cost(setups[0], mask, level_first_iteration(setups[0], level), int(state.step))
            if particles > 1:  # the record is the averaged network's; the level trained N networks
                evals = [evaluate_average(level_trainer, state, mask, setups[0].data)]
                cost = scale_cost(cost, particles)
            previous = seed.previous.params if seed.previous is not None else None
            record = level_record(level, mask, evals, previous_mask=seed.previous_mask, params_init=seed.params0,
                                  params_final=state.params, params_previous=previous,
                                  compact=record_compact(setups[0], mask), cost=cost)
            if particles > 1:
                record["particles"] = particles
            seed.previous, seed.previous_mask = state, mask
            outcomes.append(LevelOutcome(record, mask, state, evals, seconds))
        yield outcomes
