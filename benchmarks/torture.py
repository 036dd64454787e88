"""The torture test of docs/reliability.md: hundreds of bad inputs and damage cases through the real
CLI, each in its own process, counted.

    .venv/bin/python benchmarks/torture.py [--quick] [--jobs 2]

Bad input passes when the command exits 2 with exactly one stderr line starting "lth: error:", no
traceback, and the run root holds nothing afterwards. A damage case passes when the rerun after the
damage exits 0 with nothing on stderr but one-line warnings ("lth: warning:"), no traceback, and the
replicate's results.json equals the undamaged run's bytes -- or exits 2 with one line that names
the repair (the damage cannot be repaired, e.g. records of an older lth).

The surfaces of issue 28 are counted as classes of their own, each with one of these two rules: ticket
headers edited byte by byte or consistently (`lth run --ticket`, `lth ticket inspect`), method runs
(`ls --check` keeps every record; `control`, `instability`, `ticket export --trained` refuse), `--out`
targets (/dev/full, a FIFO, a run's own results.json, a directory: refused, the target untouched),
sweep and experiment files (syntax error, sys.exit, a grid as a list, CONTROLS = "rigl"), seeds past
2**32 - 1, a damaged compilation-cache entry (one warning, the same results), a damaged manifest with
an altered valid mask file, and records edited to NaN, Infinity or a string.
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
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ["run", "mlp_mnist1d", "--variant", "smoke", "--no-progress", "--wandb", "disabled"]
TINY = ["run", "mlp_mnist1d", "--variant", "smoke", "--no-progress", "--wandb", "disabled", "--levels", "2",
        "--set", "rewind=2it", "--set", "training.length=6it", "--set", "training.eval_every=2it"]

BAD_VALUES = {
    "int": ["abc", "1.5", "true", "null", "[1]", '{"a": 1}', "-1"],
    "float": ["abc", "NaN", "Infinity", "-Infinity", "true", "[1, 2]", "null", "-1"],
    "str": ["5", "[1]", "true", "null"],
    "duration": ["5", "it", "1.5ep", "-3it", "soon"],
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
              "training.batch_size=100000", "rewind=1000ep", "optimizer.warmup=x", "training.length=0it",
              "training.eval_every=0it"]
FLAGS = [["--lr", "nan"], ["--lr", "inf"], ["--lr", "0"], ["--levels", "-1"],
         ["--levels", "1000000000"], ["--batch-size", "0"], ["--replicates", "0"], ["--replicates", "-3"],
         ["--checkpoint-every", "soon"], ["--runs", ""], ["--runs", "/dev/null"], ["--runs", "/proc/lth"],
         ["--layout", "magic"], ["--workers", "0"], ["--layout", "vmap", "--workers", "2"], ["--rewind", "x"],
         ["--epochs", "0"], ["--iterations", "0"], ["--prune-fraction", "1"], ["--prune-fraction", "0"],
         ["--prune-fraction", "-0.5"], ["--strategy", "best"], ["--dataset", "imagenet"], ["--mask", "/nope.npz"],
         ["--variant", "nope"], ["--wandb", "sometimes"], ["--eval-every", "0it"], ["--data-dir", "/dev/null"],
         ["--seed", "4294967296"], ["--seed", "99999999999999999999"], ["--seed", "4294967294", "--replicates", "3"],
         ["--seed", "-1"], ["--set", "seed=1e20"], ["--set", "seed=4294967296"]]
EXPERIMENT_FILES = ["def get_config(:\n", "import no_such_module_lth\n", "raise RuntimeError('x')\n",
                    "def get_config(variant):\n    raise ValueError('boom')\n", "def get_config(a, b):\n    pass\n",
                    "get_config = 5\n", "def get_config(variant):\n    return 5\n", "", "x = 1\n",
                    "import lth\ndef get_config(variant):\n    return lth.ExperimentConfig(levels='3')\n",
                    "import lth\ndef get_config(variant):\n    return lth.ExperimentConfig(name='../x')\n"]


def lth(args: list[str], cwd: Path, timeout: float = 600, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "lth.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def bad_inputs() -> list[list[str]]:
    cases = [[*SMOKE, "--set", f"{field}={value}"] for field, kind in FIELDS.items() for value in BAD_VALUES[kind]]
    cases += [[*SMOKE, "--set", item] for item in EXTRA_SETS]
    cases += [[*SMOKE, *flags] for flags in FLAGS]
    cases += [["run", "no_such_experiment"], ["control", "no_such_run", "reinit"], ["ls", "--runs", "/dev/null"],
              ["instability", "no_such_run", "--rewind", "0"], ["plot", "no_such_run"], ["run"], ["frobnicate"]]
    return cases


def check_bad_input(args: list[str], files: dict[str, str], with_runs: bool = True) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, text in files.items():
            (tmp / name).write_text(text)
        if with_runs and "--runs" not in args:
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
        {**DAMAGES, **RECORD_EDITS}[damage](path)
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


# -- the surfaces of issue 28 ------------------------------------------------------------------------

METHOD = [*TINY, "--method", "static", "--densities", "0.5,0.2"]
SWEEP_FILES = ["from lth.sweeps.file import Sweep\ndef get_sweep(:\n",
               "import sys\nsys.exit(0)\n",
               "import no_such_module_lth\n",
               "def get_sweep(variant='default'):\n    raise RuntimeError('boom')\n",
               "def get_sweep(a, b):\n    pass\n",
               "get_sweep = 5\n",
               "def get_sweep(variant='default'):\n    return 5\n",
               "from lth.sweeps.file import Sweep\ndef get_sweep(variant='default'):\n"
               "    import sys\n    sys.exit(0)\n",
               "from lth.sweeps.file import Sweep\ndef get_sweep(variant='default'):\n"
               "    return Sweep(name='s', experiment='mlp_mnist1d', variant='smoke', grid=['seed', [0, 1]])\n",
               "from lth.sweeps.file import Sweep\ndef get_sweep(variant='default'):\n"
               "    return Sweep(name='s', experiment='mlp_mnist1d', variant='smoke', grid={'seed': [0, 2**32]})\n",
               "from lth.sweeps.file import Sweep\ndef get_sweep(variant='default'):\n"
               "    return Sweep(name='s', experiment='mlp_mnist1d', variant='smoke', replicates=3,\n"
               "                 set={'seed': 4294967294})\n",
               "from lth.sweeps.file import Sweep\ndef get_sweep(variant='default'):\n"
               "    return Sweep(name='s', experiment='mlp_mnist1d', variant='smoke', grid={'x.y': [1, 2]})\n",
               "from lth.sweeps.file import Sweep\ndef get_sweep(variant='default'):\n"
               "    return Sweep(name='s', experiment='mlp_mnist1d', variant='smoke',\n"
               "                 grid={'seed': list(range(1000)), 'rewind': [f'{i}it' for i in range(1000)]})\n"]
EXPERIMENT_CONSTANTS = ['CONTROLS = "rigl"\n', 'VARIANTS = "smoke"\n', 'CONTROLS = {"default": "reinit"}\n',
                        'CONTROLS = ("no_such_control",)\n', 'import sys\nsys.exit(0)\n']
EXPERIMENT_BASE = ("from lth.spec.experiments import load_config\ndef get_config(variant='default'):\n"
                   "    return load_config('mlp_mnist1d', 'smoke')\n")
# (field, value, digest kept): kept, the header checks its fields; not kept, its digest refuses the edit
TICKET_EDITS = [("data_level", 9, False), ("start_step", 0, False), ("level", 2, False), ("seed", 1, False),
                ("retrained", False, False), ("model", "mlp_mnist1e", False), ("dataset", "mnist", False),
                ("start_step", "0", True), ("data_level", -3, True), ("level", 1.5, True), ("seed", -1, True),
                ("retrained", "yes", True), ("model", 5, True), ("num_classes", 0, True), ("replicate", None, True),
                ("dataset", ["mnist1d"], True)]
# a consistent header whose values are well typed but do not fit the run: `lth run --ticket` refuses it
# (`lth ticket inspect` shows it as it is)
TICKET_RUN_ONLY = [("start_step", 10**30, True), ("start_step", 3, True)]
RECORD_EDITS = {  # a number of level 1's record edited to what lth never writes: damage, rebuilt from the checkpoints
    "nan": lambda p: _edit_record(p, "test_accuracy", "NaN"),
    "infinity": lambda p: _edit_record(p, "test_accuracy", "Infinity"),
    "string": lambda p: _edit_record(p, "test_accuracy", '"0.9"'),
    "over_one": lambda p: _edit_record(p, "test_accuracy", "1.5"),
    "null": lambda p: _edit_record(p, "test_accuracy", "null"),
    "density_nan": lambda p: _edit_record(p, "density", "NaN"),
}


def _edit_record(path: Path, field: str, text: str) -> None:
    records = json.loads(path.read_text())
    records[1][field] = "__EDIT__"
    path.write_text(json.dumps(records, indent=2, sort_keys=True).replace('"__EDIT__"', text) + "\n")


def edited_ticket(source: Path, target: Path, field: str, value: object, keep_digest: bool) -> None:
    """A copy of ticket `source` whose header `field` holds `value`: with its header digest made
    again (`keep_digest`), or as a byte edit would leave it (the digest of the old header)."""
    from lth.tickets.header import header_digest

    data = source.read_bytes()
    size = int.from_bytes(data[:8], "little")
    outer = json.loads(data[8:8 + size])
    header = json.loads(outer["__metadata__"]["lth_ticket"])
    header[field] = value
    if keep_digest:
        header["sha256"]["header"] = header_digest(header)
    outer["__metadata__"]["lth_ticket"] = json.dumps(header, sort_keys=True, separators=(",", ":"))
    text = json.dumps(outer).encode()
    text += b" " * (-len(text) % 8)
    target.write_bytes(len(text).to_bytes(8, "little") + text + data[8 + size:])


def tree_bytes(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
            and p.name != "lock"}


def one_error_line(proc: subprocess.CompletedProcess) -> bool:
    lines = proc.stderr.strip().splitlines()
    return (proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("lth: error:")
            and "Traceback" not in proc.stderr)


def check_refused_on(reference: Path, args: list[str], target: str | None = None) -> tuple[bool, str]:
    """A command on a copy of a finished run root (`{run}` and `{root}` in `args` filled in) that must
    be refused in one line, the run root unchanged; `target`: an --out path made first ("fifo", "dir",
    "/dev/full" or a path in the run) that must be as it was."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "runs"
        shutil.copytree(reference, root)
        (run,) = [p for p in root.iterdir() if p.is_dir() and p.name != "sweeps"]
        out = {"fifo": Path(tmp) / "fifo", "dir": Path(tmp) / "dir"}.get(target or "", None)
        if target == "fifo":
            os.mkfifo(out)
        elif target == "dir":
            out.mkdir()
        path = str(out) if out is not None else (target or "").format(run=run)
        before = tree_bytes(root)
        proc = lth([arg.format(run=run, root=root, out=path) for arg in args], Path(tmp), timeout=300)
        same = tree_bytes(root) == before
        intact = (target != "/dev/full" or Path("/dev/full").is_char_device()) and (
            target != "fifo" or out.is_fifo()) and (target != "dir" or not any(out.iterdir()))
        return one_error_line(proc) and same and intact, f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}"


