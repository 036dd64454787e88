"""Controls: branches off a finished lottery run's levels, each trained like a level (the pure
mask and start choices; `lth.runs.controls` records them beside the main line in
``replicate_XX/controls/<name>/``).

A control is written ``SOURCE[+TRANSFORM...]``:

sources (where the mask of level L comes from)
    imp               the main line's mask of level L (only with a transform)
    oneshot           magnitude pruning of the trained *dense* network straight to level L's counts
    random_layerwise  a uniformly random mask with level L's per-layer counts
    random_global     a uniformly random mask with level L's overall count, spread across layers
    magnitude_init, snip, grasp, synflow
                      pruning at initialisation to level L's density (global), trained from init
transforms (Frankle et al. 2021's sanity checks; Frankle & Carbin 2019's random reinitialisation)
    reinit            the mask kept, fresh initial weights (a new key)
    shuffle           each layer's mask permuted within the layer (per-layer density kept)
    invert            the scores' order reversed: keep the weights the source would prune

Everything trains from the main line's rewind point (or iteration 0 for pruning at init) with the
same data order, schedule and length as the levels, so a control differs only by its mask or its
initial weights.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import jax

from lth import rng
from lth.errors import ConfigError
from lth.lottery.levels import Hooks, LevelOutcome, level_record
from lth.lottery.setup import Setup
from lth.sparsity.at_init import prune_at_init, shuffle_mask
from lth.sparsity.masks import Mask, apply_mask, layer_counts
from lth.sparsity.pruning import Group, magnitude_scores, plan_groups, prune_by_scores
from lth.sparsity.scores import random_scores
from lth.training import TrainState, train

SOURCES = ("imp", "oneshot", "random_layerwise", "random_global", "magnitude_init", "snip", "grasp", "synflow")
AT_INIT = ("magnitude_init", "snip", "grasp", "synflow")
TRANSFORMS = ("reinit", "shuffle", "invert")


@dataclass(frozen=True)
class Control:
    source: str
    transforms: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return "+".join((self.source, *self.transforms))


def parse_control(text: str) -> Control:
    """'imp+reinit' -> Control('imp', ('reinit',)); ConfigError for unknown or meaningless ones."""
    source, *transforms = [p.strip() for p in text.strip().split("+")]
    if source not in SOURCES:
        raise ConfigError(f"unknown control source {source!r}: choose one of {', '.join(SOURCES)}")
    for t in transforms:
        if t not in TRANSFORMS:
            raise ConfigError(f"unknown control transform {t!r} in {text!r}: choose from {', '.join(TRANSFORMS)}")
    if len(set(transforms)) != len(transforms):
        raise ConfigError(f"control {text!r} repeats a transform")
    if source == "imp" and not transforms:
        raise ConfigError("'imp' alone is the main line: add a transform, e.g. imp+reinit or imp+shuffle")
    if source.startswith("random") and "invert" in transforms:
        raise ConfigError(f"{text!r}: inverting random scores is another random mask; drop '+invert'")
    return Control(source, tuple(transforms))


# --------------------------------------------------------------------------- masks


def counts_of(mask: Mask) -> dict[str, int]:
    return {name: kept for name, (kept, _) in layer_counts(mask).items()}


def _layer_groups(counts: dict[str, int]) -> list[Group]:
    return [Group((name,), keep) for name, keep in counts.items()]


def _global_group(counts: dict[str, int]) -> list[Group]:
    return [Group(tuple(counts), sum(counts.values()))]


@dataclass
class LevelInputs:
    """What a control of level L may need from the main line (loaded lazily by the caller)."""

    level: int
    mask: Mask  # the main line's mask of level L
    full_mask: Mask  # the level-0 mask
    dense_final: Any | None = None  # params at the end of level 0 (oneshot)
    previous_final: Any | None = None  # params at the end of level L - 1 (imp+invert)
    previous_mask: Mask | None = None


def control_mask(setup: Setup, control: Control, inputs: LevelInputs, params0: Any, model_state0: Any) -> Mask:
    """The mask of `control` at `inputs.level`, before the shuffle transform."""
    config = setup.config
    key = rng.stream(config.seed, f"control:{control.source}", inputs.level)
    target = counts_of(inputs.mask)
    invert = "invert" in control.transforms
    sign = -1.0 if invert else 1.0
    if control.source == "imp":
        if not invert:
            return inputs.mask
        if inputs.level == 0:
            return inputs.mask  # nothing pruned at level 0: inverting changes nothing
        # the main line's pruning step with the order reversed: the smallest trained weights survive
        scores = {k: sign * v for k, v in magnitude_scores(inputs.previous_final, inputs.previous_mask).items()}
        groups = plan_groups(counts_of(inputs.full_mask), config.pruning, inputs.level)
        return prune_by_scores(scores, inputs.previous_mask, groups)
    if control.source == "oneshot":
        scores = {k: sign * v for k, v in magnitude_scores(inputs.dense_final, inputs.full_mask).items()}
        return prune_by_scores(scores, inputs.full_mask, plan_groups(counts_of(inputs.full_mask), config.pruning,
                                                                     inputs.level))
    if control.source == "random_layerwise":
        return prune_by_scores(random_scores(inputs.full_mask, key), inputs.full_mask, _layer_groups(target))
    if control.source == "random_global":
        return prune_by_scores(random_scores(inputs.full_mask, key), inputs.full_mask, _global_group(target))
    # pruning at initialisation, to the level's overall density, one threshold for all layers
    density = sum(target.values()) / sum(counts_of(inputs.full_mask).values())
    if density >= 1.0:
        return inputs.full_mask
    method = "magnitude" if control.source == "magnitude_init" else control.source
    x, y = score_batch(setup)
    return prune_at_init(method, setup.model, params0, model_state0, inputs.full_mask, (x, y),
                         setup.dataset.input_shape, density, strategy="global", key=key, invert=invert)


def score_batch(setup: Setup, size: int = 256) -> tuple[jax.Array, jax.Array]:
    """The training examples SNIP / GraSP score on: a fixed random subset of `size` (seeded)."""
    n = int(setup.data.x_train.shape[0])
    idx = jax.random.permutation(rng.stream(setup.config.seed, "score_batch"), n)[: min(size, n)]
    return setup.data.x_train[idx], setup.data.y_train[idx]


# --------------------------------------------------------------------------- training a control level


def control_start(setup: Setup, control: Control, level: int, mask: Mask, params0: Any, model_state0: Any,
                  rewind_point: tuple[Any, Any]) -> TrainState:
    """The initial state of a control level: rewind point (or init for pruning at init), or fresh
    weights for `reinit`; masked; fresh optimiser; schedule at the start step."""
    at_init = control.source in AT_INIT
    step = 0 if at_init else setup.rewind_step
    params, model_state = (params0, model_state0) if at_init else rewind_point
    if "reinit" in control.transforms:
        params, model_state = setup.model.init(rng.stream(setup.config.seed, "reinit", level))
    return setup.trainer.init_state(apply_mask(params, mask), model_state, step)


def finalize_mask(setup: Setup, control: Control, level: int, mask: Mask) -> Mask:
    """The control's mask after its transforms that act on masks (`shuffle`)."""
    if "shuffle" in control.transforms:
        mask = shuffle_mask(mask, rng.stream(setup.config.seed, "shuffle", level))
    return mask


