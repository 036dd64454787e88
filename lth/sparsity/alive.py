"""Which units of a masked network its compact network keeps, and what that network costs: pure
NumPy on the masks and the params' shapes (no weight values), so level records can carry it.

A unit (a dense layer's neuron, a conv layer's output channel, an input feature) is kept *alive*
unless the mask makes it removable without changing the function. `alive_units` iterates to a
fixpoint:

- **no output**: a hidden unit with no kept weight from it into an alive unit of any reader is
  dropped (also an input feature / input channel: an MLP's dead border pixels);
- **constant**: a hidden unit with no kept incoming weight from alive units outputs a constant,
  act(norm(bias)), the same at every position (a conv of a zero kernel is zero everywhere; a
  constant stays one through ReLU, max pooling, global mean and BatchNorm in evaluation mode).
  It is dropped and folded into its readers' biases where that is exact: dense readers (after a
  flatten or a global mean) and conv readers without padding. A conv reader with zero padding
  sees the constant inside and zeros on the border, so there the fold is inexact and the unit is
  KEPT (its kernel column is zero, its bias carries the constant);
- **zero**: a constant unit whose output members are masked (its bias masked or absent, or with a
  BatchNorm its scale and bias masked: a unit of structured pruning with every member masked)
  outputs exactly 0 and is dropped whatever reads it (zero padding adds zeros too);
- **residual streams** (`lth.models.spaces`): a stream unit is dropped only when it is dead in
  every writer and every reader: zero in every writer, or read by no kept weight into an alive unit
  of any reader. A nonzero constant stream unit is kept (the residual additions are not folded).

Output units (the classes) are always kept; the input of a one-channel "channels" graph too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from lth.models.graph import Layer, weighted_layers
from lth.models.spaces import Space


@dataclass(frozen=True)
class Wiring:
    """A weighted layer between two spaces: it reads space `source` (`positions` x its channels
    after a flatten) and writes space `target`."""

    layer: Layer
    source: int
    target: int
    positions: int


def wiring(graph: list[Layer], spaces: list[Space]) -> dict[str, Wiring]:
    """{layer path: Wiring} for every dense/conv layer of `graph`, in forward order."""
    reads = {r.layer: (s.index, r.positions) for s in spaces for r in s.readers}
    writes = {w: s.index for s in spaces for w in s.writers}
    out = {}
    for layer in weighted_layers(graph):
        path = layer["params"]
        source, positions = reads[path]
        out[path] = Wiring(layer, source, writes[path], positions)
    return out


def connections(wire: Wiring, kernel_mask: np.ndarray | None, shape: tuple[int, ...], in_size: int) -> np.ndarray:
    """(in units, out units) bool: whether any kept kernel entry joins the two (over the window and
    the flatten positions)."""
    if kernel_mask is None:
        return np.ones((in_size, shape[-1]), bool)
    m = np.asarray(kernel_mask, bool)
    if wire.layer["op"] == "dense":
        return m.reshape(wire.positions, in_size, shape[-1]).any(axis=0)
    return m.reshape(-1, in_size, shape[-1]).any(axis=0)


def _masked_out(mask_leaves: dict[str, Any], shapes: dict[str, Any], path: str, size: int) -> np.ndarray:
    """Per unit: whether leaf `path` is masked out (absent counts as zero: True)."""
    if path not in shapes:
        return np.ones(size, bool)
    m = mask_leaves.get(path)
    return np.zeros(size, bool) if m is None else ~np.asarray(m, bool).reshape(size)


def zero_valued(space: Space, writer: str, mask_leaves: dict[str, Any], shapes: dict[str, Any]) -> np.ndarray:
    """Per unit of `space`: whether `writer` outputs exactly 0 there once no input reaches it."""
    if writer in space.norms:
        norm = space.norms[writer]
        return (_masked_out(mask_leaves, shapes, f"{norm}/scale", space.size)
                & _masked_out(mask_leaves, shapes, f"{norm}/bias", space.size))
    return _masked_out(mask_leaves, shapes, f"{writer}/bias", space.size)


def foldable(layer: Layer) -> bool:
    """Whether a constant input folds exactly into `layer`'s bias (dense, or conv without padding)."""
    return layer["op"] == "dense" or not any(lo or hi for lo, hi in layer["padding"])


