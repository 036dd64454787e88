"""Controls: branches off a finished lottery run's levels, each trained like a level (the pure
mask and start choices; `lth.jobs.controls` records them beside the main line in
``replicate_XX/controls/<name>/``).

A control is written ``SOURCE[+TRANSFORM...]``:

sources (where the mask of level L comes from)
    imp               the main line's mask of level L (only with a transform)
    oneshot           magnitude pruning of the trained *dense* network straight to level L's counts
    oneshot_early     the same of the dense network at iteration `pruning.oneshot_early_at` of level 0
                      (trained again from the seed; Minegishi et al. 2023's memorisation-phase masks)
    random_layerwise  a uniformly random mask with level L's per-layer counts
    random_global     a uniformly random mask with level L's overall count, spread across layers
    random_modulewise a uniformly random mask with level L's count per module, a module's leaves
                      pooled (kernel and bias: the MNIST-1D notebook's random pruning)
    magnitude_init, snip, grasp, synflow
                      pruning at initialisation to level L's counts, trained from init: a layer the
                      main line prunes at its own rate (e.g. the output layer under
                      `pruning.layer_fractions`) or keeps whole holds exactly the main line's count;
                      the scores choose the per-layer densities of the other layers only (one global
                      threshold over their pool; `control_groups`). SNIP under one layer distribution
                      (every layer at the distribution's count) is the method `snip` instead.
    static_erk, static_uniform
                      a random mask at level L's overall density, spread over the layers by ERK /
                      uniformly (`lth.sparsity.distributions`, `pruning.exclude` kept whole), fixed
                      during training
    set, rigl         a random mask with level L's per-layer counts, updated by SET / RigL during
                      training (every layer keeps its count)
    gradual           dense at the start, pruned during training on Zhu & Gupta's schedule down to
                      level L's per-layer counts
transforms (Frankle et al. 2021's sanity checks; Frankle & Carbin 2019's random reinitialisation)
    reinit            the mask kept, fresh initial weights (a new key)
    shuffle           each layer's mask permuted within the layer (per-layer density kept)
    invert            the scores' order reversed: keep the weights the source would prune
    signflip          the start weights of level L (rewound, or level L-1's trained weights with
                      lr_rewind / finetune) with each kept weight's sign flipped with probability
                      0.3, once, before training (`perturb_start`; Gadhikar & Burkholz 2024)

At a structured granularity (`pruning.granularity` neuron / channel / unit / refill,
`lth.sparsity.structured`) the controls work on whole units, with the ticket's unit counts per
space: ``random_layerwise`` keeps random units, ``+shuffle`` permutes the alive units within each
space, ``oneshot`` ranks the trained dense network's units by their norm (refill: applies the refill
rule to it at level L), ``+invert`` negates the unit norms (refill: refused), ``+reinit`` is
unchanged. The other sources choose single weights and are refused before anything trains
(`lth.spec.controls.check_granularity`).

Counts follow the main line exactly (`control_groups`): a layer the main line keeps whole
(`pruning.exclude`) or prunes at its own rate (`pruning.layer_fractions`) keeps exactly the main
line's count of it; the other layers are one pool whose total is the main line's, among which a
global source (random_global, pruning at init) chooses the per-layer densities. (static_erk /
static_uniform spread the level's overall density by their own rule instead: that is their point.)

A control of level L trains as level L does: from the rewind point with weight rewinding, or,
with ``retraining`` lr_rewind / finetune, from the trained weights the main line's level L starts
from (level L-1's; the dense network's for oneshot) with its schedule and its data order (level
L's, with ``data_order="per_level"``). So a control differs from the ticket only by its mask or its
initial weights. Pruning at init trains from iteration 0, like level 0, and `reinit` draws fresh
weights: both have no meaning with lr_rewind / finetune, which keep trained weights, and are refused.
The sparse-training sources (static_*, set, rigl, gradual; settings from the run's `sparse` config)
train a sparse network from the rewind point with its own mask schedule, take no transforms, and
are refused with lr_rewind / finetune too.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import jax

from lth import rng
from lth.spec.config import replace
from lth.spec.parse import duration_to_steps
from lth.spec.methods import REGISTRY, SPARSE_TRAINING, method_of_control
from lth.spec.controls import (
    SOURCE_REGISTRY, SOURCES, TRANSFORMS, Control, check_control, check_retraining, parse_control, parse_controls
)
from lth.errors import ConfigError
from lth.lottery.levels import Hooks, LevelOutcome, level_record
from lth.lottery.method_config import check_schedule
from lth.lottery.methods import method_trainer, sparse_record, start_state
from lth.lottery.train_level import train_level
from lth.lottery.compact_record import record_compact
from lth.lottery.cost import fixed_mask_cost
from lth.lottery.setup import Setup, retrained, score_batch
from lth.sparsity.at_init import prune_at_init, shuffle_mask
from lth.sparsity.distributions import keep_counts, random_mask
from lth.sparsity.masks import Mask, apply_mask, kept_counts
from lth.sparsity.pruning import Group, layer_fraction, magnitude_scores, module_of, plan_groups, prune_by_scores
from lth.sparsity.scores import random_scores
from lth.sparsity.signs import perturb_signs
from lth.sparsity.structured import (
    is_structured, prune_units, random_units, refill_units, shuffle_units, structured_spaces, unit_counts
)
from lth.training import Trainer, TrainState

# --------------------------------------------------------------------------- masks


counts_of = kept_counts  # {layer: weights kept}, the name the control rules use


def _layer_groups(counts: dict[str, int]) -> list[Group]:
    return [Group((name,), keep) for name, keep in counts.items()]


def control_groups(spec: Any, target: dict[str, int], per_module: bool = False) -> list[Group]:
    """The threshold groups of a global control with the main line's per-layer counts `target`:
    a layer the main line prunes at a rate of its own (an override, or 0 for `exclude`) keeps
    exactly its count; the layers at the default rate are one pool keeping their total (with
    `per_module`, one pool per module: ``fc1/kernel`` with ``fc1/bias``)."""
    pools: dict[str, list[str]] = {}
    for name in target:
        if layer_fraction(name, spec) == spec.fraction:
            pools.setdefault(module_of(name) if per_module else "", []).append(name)
    pooled = {name for names in pools.values() for name in names}
    own = [Group((name,), target[name]) for name in target if name not in pooled]
    return own + [Group(tuple(names), sum(target[name] for name in names)) for names in pools.values()]


@dataclass
class LevelInputs:
    """What a control of level L may need from the main line (loaded lazily by the caller)."""

    level: int
    mask: Mask  # the main line's mask of level L
    full_mask: Mask  # the level-0 mask
    dense_final: Any | None = None  # params at the end of level 0 (oneshot), or part-way (oneshot_early)
    previous_final: Any | None = None  # params at the end of level L - 1 (imp+invert)
    previous_mask: Mask | None = None
    start: tuple[Any, Any] | None = None  # (params, model state) to retrain from, for lr_rewind / finetune


def control_mask(setup: Setup, control: Control, inputs: LevelInputs, params0: Any, model_state0: Any) -> Mask:
    """The mask of `control` at `inputs.level`, before the shuffle transform: the mask rule of its
    source's kind (`MASK_RULES`)."""
    key = rng.stream(setup.config.seed, f"control:{control.source}", inputs.level)
    return MASK_RULES[control.kind](setup, control, inputs, key, (params0, model_state0))


