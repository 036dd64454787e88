"""Sparse tickets: export a pruned network's surviving weights, and run it sparse (honestly).

A pruned network is smaller, but it need not run faster. This module gives the two halves:

* **On disk.** `export_ticket(params, mask, path)` writes a compressed ``.npz`` that holds, for
  every masked (prunable) leaf, only the surviving values and where they are; unmasked leaves
  (biases, normalisation parameters) are stored dense. `import_ticket(path)` rebuilds the dense
  params, zeros where pruned, bit for bit equal to ``apply_mask(params, mask)``, and the mask.
  `ticket_sizes` / `ticket_size` give the bytes of the sparse file and of the same leaves saved
  dense (``np.savez_compressed`` and ``np.savez``). `export_from_run` exports a finished level of a
  run to ``<run>/replicate_XX/tickets/level_XX.npz``.

* **In memory, for inference.** `mlp_forward` / `dense_forward` / `sparse_forward` / `to_bcoo` run
  a plain lth MLP (``lth.models.mlp.MLP`` without ``residual``: LeNet-300-100, ``mlp_tiny``)
  with its kernels as dense arrays or as ``jax.experimental.sparse.BCOO`` matrices, and
  `compact_mlp` is the structured alternative: it removes the neurons a mask has cut off and
  returns a smaller dense MLP that computes the same function. Generic models (convolutions,
  residual MLPs, BatchNorm) are out of scope for the sparse forward: JAX's BCOO convolution
  (``sparse.bcoo_conv_general_dilated``, jax 0.10) handles only 1-D, one-channel, unit-stride
  convolutions, and wrapping arbitrary flax modules would measure the wrapping, not the sparsity.
  ``benchmarks/sparse.py`` measures all of it.

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
import re
import zlib
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lth.errors import LthError, MaskError
from lth.masks import Mask, check_mask, named_leaves

FORMAT = "lth-ticket"
VERSION = 1
HEADER = "header"

Params = Any

__all__ = [
    "FORMAT", "VERSION", "compact_mlp", "compact_forward", "dense_forward", "dense_sizes", "export_from_run",
    "export_ticket", "import_ticket", "index_dtype", "masked_params", "mlp_forward", "mlp_layers", "read_header",
    "sparse_forward", "ticket_path", "ticket_size", "ticket_sizes", "to_bcoo",
]


# --------------------------------------------------------------------------- encoding


def index_dtype(size: int) -> np.dtype:
    """The smallest integer dtype that holds every flat index of a leaf of `size` entries."""
    if size <= 2**16:
        return np.dtype(np.uint16)
    if size <= 2**32:
        return np.dtype(np.uint32)
    return np.dtype(np.int64)


def _raw_bits(array: np.ndarray) -> np.ndarray:
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


def _encode(params: Params, mask: Mask, meta: dict[str, Any] | None = None,
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
            arrays[f"leaf_{i:04d}_dense"] = _raw_bits(array)
        else:
            flat_mask = np.asarray(m, dtype=bool).reshape(-1)
            kept = int(np.count_nonzero(flat_mask))
            size = flat_mask.size
            idx_dtype = index_dtype(size)
            arrays[f"leaf_{i:04d}_values"] = _raw_bits(array.reshape(-1)[flat_mask])
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


def _npz_bytes(arrays: dict[str, np.ndarray], compressed: bool = True) -> bytes:
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
    from lth.runs import write_atomic

    path = Path(path)
    write_atomic(path, _npz_bytes(_encode(params, mask, meta, compressed), compressed))
    return path


def _open(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(header, arrays) of a ticket file; one-line LthError if it is missing or not a ticket."""
    where = str(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}  # reads (and CRC-checks) every member
    except FileNotFoundError:
        raise LthError(f"ticket file {where!r} not found: export one with lth.export.export_ticket "
                       "or `lth export RUN LEVEL`") from None
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


# --------------------------------------------------------------------------- sizes


