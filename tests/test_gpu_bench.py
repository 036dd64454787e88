"""`benchmarks/gpu.py` runs end to end at its tiny sizes on whatever device this is (CPU here), so it is
known to work before a GPU sees it: the JSON holds every section's figures (finite, positive, of the
sizes asked for), the markdown holds every table, and a failing section is recorded, not raised."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_bench") / "tiny"
    # a wiring check, not a timing: XLA's backend optimisations off halve the compile time of the tiny programs
    env = {**os.environ, "WANDB_MODE": "disabled", "LTH_CACHE": "off", "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_backend_optimization_level=0"}
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--tiny", "--out", str(out)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(out.with_suffix(".json").read_text()), out.with_suffix(".md").read_text(), result.stdout


def test_records_the_machine_and_every_section(tiny_report):
    report, _, stdout = tiny_report
    assert report["platform"] == "cpu" and report["device_kind"] and report["jax"] and report["date"]
    assert report["size"] == "tiny" and report["errors"] == {}
    assert set(report["sections"]) == {"lenet_throughput", "vmapped_seeds", "resnet20_level", "inference"}
    assert all(positive(s["seconds"]) for s in report["sections"].values())
    for step in ("[1/4]", "[2/4]", "[3/4]", "[4/4]"):  # progress per section
        assert step in stdout


def test_lenet_throughput_against_the_peak(tiny_report):
    s = tiny_report[0]["sections"]["lenet_throughput"]
    assert positive(s["peak_gflops"]) and s["peak_gflops"] == max(s["matmul_before"]["gflops"],
                                                                  s["matmul_after"]["gflops"])
    assert set(s["training"]) == {"dense", "5% density"}
    for r in s["training"].values():
        assert positive(r["samples_per_s"]) and positive(r["gflops"])
        assert r["fraction_of_peak"] == pytest.approx(r["gflops"] / s["peak_gflops"])
    assert s["training"]["5% density"]["density"] == pytest.approx(0.05, abs=1e-3)
    assert s["training"]["5% density"]["compiled_on_first_call"] is False  # the mask is an argument


def test_vmapped_seeds(tiny_report):
    report = tiny_report[0]
    rows = report["sections"]["vmapped_seeds"]["rows"]
    assert [r["replicates"] for r in rows] == report["sizes"]["seeds"]
    for r in rows:
        assert positive(r["ms_per_seed"]) and positive(r["speedup"]) and positive(r["fraction_of_peak"])
        assert r["ms_per_seed"] == pytest.approx(1e3 * r["vmapped"]["median_s"] / r["replicates"])


def test_resnet20_level_beside_the_reference(tiny_report):
    s = tiny_report[0]["sections"]["resnet20_level"]
    assert [r["level"] for r in s["levels"]] == [0, 1]
    assert s["levels"][1]["density"] == pytest.approx(0.8, abs=1e-3)  # one 20 % pruning step
    for r in s["levels"]:
        assert r["iterations"] == s["iterations"]
        assert positive(r["images_per_s"]) and positive(r["tflops"]) and r["train_s"] <= r["level_s"]
    assert s["airbench"]["images_per_s"] == pytest.approx(476 * 1024 / 3.83)


def test_inference_variants_agree_and_are_timed(tiny_report):
    report = tiny_report[0]
    s = report["sections"]["inference"]
    assert [round(t["density"], 3) for t in s["tickets"]] == report["sizes"]["densities"]
    for t in s["tickets"]:
        timed = {(r["variant"], r["batch"]) for r in t["rows"] if positive(r["median_ms"])}
        variants = ("dense", "compact", "bcoo", "bcoo_cusparse")
        assert {(v, b) for v in variants for b in s["batches"]} <= timed
        assert set(variants) <= set(t["max_abs_diff"]) and max(t["max_abs_diff"].values()) < 1e-3  # one function


def test_markdown_has_every_table(tiny_report):
    report, md, _ = tiny_report
    assert report["device_kind"] in md.splitlines()[0] and "FAILED" not in md
    for heading in ("## 1. LeNet-300-100", "## 2. Vmapped", "## 3. One ResNet-20", "## 4. Inference"):
        assert heading in md
    assert "| dense |" in md and "| 5% density |" in md and "lth level 1" in md and "airbench94" in md
    assert sum(line.startswith("|---") for line in md.splitlines()) == 4  # one table per section


def test_a_failing_section_is_recorded_and_shown(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import gpu
    from gpu_report import markdown

    report = {"sections": {}, "device_kind": "x", "platform": "cpu", "date": "d", "jax": "j", "size": "tiny",
              "matmul_precision": None, "cpu_count": 1, "loadavg_before": (0.0, 0.0, 0.0)}
    gpu.run_section(report, "inference", "boom", lambda: 1 / 0)
    assert report["sections"]["inference"]["error"].startswith("ZeroDivisionError")
    assert "FAILED: ZeroDivisionError" in markdown(report)


def test_a_failing_cusparse_lowering_keeps_the_other_figures(monkeypatch, tmp_path):
    from helpers import ticket_file

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import gpu
    from gpu_report import inference_table

    def broken(*args):
        raise RuntimeError("cusparse says no")

    monkeypatch.setattr(gpu, "with_cusparse", broken)
    path = ticket_file(tmp_path, density=0.2)[0]
    sizes = gpu.Sizes((8,), 1, 60, 1, 1, (1,), 1, 1, 8, 1, (0.2,), (2,), 0.001)
    ticket = {"density": 0.2, **gpu.one_ticket(path, sizes, 0)}
    assert ticket["cusparse_error"] == "RuntimeError: cusparse says no"
    assert {r["variant"] for r in ticket["rows"]} >= {"dense", "compact", "bcoo"}
    assert "bcoo_cusparse" not in {r["variant"] for r in ticket["rows"]}
    table = inference_table({"source": "s", "cusparse_flag": gpu.CUSPARSE_FLAG, "batches": [2], "tickets": [ticket]})
    assert "| failed |" in table[-2] and table[-1].endswith("RuntimeError: cusparse says no")
