"""The torture test of docs/reliability.md: hundreds of bad inputs and damage cases through the real
CLI, each in its own process, counted.

    .venv/bin/python benchmarks/torture.py [--quick] [--jobs 2]

Bad input passes when the command exits 2 with exactly one stderr line starting "lth: error:", no
traceback, and the run root holds nothing afterwards. A damage case passes when the rerun after the
damage exits 0 with nothing on stderr but one-line warnings ("lth: warning:"), no traceback, and the
replicate's results.json equals the undamaged run's bytes -- or exits 2 with one line that names
the repair (the damage cannot be repaired, e.g. records of an older lth).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ["run", "mlp_mnist1d", "--variant", "smoke", "--no-progress", "--wandb", "disabled"]
TINY = ["run", "mlp_mnist1d", "--variant", "smoke", "--no-progress", "--wandb", "disabled", "--levels", "2",
        "--set", "rewind=2it", "--set", "training.length=6it", "--set", "training.eval_every=2it"]

BAD_VALUES = {
    "int": ["abc", "1.5", "true", "null", "[1]", '{"a": 1}', "-1"],
    "float": ["abc", "NaN", "Infinity", "-Infinity", "true", "[1, 2]", "null", "-1"],
    "str": ["5", "[1]", "true", "null"],
    "duration": ["5", "it", "1.5ep", "-3it", "soon", "0it"],
}
FIELDS = {
    "levels": "int", "seed": "int", "training.batch_size": "int", "optimizer.learning_rate": "float",
    "pruning.fraction": "float", "optimizer.momentum": "float", "optimizer.b1": "float", "optimizer.b2": "float",
    "optimizer.eps": "float", "optimizer.gamma": "float", "optimizer.weight_decay": "float", "model": "str",
    "data.name": "str", "optimizer.name": "str", "optimizer.schedule": "str", "pruning.strategy": "str",
    "retraining": "str", "training.length": "duration", "training.eval_every": "duration", "rewind": "duration",
}
EXTRA_SETS = ['pruning.exclude="x"', "pruning.exclude=5", 'pruning.prunable=["("]', 'pruning.prunable=["nomatch"]',
              'pruning.layer_fractions=[["x"]]', 'pruning.layer_fractions=[["x", 2]]', "data=5", "training=5",
              'data={"x": 1}', "name=../../escape", "name=", "name=a/b", "nofield=1", "levels=1000000000",
              "training.batch_size=100000", "data.validation_size=0", "rewind=1000ep", "optimizer.warmup=x"]
FLAGS = [["--lr", "nan"], ["--lr", "inf"], ["--lr", "0"], ["--levels", "-1"],
         ["--levels", "1000000000"], ["--batch-size", "0"], ["--replicates", "0"], ["--replicates", "-3"],
         ["--checkpoint-every", "soon"], ["--runs", ""], ["--runs", "/dev/null"], ["--runs", "/proc/lth"],
         ["--layout", "magic"], ["--workers", "0"], ["--layout", "vmap", "--workers", "2"], ["--rewind", "x"],
         ["--epochs", "0"], ["--iterations", "0"], ["--prune-fraction", "1"], ["--prune-fraction", "0"],
         ["--prune-fraction", "-0.5"], ["--strategy", "best"], ["--dataset", "imagenet"], ["--mask", "/nope.npz"],
         ["--variant", "nope"], ["--wandb", "sometimes"], ["--eval-every", "0it"], ["--data-dir", "/dev/null"]]
EXPERIMENT_FILES = ["def get_config(:\n", "import no_such_module_lth\n", "raise RuntimeError('x')\n",
                    "def get_config(variant):\n    raise ValueError('boom')\n", "def get_config(a, b):\n    pass\n",
                    "get_config = 5\n", "def get_config(variant):\n    return 5\n", "", "x = 1\n",
                    "import lth\ndef get_config(variant):\n    return lth.ExperimentConfig(levels='3')\n",
                    "import lth\ndef get_config(variant):\n    return lth.ExperimentConfig(name='../x')\n"]


def lth(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "lth.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def bad_inputs() -> list[list[str]]:
    cases = [[*SMOKE, "--set", f"{field}={value}"] for field, kind in FIELDS.items() for value in BAD_VALUES[kind]]
    cases += [[*SMOKE, "--set", item] for item in EXTRA_SETS]
    cases += [[*SMOKE, *flags] for flags in FLAGS]
    cases += [["run", "no_such_experiment"], ["control", "no_such_run", "reinit"], ["ls", "--runs", "/dev/null"],
              ["instability", "no_such_run", "--rewind", "0"], ["plot", "no_such_run"], ["run"], ["frobnicate"]]
    return cases


def check_bad_input(args: list[str], files: dict[str, str]) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, text in files.items():
            (tmp / name).write_text(text)
        if "--runs" not in args:
            args = [*args, "--runs", str(tmp / "runs")]
        proc = lth(args, tmp)
        lines = proc.stderr.strip().splitlines()
        ok = (proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("lth: error:")
              and "Traceback" not in proc.stderr and not (tmp / "runs").exists())
        return ok, f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}"


DAMAGES = {
    "truncate": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "empty": lambda p: p.write_bytes(b""),
    "garbage": lambda p: p.write_bytes(b"\x00garbage\xff" * 8),
    "flip": lambda p: p.write_bytes(_flip(p.read_bytes())),
    "delete": lambda p: p.unlink(),
}


def _flip(data: bytes) -> bytes:
    if not data:
        return data
    mid = len(data) // 2
    return data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1:]


def damage_targets(rep: Path) -> list[Path]:
    targets = [rep / "results.json", rep / "metrics.jsonl", rep / "manifest.json", rep / "masks" / "level_01.npz",
               rep / "masks" / "level_02.npz", rep / "checkpoints" / "rewind" / "tree" / "manifest.ocdbt"]
    for level in (0, 1, 2):
        tree = rep / "checkpoints" / f"level_{level:02d}" / "final" / "tree"
        data = sorted((tree / "ocdbt.process_0" / "d").iterdir(), key=lambda p: p.stat().st_size)
        targets += [tree / "manifest.ocdbt", data[-1]]
    return targets


def check_damage(reference: Path, target: str, damage: str, interrupted: bool) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        shutil.copytree(reference, runs)
        (run,) = list(runs.iterdir())
        rep = run / "replicate_00"
        if interrupted:  # as a kill before level 2 leaves it
            records = json.loads((rep / "results.json").read_text())[:2]
            (rep / "results.json").write_text(json.dumps(records, indent=2, sort_keys=True) + "\n")
            shutil.rmtree(rep / "checkpoints" / "level_02")
            (rep / "masks" / "level_02.npz").unlink()
        path = rep / target
        if not path.exists():
            return True, "not present in this case"
        DAMAGES[damage](path)
        proc = lth([*TINY, "--runs", str(runs)], Path(tmp))
        lines = proc.stderr.strip().splitlines()
        clean = "Traceback" not in proc.stderr
        if proc.returncode == 0:
            same = (rep / "results.json").read_bytes() == (reference / run.name / "replicate_00" / "results.json"
                                                           ).read_bytes()
            ok = clean and same and all(line.startswith("lth: warning:") for line in lines)
        else:
            ok = clean and proc.returncode == 2 and len(lines) == 1 and "delete" in lines[0]
        return ok, f"exit {proc.returncode}: {proc.stderr.strip()[-400:]}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="every 5th case only")
    args = parser.parse_args()
    started = time.monotonic()
    work = [("input", check_bad_input, (case, {})) for case in bad_inputs()]
    work += [("input", check_bad_input, (["run", "broken.py"], {"broken.py": text})) for text in EXPERIMENT_FILES]
    with tempfile.TemporaryDirectory() as tmp:
        reference = Path(tmp) / "reference"
        proc = lth([*TINY, "--runs", str(reference)], Path(tmp))
        assert proc.returncode == 0, proc.stderr
        rep = next(reference.glob("*/replicate_00"))
        for target in damage_targets(rep):
            for damage in DAMAGES:
                for interrupted in (False, True):
                    work.append(("damage", check_damage, (reference, str(target.relative_to(rep)), damage,
                                                         interrupted)))
        if args.quick:
            work = work[::5]
        counts: dict[str, list[int]] = {"input": [0, 0], "damage": [0, 0]}
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            futures = {pool.submit(fn, *fn_args): (kind, fn_args) for kind, fn, fn_args in work}
            for future in concurrent.futures.as_completed(futures):
                kind, fn_args = futures[future]
                ok, detail = future.result()
                counts[kind][0] += 1
                counts[kind][1] += ok
                if not ok:
                    print(f"FAIL {kind} {fn_args[:4] if kind == 'damage' else fn_args[0]}: {detail}", flush=True)
    print(f"bad inputs tried {counts['input'][0]}, clean {counts['input'][1]}")
    print(f"damage cases tried {counts['damage'][0]}, recovered or refused cleanly {counts['damage'][1]}")
    print(f"{time.monotonic() - started:.0f} s")
    return 0 if all(tried == ok for tried, ok in counts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
