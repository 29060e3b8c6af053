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
