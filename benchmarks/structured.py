"""Smaller and faster, measured: a structured-pruning sweep's tickets against the latency of their
compact networks on this machine (the README's "Smaller and faster" section comes from here).

    lth sweep structured_lenet300                   # the runs (experiments/sweeps/structured_lenet300.py)
    python benchmarks/structured.py --sweep structured_lenet300 --out benchmarks/results/structured_lenet300

For every series of the sweep (one per `pruning.granularity`, and its `random_layerwise` control)
and every level: the mean and sample std over the seeds of the end-of-training test accuracy, the %
of weights remaining, the compact network's params and MACs (from the records), and the latency of
the compact network at batch 1 and 1024. The latency depends only on the compact network's widths
(the units alive per layer in the record, seed 0), so each distinct set of widths is built once
(`lth.tickets.compact.compact_network` of the model's init under a mask keeping those units) and
timed with `lth.tickets.timing.time_calls` beside the dense network in the same rounds, three times:
the median of the three medians.

The table row of each granularity is its sparsest level whose mean accuracy is within 1 point of the
dense network's; its seed-0 ticket is exported with its trained weights (`lth ticket export
--trained`), compacted and written (`lth ticket compact`) to measure the files. Writes
``<out>.json``, ``<out>.md`` (the table) and ``<out>.png`` (accuracy vs % weights, accuracy vs
batch-1024 latency with the Pareto front).
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lth.analysis.runs import load_run  # noqa: E402
from lth.jobs.compact import compact_ticket  # noqa: E402
from lth.models import get_model  # noqa: E402
from lth.models.graph import model_graph  # noqa: E402
from lth.models.graph_forward import forward  # noqa: E402
from lth.models.spaces import unit_spaces  # noqa: E402
from lth.sparsity.masks import make_mask  # noqa: E402
from lth.sparsity.structured import apply_units  # noqa: E402
from lth.sweeps.file import load_sweep  # noqa: E402
from lth.tickets import export_from_run  # noqa: E402
from lth.tickets.bench import device_description  # noqa: E402
from lth.tickets.compact import compact_network, compact_runner  # noqa: E402
from lth.tickets.timing import repeats_for, time_calls  # noqa: E402

CONTROL = "random_layerwise"
# under learning-rate rewinding a random structured control keeps random units of the previous level's
# trained network, most of them already pruned to zero: a ReLU unit with zero weights in and out gets no
# gradient and stays dead, so that control measures dead units, not a random choice (left off the chart)
DEGENERATE = "lr_rewind"
REPEATS = 3  # timings per network and batch: the median of their medians (the 2-core VM is shared)


def series_of(plan: Any, root: Path) -> dict[str, list[list[dict[str, Any]]]]:
    """{series label: [records of each seed]}: the main line of each granularity, and its control."""
    series: dict[str, list[list[dict[str, Any]]]] = {}
    for cell in plan.cells:
        run = load_run(root / cell.run_name)
        label = series_label(cell.config, plan.base)
        series.setdefault(label, []).append(run.records[0])
        for name, records in run.controls.items():
            series.setdefault(f"{label} + {name}", []).extend(records)
    return series


def series_label(config: Any, base: Any) -> str:
    """The granularity, and the per-layer rates and retraining that differ from the base experiment's
    ("neuron, fc1 30 %", "neuron, lr_rewind")."""
    own = [f"{pattern.split('/')[0]} {100 * fraction:g} %" for pattern, fraction in config.pruning.layer_fractions
           if (pattern, fraction) not in base.pruning.layer_fractions]
    if config.retraining != base.retraining:
        own.append(config.retraining)
    return ", ".join([config.pruning.granularity, *own])


def levels_of(per_seed: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per level: accuracy mean / std over the seeds, % remaining, compact params / MACs and units (seed 0)."""
    by_level: dict[int, list[dict[str, Any]]] = {}
    for records in per_seed:
        for r in records:
            by_level.setdefault(int(r["level"]), []).append(r)
    rows = []
    for level, rs in sorted(by_level.items()):
        acc = [100 * r["test_accuracy"] for r in rs]
        rows.append({"level": level, "seeds": len(rs), "accuracies": acc, "accuracy": statistics.mean(acc),
                     "accuracy_std": statistics.stdev(acc) if len(acc) > 1 else None,
                     "percent_remaining": statistics.mean(r["percent_remaining"] for r in rs),
                     "compact_params": rs[0].get("compact_params"), "compact_macs": rs[0].get("compact_macs"),
                     "units": rs[0].get("units")})
    return rows


