"""`lth ticket inspect`: a ticket file's header as text -- origin, accuracies and per-layer density."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from lth.tickets.file import load


def _percent(value: Any) -> str:
    return f"{100 * value:.2f} %" if isinstance(value, (int, float)) else "-"


def _origin(h: dict[str, Any]) -> list[str]:
    lines = []
    if "run" in h:
        lines.append(f"origin:   run {h['run']} (config {h.get('config_hash', '?')}), replicate "
                     f"{h.get('replicate', 0)}, level {h.get('level', '?')}, seed {h.get('seed', '?')}")
    if "model" in h or "dataset" in h:
        shape = "x".join(map(str, h.get("input_shape", []))) or "?"
        lines.append(f"model:    {h.get('model', '?')} on {h.get('dataset', '?')} (input {shape}, "
                     f"{h.get('num_classes', '?')} classes)")
    if "start_step" in h:
        schedule = "the retraining schedule" if h.get("retrained") else "the first level's schedule"
        lines.append(f"start:    iteration {h['start_step']}, trained with {schedule} (its run: retraining "
                     f"{h.get('retraining', '?')}, rewind point {h.get('rewind', '?')})")
    return lines


def _accuracies(record: dict[str, Any]) -> list[str]:
    if not record:
        return []
    early = record.get("early_stop_iteration")
    stop = "no early stop (no validation set)" if early is None else \
        f"early-stop test accuracy {_percent(record.get('early_stop_test_accuracy'))} at iteration {early}"
    return [f"record:   {stop}, final test accuracy {_percent(record.get('test_accuracy'))}, "
            f"best {_percent(record.get('best_test_accuracy'))}"]


def layer_rows(h: dict[str, Any]) -> list[str]:
    """The table of the ticket's leaves: path, shape, dtype, kept / size, density."""
    rows = [f"{'leaf':<28} {'shape':>12} {'dtype':>9} {'kept':>17} {'density':>9}"]
    for part in ("params", "model_state"):
        for e in h["leaves"].get(part, []):
            size = math.prod(int(s) for s in e["shape"])
            name = e["path"] if part == "params" else f"model_state/{e['path']}"
            shape = "x".join(map(str, e["shape"])) or "scalar"
            kept = f"{e['kept']:,} / {size:,}" if "kept" in e else f"{size:,} (whole)"
            density = _percent(e["kept"] / size) if "kept" in e and size else "-"
            rows.append(f"{name:<28} {shape:>12} {e['dtype']:>9} {kept:>17} {density:>9}")
    return rows


def describe(path: str | os.PathLike) -> str:
    """The text `lth ticket inspect` prints (the file is loaded and its digests checked first)."""
    h = load(path).metadata
    size = Path(path).stat().st_size
    trained = "yes" if h["sha256"].get("trained") else "no"
    lines = [
        f"ticket:   {path} ({size / 1000:,.1f} kB, {h['format']} v{h['version']}, lth {h.get('lth_version', '?')})",
        *_origin(h),
        f"density:  {_percent(h['density'])} ({h['weights_remaining']:,} of {h['weights_prunable']:,} prunable weights)"
        f"; trained weights: {trained}",
        *_accuracies(h.get("record") or {}),
        f"sha256:   {h['sha256']['ticket']}" + ("" if h["sha256"].get("header") else
                                                "  (its header is not covered by a digest: written by an older "
                                                "lth; export it again to protect it)"),
        "",
        *layer_rows(h),
    ]
    return "\n".join(lines)
