"""Bytes of a ticket: the sparse file against the same leaves saved dense (compressed and raw)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

from lth.sparsity.masks import Mask, named_leaves
from lth.tickets.sparse_file import HEADER, encode, import_ticket, npz_bytes, raw_bits

Params = Any


def masked_params(params: Params, mask: Mask) -> Params:
    """`params` with the pruned entries zeroed, as NumPy arrays (``apply_mask`` without JAX)."""
    return jax.tree.map(lambda m, p: np.asarray(p) if m is None else np.where(np.asarray(m), np.asarray(p), 0)
                        .astype(np.asarray(p).dtype), mask, params, is_leaf=lambda x: x is None)


def dense_sizes(params: Params) -> dict[str, int]:
    """Bytes of every leaf of `params` saved dense, one array per leaf: ``np.savez_compressed``
    (``dense_compressed``) and ``np.savez`` (``dense_raw``); and ``dense_array_bytes``, the sum of
    the arrays' sizes. Pass the masked params to compare with a ticket."""
    arrays = {name: raw_bits(np.asarray(leaf)) for name, leaf in named_leaves(params).items()}
    return {
        "dense_compressed": len(npz_bytes(arrays, True)),
        "dense_raw": len(npz_bytes(arrays, False)),
        "dense_array_bytes": sum(a.nbytes for a in arrays.values()),
    }


def ticket_sizes(params: Params, mask: Mask, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Bytes of the ticket of `params` under `mask`, computed in memory (nothing is written):

    ``sparse_compressed`` (the file `export_ticket` writes), ``sparse_raw`` (the same arrays with
    ``np.savez``), ``dense_compressed`` / ``dense_raw`` / ``dense_array_bytes`` (`dense_sizes` of
    the masked params), ``values_bytes`` (the surviving values alone, the floor for an index-free
    format), and ``encodings`` ({path: "indices" | "bitmap" | "dense"}). `meta` as `export_ticket`'s
    (it is in the file's header, so it counts)."""
    arrays = encode(params, mask, meta)
    header = json.loads(arrays[HEADER].tobytes().decode())
    values_bytes = sum(a.nbytes for k, a in arrays.items() if k.endswith("_values"))
    return {
        "sparse_compressed": len(npz_bytes(arrays, True)),
        "sparse_raw": len(npz_bytes(encode(params, mask, meta, compressed=False), False)),
        **dense_sizes(masked_params(params, mask)),
        "values_bytes": values_bytes,
        "density": header["density"],
        "encodings": {e["path"]: e["encoding"] for e in header["leaves"]},
    }


def ticket_size(path: str | os.PathLike) -> dict[str, int]:
    """Bytes on disk of a ticket file (``sparse``) and of its params saved dense
    (``dense_compressed``, ``dense_raw``, ``dense_array_bytes``: see `dense_sizes`)."""
    params, _ = import_ticket(path)
    return {"sparse": Path(path).stat().st_size, **dense_sizes(params)}
