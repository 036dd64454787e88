"""The `earlybird` method: Early-Bird tickets (You et al., "Drawing Early-Bird Tickets", ICLR 2020),
one record per target density of `config.sparse.densities`.

What the reference does (GATECH-EIC/Early-Bird-Tickets): ``main.py`` trains the dense network and,
before every epoch (epoch 0 included: the init), draws a mask for each pruning ratio and keeps the
last five; when the newest is within 0.1 (the fraction of entries that differ) of each of the four
before it, the weights are saved as the Early-Bird (EB) ticket (`lth.sparsity.earlybird`). The
pruned network is then retrained: ``main_scratch.py`` (``retrain_scratch.sh``, the paper's "EB
Train (re-init)") trains it from a new initialisation for the full 160 epochs; ``main_c.py``
(``retrain_continue.sh``, "finetune EB tickets from emergence epoch") runs epochs EB..160 with the
schedule continuing, and, as written, also starts from a new initialisation (it builds the pruned
model and never loads the EB weights into it). Both give the retraining a fresh SGD state.

Here, per density: (a) the search: dense training from the run's init with the data order of
density 0 (`data_keys(setup, 0)`), a check at iteration 0 and every `sparse.eb_every`, each one
the magnitude mask at the density's per-layer counts (`target_counts`: `sparse.distribution`,
`sparse.dense`) and its distances to the queued masks, until `sparse.eb_window` masks are within
`sparse.eb_epsilon` (`should_stop`); if the rule never holds, the mask at the end of training
(`earlybird_found` false). (b) The ticket: the EB mask on the run's init (the lottery's rewind to
iteration 0), trained with a fresh optimiser for the full training length with level 0's data order (the
search's, `data_keys(setup, 0)`), as every method's density is.

Deviations from the reference, each deliberate:
- the mask is unstructured magnitude pruning with the run's layer distribution, not the global
  BatchNorm-channel mask of network slimming, and the search has no L1 penalty on the BN scales
  (the reference's ``--sparsity-regularization``, which only serves the channel mask);
- the ticket starts from the run's own init (a lottery ticket), not a new random one, and trains
  for the full length; ``main_c.py``'s shorter retraining (from the EB epoch, schedule continuing)
  is not offered: the search's cost is its `earlybird_iteration` dense iterations on top;
- the reference's EB file is named after epoch + 1 while it holds the weights after `epoch`
  epochs; here `earlybird_iteration` is exactly the dense iterations trained when the mask is drawn.

One search serves every density still to train: the dense trajectory does not depend on the
checks, so each density's EB point is the one a search of it alone would find, and the search
stops when every density's rule has held. A resumed run skips the finished densities; a density
interrupted mid-search or mid-ticket starts again from its search (no checkpoints inside).
Progress: the search shows as the first pending density's bar at 100 % (its chunks advance it,
their evaluations are not logged), then each ticket has its own bar and record.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lth.lottery.levels import Hooks, LevelOutcome
from lth.lottery.methods import sparse_record, start_state, target_counts
from lth.lottery.setup import Setup, data_keys, init_params, initial_mask
from lth.lottery.train_level import train_level
from lth.spec.parse import duration_to_steps
from lth.sparsity import earlybird as eb
from lth.sparsity.masks import Mask, mask_leaves, named_leaves, path_name
from lth.training import TrainState, train


class EarlyBird(NamedTuple):
    """The outcome of one density's search."""

    mask: Mask
    iteration: int  # dense iterations trained when the mask was drawn
    found: bool  # the window rule held (else: the mask at the end of training)
    distances: list[list[float]]  # [iteration, distance to the previous check's mask] per check after the first
    window: list[list[float]]  # [iteration, largest distance in the window] per check with a full window


def check_iterations(setup: Setup) -> list[int]:
    """The search's check iterations: 0, every `sparse.eb_every`, and the end of training."""
    every = duration_to_steps(setup.config.sparse.eb_every, setup.trainer.steps_per_epoch)
    return sorted({*range(0, setup.total_steps, every), setup.total_steps})


