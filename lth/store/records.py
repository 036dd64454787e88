"""Level records across replicates: the mean and spread per level, and the best ticket of a run."""

from __future__ import annotations

import math
import statistics
from typing import Any

AGGREGATED = ("density", "percent_remaining", "weights_remaining", "test_accuracy", "early_stop_iteration",
              "early_stop_test_accuracy", "early_stop_val_loss", "best_test_accuracy", "compact_params", "compact_macs",
              "iterations", "train_flops", "cumulative_iterations", "cumulative_train_flops",
              "first_test_95_iteration")
# fields that are null where a replicate never got there: their mean is over those that did, so the
# aggregate also counts them, in ``<field>_count``
COUNTED = ("first_test_95_iteration",)
SPREAD = "sample_std"
"""The spread of a field over replicates, in ``<field>_sample_std``: the sample standard deviation
(ddof=1, what an error bar over seeds estimates); null with fewer than two replicates."""


# fractions: finite and in [0, 1] wherever they are not null
FRACTIONS = ("density", "test_accuracy", "best_test_accuracy", "early_stop_test_accuracy", "early_stop_val_accuracy")


def is_finite_number(value: Any) -> bool:
    """A real number (not a bool), finite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def record_problem(record: Any) -> str | None:
    """Why a level record (a replicate's, or the mean over replicates) cannot be one lth wrote, or
    None: lth writes every number of a record finite (a run that diverges writes no record; a run
    without a validation set writes its early-stop fields as null, and only metrics.jsonl holds its
    NaN validation losses). A test accuracy that is null, a number that is NaN, infinite or a
    string, or a fraction (accuracy, density) outside [0, 1] is damage, never a point to plot."""
    if not isinstance(record, dict):
        return "not a record"
    if "test_accuracy" in record and record["test_accuracy"] is None:
        return "test_accuracy is null"
    for key in dict.fromkeys((*FRACTIONS, *AGGREGATED, *(f"{key}_{SPREAD}" for key in AGGREGATED))):
        value = record.get(key)
        if value is None:
            continue
        if not is_finite_number(value):
            return f"{key} is {value!r}, not a finite number"
        if key in FRACTIONS and not 0 <= value <= 1:
            return f"{key} is {value!r}, outside [0, 1]"
    return None


def aggregate(per_replicate: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Mean and sample standard deviation (ddof=1) per level over the replicates that finished it.
    Levels are matched by their `level` field, so replicates may hold different sets of levels. A
    field a record lacks or holds as null (the early stop of a run without a validation set) is
    left out of its mean; null when no replicate has it (`COUNTED` fields say how many had it)."""
    by_level: dict[int, list[dict[str, Any]]] = {}
    for records in per_replicate:
        for row in records:
            by_level.setdefault(int(row["level"]), []).append(row)
    out = []
    for level in sorted(by_level):
        rows = by_level[level]
        record: dict[str, Any] = {"level": level, "replicates": len(rows)}
        for key in AGGREGATED:
            values = [float(row[key]) for row in rows if row.get(key) is not None]
            record[key] = statistics.fmean(values) if values else None
            record[f"{key}_{SPREAD}"] = statistics.stdev(values) if len(values) > 1 else None
            if key in COUNTED:
                record[f"{key}_count"] = len(values)
        out.append(record)
    return out


def accuracy(record: dict[str, Any]) -> float | None:
    """A level's headline accuracy: at the early stop, or at the end of training when there is no
    early stop (no validation set)."""
    value = record.get("early_stop_test_accuracy")
    return value if value is not None else record.get("test_accuracy")


def best_ticket(records: list[dict[str, Any]], tolerance: float = 0.005) -> dict[str, Any] | None:
    """The sparsest level whose accuracy (`accuracy`) is within `tolerance` (0.5 points) of level
    0's (None without a finite level 0; levels with a non-finite accuracy never match)."""
    if not records or not is_finite_number(accuracy(records[0])):
        return None
    dense = accuracy(records[0])
    matching = [r for r in records if is_finite_number(accuracy(r)) and accuracy(r) >= dense - tolerance]
    return min(matching, key=lambda r: r["density"]) if matching else None
