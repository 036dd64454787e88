"""Throughput of lth's masked training against this machine's XLA float32 matmul peak.

Run: ``.venv/bin/python benchmarks/throughput.py`` (or ``make bench``); ``--help`` for options.

One run measures, on MNIST-shaped random data (60,000 x 28x28x1 float32, 10 classes, made with
NumPy, no download):

1. the XLA float32 matmul peak: a jitted square matmul (n = 1024, 2048, 4096 by default), median
   of timed repetitions after warm-up, GFLOP/s = 2 n^3 / s, best size. It is measured before and
   after the training measurements and the higher value is the reference (a conservative one);
2. lth's masked training throughput for LeNet-300-100, batch 60, Adam, through the library code
   path (`lth.training.make_trainer(...).train_chunk`, one jitted `lax.scan` of 1000 steps = one
   epoch), dense and at 5 % density; the first call (compile + one epoch) is reported apart, the
   figure is the median of --repeats timed epochs after one more warm-up epoch;
3. the FLOPs of a training step, 6 * 266,200 * batch (forward 2, backward 4 per weight and sample),
   ~96 GFLOP per 60k-sample epoch, hence GFLOP/s and the fraction of the peak of point 1; also a
   "paired" fraction against an n=1024 matmul timed right before and after each epoch, which stays
   meaningful when other work shares the machine;
4. the peak RSS of the process.

The CPU time / wall time of each measurement ("cores used") is printed too: a run in which a
measurement got fewer than 1.5 cores is flagged as taken on a busy machine.

Target (2 CPU cores): masked LeNet-300-100 training at >= 50 % of the measured matmul peak.
"""

from __future__ import annotations

import argparse
import datetime as dt
import inspect
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# Runnable from anywhere without installing: put the repository root on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lth.spec.config import OptimizerConfig  # noqa: E402
from lth.data.dataset import Dataset  # noqa: E402
from lth.data.device import epoch_order, to_device  # noqa: E402
from lth.models import get_model  # noqa: E402
from lth.sparsity.masks import apply_mask, density, make_mask  # noqa: E402
from lth.training import make_trainer  # noqa: E402

NUM_TRAIN = 60_000
INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
BATCH = 60
STEPS_PER_EPOCH = NUM_TRAIN // BATCH  # 1000
LENET_WEIGHTS = 784 * 300 + 300 * 100 + 100 * 10  # 266,200 prunable weights (kernels)
TARGET_FRACTION = 0.5
PROBE_N = 1024  # matmul size timed right before and after each training epoch (the paired fraction)
BUSY_CORES = 1.5  # below this many cores used (CPU s / wall s) a measurement is flagged as contended


# --------------------------------------------------------------------------- helpers


def timed(fn, *args, **kwargs) -> tuple[Any, float, float]:
    """(result, wall seconds, process CPU seconds) of fn(...) run to completion."""
    c0, t0 = time.process_time(), time.perf_counter()
    out = jax.block_until_ready(fn(*args, **kwargs))
    return out, time.perf_counter() - t0, time.process_time() - c0


