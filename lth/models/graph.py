"""Every model `lth` ships as data: its forward pass as a list of layer descriptions (JSON types).

A graph is what structured pruning and compaction read to know which parameters form one unit
(a dense layer's neuron, a conv layer's output channel and the BatchNorm entries that normalise
it) and which layer reads it; it is also the architecture header of a compact network file, and
`lth.models.graph_forward.forward` runs it (a test checks it equals each model's own apply in
evaluation mode). Widths are not part of a graph: they are the shapes of the params it runs on,
so a compact network (narrower layers) has the same graph as the ticket it came from.

Layer descriptions (``op`` and its fields):

- ``{"op": "flatten"}``: (B, ...) -> (B, features), row-major over the trailing axes.
- ``{"op": "channels"}``: a (B, L) input read as one channel (B, L, 1) when it has no channel axis.
- ``{"op": "dense" | "conv", "params": PATH, "norm": PATH | None, "activation": "relu" | None}``:
  ``PATH/kernel`` (dense (in, out); conv (*window, in, out), channels last) and ``PATH/bias`` where
  the params hold one; a conv adds ``"stride"`` and ``"padding"`` (explicit (low, high) per spatial
  axis). ``norm``: a BatchNorm applied before the activation (params ``PATH/scale``, ``PATH/bias``,
  running statistics ``batch_stats/PATH/mean`` and ``var`` in the model state, ``"epsilon"``).
- ``{"op": "max_pool", "window": [..]}``: non-overlapping max pooling (stride = window, no padding).
- ``{"op": "global_mean"}``: the mean over the spatial axes.
- ``{"op": "residual", "body": [...], "shortcut": [...], "activation": "relu" | None}``:
  ``act(body(h) + shortcut(h))``, an empty shortcut being the identity.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from lth.errors import LthError
from lth.models.vgg import VGG_PLANS

Layer = dict[str, Any]
BN_EPSILON = 1e-5  # `lth.models.vgg.batch_norm`


def _dense(path: str, activation: str | None = "relu", norm: str | None = None) -> Layer:
    return {"op": "dense", "params": path, "norm": _norm(norm), "activation": activation}


def _conv(path: str, window: int, stride: int, pad: int, rank: int = 2, norm: str | None = None,
          activation: str | None = "relu") -> Layer:
    return {"op": "conv", "params": path, "stride": [stride] * rank, "padding": [[pad, pad]] * rank,
            "norm": _norm(norm), "activation": activation, "window": [window] * rank}


def _norm(path: str | None) -> dict[str, Any] | None:
    return None if path is None else {"params": path, "epsilon": BN_EPSILON}


def _pool() -> Layer:
    return {"op": "max_pool", "window": [2, 2]}


def _mlp(hidden: int, residual: bool = False, batch_norm: bool = False) -> list[Layer]:
    layers: list[Layer] = [{"op": "flatten"}]
    for i in range(1, hidden + 1):
        layer = _dense(f"fc{i}", norm=f"bn{i}" if batch_norm else None)
        # the MNIST-1D MLP: every hidden layer after the first adds its input (widths are equal there)
        layers.append({"op": "residual", "body": [layer], "shortcut": [], "activation": None}
                      if residual and i > 1 else layer)
    return [*layers, _dense("output", None)]


def _lenet5() -> list[Layer]:
    return [_conv("conv1", 5, 1, 2), _pool(), _conv("conv2", 5, 1, 0), _pool(), {"op": "flatten"},
            _dense("fc1"), _dense("fc2"), _dense("output", None)]


def _convnet(blocks: int) -> list[Layer]:
    layers: list[Layer] = []
    for b in range(blocks):
        layers += [_conv(f"conv{2 * b + 1}", 3, 1, 1), _conv(f"conv{2 * b + 2}", 3, 1, 1), _pool()]
    return [*layers, {"op": "flatten"}, _dense("fc1"), _dense("fc2"), _dense("output", None)]


def _vgg(depth: int) -> list[Layer]:
    layers: list[Layer] = []
    index = 0
    for spec in VGG_PLANS[depth]:
        if spec == "M":
            layers.append(_pool())
            continue
        index += 1
        layers.append(_conv(f"conv{index}", 3, 1, 1, norm=f"bn{index}"))
    return [*layers, {"op": "global_mean"}, _dense("output", None)]


def _resnet(depth: int) -> list[Layer]:
    layers: list[Layer] = [_conv("conv1", 3, 1, 1, norm="bn1")]
    per_stage = (depth - 2) // 6
    for s in range(3):
        for i in range(per_stage):
            block, stride = f"block{s + 1}_{i + 1}", 2 if s > 0 and i == 0 else 1
            body = [_conv(f"{block}/conv1", 3, stride, 1, norm=f"{block}/bn1"),
                    _conv(f"{block}/conv2", 3, 1, 1, norm=f"{block}/bn2", activation=None)]
            shortcut = ([_conv(f"{block}/shortcut", 1, stride, 0, norm=f"{block}/shortcut_bn", activation=None)]
                        if s > 0 and i == 0 else [])
            layers.append({"op": "residual", "body": body, "shortcut": shortcut, "activation": "relu"})
    return [*layers, {"op": "global_mean"}, _dense("output", None)]


def _cnn_mnist1d() -> list[Layer]:
    convs = [_conv(f"conv{i + 1}", k, 2, 1, rank=1) for i, k in enumerate((5, 3, 3))]
    return [{"op": "channels"}, *convs, {"op": "flatten"}, _dense("output", None)]


def _embed_mlp() -> list[Layer]:
    """Grokking Tickets' MLP (`lth.models.modular`): only the middle projection has an activation."""
    return [{"op": "flatten"}, _dense("embed", None), _dense("inproj"), _dense("outproj", None),
            _dense("unembed", None)]


_GRAPHS: dict[str, Callable[[], list[Layer]]] = {
    "lenet300_100": lambda: _mlp(2),
    "lenet300_100_bn": lambda: _mlp(2, batch_norm=True),
    "mlp_mnist1d": lambda: _mlp(2, residual=True),
    "mlp_tiny": lambda: _mlp(2),
    "lenet5": _lenet5,
    "conv2": lambda: _convnet(1),
    "conv4": lambda: _convnet(2),
    "conv6": lambda: _convnet(3),
    **{f"vgg{d}": (lambda d=d: _vgg(d)) for d in VGG_PLANS},
    "resnet20": lambda: _resnet(20),
    "resnet56": lambda: _resnet(56),
    "cnn_mnist1d": _cnn_mnist1d,
    "embed_mlp": _embed_mlp,
}


def model_graph(name: str) -> list[Layer]:
    """The forward pass of registered model `name` as layer descriptions (a fresh list)."""
    if name not in _GRAPHS:
        raise LthError(f"no layer graph for model {name!r}: structured pruning and compaction know "
                       f"{', '.join(sorted(_GRAPHS))}")
    return _GRAPHS[name]()


def graph_model_names() -> list[str]:
    return sorted(_GRAPHS)


def leaf_at(tree: Any, path: str) -> Any:
    """The leaf of nested dicts `tree` at "a/b/c"."""
    for part in path.split("/"):
        tree = tree[part]
    return tree


def weighted_layers(graph: list[Layer]) -> Iterator[Layer]:
    """The dense and conv layers of `graph` in forward order (residual bodies before their shortcuts)."""
    for layer in graph:
        if layer["op"] in ("dense", "conv"):
            yield layer
        elif layer["op"] == "residual":
            yield from weighted_layers(layer["body"])
            yield from weighted_layers(layer["shortcut"])
