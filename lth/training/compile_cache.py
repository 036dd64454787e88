"""Compile once per machine: JAX's persistent compilation cache, on by default.

Every new process (a rerun, a replicate worker, a sweep cell) would otherwise compile the same
programs again. `enable_compile_cache` points JAX at a cache directory -- ``$LTH_CACHE``, else
``~/.cache/lth/compile`` beside the data cache -- so a second process loads them instead (the same
executables, so the same numbers bit for bit). ``LTH_CACHE=off`` (or ``lth run --no-compile-cache``)
turns it off. Programs that compile in under `MIN_COMPILE_SECONDS` are not worth a file.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

CACHE_ENV = "LTH_CACHE"
OFF = ("off", "0", "none", "false")
MIN_COMPILE_SECONDS = 0.1
_enabled: list[Path] = []


def compile_cache_dir() -> Path | None:
    """The cache directory this process uses: ``$LTH_CACHE``, else ~/.cache/lth/compile; None when off."""
    value = os.environ.get(CACHE_ENV)
    if value is not None and value.strip().lower() in OFF:
        return None
    return Path(value).expanduser() if value else Path.home() / ".cache" / "lth" / "compile"


def enable_compile_cache() -> Path | None:
    """Turn JAX's persistent compilation cache on at `compile_cache_dir()` (once per process; later
    calls keep the first directory). An unusable directory leaves the cache off (compiling still works)."""
    if _enabled:
        return _enabled[0]
    path = compile_cache_dir()
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    if not os.access(path, os.W_OK | os.X_OK):
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    _enabled.append(path)
    return path
