"""The run store: the single owner of every path under a run root (layout, lock, resume points,
digests), atomic file io, orbax checkpoints, and level records across replicates."""

from lth.store.io import JsonlSink, read_json_list, read_jsonl, write_atomic, write_json
from lth.store.listing import describe_run, list_runs, locate_run, resolve_run
from lth.store.lock import LockedError, RunLock
from lth.store.records import AGGREGATED, aggregate, best_ticket
from lth.store.replicate import DamagedFileError, ReplicateDir
from lth.store.run_dir import (
    RunDir, check_mask_file, load_mask, open_run, read_config, replicate_paths, run_name, runs_root
)

__all__ = [
    "AGGREGATED", "DamagedFileError", "JsonlSink", "LockedError", "ReplicateDir", "RunDir", "RunLock", "aggregate",
    "best_ticket", "check_mask_file", "describe_run", "list_runs", "load_mask", "locate_run", "open_run",
    "read_config", "read_json_list", "read_jsonl", "replicate_paths", "resolve_run", "run_name", "runs_root",
    "write_atomic", "write_json",
]
