"""A ticket as the start of a run: its mask and weights fitted to the run's model, checked first.

`ticket_start(setup, ticket)` gives the `lth.lottery.Start` (weights, model state, iteration) and
the mask with the model's pytree structure; a ticket of another model, or whose leaves do not
have the model's paths, shapes and dtypes, raises a one-line error (a `ConfigError` / `MaskError`).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lth.errors import ConfigError, LthError, MaskError
from lth.lottery import Setup, Start, init_params, prepare, with_start
from lth.sparsity.masks import Mask, named_leaves
from lth.store import RunDir
from lth.tickets.file import Ticket, load


def _fitted(where: str, part: str, tree: Any, template: Any) -> Any:
    """`tree` (nested dicts by path) rebuilt with `template`'s structure; MaskError if it differs."""
    got, want = named_leaves(tree), named_leaves(template)
    if set(got) != set(want):
        missing = [n for n in want if n not in got][:3]
        extra = [n for n in got if n not in want][:3]
        detail = ", ".join(filter(None, [f"missing {missing}" if missing else "",
                                         f"unexpected {extra}" if extra else ""]))
        raise MaskError(f"ticket {where} does not fit the model: its {part} has {detail}; retrain it with the model "
                        "it was exported from")
    for name, leaf in got.items():
        if leaf is None:  # an unmasked leaf of the mask
            continue
        shape = tuple(np.shape(want[name]))
        dtype = np.dtype(bool) if part == "mask" else np.dtype(want[name].dtype)
        if np.shape(leaf) != shape or np.asarray(leaf).dtype != dtype:
            raise MaskError(f"ticket {where} does not fit the model: {part} {name} is {np.asarray(leaf).dtype}"
                            f"{list(np.shape(leaf))} in the ticket but {dtype}{list(shape)} in the model (another "
                            "input or output shape?): retrain it on data of the shapes it was trained on")
    treedef = jax.tree_util.tree_structure(template)
    leaves = [None if got[n] is None else jnp.asarray(got[n], bool if part == "mask" else None) for n in want]
    return jax.tree_util.tree_unflatten(treedef, leaves)


def fit(ticket: Ticket, params: Any, model_state: Any, where: str = "file") -> tuple[Any, Mask, Any]:
    """(params, mask, model state) of `ticket` with the structure of the model's `params` and
    `model_state` (e.g. its init); MaskError naming the first leaf that does not fit."""
    fitted_params = _fitted(where, "params", ticket.params, params)
    mask = _fitted(where, "mask", ticket.mask, params)
    return fitted_params, mask, _fitted(where, "model state", ticket.model_state, model_state)


def ticket_start(setup: Setup, ticket: Ticket | str | os.PathLike) -> tuple[Start, Mask, Ticket]:
    """(start, mask, ticket) for a run of `setup` from `ticket` (a `Ticket` or a file): the start is
    the ticket's weights and model state at its start iteration, trained with the retraining
    schedule if it was a pruned level; errors (one line) for another model or leaves that do not fit."""
    where = repr(str(ticket)) if not isinstance(ticket, Ticket) else "(in memory)"
    ticket = ticket if isinstance(ticket, Ticket) else load(ticket)
    model = ticket.metadata.get("model")
    if model is not None and model != setup.config.model:
        raise ConfigError(f"ticket {where} is a {model} ticket but this experiment trains {setup.config.model}: "
                          f"retrain it with an experiment of model {model} (e.g. --set model={model})")
    params0, model_state0 = init_params(setup)
    params, mask, model_state = fit(ticket, params0, model_state0, where)
    meta = ticket.metadata
    step, level = int(meta.get("start_step", 0)), int(meta.get("data_level", meta.get("level", 0)))
    return Start(params, model_state, step, bool(meta.get("retrained", False)), level), mask, ticket


def with_run_ticket(setup: Setup, copy: str | os.PathLike) -> Setup:
    """The setup of a run that started from a ticket (its config names the ticket's digest), from
    the ticket's copy in the run directory (`copy`); `setup` itself for other runs."""
    if setup.config.ticket is None:
        return setup
    if not os.path.exists(copy):
        raise LthError(f"this run started from ticket {setup.config.ticket[:12]}..., but its copy {copy} is missing: "
                       "start the run again with `lth run ... --ticket FILE`")
    start, _, ticket = ticket_start(setup, copy)
    if ticket.digest != setup.config.ticket:
        raise LthError(f"{copy} has SHA-256 {ticket.digest[:12]}..., the run's config names "
                       f"{setup.config.ticket[:12]}...: start the run again with `lth run ... --ticket FILE`")
    return with_start(setup, start)


def run_setup(run: RunDir, data_root: str | os.PathLike | None = None) -> Setup:
    """An existing run's setup: its config prepared (data, model, compiled trainers) and, for a run
    that started from a ticket, level 0's start from that ticket's copy in the run directory. Every
    job and reader of an existing run (controls, instability, workers, export, check, analysis) builds
    its setup here, so none of them can forget the ticket."""
    return with_run_ticket(prepare(run.config, data_root), run.start_ticket_path)