def masked_params(params: Params, mask: Mask) -> Params:
    """`params` with the pruned entries zeroed, as NumPy arrays (``apply_mask`` without JAX)."""
    return jax.tree.map(lambda m, p: np.asarray(p) if m is None else np.where(np.asarray(m), np.asarray(p), 0)
                        .astype(np.asarray(p).dtype), mask, params, is_leaf=lambda x: x is None)


def dense_sizes(params: Params) -> dict[str, int]:
    """Bytes of every leaf of `params` saved dense, one array per leaf: ``np.savez_compressed``
    (``dense_compressed``) and ``np.savez`` (``dense_raw``); and ``dense_array_bytes``, the sum of
    the arrays' sizes. Pass the masked params to compare with a ticket."""
    arrays = {name: _raw_bits(np.asarray(leaf)) for name, leaf in named_leaves(params).items()}
    return {
        "dense_compressed": len(_npz_bytes(arrays, True)),
        "dense_raw": len(_npz_bytes(arrays, False)),
        "dense_array_bytes": sum(a.nbytes for a in arrays.values()),
    }


def ticket_sizes(params: Params, mask: Mask, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Bytes of the ticket of `params` under `mask`, computed in memory (nothing is written):

    ``sparse_compressed`` (the file `export_ticket` writes), ``sparse_raw`` (the same arrays with
    ``np.savez``), ``dense_compressed`` / ``dense_raw`` / ``dense_array_bytes`` (`dense_sizes` of
    the masked params), ``values_bytes`` (the surviving values alone, the floor for an index-free
    format), and ``encodings`` ({path: "indices" | "bitmap" | "dense"}). `meta` as `export_ticket`'s
    (it is in the file's header, so it counts)."""
    arrays = _encode(params, mask, meta)
    header = json.loads(arrays[HEADER].tobytes().decode())
    values_bytes = sum(a.nbytes for k, a in arrays.items() if k.endswith("_values"))
    return {
        "sparse_compressed": len(_npz_bytes(arrays, True)),
        "sparse_raw": len(_npz_bytes(_encode(params, mask, meta, compressed=False), False)),
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


# --------------------------------------------------------------------------- from a run


def ticket_path(run_path: str | os.PathLike, level: int, replicate: int = 0) -> Path:
    """Where `export_from_run` writes by default: <run>/replicate_XX/tickets/level_XX.npz."""
    return Path(run_path) / f"replicate_{replicate:02d}" / "tickets" / f"level_{level:02d}.npz"


def export_from_run(run_ref: Any, level: int, replicate: int = 0, out: str | os.PathLike | None = None,
                    root: str | os.PathLike | None = None) -> dict[str, Any]:
    """Export the trained params and mask of a finished level of a run as a sparse ticket.

    `run_ref` is anything `lth.analysis.load_run` takes (a path, a directory name, a hash, an
    experiment name, an `ExperimentConfig`, a `Run`); `root` the run root. The params come from
    the level's final checkpoint, the mask from ``masks/level_XX.npz``. Writes `out`, by default
    ``<run>/replicate_XX/tickets/level_XX.npz``, and returns {"path", "level", "replicate",
    "density", "weights_remaining", and the sizes of `ticket_sizes` (bytes)}.
    """
    from lth.analysis import load_run

    run = load_run(run_ref, root=root)
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)):
        raise LthError(f"level must be an integer, got {level!r}")
    params = run.params(int(level), replicate)  # checks the level and the replicate first
    mask = run.mask(int(level), replicate)
    path = Path(out) if out is not None else ticket_path(run.path, int(level), replicate)
    meta = {"run": run.name, "experiment": run.experiment, "level": int(level), "replicate": int(replicate),
            "model": run.config.get("model")}
    export_ticket(params, mask, path, meta=meta)
    sizes = ticket_sizes(params, mask, meta)
    header = read_header(path)
    return {
        "path": path,
        "level": int(level),
        "replicate": int(replicate),
        "density": header["density"],
        "weights_remaining": header["weights_remaining"],
        "sparse_bytes": path.stat().st_size,
        **{k: v for k, v in sizes.items() if k not in ("density", "encodings")},
        "encodings": sizes["encodings"],
    }


# --------------------------------------------------------------------------- sparse inference (plain MLPs)


def mlp_layers(params: Params) -> list[str]:
    """The layer names of a plain lth MLP's params in order (fc1, ..., fcN, output); LthError otherwise.

    Only `lth.models.mlp.MLP` without `residual` (lenet300_100, mlp_tiny) is supported: the
    structure is checked, the absence of residual connections cannot be (do not pass mlp_mnist1d).
    """
    if not isinstance(params, dict) and not hasattr(params, "keys"):
        raise LthError("the sparse forward needs a plain MLP's params (a dict fc1..fcN, output), "
                       f"got {type(params).__name__}")
    names = list(params.keys())
    hidden = sorted((n for n in names if re.fullmatch(r"fc[1-9][0-9]*", n)), key=lambda n: int(n[2:]))
    order = hidden + ["output"]
    if sorted(names) != sorted(order) or hidden != [f"fc{i + 1}" for i in range(len(hidden))]:
        raise LthError(f"the sparse forward supports plain MLPs with layers fc1..fcN and output (LeNet-300-100, "
                       f"mlp_tiny); these params have {sorted(names)}")
    width = None
    for name in order:
        layer = params[name]
        if set(layer.keys()) != {"kernel", "bias"} or len(np.shape(layer["kernel"])) != 2:
            raise LthError(f"the sparse forward needs Dense layers (a 2-D kernel and a bias): {name} has "
                           f"{sorted(layer.keys())}")
        rows, cols = np.shape(layer["kernel"])
        if width is not None and rows != width:
            raise LthError(f"layer {name} takes {rows} inputs but the previous layer gives {width}")
        width = cols
    return order


def mlp_forward(params: Params, x: jax.Array) -> jax.Array:
    """Logits of a plain MLP: flatten, then ``h @ kernel + bias`` with ReLU between layers.

    Kernels may be dense arrays or `jax.experimental.sparse.BCOO` matrices (``h @ bcoo`` is
    JAX's sparse-dense product). Not jitted: see `dense_forward` and `sparse_forward`.
    """
    h = x.reshape((x.shape[0], -1))
    layers = mlp_layers(params)
    for i, name in enumerate(layers):
        h = h @ params[name]["kernel"] + params[name]["bias"]
        if i < len(layers) - 1:
            h = jax.nn.relu(h)
    return h


dense_forward = jax.jit(mlp_forward)
"""Jitted `mlp_forward` for dense kernels (pass ``masked_params(params, mask)`` for a ticket)."""

sparse_forward = jax.jit(mlp_forward)
"""Jitted `mlp_forward` for the BCOO kernels of `to_bcoo` (compiled separately from `dense_forward`)."""


def to_bcoo(params: Params, mask: Mask | None = None) -> Params:
    """A plain MLP's params with every kernel a ``BCOO`` of its kept entries (under `mask`, else
    its nonzeros), biases dense: the input of `sparse_forward`."""
    from jax.experimental import sparse

    layers = mlp_layers(params)
    out = {}
    for name in layers:
        kernel = jnp.asarray(params[name]["kernel"])
        if mask is not None and mask[name]["kernel"] is not None:
            keep = np.asarray(mask[name]["kernel"], dtype=bool)
            rows, cols = np.nonzero(keep)  # row-major: sorted indices, as fromdense gives
            indices = jnp.asarray(np.stack([rows, cols], axis=1).astype(np.int32))
            data = kernel[rows, cols]
            bcoo = sparse.BCOO((data, indices), shape=kernel.shape, indices_sorted=True, unique_indices=True)
        else:
            bcoo = sparse.BCOO.fromdense(kernel)
        out[name] = {"kernel": bcoo, "bias": jnp.asarray(params[name]["bias"])}
    return out


def compact_mlp(params: Params, mask: Mask) -> tuple[np.ndarray, Params, dict[str, Any]]:
    """The structured alternative: the smaller dense MLP left when the cut-off neurons are removed.

    A hidden neuron with no kept outgoing weight (to a live neuron) is removed; so is an input
    feature with no kept weight into a live neuron. A hidden neuron with no kept incoming weight
    (from a live neuron) outputs the constant relu(bias): it is removed and its contribution
    folded into the next layer's bias. This repeats until nothing changes; output units are kept.
    Returns (input_index, params, report): input_index holds the input features kept (None when
    all are, so that no gather runs for nothing); `compact_forward(input_index, params,
    x)` equals the ticket's forward up to float rounding (folded biases sum in another order); report
    is {"inputs": [kept, total], "hidden": {layer: [alive, total]}, "removed_no_output": {layer: n},
    "folded_constant": {layer: n}, "weights": kept weights in the compact kernels,
    "dense_weights": entries of the compact kernels}.
    """
    layers = mlp_layers(params)
    kernels = [np.asarray(params[n]["kernel"]) for n in layers]
    biases = [np.array(params[n]["bias"], copy=True) for n in layers]
    keeps = [np.ones(k.shape, bool) if mask[n]["kernel"] is None else np.asarray(mask[n]["kernel"], bool)
             for n, k in zip(layers, kernels)]
    kernels = [np.where(m, k, 0).astype(k.dtype) for k, m in zip(kernels, keeps)]
    # alive[l]: the units of layer l's input (l = 0: the input features; l = len(layers): the outputs)
    alive = [np.ones(kernels[0].shape[0], bool)] + [np.ones(k.shape[1], bool) for k in kernels]
    no_output = {n: 0 for n in layers[:-1]}
    folded = {n: 0 for n in layers[:-1]}
    changed = True
    while changed:
        changed = False
        for l in range(len(layers)):  # the units feeding layer l: alive[l]
            live_out = keeps[l][:, alive[l + 1]].any(axis=1)
            dead = alive[l] & ~live_out
            if dead.any():
                alive[l][dead] = False
                if l > 0:
                    no_output[layers[l - 1]] += int(dead.sum())
                changed = True
        for l in range(1, len(layers)):  # hidden units (outputs of layer l - 1) without live inputs
            live_in = keeps[l - 1][alive[l - 1], :].any(axis=0)
            const = alive[l] & ~live_in
            if const.any():
                value = np.maximum(biases[l - 1][const], 0).astype(biases[l].dtype)
                biases[l] = (biases[l] + value @ kernels[l][const, :]).astype(biases[l].dtype)
                alive[l][const] = False
                folded[layers[l - 1]] += int(const.sum())
                changed = True
    out = {}
    for l, name in enumerate(layers):
        rows, cols = alive[l], alive[l + 1]
        out[name] = {"kernel": jnp.asarray(kernels[l][rows][:, cols]), "bias": jnp.asarray(biases[l][cols])}
    input_index = None if alive[0].all() else np.flatnonzero(alive[0]).astype(np.int32)
    report = {
        "inputs": [int(alive[0].sum()), int(alive[0].size)],
        "hidden": {n: [int(alive[l + 1].sum()), int(alive[l + 1].size)] for l, n in enumerate(layers[:-1])},
        "removed_no_output": no_output,
        "folded_constant": folded,
        "weights": int(sum(int(keeps[l][alive[l]][:, alive[l + 1]].sum()) for l in range(len(layers)))),
        "dense_weights": int(sum(int(alive[l].sum() * alive[l + 1].sum()) for l in range(len(layers)))),
    }
    return input_index, out, report


@jax.jit
def compact_forward(input_index: jax.Array | None, params: Params, x: jax.Array) -> jax.Array:
    """Jitted forward of `compact_mlp`'s network: the kept input features, then the dense MLP."""
    h = x.reshape((x.shape[0], -1))
    if input_index is not None:
        h = jnp.take(h, input_index, axis=1)
    return mlp_forward(params, h)