def check_method_ls_check(reference: Path) -> tuple[bool, str]:
    """`lth ls --check` of a finished method run keeps every record (it emptied results.json)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "runs"
        shutil.copytree(reference, root)
        before = {k: v for k, v in tree_bytes(root).items() if k.endswith("results.json")}
        proc = lth(["ls", "--check", "--runs", str(root)], Path(tmp), timeout=300)
        after = {k: v for k, v in tree_bytes(root).items() if k.endswith("results.json")}
        lines = proc.stderr.strip().splitlines()
        ok = proc.returncode == 0 and after == before and all(line.startswith("lth: warning:") for line in lines)
        return ok and "Traceback" not in proc.stderr, f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}"


def check_cache(cache: Path, reference: Path, damage: str) -> tuple[bool, str]:
    """A damaged entry of a warm compilation cache: one warning, and the run's results the same bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "cache"
        shutil.copytree(cache, copy)
        entries = sorted((p for p in copy.rglob("*") if p.is_file() and not p.name.startswith("lth-")),
                         key=lambda p: p.stat().st_size)
        DAMAGES[damage](entries[-1])
        proc = lth([*TINY, "--runs", str(Path(tmp) / "runs")], Path(tmp), env={"LTH_CACHE": str(copy)})
        lines = proc.stderr.strip().splitlines()
        results = next((Path(tmp) / "runs").glob("*/replicate_00/results.json"), None)
        same = results is not None and results.read_bytes() == next(reference.glob("*/replicate_00/results.json")
                                                                    ).read_bytes()
        ok = (proc.returncode == 0 and same and "Traceback" not in proc.stderr and len(lines) <= 1
              and all(line.startswith("lth: warning:") for line in lines))
        return ok, f"exit {proc.returncode}, same results {same}: {proc.stderr.strip()[-300:]}"


