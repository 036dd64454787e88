"""lth on one accelerator, in one command: four figures, a JSON and a markdown table.

Run: ``.venv/bin/python benchmarks/gpu.py --out gpu_bench`` (writes ``gpu_bench.json`` and
``gpu_bench.md``). Sizes: ``--size gpu`` (the default where JAX sees a GPU; <= 8 minutes on one),
``--size cpu`` (a couple of minutes on 2 cores), ``--size tiny`` / ``--tiny`` (seconds: the test;
the default where there is no GPU). Every figure is measured in this one process:

1. **LeNet-300-100 training vs. the matmul peak** (`throughput.py`'s functions): the float32 matmul
   peak of this device (jitted square matmuls, best size, before and after training, the higher
   counts), and masked training (batch 60, Adam, one `lax.scan` chunk of iterations through
   `make_trainer(...).train_chunk`) dense and at 5 % density: samples/s, GFLOP/s (6 x 266,200 FLOPs
   per weight and sample) and the fraction of the peak. Both run at JAX's default matmul precision
   (TF32 on Ampere and later GPUs), recorded in the JSON;
2. **vmapped seeds** (`replicates.py`'s `measure`): R = 1 / 16 / 64 / 256 LeNet-300-100 seeds as
   one `lth.training.stacked` program, the time per chunk and per seed, and the speed-up over one
   seed at a time;
3. **one ResNet-20 lottery level**: `lth.lottery.lottery_levels` on `resnet20_cifar10`'s model and
   optimiser (SGD 0.1, momentum 0.9, weight decay 1e-4, crop + flip) with synthetic CIFAR-shaped data
   (`synthetic_cifar10`, 640 training images), batch 128, `--size`'s iterations per level, one
   evaluation at the end, constant learning rate, rewound to 0; level 0 (dense, with compilation)
   and level 1 (pruned 20 %, rewound, retrained): training images/s and TFLOP/s (FLOPs from the
   level's record, `lth.lottery.cost`), beside airbench94's published rate (`AIRBENCH`: a different
   network, precision and GPU -- a reference point, not a like-for-like comparison);
4. **inference latency**: LeNet-300-100 tickets (random init, layerwise random masks, `sparse.py`'s
   `random_cases`) written with `lth.tickets.save` and timed by `lth.tickets.bench.bench_ticket`
   (the `lth ticket bench` path): dense (masked) vs. compact vs. BCOO forwards per batch; BCOO twice,
   with JAX's default lowering and with `jax_bcoo_cusparse_lowering` on (cuSPARSE on CUDA).

A section that fails is recorded with its error and the others still run; the exit status is then 1.

Why the GPU sizes should fit the 8 minutes (an estimate from FLOPs, step counts and compilations; no GPU
has run this yet): benchmarks/README.md, "One GPU script".
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import jax

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import replicates as rp  # noqa: E402
import sparse as sparse_bench  # noqa: E402
import throughput as tp  # noqa: E402
from gpu_report import AIRBENCH, markdown  # noqa: E402

from lth.data.device import epoch_order, to_device  # noqa: E402
from lth.lottery import prepare  # noqa: E402
from lth.lottery.levels import Hooks, lottery_levels  # noqa: E402
from lth.models import get_model  # noqa: E402
from lth.sparsity.masks import density, make_mask  # noqa: E402
from lth.spec.config import OptimizerConfig, replace  # noqa: E402
from lth.spec.experiments import load_config  # noqa: E402
from lth.tickets import save  # noqa: E402
from lth.tickets.bench import bench_ticket  # noqa: E402
from lth.training import make_trainer  # noqa: E402
from lth.training.compile_cache import enable_compile_cache  # noqa: E402


@dataclass(frozen=True)
class Sizes:
    """What one `--size` measures (see the module docstring)."""

    matmul: tuple[int, ...]  # square matmul sizes of the peak
    matmul_repeats: int  # timed matmuls per size
    lenet_train: int  # training images of the random MNIST-shaped set (sections 1 and 2)
    lenet_steps: int  # iterations per timed LeNet chunk (section 1)
    lenet_repeats: int  # timed chunks per mask (median)
    seeds: tuple[int, ...]  # replicate counts R (section 2)
    seed_steps: int  # iterations per timed vmapped chunk
    seed_repeats: int  # timed chunks per R (median)
    resnet_batch: int
    resnet_iterations: int  # iterations per lottery level (section 3)
    densities: tuple[float, ...]  # ticket densities (section 4)
    batches: tuple[int, ...]  # inference batch sizes
    budget: float  # about how many seconds of timed calls per inference variant and batch


SIZES = {
    "tiny": Sizes((256,), 3, 1_200, 20, 1, (1, 2), 20, 1, 8, 2, (0.05,), (16,), 0.01),
    "cpu": Sizes((1024, 2048), 5, 60_000, 1_000, 3, (1, 4, 16), 100, 2, 128, 5, (0.2, 0.05, 0.01), (1, 1024), 0.2),
    "gpu": Sizes((2048, 4096, 8192), 7, 60_000, 1_000, 5, (1, 16, 64, 256), 1_000, 3, 128, 300,
                 (1.0, 0.2, 0.05, 0.01), (1, 64, 1024), 0.5),
}
SPARSE_DENSITY = 0.05  # the masked case of section 1


# --------------------------------------------------------------------------- 1. LeNet vs. the peak


def lenet_throughput(sizes: Sizes, seed: int) -> dict[str, Any]:
    """Section 1: the matmul peak before and after, and masked LeNet-300-100 chunks (dense, 5 %)."""
    peak_before = tp.matmul_peak(list(sizes.matmul), sizes.matmul_repeats)
    print(f"  matmul peak (before): {peak_before['gflops']:,.0f} GFLOP/s at n={peak_before['best_n']}", flush=True)
    data = to_device(tp.random_mnist(seed, 100, sizes.lenet_train))
    model = get_model("lenet300_100", tp.INPUT_SHAPE, tp.NUM_CLASSES)
    params, model_state = model.init(jax.random.key(seed))
    trainer = make_trainer(model, OptimizerConfig(name="adam", learning_rate=1.2e-3), total_steps=10**9,
                           steps_per_epoch=sizes.lenet_train // tp.BATCH, batch_size=tp.BATCH, eval_every=10**9)
    key = jax.random.key(seed + 1)
    orders = [epoch_order(key, e, sizes.lenet_train, tp.BATCH) for e in range(2 + sizes.lenet_repeats)]
    probe = tp.matmul_probe(peak_before["best_n"])
    masks = {"dense": make_mask(params), f"{SPARSE_DENSITY:.0%} density": tp.random_mask(params, SPARSE_DENSITY, seed)}
    training = {}
    for name, mask in masks.items():
        training[name] = tp.train_throughput(trainer, params, model_state, mask, data, orders, sizes.lenet_repeats,
                                             jax.random.key(seed + 2), probe, steps=sizes.lenet_steps)
        print(f"  LeNet-300-100 {name}: {training[name]['samples_per_s']:,.0f} samples/s", flush=True)
    peak_after = tp.matmul_peak(list(sizes.matmul), sizes.matmul_repeats)
    peak = max(peak_before["gflops"], peak_after["gflops"])
    for r in training.values():
        r["fraction_of_peak"] = r["gflops"] / peak
    return {"peak_gflops": peak, "matmul_before": peak_before, "matmul_after": peak_after,
            "steps_per_chunk": sizes.lenet_steps, "batch": tp.BATCH, "training": training}


# --------------------------------------------------------------------------- 2. vmapped seeds


def vmapped_seeds(sizes: Sizes, seed: int, peak_gflops: float | None) -> dict[str, Any]:
    """Section 2: R LeNet-300-100 seeds as one stacked program vs. one seed at a time."""
    dataset = tp.random_mnist(seed, 100, sizes.lenet_train)
    rows = rp.measure("lenet300_100", dataset, sizes.seed_steps, list(sizes.seeds), sizes.seed_repeats, False)
    flops_per_seed = 6 * tp.LENET_WEIGHTS * tp.BATCH * sizes.seed_steps
    for row in rows:
        r, t = row["replicates"], row["vmapped"]["median_s"]
        row["ms_per_seed"] = 1e3 * t / r
        row["ms_per_seed_one_at_a_time"] = 1e3 * row["one_at_a_time"]["median_s"]
        row["gflops"] = r * flops_per_seed / t / 1e9
        row["fraction_of_peak"] = row["gflops"] / peak_gflops if peak_gflops else None
    return {"steps_per_chunk": sizes.seed_steps, "batch": tp.BATCH, "rows": rows}


# --------------------------------------------------------------------------- 3. a ResNet-20 level


class LevelClock(Hooks):
    """When each level's training started and when its last chunk (and evaluation) came back."""

    def __init__(self) -> None:
        self.start: dict[int, float] = {}
        self.end: dict[int, float] = {}

    def level_start(self, level, state, mask) -> None:
        self.start[level] = time.perf_counter()

    def chunk_done(self, level, state, mask, new, evaluations) -> None:
        self.end[level] = time.perf_counter()


