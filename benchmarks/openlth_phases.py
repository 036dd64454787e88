"""Where a level of OpenLTH's setup goes, phase by phase, against its matmul-bound time (issue 29, item 2).

Used by `openlth_setup.py` (its docstring says what each phase is); runs `lth run` in this process
with the phases timed by wrapping the functions that do them, and the matmul peak measured before
and after (`throughput.matmul_peak`).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp

import lth.lottery.levels as levels_module
from lth.cli.parser import build_parser
from lth.cli.run_args import run_plan_from_args
from lth.execution.recorder import Recorder
from lth.jobs.lottery import run_plan
from lth.lottery.setup import build_setup
from lth.sparsity.masks import make_mask
from throughput import LENET_WEIGHTS, matmul_peak, matmul_probe

PHASES = ("prune", "rewind", "train", "evaluate", "save", "rest")


class PhaseClock:
    """Per level: seconds of each phase (`PHASES`), the level's wall time and its evaluations."""

    def __init__(self) -> None:
        self.levels: list[dict[str, float]] = []
        self.ends: list[float] = []  # when each level was done, less the probes run before
        self.paired: list[float] = []  # the matmul probe's GFLOP/s right after each level
        self._probe = matmul_probe(1024)
        self._probing = 0.0

    def current(self) -> dict[str, float]:
        return self.levels[-1]

    @contextlib.contextmanager
    def patched(self) -> Iterator[None]:
        """The wrappers in place while the block runs (the originals back after)."""
        originals = (levels_module._level_start, levels_module.prune_level, levels_module.train,
                     Recorder.level_done)
        start, prune, train, done = originals

        def level_start(*args: Any) -> Any:
            self.levels.append({"prune": 0.0, "evaluations": 0})
            began = time.perf_counter()
            out = jax.block_until_ready(start(*args))
            self.current()["rewind"] = time.perf_counter() - began - self.current()["prune"]
            return out

        def prune_level(*args: Any) -> Any:
            began = time.perf_counter()
            out = jax.block_until_ready(prune(*args))
            if self.levels:
                self.current()["prune"] += time.perf_counter() - began
            return out

        def timed_train(*args: Any, **kwargs: Any) -> Iterator[Any]:
            began = time.perf_counter()
            for state, evals in train(*args, **kwargs):
                self.current()["evaluations"] += len(evals)
                yield state, evals
            self.current()["train"] = time.perf_counter() - began

        def level_done(recorder: Recorder, outcome: Any) -> Any:
            began = time.perf_counter()
            out = done(recorder, outcome)
            self.current()["save"] = time.perf_counter() - began
            self.ends.append(time.perf_counter() - self._probing)
            probing = time.perf_counter()
            self.paired.append(self._probe())  # the matmul rate under the load of this moment
            self._probing += time.perf_counter() - probing
            return out

        names = ("_level_start", "prune_level", "train")
        for name, wrapper in zip(names, (level_start, prune_level, timed_train)):
            setattr(levels_module, name, wrapper)
        Recorder.level_done = level_done
        try:
            yield
        finally:
            for name, original in zip(names, originals):
                setattr(levels_module, name, original)
            Recorder.level_done = done


def median_seconds(fn: Any, *args: Any, repeats: int = 7) -> float:
    """Median wall time of `fn(*args)` waited for, after one warm-up call."""
    jax.block_until_ready(fn(*args))
    walls = []
    for _ in range(repeats):
        began = time.perf_counter()
        jax.block_until_ready(fn(*args))
        walls.append(time.perf_counter() - began)
    return statistics.median(walls)


def xla_flops(fn: Any, *args: Any) -> float:
    """XLA's cost analysis of `fn` compiled for `args`: its FLOPs."""
    analysis = jax.jit(fn).lower(*args).compile().cost_analysis()
    return float((analysis[0] if isinstance(analysis, list) else analysis)["flops"])


def level_costs(setup: Any) -> dict[str, float]:
    """One evaluation's seconds (alone) and the FLOPs of a level's training and of one evaluation."""
    trainer, data = setup.trainer, setup.data
    params, model_state = setup.initial
    evaluate = jax.jit(trainer.parts.evaluate_all)
    state = trainer.init_state(params, model_state)
    idx = jnp.arange(trainer.batch_size, dtype=jnp.int32)
    mask = make_mask(params)
    images = int(data.test.weight.sum()) + int(data.val.weight.sum())
    forward_batch = data.test.x[0]
    forward = xla_flops(lambda p, s, x: setup.model.apply(p, s, x, False)[0], params, model_state, forward_batch)
    return {
        "evaluate_s": median_seconds(evaluate, params, model_state, data),
        "train_6n": 6.0 * LENET_WEIGHTS * trainer.batch_size * setup.total_steps,
        "eval_6n": 2.0 * LENET_WEIGHTS * images,
        "train_xla": xla_flops(trainer.parts.update, state, mask, data, idx, jax.random.key(0)) * setup.total_steps,
        "eval_xla": forward * images / forward_batch.shape[0],
    }


def report_phases(argv: list[str]) -> None:
    """Run `lth run ARGV` in this process with the phases timed; print the steady levels' medians,
    the matmul-bound times and the ratio."""
    plan = run_plan_from_args(build_parser().parse_args(["run", *argv]))
    peaks = [matmul_peak([1024, 2048], repeats=7)["gflops"]]
    clock = PhaseClock()
    with clock.patched():
        run_plan(plan)
    peaks.append(matmul_peak([1024, 2048], repeats=7)["gflops"])
    costs = level_costs(build_setup(plan.config, plan.data_root))
    steady = list(range(2, len(clock.levels))) or [len(clock.levels) - 1]
    rows = []
    for level in steady:
        phases = clock.levels[level]
        wall = clock.ends[level] - clock.ends[level - 1]
        evaluate = phases["evaluations"] * costs["evaluate_s"]
        row = {"wall": wall, "prune": phases["prune"], "rewind": phases["rewind"], "train": phases["train"] - evaluate,
               "evaluate": evaluate, "save": phases["save"], "evaluations": phases["evaluations"]}
        row["rest"] = wall - sum(row[p] for p in PHASES if p != "rest")
        row["paired"] = max(clock.paired[level - 1], clock.paired[level])  # the probes before and after it
        rows.append(row)
    medians = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    peak = max(peaks)
    print(f"phases of levels {steady[0]}-{steady[-1]} (medians; load {_load()}):")
    print("  " + ", ".join(f"{p} {medians[p]:.3f} s ({100 * medians[p] / medians['wall']:.1f} %)" for p in PHASES)
          + f"; level {medians['wall']:.3f} s, {medians['evaluations']:.0f} evaluations")
    flops_6n = costs["train_6n"] + costs["eval_6n"] * medians["evaluations"]
    flops_xla = costs["train_xla"] + costs["eval_xla"] * medians["evaluations"]
    print(f"matmul peak {peaks[0]:.0f} / {peaks[1]:.0f} GFLOP/s before / after the run -> {peak:.0f}; "
          f"paired (n = 1024 right before and after each level, the higher): median {medians['paired']:.0f}")
    for name, flops in (("6N convention", flops_6n), ("XLA cost analysis", flops_xla)):
        bound = flops / (peak * 1e9)
        paired = statistics.median(r["wall"] / (flops / (r["paired"] * 1e9)) for r in rows)
        print(f"  {name}: {flops / 1e9:.1f} GFLOP per level, matmul-bound {bound:.3f} s, level / bound "
              f"{medians['wall'] / bound:.2f}x (paired: {paired:.2f}x)")


def _load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])
