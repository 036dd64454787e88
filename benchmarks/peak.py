"""What holds masked LeNet-300-100 training (batch 60, Adam) below the matmul peak.

Run (from the repository root):

    .venv/bin/python benchmarks/peak.py                  # step variants, 7 interleaved rounds (~1-2 min)
    .venv/bin/python benchmarks/peak.py --rounds 9 --only lth sgd
    .venv/bin/python benchmarks/peak.py --flags= --flags=--xla_cpu_experimental_ynn_fusion_type=
    .venv/bin/python benchmarks/peak.py --hlo lth_epoch.hlo   # also write the optimized HLO of lth's epoch

Step variants run in ONE process, each timed once per round in a rotating order (ABAB... rounds, so
that load changing on a shared machine hits every variant alike); the figure is each variant's
median epoch (1,000 steps of batch 60 = one `lax.scan`) and its ratio to lth's own `train_chunk`
(Adam, masked) in the same rounds. Variants marked "=" are also checked bit-identical to lth's
final params after the same epochs. XLA flags cannot change inside a process: `--flags A B ...`
times lth's epoch in child processes, one per flag set and round, alternating between the sets
(the first set is the reference; "" = no flags).

Data and model as in `benchmarks/throughput.py` (random MNIST-shaped data, no download).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import BATCH, INPUT_SHAPE, NUM_CLASSES, NUM_TRAIN, STEPS_PER_EPOCH, random_mnist  # noqa: E402

from lth.spec.config import OptimizerConfig  # noqa: E402
from lth.data.device import epoch_order, to_device  # noqa: E402
from lth.models import get_model  # noqa: E402
from lth.sparsity.masks import make_mask  # noqa: E402
from lth.training import make_trainer  # noqa: E402
from lth.training.chunks import Chunk  # noqa: E402
from lth.training.iteration import iteration, make_parts  # noqa: E402

LR = 1.2e-3
QUIET_CORES = 1.8  # a round waits for this many idle cores (of 2) with --quiet
EPOCH_GFLOP = 6 * 266_200 * BATCH * STEPS_PER_EPOCH / 1e9  # the 6N convention of throughput.py


class Setup:
    """Model, data, one batch order and the full mask, shared by every variant."""

    def __init__(self, seed: int = 0):
        self.data = to_device(random_mnist(seed, 1000))
        self.model = get_model("lenet300_100", INPUT_SHAPE, NUM_CLASSES)
        self.params, self.model_state = self.model.init(jax.random.key(seed))
        self.mask = make_mask(self.params)
        self.no_mask = jax.tree.map(lambda m: None, self.mask)
        self.order = epoch_order(jax.random.key(seed + 1), 0, NUM_TRAIN, BATCH)
        self.key = jax.random.key(seed + 2)

    def trainer(self, name: str = "adam", tx: optax.GradientTransformation | None = None):
        """lth's trainer (scan loop, no evaluation in an epoch); `tx` replaces its optimiser."""
        trainer = make_trainer(self.model, OptimizerConfig(name=name, learning_rate=LR),
                               total_steps=10**8, steps_per_epoch=STEPS_PER_EPOCH, batch_size=BATCH,
                               eval_every=10**9)
        if tx is None:
            return trainer
        parts = make_parts(self.model, tx, trainer.schedule, augmentation="none", eval_every=10**9,
                           total_steps=10**8)
        return trainer._replace(optimizer=tx, parts=parts, train_chunk=Chunk(iteration(parts), "scan"))


def fused_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, one_divide: bool = False
               ) -> optax.GradientTransformation:
    """`optax.scale_by_adam` written as one element-wise expression per leaf (same operations, same
    order: bias-corrected mu / (sqrt(bias-corrected nu) + eps)), with optax's state. `one_divide`:
    the bias corrections folded into scalars, m * (sqrt(c2) / c1) / (sqrt(v) + eps * sqrt(c2)):
    1 division per weight instead of 2 (XLA already turns optax's (m / c1) / (sqrt(v / c2) + eps)
    into m / (c1 * (sqrt(v / c2) + eps))), the same maths up to rounding: NOT bit-identical."""

    def update(grads: Any, state: optax.ScaleByAdamState, params: Any = None):
        count = optax.safe_increment(state.count)
        c1, c2 = 1 - b1 ** count.astype(jnp.float32), 1 - b2 ** count.astype(jnp.float32)

        def leaf(g, m, v):
            m = (1 - b1) * g + b1 * m
            v = (1 - b2) * (g * g) + b2 * v
            if one_divide:
                return m * (jnp.sqrt(c2) / c1) / (jnp.sqrt(v) + eps * jnp.sqrt(c2)), m, v
            return (m / c1.astype(m.dtype)) / (jnp.sqrt(v / c2.astype(v.dtype)) + eps), m, v

        out = jax.tree.map(leaf, grads, state.mu, state.nu)
        pick = [jax.tree.map(lambda t, i=i: t[i], out, is_leaf=lambda t: isinstance(t, tuple)) for i in range(3)]
        return pick[0], optax.ScaleByAdamState(count=count, mu=pick[1], nu=pick[2])

    return optax.GradientTransformation(optax.scale_by_adam(b1, b2, eps).init, update)


