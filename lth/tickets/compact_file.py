"""The compact network file: a `CompactNetwork` (`lth.tickets.compact`) as ``.safetensors`` that
NumPy alone can run (README: "Compact networks").

Tensors: ``<layer path>/kernel`` and ``<layer path>/bias`` of every dense/conv layer (dense
kernels (in, out), conv kernels (*window, in, out), channels last; BatchNorm already folded in),
and ``input_index`` (int32) when some input features were dropped. The metadata entry
``lth_compact`` is JSON: {"format": "lth-compact", "version": 1, "model", "input_shape", "graph"
(the layers in order as `lth.models.graph` describes them, each dense/conv with its "kernel" and
"bias" shapes), "input_index" (what it indexes), "source" (the ticket: its digest, level,
density, which weights), "report" (units, params and MACs of the compact and dense networks)}.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from safetensors.numpy import save as safetensors_bytes

from lth.spec.files import UNREADABLE_JSON
from lth.errors import LthError
from lth.sparsity.masks import named_leaves
from lth.store.io import write_atomic
from lth.tickets.compact import CompactNetwork, input_axis
from lth.tickets.file import nest, read_safetensors

FORMAT = "lth-compact"
VERSION = 1
METADATA_KEY = "lth_compact"
INDEX_NOTE = {
    "features": "indices of the input features kept, into one example flattened in C order: gather them "
                "(x.reshape(len(x), -1)[:, input_index]) before the first layer; absent: every feature is read",
    "channels": "indices of the input channels kept (last axis): gather them (x[..., input_index]) before the "
                "first layer; absent: every channel is read",
}


def _with_shapes(layers: list[dict[str, Any]], params: Any) -> list[dict[str, Any]]:
    out = copy.deepcopy(layers)
    leaves = named_leaves(params)
    for layer in out:
        if layer["op"] in ("dense", "conv"):
            for part in ("kernel", "bias"):
                layer[part] = list(np.shape(leaves[f"{layer['params']}/{part}"]))
        elif layer["op"] == "residual":
            layer["body"] = _with_shapes(layer["body"], params)
            layer["shortcut"] = _with_shapes(layer["shortcut"], params)
    return out


def encode_compact(net: CompactNetwork, source: dict[str, Any] | None = None) -> bytes:
    """The bytes of a compact network file (module docstring)."""
    tensors = {path: np.ascontiguousarray(v) for path, v in named_leaves(net.params).items()}
    if net.input_index is not None:
        tensors["input_index"] = np.asarray(net.input_index, np.int32)
    source = source if source is not None else net.report.get("source")
    header = {
        "format": FORMAT, "version": VERSION, "model": net.report.get("model"), "input_shape": list(net.input_shape),
        "graph": _with_shapes(net.graph, net.params), "input_index": INDEX_NOTE[input_axis(net.graph)],
        "source": source, "report": {**net.report, "source": source},
    }
    return safetensors_bytes(tensors, metadata={METADATA_KEY: json.dumps(header, sort_keys=True)})


def save_compact(net: CompactNetwork, path: str | os.PathLike, source: dict[str, Any] | None = None) -> Path:
    """Write `net` (with `source`: where it came from) atomically to `path`; return the path."""
    path = Path(path)
    write_atomic(path, encode_compact(net, source))
    return path


def _read(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    where = str(path)
    if not Path(path).is_file():
        raise LthError(f"compact network file {where!r} not found: write one with `lth ticket compact TICKET`")
    metadata, tensors = read_safetensors(path, "compact network file", "write it again with `lth ticket compact`")
    try:
        header = json.loads(metadata[METADATA_KEY])
    except (KeyError, *UNREADABLE_JSON):
        raise LthError(f"{where!r} has no readable {METADATA_KEY!r} header: it is not an lth compact network "
                       "(`lth ticket compact` writes one)") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise LthError(f"{where!r} is not an lth compact network (format "
                       f"{header.get('format') if isinstance(header, dict) else None!r})")
    if header.get("version") != VERSION:
        raise LthError(f"compact network file {where!r} has version {header.get('version')!r}; this lth reads "
                       f"version {VERSION}: write it again with `lth ticket compact`")
    return header, tensors


def _check_shapes(layers: list[dict[str, Any]], tensors: dict[str, np.ndarray], seen: set[str]) -> None:
    for layer in layers:
        if layer["op"] in ("dense", "conv"):
            for part in ("kernel", "bias"):
                name = f"{layer['params']}/{part}"
                if list(tensors[name].shape) != list(layer[part]):
                    raise ValueError(name)
                seen.add(name)
        elif layer["op"] == "residual":
            _check_shapes(layer["body"] + layer["shortcut"], tensors, seen)


def load_compact(path: str | os.PathLike) -> CompactNetwork:
    """The compact network in a file of `save_compact`; a one-line LthError if it is missing,
    damaged, foreign, of another version, or its tensors do not match its header."""
    header, tensors = _read(path)
    try:
        seen = {"input_index"} if "input_index" in tensors else set()
        _check_shapes(header["graph"], tensors, seen)
        if seen != set(tensors):
            raise ValueError("tensors")
        input_shape = tuple(int(n) for n in header["input_shape"])
        report = dict(header["report"])
    except (KeyError, TypeError, ValueError):
        raise LthError(f"compact network file {str(path)!r} is inconsistent (its tensors do not match its "
                       "header): write it again with `lth ticket compact`") from None
    params = nest([(name, value) for name, value in tensors.items() if name != "input_index"])
    return CompactNetwork(header["graph"], params, tensors.get("input_index"), input_shape, report)
