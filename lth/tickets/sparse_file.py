"""Sparse tickets: export a pruned network's surviving weights, and run it sparse (honestly).

A pruned network is smaller, but it need not run faster. This module gives the two halves:

* **On disk** (this module). `export_ticket(params, mask, path)` writes a compressed ``.npz`` that
  holds, for every masked (prunable) leaf, only the surviving values and where they are; unmasked
  leaves (biases, normalisation parameters) are stored dense. `import_ticket(path)` rebuilds the
  dense params, zeros where pruned, bit for bit equal to ``apply_mask(params, mask)``, and the
  mask. `lth.tickets.sizes` gives the bytes of the sparse file and of the same leaves saved dense;
  `lth.tickets.export.export_from_run` exports a finished level of a run.

* **In memory, for inference** (`lth.tickets.inference`): a plain MLP with dense, BCOO or compacted
  kernels.

File format (version 1): a zip written by ``np.savez_compressed`` with

    header              uint8 array: UTF-8 JSON {"format": "lth-ticket", "version": 1, "density",
                        "weights_remaining", "weights_prunable", "meta", "leaves": [{"path", "dtype",
                        "shape", "encoding", "kept", "index_dtype"}, ...]}
    leaf_NNNN_values    the kept values of masked leaf NNNN, in C (row-major) order
    leaf_NNNN_indices   their flat indices (encoding "indices"), or
    leaf_NNNN_bitmap    the mask as packed bits, np.packbits order (encoding "bitmap")
    leaf_NNNN_dense     an unmasked leaf, whole (encoding "dense")

Per masked leaf of n entries keeping k, the positions are stored as whichever of two is smaller
in the file: k flat indices (sorted) in the smallest integer type that holds n - 1 (uint16 up to
65,536 entries, uint32 up to 2^32, else int64), or a bitmap of ceil(n / 8) bytes. "Smaller" is
measured as written: deflated (zlib level 6, as ``np.savez_compressed``) for a compressed file,
raw bytes for ``compressed=False``. Uncompressed, the bitmap wins above 6.25 % density with uint16
indices and above 3.125 % with uint32; deflated, the bitmap of a random mask is usually the
smaller down to about 1 % (indices that look random deflate poorly), so most leaves of a LeNet
ticket are bitmaps (indices are not tried where their raw size exceeds 3x the bitmap's); the
header records each leaf's choice. Values are stored as their raw bits
(an unsigned integer view of the same width), so every dtype, bfloat16 included, round-trips
exactly; the header names the real dtype.
"""

from __future__ import annotations

import io
import json
import math
import os
import zlib
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lth.errors import LthError, MaskError
from lth.sparsity.masks import Mask, check_mask, named_leaves
from lth.store.io import write_atomic

FORMAT = "lth-ticket"
VERSION = 1
HEADER = "header"

Params = Any

__all__ = ["FORMAT", "VERSION", "HEADER", "encode", "export_ticket", "import_ticket", "index_dtype", "npz_bytes",
           "raw_bits", "read_header"]


# --------------------------------------------------------------------------- encoding


def index_dtype(size: int) -> np.dtype:
    """The smallest integer dtype that holds every flat index of a leaf of `size` entries."""
    if size <= 2**16:
        return np.dtype(np.uint16)
    if size <= 2**32:
        return np.dtype(np.uint32)
    return np.dtype(np.int64)


def raw_bits(array: np.ndarray) -> np.ndarray:
    """`array` as unsigned integers of the same width (its exact bits); other widths unchanged."""
    array = np.ascontiguousarray(array)
    if array.dtype.itemsize in (1, 2, 4, 8) and array.dtype.kind != "u":
        return array.view(np.dtype(f"uint{8 * array.dtype.itemsize}"))
    return array