def peak_rss_mib() -> float:
    """Peak resident set size of this process, MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


_COMPILES = [0]


def _count_compiles(event: str, duration: float, **kwargs: Any) -> None:
    if event == "/jax/core/compile/backend_compile_duration":
        _COMPILES[0] += 1


jax.monitoring.register_event_duration_secs_listener(_count_compiles)


def backend_compiles() -> int:
    """XLA backend compilations in this process so far (jax.monitoring's public events)."""
    return _COMPILES[0]


# --------------------------------------------------------------------------- 1. matmul peak


def matmul_peak(sizes: list[int], repeats: int, warmup: int = 2) -> dict[str, Any]:
    """Best over `sizes` of the median GFLOP/s of a jitted float32 n x n matmul."""
    rng = np.random.default_rng(0)
    matmul = jax.jit(jnp.matmul)
    per_size = {}
    for n in sizes:
        a = jnp.asarray(rng.standard_normal((n, n), dtype=np.float32))
        b = jnp.asarray(rng.standard_normal((n, n), dtype=np.float32))
        for _ in range(warmup):
            jax.block_until_ready(matmul(a, b))
        walls, cpus = [], []
        for _ in range(repeats):
            _, wall, cpu = timed(matmul, a, b)
            walls.append(wall)
            cpus.append(cpu)
        median = statistics.median(walls)
        per_size[n] = {
            "median_s": median,
            "gflops": 2 * n**3 / median / 1e9,
            "cores_used": statistics.median(c / w for c, w in zip(cpus, walls)),
        }
        del a, b
    best = max(per_size, key=lambda n: per_size[n]["gflops"])
    return {"gflops": per_size[best]["gflops"], "best_n": best, "per_size": per_size}


def matmul_probe(n: int, repeats: int = 3):
    """A callable giving the median GFLOP/s of `repeats` jitted n x n matmuls (compiled and warm):
    the matmul rate right next to a training epoch, under the same load."""
    rng = np.random.default_rng(1)
    a = jnp.asarray(rng.standard_normal((n, n), dtype=np.float32))
    matmul = jax.jit(jnp.matmul)
    jax.block_until_ready(matmul(a, a))

    def probe() -> float:
        walls = [timed(matmul, a, a)[1] for _ in range(repeats)]
        return 2 * n**3 / statistics.median(walls) / 1e9

    return probe


# --------------------------------------------------------------------------- 2. lth training


def random_mnist(seed: int, eval_size: int, num_train: int = NUM_TRAIN) -> Dataset:
    """MNIST-shaped random data: standard-normal float32 images (as normalised MNIST), int32 labels;
    `num_train` training images (60,000 by default, as MNIST)."""
    rng = np.random.default_rng(seed)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.standard_normal((n, *INPUT_SHAPE), dtype=np.float32)
        y = rng.integers(0, NUM_CLASSES, n).astype(np.int32)
        return x, y

    x_train, y_train = split(num_train)
    x_val, y_val = split(eval_size)
    x_test, y_test = split(eval_size)
    return Dataset("random_mnist", x_train, y_train, x_val, y_val, x_test, y_test, NUM_CLASSES)


def random_mask(params: Any, keep: float, seed: int) -> Any:
    """A mask with exactly round(keep * size) True entries, at random, on every kernel leaf."""
    rng = np.random.default_rng(seed)
    full = make_mask(params)

    def leaf(m: Any) -> Any:
        if m is None:
            return None
        size = int(np.size(m))
        flat = np.zeros(size, dtype=bool)
        flat[rng.permutation(size)[: round(keep * size)]] = True
        return jnp.asarray(flat.reshape(np.shape(m)))

    return jax.tree.map(leaf, full, is_leaf=lambda x: x is None)


def chunk_caller(trainer, augment_key: jax.Array, length: int = STEPS_PER_EPOCH):
    """(state, mask, data, order, offset) -> trainer.train_chunk(..., length=`length` steps, by default one
    60k epoch), passing the augmentation key where this version of `train_chunk` takes one (unused
    without augmentation)."""
    try:
        takes_key = "augment_key" in inspect.signature(trainer.train_chunk).parameters
    except (TypeError, ValueError):
        takes_key = False
    if takes_key:
        return lambda s, m, d, o, off: trainer.train_chunk(s, m, d, o, off, augment_key, length=length)
    return lambda s, m, d, o, off: trainer.train_chunk(s, m, d, o, off, length=length)


def train_throughput(
    trainer,
    params: Any,
    model_state: Any,
    mask: Any,
    data,
    orders: list,
    repeats: int,
    augment_key: jax.Array,
    probe,
    steps: int = STEPS_PER_EPOCH,
) -> dict[str, Any]:
    """First call (compile + 1 epoch), 1 warm-up epoch, then `repeats` timed epochs, chained as in
    `lth.training.train` (each epoch continues from the previous state with its own batch order);
    an "epoch" is `steps` iterations (default 1000: 60,000 examples)."""
    chunk = chunk_caller(trainer, augment_key, steps)
    flops = 6 * LENET_WEIGHTS * BATCH * steps
    state = trainer.init_state(apply_mask(params, mask), model_state)
    offset = jnp.int32(0)
    compiles_before = backend_compiles()
    (state, metrics), first_s, _ = timed(chunk, state, mask, data, orders[0], offset)
    compiled = backend_compiles() > compiles_before
    (state, metrics), _, _ = timed(chunk, state, mask, data, orders[1], offset)
    walls, cpus, paired = [], [], []
    for e in range(repeats):
        before = probe()
        (state, metrics), wall, cpu = timed(chunk, state, mask, data, orders[2 + e], offset)
        after = probe()
        walls.append(wall)
        cpus.append(cpu)
        paired.append(flops / wall / 1e9 / max(before, after))
    if bool(np.any(np.asarray(metrics.evaluated))):
        raise RuntimeError("an evaluation ran inside a timed epoch; raise eval_every")
    median = statistics.median(walls)
    return {
        "density": density(mask),
        "first_call_s": first_s,
        "compiled_on_first_call": compiled,
        "compile_s_estimate": first_s - median if compiled or compiled is None else 0.0,
        "epoch_s": walls,
        "median_epoch_s": median,
        "min_epoch_s": min(walls),
        "samples_per_s": BATCH * steps / median,
        "gflop_per_epoch": flops / 1e9,
        "gflops": flops / median / 1e9,
        "cores_used": statistics.median(c / w for c, w in zip(cpus, walls)),
        "paired_fractions": paired,
        "paired_fraction": statistics.median(paired),
        "final_train_loss": float(np.asarray(metrics.train_loss)[-1]),
        "steps_done": int(state.step),
    }


# --------------------------------------------------------------------------- report


def fmt_table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for k, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed epochs per mask (median reported); default 5")
    parser.add_argument("--mm-repeats", type=int, default=7, help="timed matmuls per size; default 7")
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[1024, 2048, 4096], help="square matmul sizes; default 1024 2048 4096"
    )
    parser.add_argument("--density", type=float, default=0.05, help="density of the sparse mask; default 0.05")
    parser.add_argument("--eval-size", type=int, default=1000, help="validation and test examples (unused in timing)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke run: repeats 2, matmul n=1024 and 2048, 3 reps")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON to this path")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = min(args.repeats, 2)
        args.mm_repeats = min(args.mm_repeats, 3)
        args.sizes = [n for n in args.sizes if n <= 2048] or [1024]
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")

    t_start = time.perf_counter()
    load_before = os.getloadavg()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPU cores, "
          f"load {load_before[0]:.2f}")

    # 1. matmul peak, before the training measurements
    peak_before = matmul_peak(args.sizes, args.mm_repeats)
    print(f"matmul peak (before): {peak_before['gflops']:.0f} GFLOP/s at n={peak_before['best_n']}")

    # 2. training
    t0 = time.perf_counter()
    ds = random_mnist(args.seed, args.eval_size)
    data = to_device(ds)
    data_s = time.perf_counter() - t0
    model = get_model("lenet300_100", INPUT_SHAPE, NUM_CLASSES)
    params, model_state = model.init(jax.random.key(args.seed))
    epochs_per_mask = 2 + args.repeats
    total_steps = STEPS_PER_EPOCH * (epochs_per_mask + 1)  # never reached: no end-of-training evaluation
    trainer = make_trainer(
        model,
        OptimizerConfig(name="adam", learning_rate=1.2e-3),
        total_steps=total_steps,
        steps_per_epoch=STEPS_PER_EPOCH,
        batch_size=BATCH,
        eval_every=10**9,  # no evaluation inside the timed epochs
    )
    key = jax.random.key(args.seed + 1)
    # The batch orders are made before timing (lth.training.train makes one per epoch between chunks).
    jax.block_until_ready(epoch_order(key, 0, NUM_TRAIN, BATCH))  # compile
    orders, order_walls = [], []
    for e in range(epochs_per_mask):
        order, wall, _ = timed(epoch_order, key, e, NUM_TRAIN, BATCH)
        orders.append(order)
        order_walls.append(wall)

    probe_n = min(args.sizes, key=lambda n: abs(n - PROBE_N))
    probe = matmul_probe(probe_n)
    masks = {"dense": make_mask(params), f"{args.density:.0%} density": random_mask(params, args.density, args.seed)}
    results = {}
    compiles_at_start = None
    for name, mask in masks.items():
        results[name] = train_throughput(
            trainer, params, model_state, mask, data, orders, args.repeats, jax.random.key(args.seed + 2), probe
        )
        r = results[name]
        if compiles_at_start is None:  # after the first mask's run: everything is compiled once
            compiles_at_start = backend_compiles()
        print(
            f"train {name}: first call {r['first_call_s']:.2f} s, median epoch {r['median_epoch_s']:.3f} s "
            f"({r['samples_per_s']:,.0f} samples/s)"
        )
    recompiles = backend_compiles() - compiles_at_start

    # 1'. matmul peak again, after
    peak_after = matmul_peak(args.sizes, args.mm_repeats)
    print(f"matmul peak (after):  {peak_after['gflops']:.0f} GFLOP/s at n={peak_after['best_n']}")
    peak = max(peak_before["gflops"], peak_after["gflops"])

    for r in results.values():
        r["fraction_of_peak"] = r["gflops"] / peak
        r["target_met"] = r["fraction_of_peak"] >= TARGET_FRACTION
    rss = peak_rss_mib()
    load_after = os.getloadavg()
    total_s = time.perf_counter() - t_start

    rows = [("figure", "value")]
    rows.append(("matmul peak, before training (GFLOP/s)", f"{peak_before['gflops']:.0f} (n={peak_before['best_n']})"))
    rows.append(("matmul peak, after training (GFLOP/s)", f"{peak_after['gflops']:.0f} (n={peak_after['best_n']})"))
    rows.append(("matmul peak, reference = max (GFLOP/s)", f"{peak:.0f}"))
    for n in args.sizes:
        b, a = peak_before["per_size"][n], peak_after["per_size"][n]
        rows.append(
            (
                f"  matmul n={n}: GFLOP/s before / after (cores used)",
                f"{b['gflops']:.0f} / {a['gflops']:.0f} ({b['cores_used']:.2f} / {a['cores_used']:.2f})",
            )
        )
    epoch_gflop = 6 * LENET_WEIGHTS * BATCH * STEPS_PER_EPOCH / 1e9
    rows.append(("training FLOPs per epoch (6*266,200*60*1000)", f"{epoch_gflop:.1f} GFLOP"))
    for name, r in results.items():
        if r["compiled_on_first_call"] is False:
            rows.append((f"{name}: first call (no compile: program reused) (s)", f"{r['first_call_s']:.2f}"))
        else:
            rows.append((f"{name}: first call = compile + 1 epoch (s)", f"{r['first_call_s']:.2f}"))
            rows.append((f"{name}: compile = first call - median epoch (s)", f"{r['compile_s_estimate']:.2f}"))
        rows.append((f"{name}: median epoch of {args.repeats} (s)", f"{r['median_epoch_s']:.3f}"))
        rows.append((f"{name}: samples/s", f"{r['samples_per_s']:,.0f}"))
        rows.append((f"{name}: GFLOP/s", f"{r['gflops']:.0f}"))
        rows.append((f"{name}: fraction of matmul peak", f"{r['fraction_of_peak']:.1%}"))
        rows.append((f"{name}: paired fraction (vs n={probe_n} matmul next to each epoch)",
                     f"{r['paired_fraction']:.1%}"))
        rows.append((f"{name}: cores used (CPU s / wall s)", f"{r['cores_used']:.2f}"))
    rows.append(("backend compilations after the first mask's epochs (0 = no recompile)", str(recompiles)))
    rows.append(("epoch_order per epoch, not in the timed epoch (ms)", f"{statistics.median(order_walls) * 1e3:.1f}"))
    rows.append(("peak RSS (MiB)", f"{rss:.0f}"))
    rows.append(("load average 1 min, start / end", f"{load_before[0]:.2f} / {load_after[0]:.2f}"))
    rows.append(("benchmark wall time (s)", f"{total_s:.1f}"))
    print()
    print(fmt_table(rows))
    print()
    for name, r in results.items():
        margin = (r["fraction_of_peak"] - TARGET_FRACTION) * 100
        verdict = "MET" if r["target_met"] else "NOT MET"
        print(f"target >= 50% of peak, {name}: {verdict} ({r['fraction_of_peak']:.1%}, {margin:+.1f} points)")

    # A busy machine shows as a process that gets fewer cores than it uses when alone (matmul: all
    # cores; training: ~1.7 of 2). Flag it: the figures (and the fraction) are then not representative.
    busy = []
    for label, peak_run in (("matmul before", peak_before), ("matmul after", peak_after)):
        used = peak_run["per_size"][peak_run["best_n"]]["cores_used"]
        if (os.cpu_count() or 1) > 1 and used < BUSY_CORES:
            busy.append(f"{label} ({used:.2f} cores)")
    for name, r in results.items():
        if (os.cpu_count() or 1) > 1 and r["cores_used"] < BUSY_CORES:
            busy.append(f"training {name} ({r['cores_used']:.2f} cores)")
    if busy:
        print(
            f"WARNING: the machine looks busy (under {BUSY_CORES} cores for: {', '.join(busy)}); "
            "these figures are not representative, rerun when it is idle"
        )

    if args.json is not None:
        report = {
            "busy_warnings": busy,
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "jax": jax.__version__,
            "backend": jax.devices()[0].platform,
            "cpu_count": os.cpu_count(),
            "machine": platform.machine(),
            "python": platform.python_version(),
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "data": {"train": NUM_TRAIN, "eval_each": args.eval_size, "shape": INPUT_SHAPE, "build_s": data_s},
            "model": {"name": "lenet300_100", "prunable_weights": LENET_WEIGHTS, "batch": BATCH},
            "flops_per_step": 6 * LENET_WEIGHTS * BATCH,
            "matmul_peak": {"before": peak_before, "after": peak_after, "reference_gflops": peak},
            "training": results,
            "paired_probe_n": probe_n,
            "recompilations_after_first_mask": recompiles,
            "epoch_order_s": order_walls,
            "target_fraction": TARGET_FRACTION,
            "peak_rss_mib": rss,
            "loadavg_before": load_before,
            "loadavg_after": load_after,
            "total_s": total_s,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
