"""lth on OpenLTH's LeNet-300-100 default: whole-process time and per-level times, with a cold and a
warm persistent compilation cache (issue 17).

The setup of OpenLTH's `mnist_lenet_300_100` (SGD 0.1, batch 128, 3 epochs per level, 20 % per level,
the output layer not pruned) on random data of MNIST's shapes and sizes (`random_mnist`: 60,000
training images, 469 iterations per epoch, evaluation on 10,000 test images each epoch), `--levels`
pruned levels (default 3), W&B off. Each case runs `lth run` in a fresh process; "cold" starts from an empty
cache directory, "warm" reuses the one the cold run filled. Medians over `--repeats` interleaved
pairs of level 0, level 1 (the first pruned level) and a steady level (the median of levels 2 and up),
and of the time to the first training step, taken as the time from the process's start to the end of
level 0 (the moment its `level_done` line reaches metrics.jsonl, polled) less a steady level's time.

Then, in this process (`--phases`, default on), one more run of the setup with every level's
phases timed (issue 29, item 2), steady levels (2 and up; with `--levels 1`, level 1) reported:
*prune* (`prune_level`, waited for), *rewind* (the rest of the level's start: masking the rewind
weights, the optimiser's init), *train* (the level's chunks and host loop, less the evaluations),
*evaluate* (the level's evaluations: their count x the median time of one `evaluate_all` of the
test set, timed alone), *save* (the recorder's `level_done`: host copies handed to the background
writer, metrics.jsonl, results) and *rest* (the level's wall time less all these: its record,
the generator, other host work). The level's **matmul-bound time** is its FLOPs over the matmul peak
of `throughput.matmul_peak` measured before and after the run in this process (the higher):
training 6 x 266,200 weights per example, evaluation 2 x 266,200 per evaluated image (the 6N
convention of `throughput.py`, which the 1.3x target uses), and also by XLA's cost analysis of one
compiled batch-128 update and one 1,000-image forward (which counts no input gradient of the first
layer: ~0.7x of 6N, see benchmarks/README.md).

    .venv/bin/python benchmarks/openlth_setup.py --repeats 3             # 3 pruned levels
    .venv/bin/python benchmarks/openlth_setup.py --repeats 3 --levels 1  # the 1-level process
    .venv/bin/python benchmarks/openlth_setup.py --repeats 0 --levels 4  # only the phases, levels 2-4
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SETUP = ["lenet300_mnist", "--variant", "quick", "--dataset", "random_mnist",
         "--set", "optimizer.name=sgd", "--lr", "0.1", "--batch-size", "128", "--epochs", "3",
         "--eval-every", "1ep", "--set", "pruning.layer_fractions=[]", "--set", 'pruning.exclude=["output/kernel"]',
         "--no-progress", "--wandb", "disabled", "--checkpoint-every", "0ep"]


def one_process(runs: Path, cache: Path, levels: int) -> dict[str, float]:
    """Wall time of one `lth run` process, its levels' times (from metrics.jsonl): level 0, level 1
    and, with 2 or more pruned levels, a steady one (the median of levels 2 and up); and the time at
    which level 0 ended (`level_0_end`, from the process's start)."""
    env = {**os.environ, "LTH_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    # cwd: `python -m` puts the working directory first on sys.path, before PYTHONPATH; started from
    # another checkout, the process would time that checkout's lth
    proc = subprocess.Popen([sys.executable, "-m", "lth.cli", "run", *SETUP, "--levels", str(levels),
                             "--runs", str(runs)], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    level_0_end = None
    while proc.poll() is None:
        if level_0_end is None and any('"event"' in p.read_text() for p in runs.glob("*/replicate_00/metrics.jsonl")):
            level_0_end = time.perf_counter() - started
        time.sleep(0.01)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(proc.stderr.read()[-2000:])
    (metrics,) = runs.glob("*/replicate_00/metrics.jsonl")
    times = [json.loads(line)["seconds"] for line in metrics.read_text().splitlines() if '"event"' in line]
    steady = {"steady": statistics.median(times[2:])} if len(times) > 2 else {}
    return {"process": wall, "level_0": times[0], "level_1": times[1], "level_0_end": level_0_end or wall, **steady}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--levels", type=int, default=3, help="pruned levels after level 0 (default 3)")
    parser.add_argument("--no-phases", dest="phases", action="store_false", help="skip the in-process phase run")
    args = parser.parse_args()
    if args.repeats > 0:
        processes(args)
    if args.phases:
        from openlth_phases import report_phases  # imports jax: after the processes are timed

        with tempfile.TemporaryDirectory() as tmp:
            report_phases([*SETUP, "--levels", str(args.levels), "--runs", tmp])


def processes(args: argparse.Namespace) -> None:
    """The cold and warm processes, `args.repeats` interleaved pairs, medians printed."""
    results: dict[str, list[dict[str, float]]] = {"cold": [], "warm": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            cache = Path(tmp) / f"cache_{i}"
            for case in ("cold", "warm"):  # warm reuses the cache the cold run of this pair filled
                results[case].append(one_process(Path(tmp) / f"runs_{case}_{i}", cache, args.levels))
    for case, rows in results.items():
        medians = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        steady = f", steady level {medians['steady']:.2f} s" if "steady" in medians else ""
        print(f"{case}: process {medians['process']:.2f} s, level 0 {medians['level_0']:.2f} s, "
              f"level 1 {medians['level_1']:.2f} s{steady}  (medians of {len(rows)})")
        if "steady" in medians:
            print(f"{case}: level 1 / steady level: {medians['level_1'] / medians['steady']:.2f}")
            first = statistics.median(r["level_0_end"] - r["steady"] for r in rows)
            print(f"{case}: time to the first training step (level 0's end less a steady level): {first:.2f} s")
    cold, warm = (statistics.median(r["process"] for r in results[c]) for c in ("cold", "warm"))
    print(f"warm / cold process time: {warm / cold:.2f}")
    if args.levels >= 2:
        first = {c: statistics.median(r["level_0_end"] - r["steady"] for r in results[c]) for c in results}
        print(f"first training step: cold / warm {first['cold'] / first['warm']:.2f}x")


if __name__ == "__main__":
    main()
