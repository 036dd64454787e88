"""The markdown tables of `benchmarks/gpu.py`'s report (one table per section; a failed section
shows its error instead)."""

from __future__ import annotations

from typing import Any


# airbench94 (Keller Jordan, "94% on CIFAR-10 in 3.29 Seconds on a Single GPU", arXiv:2404.00498, 2024;
# github.com/KellerJordan/cifar10-airbench): `airbench94.py` reaches 94.01 % in 3.83 s on an NVIDIA
# A100-SXM4-80GB (the script's header, the README and the paper agree), 0.36 PFLOP, training 9.9 epochs
# of 50,000 // 1024 = 48 batches of 1,024: ceil(48 x 9.9) = 476 steps = 487,424 training images. The
# 3.83 s also hold the whitening layer's init and a 6-view test-time-augmented evaluation of 10,000
# images, so 487,424 / 3.83 s is a lower bound of its training rate.
AIRBENCH = {
    "name": "airbench94 (airbench94.py)",
    "source": "Jordan 2024, arXiv:2404.00498; github.com/KellerJordan/cifar10-airbench (airbench94.py header, README)",
    "device": "NVIDIA A100-SXM4-80GB",
    "precision": "float16 weights and activations, channels_last, PyTorch 2.1.2 eager + cuDNN",
    "model": "a 2x2 whitening conv (24 channels), 6 convs (64, 256, 256 channels) and a linear layer; not ResNet-20",
    "accuracy": 0.9401,
    "seconds": 3.83,
    "train_images": 476 * 1024,
    "pflop": 0.36,
}
AIRBENCH["images_per_s"] = AIRBENCH["train_images"] / AIRBENCH["seconds"]
AIRBENCH["tflops"] = AIRBENCH["pflop"] * 1e3 / AIRBENCH["seconds"]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f} %"


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _ms(value: float) -> str:
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:.0f}"


