"""Run a function eagerly without the operations whose results it drops.

flax's `Module.init` runs the model's forward pass on a dummy input to find the shapes of its
variables, and throws the output away. Run eagerly (as lth runs an init: `jax.jit` of the same init
gives other bits), every operation of that forward pass is compiled on first use and run: on a cold
process, ~20 % of an MLP's init and ~15-40 % of a convolutional network's. `without_dead_ops(fn)`
traces `fn` once to a jaxpr, drops the equations no output depends on, and evaluates the rest
eagerly, one equation at a time: the same primitives with the same parameters on the same inputs,
so the same bits (`tests/test_live_ops.py` compares them on the registered models).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
from jax.extend.core import ClosedJaxpr, Jaxpr, Var, jaxpr_as_fun

# what tracing a function whose Python code needs concrete values raises: such a function runs as is
_NEEDS_VALUES = (jax.errors.ConcretizationTypeError, jax.errors.TracerBoolConversionError,
                 jax.errors.TracerIntegerConversionError, jax.errors.TracerArrayConversionError)


def live_equations(jaxpr: Jaxpr) -> Jaxpr:
    """`jaxpr` without the equations that no output needs (those with effects are kept)."""
    needed = {v for v in jaxpr.outvars if isinstance(v, Var)}
    kept = []
    for eqn in reversed(jaxpr.eqns):
        if eqn.effects or any(v in needed for v in eqn.outvars):
            kept.append(eqn)
            needed.update(v for v in eqn.invars if isinstance(v, Var))
    return jaxpr.replace(eqns=kept[::-1])


def without_dead_ops(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn`, evaluated eagerly without the operations whose results it drops (see the module
    docstring); a function that cannot be traced (it needs concrete values) runs as it is."""

    @functools.wraps(fn)
    def live(*args: Any) -> Any:
        try:
            closed, out_shapes = jax.make_jaxpr(fn, return_shape=True)(*args)
        except _NEEDS_VALUES:
            return fn(*args)
        run = jaxpr_as_fun(ClosedJaxpr(live_equations(closed.jaxpr), closed.consts))
        return jax.tree.unflatten(jax.tree.structure(out_shapes), run(*jax.tree.leaves(args)))

    return live
