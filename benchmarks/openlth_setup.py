"""lth on OpenLTH's LeNet-300-100 default: whole-process time and per-level times, with a cold and a
warm persistent compilation cache (issue 17).

The setup of OpenLTH's `mnist_lenet_300_100` (SGD 0.1, batch 128, 3 epochs per level, 20 % per level,
the output layer not pruned) on random data of MNIST's shapes (`synthetic_mnist`), one pruned level,
W&B off. Each case runs `lth run` in a fresh process; "cold" starts from an empty cache directory,
"warm" reuses the one the cold run filled. Medians over `--repeats` interleaved pairs.

    .venv/bin/python benchmarks/openlth_setup.py --repeats 3
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
SETUP = ["lenet300_mnist", "--variant", "quick", "--dataset", "synthetic_mnist", "--levels", "1",
         "--set", "optimizer.name=sgd", "--lr", "0.1", "--batch-size", "128", "--epochs", "3",
         "--eval-every", "1ep", "--set", "pruning.layer_fractions=[]", "--set", 'pruning.exclude=["output/kernel"]',
         "--no-progress", "--wandb", "disabled", "--checkpoint-every", "0ep"]


def one_process(runs: Path, cache: Path) -> dict[str, float]:
    """Wall time of one `lth run` process and its levels' times (from metrics.jsonl)."""
    env = {**os.environ, "LTH_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "lth.cli", "run", *SETUP, "--runs", str(runs)], env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-2000:])
    (metrics,) = runs.glob("*/replicate_00/metrics.jsonl")
    levels = [json.loads(line)["seconds"] for line in metrics.read_text().splitlines() if '"event"' in line]
    return {"process": wall, "level_0": levels[0], "level_1": levels[1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {"cold": [], "warm": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            cache = Path(tmp) / f"cache_{i}"
            for case in ("cold", "warm"):  # warm reuses the cache the cold run of this pair filled
                results[case].append(one_process(Path(tmp) / f"runs_{case}_{i}", cache))
    for case, rows in results.items():
        medians = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        print(f"{case}: process {medians['process']:.2f} s, level 0 {medians['level_0']:.2f} s, "
              f"level 1 {medians['level_1']:.2f} s  (medians of {len(rows)})")
    cold, warm = (statistics.median(r["process"] for r in results[c]) for c in ("cold", "warm"))
    print(f"warm / cold process time: {warm / cold:.2f}")


if __name__ == "__main__":
    main()