def variants(setup: Setup) -> dict[str, tuple[Callable[[Any], Any], Any, bool]]:
    """{name: (epoch: state -> state, initial state, bit-identical to lth expected)}."""
    adam, sgd = setup.trainer("adam"), setup.trainer("sgd")
    fused, one_div = setup.trainer("adam", fused_adam()), setup.trainer("adam", fused_adam(one_divide=True))
    s = setup

    def epoch_of(trainer, mask, chunk=None):
        chunk = chunk or trainer.train_chunk
        return lambda st: chunk(st, mask, s.data, s.order, jnp.int32(0), s.key, length=STEPS_PER_EPOCH)[0]

    donated = Chunk(iteration(adam.parts), "scan")  # lth's chunk, re-jitted with the state donated
    donated._compiled = jax.jit(donated._compiled.__wrapped__, static_argnums=6, donate_argnums=0)
    init = adam.init_state(s.params, s.model_state)
    return {
        "lth (Adam, masked)": (epoch_of(adam, s.mask), init, True),
        "Adam, no mask (mask of None)": (epoch_of(adam, s.no_mask), init, False),
        "SGD, masked": (epoch_of(sgd, s.mask), sgd.init_state(s.params, s.model_state), False),
        "SGD, no mask": (epoch_of(sgd, s.no_mask), sgd.init_state(s.params, s.model_state), False),
        "Adam hand-fused, masked": (epoch_of(fused, s.mask), init, True),
        "lth, state donated": (epoch_of(adam, s.mask, donated), init, True),
        "Adam, 1 division per weight": (epoch_of(one_div, s.mask), init, False),
    }


def idle_cores(seconds: float = 0.5) -> float:
    """Cores left idle by every process on the machine over `seconds` (Linux /proc/stat)."""
    def idle_total() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        return fields[3] + fields[4], sum(fields)

    (i0, t0), _ = idle_total(), time.sleep(seconds)
    i1, t1 = idle_total()
    return (os.cpu_count() or 1) * (i1 - i0) / max(t1 - t0, 1)


def wait_quiet(max_wait: float) -> bool:
    """Wait (up to `max_wait` s) until other processes leave >= QUIET_CORES idle; whether they did."""
    deadline = time.monotonic() + max_wait
    while time.monotonic() < deadline:
        if idle_cores() >= QUIET_CORES:
            return True
    return False


def time_variants(table: dict, rounds: int, epochs: int = 1, quiet_wait: float = 0.0) -> dict[str, list[float]]:
    """Warm every variant up, then `rounds` rounds of `epochs` chained epochs each, the order of the
    variants rotating from round to round; seconds per epoch for each. With `quiet_wait` > 0 every
    round first waits (up to that many seconds) for a quiet machine (`wait_quiet`)."""
    names = list(table)
    states = {n: jax.block_until_ready(table[n][0](jax.tree.map(jnp.copy, table[n][1]))) for n in names}
    walls: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        if quiet_wait > 0 and not wait_quiet(quiet_wait):
            print(f"round {r}: the machine did not get quiet within {quiet_wait:.0f} s; timed anyway")
        for n in names[r % len(names):] + names[: r % len(names)]:
            t0 = time.perf_counter()
            for _ in range(epochs):
                states[n] = table[n][0](states[n])
            jax.block_until_ready(states[n])
            walls[n].append((time.perf_counter() - t0) / epochs)
    return walls


def identical_to_lth(table: dict, epochs: int = 2) -> dict[str, bool]:
    """Whether each variant marked bit-identical gives lth's params and moments after `epochs`."""
    def run(name: str) -> Any:
        state = jax.tree.map(jnp.copy, table[name][1])
        for _ in range(epochs):
            state = table[name][0](state)
        return jax.device_get((state.params, state.opt_state))

    ref = run(next(iter(table)))
    same = {}
    for name, (_, _, expect) in table.items():
        if expect:
            out = run(name)
            same[name] = all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(out)))
    return same


