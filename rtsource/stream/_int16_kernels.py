"""numba kernels applying an operator stored as per-row scaled int16 (see :mod:`.quantize`).

The same tiles as :mod:`._kernels` (48 rows per tile, channel-major inside), holding int16
values ``q`` with one float32 factor per operator row: ``K[row, j] ~ q[row, j] * f[row]``.
A chunk of one sample is memory-bound (the operator is read once per chunk), so halving the
bytes read halves the time there; the int16 -> float32 conversion rides along with the
fused multiply-adds. The row factor is applied once per output value, at the write-out.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from ._kernels import _prefer_512_bit_vectors, _stack_f32


@numba.njit(inline="always", fastmath=True)
def _accumulate_tile_i16(packed, tile, x, t, rows, acc):
    """acc[r, :] = int16 tile rows . x[t + r] for r < rows (<= 4); as _kernels._accumulate_tile."""
    n_chan = packed.shape[1]
    for q in range(48):
        acc[0, q] = 0.0
        acc[1, q] = 0.0
        acc[2, q] = 0.0
        acc[3, q] = 0.0
    if rows == 4:
        for j in range(n_chan):
            k = packed[tile, j]
            v0 = x[t, j]
            v1 = x[t + 1, j]
            v2 = x[t + 2, j]
            v3 = x[t + 3, j]
            for q in range(48):
                kq = np.float32(k[q])
                acc[0, q] += kq * v0
                acc[1, q] += kq * v1
                acc[2, q] += kq * v2
                acc[3, q] += kq * v3
    elif rows == 3:
        for j in range(n_chan):
            k = packed[tile, j]
            v0 = x[t, j]
            v1 = x[t + 1, j]
            v2 = x[t + 2, j]
            for q in range(48):
                kq = np.float32(k[q])
                acc[0, q] += kq * v0
                acc[1, q] += kq * v1
                acc[2, q] += kq * v2
    elif rows == 2:
        for j in range(n_chan):
            k = packed[tile, j]
            v0 = x[t, j]
            v1 = x[t + 1, j]
            for q in range(48):
                kq = np.float32(k[q])
                acc[0, q] += kq * v0
                acc[1, q] += kq * v1
    else:
        for j in range(n_chan):
            k = packed[tile, j]
            v0 = x[t, j]
            for q in range(48):
                acc[0, q] += np.float32(k[q]) * v0


@numba.njit(cache=True, nogil=True, parallel=True, fastmath=True)
def apply_pooled3_i16(x, n, packed, row_scale, inv_norm, out):
    """Free/loose orientation from int16 tiles: out[t, s] = ||f_s * (Q_s x_t)|| * inv_norm[s].

    packed (n_tiles, n_channels, 48) int16 as :func:`._kernels.pack_pooled3` lays them out;
    row_scale (n_tiles, 48) float32, the factor of each tile row.
    """
    n_tiles = packed.shape[0]
    n_src = out.shape[1]
    for tile in prange(n_tiles):
        _prefer_512_bit_vectors()
        acc = numba.carray(_stack_f32(192), (4, 48))
        base = tile * 16
        f = row_scale[tile]
        t = 0
        while t < n:
            rows = min(4, n - t)
            _accumulate_tile_i16(packed, tile, x, t, rows, acc)
            for r in range(rows):
                for w in range(16):
                    s = base + w
                    if s < n_src:
                        a = acc[r, w] * f[w]
                        b = acc[r, 16 + w] * f[16 + w]
                        c = acc[r, 32 + w] * f[32 + w]
                        out[t + r, s] = np.sqrt(a * a + b * b + c * c) * inv_norm[s]
            t += rows


@numba.njit(cache=True, nogil=True, parallel=True, fastmath=True)
def apply_fixed_i16(x, n, packed, row_scale, inv_norm, out):
    """Fixed orientation from int16 tiles: out[t, s] = f_s (Q_s . x_t) * inv_norm[s]."""
    n_tiles = packed.shape[0]
    n_src = out.shape[1]
    for tile in prange(n_tiles):
        _prefer_512_bit_vectors()
        acc = numba.carray(_stack_f32(192), (4, 48))
        base = tile * 48
        f = row_scale[tile]
        t = 0
        while t < n:
            rows = min(4, n - t)
            _accumulate_tile_i16(packed, tile, x, t, rows, acc)
            for r in range(rows):
                for q in range(48):
                    s = base + q
                    if s < n_src:
                        out[t + r, s] = acc[r, q] * f[q] * inv_norm[s]
            t += rows
