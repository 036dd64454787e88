"""Exact top-k selection over the concatenated leaves of a group, on device and without a sort.

`keep_top(scores, alive, keep)` keeps the `keep` highest-scoring alive entries; ties go to the lower
flat index, exactly what a stable sort of the negated scores keeps. It is one compiled program for
every keep count (`keep` is traced). `keep_lowest(code, keep)` is its core on unsigned 32-bit codes,
for callers whose scores are codes already (SET's random regrowth, `lth.sparsity.dynamic`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class Lowest(NamedTuple):
    """The `keep` entries with the lowest codes, and whether a tie at the threshold was split by index
    (more entries share the keep-th code than are kept: the lower indices among them were taken)."""

    kept: jax.Array
    tie_split: jax.Array


def _order_bits(key: jax.Array) -> jax.Array:
    """uint32 codes whose order is the order of the float32 `key` (no NaN): sign-magnitude floats
    become two's complement ints (negatives have their other 31 bits flipped), then offset."""
    bits = jax.lax.bitcast_convert_type(key, jnp.int32)
    bits = jnp.where(bits < 0, bits ^ jnp.int32(0x7FFFFFFF), bits)
    return jax.lax.bitcast_convert_type(bits, jnp.uint32) ^ jnp.uint32(0x80000000)


def keep_lowest(code: jax.Array, keep: jax.Array, low: Any = 0, high: Any = 0xFFFFFFFF) -> Lowest:
    """The `keep` entries of the uint32 array `code` (any shape) with the lowest codes; ties go to the
    lower flat index. `keep` must not exceed the size, and the keep-th lowest code must lie in
    [`low`, `high`] (traced or not: a narrower range saves passes).

    No sort: the keep-th lowest code is found by bisection over [low, high] (at most 32 counting
    passes; XLA:CPU sorts 235k floats in ~45 ms, this takes a few). The bisection stops as soon as
    a code splits the entries into exactly `keep` at or below it and the rest above (then those are
    the kept ones; ~log2(size) passes for distinct codes); otherwise entries below the keep-th code
    are kept and the ties at it by index order.
    """
    flat = code.reshape(-1)

    def halve(state):  # invariant: the keep-th smallest code lies in [low, high]
        low, high, i, _, split = state
        middle = low + (high - low) // 2
        count = jnp.sum(flat <= middle, dtype=jnp.int32)
        enough = count >= keep
        exact = count == keep
        return (jnp.where(enough, low, middle + 1), jnp.where(enough, middle, high), i + 1, exact,
                jnp.where(exact, middle, split))

    def searching(state):
        return (state[2] < 32) & ~state[3]

    # keep = 0: nothing to search (the empty selection is exact)
    start = (jnp.asarray(low, jnp.uint32), jnp.asarray(high, jnp.uint32), jnp.int32(0), jnp.asarray(keep <= 0),
             jnp.uint32(0))
    threshold, _, _, split_found, split = jax.lax.while_loop(searching, halve, start)

    def by_ties():
        below = flat < threshold
        at = flat == threshold
        room = keep - jnp.sum(below, dtype=jnp.int32)
        return below | (at & (jnp.cumsum(at, dtype=jnp.int32) <= room)), jnp.sum(at, dtype=jnp.int32) > room

    kept, tie_split = jax.lax.cond(split_found, lambda: (flat <= split, jnp.bool_(False)), by_ties)
    return Lowest((kept & (keep > 0)).reshape(code.shape), tie_split & (keep > 0))


@jax.jit
def keep_top(scores: list[jax.Array], alive: list[jax.Array], keep: jax.Array) -> list[jax.Array]:
    """Keep the `keep` highest-scoring alive entries of the concatenated leaves; ties go to the
    lower flat index (exactly what a stable sort of the negated scores keeps; `keep_lowest`)."""
    flat_scores = jnp.concatenate([s.reshape(-1).astype(jnp.float32) for s in scores])
    flat_alive = jnp.concatenate([a.reshape(-1) for a in alive])
    # ascending order of the negated score (dead entries last); + 0.0 maps -0.0 to 0.0 so that
    # equal magnitudes tie exactly and the index decides.
    code = _order_bits(jnp.where(flat_alive, -flat_scores, jnp.inf) + 0.0)
    kept = keep_lowest(code, jnp.minimum(keep, flat_alive.sum())).kept
    out, start = [], 0
    for a in alive:
        out.append(kept[start : start + a.size].reshape(a.shape))
        start += a.size
    return out


__all__ = ["Lowest", "keep_lowest", "keep_top"]