def alive_units(graph: list[Layer], spaces: list[Space], mask_leaves: dict[str, Any],
                shapes: dict[str, Any]) -> dict[int, np.ndarray]:
    """{space index: bool per unit, alive in the compact network} (module docstring for the rules).

    `mask_leaves`: {leaf path: bool array or None (all kept)}; `shapes`: {leaf path: shape} of the
    params (biases and norms absent where the model has none)."""
    wires = wiring(graph, spaces)
    by_index = {s.index: s for s in spaces}
    conn = {p: connections(w, mask_leaves.get(f"{p}/kernel"), tuple(shapes[f"{p}/kernel"]), by_index[w.source].size)
            for p, w in wires.items()}
    zero = {p: zero_valued(by_index[w.target], p, mask_leaves, shapes) for p, w in wires.items()}
    alive = {s.index: np.ones(s.size, bool) for s in spaces}
    fixed_input = bool(graph) and graph[0]["op"] == "channels"
    changed = True
    while changed:
        changed = False
        for s in spaces:
            if s.role == "output" or (s.role == "input" and fixed_input):
                continue
            keep = alive[s.index].copy()
            read = np.zeros(s.size, bool)
            for r in s.readers:
                read |= conn[r.layer][:, alive[wires[r.layer].target]].any(axis=1)
            keep &= read
            if s.role == "hidden":
                keep &= ~_removable_constant(s, wires, conn, zero, alive)
            if (keep != alive[s.index]).any():
                alive[s.index], changed = keep, True
    return alive


def in_dead(space: Space, writer: str, wires: dict[str, Wiring], conn: dict[str, np.ndarray],
            alive: dict[int, np.ndarray]) -> np.ndarray:
    """Per unit: no kept weight of `writer` reaches it from an alive unit."""
    return ~conn[writer][alive[wires[writer].source], :].any(axis=0)


def _removable_constant(space: Space, wires: dict[str, Wiring], conn: dict[str, np.ndarray],
                        zero: dict[str, np.ndarray], alive: dict[int, np.ndarray]) -> np.ndarray:
    dead = [in_dead(space, w, wires, conn, alive) for w in space.writers]
    is_zero = np.logical_and.reduce([d & zero[w] for d, w in zip(dead, space.writers)])
    if space.stream:
        return is_zero
    exact = all(foldable(wires[r.layer].layer) for r in space.readers)
    return is_zero | (dead[0] if exact else np.zeros(space.size, bool))


def _spatial_sizes(layers: list[Layer], spatial: tuple[int, ...], out: dict[str, tuple[int, ...]]
                   ) -> tuple[int, ...]:
    for layer in layers:
        op = layer["op"]
        if op == "conv":
            window = layer["window"]
            spatial = tuple((n + lo + hi - k) // s + 1 for n, (lo, hi), k, s
                            in zip(spatial, layer["padding"], window, layer["stride"]))
        elif op == "max_pool":
            spatial = tuple(n // w for n, w in zip(spatial, layer["window"]))
        elif op in ("flatten", "global_mean", "dense"):
            spatial = ()
        elif op == "residual":
            spatial_body = _spatial_sizes(layer["body"], spatial, out)
            _spatial_sizes(layer["shortcut"], spatial, out)
            spatial = spatial_body
        if op in ("dense", "conv"):
            out[layer["params"]] = spatial
    return spatial


def output_positions(graph: list[Layer], input_shape: tuple[int, ...]) -> dict[str, int]:
    """{layer path: output positions (product of its output's spatial sizes; 1 for dense)} for
    inputs of `input_shape` (without the batch axis)."""
    spatial = tuple(input_shape) if graph and graph[0]["op"] == "channels" else tuple(input_shape[:-1])
    out: dict[str, tuple[int, ...]] = {}
    _spatial_sizes(graph, spatial, out)
    return {path: math.prod(s) for path, s in out.items()}


def aligned(n: int, align: int, role: str) -> int:
    """Width `n` of a space padded to a multiple of `align` (hidden spaces only)."""
    return -(-n // align) * align if role == "hidden" and align > 1 else n


def compact_cost(graph: list[Layer], spaces: list[Space], alive: dict[int, np.ndarray],
                 input_shape: tuple[int, ...], align: int = 1) -> dict[str, Any]:
    """Params and MACs of the compact network (`alive` units, hidden widths padded to multiples of
    `align`) and of the dense one: {"params", "macs", "dense_params", "dense_macs", "units":
    {space name: [alive, total]}}. Params: kernels and biases (every compact layer has a bias;
    BatchNorm is folded into its conv, so no BN params, in both counts); MACs: the
    multiply-accumulates of the dense and conv layers of one example's forward."""
    by_index = {s.index: s for s in spaces}
    positions = output_positions(graph, tuple(input_shape))
    cost = {"params": 0, "macs": 0, "dense_params": 0, "dense_macs": 0}
    for path, w in wiring(graph, spaces).items():
        window = math.prod(w.layer.get("window", [1]))
        src, dst = by_index[w.source], by_index[w.target]
        for prefix, n_in, n_out in (("", aligned(int(alive[w.source].sum()), align, src.role),
                                     aligned(int(alive[w.target].sum()), align, dst.role)),
                                    ("dense_", src.size, dst.size)):
            weights = window * w.positions * n_in * n_out
            cost[f"{prefix}params"] += weights + n_out
            cost[f"{prefix}macs"] += weights * positions[path]
    return {**cost, "units": {s.name: [int(alive[s.index].sum()), s.size] for s in spaces}}
