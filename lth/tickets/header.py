"""A ticket header's own checks: the digest of its fields (`header_digest`, kept in the header as
``sha256.header``), and the types and ranges of the fields training and `lth ticket inspect` read."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from lth.errors import LthError


def header_digest(header: dict[str, Any]) -> str:
    """SHA-256 of a header's fields other than its digests (its JSON, keys sorted)."""
    fields = {k: v for k, v in header.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# header fields that training or `lth ticket inspect` reads: (type, lowest value) when present
HEADER_FIELDS: dict[str, tuple[type, int | None]] = {
    "start_step": (int, 0), "data_level": (int, 0), "level": (int, 0), "replicate": (int, 0), "seed": (int, 0),
    "num_classes": (int, 1), "retrained": (bool, None), "model": (str, None), "dataset": (str, None),
}


def check_header_fields(header: dict[str, Any], where: str) -> None:
    """A one-line LthError for a header field of the wrong type or out of range (`HEADER_FIELDS`)."""
    for name, (kind, low) in HEADER_FIELDS.items():
        if name not in header:
            continue
        value = header[name]
        wrong_type = not isinstance(value, kind) or (kind is int and isinstance(value, bool))
        if wrong_type or (low is not None and value < low):
            want = f"{kind.__name__} >= {low}" if low is not None else kind.__name__
            raise LthError(f"ticket file {where!r}: its header field {name} is {value!r}, not a {want} (damaged or "
                           "edited): export the ticket again")