def _main_mask(setup: Setup, control: Control, inputs: LevelInputs, key: jax.Array, init: tuple) -> Mask:
    """The main line's mask; inverted: its pruning step with the order reversed (the smallest trained
    weights survive; nothing is pruned at level 0, so nothing changes there)."""
    if "invert" not in control.transforms or inputs.level == 0:
        return inputs.mask
    if is_structured(setup.config.pruning):
        return prune_units(inputs.previous_final, inputs.previous_mask, _spaces(setup, inputs.previous_final),
                           setup.config.pruning, inputs.level, sign=-1.0)
    scores = {k: -v for k, v in magnitude_scores(inputs.previous_final, inputs.previous_mask).items()}
    groups = plan_groups(counts_of(inputs.full_mask), setup.config.pruning, inputs.level)
    return prune_by_scores(scores, inputs.previous_mask, groups)


def _oneshot_mask(setup: Setup, control: Control, inputs: LevelInputs, key: jax.Array, init: tuple) -> Mask:
    sign = -1.0 if "invert" in control.transforms else 1.0
    spec = setup.config.pruning
    if is_structured(spec):
        spaces = _spaces(setup, inputs.dense_final)
        if spec.granularity == "refill":
            return refill_units(inputs.dense_final, inputs.full_mask, spaces, spec, inputs.level,
                                counts_of(inputs.full_mask))
        return prune_units(inputs.dense_final, inputs.full_mask, spaces, spec, inputs.level, sign=sign)
    scores = {k: sign * v for k, v in magnitude_scores(inputs.dense_final, inputs.full_mask).items()}
    groups = plan_groups(counts_of(inputs.full_mask), setup.config.pruning, inputs.level)
    return prune_by_scores(scores, inputs.full_mask, groups)


