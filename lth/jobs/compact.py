"""`lth ticket compact`: a ticket file's compact network (`lth.tickets.compact`) written as a compact
network file (`lth.tickets.compact_file`), with what was kept and what it costs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lth.errors import LthError
from lth.store.queries import compact_output
from lth.tickets import load
from lth.tickets.compact import compact_network
from lth.tickets.compact_file import save_compact

START_NOTE = ("the ticket file has no trained weights (export it with `lth ticket export --trained` for them): "
              "this is the compact network of its START weights, the weights its training begins from")


def compact_ticket(ticket_path: str | os.PathLike, align: int = 1, out: str | os.PathLike | None = None
                   ) -> dict[str, Any]:
    """Compact the ticket in `ticket_path` (its trained weights if it has them, else its start weights)
    and write the file; return {"path", "bytes", "ticket_bytes", "weights", "note", "report"}."""
    ticket = load(ticket_path)
    header = ticket.metadata
    if not isinstance(header.get("model"), str) or not isinstance(header.get("input_shape"), list):
        raise LthError(f"ticket file {str(ticket_path)!r} does not name its model and input shape (a file of "
                       "`lth.tickets.save` without them): compaction needs the file `lth ticket export` writes")
    trained = ticket.trained is not None
    params = ticket.trained if trained else ticket.params
    source = {"ticket": ticket.digest, "file": Path(ticket_path).name, "run": header.get("run"),
              "level": header.get("level"), "replicate": header.get("replicate"), "density": header.get("density"),
              "weights": "trained" if trained else "start", **({} if trained else {"note": START_NOTE})}
    net = compact_network(header["model"], params, ticket.model_state, ticket.mask, tuple(header["input_shape"]),
                          align, source=source)
    path = compact_output(ticket_path, out)
    save_compact(net, path, source)
    return {"path": path, "bytes": path.stat().st_size, "ticket_bytes": Path(ticket_path).stat().st_size,
            "weights": source["weights"], "note": None if trained else START_NOTE, "report": net.report}