def resnet_config(sizes: Sizes) -> Any:
    """`resnet20_cifar10` on synthetic CIFAR-shaped data, shrunk to one pruned level of `sizes`' length."""
    length = f"{sizes.resnet_iterations}it"
    return replace(load_config("resnet20_cifar10"), **{
        "data.name": "synthetic_cifar10", "training.batch_size": sizes.resnet_batch, "training.length": length,
        "training.eval_every": length, "optimizer.schedule": "constant", "optimizer.milestones": (),
        "levels": 1, "rewind": "0it"})


def level_row(outcome: Any, clock: LevelClock, batch: int, peak_gflops: float | None) -> dict[str, Any]:
    """One level's figures: its wall time, its training (+ the end evaluation) time, images/s, TFLOP/s."""
    record = outcome.record
    level, flops = record["level"], record["train_flops"]
    train_s = clock.end[level] - clock.start[level]
    return {"level": level, "density": record["density"], "level_s": outcome.seconds, "train_s": train_s,
            "iterations": record["iterations"], "images_per_s": record["iterations"] * batch / train_s,
            "train_tflop": flops / 1e12, "tflops": flops / train_s / 1e12,
            "fraction_of_peak": flops / train_s / 1e9 / peak_gflops if peak_gflops else None}


def resnet_level(sizes: Sizes, peak_gflops: float | None) -> dict[str, Any]:
    """Section 3: levels 0 and 1 of a ResNet-20 lottery; images/s and TFLOP/s of their training."""
    setup = prepare(resnet_config(sizes))
    clock = LevelClock()
    levels = []
    for outcome in lottery_levels(setup, hooks=clock):
        levels.append(level_row(outcome, clock, sizes.resnet_batch, peak_gflops))
        print(f"  level {levels[-1]['level']}: {levels[-1]['images_per_s']:,.0f} images/s "
              f"({levels[-1]['train_s']:.2f} s training, {outcome.seconds:.2f} s the level)", flush=True)
    return {"batch": sizes.resnet_batch, "iterations": sizes.resnet_iterations, "loop": setup.trainer.loop,
            "levels": levels, "airbench": AIRBENCH}


