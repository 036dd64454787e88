"""Where a lottery level's time goes: training vs. evaluation vs. pruning, checkpointing and logging.

Run: ``.venv/bin/python benchmarks/level_time.py`` (default: the paper's LeNet-300-100 setup, ~4
minutes on 2 CPU cores); ``--variant quick`` times the README's run on the embedded MNIST-5k.

The default variant of `lenet300_mnist` (50,000 iterations of batch 60, validation and test
evaluated every 100 iterations) needs full MNIST, which is downloaded; to run offline the benchmark
trains on MNIST-*shaped* random data of the same sizes (`random_mnist` with 5,000 of its 60,000
training images held out for validation: 55,000 / 5,000 / 10,000 images; timing does not depend on
the pixel values). Three measurements of `--levels` + 1 levels each, one process:

* **A, the real run**: `lth.run_lottery` as `lth run` calls it (checkpoints every 10 minutes
  and at level ends, masks, results.json, metrics.jsonl, W&B disabled); the wall time of a level is
  the time between two consecutive "level done" moments (pruning + training + evaluations +
  checkpoint + logging), so only levels >= 1 count (level 0 includes compilation);
* **B, the same run evaluating once**: `eval_every` = the training length, i.e. one evaluation at the
  end of each level; A - B is the cost of the evaluations;
* **C, the training alone**: the level's compiled epochs (`lth.training.train` with B's trainer: one
  evaluation at the end, no hooks, no files) from a fresh state, timed after a warm-up level.

Overhead = (A - C) / A: evaluation (A - B) plus pruning, checkpointing, logging and host work (B - C).

``--cpu-time`` counts the process's CPU seconds instead of wall seconds (less sensitive to other
processes on a shared machine). ``--test-at every_evaluation,validation_minimum`` times A under each test protocol
(`training.test_at`), alternating them `--rounds` times (interleaved, same process), and prints each
protocol's evaluation share (A - B) / A and how many test evaluations a level made.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lth import rng  # noqa: E402
from lth.spec.config import replace  # noqa: E402
from lth.spec.experiments import load_config  # noqa: E402
from lth.lottery import init_params, prepare  # noqa: E402
from lth.jobs.lottery import run_lottery
from lth.sparsity.masks import apply_mask, make_mask  # noqa: E402
from lth.training import train  # noqa: E402

CLOCK = [time.perf_counter]  # `--cpu-time`: time.process_time, the process's CPU seconds (all its threads)


class LevelClock:
    """A tracker that notes when each level is done (its checkpoint and results handed to the background
    writer, which writes them while the next level trains: what they cost shows in that level's time)."""

    def __init__(self):
        self.done: list[float] = []
        self.tests: list[int] = []  # per level: the evaluations whose test set was evaluated

    def level_start(self, *args):
        pass

    def log_evaluations(self, *args):
        pass

    def level_done(self, replicate, record, evaluations):
        self.done.append(CLOCK[0]())
        self.tests.append(sum(1 for e in evaluations if np.isfinite(e["test_accuracy"])))

    def run_done(self, *args):
        pass

    def close(self):
        pass


def level_walls(config, root: Path, tests: list[int] | None = None) -> list[float]:
    """The wall times of levels 1.. of a real run (level 0 has compilation); `tests` gets each
    level's count of test evaluations."""
    clock = LevelClock()
    run_lottery(config, runs_root=root, progress=False, wandb="disabled", trackers=[clock], layout="sequential")
    if tests is not None:
        tests.extend(clock.tests)
    return list(np.diff(clock.done))


def training_alone(config, levels: int) -> list[float]:
    setup = prepare(config)
    params, model_state = init_params(setup)
    mask = make_mask(params, config.pruning.prunable)
    walls = []
    for _ in range(levels + 1):  # the first is a warm-up (compilation)
        state = setup.trainer.init_state(apply_mask(params, mask), model_state)
        started = CLOCK[0]()
        for state, _ in train(setup.trainer, state, mask, setup.data, rng.stream(0, "data_order")):
            pass
        jax.block_until_ready(state.params)
        walls.append(CLOCK[0]() - started)
    return walls[1:]


def protocol_levels(config, protocols: list[str], rounds: int, tmp: Path) -> dict[str, tuple[list[float], list[int]]]:
    """{protocol: (level walls, test evaluations per level)} of real runs (A), the protocols alternating
    `rounds` times."""
    out: dict[str, tuple[list[float], list[int]]] = {p: ([], []) for p in protocols}
    for r in range(rounds):
        for protocol in protocols:
            walls, tests = out[protocol]
            walls += level_walls(replace(config, **{"training.test_at": protocol}), tmp / f"a-{protocol}-{r}", tests)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="default", choices=("default", "quick"))
    parser.add_argument("--levels", type=int, default=2, help="levels after level 0 (timed); default 2")
    parser.add_argument("--iterations", type=int, help="training length per level (default: the variant's)")
    parser.add_argument("--eval-every", help="evaluation period, e.g. 1000it (default: the variant's)")
    parser.add_argument("--test-at", default="every_evaluation",
                        help="test protocol(s) of A, comma-separated: every_evaluation, validation_minimum")
    parser.add_argument("--rounds", type=int, default=1, help="A runs per protocol, alternating (default 1)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time in CPU seconds of the process instead of wall seconds (a shared machine)")
    args = parser.parse_args(argv)
    if args.cpu_time:
        CLOCK[0] = time.process_time
    protocols = args.test_at.split(",")
    config = replace(load_config("lenet300_mnist", args.variant), levels=args.levels)
    if args.variant == "default":  # MNIST's split sizes: 5,000 of the 60,000 training images held out
        config = replace(config, **{"data.name": "random_mnist", "data.validation_size": 5000})
    if args.eval_every:
        config = replace(config, **{"training.eval_every": args.eval_every})
    if args.iterations:
        config = replace(config, **{"training.length": f"{args.iterations}it"})
    setup = prepare(config)
    n_eval = int(setup.data.val.weight.sum() + setup.data.test.weight.sum())
    print(f"{config.name} ({args.variant}): {setup.total_steps} iterations of batch {config.training.batch_size} "
          f"per level, {len(setup.dataset.y_train):,} training examples, evaluation every "
          f"{config.training.eval_every} of {n_eval:,} images; jax {jax.__version__} on {jax.default_backend()}")
    with tempfile.TemporaryDirectory() as tmp:
        a = protocol_levels(config, protocols, args.rounds, Path(tmp))
        once = replace(config, **{"training.eval_every": config.training.length})
        b = level_walls(once, Path(tmp) / "b")
    c = training_alone(once, args.levels)
    B, C = (statistics.median(x) for x in (b, c))
    for protocol, (walls, tests) in a.items():
        A = statistics.median(walls)
        print(f"A real level      {A:7.2f} s  test_at={protocol}, test evaluated {statistics.median(tests):.0f} times "
              f"per level (levels: {', '.join(f'{x:.2f}' for x in walls)})")
    print(f"B one evaluation  {B:7.2f} s  ({', '.join(f'{x:.2f}' for x in b)})")
    print(f"C training alone  {C:7.2f} s  ({', '.join(f'{x:.2f}' for x in c)})")
    for protocol, (walls, _) in a.items():
        A = statistics.median(walls)
        print(f"test_at={protocol}: overhead (A - C) / A = {100 * (A - C) / A:.1f} %: evaluations "
              f"{100 * (A - B) / A:.1f} %, pruning + checkpoint + logging + host {100 * (B - C) / A:.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