def report(walls: dict[str, list[float]], same: dict[str, bool] | None = None) -> list[dict[str, Any]]:
    """One row per variant: median epoch, ratio to the first (the reference), GFLOP/s (6N)."""
    ref = statistics.median(next(iter(walls.values())))
    rows = []
    for name, w in walls.items():
        med = statistics.median(w)
        rows.append({"variant": name, "median_ms": med * 1e3, "min_ms": min(w) * 1e3, "ratio": med / ref,
                     "gflops_6n": EPOCH_GFLOP / med, "identical": None if same is None else same.get(name)})
        ident = {True: "=", False: "DIFFERS", None: ""}[rows[-1]["identical"]]
        print(f"{name:40s} {med * 1e3:7.1f} ms (min {min(w) * 1e3:6.1f})  x{med / ref:5.3f}  "
              f"{EPOCH_GFLOP / med:5.0f} GFLOP/s  {ident}")
    return rows


def child_epochs(rounds: int, quiet_wait: float) -> None:
    """The child of --flags: lth's epoch, warmed up, then `rounds` timed; JSON on stdout."""
    setup = Setup()
    fn, init, _ = variants(setup)["lth (Adam, masked)"]
    params = jax.device_get(fn(jax.tree.map(jnp.copy, init)).params)
    digest = hashlib.sha256(b"".join(np.asarray(a).tobytes() for a in jax.tree.leaves(params))).hexdigest()
    walls = time_variants({"lth": (fn, init, True)}, rounds, quiet_wait=quiet_wait)["lth"]
    print(json.dumps({"walls": walls, "flags": os.environ.get("XLA_FLAGS", ""), "digest": digest[:16]}))


def compare_flags(flag_sets: list[str], rounds: int, per_child: int, quiet_wait: float) -> list[dict[str, Any]]:
    """lth's epoch under each XLA flag set, in child processes alternating between the sets."""
    walls: dict[str, list[float]] = {f or "(none)": [] for f in flag_sets}
    digests: dict[str, set[str]] = {f or "(none)": set() for f in flag_sets}
    for r in range(rounds):
        for flags in flag_sets[r % len(flag_sets):] + flag_sets[: r % len(flag_sets)]:
            env = {**os.environ, "XLA_FLAGS": flags}
            command = [sys.executable, __file__, "--child", str(per_child), "--quiet", str(quiet_wait)]
            out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            walls[flags or "(none)"] += result["walls"]
            digests[flags or "(none)"].add(result["digest"])
    ref = digests[flag_sets[0] or "(none)"]
    return report(walls, {name: d == ref for name, d in digests.items()})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (median reported); default 7")
    parser.add_argument("--only", nargs="+", default=None, help="variants whose name starts with one of these")
    parser.add_argument("--flags", action="append", default=None,
                        help="an XLA flag set to compare, repeatable, as --flags='--xla_a=1 --xla_b=2' (--flags= for "
                             "none); the first is the reference")
    parser.add_argument("--per-child", type=int, default=3, help="timed epochs per child process with --flags")
    parser.add_argument("--quiet", type=float, default=0.0,
                        help="before each round wait up to this many seconds for a quiet machine (shared machines)")
    parser.add_argument("--hlo", type=Path, default=None, help="write the optimized HLO of lth's epoch here")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        child_epochs(args.child, args.quiet)
        return 0
    print(f"jax {jax.__version__}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    if args.flags is not None:
        rows = compare_flags(args.flags, args.rounds, args.per_child, args.quiet)
    else:
        setup = Setup()
        table = variants(setup)
        if args.only:
            table = {k: v for i, (k, v) in enumerate(table.items())
                     if i == 0 or any(k.lower().startswith(p.lower()) for p in args.only)}
        if args.hlo is not None:
            write_hlo(setup, args.hlo)
        same = identical_to_lth(table)
        rows = report(time_variants(table, args.rounds, quiet_wait=args.quiet), same)
    print(f"load at the end {os.getloadavg()[0]:.2f}")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


def write_hlo(setup: Setup, path: Path) -> None:
    """The optimized (compiled) HLO of lth's epoch, as XLA runs it."""
    trainer = setup.trainer("adam")
    state = trainer.init_state(setup.params, setup.model_state)
    lowered = trainer.train_chunk.lower(state, setup.mask, setup.data, setup.order, jnp.int32(0), setup.key,
                                        length=STEPS_PER_EPOCH)
    path.write_text(lowered.compile().as_text())


if __name__ == "__main__":
    raise SystemExit(main())
