"""numba kernels of the epoch engine (:mod:`rtsource.stream.epochs`): ring writes and epoch cuts.

Allocation-free functions over preallocated arrays; the wrapper validates. NumPy twins in
``tests/stream/test_epochs.py``.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def ring_append(x, n, ts, flags, ring, ring_ts, ring_bad, pos):
    """Write ``n`` rows of ``x`` (and their timestamps and flags) at write index ``pos``.

    ``ring_bad[slot]``: bit 1 set where the row is flagged (``flags[t] != 0``; ``flags`` of
    length 0: no flags), bit 2 where it has a non-finite value. Returns the new write index.
    """
    cap = ring.shape[0]
    n_ch = ring.shape[1]
    use_flags = flags.shape[0] > 0
    for t in range(n):
        bad = 0
        for c in range(n_ch):
            v = x[t, c]
            ring[pos, c] = v
            if not np.isfinite(v):
                bad = 2
        if use_flags and flags[t] != 0:
            bad |= 1
        ring_bad[pos] = bad
        ring_ts[pos] = ts[t]
        pos += 1
        if pos == cap:
            pos = 0
    return pos


@numba.njit(cache=True, nogil=True)
def cut_epoch(ring, ring_bad, start, n_times, b0, b1, out):
    """Copy ``n_times`` ring rows from slot ``start`` (wrapping) into ``out`` and baseline-correct.

    The mean of rows ``b0:b1`` of the epoch (per channel) is subtracted from every row
    (``b0 == b1``: no baseline correction). Returns the bitwise OR of the rows' ``ring_bad``.
    """
    cap = ring.shape[0]
    n_ch = ring.shape[1]
    n_bad = 0
    s = start
    for t in range(n_times):
        for c in range(n_ch):
            out[t, c] = ring[s, c]
        n_bad |= ring_bad[s]
        s += 1
        if s == cap:
            s = 0
    if b1 > b0:
        for c in range(n_ch):
            m = 0.0
            for t in range(b0, b1):
                m += out[t, c]
            m /= b1 - b0
            for t in range(n_times):
                out[t, c] -= m
    return n_bad