def _spaces(setup: Setup, params: Any) -> list:
    """The prunable unit spaces of the run's model (`lth.sparsity.structured.structured_spaces`)."""
    return structured_spaces(setup.config.model, params, setup.config.pruning)


def _random_layerwise_mask(setup: Setup, control: Control, inputs: LevelInputs, key: jax.Array, init: tuple) -> Mask:
    if is_structured(setup.config.pruning):  # random units, the ticket's unit count per space
        spaces = _spaces(setup, init[0])
        return random_units(inputs.full_mask, spaces, unit_counts(inputs.mask, spaces), key)
    groups = _layer_groups(counts_of(inputs.mask))
    return prune_by_scores(random_scores(inputs.full_mask, key), inputs.full_mask, groups)


def _random_pooled_mask(setup: Setup, control: Control, inputs: LevelInputs, key: jax.Array, init: tuple) -> Mask:
    """random_global (one pool) or random_modulewise (a pool per module): uniformly random weights
    among the level-0 mask's, each pool keeping the main line's total count of it. Drawn afresh at
    every level (key ``stream(seed, "control:<source>", L)``), not nested in level L-1's mask."""
    per_module = control.kind == "random_modulewise"
    groups = control_groups(setup.config.pruning, counts_of(inputs.mask), per_module=per_module)
    return prune_by_scores(random_scores(inputs.full_mask, key), inputs.full_mask, groups)


def _at_init_mask(setup: Setup, control: Control, inputs: LevelInputs, key: jax.Array, init: tuple) -> Mask:
    """Pruning at initialisation by the source's scorer, to the level's counts (the pool's densities
    chosen by the scores)."""
    target = counts_of(inputs.mask)
    if sum(target.values()) >= sum(counts_of(inputs.full_mask).values()):
        return inputs.full_mask
    x, y = score_batch(setup)
    return prune_at_init(SOURCE_REGISTRY[control.source].scorer, setup.model, *init, inputs.full_mask, (x, y),
                         setup.dataset.input_shape, None, key=key, invert="invert" in control.transforms,
                         groups=control_groups(setup.config.pruning, target),
                         temperature=setup.config.pruning.grasp_temperature)


def sparse_control_mask(setup: Setup, control: Control, inputs: LevelInputs, key: jax.Array, init: tuple = ()) -> Mask:
    """The start mask of a sparse-training control of level L (see the module docstring)."""
    target = counts_of(inputs.mask)
    if control.source == "gradual":
        return inputs.full_mask
    if control.source.startswith("static_"):
        density = sum(target.values()) / sum(counts_of(inputs.full_mask).values())
        target = keep_counts(inputs.full_mask, density, control.source.removeprefix("static_"),
                             setup.config.pruning.exclude)
    return random_mask(inputs.full_mask, target, key)


# The mask rule of each kind of control source (`lth.spec.controls.KINDS`): oneshot_early is oneshot's
# rule on level 0's weights at iteration `pruning.oneshot_early_at` (`LevelInputs.dense_final`)
MASK_RULES = {"main": _main_mask, "oneshot": _oneshot_mask, "oneshot_early": _oneshot_mask,
              "random_layerwise": _random_layerwise_mask, "random_global": _random_pooled_mask,
              "random_modulewise": _random_pooled_mask, "at_init": _at_init_mask,
              "sparse_training": sparse_control_mask}


def oneshot_early_step(setup: Setup) -> int:
    """The iteration of level 0 whose dense weights the oneshot_early control prunes."""
    return duration_to_steps(setup.config.pruning.oneshot_early_at, setup.trainer.steps_per_epoch)


def check_controls(setup: Setup, controls: Iterable[Control]) -> None:
    """One-line ConfigErrors for sparse-training controls whose schedule does not fit the run's training,
    and for an oneshot_early iteration past level 0's end."""
    for control in controls:
        if control.kind == "oneshot_early" and oneshot_early_step(setup) > setup.total_steps:
            raise ConfigError(f"control {control.name} prunes level 0 at iteration {oneshot_early_step(setup)}, "
                              f"after its last ({setup.total_steps}): choose a smaller pruning.oneshot_early_at")
        if control.kind == "sparse_training" and REGISTRY[method_of_control(control.source)].dynamic:
            check_schedule(replace(setup.config, method=method_of_control(control.source)), setup.total_steps)


