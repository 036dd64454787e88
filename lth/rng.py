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




def level_keys(seed: int, data_order: str, level: int) -> tuple[jax.Array, jax.Array]:
    """(data order key, augmentation key) of a level's training: its own for every level with
    "per_level" (``stream(seed, name, level)``), the same for all with "fixed"."""
    if data_order == "fixed":
        return stream(seed, "data_order"), stream(seed, "augmentation")
    return stream(seed, "data_order", level), stream(seed, "augmentation", level)
