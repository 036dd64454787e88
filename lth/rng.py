"""Explicit randomness: one seed -> named keys (init, data order, pruning, ...) via `fold_in`.

`stream(seed, "init")` is the same key in every run with that seed, whatever else the run does;
further integers (level, replicate, epoch) are folded in by the code that needs them.
"""

from __future__ import annotations

import zlib

import jax


def root_key(seed: int) -> jax.Array:
    return jax.random.key(seed)


def stream(seed: int, name: str, *indices: int) -> jax.Array:
    """The key for the named purpose (stable across releases: crc32 of the name), then `indices`."""
    key = jax.random.fold_in(root_key(seed), zlib.crc32(name.encode()) & 0x7FFFFFFF)
    for index in indices:
        key = jax.random.fold_in(key, index)
    return key
