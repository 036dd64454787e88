"""Exact top-k selection over the concatenated leaves of a group, on device and without a sort.

`keep_top(scores, alive, keep)` keeps the `keep` highest-scoring alive entries; ties go to the lower
flat index, exactly what a stable sort of the negated scores keeps. It is one compiled program for
every keep count (`keep` is traced).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _order_bits(key: jax.Array) -> jax.Array:
    """uint32 codes whose order is the order of the float32 `key` (no NaN): sign-magnitude floats
    become two's complement ints (negatives have their other 31 bits flipped), then offset."""
    bits = jax.lax.bitcast_convert_type(key, jnp.int32)
    bits = jnp.where(bits < 0, bits ^ jnp.int32(0x7FFFFFFF), bits)
    return jax.lax.bitcast_convert_type(bits, jnp.uint32) ^ jnp.uint32(0x80000000)


@jax.jit
def keep_top(scores: list[jax.Array], alive: list[jax.Array], keep: jax.Array) -> list[jax.Array]:
    """Keep the `keep` highest-scoring alive entries of the concatenated leaves; ties go to the
    lower flat index (exactly what a stable sort of the negated scores keeps).

    No sort: the keep-th smallest key is found by bisection over its 32-bit code (at most 32
    counting passes; XLA:CPU sorts 235k floats in ~45 ms, this takes a few). The bisection stops as
    soon as a code splits the entries into exactly `keep` at or below it and the rest above (then
    those are the kept ones; ~18 passes for 235k distinct scores instead of 32); otherwise, after 32
    passes, entries below the keep-th code are kept and the ties at it by index order.
    """
    flat_scores = jnp.concatenate([s.reshape(-1).astype(jnp.float32) for s in scores])
    flat_alive = jnp.concatenate([a.reshape(-1) for a in alive])
    # ascending order of the negated score (dead entries last); + 0.0 maps -0.0 to 0.0 so that
    # equal magnitudes tie exactly and the index decides.
    code = _order_bits(jnp.where(flat_alive, -flat_scores, jnp.inf) + 0.0)
    keep = jnp.minimum(keep, flat_alive.sum())

    def halve(state):  # invariant: the keep-th smallest code lies in [low, high]
        low, high, i, _, split = state
        middle = low + (high - low) // 2
        count = jnp.sum(code <= middle, dtype=jnp.int32)
        enough = count >= keep
        exact = count == keep
        return (jnp.where(enough, low, middle + 1), jnp.where(enough, middle, high), i + 1, exact,
                jnp.where(exact, middle, split))

    def searching(state):
        return (state[2] < 32) & ~state[3]

    start = (jnp.uint32(0), jnp.uint32(0xFFFFFFFF), jnp.int32(0), jnp.bool_(False), jnp.uint32(0))
    threshold, _, _, split_found, split = jax.lax.while_loop(searching, halve, start)

    def by_ties():
        below = code < threshold
        at = code == threshold
        return below | (at & (jnp.cumsum(at, dtype=jnp.int32) <= keep - jnp.sum(below, dtype=jnp.int32)))

    kept = jax.lax.cond(split_found, lambda: code <= split, by_ties) & (keep > 0)
    out, start = [], 0
    for a in alive:
        out.append(kept[start : start + a.size].reshape(a.shape))
        start += a.size
    return out
