"""Running a ticket sparse, honestly: a plain lth MLP (``lth.models.mlp.MLP`` without ``residual``:
LeNet-300-100, ``mlp_tiny``) with its kernels as dense arrays or as ``jax.experimental.sparse.BCOO``
matrices. The structured alternative, the smaller dense network that computes the same function
(every model family), is `lth.tickets.compact`.

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
    from jax.experimental import sparse  # ~0.15-0.4 s of imports (scipy): only where BCOO is asked for

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
