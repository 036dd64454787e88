"""What mask updates cost inside the compiled loop, and RigL seeds vmapped vs. one after the other.

Run: ``.venv/bin/python benchmarks/sparse_updates.py`` (``--help``; ~3 minutes on 2 CPU cores).
On a GPU: ``pip install -e '.[cuda13]'`` then the same command (add ``--json gpu.json``).

LeNet-300-100 on MNIST-shaped random data (60,000 images, batch 60, Adam 1.2e-3), an epoch of
1,000 iterations as one compiled `lax.scan` (`Trainer.train_chunk`), at density `--density` (ERK):

1. **update cost**: the epoch time of SET and RigL (dt = 100, so 10 mask updates per epoch; T_end
   beyond the timed epochs, so every 100th iteration updates) against a static sparse epoch (the same
   mask, no updates). The epochs run interleaved, static / set / rigl in each round, and the cost is
   the median over rounds of (t_method - t_static) / t_static: the fraction of LeNet-300-100's epoch
   time that the updates add (target <= 5 %), in wall time and in the process's CPU time (steadier
   than wall time on a shared machine: other processes' time is not counted; the load average at the
   start and end is printed). One update is also timed on its own (a jitted drop-and-grow + moment
   reset, median of `--repeats`).
2. **vmapped seeds**: RigL for 4 seeds as one vmapped program (`lth.training.stacked.stacked_chunk`)
   vs. 4 single-seed epochs one after the other (speed-up = 4 t1 / t4).

Every figure is a median of `--repeats` timed epochs after a compile call and a warm-up epoch, in one
process. No evaluation runs in a timed epoch (checked).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import throughput as tp  # noqa: E402

from lth import rng  # noqa: E402
from lth.spec.config import OptimizerConfig, SparseConfig  # noqa: E402
from lth.data.device import epoch_order, to_device  # noqa: E402
from lth.models import get_model  # noqa: E402
from lth.sparsity.distributions import keep_counts, random_mask  # noqa: E402
from lth.sparsity.masks import apply_mask, make_mask  # noqa: E402
from lth.training import make_trainer  # noqa: E402
from lth.training.mask_updates import make_mask_update, sparse_state, updated  # noqa: E402
from lth.training.stacked import epoch_orders, stack, stack_states, stacked_chunk  # noqa: E402
from lth.training.trainer import with_mask_update  # noqa: E402

BATCH, STEPS, N = 60, 1000, 60_000


def _setup(density: float, epochs: int):
    model = get_model("lenet300_100", (28, 28, 1), 10)
    total = STEPS * 1000  # T_end = 75 % of it: past every timed epoch
    trainer = make_trainer(model, OptimizerConfig(name="adam", learning_rate=1.2e-3), total_steps=total,
                           steps_per_epoch=STEPS, batch_size=BATCH, eval_every=10**9)
    cfg = SparseConfig(dt=100)
    trainers = {"static": trainer}
    for method in ("set", "rigl"):
        trainers[method] = with_mask_update(trainer, make_mask_update(method, cfg, total))
    data = to_device(tp.random_mnist(0, 1000))
    return model, trainers, data


def _state(model, trainer, density: float, seed: int, method: str):
    params, model_state = model.init(rng.stream(seed, "init"))
    full = make_mask(params)
    mask = random_mask(full, keep_counts(full, density, "erk"), rng.stream(seed, "sparse_mask"))
    state = trainer.init_state(apply_mask(params, mask), model_state)
    return (state if method == "static" else state._replace(sparse=sparse_state(mask))), mask


def _epoch(trainer, state, mask, data, order, key):
    state, metrics = trainer.train_chunk(state, mask, data, order, jnp.int32(0), key, length=STEPS)
    jax.block_until_ready(state)
    if bool(np.any(np.asarray(metrics.evaluated))):
        raise RuntimeError("an evaluation ran inside a timed epoch")
    return state


def update_cost(density: float, repeats: int) -> dict:
    model, trainers, data = _setup(density, repeats + 2)
    key = rng.stream(0, "augmentation")
    orders = [epoch_order(rng.stream(0, "data_order"), e, N, BATCH) for e in range(repeats + 2)]
    states, masks, times, cpu = {}, {}, {m: [] for m in trainers}, {m: [] for m in trainers}
    for method, trainer in trainers.items():
        states[method], masks[method] = _state(model, trainer, density, 0, method)
        for e in range(2):  # compile, warm-up
            states[method] = _epoch(trainer, states[method], masks[method], data, orders[e], key)
    for e in range(repeats):  # interleaved rounds: static, set, rigl
        for method, trainer in trainers.items():
            (states[method]), wall, cpu_s = tp.timed(_epoch, trainer, states[method], masks[method], data,
                                                     orders[2 + e], key)
            times[method].append(wall)
            cpu[method].append(cpu_s)
    out = {"density": density, "dt": 100, "updates_per_epoch": STEPS // 100,
           "median_epoch_s": {m: statistics.median(t) for m, t in times.items()}, "timed_s": times,
           "median_epoch_cpu_s": {m: statistics.median(t) for m, t in cpu.items()}, "timed_cpu_s": cpu}
    for method in ("set", "rigl"):
        for suffix, series in (("", times), ("_cpu", cpu)):
            out[f"{method}_extra_fraction{suffix}"] = statistics.median(
                (t - s) / s for t, s in zip(series[method], series["static"]))
    out["one_update_ms"] = one_update_ms(model, trainers["rigl"], data, density, repeats)
    return out


def one_update_ms(model, trainer, data, density: float, repeats: int) -> dict:
    """A RigL / SET update on its own: drop-and-grow on every layer and the moment reset, jitted."""
    state, _ = _state(model, trainer, density, 0, "rigl")
    grads = jax.tree.map(jnp.ones_like, state.params)
    out = {}
    for method in ("set", "rigl"):
        rule = make_mask_update(method, SparseConfig(dt=100), STEPS * 1000)
        fn = jax.jit(lambda s, g: updated(rule, trainer.optimizer, s.params, s.opt_state, s.sparse, g, s.step,
                                          rng.stream(0, "x")))
        jax.block_until_ready(fn(state, grads))
        walls = [tp.timed(lambda: jax.block_until_ready(fn(state, grads)))[1] for _ in range(repeats)]
        out[method] = 1e3 * statistics.median(walls)
    return out


def vmapped(density: float, repeats: int, seeds: int = 4) -> dict:
    model, trainers, data = _setup(density, repeats + 2)
    trainer = trainers["rigl"]
    starts = [_state(model, trainer, density, s, "rigl") for s in range(seeds)]
    keys = [rng.stream(s, "augmentation") for s in range(seeds)]
    order_keys = [rng.stream(s, "data_order") for s in range(seeds)]
    single_orders = [epoch_order(order_keys[0], e, N, BATCH) for e in range(repeats + 2)]
    state, mask = starts[0]
    walls1 = []
    for e in range(repeats + 2):
        state, wall, _ = tp.timed(_epoch, trainer, state, mask, data, single_orders[e], keys[0])
        walls1.append(wall)
    chunk = stacked_chunk(trainer)
    stacked, masks, k = stack_states([s for s, _ in starts]), stack([m for _, m in starts]), stack(keys)
    walls4 = []
    for e in range(repeats + 2):
        orders = epoch_orders(stack(order_keys), e, N, BATCH)
        (stacked, _), wall, _ = tp.timed(lambda: jax.block_until_ready(chunk(stacked, masks, data, orders,
                                                                              jnp.int32(0), k, length=STEPS)))
        walls4.append(wall)
    t1, t4 = statistics.median(walls1[2:]), statistics.median(walls4[2:])
    return {"seeds": seeds, "one_seed_epoch_s": t1, "vmapped_epoch_s": t4, "speedup": seeds * t1 / t4,
            "timed_one_s": walls1[2:], "timed_vmapped_s": walls4[2:]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--density", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-vmapped", action="store_true", help="skip part 2 (the vmapped seeds)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    result = {"backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
              "load_average_start": os.getloadavg()}
    cost = update_cost(args.density, args.repeats)
    result["update_cost"] = cost
    med = cost["median_epoch_s"]
    print(f"epoch (1000 it, density {args.density}, ERK): static {med['static'] * 1e3:.1f} ms, set "
          f"{med['set'] * 1e3:.1f} ms, rigl {med['rigl'] * 1e3:.1f} ms")
    print(f"mask updates (dt = 100, 10 per epoch) add: set {100 * cost['set_extra_fraction']:+.1f} %, rigl "
          f"{100 * cost['rigl_extra_fraction']:+.1f} % of the epoch's wall time (CPU time: set "
          f"{100 * cost['set_extra_fraction_cpu']:+.1f} %, rigl {100 * cost['rigl_extra_fraction_cpu']:+.1f} %; "
          f"medians over interleaved rounds); one update alone: set {cost['one_update_ms']['set']:.2f} ms, rigl "
          f"{cost['one_update_ms']['rigl']:.2f} ms")
    if not args.no_vmapped:
        vm = vmapped(args.density, args.repeats)
        result["vmapped"] = vm
        print(f"rigl, 4 seeds: one after the other 4 x {vm['one_seed_epoch_s'] * 1e3:.1f} ms = "
              f"{4 * vm['one_seed_epoch_s'] * 1e3:.1f} ms | vmapped {vm['vmapped_epoch_s'] * 1e3:.1f} ms | "
              f"speed-up {vm['speedup']:.2f}x")
    result["load_average_end"] = os.getloadavg()
    print(f"peak RSS {tp.peak_rss_mib():.0f} MiB; load average (1, 5, 15 min) at the start "
          f"{', '.join(f'{x:.1f}' for x in result['load_average_start'])}, at the end "
          f"{', '.join(f'{x:.1f}' for x in result['load_average_end'])}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
