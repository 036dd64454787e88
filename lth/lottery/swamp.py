"""SWAMP: sparse weight averaging with multiple particles (Choi, Lee, Nam & Lee, ICLR 2024).

The rule, as lth applies it (`ExperimentConfig.particles` = N > 1, method imp):

1. Every level starts N *particles* from the same weights (the rewound survivors, as IMP; level 0
   from the init) under the same mask; particle p trains with its own data order and augmentation,
   ``fold_in(level key, p)`` (particle 0 keeps the level's own keys, so it is IMP's network). The
   N particles (times the replicates trained together) are ONE vmapped program
   (`lth.training.stacked.train_stacked`): one compiled chunk serves every level.
2. At the end of the level their weights are averaged, ``mean_p params_p`` (`average_states`; the
   mask is shared, so pruned weights stay exactly zero).
3. The averaged network is evaluated on the validation and test sets (`evaluate_average`): the
   level's record (final, early-stop and best accuracies) is the averaged network's, at the final
   iteration only (its `early_stop_iteration` is the last one).
4. The next mask is pruned from the averaged weights (the magnitudes of the average), and the
   survivors are rewound as IMP rewinds (`retraining`).

A level trains N networks: its `iterations` and `train_flops` are N times one particle's
(`scale_cost`), and its record carries ``particles``.

Deviations from the paper (neither the authors' code nor the paper's full text could be fetched
here: the rule follows the paper's abstract -- N particles, same matching ticket, different batch
orders, weight-averaged into one network that gives the mask -- and its SWA-based method as
summarised):

- No SWA within a particle: the paper averages each particle's iterates over the last part of
  training (stochastic weight averaging) before averaging the particles; lth averages the particles'
  final weights only.
- BatchNorm statistics are averaged with the weights, not recomputed on training data for the
  averaged network (the paper's SWA recomputes them); LeNet and the MLPs have none.
- The per-chunk evaluations (metrics.jsonl, W&B, the progress line) are particle 0's training
  curve; only the record is the average's.
- A level interrupted mid-way resumes every particle from the averaged checkpoint: not
  bit-identical to an uninterrupted run (a finished level resumes exactly).
- With a rewind step k > 0, the rewind point is the particles' average at iteration k of level 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import jax
import jax.numpy as jnp

from lth.data.device import DeviceData
from lth.errors import ConfigError
from lth.sparsity.masks import Mask, apply_mask
from lth.training import Trainer, TrainState
from lth.training.stacked import stack, train_stacked


@jax.jit
def _mean(stacked: Any) -> Any:
    return jax.tree.map(lambda a: jnp.mean(a, axis=0).astype(a.dtype)
                        if jnp.issubdtype(a.dtype, jnp.floating) else a[0], stacked)


def average(trees: list[Any]) -> Any:
    """The elementwise mean of equal-structure pytrees (integer leaves: the first tree's)."""
    return _mean(stack(trees))


def average_states(states: list[TrainState]) -> TrainState:
    """The particles' average: mean params and model state; particle 0's optimiser state and step
    (a next level starts a fresh optimiser state anyway)."""
    params, model_state = average([(s.params, s.model_state) for s in states])
    return states[0]._replace(params=params, model_state=model_state)


def particle_keys(key: jax.Array, particles: int) -> list[jax.Array]:
    """The data keys of `particles` particles: the level's own key for particle 0, ``fold_in(key, p)`` after."""
    return [key] + [jax.random.fold_in(key, p) for p in range(1, particles)]


def train_particles(particles: int, train_many: Any = train_stacked) -> Any:
    """A `train_many` (see `lth.lottery.levels.lottery_levels_together`) that trains `particles`
    particles per replicate as one stacked program and yields, after every chunk, each replicate's
    particle average and particle 0's evaluations. `train_many` must train several networks at once
    (`lth.training.stacked.train_stacked`, bound to a mesh or not)."""

    def train(trainer: Trainer, states: list[TrainState], masks: list[Mask], data: DeviceData,
              order_keys: list[jax.Array], augment_keys: list[jax.Array], *, breaks: Iterable[int] = (),
              val_mins: list[float] | None = None) -> Iterator[tuple[list[TrainState], list[list[dict[str, float]]]]]:
        if trainer.train_chunk.sharded:
            raise ConfigError(f"particles={particles} trains the particles as one vmapped program: it does not "
                              "combine with --data-parallel; drop one of them")

        def spread(items: list[Any]) -> list[Any]:
            return [item for item in items for _ in range(particles)]

        keys = [[k for key in ks for k in particle_keys(key, particles)] for ks in (order_keys, augment_keys)]
        for all_states, all_evals in train_many(trainer, spread(states), spread(masks), data, *keys, breaks=breaks,
                                                val_mins=spread(val_mins) if val_mins else None):
            groups = [all_states[r * particles:(r + 1) * particles] for r in range(len(states))]
            yield [average_states(g) for g in groups], all_evals[::particles]

    return train


def evaluate_average(trainer: Trainer, state: TrainState, mask: Mask, data: DeviceData) -> dict[str, float]:
    """The averaged network's evaluation row at its final iteration (validation and test loss and accuracy)."""
    params = apply_mask(state.params, mask)
    (vl, va), (tl, ta) = (trainer.evaluate(params, state.model_state, split) for split in (data.val, data.test))
    return {"iteration": int(state.step), "train_loss": float("nan"), "val_loss": float(vl),
            "val_accuracy": float(va), "test_loss": float(tl), "test_accuracy": float(ta)}


def scale_cost(cost: dict[str, int], particles: int) -> dict[str, int]:
    """A level's training cost for `particles` networks: its iterations and FLOPs times the count."""
    return {name: value * particles if name in ("iterations", "train_flops") else value
            for name, value in cost.items()}