class _Density:
    """One density's queue and history during the search."""

    def __init__(self, keeps: jax.Array, size: int, window: int):
        self.keeps, self.state = keeps, eb.init_state(size, window)
        self.distances: list[list[float]] = []
        self.window: list[list[float]] = []


def search(setup: Setup, densities: dict[int, float], hooks: Hooks) -> dict[int, EarlyBird]:
    """The EB mask of every {level: density} (see the module docstring): one dense search, the first
    level's bar showing it."""
    config, trainer = setup.config, setup.trainer
    window, epsilon = config.sparse.eb_window, config.sparse.eb_epsilon
    params0, model_state0 = init_params(setup)
    full = initial_mask(setup, params0)
    alive = mask_leaves(full)
    names = list(alive)
    size = sum(int(a.size) for a in alive.values())
    pending = {}
    for level, density in densities.items():
        counts = target_counts(setup, full, density)
        pending[level] = _Density(jnp.asarray([counts[n] for n in names], jnp.int32), size, window)
    found: dict[int, EarlyBird] = {}
    points = check_iterations(setup)

    def check(state: TrainState) -> None:
        step, values = int(state.step), named_leaves(state.params)
        for level, d in list(pending.items()):
            d.state, differ, kept = eb.check(d.state, [values[n] for n in names], list(alive.values()), d.keeps)
            distances, seen = eb.distances(differ, size), int(d.state.seen)
            if seen > 1:
                d.distances.append([step, distances[0]])
            if seen >= window:
                d.window.append([step, max(distances)])
            stop = eb.should_stop(distances, seen, window, epsilon)
            if stop or step == setup.total_steps:
                mask = _mask_of(full, dict(zip(names, kept)))
                found[level] = EarlyBird(mask, step, stop, d.distances, d.window)
                del pending[level]

    first = min(densities)
    state = start_state(setup, config.method, params0, model_state0, full, 0, None)
    hooks.level_start(first, state, full)
    check(state)
    order_key, augment_key = data_keys(setup, 0)
    if pending:
        for state, _ in train(trainer, state, full, setup.data, order_key, augment_key, breaks=points):
            hooks.chunk_done(first, state, full, [], [])
            if int(state.step) in points:
                check(state)
            if not pending:
                break
    return found


def _mask_of(full: Mask, kept: dict[str, jax.Array]) -> Mask:
    return jax.tree_util.tree_map_with_path(lambda path, m: None if m is None else kept[path_name(path)], full,
                                            is_leaf=lambda x: x is None)


def earlybird_record(found: EarlyBird) -> dict[str, Any]:
    """The search's fields of a density's record."""
    return {"earlybird_iteration": found.iteration, "earlybird_found": found.found,
            "mask_distances": found.distances, "window_distances": found.window}


def earlybird_levels(setup: Setup, hooks: Hooks, done: frozenset[int] = frozenset()) -> Iterator[LevelOutcome]:
    """One outcome per density not in `done`: its EB mask (`search`, shared by them), then the ticket
    trained from the run's init for the full length; records as every method's plus `earlybird_record`."""
    densities = {level: d for level, d in enumerate(setup.config.sparse.densities) if level not in done}
    if not densities:
        return
    started = time.perf_counter()
    found = search(setup, densities, hooks)
    search_seconds = (time.perf_counter() - started) / len(densities)
    params0, model_state0 = init_params(setup)
    for level, density in densities.items():
        started = time.perf_counter()
        mask = found[level].mask
        start = start_state(setup, "earlybird", params0, model_state0, mask, 0, None)
        state, final, evaluations = train_level(setup, setup.trainer, level, start, mask, hooks, order_level=0)
        record = {**sparse_record(setup, "earlybird", level, mask, final, start, evaluations, density, state,
                                  search_iterations=found[level].iteration),
                  **earlybird_record(found[level])}
        yield LevelOutcome(record, final, state, evaluations, time.perf_counter() - started + search_seconds)


__all__ = ["EarlyBird", "check_iterations", "earlybird_levels", "earlybird_record", "search"]
