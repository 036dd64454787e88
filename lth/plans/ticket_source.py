"""`lth run --ticket`: a ticket file, or (online) the name of a W&B ``ticket`` artifact that
`lth ticket export --wandb online` logged, e.g. ``ticket-lenet300_mnist-6a3f9c1e:best`` or
``entity/project/ticket-...:level-13`` (downloaded by `lth.execution.from_ticket` when the run starts)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from lth.errors import ConfigError

ARTIFACT_NAME = re.compile(r"^(?:[\w.-]+/){0,2}[\w.-]+:[\w.-]+$")


def is_artifact_name(ticket: Any) -> bool:
    """Whether `--ticket`'s value names a W&B artifact (NAME:ALIAS) rather than a file that exists."""
    return isinstance(ticket, str) and not Path(ticket).exists() and bool(ARTIFACT_NAME.match(ticket))


def check_ticket_artifact(ticket: Any, wandb_mode: str) -> bool:
    """Whether `ticket` names a W&B artifact; a one-line ConfigError when it does and W&B is not online
    (offline W&B cannot read artifacts)."""
    if not is_artifact_name(ticket):
        return False
    if wandb_mode != "online":
        raise ConfigError(f"no ticket file {ticket}; as a W&B artifact name it needs --wandb online (W&B reads "
                          f"artifacts only online), or download it (`wandb artifact get {ticket}`) and pass the file")
    return True
