"""Bytes of a ticket: the ticket file against the same leaves saved dense (compressed and raw)."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
from safetensors.numpy import load as load_bytes

from lth.sparsity.masks import Mask, named_leaves
from lth.tickets.file import as_stored, encode, load

Params = Any


def masked_params(params: Params, mask: Mask) -> Params:
    """`params` with the pruned entries zeroed, as NumPy arrays (``apply_mask`` without JAX)."""
    return jax.tree.map(lambda m, p: np.asarray(p) if m is None else np.where(np.asarray(m), np.asarray(p), 0)
                        .astype(np.asarray(p).dtype), mask, params, is_leaf=lambda x: x is None)


def _npz_bytes(arrays: dict[str, np.ndarray], compressed: bool) -> int:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return len(buffer.getvalue())


def dense_sizes(params: Params) -> dict[str, int]:
    """Bytes of every leaf of `params` saved dense, one array per leaf: ``np.savez_compressed``
    (``dense_compressed``) and ``np.savez`` (``dense_raw``); and ``dense_array_bytes``, the sum of
    the arrays' sizes. Pass the masked params to compare with a ticket."""
    arrays = {name: as_stored(np.asarray(leaf)) for name, leaf in named_leaves(params).items()}
    return {
        "dense_compressed": _npz_bytes(arrays, True),
        "dense_raw": _npz_bytes(arrays, False),
        "dense_array_bytes": sum(a.nbytes for a in arrays.values()),
    }


def ticket_sizes(params: Params, mask: Mask, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """Bytes of the ticket of `params` under `mask`, computed in memory (nothing is written):
    ``ticket_bytes`` (the file `lth.tickets.save` writes, with `metadata` in its header),
    ``values_bytes`` (the kept values and unmasked leaves: the floor of any lossless format without
    compression), ``mask_bytes`` (the deflated packed bits), and `dense_sizes` of the masked params."""
    masks = named_leaves(mask)
    values = 0
    for name, leaf in named_leaves(params).items():
        array, m = np.asarray(leaf), masks[name]
        values += array.nbytes if m is None else int(np.count_nonzero(np.asarray(m))) * array.dtype.itemsize
    data = encode(mask, params, metadata=metadata)
    mask_bytes = sum(v.nbytes for k, v in load_bytes(data).items() if k.startswith("mask/"))
    kept = sum(int(np.count_nonzero(np.asarray(m))) for m in masks.values() if m is not None)
    total = sum(int(np.asarray(m).size) for m in masks.values() if m is not None)
    return {"ticket_bytes": len(data), "values_bytes": values, "mask_bytes": mask_bytes,
            **dense_sizes(masked_params(params, mask)), "density": kept / total if total else 1.0}


def ticket_size(path: str | os.PathLike) -> dict[str, int]:
    """Bytes on disk of a ticket file (``ticket``) and of its start weights saved dense
    (``dense_compressed``, ``dense_raw``, ``dense_array_bytes``: see `dense_sizes`)."""
    return {"ticket": Path(path).stat().st_size, **dense_sizes(load(path).params)}