def check_manifest_and_mask(reference: Path) -> tuple[bool, str]:
    """A damaged manifest.json with an altered, valid mask file (level 2's as level 1's): a rerun said
    "all levels done"; now the mask is restored from its checkpoint and the results stay the same."""
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        shutil.copytree(reference, runs)
        rep = next(runs.glob("*/replicate_00"))
        (rep / "manifest.json").write_text("{not json")
        shutil.copy(rep / "masks" / "level_02.npz", rep / "masks" / "level_01.npz")
        proc = lth([*TINY, "--runs", str(runs)], Path(tmp))
        good = np.load(next(reference.glob("*/replicate_00")) / "masks" / "level_01.npz")
        now = np.load(rep / "masks" / "level_01.npz")
        restored = set(good.files) == set(now.files) and all((good[k] == now[k]).all() for k in good.files)
        same = (rep / "results.json").read_bytes() == next(reference.glob("*/replicate_00/results.json")).read_bytes()
        lines = proc.stderr.strip().splitlines()
        ok = proc.returncode == 0 and restored and same and all(line.startswith("lth: warning:") for line in lines)
        return ok, f"exit {proc.returncode}, mask restored {restored}: {proc.stderr.strip()[-300:]}"


def surface_work(tmp: Path, reference: Path) -> list[tuple[str, Any, tuple]]:
    """The cases of issue 28's surfaces, on finished runs built here (a method run, a ticket, a cache)."""
    work: list[tuple[str, Any, tuple]] = []
    ticket = tmp / "ticket.safetensors"
    proc = lth(["ticket", "export", next(reference.iterdir()).name, "--level", "1", "--runs", str(reference),
                "--out", str(ticket)], tmp)
    assert proc.returncode == 0, proc.stderr
    for i, (field, value, keep) in enumerate(TICKET_EDITS + TICKET_RUN_ONLY):
        edited = tmp / f"ticket_{i}.safetensors"
        edited_ticket(ticket, edited, field, value, keep)
        work.append(("ticket", check_bad_input, ([*TINY, "--ticket", str(edited)], {})))
        if i < len(TICKET_EDITS):
            work.append(("ticket", check_bad_input, (["ticket", "inspect", str(edited)], {}, False)))
    methods = tmp / "methods"
    proc = lth([*METHOD, "--runs", str(methods)], tmp)
    assert proc.returncode == 0, proc.stderr
    work.append(("method", check_method_ls_check, (methods,)))
    for args in (["control", "{run}", "reinit"], ["instability", "{run}", "--rewind", "0it"],
                 ["ticket", "export", "{run}", "--level", "1", "--trained"], ["control", "{run}", "imp+reinit"]):
        work.append(("method", check_refused_on, (methods, [*args, "--runs", "{root}"])))
    export = ["ticket", "export", "{run}", "--level", "1", "--runs", "{root}", "--out", "{out}"]
    for target in ("/dev/full", "fifo", "dir", "{run}/replicate_00/results.json", "{run}/config.json",
                   "{run}/replicate_00/manifest.json"):
        work.append(("out", check_refused_on, (reference, export, target)))
        work.append(("out", check_refused_on, (reference, ["plot", "{run}", "--runs", "{root}", "--out", "{out}"],
                                                target)))
    work += [("sweep", check_bad_input, (["sweep", "study.py"], {"study.py": text})) for text in SWEEP_FILES]
    work += [("sweep", check_bad_input, (["run", "exp.py", *variant], {"exp.py": EXPERIMENT_BASE + text}))
             for text in EXPERIMENT_CONSTANTS for variant in ([], ["--variant", "s"])]
    cache = tmp / "cache"
    proc = lth([*TINY, "--runs", str(tmp / "cache-run")], tmp, env={"LTH_CACHE": str(cache)})
    assert proc.returncode == 0, proc.stderr
    work += [("cache", check_cache, (cache, reference, damage)) for damage in ("truncate", "empty", "garbage", "flip")]
    work.append(("damage", check_manifest_and_mask, (reference,)))
    for edit in RECORD_EDITS:
        for interrupted in (False, True):
            work.append(("damage", check_damage, (reference, "results.json", edit, interrupted)))
    return work


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="every 5th case only")
    parser.add_argument("--only", help="only these classes (comma-separated: input, damage, ticket, ...)")
    parser.add_argument("--old-cases", action="store_true", help="only the cases before issue 28's surfaces")
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
        if not args.old_cases:
            work += surface_work(Path(tmp), reference)
        if args.only:
            work = [item for item in work if item[0] in args.only.split(",")]
        if args.quick:
            work = work[::5]
        counts: dict[str, list[int]] = {}
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            futures = {pool.submit(fn, *fn_args): (kind, fn_args) for kind, fn, fn_args in work}
            for future in concurrent.futures.as_completed(futures):
                kind, fn_args = futures[future]
                try:
                    ok, detail = future.result()
                except Exception as err:  # noqa: BLE001 - a case that cannot even be judged fails, with why
                    ok, detail = False, f"{type(err).__name__}: {err}"
                count = counts.setdefault(kind, [0, 0])
                count[0] += 1
                count[1] += ok
                if not ok:
                    print(f"FAIL {kind} {fn_args[:4] if kind == 'damage' else fn_args[0]}: {detail}", flush=True)
    for kind, (tried, ok) in counts.items():
        print(f"{kind}: tried {tried}, clean {ok}, failing {tried - ok}")
    print(f"all: tried {sum(c[0] for c in counts.values())}, clean {sum(c[1] for c in counts.values())}")
    print(f"{time.monotonic() - started:.0f} s")
    return 0 if all(tried == ok for tried, ok in counts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