# --------------------------------------------------------------------------- 4. inference latency


CUSPARSE_FLAG = "jax_bcoo_cusparse_lowering"  # off by default (jax 0.10); lowers BCOO products to cuSPARSE on CUDA


def with_cusparse(path: Path, sizes: Sizes, seed: int) -> dict[str, Any]:
    """`bench_ticket` with JAX's cuSPARSE lowering of BCOO products turned on. It is registered for CUDA
    and ROCm only: on CPU the same gather/scatter program runs (measured anyway, so the path is tested)."""
    before = getattr(jax.config, CUSPARSE_FLAG)
    jax.config.update(CUSPARSE_FLAG, True)
    try:
        return bench_ticket(path, sizes.batches, sizes.budget, seed)
    finally:
        jax.config.update(CUSPARSE_FLAG, before)


def one_ticket(path: Path, sizes: Sizes, seed: int) -> dict[str, Any]:
    """A ticket's forwards (dense, compact, BCOO, scipy CSR; BCOO again through cuSPARSE) per batch."""
    result = bench_ticket(path, sizes.batches, sizes.budget, seed)
    out = {"rows": result["rows"], "max_abs_diff": result["max_abs_diff_by_variant"],
           "compact_units": result["compact_units"], "layers": result["layers"]}
    try:
        cusparse = with_cusparse(path, sizes, seed)
    except Exception as error:  # noqa: BLE001 -- the flag is off by default for a reason: keep the other figures
        print(f"  BCOO with {CUSPARSE_FLAG} failed: {type(error).__name__}: {error}", flush=True)
        return {**out, "cusparse_error": f"{type(error).__name__}: {error}"}
    out["rows"] += [{**r, "variant": "bcoo_cusparse"} for r in cusparse["rows"] if r["variant"] == "bcoo"]
    out["max_abs_diff"]["bcoo_cusparse"] = cusparse["max_abs_diff_by_variant"]["bcoo"]
    return out


