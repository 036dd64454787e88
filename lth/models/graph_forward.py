"""Running a layer graph (`lth.models.graph`) on params: the evaluation-mode forward of any model
`lth` ships, of its masked tickets and of their compact networks (narrower params, same graph).

BatchNorm uses its running statistics (evaluation mode); a compact network has them folded into
its convs (``norm`` None) and runs the same code.
"""

from __future__ import annotations

import itertools
from typing import Any

import jax
import jax.numpy as jnp

from lth.models.graph import Layer, leaf_at

Params = Any


def _has(tree: Any, path: str) -> bool:
    try:
        leaf_at(tree, path)
    except (KeyError, TypeError):
        return False
    return True


def conv_xla(h: jax.Array, kernel: jax.Array, stride: tuple[int, ...], padding: list[tuple[int, int]]) -> jax.Array:
    """Channels-last cross-correlation by `jax.lax.conv_general_dilated` (XLA's convolution)."""
    spatial = "DHW"[-(kernel.ndim - 2):]
    return jax.lax.conv_general_dilated(h, kernel, window_strides=stride, padding=padding,
                                        dimension_numbers=(f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"))


def conv_shifted(h: jax.Array, kernel: jax.Array, stride: tuple[int, ...], padding: list[tuple[int, int]]) -> jax.Array:
    """The same cross-correlation as `conv_xla`, as a sum over the window's offsets of the (strided)
    shifted input times that offset's (in, out) kernel slice: one matmul per offset. On XLA:CPU this
    runs a few-channel conv many times faster than its convolution (`benchmarks/README.md`)."""
    window = kernel.shape[:-2]
    padded = jnp.pad(h, [(0, 0), *padding, (0, 0)])
    sizes = [(padded.shape[1 + a] - window[a]) // stride[a] + 1 for a in range(len(window))]
    out = None
    for offset in itertools.product(*(range(k) for k in window)):
        index = tuple(slice(o, o + (n - 1) * s + 1, s) for o, n, s in zip(offset, sizes, stride))
        term = padded[(slice(None), *index, slice(None))] @ kernel[offset]
        out = term if out is None else out + term
    return out


CONVS = {"xla": conv_xla, "shifted": conv_shifted}



def _weighted(layer: Layer, params: Params, state: Any, h: jax.Array, conv: str = "xla") -> jax.Array:
    path = layer["params"]
    kernel = leaf_at(params, f"{path}/kernel")
    if layer["op"] == "dense":
        h = h @ kernel
    else:
        h = CONVS[conv](h, kernel, tuple(layer["stride"]), [tuple(p) for p in layer["padding"]])
    if _has(params, f"{path}/bias"):
        h = h + leaf_at(params, f"{path}/bias")
    norm = layer.get("norm")
    if norm is not None:
        stats = leaf_at(state, f"batch_stats/{norm['params']}")
        h = (h - stats["mean"]) * jax.lax.rsqrt(stats["var"] + norm["epsilon"])
        h = h * leaf_at(params, f"{norm['params']}/scale") + leaf_at(params, f"{norm['params']}/bias")
    return _activate(layer.get("activation"), h)


def _activate(activation: str | None, h: jax.Array) -> jax.Array:
    return jax.nn.relu(h) if activation == "relu" else h


def run_layers(layers: list[Layer], params: Params, state: Any, h: jax.Array, conv: str = "xla") -> jax.Array:
    """`h` through `layers` in order (evaluation mode), convolutions by `CONVS[conv]`."""
    for layer in layers:
        op = layer["op"]
        if op in ("dense", "conv"):
            h = _weighted(layer, params, state, h, conv)
        elif op == "flatten":
            h = h.reshape((h.shape[0], -1))
        elif op == "channels":
            h = h[..., None] if h.ndim == 2 else h
        elif op == "max_pool":
            window = (1, *layer["window"], 1)
            h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, window, window, "VALID")
        elif op == "global_mean":
            h = jnp.mean(h, axis=tuple(range(1, h.ndim - 1)))
        elif op == "residual":
            h = _activate(layer["activation"], run_layers(layer["body"], params, state, h, conv)
                          + run_layers(layer["shortcut"], params, state, h, conv))
        else:
            raise ValueError(f"unknown layer op {op!r}")
    return h


def forward(graph: list[Layer], params: Params, state: Any, x: jax.Array, conv: str = "xla") -> jax.Array:
    """Logits of the network `graph` describes, with `params` and model `state` (BatchNorm statistics);
    convolutions by XLA's ("xla") or as sums of shifted matmuls ("shifted"): the same function."""
    return run_layers(graph, params, state or {}, x, conv)

