"""Mask pytrees.

A mask has the structure of the params: a bool array (True = kept) on every prunable leaf and
`None` on every other leaf (biases, normalisation parameters), which are never masked. Which leaves
are prunable is a rule over flattened parameter paths such as ``"Dense_0/kernel"`` (flax linen) or
``"l1/kernel"`` (flax nnx ``State``; the trailing ``/value`` of an nnx Variable is dropped).

Everything here is a pure function of pytrees and works on any params pytree.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lth.errors import MaskError

Params = Any
Mask = Any

DEFAULT_PRUNABLE = (r".*kernel",)


def _is_none(x: Any) -> bool:
    return x is None


def path_name(key_path: tuple) -> str:
    """Flattened name of a pytree key path: ('Dense_0', 'kernel') -> 'Dense_0/kernel'."""
    parts = []
    for key in key_path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    if len(parts) > 1 and parts[-1] == "value":  # nnx Variable payload
        parts = parts[:-1]
    return "/".join(parts)


def named_leaves(tree: Any) -> dict[str, Any]:
    """{path name: leaf} in flattening order; `None` mask leaves are included."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_none)
    return {path_name(path): leaf for path, leaf in flat}


def nest(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Nested dicts from (path, value) pairs: "fc1/kernel" -> {"fc1": {"kernel": value}}."""
    tree: dict[str, Any] = {}
    for name, value in pairs:
        *parents, last = name.split("/")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return tree


def first_match(name: str, patterns: Iterable[str]) -> str | None:
    """The first regex in `patterns` that fully matches `name`, or None."""
    for pattern in patterns:
        if re.fullmatch(pattern, name):
            return pattern
    return None


def _compile_patterns(patterns: Iterable[str]) -> tuple[str, ...]:
    patterns = tuple(patterns)
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as err:
            raise MaskError(f"invalid parameter-path regex {pattern!r}: {err}") from None
    return patterns


def prunable_shapes(params: Params, prunable: Iterable[str] = DEFAULT_PRUNABLE) -> dict[str, tuple[int, ...]]:
    """{path: shape} of the leaves a full mask would cover; `params` may hold arrays or only shapes
    (``jax.eval_shape`` of a model's init). MaskError for a bad regex or no match."""
    patterns = _compile_patterns(prunable)
    shapes = {name: tuple(np.shape(leaf)) for name, leaf in named_leaves(params).items()
              if first_match(name, patterns) is not None}
    if not shapes:
        names = ", ".join(named_leaves(params)) or "(no leaves)"
        raise MaskError(
            f"no parameter matches the prunable patterns {list(patterns)}; parameter paths are: {names}"
        )
    return shapes


def connections(shapes: dict[str, tuple[int, ...]]) -> set[str]:
    """The leaves that connect units (kernels: 2 or more dimensions). Pruning all of one cuts the
    network; pruning all of a bias or a norm scale (1 dimension) only zeroes it."""
    return {name for name, shape in shapes.items() if len(shape) >= 2}


def make_mask(params: Params, prunable: Iterable[str] = DEFAULT_PRUNABLE) -> Mask:
    """A full mask (everything kept) over the leaves whose path matches a `prunable` regex."""
    patterns = _compile_patterns(prunable)
    prunable_shapes(params, patterns)  # one-line MaskError when nothing matches

    def leaf_mask(path: tuple, leaf: Any) -> Any:
        if first_match(path_name(path), patterns) is None:
            return None
        return jnp.ones(jnp.shape(leaf), dtype=bool)

    return jax.tree_util.tree_map_with_path(leaf_mask, params)


def check_mask(mask: Mask, params: Params) -> None:
    """Raise MaskError unless `mask` has the params' structure and each bool leaf its leaf's shape."""
    mask_leaves = named_leaves(mask)
    param_leaves = named_leaves(params)
    if list(mask_leaves) != list(param_leaves):
        missing = [k for k in param_leaves if k not in mask_leaves]
        extra = [k for k in mask_leaves if k not in param_leaves]
        detail = []
        if missing:
            detail.append(f"missing {missing[:3]}")
        if extra:
            detail.append(f"unexpected {extra[:3]}")
        raise MaskError(
            "mask does not fit the params: "
            + (", ".join(detail) or "leaves in a different order")
            + "; build masks with lth.masks.make_mask(params) for this model"
        )
    for name, m in mask_leaves.items():
        if m is None:
            continue
        if tuple(np.shape(m)) != tuple(np.shape(param_leaves[name])):
            raise MaskError(
                f"mask does not fit the params: {name} has shape {tuple(np.shape(m))} in the mask "
                f"but {tuple(np.shape(param_leaves[name]))} in the params; use a mask made for this model"
            )


def apply_mask(params: Params, mask: Mask) -> Params:
    """Zero the pruned entries of the masked leaves; unmasked leaves pass through."""
    return jax.tree.map(
        lambda m, p: p if m is None else jnp.where(m, p, jnp.zeros_like(p)), mask, params, is_leaf=_is_none
    )


def mask_leaves(mask: Mask) -> dict[str, jax.Array]:
    """{path: bool array} for the prunable leaves only."""
    return {k: v for k, v in named_leaves(mask).items() if v is not None}


def layer_counts(mask: Mask) -> dict[str, tuple[int, int]]:
    """{path: (weights remaining, weights in the layer)} for every prunable leaf."""
    return {k: (int(np.count_nonzero(np.asarray(v))), int(np.size(v))) for k, v in mask_leaves(mask).items()}



def kept_counts(mask: Mask) -> dict[str, int]:
    """{layer: weights kept} of a mask (`layer_counts` without the sizes)."""
    return {name: kept for name, (kept, _) in layer_counts(mask).items()}

def count_remaining(mask: Mask) -> int:
    """Number of prunable weights still kept."""
    return sum(kept for kept, _ in layer_counts(mask).values())


def count_prunable(mask: Mask) -> int:
    """Number of prunable weights (kept or not)."""
    return sum(size for _, size in layer_counts(mask).values())


def density(mask: Mask) -> float:
    """Fraction of prunable weights remaining (1.0 for a full mask)."""
    return count_remaining(mask) / count_prunable(mask)


def layer_densities(mask: Mask) -> dict[str, float]:
    """{path: fraction of that layer's weights remaining}."""
    return {k: kept / size for k, (kept, size) in layer_counts(mask).items()}


def overlap(a: Mask, b: Mask) -> float:
    """Jaccard overlap |a AND b| / |a OR b| of the kept weights of two masks of one model."""
    inter = union = 0
    for x, y in zip(mask_leaves(a).values(), mask_leaves(b).values(), strict=True):
        x, y = np.asarray(x), np.asarray(y)
        inter += int(np.count_nonzero(x & y))
        union += int(np.count_nonzero(x | y))
    return inter / union if union else 1.0


def sign_agreement(params_a: Params, params_b: Params, mask: Mask, per_layer: bool = False) -> Any:
    """The fraction of the weights kept by `mask` whose sign is the same in both params (e.g. at
    initialisation and after training; Zhou et al. 2019). A float, or {layer: fraction} with `per_layer`."""
    a, b = named_leaves(params_a), named_leaves(params_b)
    same = {}
    for name, m in mask_leaves(mask).items():
        m = np.asarray(m, dtype=bool)
        same[name] = np.sign(np.asarray(a[name])[m]) == np.sign(np.asarray(b[name])[m])
    if per_layer:
        return {name: float(s.mean()) if s.size else float("nan") for name, s in same.items()}
    total = sum(s.size for s in same.values())
    return float(sum(int(s.sum()) for s in same.values()) / total) if total else float("nan")


def mask_to_arrays(mask: Mask) -> dict[str, np.ndarray]:
    """The prunable leaves as {path: numpy bool array}, e.g. for `np.savez`."""
    return {k: np.asarray(v, dtype=bool) for k, v in mask_leaves(mask).items()}


def mask_from_arrays(arrays: dict[str, np.ndarray], params: Params) -> Mask:
    """Rebuild a mask for `params` from `mask_to_arrays` output; raises MaskError if it does not fit."""
    names = set(named_leaves(params))
    unknown = sorted(set(arrays) - names)
    if unknown:
        raise MaskError(
            f"mask does not fit the params: it names {unknown[:3]}, which the model does not have; "
            "use a mask saved from a run of the same model"
        )

    def leaf_mask(path: tuple, leaf: Any) -> Any:
        name = path_name(path)
        if name not in arrays:
            return None
        array = np.asarray(arrays[name])
        if array.shape != tuple(np.shape(leaf)):
            raise MaskError(
                f"mask does not fit the params: {name} has shape {array.shape} in the mask but "
                f"{tuple(np.shape(leaf))} in the model; use a mask saved from a run of the same model"
            )
        return jnp.asarray(array, dtype=bool)

    return jax.tree_util.tree_map_with_path(leaf_mask, params)


def mask_digest(mask: Mask) -> str:
    """SHA-256 of a mask's paths, shapes and bits: equal masks give equal digests."""
    h = hashlib.sha256()
    for name, array in mask_to_arrays(mask).items():
        h.update(f"{name}:{array.shape};".encode())
        h.update(np.packbits(array.reshape(-1)).tobytes())
    return h.hexdigest()
