"""Compile once per machine: JAX's persistent compilation cache, on by default.

Every new process (a rerun, a replicate worker, a sweep cell) would otherwise compile the same
programs again. `enable_compile_cache` points JAX at a cache directory -- ``$LTH_CACHE``, else
``~/.cache/lth/compile`` beside the data cache -- so a second process loads them instead (the same
executables, so the same numbers bit for bit). ``LTH_CACHE=off`` (or ``lth run --no-compile-cache``)
turns it off. Every program is cached, the eager ops' few-millisecond ones too (an init's draws, the
optimiser's zeros, masking): loading them took a warm `lth run` of OpenLTH's LeNet-300-100 setup
from 4.96 to 4.62 s and from 5.39 to 5.21 s (medians of two paired comparisons; ~2 KB a file:
benchmarks/README.md, "Start-up and the compilation cache").

JAX reads a damaged entry (a truncated or flipped file), warns, compiles again and never rewrites
it (its cache keeps an existing key), so every later run warned again: `drop_damaged_entries` checks
each entry once (that its bytes decompress as JAX wrote them; name, size and mtime of the sound
ones kept in `VERIFIED`) and removes the damaged ones, which the next compile writes afresh. The
keys do not depend on the cache's path (JAX's XLA sub-caches, whose paths entered them, are off), so a
cache copied or mounted elsewhere is read as it is.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import jax

from lth.spec.files import write_atomic

CACHE_ENV = "LTH_CACHE"
OFF = ("off", "0", "none", "false")
MIN_COMPILE_SECONDS = 0.0
_enabled: list[Path] = []
VERIFIED = "lth-verified.json"  # {entry file name: [size, mtime_ns]} of the entries found sound
ENTRY_SUFFIX, ATIME_SUFFIX = "-cache", "-atime"  # JAX's cache files: <key>-cache, beside <key>-atime


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
    dropped = drop_damaged_entries(path)
    if dropped:
        entries = "entry" if len(dropped) == 1 else "entries"
        print(f"lth: warning: removed {len(dropped)} damaged compilation-cache {entries} from {path} (they are "
              "compiled again)", file=sys.stderr)
    jax.config.update("jax_compilation_cache_dir", str(path))
    # JAX's default puts the GPU autotuning sub-cache's path (inside this directory) into every key,
    # so a cache copied or mounted elsewhere was never read (and grew); off, the keys do not depend on
    # where the cache lives (the executables, autotuned, are still cached)
    jax.config.update("jax_persistent_cache_enable_xla_caches", "none")
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    _enabled.append(path)
    return path


def _decompresses(data: bytes) -> bool:
    from jax._src.compilation_cache import decompress_executable  # JAX's own codec (zstd or zlib)

    try:
        decompress_executable(data)
    except Exception:  # the codec's error for a truncated or altered entry
        return False
    return True


def drop_damaged_entries(path: Path) -> list[str]:
    """Remove the entries of the cache at `path` whose bytes do not decompress (and their access-time
    files); each entry is read once, the sound ones remembered in `VERIFIED` by size and mtime.
    Returns the names removed. Entries that cannot be read or removed are left as they are."""
    index = path / VERIFIED
    try:
        known = json.loads(index.read_text())
        known = known if isinstance(known, dict) else {}
    except (OSError, ValueError, RecursionError):
        known = {}
    sound, dropped = {}, []
    for entry in sorted(path.glob(f"*{ENTRY_SUFFIX}")):
        try:
            stat = entry.stat()
            signature = [stat.st_size, stat.st_mtime_ns]
            if known.get(entry.name) == signature or _decompresses(entry.read_bytes()):
                sound[entry.name] = signature
                continue
            entry.unlink()
            entry.with_name(entry.name.removesuffix(ENTRY_SUFFIX) + ATIME_SUFFIX).unlink(missing_ok=True)
            dropped.append(entry.name)
        except OSError:
            continue
    if sound != known:
        try:
            write_atomic(index, json.dumps(sound).encode())  # workers may verify at once
        except OSError:
            pass
    return dropped