class Timer:
    """Latency of compact networks of one model by their widths, each timed beside the dense network
    in the same rounds (`time_calls` rotates the order), so every ratio comes from one measurement.
    With convolutions, each network runs them both ways (`lth.models.graph_forward.CONVS`: XLA's, and
    as shifted matmuls) and keeps the faster, by measurement (which: the "conv" entry)."""

    def __init__(self, model: str, input_shape: tuple[int, ...], batches: tuple[int, ...], budget: float):
        self.model, self.input_shape, self.batches, self.budget = model, input_shape, batches, budget
        net = get_model(model, input_shape, 10)
        self.params, self.state = jax.tree.map(np.asarray, net.init(jax.random.key(0)))
        self.graph = model_graph(model)
        self.spaces = unit_spaces(self.graph, self.params)
        self.inputs = {b: jax.numpy.asarray(np.random.default_rng(b).standard_normal((b, *input_shape)), np.float32)
                       for b in batches}
        params, state = jax.device_put((self.params, self.state))
        self.convs = ("xla", "shifted") if any(s.op == "conv" for s in self.spaces) else ("xla",)
        self.dense_fns = {conv: functools.partial(jax.jit(functools.partial(forward, self.graph, conv=conv)),
                                                  params, state) for conv in self.convs}
        self.cache: dict[tuple, dict[str, dict[int, float]]] = {}

    def compact(self, units: dict[str, list[int]]) -> dict[str, dict[int, float]]:
        """{"compact": {batch: median ms}, "dense": {batch: median ms}, "conv": {"compact 1": "xla", ...}}
        of the compact network keeping the first `units[space][0]` units of each space, timed together
        with the dense network."""
        widths = tuple(units.get(s.name, [s.size])[0] for s in self.spaces)
        if widths not in self.cache:
            full = make_mask(self.params, (r".*kernel", r".*bias", r".*scale"))
            kept = {s.name: np.arange(s.size) < w for s, w in zip(self.spaces, widths)}
            mask = apply_units(full, [s for s in self.spaces if s.role != "output"], kept)
            net = compact_network(self.model, self.params, self.state, mask, self.input_shape)
            fns = {**{f"compact {conv}": compact_runner(net, conv) for conv in self.convs},
                   **{f"dense {conv}": fn for conv, fn in self.dense_fns.items()}}
            out: dict[str, dict[int, Any]] = {"compact": {}, "dense": {}, "conv": {}}
            for batch, x in self.inputs.items():
                calls = {name: (lambda fn=fn: fn(x)) for name, fn in fns.items()}
                once = max(t["median"] for t in time_calls(calls, repeats=2, rounds=1).values())
                repeats = repeats_for(once, self.budget / REPEATS, high=5000)
                runs = [time_calls(calls, repeats) for _ in range(REPEATS)]
                ms = {name: 1e3 * statistics.median(run[name]["median"] for run in runs) for name in calls}
                for kind in ("compact", "dense"):  # each with its faster convolution, by measurement
                    conv = min(self.convs, key=lambda c: ms[f"{kind} {c}"])
                    out[kind][batch] = ms[f"{kind} {conv}"]
                    out["conv"][f"{kind} {batch}"] = conv
            self.cache[widths] = out
        return self.cache[widths]


