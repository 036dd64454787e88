"""What running a sweep's cells as Ray tasks costs and gains: 8 quick cells on a local Ray cluster
vs. the same cells one after the other in one process.

Run: ``.venv/bin/python benchmarks/sweep.py`` (``--help`` for options; ~5 minutes on 2 CPU cores).

The cells: LeNet-300-100 on the embedded MNIST digits (`lenet300_mnist --variant smoke` with
`--iterations` iterations per level, evaluation every 100, 2 levels, no controls; `--experiment
mlp_mnist1d` for the MNIST-1D MLP), rewind 0it / 100it x 4 seeds = 8 runs. For each of
`--repeats` rounds, in fresh run roots:

* *sequential*: `run_lottery` of every cell in this process, one after another (jax already
  imported; the first cell compiles) -- the wall time of the 8;
* *Ray, shared*: `run_sweep` on a new local cluster (`--cpus` CPUs, one per cell): wall time with
  Ray's start-up and shutdown, and without (first submit to last result);
* *Ray, shipped*: the same with `filesystem="local"`: each cell trains into a worker-local run root
  and its run directory comes back through Ray (packed, unpacked into the driver's run root).
* *plain processes*: the bound any engine faces on this machine: a `multiprocessing` pool of
  `--cpus` fresh (spawned) Python processes, each importing jax and taking the next cell when free,
  no Ray -- so Ray's own cost is the gap between this and *Ray, shared*.

Figures: speed-up = sequential / Ray wall time (with and without start-up; and sequential / plain
processes); Ray's per-cell overhead = (slots x cells wall - the cells' own training time inside
the workers) / cells, i.e. worker start-up (a fresh Python with jax per worker), scheduling,
results and idle slots, spread over the cells; the cells' training time on Ray / alone (above 1:
the cells running at once slow each other down, e.g. when each one's XLA uses every core);
shipping = pack (worker) + unpack (driver) seconds per cell, and the bytes. Every cell's
results.json is checked byte-identical across the four ways. Medians over the rounds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "disabled")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402

from lth.jobs.lottery import run_lottery  # noqa: E402
from lth.sweeps.driver import run_sweep  # noqa: E402
from lth.sweeps.file import load_sweep  # noqa: E402

SWEEP = '''
from lth.sweeps.file import Sweep

def get_sweep(variant="default"):
    return Sweep(name="bench", experiment="{experiment}", variant="smoke", controls=(),
                 set={{"training.length": "{iterations}it", "training.eval_every": "100it", "levels": 2}},
                 grid={{"rewind": ["0it", "100it"]}}, replicates=4)
'''


def results(root: Path, plan) -> dict[str, bytes]:
    return {c.run_name: (root / c.run_name / "replicate_00" / "results.json").read_bytes() for c in plan.cells}


def timed_cell(config, root: Path | str) -> float:
    """The seconds of one cell's `run_lottery` into `root`."""
    started = time.perf_counter()
    run_lottery(config, runs_root=root, progress=False, wandb="disabled")
    return time.perf_counter() - started


def sequential(plan, root: Path) -> dict:
    started = time.perf_counter()
    seconds = [timed_cell(cell.config, root) for cell in plan.cells]
    return {"wall_s": time.perf_counter() - started, "cell_s": seconds}


def _plain_cell(job: tuple[dict, str]) -> float:
    """One cell in a pool process (its config crosses as a plain dict)."""
    from lth.spec.config import from_dict

    return timed_cell(from_dict(job[0]), job[1])


def plain_processes(plan, root: Path, cpus: int) -> dict:
    """The cells on a pool of `cpus` spawned processes (no Ray): the machine's bound for any engine."""
    from lth.spec.config import to_dict

    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(min(cpus, len(plan.cells))) as pool:
        seconds = pool.map(_plain_cell, [(to_dict(c.config), str(root)) for c in plan.cells], chunksize=1)
    return {"wall_s": time.perf_counter() - started, "cell_s": seconds}


def on_ray(plan, root: Path, cpus: int, filesystem: str, worker_dir: Path) -> dict:
    started = time.perf_counter()
    outcome = run_sweep(plan, runs_root=root, local_cpus=cpus, filesystem=filesystem, worker_dir=worker_dir,
                        wandb="disabled", progress=False)
    wall = time.perf_counter() - started
    if outcome.failed:
        raise RuntimeError(f"cells failed: {[c['error'] for c in outcome.failed]}")
    state = json.loads((outcome.path / "sweep.json").read_text())
    cells, timing = state["cells"], state["timing"]
    inside = [c["seconds"] for c in cells]
    slots = min(cpus, len(cells))
    row = {"wall_s": wall, "cells_wall_s": timing["cells_s"], "connect_s": timing["connect_s"],
           "disconnect_s": timing["disconnect_s"], "cell_s": inside,
           "overhead_per_cell_s": (slots * timing["cells_s"] - sum(inside)) / len(cells),
           "worker_pids": sorted({c["node"]["pid"] for c in cells})}
    if filesystem == "local":
        row["ship_s_per_cell"] = statistics.median(c["pack_seconds"] + c["unpack_seconds"] for c in cells)
        row["shipped_bytes_per_cell"] = statistics.median(c["shipped_bytes"] for c in cells)
    return row


