"""The level body shared by every single-replicate branch (a control's level, a sparse-training
method's density): hooks see the level start, training runs chunk by chunk with the level's data
order, hooks see every chunk, and the final state, mask and evaluations come back. (The main line
runs the same steps for replicates in lockstep: `lth.lottery.levels.lottery_levels_together`.)"""

from __future__ import annotations

import jax

from lth.lottery.levels import Hooks
from lth.lottery.setup import Setup, data_keys
from lth.sparsity.masks import Mask
from lth.training import Trainer, TrainState, train
from lth.training.mask_updates import current_mask


def train_level(setup: Setup, trainer: Trainer, level: int, state: TrainState, mask: Mask,
                hooks: Hooks, order_level: int | None = None) -> tuple[TrainState, Mask, list[dict[str, float]]]:
    """Train from `state` to the end under `mask` (or the state's changing mask), with the data order of
    level `order_level` (default `level`; `data_keys`: counted from a ticket's level when the run starts
    from one); `hooks` see the start and every chunk as `level`'s (a control's level, a method's density
    index). Returns the final state and mask, and the evaluations."""
    evaluations: list[dict[str, float]] = []
    order_key, augment_key = data_keys(setup, level if order_level is None else order_level)
    hooks.level_start(level, state, mask)
    for state, evals in train(trainer, state, mask, setup.data, order_key, augment_key):
        evaluations.extend(evals)
        hooks.chunk_done(level, state, current_mask(state, mask), evals, evaluations)
    jax.block_until_ready(state.params)
    return state, current_mask(state, mask), evaluations
