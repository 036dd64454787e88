"""Tickets as files and as fast networks: the sparse ticket file, its sizes, the export of a finished
level of a run, and sparse / compact inference for plain MLPs."""

from lth.tickets.export import export_from_run
from lth.tickets.inference import (
    compact_forward,
    compact_mlp,
    dense_forward,
    mlp_forward,
    mlp_layers,
    sparse_forward,
    to_bcoo,
)
from lth.tickets.sizes import dense_sizes, masked_params, ticket_size, ticket_sizes
from lth.tickets.sparse_file import FORMAT, VERSION, export_ticket, import_ticket, index_dtype, read_header

__all__ = [
    "FORMAT", "VERSION", "compact_forward", "compact_mlp", "dense_forward", "dense_sizes", "export_from_run",
    "export_ticket", "import_ticket", "index_dtype", "masked_params", "mlp_forward", "mlp_layers", "read_header",
    "sparse_forward", "ticket_size", "ticket_sizes", "to_bcoo",
]
