"""Tickets as files and as fast networks: the ticket file (``.safetensors``: a mask, the weights it
starts from, model state and its origin), a ticket as the start of a run, the export of a finished
level of a run, its sizes, sparse inference for plain MLPs, and compaction (every model family):
the smaller dense network computing what the ticket computes, and its file.

    import lth.tickets
    lth.tickets.save("t.safetensors", mask, params, model_state, metadata={"note": "..."})
    ticket = lth.tickets.load("t.safetensors")   # Ticket(mask, params, model_state, metadata, trained)
"""

from lth.tickets.describe import describe
from lth.tickets.export import export_from_run
from lth.tickets.file import FORMAT, VERSION, Ticket, load, read_header, save
from lth.tickets.compact import CompactNetwork, compact_forward, compact_network, compact_runner
from lth.tickets.compact_file import load_compact, save_compact
from lth.tickets.inference import (
    dense_forward,
    mlp_forward,
    mlp_layers,
    sparse_forward,
    to_bcoo,
)
from lth.tickets.sizes import dense_sizes, masked_params, ticket_size, ticket_sizes
from lth.tickets.start import fit, run_setup, ticket_start, with_run_ticket

__all__ = [
    "FORMAT", "VERSION", "CompactNetwork", "Ticket", "compact_forward", "compact_network", "compact_runner",
    "dense_forward", "dense_sizes", "describe", "export_from_run", "fit", "load", "load_compact", "run_setup",
    "masked_params", "mlp_forward", "mlp_layers", "read_header", "save", "save_compact", "sparse_forward",
    "ticket_size", "ticket_sizes", "ticket_start", "to_bcoo", "with_run_ticket",
]
