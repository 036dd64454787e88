"""The persistent compilation cache: a second process loads what the first compiled, with the same
numbers bit for bit, and `LTH_CACHE=off` / `--no-compile-cache` turn it off."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from lth.training.compile_cache import compile_cache_dir, enable_compile_cache

ROOT = Path(__file__).resolve().parents[1]


COUNTING_RUN = """
import sys, jax
from lth.cli import main
hits = []
jax.monitoring.register_event_listener(lambda event, **kw: hits.append(event) if event.endswith("cache_hits") else None)
code = main(sys.argv[1:])
print("CACHE HITS", len(hits))
sys.exit(code)
"""


def _run(runs: Path, cache: str, *extra: str) -> int:
    """`lth run mlp_mnist1d --variant smoke --no-controls` in a fresh process; the persistent-cache hits
    it had. (The main line alone: its programs are what the cache is checked on; the smoke variant's two
    random controls would only add seconds of compiling to every process.)"""
    return _run_with_stderr(runs, cache, *extra)[0]


def _run_with_stderr(runs: Path, cache: str, *extra: str) -> tuple[int, str]:
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(ROOT), "LTH_CACHE": cache}
    proc = subprocess.run([sys.executable, "-c", COUNTING_RUN, "run", "mlp_mnist1d", "--variant", "smoke",
                           "--no-progress", "--no-controls", "--runs", str(runs), *extra], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return int(proc.stdout.rsplit("CACHE HITS", 1)[1]), proc.stderr


def test_cache_directory_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LTH_CACHE", str(tmp_path / "c"))
    assert compile_cache_dir() == tmp_path / "c"
    for off in ("off", "0", "OFF"):
        monkeypatch.setenv("LTH_CACHE", off)
        assert compile_cache_dir() is None
    monkeypatch.delenv("LTH_CACHE")
    assert compile_cache_dir() == Path.home() / ".cache" / "lth" / "compile"


def test_a_second_process_loads_the_programs_and_computes_the_same(tmp_path):
    cache = tmp_path / "cache"
    first_hits = _run(tmp_path / "first", str(cache))  # (a hit here: one program built twice in the process)
    entries = {p.name for p in cache.iterdir()}
    assert any(name.startswith("jit_") for name in entries), entries  # the first process wrote its programs
    second_hits = _run(tmp_path / "second", str(cache))
    assert second_hits >= len(entries) // 2 and second_hits > first_hits, (first_hits, second_hits, len(entries))
    assert entries <= {p.name for p in cache.iterdir()}
    assert _run(tmp_path / "uncached", str(tmp_path / "unused"), "--no-compile-cache") == 0
    assert not (tmp_path / "unused").exists()
    (first,), (second,), (uncached,) = (list((tmp_path / d).glob("*/replicate_00/results.json"))
                                        for d in ("first", "second", "uncached"))
    assert first.read_bytes() == second.read_bytes() == uncached.read_bytes()
    # a damaged entry: JAX would read it, warn and never rewrite it; lth drops it once, the run writes it again
    victim = max((p for p in cache.glob("jit_*-cache")), key=lambda p: p.stat().st_size)
    victim.write_bytes(victim.read_bytes()[:100])
    _, err = _run_with_stderr(tmp_path / "third", str(cache))
    assert "removed 1 damaged compilation-cache entry" in err and "Error reading" not in err, err
    assert victim.exists() and len(victim.read_bytes()) > 100  # compiled and written afresh
    # the repaired cache, copied elsewhere, is read as it is: no damaged entry left, and its keys do not
    # depend on its path (one process checks both: the copy holds the repaired cache's bytes)
    moved = tmp_path / "moved"
    shutil.copytree(cache, moved)
    moved_hits, err = _run_with_stderr(tmp_path / "fourth", str(moved))
    assert "damaged" not in err and "Error reading" not in err, err
    assert moved_hits >= second_hits


def test_small_eager_programs_are_cached_too():
    """Every program goes into the cache, the few-millisecond eager ones too (an init's draws and
    fills, the optimiser's zeros): a warm process loads them instead of compiling each again. Two
    jitted functions with the same program: the second finds the first's entry."""
    assert enable_compile_cache() is not None  # the suite's cache (conftest)
    offset = time.time_ns() % 1_000_003 / 7.0  # a program no earlier test compiled
    hits: list[str] = []

    def on_event(event, **kwargs):
        if event == "/jax/compilation_cache/cache_hits":
            hits.append(event)

    jax.monitoring.register_event_listener(on_event)
    try:
        first = jax.jit(lambda x: x + offset)(jnp.ones(3))  # compiled (in ~10 ms) and written
        assert hits == []
        second = jax.jit(lambda x: x + offset)(jnp.ones(3))  # another function: not in jit's memory
    finally:
        jax.monitoring.unregister_event_listener(on_event)
    assert len(hits) == 1 and first.tolist() == second.tolist()
