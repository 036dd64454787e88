"""A finished level of a run written as a sparse ticket file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from lth.analysis import load_run
from lth.errors import LthError
from lth.tickets.sizes import ticket_sizes
from lth.tickets.sparse_file import export_ticket, read_header


def export_from_run(run_ref: Any, level: int, replicate: int = 0, out: str | os.PathLike | None = None,
                    root: str | os.PathLike | None = None) -> dict[str, Any]:
    """Export the trained params and mask of a finished level of a run as a sparse ticket.

    `run_ref` is anything `lth.analysis.load_run` takes (a path, a directory name, a hash, an
    experiment name, an `ExperimentConfig`, a `Run`); `root` the run root. The params come from
    the level's final checkpoint, the mask from ``masks/level_XX.npz``. Writes `out`, by default
    ``<run>/replicate_XX/tickets/level_XX.npz``, and returns {"path", "level", "replicate",
    "density", "weights_remaining", and the sizes of `ticket_sizes` (bytes)}.
    """
    run = load_run(run_ref, root=root)
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)):
        raise LthError(f"level must be an integer, got {level!r}")
    params = run.params(int(level), replicate)  # checks the level and the replicate first
    mask = run.mask(int(level), replicate)
    path = Path(out) if out is not None else run.replicate(replicate).ticket_path(int(level))
    meta = {"run": run.name, "experiment": run.experiment, "level": int(level), "replicate": int(replicate),
            "model": run.config.get("model")}
    export_ticket(params, mask, path, meta=meta)
    sizes = ticket_sizes(params, mask, meta)
    header = read_header(path)
    return {
        "path": path,
        "level": int(level),
        "replicate": int(replicate),
        "density": header["density"],
        "weights_remaining": header["weights_remaining"],
        "sparse_bytes": path.stat().st_size,
        **{k: v for k, v in sizes.items() if k not in ("density", "encodings")},
        "encodings": sizes["encodings"],
    }