def train_control_level(setup: Setup, control: Control, level: int, state: TrainState, mask: Mask,
                        hooks: Hooks | None = None) -> LevelOutcome:
    """Train one control level to the end, from `state` (`control_start`) under `mask`, with the
    level's data order; `hooks` see it start and every chunk, as for a level of the main line."""
    hooks = hooks or Hooks()
    started = time.perf_counter()
    evaluations: list[dict[str, float]] = []
    order_key = rng.stream(setup.config.seed, "data_order")
    augment_key = rng.stream(setup.config.seed, "augmentation")
    hooks.level_start(level, state, mask)
    for state, evals in train(setup.trainer, state, mask, setup.data, order_key, augment_key):
        evaluations.extend(evals)
        hooks.chunk_done(level, state, mask, evals, evaluations)
    jax.block_until_ready(state.params)
    record = {**level_record(level, mask, evaluations), "control": control.name}
    return LevelOutcome(record, mask, state, evaluations, time.perf_counter() - started)


def parse_controls(texts: Iterable[str] | str) -> list[Control]:
    """'reinit,random_layerwise' or a list -> Controls ('reinit' alone means imp+reinit, etc.)."""
    if isinstance(texts, str):
        texts = [t for t in texts.split(",") if t.strip()]
    shorthand = {"reinit": "imp+reinit", "shuffle": "imp+shuffle", "invert": "imp+invert"}
    controls = [parse_control(shorthand.get(t.strip(), t)) for t in texts]
    if not controls:
        raise ConfigError("no control given: e.g. reinit, random_layerwise, oneshot, snip+shuffle")
    return controls


__all__: Sequence[str] = ("Control", "parse_control", "parse_controls", "control_mask", "control_start",
                          "train_control_level", "LevelInputs", "SOURCES", "TRANSFORMS")
