"""Tables of runs, levels, layers and masks: shown as HTML in a notebook, as text elsewhere."""

from __future__ import annotations

import html
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lth.errors import LthError
from lth.sparsity.masks import Mask, layer_counts
from lth.store import list_runs
from lth.store.records import SPREAD


def _format(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.4g}"
    return str(value)


@dataclass(frozen=True)
class Table:
    """Rows of values under named columns; shown as an HTML table in a notebook, as text elsewhere."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]

    @classmethod
    def from_records(cls, records: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> Table:
        """A table of `records` (dicts); `columns` defaults to the first record's keys."""
        if columns is None:
            columns = list(records[0]) if records else []
        return cls(tuple(columns), tuple(tuple(r.get(c) for c in columns) for r in records))

    def __len__(self) -> int:
        return len(self.rows)

    def column(self, name: str) -> np.ndarray:
        """The values of one column as a NumPy array."""
        if name not in self.columns:
            raise LthError(f"no column {name!r}: the columns are {', '.join(self.columns)}")
        i = self.columns.index(name)
        return np.asarray([row[i] for row in self.rows])

    def to_records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]

    def to_text(self) -> str:
        cells = [list(self.columns)] + [[_format(v) for v in row] for row in self.rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(self.columns))]
        lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()

    def __repr__(self) -> str:
        return self.to_text()

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(_format(v))}</td>" for v in row) + "</tr>"
                       for row in self.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


LEVEL_COLUMNS = ("level", "percent_remaining", "weights_remaining", "early_stop_test_accuracy",
                 "early_stop_iteration", "test_accuracy", "best_test_accuracy", "compact_params", "compact_macs",
                 "train_flops", "cumulative_train_flops")


def level_table(records: Sequence[Mapping[str, Any]], columns: Sequence[str] = LEVEL_COLUMNS) -> Table:
    """One row per level: `columns` of the records (one replicate's, or `aggregate`'s), each followed
    by its `*_sample_std` column where the records have one that is not zero throughout (with layerwise
    pruning the densities are the same in every replicate), and `replicates` where present."""
    first = records[0] if records else {}
    cols: list[str] = []
    for c in columns:
        cols.append(c)
        if f"{c}_{SPREAD}" in first and any(r.get(f"{c}_{SPREAD}") for r in records):
            cols.append(f"{c}_{SPREAD}")
    if "replicates" in first and "replicates" not in cols:
        cols.append("replicates")
    return Table.from_records(records, cols)


def layer_density_table(records: Sequence[Mapping[str, Any]]) -> Table:
    """Levels x layers: the fraction of each prunable layer's weights remaining at every level.

    Columns: ``level``, ``percent_remaining``, then one per layer (its parameter path), from the
    records' ``layer_density``. Pass one replicate's records (`Run.records[r]`): the aggregated
    records have no per-layer densities.
    """
    if not records:
        return Table(("level", "percent_remaining"), ())
    if any("layer_density" not in r for r in records):
        raise LthError("these records have no layer_density (aggregated over replicates?): "
                       "pass one replicate's records, e.g. run.records[0]")
    layers: list[str] = []
    for r in records:
        layers += [name for name in r["layer_density"] if name not in layers]
    rows = tuple((r["level"], r["percent_remaining"], *(r["layer_density"].get(n, np.nan) for n in layers))
                 for r in records)
    return Table(("level", "percent_remaining", *layers), rows)


def mask_table(mask: Mask) -> Table:
    """One row per prunable layer of a mask: weights kept, weights in the layer, density; and a total."""
    counts = layer_counts(mask)
    rows = [(name, kept, size, kept / size) for name, (kept, size) in counts.items()]
    kept = sum(k for k, _ in counts.values())
    size = sum(n for _, n in counts.values())
    rows.append(("total", kept, size, kept / size if size else float("nan")))
    return Table(("layer", "kept", "weights", "density"), tuple(rows))


def runs_table(root: str | os.PathLike | None = None) -> Table:
    """Every run under the run root (`lth.store.list_runs`): name, hash, levels, replicates, best ticket."""
    rows = []
    for row in list_runs(root):
        best = row["best_ticket"]
        rows.append({
            "directory": Path(row["path"]).name,
            "experiment": row["name"],
            "hash": row["hash"],
            "levels": f"{row['levels_done']}/{row['levels_planned']}",
            "problems": "; ".join(row["problems"]) or None,
            "replicates": row["replicates"],
            "best_ticket_percent": None if best is None else best["percent_remaining"],
            "best_ticket_accuracy": None if best is None else best["early_stop_test_accuracy"],
        })
    columns = ("directory", "experiment", "hash", "levels", "replicates", "best_ticket_percent",
               "best_ticket_accuracy", "problems")
    return Table.from_records(rows, columns)
