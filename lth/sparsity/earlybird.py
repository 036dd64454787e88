"""Early-Bird tickets (You et al., ICLR 2020): the mask distance and the stop rule of the search.

The reference (GATECH-EIC/Early-Bird-Tickets, ``main.py``, class ``EarlyBird``) draws a mask at
every check, keeps the last `window` masks (``epoch_keep=5``) and computes the distance of the
newest to each of the `window - 1` older ones; the search stops at the first check where the
window is full and every one of those distances is at most `epsilon` (0.1). Its distance is the
normalised Hamming distance, ``1 - (entries equal) / (entries)``: the fraction of mask entries that
differ, over every entry of the mask.

Here a mask is the unstructured magnitude mask at the target density with the run's per-layer
counts (the reference's is a global BatchNorm-channel mask); the distance runs over every entry of
the mask's prunable leaves, flattened and concatenated in leaf order (layers kept whole never
differ and count in the denominator, as every BN channel does in the reference).

`EarlyBirdState` carries the `window - 1` previous masks as one fixed-shape bool array, so that
`check` (mask draw, distances, queue update) is one compiled program for every check and every
density (the per-layer counts are traced). `should_stop` is the rule, on the host.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lth.sparsity.masks import Mask, mask_leaves
from lth.sparsity.topk import keep_top


class EarlyBirdState(NamedTuple):
    """The search's queue: the previous `window - 1` masks (flat, most recent first) and how many
    masks have been drawn so far."""

    history: jax.Array  # [window - 1, N] bool
    seen: jax.Array  # int32 scalar


def init_state(size: int, window: int) -> EarlyBirdState:
    """An empty queue for masks of `size` entries and a window of `window` masks."""
    return EarlyBirdState(jnp.zeros((window - 1, size), bool), jnp.zeros((), jnp.int32))


def flat_mask(leaves: Sequence[jax.Array]) -> jax.Array:
    """The mask's prunable leaves, flattened and concatenated in leaf order."""
    return jnp.concatenate([jnp.reshape(leaf, (-1,)) for leaf in leaves])


def mask_distance(a: Mask, b: Mask) -> float:
    """The normalised Hamming distance of two masks of one model: the fraction of their prunable
    entries that differ (0 equal, 1 complementary), as the reference's ``1 - equal / size``."""
    xs = [np.asarray(x, bool).reshape(-1) for x in mask_leaves(a).values()]
    ys = [np.asarray(y, bool).reshape(-1) for y in mask_leaves(b).values()]
    x, y = np.concatenate(xs), np.concatenate(ys)
    if x.shape != y.shape:
        raise ValueError(f"masks of {x.size} and {y.size} entries: the distance needs masks of one model")
    return float(np.count_nonzero(x != y)) / x.size


def observe(state: EarlyBirdState, flat: jax.Array) -> tuple[EarlyBirdState, jax.Array]:
    """Queue `flat` (a new mask); returns the new queue and, for each of the previous `window - 1`
    masks (most recent first), how many entries of `flat` differ from it (all of them where no mask
    was drawn yet). Counts, not fractions: `distances` divides them exactly on the host."""
    differ = jnp.sum(state.history != flat[None, :], axis=1, dtype=jnp.int32)
    slots = jnp.arange(state.history.shape[0])
    differ = jnp.where(slots < state.seen, differ, flat.size)
    history = jnp.concatenate([flat[None, :], state.history[:-1]], axis=0)
    return EarlyBirdState(history, state.seen + 1), differ


def distances(differ: jax.Array, size: int) -> list[float]:
    """Entry counts from `observe` as normalised Hamming distances (float64 on the host)."""
    return [int(n) / size for n in np.asarray(jax.device_get(differ))]


def magnitude_mask(values: Sequence[jax.Array], alive: Sequence[jax.Array], keeps: jax.Array) -> list[jax.Array]:
    """Per leaf, the `keeps[i]` largest |w| among the alive entries (`keep_top`: ties to the lower index)."""
    return [keep_top([jnp.abs(v)], [a], keeps[i])[0] for i, (v, a) in enumerate(zip(values, alive, strict=True))]


@jax.jit
def check(state: EarlyBirdState, values: list[jax.Array], alive: list[jax.Array], keeps: jax.Array
          ) -> tuple[EarlyBirdState, jax.Array, list[jax.Array]]:
    """One check of the search: the magnitude mask of `values` (the prunable leaves) with `keeps`
    per leaf, its differing entry counts to the queued masks (`observe`) and the new queue. One compiled program
    per model and window (the counts are traced)."""
    kept = magnitude_mask(values, alive, keeps)
    state, differ = observe(state, flat_mask(kept))
    return state, differ, kept


def should_stop(distances: Sequence[float], seen: int, window: int, epsilon: float) -> bool:
    """The reference's rule: `window` masks drawn (`seen`, this one included) and the newest within
    `epsilon` of each of the `window - 1` before it (``max(distances) <= epsilon``)."""
    return seen >= window and all(float(d) <= epsilon for d in list(distances)[: window - 1])


__all__ = ["EarlyBirdState", "check", "distances", "flat_mask", "init_state", "magnitude_mask", "mask_distance",
           "observe", "should_stop"]
