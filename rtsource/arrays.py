"""Read-only arrays for the frozen data objects (bundles, operators, geometry)."""

from __future__ import annotations

import numpy as np


def frozen(a, dtype=float) -> np.ndarray:
    """``a`` as a read-only array of ``dtype`` that nobody can write through.

    A copy, unless ``a`` already is such an array (read-only, owning its data, of that
    dtype): immutable values are shared, not copied. That keeps building one frozen object
    from another cheap -- an operator rebuilt for a hot swap hands its 24k x 64 kernel on
    to the bundle without a copy.
    """
    dtype = np.dtype(dtype)
    if isinstance(a, np.ndarray) and a.dtype == dtype and a.flags.owndata and not a.flags.writeable:
        return a
    out = np.array(a, dtype=dtype, copy=True)
    out.flags.writeable = False
    return out


def sealed(a: np.ndarray) -> np.ndarray:
    """Make an array read-only in place and return it: for an array the caller has just
    created and holds the only reference to (no copy; :func:`frozen` then shares it)."""
    a.flags.writeable = False
    return a


def aligned_empty(shape, dtype, align: int = 64) -> np.ndarray:
    """An uninitialised C-contiguous array whose data start on an ``align``-byte boundary.

    The kernels load operator tiles of 48 float32 (three 64-byte cache lines); an array
    from ``np.empty`` starts on a 16-byte boundary, and then every tile row spans four
    lines, and how fast an operator runs depended on where its copy landed (1-3 %).
    """
    dtype = np.dtype(dtype)
    size = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(size + align, dtype=np.uint8)
    start = -raw.ctypes.data % align
    return raw[start : start + size].view(dtype).reshape(shape)


def aligned_zeros(shape, dtype, align: int = 64) -> np.ndarray:
    """:func:`aligned_empty`, filled with zeros."""
    out = aligned_empty(shape, dtype, align)
    out[...] = 0
    return out
