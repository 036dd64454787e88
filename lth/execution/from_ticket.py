"""Runs that start from a ticket (`lth run EXPERIMENT --ticket FILE`): the ticket fitted to the run's
model, its digest in the config (so in the run's hash), and a copy in the run directory, from which
resumes, worker processes, controls and instability analysis read it."""

from __future__ import annotations

import os
from typing import Any

from lth.spec.config import replace
from lth.errors import ConfigError
from lth.lottery import Setup, with_start
from lth.sparsity.masks import Mask
from lth.plans.ticket_source import is_artifact_name
from lth.execution.ticket_artifact import download_ticket_artifact
from lth.store import RunDir
from lth.store.run_dir import artifact_downloads
from lth.tickets import Ticket, save, ticket_start


def start_from_ticket(setup: Setup, ticket: Ticket | str | os.PathLike | None, mask: Any,
                      runs_root: os.PathLike | None = None) -> tuple[Setup, Mask | None, Ticket | None]:
    """(setup, mask, ticket): with a ticket, level 0 starts from its weights and mask and the config
    names its digest; without one, everything unchanged (an error if the config names a ticket). A
    W&B artifact name (checked by the plan: online only) is downloaded into the run root first."""
    config = setup.config
    if is_artifact_name(ticket):
        ticket = download_ticket_artifact(ticket, artifact_downloads(runs_root))
    if ticket is None:
        if config.ticket is not None:
            raise ConfigError(f"this config starts from ticket {config.ticket[:12]}...: pass that ticket "
                              "(--ticket FILE)")
        return setup, mask, None
    start, mask, loaded = ticket_start(setup, ticket)
    if config.ticket is not None and config.ticket != loaded.digest:
        raise ConfigError(f"ticket {ticket} has SHA-256 {loaded.digest[:12]}..., but the config names ticket "
                          f"{config.ticket[:12]}...: pass the ticket the config names")
    return with_start(setup.with_config(replace(config, ticket=loaded.digest)), start), mask, loaded


def keep_ticket(run: RunDir, ticket: Ticket) -> None:
    """The ticket's copy in the run directory (written by process 0, once)."""
    if run.writable and not run.start_ticket_path.exists():
        save(run.start_ticket_path, ticket.mask, ticket.params, ticket.model_state, metadata=ticket.metadata,
             trained=ticket.trained)