def inference(sizes: Sizes, seed: int) -> dict[str, Any]:
    """Section 4: dense vs. compact vs. BCOO forwards of LeNet-300-100 tickets, per density and batch."""
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for _, params, mask in sparse_bench.random_cases(list(sizes.densities), seed):
            d = density(mask)
            path = save(Path(tmp) / f"lenet_{d:.4f}.safetensors", mask, params,
                        metadata={"model": "lenet300_100", "input_shape": list(tp.INPUT_SHAPE)})
            out.append({"density": d, **one_ticket(path, sizes, seed)})
            print(f"  density {100 * d:.3g} %: " + ", ".join(
                f"{r['variant']} {r['median_ms']:.3f} ms" for r in out[-1]["rows"] if r["batch"] == sizes.batches[-1]),
                flush=True)
    return {"source": "LeNet-300-100, random init, layerwise random masks", "batches": list(sizes.batches),
            "cusparse_flag": CUSPARSE_FLAG, "tickets": out}


# --------------------------------------------------------------------------- driver


def run_section(report: dict[str, Any], name: str, title: str, fn, *args) -> Any:
    """Run one section, print its progress and time; a failure is recorded (and printed), not raised."""
    print(f"[{len(report['sections']) + 1}/4] {title}", flush=True)
    started = time.perf_counter()
    try:
        result = fn(*args)
    except Exception as error:  # noqa: BLE001 -- the other sections still run; the exit status says it failed
        traceback.print_exc()
        result = {"error": f"{type(error).__name__}: {error}"}
    result["seconds"] = time.perf_counter() - started
    report["sections"][name] = result
    print(f"  ({result['seconds']:.1f} s)", flush=True)
    return result


def environment(size: str) -> dict[str, Any]:
    """What ran this: device, jax, date, sizes, load; and lth's persistent compilation cache, turned on
    here as `lth run` does (None: off, ``LTH_CACHE=off``): with a warm cache the first calls load programs."""
    cache = enable_compile_cache()
    device = jax.devices()[0]
    return {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "device_kind": device.device_kind,
            "platform": device.platform, "device_count": jax.device_count(), "jax": jax.__version__,
            "matmul_precision": str(jax.config.jax_default_matmul_precision), "cpu_count": os.cpu_count(),
            "size": size, "sizes": asdict(SIZES[size]), "compile_cache": None if cache is None else str(cache),
            "loadavg_before": os.getloadavg()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), help="gpu where JAX sees a GPU, else tiny")
    parser.add_argument("--tiny", action="store_true", help="same as --size tiny (seconds; the test)")
    parser.add_argument("--out", type=Path, default=Path("gpu_bench"), help="writes OUT.json and OUT.md")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    size = "tiny" if args.tiny else args.size or ("gpu" if jax.default_backend() == "gpu" else "tiny")
    sizes = SIZES[size]
    report = {**environment(size), "sections": {}}
    print(f"{report['date']}: jax {report['jax']} on {report['platform']} ({report['device_kind']}), "
          f"sizes {size}, load {report['loadavg_before'][0]:.2f}", flush=True)
    started = time.perf_counter()
    lenet = run_section(report, "lenet_throughput", "LeNet-300-100 training vs. the matmul peak",
                        lenet_throughput, sizes, args.seed)
    peak = lenet.get("peak_gflops")
    run_section(report, "vmapped_seeds", f"vmapped LeNet-300-100 seeds {sizes.seeds}", vmapped_seeds, sizes,
                args.seed, peak)
    run_section(report, "resnet20_level", "one ResNet-20 lottery level", resnet_level, sizes, peak)
    run_section(report, "inference", "dense vs. compact vs. BCOO inference", inference, sizes, args.seed)
    report.update(wall_s=time.perf_counter() - started, loadavg_after=os.getloadavg(),
                  peak_rss_mib=tp.peak_rss_mib())
    errors = {name: s["error"] for name, s in report["sections"].items() if "error" in s}
    report["errors"] = errors
    args.out.parent.mkdir(parents=True, exist_ok=True)
    json_path, md_path = args.out.with_name(args.out.name + ".json"), args.out.with_name(args.out.name + ".md")
    json_path.write_text(json.dumps(report, indent=1, default=str) + "\n")
    md_path.write_text(markdown(report))
    print(f"\n{markdown(report)}\nwrote {json_path} and {md_path} ({report['wall_s']:.0f} s)")
    if errors:
        print(f"FAILED sections: {', '.join(errors)}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