def _from_bits(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if array.dtype == dtype:
        return array
    if array.dtype.kind == "u" and array.dtype.itemsize == dtype.itemsize:
        return array.view(dtype)
    raise ValueError(f"stored {array.dtype} cannot hold {dtype}")


def _dtype_name(dtype: Any) -> str:
    return np.dtype(dtype).name


def _dtype(name: str) -> np.dtype:
    return np.dtype(jnp.dtype(name))  # jnp knows bfloat16 and the other ml_dtypes names


def _stored_size(array: np.ndarray, compressed: bool) -> int:
    data = array.tobytes()
    return len(zlib.compress(data, 6)) if compressed else len(data)


def encode(params: Params, mask: Mask, meta: dict[str, Any] | None = None,
            compressed: bool = True) -> dict[str, np.ndarray]:
    """The arrays of a ticket file (header included); positions encoded for `compressed` or raw."""
    check_mask(mask, params)
    values = named_leaves(params)
    masks = named_leaves(mask)
    arrays: dict[str, np.ndarray] = {}
    leaves = []
    remaining = prunable = 0
    for i, (name, leaf) in enumerate(values.items()):
        array = np.asarray(leaf)
        entry: dict[str, Any] = {"path": name, "dtype": _dtype_name(array.dtype), "shape": list(array.shape)}
        m = masks[name]
        if m is None:
            entry["encoding"] = "dense"
            arrays[f"leaf_{i:04d}_dense"] = raw_bits(array)
        else:
            flat_mask = np.asarray(m, dtype=bool).reshape(-1)
            kept = int(np.count_nonzero(flat_mask))
            size = flat_mask.size
            idx_dtype = index_dtype(size)
            arrays[f"leaf_{i:04d}_values"] = raw_bits(array.reshape(-1)[flat_mask])
            bitmap = np.packbits(flat_mask)
            indices = None
            if kept * idx_dtype.itemsize < (3 if compressed else 1) * bitmap.size:  # else indices lose
                indices = np.flatnonzero(flat_mask).astype(idx_dtype)
                if _stored_size(indices, compressed) >= _stored_size(bitmap, compressed):
                    indices = None
            if indices is not None:
                entry["encoding"] = "indices"
                entry["index_dtype"] = idx_dtype.name
                arrays[f"leaf_{i:04d}_indices"] = indices
            else:
                entry["encoding"] = "bitmap"
                arrays[f"leaf_{i:04d}_bitmap"] = bitmap
            entry["kept"] = kept
            remaining += kept
            prunable += size
        leaves.append(entry)
    header = {
        "format": FORMAT,
        "version": VERSION,
        "density": remaining / prunable if prunable else 1.0,
        "weights_remaining": remaining,
        "weights_prunable": prunable,
        "meta": dict(meta or {}),
        "leaves": leaves,
    }
    arrays[HEADER] = np.frombuffer(json.dumps(header, sort_keys=True).encode(), dtype=np.uint8)
    return arrays


def npz_bytes(arrays: dict[str, np.ndarray], compressed: bool = True) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


# --------------------------------------------------------------------------- files


def export_ticket(params: Params, mask: Mask, path: str | os.PathLike, meta: dict[str, Any] | None = None,
                  compressed: bool = True) -> Path:
    """Write the ticket (`params` under `mask`) to `path` as a sparse ``.npz``; returns the path.

    Entries of masked leaves that the mask prunes are not stored (whatever their value: the file
    holds ``apply_mask(params, mask)``). `meta` (JSON-serialisable) goes into the header, e.g. the
    run, level and replicate. The file is written atomically. `compressed=False` uses ``np.savez``.
    Raises MaskError if the mask does not fit the params.
    """
    path = Path(path)
    write_atomic(path, npz_bytes(encode(params, mask, meta, compressed), compressed))
    return path


def _open(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(header, arrays) of a ticket file; one-line LthError if it is missing or not a ticket."""
    where = str(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}  # reads (and CRC-checks) every member
    except FileNotFoundError:
        raise LthError(f"ticket file {where!r} not found: export one with lth.export.export_ticket "
                       "or `lth export RUN --level L`") from None
    except IsADirectoryError:
        raise LthError(f"ticket file {where!r} is a directory: pass a .npz file written by export_ticket") from None
    except Exception as err:  # zipfile, zlib, format and OS errors of a damaged file
        raise LthError(f"ticket file {where!r} is damaged or not an .npz file ({type(err).__name__}): "
                       "export the ticket again") from None
    if HEADER not in arrays:
        raise LthError(f"ticket file {where!r} has no header: it is not an lth ticket (export_ticket writes one)")
    try:
        header = json.loads(arrays.pop(HEADER).astype(np.uint8).tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError):
        raise LthError(f"ticket file {where!r} has a damaged header: export the ticket again") from None
    found = header.get("format") if isinstance(header, dict) else None
    if found != FORMAT:
        raise LthError(f"ticket file {where!r} is not an lth ticket (its header names format {found!r}): "
                       "export it with lth.export.export_ticket")
    if header.get("version") != VERSION:
        raise LthError(f"ticket file {where!r} has format version {header.get('version')!r}; this lth reads "
                       f"version {VERSION}: export it again with this version")
    return header, arrays


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON header of a ticket file (format, version, density, leaves, meta)."""
    return _open(path)[0]


def _decode_leaf(i: int, entry: dict[str, Any], arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
    """(dense leaf, bool mask or None) of leaf i; ValueError / KeyError if inconsistent."""
    dtype = _dtype(entry["dtype"])
    shape = tuple(int(s) for s in entry["shape"])
    size = math.prod(shape)
    encoding = entry["encoding"]
    if encoding == "dense":
        leaf = _from_bits(arrays[f"leaf_{i:04d}_dense"], dtype)
        if leaf.shape != shape:
            raise ValueError(f"{entry['path']}: dense leaf of shape {leaf.shape}, header says {shape}")
        return leaf, None
    values = _from_bits(arrays[f"leaf_{i:04d}_values"], dtype).reshape(-1)
    if encoding == "indices":
        indices = arrays[f"leaf_{i:04d}_indices"].reshape(-1)
        if indices.dtype.kind not in "iu":
            raise ValueError(f"{entry['path']}: indices of dtype {indices.dtype}")
        if indices.size and (int(indices.min()) < 0 or int(indices.max()) >= size):
            raise ValueError(f"{entry['path']}: an index outside the leaf")
        flat_mask = np.zeros(size, dtype=bool)
        flat_mask[indices] = True
        if int(np.count_nonzero(flat_mask)) != indices.size:
            raise ValueError(f"{entry['path']}: repeated indices")
    elif encoding == "bitmap":
        bits = arrays[f"leaf_{i:04d}_bitmap"].reshape(-1)
        if bits.dtype != np.uint8 or bits.size != math.ceil(size / 8):
            raise ValueError(f"{entry['path']}: bitmap of {bits.size} bytes for {size} entries")
        flat_mask = np.unpackbits(bits, count=size).astype(bool)
    else:
        raise ValueError(f"{entry['path']}: unknown encoding {encoding!r}")
    kept = int(np.count_nonzero(flat_mask))
    if values.size != kept or kept != int(entry.get("kept", kept)):
        raise ValueError(f"{entry['path']}: {values.size} values for {kept} kept positions")
    flat = np.zeros(size, dtype=dtype)
    flat[flat_mask] = values
    return flat.reshape(shape), flat_mask.reshape(shape)


def _nest(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, value in pairs:
        *parents, last = name.split("/")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return tree


def import_ticket(path: str | os.PathLike, params_template: Params | None = None) -> tuple[Params, Mask]:
    """(params, mask) from a ticket file written by `export_ticket`.

    The params are the dense leaves, zeros where pruned, bit for bit ``apply_mask(params, mask)``
    of the exported ones; the mask has True where kept and `None` on unmasked leaves (as
    `lth.masks.make_mask`). With `params_template` (e.g. the model's `init` params) both take its
    pytree structure and its paths, shapes and dtypes are checked (MaskError if they differ);
    without it they are nested dicts keyed by the parameter paths' parts ("fc1/kernel" ->
    ``{"fc1": {"kernel": ...}}``), which is the structure of flax linen params.
    A missing or damaged file raises a one-line LthError.
    """
    header, arrays = _open(path)
    where = str(path)
    try:
        entries = header["leaves"]
        decoded = [(entry["path"], *_decode_leaf(i, entry, arrays)) for i, entry in enumerate(entries)]
    except (KeyError, TypeError, ValueError, IndexError) as err:
        detail = f" ({err})" if isinstance(err, ValueError) else ""
        raise LthError(f"ticket file {where!r} is inconsistent{detail}: export the ticket again") from None

    if params_template is None:
        params = _nest([(name, jnp.asarray(leaf)) for name, leaf, _ in decoded])
        mask = _nest([(name, None if m is None else jnp.asarray(m)) for name, _, m in decoded])
        return params, mask

    expected = named_leaves(params_template)
    names = [name for name, _, _ in decoded]
    if names != list(expected):
        missing = [n for n in expected if n not in names]
        extra = [n for n in names if n not in expected]
        detail = ", ".join(filter(None, [f"missing {missing[:3]}" if missing else "",
                                         f"unexpected {extra[:3]}" if extra else ""])) or "leaves in another order"
        raise MaskError(f"ticket {where!r} does not fit the params: {detail}; import it with the model it was "
                        "exported from, or without a template")
    for name, leaf, _ in decoded:
        want = expected[name]
        want_shape = tuple(np.shape(want))
        want_dtype = np.dtype(want.dtype if hasattr(want, "dtype") else np.asarray(want).dtype)
        if leaf.shape != want_shape or leaf.dtype != want_dtype:
            raise MaskError(f"ticket {where!r} does not fit the params: {name} is {leaf.dtype}{list(leaf.shape)} "
                            f"in the ticket but {want_dtype}{list(want_shape)} in the model; import it with the "
                            "model it was exported from")
    treedef = jax.tree_util.tree_structure(params_template)
    params = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(leaf) for _, leaf, _ in decoded])
    mask = jax.tree_util.tree_unflatten(treedef, [None if m is None else jnp.asarray(m) for _, _, m in decoded])
    return params, mask
