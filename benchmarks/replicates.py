"""How vmapped replicates scale: R seeds trained as one program (`lth.training.stacked`) vs one at a time.

Run: ``.venv/bin/python benchmarks/replicates.py`` (``--help`` for options; ~2 minutes on 2 CPU cores).

For LeNet-300-100 (MNIST-shaped random data, batch 60, Adam, 1,000-iteration epochs as one
`lax.scan`) and Conv-2 (CIFAR-shaped random data, batch 60, Adam, `--conv-steps` iterations per
timed chunk, through whichever loop `lth.training.choose_loop` picks on this backend), and for each
replicate count R in `--replicates` (default 1 4 16):

* *one at a time*: the single-replicate `train_chunk` (what `--layout sequential` runs), median
  epoch time t1; R seeds cost R x t1;
* *vmapped*: `lth.training.stacked.stacked_chunk` on R stacked states (what `--layout vmap` runs;
  with ``--devices``, split over the local devices as `--layout devices`), median epoch time tR;
* speed-up = R x t1 / tR (above 1: vmapping pays), total samples/s = R x samples / tR.

Every figure is a median of `--repeats` timed epochs after a compile call and one warm-up epoch,
all in one process, so the ratios are measured in the same run. No evaluation runs in a timed
epoch. Peak RSS is reported at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import throughput as tp  # noqa: E402

from lth import rng  # noqa: E402
from lth.spec.config import OptimizerConfig  # noqa: E402
from lth.data.dataset import Dataset  # noqa: E402
from lth.data.device import epoch_order, to_device  # noqa: E402
from lth.models import get_model  # noqa: E402
from lth.sparsity.masks import make_mask  # noqa: E402
from lth.training import choose_loop, make_trainer  # noqa: E402
from lth.training.stacked import (  # noqa: E402
    epoch_orders,
    place,
    place_state,
    replicate_mesh,
    stack,
    stack_states,
    stacked_chunk,
)

BATCH = 60


def random_cifar(seed: int, n: int = 6_000) -> Dataset:
    rng_ = np.random.default_rng(seed)
    x = rng_.standard_normal((n, 32, 32, 3), dtype=np.float32)
    y = rng_.integers(0, 10, n).astype(np.int32)
    xe, ye = x[:100], y[:100]
    return Dataset("random_cifar", x, y, xe, ye, xe, ye, 10)


def median_epoch(call, state, orders: list, repeats: int) -> tuple[float, float, list[float], float]:
    """(first call s, median s, all timed s, cores used): compile call, 1 warm-up, `repeats` timed."""
    (state, _), first, _ = tp.timed(call, state, orders[0])
    (state, _), _, _ = tp.timed(call, state, orders[1])
    walls, cpus = [], []
    for e in range(repeats):
        (state, metrics), wall, cpu = tp.timed(call, state, orders[2 + e % (len(orders) - 2)])
        walls.append(wall)
        cpus.append(cpu)
    if bool(np.any(np.asarray(metrics.evaluated))):
        raise RuntimeError("an evaluation ran inside a timed epoch")
    return first, statistics.median(walls), walls, statistics.median(c / w for c, w in zip(cpus, walls))


def measure(name: str, dataset: Dataset, steps: int, counts: list[int], repeats: int, devices: bool) -> list[dict]:
    model = get_model(name, dataset.input_shape, dataset.num_classes)
    loop = choose_loop(model, dataset.input_shape)
    steps_per_epoch = len(dataset.y_train) // BATCH
    trainer = make_trainer(model, OptimizerConfig(name="adam", learning_rate=1.2e-3), total_steps=10**9,
                           steps_per_epoch=steps_per_epoch, batch_size=BATCH, eval_every=10**9, loop=loop)
    data = to_device(dataset)
    n = len(dataset.y_train)
    epochs = 2 + repeats
    rows = []
    for count in counts:
        inits = [model.init(rng.stream(seed, "init")) for seed in range(count)]
        states = [trainer.init_state(p, s) for p, s in inits]
        masks = [make_mask(p) for p, _ in inits]
        order_keys = [rng.stream(seed, "data_order") for seed in range(count)]
        augment = [rng.stream(seed, "augmentation") for seed in range(count)]
        row: dict[str, Any] = {"model": name, "loop": loop, "replicates": count, "steps": steps}
        if count == 1 or not rows:
            single_orders = [epoch_order(order_keys[0], e, n, BATCH) for e in range(epochs)]
            call = lambda s, o: trainer.train_chunk(s, masks[0], data, o, jnp.int32(0), augment[0], length=steps)  # noqa: E731
            first, t1, walls, cores = median_epoch(call, states[0], single_orders, repeats)
            single = {"first_call_s": first, "median_s": t1, "timed_s": walls, "cores_used": cores}
        mesh = replicate_mesh(count) if devices else None
        chunk = stacked_chunk(trainer, mesh)
        stacked_masks, keys = place(stack(masks), mesh), place(stack(augment), mesh)
        stacked_data = place(data, mesh, split=False)
        orders = [place(epoch_orders(stack(order_keys), e, n, BATCH), mesh) for e in range(epochs)]
        call = lambda s, o: chunk(s, stacked_masks, stacked_data, o, jnp.int32(0), keys, length=steps)  # noqa: E731
        first, t_r, walls, cores = median_epoch(call, place_state(stack_states(states), mesh), orders, repeats)
        row.update({
            "one_at_a_time": single,
            "vmapped": {"first_call_s": first, "median_s": t_r, "timed_s": walls, "cores_used": cores,
                        "devices": 1 if mesh is None else int(mesh.devices.size)},
            "speedup": count * single["median_s"] / t_r,
            "samples_per_s_one_at_a_time": BATCH * steps / single["median_s"],
            "samples_per_s_vmapped": count * BATCH * steps / t_r,
        })
        rows.append(row)
        print(f"{name:<13} R={count:<3} one at a time {count} x {single['median_s'] * 1e3:8.1f} ms = "
              f"{count * single['median_s'] * 1e3:9.1f} ms | vmapped {t_r * 1e3:9.1f} ms "
              f"(first call {first:.2f} s, {cores:.2f} cores) | speed-up {row['speedup']:.2f}x | "
              f"{row['samples_per_s_vmapped']:,.0f} samples/s", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicates", type=int, nargs="+", default=[1, 4, 16], help="replicate counts R")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per case (median); default 3")
    parser.add_argument("--conv-steps", type=int, default=20, help="iterations per timed Conv-2 chunk; default 20")
    parser.add_argument("--conv-replicates", type=int, nargs="+",
                        help="replicate counts for Conv-2 (default: as --replicates; on CPU 1 4, since a vmapped "
                             "convolution runs as a slow grouped one there: R=4 took 40 s per 20 iterations)")
    parser.add_argument("--no-conv2", action="store_true", help="LeNet-300-100 only")
    parser.add_argument("--devices", action="store_true", help="split the replicates over the local devices")
    parser.add_argument("--json", type=Path, help="also write every figure as JSON here")
    args = parser.parse_args(argv)
    print(f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, jax {jax.__version__} on "
          f"{jax.default_backend()} ({jax.device_count()} device(s): {jax.devices()[0].device_kind}), "
          f"{platform.processor() or platform.machine()}")
    started = time.perf_counter()
    rows = measure("lenet300_100", tp.random_mnist(0, 1000), tp.STEPS_PER_EPOCH, args.replicates, args.repeats,
                   args.devices)
    if not args.no_conv2:
        counts = args.conv_replicates or ([1, 4] if jax.default_backend() == "cpu" else args.replicates)
        rows += measure("conv2", random_cifar(0), args.conv_steps, counts, args.repeats, args.devices)
    print(f"peak RSS {tp.peak_rss_mib():,.0f} MiB, {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"backend": jax.default_backend(), "jax": jax.__version__, "rows": rows},
                                        indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
