"""lth's masked training against a plain PyTorch eager loop that masks the way OpenLTH does (issue #6).

Run: ``.venv/bin/python benchmarks/torch_baseline.py`` (needs the ``torch`` extra:
``.venv/bin/pip install -e '.[torch]'``); ``--conv2`` adds Conv-2; ``--help`` for options.

One run (so the ratios compare figures taken under the same load) measures, on MNIST-shaped random
data (60,000 x 784 float32, 10 classes, the same arrays for both frameworks):

1. lth: masked LeNet-300-100 training, batch 60, Adam 1.2e-3, exactly as ``benchmarks/throughput.py``
   does it (its `train_throughput`: `lth.training.make_trainer(...).train_chunk`, one jitted
   `lax.scan` of 1000 steps = one epoch; one warm-up epoch after the compiling call, then the median
   of --repeats timed epochs), dense (all-ones mask) and at 5 % density;
2. PyTorch eager: ``nn.Sequential(Linear(784,300), ReLU, Linear(300,100), ReLU, Linear(100,10))``,
   ``torch.optim.Adam(lr=1.2e-3)``, ``CrossEntropyLoss``, batch 60, data as in-memory tensors indexed
   by a fresh shuffled permutation per epoch (1000 steps), ``torch.set_num_threads(2)``. Masks are
   applied as OpenLTH's ``pruning/pruned_model.py`` does: the mask of every prunable weight (the
   weights of every Linear / Conv2d, output layer included, not the biases) is a float buffer
   registered on a ``PrunedModel`` wrapper whose ``forward`` first runs ``param.data *= mask`` for
   every masked parameter -- i.e. the weights are re-zeroed once per step, after the previous
   optimizer step; gradients and Adam moments are not masked. "dense" is an all-ones mask, as at
   OpenLTH's level 0. Same warm-up / median scheme as for lth;
3. with --conv2: Conv-2 (Frankle & Carbin 2019; 2x conv 64@3x3 SAME - pool - 256 - 256 - 10) on
   CIFAR-shaped random data (50,000 x 32x32x3), batch 60, both frameworks, dense and 5 %. lth runs it
   as it runs conv models on CPU, one compiled step per iteration (``make_trainer(..., loop="steps")``,
   what `lth.training.choose_loop` picks); epochs are --conv-steps steps (default 50), for both.

Prints samples/s for each and the ratio lth / torch. Target (issue #6, 2 CPU cores): lth >= 2.5x
the PyTorch eager loop for masked LeNet-300-100.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ (throughput.py)
import throughput as tp  # noqa: E402  (also puts the repository root on sys.path)
import torch  # noqa: E402
from torch import nn  # noqa: E402

from lth.spec.config import OptimizerConfig  # noqa: E402
from lth.data.dataset import Dataset  # noqa: E402
from lth.data.device import epoch_order, to_device  # noqa: E402
from lth.models import get_model  # noqa: E402
from lth.sparsity.masks import apply_mask, make_mask  # noqa: E402
from lth.training import make_trainer  # noqa: E402

TARGET_RATIO = 2.5
LR = 1.2e-3
BATCH = tp.BATCH  # 60
CIFAR_TRAIN = 50_000


# --------------------------------------------------------------------------- PyTorch, OpenLTH style


class PrunedModel(nn.Module):
    """OpenLTH's PrunedModel, reduced to what training uses: float mask buffers named
    ``mask_<param name>``, and ``param.data *= mask`` for each of them before every forward."""

    @staticmethod
    def to_mask_name(name: str) -> str:
        return "mask_" + name.replace(".", "___")

    def __init__(self, model: nn.Module, mask: dict[str, torch.Tensor]):
        super().__init__()
        self.model = model
        for k, v in mask.items():
            self.register_buffer(PrunedModel.to_mask_name(k), v.float())
        self._apply_mask()

    def _apply_mask(self) -> None:
        for name, param in self.model.named_parameters():
            if hasattr(self, PrunedModel.to_mask_name(name)):
                param.data *= getattr(self, PrunedModel.to_mask_name(name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._apply_mask()
        return self.model(x)


def torch_lenet() -> nn.Module:
    return nn.Sequential(nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10))


def torch_conv2() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(16 * 16 * 64, 256), nn.ReLU(),
        nn.Linear(256, 256), nn.ReLU(),
        nn.Linear(256, 10),
    )  # fmt: skip


def torch_mask(model: nn.Module, keep: float, seed: int) -> dict[str, torch.Tensor]:
    """OpenLTH's prunable tensors (weights of every Linear / Conv2d): exactly round(keep * size)
    ones at random per tensor (keep = 1: all ones, OpenLTH's level-0 mask)."""
    g = torch.Generator().manual_seed(seed)
    mask = {}
    for mname, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            w = module.weight
            flat = torch.zeros(w.numel())
            flat[torch.randperm(w.numel(), generator=g)[: round(keep * w.numel())]] = 1.0
            mask[f"{mname}.weight"] = flat.reshape(w.shape)
    return mask


def torch_throughput(make_net, keep: float, x: torch.Tensor, y: torch.Tensor, steps: int, repeats: int, seed: int):
    """One warm-up epoch of `steps` steps, then `repeats` timed epochs; each epoch a new permutation."""
    torch.manual_seed(seed)
    net = make_net()
    model = PrunedModel(net, torch_mask(net, keep, seed))
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(seed + 1)
    n = x.shape[0]

    def epoch() -> float:
        perm = torch.randperm(n, generator=g)
        loss = None
        for i in range(steps):
            idx = perm[i * BATCH : (i + 1) * BATCH]
            opt.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
        return float(loss.detach())

    epoch()  # warm-up
    walls, cpus = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        last = epoch()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    model._apply_mask()
    kept = sum(int(p.count_nonzero()) for name, p in net.named_parameters() if name.endswith("weight"))
    total = sum(p.numel() for name, p in net.named_parameters() if name.endswith("weight"))
    median = statistics.median(walls)
    return {
        "epoch_s": walls,
        "median_epoch_s": median,
        "samples_per_s": BATCH * steps / median,
        "cores_used": statistics.median(c / w for c, w in zip(cpus, walls)),
        "weight_density": kept / total,
        "final_train_loss": last,
    }


# --------------------------------------------------------------------------- lth, Conv-2 (steps loop)


def lth_conv_throughput(trainer, params, model_state, mask, data, orders, steps: int, repeats: int, key):
    """As throughput.train_throughput but with `steps`-step chunks (loop="steps" dispatches per step)."""
    chunk = lambda s, o: trainer.train_chunk(s, mask, data, o, jnp.int32(0), key, length=steps)  # noqa: E731
    state = trainer.init_state(apply_mask(params, mask), model_state)
    (state, _), first_s, _ = tp.timed(chunk, state, orders[0])
    (state, _), _, _ = tp.timed(chunk, state, orders[1])
    walls, cpus = [], []
    for e in range(repeats):
        (state, metrics), wall, cpu = tp.timed(chunk, state, orders[2 + e])
        walls.append(wall)
        cpus.append(cpu)
    median = statistics.median(walls)
    return {
        "first_call_s": first_s,
        "epoch_s": walls,
        "median_epoch_s": median,
        "samples_per_s": BATCH * steps / median,
        "cores_used": statistics.median(c / w for c, w in zip(cpus, walls)),
        "final_train_loss": float(np.asarray(metrics.train_loss)[-1]),
    }


def random_cifar(seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((CIFAR_TRAIN, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, CIFAR_TRAIN).astype(np.int32)
    xe = rng.standard_normal((100, 32, 32, 3), dtype=np.float32)
    ye = rng.integers(0, 10, 100).astype(np.int32)
    return Dataset("random_cifar", x, y, xe, ye, xe, ye, 10)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed epochs per case (median); default 5")
    parser.add_argument("--density", type=float, default=0.05, help="density of the sparse mask; default 0.05")
    parser.add_argument("--torch-steps", type=int, default=tp.STEPS_PER_EPOCH,
                        help="steps per timed PyTorch LeNet epoch; default 1000 (a full epoch, as lth)")
    parser.add_argument("--conv2", action="store_true", help="also Conv-2 on CIFAR-shaped data (slower)")
    parser.add_argument("--conv-steps", type=int, default=50, help="steps per timed Conv-2 epoch, both; default 50")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON to this path")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")

    torch.set_num_threads(2)
    t_start = time.perf_counter()
    load_before = os.getloadavg()
    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), {os.cpu_count()} CPU cores, load {load_before[0]:.2f}"
    )
    cases = {"dense": 1.0, f"{args.density:.0%} density": args.density}
    results: dict[str, dict[str, Any]] = {}

    # ---- LeNet-300-100, lth: throughput.py's own code path
    ds = tp.random_mnist(args.seed, 1000)
    data = to_device(ds)
    model = get_model("lenet300_100", tp.INPUT_SHAPE, tp.NUM_CLASSES)
    params, model_state = model.init(jax.random.key(args.seed))
    epochs = 2 + args.repeats
    trainer = make_trainer(
        model, OptimizerConfig(name="adam", learning_rate=LR), total_steps=tp.STEPS_PER_EPOCH * (epochs + 1),
        steps_per_epoch=tp.STEPS_PER_EPOCH, batch_size=BATCH, eval_every=10**9,
    )  # fmt: skip
    key = jax.random.key(args.seed + 1)
    orders = [jax.block_until_ready(epoch_order(key, e, tp.NUM_TRAIN, BATCH)) for e in range(epochs)]
    no_probe = lambda: 1.0  # noqa: E731  (throughput.py's matmul probe is not needed here)
    for name, keep in cases.items():
        mask = make_mask(params) if keep == 1.0 else tp.random_mask(params, keep, args.seed)
        r = tp.train_throughput(
            trainer, params, model_state, mask, data, orders, args.repeats, jax.random.key(args.seed + 2), no_probe
        )
        results[f"lenet lth {name}"] = {k: r[k] for k in ("density", "first_call_s", "epoch_s", "median_epoch_s",
                                                         "samples_per_s", "cores_used", "final_train_loss")}
        print(f"LeNet-300-100 lth   {name}: {r['samples_per_s']:,.0f} samples/s (cores {r['cores_used']:.2f})")

    # ---- LeNet-300-100, torch: the very same arrays
    x_t = torch.from_numpy(ds.x_train.reshape(tp.NUM_TRAIN, -1).copy())
    y_t = torch.from_numpy(ds.y_train.astype(np.int64))
    for name, keep in cases.items():
        r = torch_throughput(torch_lenet, keep, x_t, y_t, args.torch_steps, args.repeats, args.seed)
        results[f"lenet torch {name}"] = r
        print(f"LeNet-300-100 torch {name}: {r['samples_per_s']:,.0f} samples/s (cores {r['cores_used']:.2f})")
    del data, ds, x_t, y_t

    # ---- Conv-2 (optional)
    if args.conv2:
        cds = random_cifar(args.seed)
        cdata = to_device(cds)
        cmodel = get_model("conv2", (32, 32, 3), 10)
        cparams, cstate = cmodel.init(jax.random.key(args.seed))
        ctrainer = make_trainer(
            cmodel, OptimizerConfig(name="adam", learning_rate=LR), total_steps=10**8,
            steps_per_epoch=CIFAR_TRAIN // BATCH, batch_size=BATCH, eval_every=10**9, loop="steps",
        )  # fmt: skip
        corders = [epoch_order(key, e, CIFAR_TRAIN, BATCH) for e in range(epochs)]
        for name, keep in cases.items():
            mask = make_mask(cparams) if keep == 1.0 else tp.random_mask(cparams, keep, args.seed)
            r = lth_conv_throughput(ctrainer, cparams, cstate, mask, cdata, corders, args.conv_steps, args.repeats,
                                    jax.random.key(args.seed + 2))
            results[f"conv2 lth {name}"] = r
            print(f"Conv-2 lth   {name}: {r['samples_per_s']:,.0f} samples/s (cores {r['cores_used']:.2f})")
        cx = torch.from_numpy(np.ascontiguousarray(cds.x_train.transpose(0, 3, 1, 2)))  # NCHW
        cy = torch.from_numpy(cds.y_train.astype(np.int64))
        del cdata, cds
        for name, keep in cases.items():
            r = torch_throughput(torch_conv2, keep, cx, cy, args.conv_steps, args.repeats, args.seed)
            results[f"conv2 torch {name}"] = r
            print(f"Conv-2 torch {name}: {r['samples_per_s']:,.0f} samples/s (cores {r['cores_used']:.2f})")

    load_after = os.getloadavg()
    total_s = time.perf_counter() - t_start
    rows = [("model", "mask", "lth samples/s", "torch samples/s", "lth / torch", "cores lth / torch")]
    ratios = {}
    for net, label in (("lenet", "LeNet-300-100"), ("conv2", "Conv-2")):
        for name in cases:
            a, b = results.get(f"{net} lth {name}"), results.get(f"{net} torch {name}")
            if a is None or b is None:
                continue
            ratios[f"{net} {name}"] = ratio = a["samples_per_s"] / b["samples_per_s"]
            rows.append((label, name, f"{a['samples_per_s']:,.0f}", f"{b['samples_per_s']:,.0f}", f"{ratio:.2f}x",
                         f"{a['cores_used']:.2f} / {b['cores_used']:.2f}"))
    print()
    print(tp.fmt_table(rows))
    print(f"\nload average 1 min, start / end: {load_before[0]:.2f} / {load_after[0]:.2f}; wall {total_s:.0f} s")
    for name in cases:
        ratio = ratios[f"lenet {name}"]
        verdict = "MET" if ratio >= TARGET_RATIO else "NOT MET"
        print(f"target lth >= {TARGET_RATIO}x torch, LeNet-300-100 {name}: {verdict} ({ratio:.2f}x, "
              f"{ratio / TARGET_RATIO:.2f} of the target)")
    # As in throughput.py: alone, lth's LeNet epoch uses ~1.7 of 2 cores and torch ~2; fewer means
    # another process took CPU time during that measurement, and the ratio is not representative.
    # (LeNet only: lth's per-step Conv-2 loop uses ~1.4 cores even alone.)
    busy = [f"{k} ({r['cores_used']:.2f} cores)" for k, r in results.items()
            if k.startswith("lenet") and (os.cpu_count() or 1) > 1 and r["cores_used"] < tp.BUSY_CORES]
    if busy:
        print(f"WARNING: the machine looks busy (under {tp.BUSY_CORES} cores for: {', '.join(busy)}); "
              "these figures are not representative, rerun when it is idle")
    if args.json is not None:
        report = {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "jax": jax.__version__, "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "results": results, "busy_warnings": busy, "ratios": ratios, "target_ratio": TARGET_RATIO,
            "loadavg_before": load_before, "loadavg_after": load_after, "total_s": total_s,
        }  # fmt: skip
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
