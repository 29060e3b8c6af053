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
def gather_channels(x, index, n, out):
    """out[t, j] = x[t, index[j]] for t < n (pick and order the operator's channels)."""
    n_chan = index.shape[0]
    for t in range(n):
        for j in range(n_chan):
            out[t, j] = x[t, index[j]]


@numba.njit(cache=True, nogil=True)
def sos_filter(x, n, sos, state):
    """Causal cascaded biquads over the first n rows of x, in place, per column.

    Transposed direct form II, the same recursion as scipy.signal.sosfilt; ``state`` has
    shape (n_sections, n_columns, 2) and carries the filter memory from chunk to chunk.
    """
    n_sec = sos.shape[0]
    n_col = x.shape[1]
    for t in range(n):
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


@numba.njit(cache=True, nogil=True, parallel=True)
def apply_pooled3(x, n, kernel, inv_norm, out):
    """Free/loose orientation: out[t, s] = ||K_s x_t|| * inv_norm[s].

    kernel has shape (n_sources, 3, n_channels); x (>= n, n_channels); out (>= n, n_sources).
    Sources are the outer, parallel loop so each source's 3 x n_channels block is read from
    memory once per chunk and reused for every sample.
    """
    n_src = kernel.shape[0]
    n_chan = kernel.shape[2]
    for s in prange(n_src):
        k0 = kernel[s, 0]
        k1 = kernel[s, 1]
        k2 = kernel[s, 2]
        w = inv_norm[s]
        for t in range(n):
            a0 = np.float32(0.0)
            a1 = np.float32(0.0)
            a2 = np.float32(0.0)
            for j in range(n_chan):
                v = x[t, j]
                a0 += k0[j] * v
                a1 += k1[j] * v
                a2 += k2[j] * v
            out[t, s] = np.sqrt(a0 * a0 + a1 * a1 + a2 * a2) * w


@numba.njit(cache=True, nogil=True, parallel=True)
def apply_fixed(x, n, kernel, inv_norm, out):
    """Fixed orientation: out[t, s] = (K_s . x_t) * inv_norm[s] (signed); kernel (n_sources, n_channels)."""
    n_src = kernel.shape[0]
    n_chan = kernel.shape[1]
    for s in prange(n_src):
        k = kernel[s]
        w = inv_norm[s]
        for t in range(n):
            a = np.float32(0.0)
            for j in range(n_chan):
                a += k[j] * x[t, j]
            out[t, s] = a * w