# --------------------------------------------------------------------------- training a control level


def control_start(setup: Setup, control: Control, level: int, mask: Mask, params0: Any, model_state0: Any,
                  rewind_point: tuple[Any, Any], inputs: LevelInputs | None = None) -> TrainState:
    """The initial state of a control level, as the main line's level starts (see the module
    docstring): masked, fresh optimiser, schedule at the start step. Sparse-training controls carry
    their mask in the state (gradual pruning ends at the level's counts, those of `inputs.mask`)."""
    check_control(control, setup.config)
    at_init = control.kind == "at_init"
    params, model_state = (params0, model_state0) if at_init else rewind_point
    if "reinit" in control.transforms:
        params, model_state = setup.model.init(rng.stream(setup.config.seed, "reinit", level))
    elif not at_init and setup.config.retraining != "rewind" and level > 0:
        if inputs is None or inputs.start is None:
            raise ConfigError(f"control {control.name} of level {level} retrains from trained weights: "
                              "give LevelInputs.start")
        params, model_state = inputs.start
    step = 0 if at_init else setup.rewind_step
    if "signflip" in control.transforms:
        params = perturb_start(setup, level, params, mask)
    if control.kind == "sparse_training":
        final_counts = counts_of(inputs.mask) if inputs is not None else None
        return start_state(setup, _method(control), params, model_state, mask, step, final_counts)
    return setup.trainer.init_state(apply_mask(params, mask), model_state, step)


def perturb_start(setup: Setup, level: int, params: Any, mask: Mask) -> Any:
    """The `signflip` transform: level L's start weights under `mask`, each kept weight's sign flipped
    with probability `SIGN_FLIP_FRACTION` (key ``stream(seed, "signflip", L)``), once, after rewinding
    and before the first step. Gadhikar & Burkholz's code (AdvaitGadhikar/imp-lrr-lts, main.py
    `perturb_signs`) draws the same Bernoulli(0.3) flips of the masked layers' kept weights, but inside
    training, every `perturb_sign_every` (30) epochs of each prune-train cycle."""
    return perturb_signs(apply_mask(params, mask), mask, rng.stream(setup.config.seed, "signflip", level))


def control_trainer(setup: Setup, control: Control, level: int) -> Trainer:
    """The trainer of a control level: level L's (the fine-tuning one after level 0, with finetune)."""
    return setup.retrain_trainer if retrained(setup, level) and control.kind != "at_init" else setup.trainer


def _method(control: Control) -> str:
    return method_of_control(control.source)


def finalize_mask(setup: Setup, control: Control, level: int, mask: Mask) -> Mask:
    """The control's mask after its transforms that act on masks (`shuffle`: of units at a
    structured granularity, `lth.sparsity.structured.shuffle_units`)."""
    key = rng.stream(setup.config.seed, "shuffle", level)
    if "shuffle" in control.transforms and is_structured(setup.config.pruning):
        return shuffle_units(mask, _spaces(setup, mask), key)
    if "shuffle" in control.transforms:
        mask = shuffle_mask(mask, key)
    return mask


def train_control_level(setup: Setup, control: Control, level: int, state: TrainState, mask: Mask,
                        hooks: Hooks | None = None) -> LevelOutcome:
    """Train one control level to the end, from `state` (`control_start`) under `mask`, with the
    level's data order (`lth.lottery.train_level`); `hooks` see it start and every chunk, as for a
    level of the main line."""
    started = time.perf_counter()
    sparse = control.kind == "sparse_training"
    trainer = method_trainer(setup, _method(control)) if sparse else control_trainer(setup, control, level)
    start = state
    state, final, evaluations = train_level(setup, trainer, level, start, mask, hooks or Hooks())
    if sparse:
        record = sparse_record(setup, _method(control), level, mask, final, start, evaluations, None, state)
    else:
        cost = fixed_mask_cost(setup, mask, int(start.step), int(state.step))
        record = level_record(level, mask, evaluations, compact=record_compact(setup, mask), cost=cost)
    return LevelOutcome({**record, "control": control.name}, final, state, evaluations, time.perf_counter() - started)


__all__: Sequence[str] = ("Control", "parse_control", "parse_controls", "check_controls", "check_retraining",
                          "oneshot_early_step", "control_groups", "control_mask", "control_start", "control_trainer",
                          "train_control_level", "perturb_start", "LevelInputs", "SOURCES", "SPARSE_TRAINING",
                          "TRANSFORMS")
