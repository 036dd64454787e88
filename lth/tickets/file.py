"""The ticket file: a mask, the weights it starts from, model state and where it came from, in one
``.safetensors`` file that ``safetensors.numpy.load_file`` reads without lth (README: "Ticket files").

Tensors (every name is ``<part>/<parameter path>``, e.g. ``params/fc1/kernel``):

    mask/<path>         uint8: the leaf's bool mask, flattened in C order, ``np.packbits``, then zlib
                        (deflate) -- for every masked (prunable) leaf of the params
    params/<path>       the start weights: a masked leaf's kept values in C order (1-D), an unmasked
                        leaf (bias, norm) whole
    trained/<path>      optional, the same for the weights at the end of the level's training
    model_state/<path>  model state (BatchNorm statistics) whole

A dtype that ``safetensors.numpy`` cannot load (bfloat16, float8) is stored as its raw bits (the
unsigned integer of its width); the header names the real dtype. The header is the safetensors
metadata entry ``lth_ticket``: JSON with the format and version, the lth version, density (total
and per layer), the leaves ({part: [{"path", "dtype", "shape", "kept"}]}), SHA-256 digests of the
tensors ("ticket": mask, params and model state, which names the ticket; "trained") and of the
header itself ("header": every field but the digests, so that an edit of a field training reads --
start iteration, data order level, schedule, model -- is refused, not trained), and whatever the
writer adds (`lth.tickets.export`: config, model, dataset, level, record, start iteration). Fields
training reads are type- and range-checked on load (`HEADER_FIELDS`). A file written before the
header digest loads, and `lth ticket inspect` says that its header is not covered.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ml_dtypes  # noqa: F401  (registers bfloat16 and the float8 dtypes with NumPy by name; ships with jax)
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save as safetensors_bytes

from lth.store.queries import check_ticket_file
from lth.spec.files import UNREADABLE_JSON
from lth.errors import LthError
from lth.sparsity.masks import Mask, check_mask, named_leaves, nest
from lth.store.io import write_atomic
from lth.tickets.header import check_header_fields, header_digest

FORMAT = "lth-ticket"
VERSION = 2  # version 1 was the compressed .npz of `lth export`
METADATA_KEY = "lth_ticket"
START_PARTS = ("mask", "params", "model_state")  # the ticket's digest covers these
# what safetensors.numpy loads as such; other dtypes travel as raw bits
NATIVE = {"float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint64", "uint32", "uint16", "uint8",
          "bool", "complex64"}

__all__ = ["FORMAT", "METADATA_KEY", "VERSION", "Ticket", "load", "read_header", "save"]


@dataclass(frozen=True)
class Ticket:
    """A loaded ticket: nested dicts keyed by the parameter paths' parts ("fc1/kernel" ->
    ``{"fc1": {"kernel": ...}}``, flax linen's structure) of NumPy arrays. `params` are dense with
    zeros where pruned, `mask` has bool arrays on masked leaves and None elsewhere, `trained` is
    None unless the file has the trained weights; `metadata` is the header."""

    mask: Any
    params: Any
    model_state: Any
    metadata: dict[str, Any]
    trained: Any = None

    @property
    def digest(self) -> str:
        """SHA-256 of the mask, start weights and model state: what a run started from it records."""
        return self.metadata["sha256"]["ticket"]


# --------------------------------------------------------------------------- writing


def as_stored(array: np.ndarray) -> np.ndarray:
    """`array` as safetensors.numpy can load it: itself, or its raw bits for dtypes it lacks."""
    array = np.ascontiguousarray(array)
    if array.dtype.name in NATIVE:
        return array
    return array.view(np.dtype(f"uint{8 * array.dtype.itemsize}"))


def _leaf_entry(path: str, array: np.ndarray, kept: int | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": path, "dtype": array.dtype.name, "shape": list(array.shape)}
    if kept is not None:
        entry["kept"] = kept
    return entry


def _encode_params(part: str, params: Any, masks: dict[str, Any], tensors: dict[str, np.ndarray]
                   ) -> list[dict[str, Any]]:
    """The tensors of a weights part (kept values of masked leaves, unmasked leaves whole)."""
    entries = []
    for path, leaf in named_leaves(params).items():
        array = np.asarray(leaf)
        m = masks.get(path)
        if m is None:
            tensors[f"{part}/{path}"] = as_stored(array)
            entries.append(_leaf_entry(path, array))
        else:
            keep = np.asarray(m, dtype=bool).reshape(-1)
            tensors[f"{part}/{path}"] = as_stored(array.reshape(-1)[keep])
            entries.append(_leaf_entry(path, array, int(np.count_nonzero(keep))))
    return entries


def digest(tensors: dict[str, np.ndarray], leaves: dict[str, list[dict[str, Any]]], parts: tuple[str, ...]) -> str:
    """SHA-256 of the leaves (paths, dtypes, shapes, counts) and tensors (name, shape, bytes) of `parts`."""
    h = hashlib.sha256()
    h.update(json.dumps({p: leaves.get(p) for p in parts}, sort_keys=True).encode())
    for name in sorted(n for n in tensors if n.split("/", 1)[0] in parts):
        array = tensors[name]
        h.update(f"{name}:{array.dtype.name}:{list(array.shape)};".encode())
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def encode(mask: Mask, params: Any, model_state: Any = None, *, metadata: dict[str, Any] | None = None,
           trained: Any = None) -> bytes:
    """The bytes of a ticket file (see the module docstring); MaskError if the mask does not fit."""
    check_mask(mask, params)
    if trained is not None:
        check_mask(mask, trained)
    masks = named_leaves(mask)
    tensors: dict[str, np.ndarray] = {}
    leaves: dict[str, list[dict[str, Any]]] = {"params": _encode_params("params", params, masks, tensors)}
    for path, m in masks.items():
        if m is not None:
            bits = np.packbits(np.asarray(m, dtype=bool).reshape(-1))
            tensors[f"mask/{path}"] = np.frombuffer(zlib.compress(bits.tobytes(), 9), dtype=np.uint8)
    leaves["model_state"] = []
    for path, leaf in named_leaves(model_state if model_state is not None else {}).items():
        tensors[f"model_state/{path}"] = as_stored(np.asarray(leaf))
        leaves["model_state"].append(_leaf_entry(path, np.asarray(leaf)))
    if trained is not None:
        leaves["trained"] = _encode_params("trained", trained, masks, tensors)
    kept = {e["path"]: (e["kept"], math.prod(e["shape"])) for e in leaves["params"] if "kept" in e}
    remaining, prunable = sum(k for k, _ in kept.values()), sum(n for _, n in kept.values())
    header = {
        **(metadata or {}),
        "format": FORMAT,
        "version": VERSION,
        "lth_version": _lth_version(),
        "density": remaining / prunable if prunable else 1.0,
        "weights_remaining": remaining,
        "weights_prunable": prunable,
        "layer_density": {path: k / n for path, (k, n) in kept.items()},
        "leaves": leaves,
        "sha256": {"ticket": digest(tensors, leaves, START_PARTS),
                   "trained": digest(tensors, leaves, ("trained",)) if trained is not None else None},
    }
    header["sha256"]["header"] = header_digest(header)
    text = json.dumps(header, sort_keys=True, separators=(",", ":"))
    return safetensors_bytes(tensors, metadata={METADATA_KEY: text})


def save(path: str | os.PathLike, mask: Mask, params: Any, model_state: Any = None, *,
         metadata: dict[str, Any] | None = None, trained: Any = None) -> Path:
    """Write a ticket file atomically and return its path.

    `params` are the weights the ticket starts from (only the entries `mask` keeps are stored),
    `model_state` its model state (None: none), `trained` optionally the trained weights of the
    level (same structure), `metadata` JSON-serialisable fields for the header (its computed fields
    -- format, density, leaves, digests -- take precedence). MaskError if the mask does not fit.
    """
    path = Path(path)
    data = encode(mask, params, model_state, metadata=metadata, trained=trained)
    write_atomic(path, data)
    return path


def _lth_version() -> str:
    try:
        return importlib.metadata.version("lth")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# --------------------------------------------------------------------------- reading


def read_safetensors(path: str | os.PathLike, what: str, remedy: str) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """(metadata, tensors) of a .safetensors file; a one-line LthError naming `what` it should be and
    the `remedy` if it is truncated, foreign or unreadable."""
    try:
        with safe_open(path, framework="np") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except Exception as err:  # safetensors' errors of a truncated or foreign file, OS errors
        raise LthError(f"{what} {str(path)!r} is damaged or not a .safetensors file ({type(err).__name__}): "
                       f"{remedy}") from None
    return metadata, tensors


def _open(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(header, tensors) of a ticket file; a one-line LthError if it is missing, damaged or foreign."""
    where = str(path)
    check_ticket_file(path)
    metadata, tensors = read_safetensors(path, "ticket file", "export the ticket again")
    if METADATA_KEY not in metadata:
        raise LthError(f"ticket file {where!r} has no {METADATA_KEY!r} header: it is not an lth ticket "
                       "(`lth ticket export` writes one)")
    try:
        header = json.loads(metadata[METADATA_KEY])
    except UNREADABLE_JSON:
        raise LthError(f"ticket file {where!r} has a damaged header: export the ticket again") from None
    found = header.get("format") if isinstance(header, dict) else None
    if found != FORMAT:
        raise LthError(f"ticket file {where!r} is not an lth ticket (its header names format {found!r})")
    if header.get("version") != VERSION:
        raise LthError(f"ticket file {where!r} has format version {header.get('version')!r}; this lth reads "
                       f"version {VERSION}: export it again with this version")
    return header, tensors


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON header of a ticket file (checked like `load`, digests included)."""
    return load(path).metadata


def _real(array: np.ndarray, dtype_name: str) -> np.ndarray:
    dtype = np.dtype(dtype_name)
    if array.dtype == dtype:
        return array
    if array.dtype.kind == "u" and array.dtype.itemsize == dtype.itemsize and dtype.name not in NATIVE:
        return array.view(dtype)
    raise ValueError(f"a tensor of {array.dtype} for a leaf of {dtype_name}")


def _decode_mask(path: str, tensors: dict[str, np.ndarray], shape: tuple[int, ...], kept: int) -> np.ndarray:
    size = math.prod(shape)
    try:
        bits = np.frombuffer(zlib.decompress(tensors[f"mask/{path}"].tobytes()), dtype=np.uint8)
    except zlib.error:
        raise ValueError(f"the mask of {path} does not inflate") from None
    if bits.size != math.ceil(size / 8):
        raise ValueError(f"the mask of {path} has {bits.size} bytes for {size} entries")
    mask = np.unpackbits(bits, count=size).astype(bool)
    if int(np.count_nonzero(mask)) != kept:
        raise ValueError(f"the mask of {path} keeps {int(np.count_nonzero(mask))} entries, the header says {kept}")
    return mask.reshape(shape)


def _decode_part(part: str, entries: list[dict[str, Any]], tensors: dict[str, np.ndarray],
                 masks: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    out = []
    for e in entries:
        path, shape = e["path"], tuple(int(s) for s in e["shape"])
        array = _real(tensors[f"{part}/{path}"], e["dtype"])
        if "kept" in e:
            if path not in masks:
                masks[path] = _decode_mask(path, tensors, shape, int(e["kept"]))
            flat = np.zeros(math.prod(shape), dtype=array.dtype)
            flat[masks[path].reshape(-1)] = array.reshape(-1)  # ValueError if the counts differ
            array = flat.reshape(shape)
        elif array.shape != shape:
            raise ValueError(f"{part}/{path} has shape {array.shape}, the header says {shape}")
        out.append((path, array))
    return out


def _check_digests(header: dict[str, Any], tensors: dict[str, np.ndarray], where: str) -> None:
    expected = header["sha256"].get("header")
    if expected is not None and header_digest(header) != expected:
        raise LthError(f"ticket file {where!r}: its header does not match the SHA-256 in it (damaged or edited; "
                       "e.g. its start iteration or data order level): export the ticket again")
    for name, parts in (("ticket", START_PARTS), ("trained", ("trained",))):
        expected = header["sha256"][name]
        if (expected is not None or name == "ticket") and digest(tensors, header["leaves"], parts) != expected:
            what = "trained weights" if name == "trained" else "tensors"
            raise LthError(f"ticket file {where!r}: its {what} do not match the SHA-256 in its header "
                           "(damaged or edited): export the ticket again")


def load(path: str | os.PathLike) -> Ticket:
    """The ticket in a file written by `save`; a one-line LthError if it is missing, damaged, not a
    ticket, of another format version, or if its tensors do not match the digests of its header."""
    header, tensors = _open(path)
    where = str(path)
    inconsistent = f"ticket file {where!r} is inconsistent: export the ticket again"
    try:
        _check_digests(header, tensors, where)
    except (KeyError, TypeError, AttributeError):
        raise LthError(inconsistent) from None
    check_header_fields(header, where)
    try:
        leaves, masks = header["leaves"], {}
        params = _decode_part("params", leaves["params"], tensors, masks)
        model_state = _decode_part("model_state", leaves["model_state"], tensors, masks)
        trained = _decode_part("trained", leaves["trained"], tensors, masks) if "trained" in leaves else None
    except (KeyError, TypeError, ValueError, IndexError) as err:
        detail = f" ({err})" if type(err) is ValueError else ""
        raise LthError(inconsistent.replace(": export", f"{detail}: export")) from None
    mask = nest([(p, masks.get(p)) for p, _ in params])
    return Ticket(mask, nest(params), nest(model_state), header, None if trained is None else nest(trained))