def table_rows(plan: Any, root: Path, series: dict[str, list[dict[str, Any]]], timer: Timer, folder: Path
               ) -> list[dict[str, Any]]:
    """The README table: the dense network, then per granularity its sparsest level within 1 point of
    the dense accuracy, with the seed-0 ticket's files (trained weights) measured. The dense accuracy
    is the mean of every series' level 0 (the same dense training per seed, up to float rounding: a
    structured mask also covers the biases, which compiles another program)."""
    mains = [levels for name, levels in series.items() if not name.endswith(CONTROL)]
    level0 = [levels[0] for levels in mains]
    pooled = [a for r in level0 for a in r["accuracies"]]
    dense = {**series["weight"][0], "accuracy": statistics.mean(pooled), "accuracy_std": statistics.stdev(pooled)}
    rows = [{"network": f"dense ({len(pooled)} runs: every series' level 0)", "level": 0,
             **_row_numbers(dense, timer)}]
    cells = {series_label(c.config, plan.base): c for c in plan.cells if c.replicate == 0}
    for name, levels in series.items():
        if name.endswith(CONTROL):
            continue
        within = [r for r in levels if r["accuracy"] >= dense["accuracy"] - 1.0]
        row = min(within, key=lambda r: (r["compact_macs"], r["percent_remaining"])) if within else levels[0]
        rows.append({"network": f"{name} ticket", "level": row["level"], **_row_numbers(row, timer),
                     **_files(root / cells[name].run_name, row["level"], folder)})
    rows[0].update(_files(root / cells["weight"].run_name, 0, folder))
    return rows


def _row_numbers(row: dict[str, Any], timer: Timer) -> dict[str, Any]:
    latency = timer.compact(row["units"])
    return {"accuracy": row["accuracy"], "accuracy_std": row["accuracy_std"],
            "percent_remaining": row["percent_remaining"], "params": row["compact_params"],
            "macs": row["compact_macs"], **{f"latency_ms_{b}": latency["compact"][b] for b in timer.batches},
            **{f"dense_latency_ms_{b}": latency["dense"][b] for b in timer.batches}, "convolutions": latency["conv"]}


def _files(run_path: Path, level: int, folder: Path) -> dict[str, int]:
    ticket = export_from_run(run_path, level, 0, out=folder / f"{run_path.name}-{level}.safetensors", trained=True)
    compact = compact_ticket(ticket["path"], out=folder / f"{run_path.name}-{level}.compact.safetensors")
    return {"ticket_bytes": ticket["bytes"], "compact_bytes": compact["bytes"]}


def markdown(rows: list[dict[str, Any]], batches: tuple[int, ...]) -> str:
    lat = " | ".join(f"latency b{b}, ms (x dense)" for b in batches)
    out = [f"| network | test acc. % (3 seeds) | % weights | params (compact) | MACs (compact) | {lat} "
           "| ticket file | compact file |", "|---" * (7 + len(batches)) + "|"]
    for r in rows:
        std = f" +- {r['accuracy_std']:.2f}" if r["accuracy_std"] is not None else ""
        cells = " | ".join(f"{r[f'latency_ms_{b}']:.3f} ({r[f'dense_latency_ms_{b}'] / r[f'latency_ms_{b}']:.2f}x)"
                           for b in batches)
        ticket = f"{r['ticket_bytes'] / 1000:,.0f} kB" if r["level"] else "-"
        name = r["network"] if r["network"].startswith("dense") else f"{r['network']} (level {r['level']})"
        out.append(f"| {name} | {r['accuracy']:.2f}{std} | {r['percent_remaining']:.1f} "
                   f"| {r['params']:,} | {r['macs']:,} | {cells} | {ticket} | {r['compact_bytes'] / 1000:,.0f} kB |")
    return "\n".join(out)


def latency_ticks(low: float, high: float) -> list[float]:
    """Tick values for a log axis from `low` to `high`: 1-2-5 per decade, or 1..9 per decade when the
    span is too short for three of those."""
    decades = [10.0 ** k for k in range(int(np.floor(np.log10(low))) - 1, int(np.ceil(np.log10(high))) + 1)]
    for steps in ((1, 2, 5), (1, 2, 3, 4, 5, 6, 7, 8, 9)):
        ticks = [round(d * m, 10) for d in decades for m in steps if low * 0.95 <= d * m <= high * 1.05]
        if len(ticks) >= 3:
            return ticks
    return ticks