def lenet_table(s: dict[str, Any]) -> list[str]:
    before, after = s["matmul_before"], s["matmul_after"]
    lines = [f"float32 matmul peak: {s['peak_gflops']:,.0f} GFLOP/s (before {before['gflops']:,.0f} at "
             f"n={before['best_n']}, after {after['gflops']:,.0f} at n={after['best_n']}; the higher counts)", "",
             f"| LeNet-300-100, batch {s['batch']}, Adam, {s['steps_per_chunk']}-iteration chunks | first call (s) "
             "| median chunk (s) | samples/s | GFLOP/s (6 x weights x samples) | of the matmul peak |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, r in s["training"].items():
        lines.append(f"| {name} | {r['first_call_s']:.2f} | {r['median_epoch_s']:.4f} | {r['samples_per_s']:,.0f} "
                     f"| {r['gflops']:,.1f} | {_pct(r['fraction_of_peak'])} |")
    return lines


def seeds_table(s: dict[str, Any]) -> list[str]:
    lines = [f"| seeds R (LeNet-300-100, {s['steps_per_chunk']}-iteration chunks, batch {s['batch']}) "
             "| vmapped chunk (ms) | per seed (ms) | one seed alone (ms) | speed-up R x alone / vmapped "
             "| samples/s | of the matmul peak |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in s["rows"]:
        lines.append(f"| {r['replicates']} | {_ms(1e3 * r['vmapped']['median_s'])} | {_ms(r['ms_per_seed'])} "
                     f"| {_ms(r['ms_per_seed_one_at_a_time'])} | {r['speedup']:.2f}x "
                     f"| {r['samples_per_s_vmapped']:,.0f} | {_pct(r['fraction_of_peak'])} |")
    return lines


def resnet_table(s: dict[str, Any]) -> list[str]:
    ab = s["airbench"]
    lines = [f"| ResNet-20, batch {s['batch']}, {s['iterations']} iterations a level ({s['loop']} loop) | density "
             "| level (s) | training + evaluation (s) | training images/s | TFLOP/s (lth.lottery.cost) "
             "| of the matmul peak |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in s["levels"]:
        note = " (compiles)" if r["level"] == 0 else " (pruned, rewound)"
        lines.append(f"| lth level {r['level']}{note} | {_pct(r['density'])} | {r['level_s']:.2f} | {r['train_s']:.2f} "
                     f"| {_rate(r['images_per_s'])} | {r['tflops']:.3g} | {_pct(r['fraction_of_peak'])} |")
    lines.append(f"| reference: {ab['name']}, {ab['device']}, {100 * ab['accuracy']:.2f} % in {ab['seconds']} s | - "
                 f"| {ab['seconds']} | - | >= {ab['images_per_s']:,.0f} | {ab['tflops']:.0f} | - |")
    lines += ["", f"Reference: {ab['source']}; {ab['train_images']:,} training images in {ab['seconds']} s (which "
              f"also hold its whitening init and test-time-augmented evaluation), {ab['pflop']} PFLOP. **Not like for "
              f"like**: {ab['model']}, {ab['precision']}, on another GPU; lth trains ResNet-20 in float32 at JAX's "
              "default matmul precision on synthetic data. A reference point only."]
    return lines


def inference_table(s: dict[str, Any]) -> list[str]:
    lines = [f"{s['source']}; median ms per forward (`lth.tickets.bench.bench_ticket`); BCOO twice: JAX's default "
             f"lowering, and with `{s['cusparse_flag']}` on (cuSPARSE on CUDA; no effect on CPU)", "",
             "| density | batch | dense (masked) | compact | BCOO | BCOO, cuSPARSE flag | compact / dense "
             "| BCOO / dense | BCOO cuSPARSE / dense | compact units |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for t in s["tickets"]:
        by = {(r["variant"], r["batch"]): r["median_ms"] for r in t["rows"]}
        units = ", ".join(f"{name} {alive}/{total}" for name, (alive, total) in (t.get("compact_units") or {}).items())
        for batch in s["batches"]:
            dense, compact, bcoo = (by[(v, batch)] for v in ("dense", "compact", "bcoo"))
            cus = by.get(("bcoo_cusparse", batch))
            cus_ms, cus_ratio = ("failed", "-") if cus is None else (_ms(cus), f"{cus / dense:.2f}x")
            lines.append(f"| {_pct(t['density'])} | {batch} | {_ms(dense)} | {_ms(compact)} | {_ms(bcoo)} | {cus_ms} "
                         f"| {compact / dense:.2f}x | {bcoo / dense:.2f}x | {cus_ratio} | {units} |")
    failed = {t["cusparse_error"] for t in s["tickets"] if "cusparse_error" in t}
    return lines + [f"BCOO with the cuSPARSE flag failed: {error}" for error in sorted(failed)]


TABLES = {
    "lenet_throughput": ("1. LeNet-300-100 training vs. the matmul peak", lenet_table),
    "vmapped_seeds": ("2. Vmapped LeNet-300-100 seeds (`lth.training.stacked`)", seeds_table),
    "resnet20_level": ("3. One ResNet-20 lottery level (synthetic CIFAR-shaped data)", resnet_table),
    "inference": ("4. Inference latency: dense vs. compact vs. BCOO", inference_table),
}


def markdown(report: dict[str, Any]) -> str:
    """The report as markdown: a header with the machine, then one table per section."""
    load = f"{report['loadavg_before'][0]:.2f} before, {report.get('loadavg_after', [float('nan')])[0]:.2f} after"
    lines = [f"# benchmarks/gpu.py: {report['device_kind']} ({report['platform']})", "",
             f"{report['date']}, jax {report['jax']}, default matmul precision {report['matmul_precision']}, "
             f"sizes `{report['size']}`, {report['cpu_count']} CPU cores, load average {load}, "
             f"{report.get('wall_s', 0):.0f} s in all", ""]
    for name, (title, table) in TABLES.items():
        section = report["sections"].get(name)
        lines += [f"## {title}", ""]
        if section is None:
            lines += ["not run", ""]
        elif "error" in section:
            lines += [f"FAILED: {section['error']}", ""]
        else:
            lines += table(section) + ["", f"({section['seconds']:.1f} s)", ""]
    return "\n".join(lines)
