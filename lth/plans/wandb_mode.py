"""The W&B mode of a command: the argument, else $WANDB_MODE, else offline; checked before anything
is written (online without credentials is one line at once, not a failure later)."""

from __future__ import annotations

import netrc
import os
from urllib.parse import urlparse

from lth.errors import ConfigError, unknown_name
from lth.spec.names import WANDB_MODES


def resolve_wandb_mode(mode: str | None) -> str:
    """The W&B mode: the argument, else $WANDB_MODE, else offline (no account, no network)."""
    mode = mode or os.environ.get("WANDB_MODE") or "offline"
    mode = {"dryrun": "offline", "run": "online"}.get(mode, mode)
    if mode not in WANDB_MODES:
        raise unknown_name("W&B mode", mode, WANDB_MODES)
    return mode


def checked_wandb_mode(mode: str | None) -> str:
    """`resolve_wandb_mode`, and a one-line ConfigError at once for online mode without credentials
    (wandb itself would fail later, or wait ~90 s for the network)."""
    mode = resolve_wandb_mode(mode)
    if mode == "online" and not wandb_credentials_present():
        raise ConfigError("W&B online mode needs credentials: run `wandb login` or set WANDB_API_KEY, "
                          "or use --wandb offline (sync later)")
    return mode


def wandb_credentials_present() -> bool:
    """An API key in $WANDB_API_KEY or in ~/.netrc (or $NETRC) for the W&B host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname or "api.wandb.ai"
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
