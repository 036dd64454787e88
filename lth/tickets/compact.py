"""Compaction: the smaller dense network that computes what a masked ticket computes, for every
model family `lth` ships (its layer graph, `lth.models.graph`).

`compact_network` keeps the units `lth.sparsity.alive.alive_units` finds alive (its docstring has the
rules: units with no output dropped, constants folded into their readers' biases where exact and
kept where zero padding makes the fold inexact, zero units dropped, input features no kept weight
reads dropped), slices every kernel and bias to them, and folds each BatchNorm (evaluation mode,
running statistics) into the dense/conv layer before it, so the compact graph has no norms. The
folds are computed in float64 and stored in the params' dtype.

``align=N`` pads every hidden width up to a multiple of N with zero units (zero kernel columns and
bias: they output 0, and their rows in the readers are zero), also where that exceeds the
original width (every hidden width is then a multiple of N, which is what the hardware wants).
Input features and output units are never padded.

    net = compact_network("lenet5", params, model_state, mask, (28, 28, 1))
    logits = compact_forward(net, x)    # == model.apply(masked params, state, x, False) up to rounding
"""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass
from typing import Any
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from lth.errors import LthError
from lth.models.graph import Layer, model_graph
from lth.models.graph_forward import forward
from lth.models.spaces import Space, unit_spaces
from lth.sparsity.alive import (
    Wiring, alive_units, aligned, compact_cost, connections, in_dead, wiring, zero_valued,
)
from lth.sparsity.masks import named_leaves
from lth.tickets.file import nest


@dataclass
class CompactNetwork:
    """A compact network: `graph` (the model's layer graph, no norms), `params` (nested dicts of
    NumPy arrays: ``{layer: {"kernel", "bias"}}``), `input_index` (the input features kept, indices
    into the flattened input when the graph starts with a flatten, else input channels; None when
    all are kept), `input_shape` (one example's, as the ticket's model takes it) and `report`
    (`lth.sparsity.alive.compact_cost`'s numbers, "spaces": per space how many units were
    dropped and why, "align", "model", "source")."""

    graph: list[dict[str, Any]]
    params: dict[str, Any]
    input_index: np.ndarray | None
    input_shape: tuple[int, ...]
    report: dict[str, Any]


def input_axis(graph: list[Layer]) -> str:
    """What `input_index` indexes for `graph`: "features" (after a flatten) or "channels"."""
    return "features" if graph and graph[0]["op"] == "flatten" else "channels"


def compact_network(model_name: str, params: Any, state: Any, mask: Any, input_shape: tuple[int, ...],
                    align: int = 1, *, source: dict[str, Any] | None = None) -> CompactNetwork:
    """The compact network of `params` under `mask` (model state `state`: BatchNorm statistics)
    for model `model_name` on inputs of `input_shape`; `source` goes to the report as it is."""
    if isinstance(align, bool) or not isinstance(align, (int, np.integer)) or align < 1:
        raise LthError(f"align must be a positive integer, got {align!r}")
    graph = model_graph(model_name)
    leaves = {p: np.asarray(v) for p, v in named_leaves(params).items()}
    masks = {p: None if m is None else np.asarray(m, bool) for p, m in named_leaves(mask).items()}
    stats = {p: np.asarray(v) for p, v in named_leaves(state or {}).items()}
    spaces = unit_spaces(graph, leaves_tree(leaves))
    shapes = {p: v.shape for p, v in leaves.items()}
    alive = alive_units(graph, spaces, masks, shapes)
    by_index = {s.index: s for s in spaces}
    width = {s.index: aligned(int(alive[s.index].sum()), align, s.role) for s in spaces}
    constant = {s.index: np.zeros(s.size) for s in spaces}  # the value of each unit, were it constant
    out: list[tuple[str, np.ndarray]] = []
    for path, wire in wiring(graph, spaces).items():
        kernel, bias = _folded(path, wire, leaves, masks, stats, by_index[wire.source], constant, alive)
        target = by_index[wire.target]
        if not target.stream:  # dropped stream units are zero or unread: their value does not matter
            constant[target.index] = np.maximum(bias, 0) if wire.layer.get("activation") == "relu" else bias
        dtype = leaves[f"{path}/kernel"].dtype
        kernel = _sliced(kernel, wire, alive, width)
        bias = _pad(bias[alive[target.index]], width[target.index])
        out += [(f"{path}/kernel", kernel.astype(dtype)), (f"{path}/bias", bias.astype(dtype))]
    first = spaces[0]
    index = None if alive[first.index].all() else np.flatnonzero(alive[first.index]).astype(np.int32)
    report = {**compact_cost(graph, spaces, alive, input_shape, align),
              "spaces": _dropped(graph, spaces, alive, masks, shapes), "align": int(align), "model": model_name,
              "input_axis": input_axis(graph), "source": source}
    return CompactNetwork(_without_norms(graph), nest(out), index, tuple(int(n) for n in input_shape), report)


def leaves_tree(leaves: dict[str, np.ndarray]) -> dict[str, Any]:
    return nest(list(leaves.items()))


