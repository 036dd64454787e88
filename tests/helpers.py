"""Tiny configs and subprocess helpers shared by the tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lth.spec.config import DataConfig, ExperimentConfig, OptimizerConfig, PruningConfig, TrainingConfig


def tiny_config(**changes) -> ExperimentConfig:
    """mlp_tiny on MNIST-1D: 35 iterations per level (3 epochs of batch 100 ... cut at 35), seconds."""
    config = ExperimentConfig(
        name="tiny",
        model="mlp_tiny",
        data=DataConfig(name="mnist1d"),
        training=TrainingConfig(batch_size=100, length="35it", eval_every="10it"),
        optimizer=OptimizerConfig(name="adam", learning_rate=1e-2),
        pruning=PruningConfig(fraction=0.3, layer_fractions=((r"output/kernel", 0.15),)),
        levels=2,
        rewind="0it",
        seed=0,
    )
    from lth.spec.config import replace

    return replace(config, **changes) if changes else config


@contextlib.contextmanager
def backend_compiles():
    """A list that grows by one per program built while the block runs: an XLA backend compilation,
    or a load from the persistent compilation cache (the suite shares one, see conftest.py)."""
    import jax

    compiles: list[str] = []

    def on_duration(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(event)

    def on_event(event, **kwargs):
        if event == "/jax/compilation_cache/cache_hits":
            compiles.append(event)

    jax.monitoring.register_event_duration_secs_listener(on_duration)
    jax.monitoring.register_event_listener(on_event)
    try:
        yield compiles
    finally:
        jax.monitoring.unregister_event_duration_listener(on_duration)
        jax.monitoring.unregister_event_listener(on_event)


ROOT = Path(__file__).resolve().parents[1]


def copy_run(run: Path, root: Path) -> Path:
    """A copy of the finished run directory `run` under the runs root `root` (what training its config
    under `root` writes: only orbax's commit markers name their path, and only their existence is read)."""
    import shutil

    return Path(shutil.copytree(run, root / run.name))


def start_script(script: str, args: list[str], devices: int, extra_env: dict[str, str] | None = None
                 ) -> subprocess.Popen:
    """A test file run as a script (its ``__main__`` dispatches on ``args[0]``) with `devices`
    virtual CPU devices: the device count is fixed when jax starts, so it needs a fresh process."""
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
           "JAX_PLATFORMS": "cpu", "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", **(extra_env or {})}
    return subprocess.Popen([sys.executable, script, *args], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish_scripts(*procs: subprocess.Popen, timeout: float) -> list[str]:
    """Wait for all; if one fails or time runs out, stop the others (a lone peer would wait for it).
    Each must exit 0 and print "WORKER OK"."""
    deadline = time.monotonic() + timeout
    try:
        while any(p.poll() is None for p in procs):
            if any(p.poll() not in (None, 0) for p in procs) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    outs = [p.communicate()[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0 and "WORKER OK" in out, f"exit code {p.returncode}:\n{out[-6000:]}"
    return outs


def run_cli(capsys, *argv: Any) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `lth ARGV` in this process, whether main returns or argparse exits."""
    from lth.cli import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def ticket_file(tmp_path, model="mlp_tiny", shape=(28, 28, 1), density=0.1, trained=False, name="t.safetensors"):
    """A ticket file of `model` with perturbed weights and a random mask at `density` (trained weights
    1.5x the start's when `trained`): (path, mask, params, state, trained)."""
    import jax
    import numpy as np

    import lth.tickets as ex
    from lth.models import get_model
    from lth.sparsity.masks import make_mask, named_leaves
    from lth.tickets.file import nest

    net = get_model(model, shape, 10)
    params, state = net.init(jax.random.key(0))
    rng = np.random.default_rng(1)
    params = nest([(p, np.asarray(v) + (0.1 * rng.standard_normal(v.shape)).astype(np.float32))
                   for p, v in named_leaves(params).items()])
    mask = nest([(p, None if m is None else rng.random(np.shape(m)) < density)
                 for p, m in named_leaves(make_mask(params)).items()])
    final = jax.tree.map(lambda a: a * 1.5, params) if trained else None
    path = ex.save(tmp_path / name, mask, params, state, trained=final,
                   metadata={"model": model, "input_shape": list(shape), "level": 4})
    return path, mask, params, state, final


def compiles_after_first_level(setup) -> int:
    """How many programs are built by a lottery's levels after level 0 (`backend_compiles`)."""
    from lth.lottery import lottery_levels

    with backend_compiles() as compiles:
        levels = lottery_levels(setup)
        next(levels)
        before = len(compiles)
        for _ in levels:
            pass
    return len(compiles) - before
