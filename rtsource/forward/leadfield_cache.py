"""The disk cache of lead fields: one entry per sensor kind, keyed by what the gain depends on.

A lead field is the expensive part of a setup (seconds to minutes); a second setup with
another covariance or inverse method should not pay for it again. The entry point
(:func:`rtsource.forward.leadfield.make_leadfield`) hashes everything a part's gain depends
on (sensor and source positions, the head model, the method and the software version) into
a key with :func:`leadfield_key`, reads it with :func:`load_leadfield` and writes what it
computed with :func:`store_leadfield`. Entries live in
``rtsource.cache.cache_dir() / "forward"`` as npz (the gain and its description as JSON, no
pickle); a damaged or mismatched entry is recomputed, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..cache import cache_file, json_array, json_from_array, write_npz_atomically

logger = logging.getLogger(__name__)

__all__ = ["leadfield_key", "load_leadfield", "store_leadfield"]


def leadfield_key(*parts) -> str:
    """A hex key from arrays (hashed as float64 bytes) and JSON-able values, in order."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(np.ascontiguousarray(p, dtype=np.float64).tobytes())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"|")
    return h.hexdigest()[:24]


def load_leadfield(key: str, shape: tuple[int, int]) -> tuple[np.ndarray, dict[str, Any]] | None:
    """The gain and description of entry ``key``, or None (missing, damaged, other shape).

    Parameters
    ----------
    key : str
        From :func:`leadfield_key`.
    shape : (int, int)
        The gain's expected shape, (n_channels, 3 * n_sources).
    """
    path = cache_file("forward", key)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            gain, desc = z["gain"], json_from_array(z["model"])
    except Exception as exc:  # noqa: BLE001 -- a damaged cache entry is recomputed, not trusted
        logger.warning("ignoring unreadable forward cache %s (%s)", path, exc)
        return None
    if gain.shape != tuple(shape) or not isinstance(desc, dict):
        return None
    logger.info("lead field from cache %s", path)
    return gain, desc


def store_leadfield(key: str, gain: np.ndarray, description: Mapping[str, Any]) -> None:
    """Write entry ``key``; a cache that cannot be written is logged and skipped."""
    path = cache_file("forward", key)
    try:
        write_npz_atomically(path, gain=gain, model=json_array(dict(description)))
    except OSError as exc:
        logger.warning("could not cache the lead field in %s (%s)", path, exc)
