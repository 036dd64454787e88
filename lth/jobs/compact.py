"""`lth ticket compact`: a ticket file's compact network (`lth.tickets.compact`) written as a compact
network file (`lth.tickets.compact_file`), with what was kept and what it costs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lth.store.queries import compact_output
from lth.tickets import load
from lth.tickets.compact import compact_network, ticket_network
from lth.tickets.compact_file import save_compact

START_NOTE = ("the ticket file has no trained weights (export it with `lth ticket export --trained` for them): "
              "this is the compact network of its START weights, the weights its training begins from")


def compact_ticket(ticket_path: str | os.PathLike, align: int = 1, out: str | os.PathLike | None = None
                   ) -> dict[str, Any]:
    """Compact the ticket in `ticket_path` (its trained weights if it has them, else its start weights)
    and write the file; return {"path", "bytes", "ticket_bytes", "weights", "note", "report"}."""
    ticket = load(ticket_path)
    header = ticket.metadata
    model, input_shape, params, weights = ticket_network(ticket, ticket_path)
    trained = weights == "trained"
    source = {"ticket": ticket.digest, "file": Path(ticket_path).name, "run": header.get("run"),
              "level": header.get("level"), "replicate": header.get("replicate"), "density": header.get("density"),
              "weights": "trained" if trained else "start", **({} if trained else {"note": START_NOTE})}
    net = compact_network(model, params, ticket.model_state, ticket.mask, input_shape, align, source=source)
    path = compact_output(ticket_path, out)
    save_compact(net, path, source)
    return {"path": path, "bytes": path.stat().st_size, "ticket_bytes": Path(ticket_path).stat().st_size,
            "weights": source["weights"], "note": None if trained else START_NOTE, "report": net.report}
