"""The unit spaces of a layer graph: which layers write each hidden unit (a dense layer's neuron, a
conv layer's output channel) and which layers read it. Structured pruning removes units of a space;
compaction drops them; both read this one analysis.

A space is the channel axis of one tensor of the forward pass. Its *writers* are the dense / conv
layers whose output channels it is (with the BatchNorm normalising each); its *readers* the layers
whose input rows / channels it is. A residual addition joins the spaces it adds into one *stream*:
channel j of a ResNet stage is written by the stage's first conv (or its shortcut) and by the
second conv of every block of the stage, and read by each block's first conv and shortcut. A
stream's channel is one unit across all its writers (zero it in every writer and the stream carries
zero there), so a structured mask keeps the function well defined at every residual addition.

Shapes only (params may be ``jax.ShapeDtypeStruct``s); no jax arrays are built here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lth.models.graph import Layer, leaf_at


@dataclass
class Reader:
    """A layer reading a space: its kernel's input axis holds `positions` x the space's channels
    (position-major, channels last: row ``p * size + c``); positions > 1 after a flatten."""

    layer: str
    positions: int = 1


@dataclass
class Space:
    """One unit space: `size` units written by `writers` (layer param paths; none for the input) and
    read by `readers`. `role`: "input" (the network's input features), "hidden" or "output"."""

    index: int
    size: int
    role: str
    writers: list[str] = field(default_factory=list)
    norms: dict[str, str] = field(default_factory=dict)  # writer -> its BatchNorm's param path
    readers: list[Reader] = field(default_factory=list)
    stream: bool = False
    op: str = ""  # "dense" or "conv": the kind of layer writing it ("" for the input)

    @property
    def name(self) -> str:
        """The space's name in records and reports: its first writer's path ("input" for the input)."""
        return self.writers[0] if self.writers else "input"


class _Walk:
    def __init__(self, params: Any):
        self.params = params
        self.spaces: list[Space] = [Space(0, 0, "input")]
        self.parent: list[int] = [0]

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            i = self.parent[i]
        return i

    def join(self, a: int, b: int) -> int:
        a, b = self.find(a), self.find(b)
        if a != b:
            keep, gone = min(a, b), max(a, b)
            self.parent[gone] = keep
            space, other = self.spaces[keep], self.spaces[gone]
            space.writers += other.writers
            space.norms.update(other.norms)
            space.readers += other.readers
            space.stream = True
        self.spaces[a].stream = self.spaces[b].stream = True
        return min(a, b)

    def layers(self, layers: list[Layer], current: int, flat: bool) -> tuple[int, bool]:
        for layer in layers:
            op = layer["op"]
            if op in ("dense", "conv"):
                current, flat = self.weighted(layer, current, flat), False
            elif op == "flatten":
                flat = True
            elif op == "global_mean":
                flat = False
            elif op == "residual":
                body, _ = self.layers(layer["body"], current, flat)
                short, _ = self.layers(layer["shortcut"], current, flat)
                current = self.join(body, short)
        return current, flat

    def weighted(self, layer: Layer, current: int, flat: bool) -> int:
        shape = tuple(np.shape(leaf_at(self.params, f"{layer['params']}/kernel")))
        space = self.spaces[self.find(current)]
        fan_in = shape[-2]
        if space.role == "input" and space.size == 0:
            space.size = fan_in if layer["op"] == "dense" else shape[-2]
        positions = fan_in // space.size if flat and layer["op"] == "dense" else 1
        space.readers.append(Reader(layer["params"], positions))
        new = Space(len(self.spaces), shape[-1], "hidden", [layer["params"]], op=layer["op"])
        if layer.get("norm"):
            new.norms[layer["params"]] = layer["norm"]["params"]
        self.spaces.append(new)
        self.parent.append(new.index)
        return new.index


def unit_spaces(graph: list[Layer], params: Any) -> list[Space]:
    """The spaces of `graph` run on `params` (arrays or shapes), in forward order: the input first,
    the output (the classes, read by nobody) last; joined residual spaces appear once, as streams."""
    walk = _Walk(params)
    last, _ = walk.layers(graph, 0, False)
    walk.spaces[walk.find(last)].role = "output"
    return [s for s in walk.spaces if walk.find(s.index) == s.index]


def unit_members(space: Space, params_leaves: dict[str, Any]) -> list[tuple[str, int]]:
    """(leaf path, axis) of every parameter whose index along `axis` is a unit of `space`: each
    writer's kernel (last axis) and bias, and the scale and bias of the BatchNorm normalising it."""
    members = []
    for writer in space.writers:
        members.append((f"{writer}/kernel", -1))
        for path in (f"{writer}/bias", *(f"{space.norms[writer]}/{p}" for p in ("scale", "bias")
                                         if writer in space.norms)):
            if path in params_leaves:
                members.append((path, 0))
    return members
