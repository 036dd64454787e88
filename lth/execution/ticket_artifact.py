"""A W&B ``ticket`` artifact named by `lth run --ticket NAME:ALIAS` (online; checked by
`lth.plans.ticket_source`), downloaded to a local ticket file."""

from __future__ import annotations

import os
from pathlib import Path

from lth.errors import ConfigError, first_line


def download_ticket_artifact(name: str, root: Path) -> Path:
    """The one ticket file (.safetensors) of W&B artifact `name` (``[entity/][project/]NAME:ALIAS``;
    the project defaults to $WANDB_PROJECT, else "lth"), downloaded under `root`."""
    import wandb  # heavy: only for an artifact name

    if "/" not in name:
        name = f"{os.environ.get('WANDB_PROJECT') or 'lth'}/{name}"
    try:
        artifact = wandb.Api().artifact(name, type="ticket")
        folder = Path(artifact.download(root=str(root / name.replace("/", "_").replace(":", "_"))))
    except Exception as err:  # network, permissions, no such artifact: one line
        first = first_line(err)
        raise ConfigError(f"W&B artifact {name} could not be downloaded ({type(err).__name__}: {first})") from err
    files = sorted(folder.glob("*.safetensors"))
    if len(files) != 1:
        raise ConfigError(f"W&B artifact {name} holds {len(files)} ticket files (.safetensors), not one")
    return files[0]
