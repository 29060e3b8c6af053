"""Where rtsource keeps what it computes once and reuses: forward solutions and lead fields.

This module is on the ground floor (it imports nothing from rtsource), so every layer that
caches (the BEM and OpenMEEG solvers, the lead-field entry point, the demo's bundle) can use
it without climbing up. Cache files are npz without pickle: arrays plus a JSON document
stored as bytes. Writers go through a temporary file and an atomic rename, so a reader never
sees half a file; readers treat any damaged entry as missing (and recompute it).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["cache_dir", "cache_file", "json_array", "json_from_array", "write_npz_atomically"]


def cache_dir() -> Path:
    """Where rtsource caches forward solutions: $RTSOURCE_CACHE, else $XDG_CACHE_HOME/rtsource."""
    env = os.environ.get("RTSOURCE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rtsource"


def cache_file(kind: str, key: str) -> Path:
    """The npz file of cache entry ``key`` of ``kind`` ("bem", "forward", ...)."""
    return cache_dir() / kind / f"{key}.npz"


def json_array(document: Any) -> np.ndarray:
    """A JSON document as a uint8 array (how cache files store metadata without pickle)."""
    return np.frombuffer(json.dumps(document, default=str).encode(), np.uint8)


def json_from_array(array: np.ndarray) -> Any:
    """The JSON document :func:`json_array` stored."""
    return json.loads(bytes(np.asarray(array, dtype=np.uint8)).decode())


def write_npz_atomically(path: Path, **arrays: np.ndarray) -> None:
    """Write ``arrays`` to ``path`` (npz) through a temporary file and an atomic rename.

    The temporary name is unique per process and call, so concurrent writers of one entry
    cannot interleave (the last rename wins, and both wrote the same content).

    Raises
    ------
    OSError
        The directory cannot be created or the file not written; callers log it and go on
        without the cache.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.{time.time_ns()}.tmp.npz")
    try:
        np.savez(tmp, **arrays)
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()
