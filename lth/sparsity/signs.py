"""Sign perturbation of surviving weights (Gadhikar & Burkholz 2024, "Masks, Signs, and Learning
Rate Rewinding"): flip the sign of each weight a mask keeps, independently with probability
`fraction`. A pure function of pytrees; the draw is split from the caller's key."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from lth.sparsity.masks import Mask, Params

# The reference code's default (`--perturb-sign-ratio 0.3`, AdvaitGadhikar/imp-lrr-lts args.py).
SIGN_FLIP_FRACTION = 0.3


def _is_none(x: Any) -> bool:
    return x is None


def sign_flip_draws(mask: Mask, fraction: float, key: jax.Array) -> Mask:
    """A bool pytree like `mask`: True where a kept weight's sign is to flip (Bernoulli(`fraction`)
    per kept weight, one key per prunable leaf by its flattening index); `None` on unmasked leaves."""
    leaves, treedef = jax.tree_util.tree_flatten(mask, is_leaf=_is_none)
    draws = [None if m is None else jnp.logical_and(m, jax.random.bernoulli(jax.random.fold_in(key, i), fraction,
                                                                            jnp.shape(m)))
             for i, m in enumerate(leaves)]
    return jax.tree_util.tree_unflatten(treedef, draws)


def flip_signs(params: Params, flips: Mask) -> Params:
    """`params` with the entries marked in `flips` negated (|w| kept); unmasked leaves pass through."""
    return jax.tree.map(lambda f, p: p if f is None else jnp.where(f, -p, p), flips, params, is_leaf=_is_none)


def perturb_signs(params: Params, mask: Mask, key: jax.Array, fraction: float = SIGN_FLIP_FRACTION) -> Params:
    """Flip the sign of each weight `mask` keeps with probability `fraction` (`sign_flip_draws`)."""
    return flip_signs(params, sign_flip_draws(mask, fraction, key))


__all__ = ("SIGN_FLIP_FRACTION", "flip_signs", "perturb_signs", "sign_flip_draws")
