"""Argument checks of the kernels' Python wrappers.

The numba kernels index preallocated buffers without bounds checks (that is what makes them
fast), so a chunk longer than the buffers, or narrower than the columns a kernel reads,
would write or read past the end of an array. The wrappers call :func:`check_chunk` first:
a few comparisons per chunk, and a clear error instead of a crash.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..errors import ConfigError, StreamError


def check_max_chunk(max_chunk, what: str) -> int:
    """``max_chunk`` as an int >= 1, or a ConfigError naming ``what``."""
    if isinstance(max_chunk, bool) or not isinstance(max_chunk, numbers.Integral) or not 1 <= max_chunk <= 1 << 24:
        raise ConfigError(f"{what}: max_chunk = {max_chunk!r} must be an integer in 1..{1 << 24} ([stream] max_chunk, --max-chunk)")
    return int(max_chunk)


def check_chunk(what: str, x, n, max_chunk: int, n_columns: int) -> None:
    """Refuse a chunk the kernels cannot process safely.

    Parameters
    ----------
    what : str
        The stage, for the message ("operator", "ROI stage", ...).
    x : ndarray, shape (>= n, >= n_columns)
        The chunk; numeric.
    n : int
        Rows to process, 0 <= n <= max_chunk.
    max_chunk : int
        Rows of the stage's buffers.
    n_columns : int
        Columns the kernel reads.
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or not 0 <= n <= max_chunk:
        raise StreamError(f"{what}: n = {n!r} rows, but the buffers hold 0..{max_chunk} (max_chunk); pull at most max_chunk samples per call")
    if not isinstance(x, np.ndarray) or x.ndim != 2 or x.dtype.kind not in "fiu":
        desc = f"{x.dtype} array of shape {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise StreamError(f"{what}: the chunk is a {desc}; pass a 2-D numeric array (samples, channels)")
    if x.shape[0] < n or x.shape[1] < n_columns:
        raise StreamError(f"{what}: the chunk has shape {x.shape}; {n} rows and at least {n_columns} columns are needed")
