"""What compaction would leave of a level's mask, for its record: the units alive per layer and the
compact network's parameters and MACs (`lth.sparsity.alive`, from the mask alone: no weights read,
so the numbers hold for the trained network and for its start alike)."""

from __future__ import annotations

import functools
from typing import Any

import jax
import numpy as np

from lth.models.graph import model_graph
from lth.models.spaces import Space, unit_spaces
from lth.sparsity.alive import alive_units, compact_cost
from lth.sparsity.masks import Mask, named_leaves, nest


@functools.lru_cache(maxsize=16)
def _structure(model: str, shapes_key: tuple[tuple[str, tuple[int, ...]], ...]
               ) -> tuple[list[dict[str, Any]], list[Space], dict[str, tuple[int, ...]]]:
    shapes = dict(shapes_key)
    tree = nest([(path, jax.ShapeDtypeStruct(shape, np.float32)) for path, shape in shapes.items()])
    graph = model_graph(model)
    return graph, unit_spaces(graph, tree), shapes


def compact_fields(model: str, params: Any, mask: Mask, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """{"units": {layer: [alive, total]} (every space but the classes; "input": the input features
    or channels), "compact_params", "compact_macs"} of `mask` on a `model` with `params` (arrays or
    shapes) for inputs of `input_shape`: kernels and biases of the compact network (BatchNorm folded
    into its layer) and the multiply-accumulates of one example's forward."""
    shapes_key = tuple((path, tuple(np.shape(leaf))) for path, leaf in named_leaves(params).items())
    graph, spaces, shapes = _structure(model, shapes_key)
    masks = {p: None if m is None else np.asarray(m, bool) for p, m in named_leaves(mask).items()}
    cost = compact_cost(graph, spaces, alive_units(graph, spaces, masks, shapes), tuple(input_shape))
    units = {s.name: cost["units"][s.name] for s in spaces if s.role != "output"}
    return {"units": units, "compact_params": int(cost["params"]), "compact_macs": int(cost["macs"])}


def record_compact(setup: Any, mask: Mask) -> dict[str, Any]:
    """`compact_fields` of `mask` in the run of `setup` (its model, initial params' shapes and input shape)."""
    return compact_fields(setup.config.model, setup.initial[0], mask, tuple(setup.dataset.input_shape))