def one_round(plan, cpus: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="lth-bench-sweep-") as tmp:
        tmp = Path(tmp)
        seq = sequential(plan, tmp / "sequential")
        shared = on_ray(plan, tmp / "shared", cpus, "shared", tmp / "unused")
        shipped = on_ray(plan, tmp / "driver", cpus, "local", tmp / "worker")
        plain = plain_processes(plan, tmp / "plain", cpus)
        expected = results(tmp / "sequential", plan)
        for name in ("shared", "driver", "plain"):
            if results(tmp / name, plan) != expected:
                raise RuntimeError(f"results of the {name} sweep differ from the sequential ones")
    row = {"sequential": seq, "ray_shared": shared, "ray_shipped": shipped, "plain": plain,
           "speedup_with_startup": seq["wall_s"] / shared["wall_s"],
           "speedup_plain": seq["wall_s"] / plain["wall_s"],
           "speedup_cells_only": seq["wall_s"] / shared["cells_wall_s"],
           "training_time_ratio": sum(shared["cell_s"]) / sum(seq["cell_s"])}
    print(f"sequential {seq['wall_s']:6.1f} s (cells {', '.join(f'{s:.1f}' for s in seq['cell_s'])}) | Ray "
          f"{shared['wall_s']:6.1f} s with start-up ({shared['connect_s']:.1f} s + {shared['disconnect_s']:.1f} s), "
          f"{shared['cells_wall_s']:6.1f} s cells only | speed-up {row['speedup_with_startup']:.2f}x / "
          f"{row['speedup_cells_only']:.2f}x | overhead {shared['overhead_per_cell_s']:.2f} s per cell | cells' "
          f"training time on Ray / alone {row['training_time_ratio']:.2f} | shipped: "
          f"{shipped['wall_s']:.1f} s, {shipped['ship_s_per_cell']:.3f} s and "
          f"{shipped['shipped_bytes_per_cell'] / 1e6:.1f} MB per cell | plain processes {plain['wall_s']:.1f} s "
          f"({row['speedup_plain']:.2f}x)", flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=1000, help="iterations per level (default 1000)")
    parser.add_argument("--experiment", default="lenet300_mnist",
                        help="the base experiment, its smoke variant (default lenet300_mnist; e.g. mlp_mnist1d)")
    parser.add_argument("--cpus", type=int, default=len(os.sched_getaffinity(0)),
                        help="CPUs of the local Ray cluster, one per cell (default: this machine's)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds (medians); default 3")
    parser.add_argument("--json", type=Path, help="also write every figure as JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench_sweep.py"
        path.write_text(SWEEP.format(iterations=args.iterations, experiment=args.experiment))
        plan = load_sweep(str(path))
    print(f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, jax {jax.__version__} on {jax.default_backend()}, "
          f"{len(os.sched_getaffinity(0))} cores, {len(plan.cells)} cells of {args.experiment}, {args.iterations} "
          f"iterations x 3 levels, "
          f"Ray with {args.cpus} CPUs; load average {os.getloadavg()[0]:.1f}")
    rows = [one_round(plan, args.cpus) for _ in range(args.repeats)]
    med = lambda f: statistics.median(f(r) for r in rows)  # noqa: E731
    print(f"median of {len(rows)}: sequential {med(lambda r: r['sequential']['wall_s']):.1f} s, Ray "
          f"{med(lambda r: r['ray_shared']['wall_s']):.1f} s ({med(lambda r: r['ray_shared']['cells_wall_s']):.1f} s "
          f"cells only), speed-up {med(lambda r: r['speedup_with_startup']):.2f}x with start-up, "
          f"{med(lambda r: r['speedup_cells_only']):.2f}x without; overhead "
          f"{med(lambda r: r['ray_shared']['overhead_per_cell_s']):.2f} s per cell; training time on Ray / alone "
          f"{med(lambda r: r['training_time_ratio']):.2f}; start-up "
          f"{med(lambda r: r['ray_shared']['connect_s']):.1f} s + shutdown "
          f"{med(lambda r: r['ray_shared']['disconnect_s']):.1f} s; shipping "
          f"{med(lambda r: r['ray_shipped']['ship_s_per_cell']):.3f} s per cell; plain processes "
          f"{med(lambda r: r['plain']['wall_s']):.1f} s ({med(lambda r: r['speedup_plain']):.2f}x); load average now "
          f"{os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps({"jax": jax.__version__, "cpus": args.cpus, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
