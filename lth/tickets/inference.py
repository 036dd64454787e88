"""Running a ticket sparse, honestly: a plain lth MLP (``lth.models.mlp.MLP`` without ``residual``:
LeNet-300-100, ``mlp_tiny``) with its kernels as dense arrays or as ``jax.experimental.sparse.BCOO``
matrices, and `compact_mlp`, the structured alternative: it removes the neurons a mask has cut off
and returns a smaller dense MLP that computes the same function.

Generic models (convolutions, residual MLPs, BatchNorm) are out of scope for the sparse forward:
JAX's BCOO convolution (``sparse.bcoo_conv_general_dilated``, jax 0.10) handles only 1-D,
one-channel, unit-stride convolutions, and wrapping arbitrary flax modules would measure the
wrapping, not the sparsity. ``benchmarks/sparse.py`` measures all of it.
"""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import sparse

from lth.errors import LthError
from lth.sparsity.masks import Mask

Params = Any


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
    # alive[li]: the units of layer li's input (li = 0: the input features; li = len(layers): the outputs)
    alive = [np.ones(kernels[0].shape[0], bool)] + [np.ones(k.shape[1], bool) for k in kernels]
    no_output = {n: 0 for n in layers[:-1]}
    folded = {n: 0 for n in layers[:-1]}
    changed = True
    while changed:
        changed = False
        for li in range(len(layers)):  # the units feeding layer li: alive[li]
            live_out = keeps[li][:, alive[li + 1]].any(axis=1)
            dead = alive[li] & ~live_out
            if dead.any():
                alive[li][dead] = False
                if li > 0:
                    no_output[layers[li - 1]] += int(dead.sum())
                changed = True
        for li in range(1, len(layers)):  # hidden units (outputs of layer li - 1) without live inputs
            live_in = keeps[li - 1][alive[li - 1], :].any(axis=0)
            const = alive[li] & ~live_in
            if const.any():
                value = np.maximum(biases[li - 1][const], 0).astype(biases[li].dtype)
                biases[li] = (biases[li] + value @ kernels[li][const, :]).astype(biases[li].dtype)
                alive[li][const] = False
                folded[layers[li - 1]] += int(const.sum())
                changed = True
    out = {}
    for li, name in enumerate(layers):
        rows, cols = alive[li], alive[li + 1]
        out[name] = {"kernel": jnp.asarray(kernels[li][rows][:, cols]), "bias": jnp.asarray(biases[li][cols])}
    input_index = None if alive[0].all() else np.flatnonzero(alive[0]).astype(np.int32)
    report = {
        "inputs": [int(alive[0].sum()), int(alive[0].size)],
        "hidden": {n: [int(alive[li + 1].sum()), int(alive[li + 1].size)] for li, n in enumerate(layers[:-1])},
        "removed_no_output": no_output,
        "folded_constant": folded,
        "weights": int(sum(int(keeps[li][alive[li]][:, alive[li + 1]].sum()) for li in range(len(layers)))),
        "dense_weights": int(sum(int(alive[li].sum() * alive[li + 1].sum()) for li in range(len(layers)))),
    }
    return input_index, out, report


@jax.jit
def compact_forward(input_index: jax.Array | None, params: Params, x: jax.Array) -> jax.Array:
    """Jitted forward of `compact_mlp`'s network: the kept input features, then the dense MLP."""
    h = x.reshape((x.shape[0], -1))
    if input_index is not None:
        h = jnp.take(h, input_index, axis=1)
    return mlp_forward(params, h)
