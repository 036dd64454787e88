"""Sparse tickets, honestly: file size and inference latency of LeNet-300-100 at 100, 20, 5 and 1 %.

Run: ``.venv/bin/python benchmarks/sparse.py`` (``--json out.json`` to save the numbers, ``--help``);
``--run RUN`` for a run's trained tickets, ``--tickets FILE ...`` for ticket files of `lth ticket export`.

For LeNet-300-100 (784-300-100-10, 266,200 prunable weights, random init) and layerwise random
masks (every kernel keeps exactly round(d * size) weights; on a random init this is what
magnitude pruning gives in distribution), at each density d it measures

1. sizes: the ticket file of `lth.tickets.save` (``.safetensors``, written to a temporary directory,
   bytes on disk; every forward below runs on the weights and mask read back from it), of which the
   kept values and the deflated mask bits, and the masked params saved dense with
   ``np.savez_compressed`` and ``np.savez``; and the in-memory bytes of the BCOO kernels;
2. inference latency, batch 1 and batch 1000, jitted, one call = one forward to a blocked result,
   median (and minimum) of --repeats calls after warm-up, timed in 5 rounds of back-to-back calls
   per variant (the order rotating), so that a busy machine slows all variants alike:
   - dense: `lth.tickets.dense_forward` on the masked kernels (zeros and all: what training uses),
   - BCOO: `lth.tickets.sparse_forward` on `to_bcoo` kernels (``h @ bcoo``, jax.experimental.sparse),
   - compact: `lth.tickets.compact_network`, the structured alternative: the neurons the mask cut off
     (no kept outgoing weight, or no kept incoming weight: a constant folded into the next bias)
     are removed and a smaller dense MLP runs,
   - scipy CSR: the same forward in NumPy with scipy.sparse CSR kernels, not JAX: a reference for
     what an unstructured sparse kernel can do on this CPU;
3. how many input features and hidden neurons survive in the compact network.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# Runnable from anywhere without installing: put the repository root on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lth.tickets as ex  # noqa: E402
from lth.models import get_model  # noqa: E402
from lth.models.graph import model_graph  # noqa: E402
from lth.tickets.bench import csr_forward  # noqa: E402
from lth.tickets.timing import time_calls  # noqa: E402
from lth.sparsity.masks import count_remaining, layer_densities, make_mask  # noqa: E402
from lth.sparsity.masks import density as lth_density  # noqa: E402

INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
VARIANTS = ("dense", "bcoo", "compact", "scipy_csr")


def random_mask(params: Any, density: float, seed: int) -> Any:
    """Layerwise: every prunable leaf keeps exactly round(density * size) entries, chosen at random."""
    rng = np.random.default_rng(seed)

    def leaf(m):
        if m is None:
            return None
        keep = np.zeros(m.size, bool)
        keep[rng.choice(m.size, int(round(density * m.size)), replace=False)] = True
        return jnp.asarray(keep.reshape(m.shape))

    return jax.tree.map(leaf, make_mask(params), is_leaf=lambda x: x is None)


def bcoo_bytes(sparse_params: Any) -> int:
    return sum(int(p["kernel"].data.nbytes + p["kernel"].indices.nbytes + np.asarray(p["bias"]).nbytes)
               for p in sparse_params.values())


def random_cases(densities: list[float], seed: int):
    """(label, params, mask) per density: LeNet-300-100 at random init, layerwise random masks."""
    params, _ = get_model("lenet300_100", INPUT_SHAPE, NUM_CLASSES).init(jax.random.key(seed))
    for density in densities:
        yield {"density_requested": density}, params, random_mask(params, density, seed)


def run_cases(run_ref: str, densities: list[float], replicate: int, root: str | None, folder: Path):
    """(label, params, mask) per density: the finished level of a run whose density is nearest (log scale),
    exported with its trained weights (`lth ticket export --trained`) and read back from the file."""
    import lth.analysis as la

    run = la.load_run(run_ref, root=root)
    records = run.records[replicate] if replicate < len(run.records) else []
    if not records:
        raise SystemExit(f"run {run.name} has no finished level in replicate {replicate}")
    for density in densities:
        record = min(records, key=lambda r: abs(np.log(r["density"] / density)))
        level = int(record["level"])
        path = ex.export_from_run(run, level, replicate, out=folder / f"level_{level:02d}.safetensors",
                                  trained=True)["path"]
        yield from file_cases([path], {"density_requested": density})


def file_cases(paths: list[Path], extra: dict[str, Any] | None = None):
    """(label, params, mask) of ticket files: their trained weights if they have them, else their start weights."""
    for path in paths:
        ticket = ex.load(path)
        h = ticket.metadata
        label = {**(extra or {}), "ticket": str(path), "weights": "trained" if ticket.trained else "start"}
        if "level" in h:
            label.update(run=h.get("run"), level=h["level"])
            label.update({k: h.get("record", {}).get(k) for k in ("early_stop_test_accuracy", "test_accuracy")})
        yield label, ticket.trained if ticket.trained is not None else ticket.params, ticket.mask


def compact_report(net: Any) -> dict[str, Any]:
    """The compact network's units in this benchmark's table: inputs and hidden units kept, removed
    (no kept output) and folded (no kept input), nonzero and all entries of its kernels."""
    spaces = net.report["spaces"]
    hidden = ("fc1", "fc2")
    kernels = [np.asarray(net.params[n]["kernel"]) for n in ("fc1", "fc2", "output")]
    return {"inputs": [spaces["input"]["alive"], spaces["input"]["total"]],
            "hidden": {n: [spaces[n]["alive"], spaces[n]["total"]] for n in hidden},
            "removed_no_output": {n: spaces[n]["no_output"] for n in hidden},
            "folded_constant": {n: spaces[n]["folded"] for n in hidden},
            "weights": int(sum(np.count_nonzero(k) for k in kernels)),
            "dense_weights": int(sum(k.size for k in kernels))}


def run(cases, repeats_b1: int, repeats_big: int, big_batch: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed + 1)
    inputs = {1: rng.standard_normal((1, *INPUT_SHAPE)).astype(np.float32),
              big_batch: rng.standard_normal((big_batch, *INPUT_SHAPE)).astype(np.float32)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, params, mask in cases:
            density = lth_density(mask)
            path = ex.save(Path(tmp) / "ticket.safetensors", mask, params)
            on_disk = ex.ticket_size(path)
            sizes = ex.ticket_sizes(params, mask)
            assert on_disk["ticket"] == sizes["ticket_bytes"]
            ticket = ex.load(path)  # everything below runs on what the file holds
            params, mask = ticket.params, ticket.mask

            dense_params = jax.tree.map(jnp.asarray, ex.masked_params(params, mask))
            sparse_params = ex.to_bcoo(params, mask)
            net = ex.compact_network("lenet300_100", params, {}, mask, INPUT_SHAPE)
            report = compact_report(net)
            compact = ex.compact_runner(net)  # params on the device once, the program chosen once
            scipy_forward, _ = csr_forward(model_graph("lenet300_100"), ex.masked_params(params, mask), {})

            row: dict[str, Any] = {
                **label,
                "density": density,
                "layer_density": layer_densities(mask),
                "weights_remaining": count_remaining(mask),
                "ticket_file_bytes": on_disk["ticket"],
                "dense_compressed_bytes": sizes["dense_compressed"],
                "dense_raw_bytes": sizes["dense_raw"],
                "values_bytes": sizes["values_bytes"],
                "mask_bytes": sizes["mask_bytes"],
                "bcoo_memory_bytes": bcoo_bytes(sparse_params),
                "dense_memory_bytes": sizes["dense_array_bytes"],
                "compact": report,
                "latency_s": {},
            }
            for batch, x_np in inputs.items():
                x = jnp.asarray(x_np)
                reference = np.asarray(ex.dense_forward(dense_params, x))
                checks = {
                    "bcoo": np.asarray(ex.sparse_forward(sparse_params, x)),
                    "compact": np.asarray(compact(x)),
                    "scipy_csr": scipy_forward(x_np),
                }
                for name, out in checks.items():
                    np.testing.assert_allclose(out, reference, rtol=1e-4, atol=1e-4, err_msg=name)
                fns = {
                    "dense": lambda x=x: ex.dense_forward(dense_params, x),
                    "bcoo": lambda x=x: ex.sparse_forward(sparse_params, x),
                    "compact": lambda x=x: compact(x),
                    "scipy_csr": lambda x=x_np: scipy_forward(x),
                }
                row["latency_s"][str(batch)] = time_calls(fns, repeats_b1 if batch == 1 else repeats_big)
            rows.append(row)
            print(f"  measured density {100 * density:.2f} %", file=sys.stderr, flush=True)
    return {"rows": rows, "batches": [1, big_batch]}


# --------------------------------------------------------------------------- output


def _kb(n: int) -> str:
    return f"{n / 1000:,.1f}"


def _digits(value: float) -> int:
    return 0 if value >= 100 else 1 if value >= 10 else 2


def _pct(row: dict[str, Any]) -> str:
    text = f"{100 * row['density']:.3g} %"
    return f"{text} (level {row['level']})" if "level" in row else text


def tables(result: dict[str, Any]) -> str:
    rows = result["rows"]
    big = str(result["batches"][1])
    out = ["Sizes (kB = 1000 bytes)", ""]
    out.append("| density | weights kept | ticket file | of which values | of which mask bits "
               "| dense, np.savez_compressed | dense, np.savez | ticket / dense compressed | ticket / dense raw "
               "| BCOO in memory |")
    out.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        out.append(f"| {_pct(r)} | {r['weights_remaining']:,} | {_kb(r['ticket_file_bytes'])} kB "
                   f"| {_kb(r['values_bytes'])} kB | {_kb(r['mask_bytes'])} kB "
                   f"| {_kb(r['dense_compressed_bytes'])} kB | {_kb(r['dense_raw_bytes'])} kB "
                   f"| {r['ticket_file_bytes'] / r['dense_compressed_bytes']:.2f} "
                   f"| {r['ticket_file_bytes'] / r['dense_raw_bytes']:.3f} "
                   f"| {_kb(r['bcoo_memory_bytes'])} kB |")
    for batch in ("1", big):
        unit, scale = ("µs", 1e6) if batch == "1" else ("ms", 1e3)
        out += ["", f"Latency, batch {batch}: median ({unit}) per forward, the minimum in brackets; jitted "
                "(scipy: NumPy, not jitted); ratios of the medians (of the minima)", ""]
        out.append("| density | dense (masked) | BCOO | BCOO / dense | compact dense | compact / dense | scipy CSR |")
        out.append("|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            t = r["latency_s"][batch]

            def cell(name: str) -> str:
                return f"{t[name]['median'] * scale:,.{_digits(t[name]['median'] * scale)}f} " \
                       f"({t[name]['min'] * scale:,.{_digits(t[name]['min'] * scale)}f})"

            def ratio(name: str) -> str:
                return f"{t[name]['median'] / t['dense']['median']:.2f}x ({t[name]['min'] / t['dense']['min']:.2f}x)"

            out.append(f"| {_pct(r)} | {cell('dense')} | {cell('bcoo')} | {ratio('bcoo')} | {cell('compact')} "
                       f"| {ratio('compact')} | {cell('scipy_csr')} |")
    out += ["", "Compact network (structured alternative): units left of 784 inputs, 300 fc1, 100 fc2", ""]
    out.append("| density | inputs | fc1 | fc2 | fc1 / fc2 removed (no kept output) | fc1 / fc2 folded (no kept input) "
               "| kept weights in it | its dense weights |")
    out.append("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        c = r["compact"]
        out.append(f"| {_pct(r)} | {c['inputs'][0]} | {c['hidden']['fc1'][0]} | {c['hidden']['fc2'][0]} "
                   f"| {c['removed_no_output']['fc1']} / {c['removed_no_output']['fc2']} "
                   f"| {c['folded_constant']['fc1']} / {c['folded_constant']['fc2']} "
                   f"| {c['weights']:,} | {c['dense_weights']:,} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--densities", default="100,20,5,1", help="percent, comma-separated (default 100,20,5,1)")
    parser.add_argument("--repeats", type=int, default=200, help="timed calls per variant at batch 1 (default 200)")
    parser.add_argument("--repeats-big", type=int, default=20,
                        help="timed calls per variant at the big batch (default 20)")
    parser.add_argument("--batch", type=int, default=1000, help="the big batch (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="FILE", help="also write the numbers as JSON")
    parser.add_argument("--run", metavar="RUN", help="use a LeNet-300-100 run's trained tickets (the finished level "
                        "nearest each density) instead of random masks on a random init")
    parser.add_argument("--replicate", type=int, default=0, help="with --run: the replicate (default 0)")
    parser.add_argument("--runs", metavar="DIR", help="with --run: the run root (default $LTH_RUNS, else ./runs)")
    parser.add_argument("--tickets", nargs="+", metavar="FILE", help="benchmark these LeNet-300-100 ticket files "
                        "(`lth ticket export`; their trained weights if they have them) instead")
    args = parser.parse_args(argv)
    try:
        densities = [float(d) / 100 for d in args.densities.split(",")]
    except ValueError:
        parser.error(f"--densities: comma-separated percentages, got {args.densities!r}")
    if not all(0 < d <= 1 for d in densities):
        parser.error("--densities: each in (0, 100]")

    load_before = os.getloadavg()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as exported:
        if args.tickets:
            cases = file_cases([Path(p) for p in args.tickets])
        elif args.run:
            cases = run_cases(args.run, densities, args.replicate, args.runs, Path(exported))
        else:
            cases = random_cases(densities, args.seed)
        result = run(cases, args.repeats, args.repeats_big, args.batch, args.seed)
    result["source"] = (f"ticket files {', '.join(args.tickets)}" if args.tickets else f"run {args.run}" if args.run
                        else "random init, layerwise random masks")
    result["machine"] = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "numpy": np.__version__,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "wall_s": time.perf_counter() - t0,
        "repeats": {"1": args.repeats, str(args.batch): args.repeats_big},
    }
    m = result["machine"]
    print(f"LeNet-300-100, {result['source']}; jax {m['jax']} ({m['backend']}), {m['cpu_count']} CPU cores; "
          f"load average {m['load_average_before'][0]:.2f} before, {m['load_average_after'][0]:.2f} after; "
          f"{m['wall_s']:.0f} s\n")
    print(tables(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