def figure(series: dict[str, list[dict[str, Any]]], big: int, path: Path, title: str) -> None:
    """Accuracy vs % weights remaining, and vs the compact network's batch-1024 latency with the Pareto front."""
    from lth.analysis.chart import formatter, legend_outside, new_figure, percent_axis, series_style
    from lth.analysis.plots import save_figure

    fig, axes = new_figure(1, 2, 11.5, 4.2)
    left, right = axes[0]
    points = []
    for i, (name, levels) in enumerate(series.items()):
        if name.endswith(CONTROL) and DEGENERATE in name:
            continue  # see DEGENERATE
        color, marker = series_style(i)
        style = "--" if name.endswith(CONTROL) else "-"
        x = [r["percent_remaining"] for r in levels]
        y = [r["accuracy"] for r in levels]
        left.plot(x, y, style, color=color, marker=marker, markersize=4, label=name)
        latency = [r[f"compact_latency_ms_{big}"] for r in levels]
        right.plot(latency, y, style, color=color, marker=marker, markersize=4, linewidth=0.8, label=name)
        points += list(zip(latency, y))
    front, best = [], -np.inf
    for lat, acc in sorted(points):
        if acc > best:
            front.append((lat, acc))
            best = acc
    right.step(*zip(*front), where="post", color="0.3", linewidth=2, alpha=0.35, label="Pareto front")
    dense = statistics.median(r[f"dense_latency_ms_{big}"] for levels in series.values() for r in levels)
    right.axvline(dense, color="0.5", linestyle=":", label=f"dense network ({dense:.2f} ms, median)")
    percent_axis(left, [r["percent_remaining"] for levels in series.values() for r in levels])
    right.set_xscale("log")
    low, high = min(p[0] for p in points), max(max(p[0] for p in points), dense)
    right.set_xticks(latency_ticks(low, high))
    right.xaxis.set_major_formatter(formatter(lambda v, _: f"{v:g}"))
    right.xaxis.set_minor_formatter(formatter(lambda v, _: ""))
    right.set_xlabel(f"compact network latency at batch {big}, ms (median, this machine)")
    for ax in (left, right):
        ax.set_ylabel("test accuracy %, end of training (mean of seeds)")
        ax.grid(True, which="both", alpha=0.3)
    legend_outside(right, right.get_legend_handles_labels()[0])
    save_figure(fig, path, title)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweep", required=True, help="a sweep file's name (experiments/sweeps/)")
    parser.add_argument("--variant", default="default")
    parser.add_argument("--runs", default="runs", help="the run root the sweep wrote to")
    parser.add_argument("--out", required=True, help="output path without suffix: <out>.json, .md, .png")
    parser.add_argument("--budget", type=float, default=1.5, help="seconds of timed calls per network and batch")
    parser.add_argument("--replot", action="store_true", help="only redraw <out>.png and <out>.md from <out>.json")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.replot:
        saved = json.loads(out.with_suffix(".json").read_text())
        figure(saved["series"], 1024, out.with_suffix(".png"), saved["title"])
        out.with_suffix(".md").write_text(markdown(saved["table"], (1, 1024)) + "\n")
        return 0
    plan = load_sweep(args.sweep, args.variant)
    root = Path(args.runs)
    series = {name: levels_of(per_seed) for name, per_seed in series_of(plan, root).items()}
    base = plan.cells[0].config
    from lth.spec.catalog import DATASET_REGISTRY

    timer = Timer(base.model, DATASET_REGISTRY[base.data.name].input_shape, (1, 1024), args.budget)
    with tempfile.TemporaryDirectory() as tmp:
        rows = table_rows(plan, root, series, timer, Path(tmp))
    out.parent.mkdir(parents=True, exist_ok=True)
    for levels in series.values():
        for r in levels:
            times = timer.compact(r["units"])
            r.update({f"{k}_latency_ms_{b}": times[k][b] for k in ("compact", "dense") for b in timer.batches})
            r["convolutions"] = times["conv"]
    title = f"{plan.name}: accuracy vs size and measured latency"
    result = {"device": device_description(), "sweep": plan.dir_name, "title": title, "series": series, "table": rows}
    out.with_suffix(".json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    out.with_suffix(".md").write_text(markdown(rows, timer.batches) + "\n")
    figure(series, max(timer.batches), out.with_suffix(".png"), title)
    print(markdown(rows, timer.batches))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
