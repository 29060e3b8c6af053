"""numba kernels of the streaming hot path.

Plain functions over arrays and scalars; they write into preallocated outputs and allocate
nothing. No validation here: the wrappers in :mod:`rtsource.stream.operator` check shapes
and dtypes once, when the loop connects. Each kernel has a NumPy twin in the tests.

Layouts follow LSL: a chunk is (n_samples, n_channels), row-major.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange


@numba.njit(cache=True, nogil=True)
def gather_channels(x, index, n, out, bad_rows):
    """out[t, j] = x[t, index[j]] for t < n; flags rows with a non-finite value.

    Picks and orders the operator's channels. ``bad_rows[t]`` is set to 1 when any picked
    value of sample t is NaN or infinite (0 otherwise), and the number of such rows is
    returned, so a NaN from the amplifier never reaches the filter state or the operator.
    """
    n_chan = index.shape[0]
    n_bad = 0
    for t in range(n):
        bad = 0
        for j in range(n_chan):
            v = x[t, index[j]]
            out[t, j] = v
            if not np.isfinite(v):
                bad = 1
        bad_rows[t] = bad
        n_bad += bad
    return n_bad


@numba.njit(cache=True, nogil=True)
def sos_filter(x, n, sos, state, bad_rows):
    """Causal cascaded biquads over the first n rows of x, in place, per column.

    Transposed direct form II, the same recursion as scipy.signal.sosfilt; ``state`` has
    shape (n_sections, n_columns, 2) and carries the filter memory from chunk to chunk.
    Rows flagged in ``bad_rows`` are skipped: the filter sees them as absent, so its state
    stays finite.
    """
    n_sec = sos.shape[0]
    n_col = x.shape[1]
    for t in range(n):
        if bad_rows[t]:
            continue
        for c in range(n_col):
            v = np.float64(x[t, c])
            for s in range(n_sec):
                b0 = sos[s, 0]
                b1 = sos[s, 1]
                b2 = sos[s, 2]
                a1 = sos[s, 4]
                a2 = sos[s, 5]
                y = b0 * v + state[s, c, 0]
                state[s, c, 0] = b1 * v - a1 * y + state[s, c, 1]
                state[s, c, 1] = b2 * v - a2 * y
                v = y
            x[t, c] = v


@numba.njit(cache=True, nogil=True)
def set_filter_steady_state(x_row, sos, state, zi_unit):
    """Filter state for a signal that has been constant at ``x_row`` forever.

    ``zi_unit`` (n_sections, 2) is scipy.signal.sosfilt_zi(sos), the state for a unit step;
    scaling it per channel starts the filter without the transient a DC offset would cause
    (used after a gap in the input).
    """
    n_sec = sos.shape[0]
    for c in range(x_row.shape[0]):
        for s in range(n_sec):
            state[s, c, 0] = zi_unit[s, 0] * x_row[c]
            state[s, c, 1] = zi_unit[s, 1] * x_row[c]


@numba.njit(cache=True, nogil=True)
def fill_bad_rows(out, n, bad_rows, value):
    """out[t, :] = value for the flagged rows t < n (NaN output for NaN input)."""
    for t in range(n):
        if bad_rows[t]:
            for s in range(out.shape[1]):
                out[t, s] = value


# The apply kernels read each source's operator rows once per chunk and keep them in L1
# while they are applied to the samples, four samples at a time: every operator value
# loaded feeds four fused multiply-adds, and the channel loop (innermost, contiguous) is
# vectorised by LLVM (fastmath lets it reorder the sums into SIMD lanes). Sources are the
# parallel loop, so threads write disjoint output columns.


@numba.njit(cache=True, nogil=True, parallel=True, fastmath=True)
def apply_pooled3(x, n, kernel, inv_norm, out):
    """Free/loose orientation: out[t, s] = ||K_s x_t|| * inv_norm[s].

    kernel has shape (n_sources, 3, n_channels); x (>= n, n_channels); out (>= n, n_sources).
    """
    n_src = kernel.shape[0]
    n_chan = kernel.shape[2]
    for s in prange(n_src):
        k0 = kernel[s, 0]
        k1 = kernel[s, 1]
        k2 = kernel[s, 2]
        w = inv_norm[s]
        t = 0
        while t + 4 <= n:
            xa = x[t]
            xb = x[t + 1]
            xc = x[t + 2]
            xd = x[t + 3]
            a0 = a1 = a2 = np.float32(0.0)
            b0 = b1 = b2 = np.float32(0.0)
            c0 = c1 = c2 = np.float32(0.0)
            d0 = d1 = d2 = np.float32(0.0)
            for j in range(n_chan):
                r0 = k0[j]
                r1 = k1[j]
                r2 = k2[j]
                va = xa[j]
                vb = xb[j]
                vc = xc[j]
                vd = xd[j]
                a0 += r0 * va
                a1 += r1 * va
                a2 += r2 * va
                b0 += r0 * vb
                b1 += r1 * vb
                b2 += r2 * vb
                c0 += r0 * vc
                c1 += r1 * vc
                c2 += r2 * vc
                d0 += r0 * vd
                d1 += r1 * vd
                d2 += r2 * vd
            out[t, s] = np.sqrt(a0 * a0 + a1 * a1 + a2 * a2) * w
            out[t + 1, s] = np.sqrt(b0 * b0 + b1 * b1 + b2 * b2) * w
            out[t + 2, s] = np.sqrt(c0 * c0 + c1 * c1 + c2 * c2) * w
            out[t + 3, s] = np.sqrt(d0 * d0 + d1 * d1 + d2 * d2) * w
            t += 4
        while t < n:
            xa = x[t]
            a0 = a1 = a2 = np.float32(0.0)
            for j in range(n_chan):
                va = xa[j]
                a0 += k0[j] * va
                a1 += k1[j] * va
                a2 += k2[j] * va
            out[t, s] = np.sqrt(a0 * a0 + a1 * a1 + a2 * a2) * w
            t += 1


@numba.njit(cache=True, nogil=True, parallel=True, fastmath=True)
def apply_fixed(x, n, kernel, inv_norm, out):
    """Fixed orientation: out[t, s] = (K_s . x_t) * inv_norm[s] (signed); kernel (n_sources, n_channels)."""
    n_src = kernel.shape[0]
    n_chan = kernel.shape[1]
    for s in prange(n_src):
        k = kernel[s]
        w = inv_norm[s]
        t = 0
        while t + 4 <= n:
            xa = x[t]
            xb = x[t + 1]
            xc = x[t + 2]
            xd = x[t + 3]
            a = b = c = d = np.float32(0.0)
            for j in range(n_chan):
                r = k[j]
                a += r * xa[j]
                b += r * xb[j]
                c += r * xc[j]
                d += r * xd[j]
            out[t, s] = a * w
            out[t + 1, s] = b * w
            out[t + 2, s] = c * w
            out[t + 3, s] = d * w
            t += 4
        while t < n:
            xa = x[t]
            a = np.float32(0.0)
            for j in range(n_chan):
                a += k[j] * xa[j]
            out[t, s] = a * w
            t += 1
