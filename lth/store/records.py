"""Level records across replicates: the mean and spread per level, and the best ticket of a run."""

from __future__ import annotations

import math
import statistics
from typing import Any

AGGREGATED = ("density", "percent_remaining", "weights_remaining", "test_accuracy", "early_stop_iteration",
              "early_stop_test_accuracy", "early_stop_val_loss", "best_test_accuracy")


def aggregate(per_replicate: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Mean and (population) standard deviation per level over the replicates that finished it.
    Levels are matched by their `level` field, so replicates may hold different sets of levels."""
    by_level: dict[int, list[dict[str, Any]]] = {}
    for records in per_replicate:
        for row in records:
            by_level.setdefault(int(row["level"]), []).append(row)
    out = []
    for level in sorted(by_level):
        rows = by_level[level]
        record: dict[str, Any] = {"level": level, "replicates": len(rows)}
        for key in AGGREGATED:
            values = [float(row[key]) for row in rows]
            record[key] = statistics.fmean(values)
            record[f"{key}_std"] = statistics.pstdev(values) if len(values) > 1 else 0.0
        out.append(record)
    return out


def best_ticket(records: list[dict[str, Any]], tolerance: float = 0.005) -> dict[str, Any] | None:
    """The sparsest level whose early-stop test accuracy is within `tolerance` (0.5 points) of level 0's
    (None without a finite level 0; levels with a non-finite accuracy never match)."""
    if not records or not math.isfinite(records[0].get("early_stop_test_accuracy", math.nan)):
        return None
    dense = records[0]["early_stop_test_accuracy"]
    matching = [r for r in records if math.isfinite(r.get("early_stop_test_accuracy", math.nan))
                and r["early_stop_test_accuracy"] >= dense - tolerance]
    return min(matching, key=lambda r: r["density"]) if matching else None