def _folded(path: str, wire: Wiring, leaves: dict[str, np.ndarray], masks: dict[str, Any],
            stats: dict[str, np.ndarray], source: Space, constant: dict[int, np.ndarray],
            alive: dict[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Layer `path`'s masked kernel and bias at full width in float64: the dropped constant units of
    its input folded into the bias, then its BatchNorm folded into both."""
    def masked(name: str) -> np.ndarray | None:
        if name not in leaves:
            return None
        value = leaves[name].astype(np.float64)
        return value if masks.get(name) is None else np.where(masks[name], value, 0.0)

    kernel = masked(f"{path}/kernel")
    bias = masked(f"{path}/bias")
    bias = np.zeros(kernel.shape[-1]) if bias is None else bias
    dropped = ~alive[source.index]
    if dropped.any() and source.role == "hidden":
        summed = kernel.reshape(-1, source.size, kernel.shape[-1]).sum(axis=0)
        bias = bias + constant[source.index][dropped] @ summed[dropped]
    norm = wire.layer.get("norm")
    if norm is not None:
        p = norm["params"]
        scale = masked(f"{p}/scale")
        shift = masked(f"{p}/bias")
        mean, var = (stats[f"batch_stats/{p}/{k}"].astype(np.float64) for k in ("mean", "var"))
        factor = (np.ones_like(mean) if scale is None else scale) / np.sqrt(var + norm["epsilon"])
        kernel = kernel * factor
        bias = (bias - mean) * factor + (0.0 if shift is None else shift)
    return kernel, bias


def _pad(array: np.ndarray, size: int, axis: int = -1) -> np.ndarray:
    pad = [(0, 0)] * array.ndim
    pad[axis] = (0, size - array.shape[axis])
    return np.pad(array, pad)


def _sliced(kernel: np.ndarray, wire: Wiring, alive: dict[int, np.ndarray], width: dict[int, int]) -> np.ndarray:
    """`kernel` restricted to the alive input / output units, padded to the aligned widths."""
    keep_in, keep_out = alive[wire.source], alive[wire.target]
    if wire.layer["op"] == "dense":
        k = kernel.reshape(wire.positions, keep_in.size, kernel.shape[-1])[:, keep_in][:, :, keep_out]
        k = _pad(_pad(k, width[wire.target], -1), width[wire.source], -2)
        return k.reshape(-1, k.shape[-1])
    k = kernel[..., keep_in, :][..., keep_out]
    return _pad(_pad(k, width[wire.target], -1), width[wire.source], -2)


def _dropped(graph: list[Layer], spaces: list[Space], alive: dict[int, np.ndarray], masks: dict[str, Any],
             shapes: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Per space: units alive and total, and of the dropped ones how many were folded constants,
    exact zeros and units without output; "kept_constant": alive units with no live input."""
    wires = wiring(graph, spaces)
    conn = {p: connections(w, masks.get(f"{p}/kernel"), tuple(shapes[f"{p}/kernel"]),
                           next(s.size for s in spaces if s.index == w.source)) for p, w in wires.items()}
    out = {}
    for s in spaces:
        dropped = ~alive[s.index]
        entry = {"alive": int(alive[s.index].sum()), "total": s.size, "folded": 0, "zero": 0,
                 "no_output": int(dropped.sum()), "kept_constant": 0}
        if s.role == "hidden":
            dead = np.logical_and.reduce([in_dead(s, w, wires, conn, alive) for w in s.writers])
            zero = dead & np.logical_and.reduce([zero_valued(s, w, masks, shapes) for w in s.writers])
            entry.update(zero=int((dropped & zero).sum()), folded=int((dropped & dead & ~zero).sum()),
                         no_output=int((dropped & ~dead).sum()), kept_constant=int((~dropped & dead).sum()))
        out[s.name] = entry
    return out


def _without_norms(layers: list[Layer]) -> list[Layer]:
    out = copy.deepcopy(layers)
    for layer in out:
        if layer["op"] in ("dense", "conv"):
            layer["norm"] = None
        elif layer["op"] == "residual":
            layer["body"], layer["shortcut"] = _without_norms(layer["body"]), _without_norms(layer["shortcut"])
    return out


@functools.lru_cache(maxsize=32)
def _program(graph_json: str, axis: str, gather: bool, conv: str) -> Callable[..., jax.Array]:
    graph = json.loads(graph_json)

    def run(params: Any, index: Any, x: jax.Array) -> jax.Array:
        if gather and axis == "features":
            x = jnp.take(x.reshape((x.shape[0], -1)), index, axis=1)
        elif gather:
            x = jnp.take(x, index, axis=-1)
        return forward(graph, params, {}, x, conv)

    return jax.jit(run)


def compact_runner(net: CompactNetwork, conv: str = "xla") -> Callable[[jax.Array], jax.Array]:
    """``x -> logits`` of the compact network with its params (and input index) already on the device
    and its compiled program chosen once: what to time (each call then costs only the forward).
    `conv`: how convolutions run (`lth.models.graph_forward.CONVS`: "xla" or "shifted")."""
    gather = net.input_index is not None
    program = _program(json.dumps(net.graph, sort_keys=True), input_axis(net.graph), gather, conv)
    params = jax.device_put(net.params)
    index = jax.device_put(net.input_index) if gather else None
    return lambda x: program(params, index, x)


def compact_forward(net: CompactNetwork, x: jax.Array) -> jax.Array:
    """Logits of the compact network on a batch `x` (jitted, one program per graph): the kept input
    features gathered, then `lth.models.graph_forward.forward`. To call it many times (timing), build
    `compact_runner(net)` once instead: this moves the params to the device at every call."""
    return compact_runner(net)(x)


def ticket_network(ticket: Any, path: str | Any) -> tuple[str, tuple[int, ...], Any, str]:
    """(model, input shape, weights, "trained" | "start") of a loaded ticket file: its trained weights if
    it has them, else its start weights. LthError for a file that does not name its model and input shape."""
    header = ticket.metadata
    if not isinstance(header.get("model"), str) or not isinstance(header.get("input_shape"), list):
        raise LthError(f"ticket file {str(path)!r} does not name its model and input shape (a file of "
                       "`lth.tickets.save` without them): compaction needs the file `lth ticket export` writes")
    trained = ticket.trained is not None
    return (header["model"], tuple(header["input_shape"]), ticket.trained if trained else ticket.params,
            "trained" if trained else "start")
