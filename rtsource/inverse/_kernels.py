"""numba kernels of the inverse operators.

Plain functions over arrays that write into preallocated outputs; the callers in
:mod:`rtsource.inverse.minimum_norm` validate. Each has a NumPy twin in the tests.
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def largest_eigenvalues_sym3(a, out):
    """out[k] = largest eigenvalue of the symmetric 3 x 3 matrix a[k], shape (n, 3, 3).

    Cyclic Jacobi rotations (Golub & Van Loan, *Matrix Computations*, 4th ed., sec. 8.5)
    until the off-diagonal part is below rounding: accurate to a few ulps of ``||a[k]||``,
    like LAPACK's ``syev``, and 2-3x faster than ``np.linalg.eigvalsh`` on a stack of
    thousands of 3 x 3 matrices (per-matrix call overhead), which is what the depth prior
    of a hot-swap rebuild needs for every source. Only the upper triangle is read.
    """
    m = np.empty((3, 3))
    for k in range(a.shape[0]):
        _load_upper(a, k, m)
        _diagonalise(m, m, False)
        out[k] = max(m[0, 0], m[1, 1], m[2, 2])


@numba.njit(inline="always")
def _load_upper(a, k, m):
    for i in range(3):
        for j in range(3):
            m[i, j] = a[k, min(i, j), max(i, j)]


@numba.njit(inline="always")
def _rotate(a, v, p, q, vectors):
    """One Jacobi rotation zeroing a[p, q] of the symmetric 3 x 3 ``a`` (Numerical Recipes'
    convention, Press et al. 2007, sec. 11.1), accumulated into the eigenvectors ``v``
    if ``vectors``."""
    apq = a[p, q]
    if apq == 0.0:
        return
    theta = (a[q, q] - a[p, p]) / (2.0 * apq)
    t = (1.0 if theta >= 0 else -1.0) / (abs(theta) + math.sqrt(theta * theta + 1.0))
    c = 1.0 / math.sqrt(t * t + 1.0)
    s = t * c
    a[p, p] -= t * apq
    a[q, q] += t * apq
    a[p, q] = 0.0
    a[q, p] = 0.0
    r = 3 - p - q  # the third index
    arp, arq = a[r, p], a[r, q]
    a[r, p] = a[p, r] = c * arp - s * arq
    a[r, q] = a[q, r] = s * arp + c * arq
    if vectors:
        for i in range(3):
            vp, vq = v[i, p], v[i, q]
            v[i, p] = c * vp - s * vq
            v[i, q] = s * vp + c * vq


@numba.njit(inline="always")
def _diagonalise(m, u, vectors):
    """Rotate until the off-diagonal part of ``m`` is below rounding (at most 30 sweeps;
    convergence is quadratic, 3-5 sweeps in practice)."""
    for _ in range(30):
        off = m[0, 1] * m[0, 1] + m[0, 2] * m[0, 2] + m[1, 2] * m[1, 2]
        if off == 0.0 or off <= 1e-34 * (m[0, 0] * m[0, 0] + m[1, 1] * m[1, 1] + m[2, 2] * m[2, 2] + 2.0 * off):
            return
        _rotate(m, u, 0, 1, vectors)
        _rotate(m, u, 0, 2, vectors)
        _rotate(m, u, 1, 2, vectors)


@numba.njit(cache=True, nogil=True)
def eigh_sym3(a, w, v):
    """Eigen-decomposition of a stack of symmetric 3 x 3 matrices, as ``np.linalg.eigh``.

    a (n, 3, 3) (upper triangle read); w (n, 3) eigenvalues ascending; v (n, 3, 3) the unit
    eigenvectors as columns. Cyclic Jacobi rotations (Golub & Van Loan, sec. 8.5), ~3x
    faster than ``np.linalg.eigh`` on a stack (LAPACK called once per matrix). Eigenvectors of repeated eigenvalues are
    any orthonormal basis of their space, as with LAPACK (callers must not depend on it).
    """
    m = np.empty((3, 3))
    u = np.empty((3, 3))
    for k in range(a.shape[0]):
        _load_upper(a, k, m)
        for i in range(3):
            for j in range(3):
                u[i, j] = 1.0 if i == j else 0.0
        _diagonalise(m, u, True)
        # ascending order, vectors along
        i0, i1, i2 = 0, 1, 2
        if m[i0, i0] > m[i1, i1]:
            i0, i1 = i1, i0
        if m[i1, i1] > m[i2, i2]:
            i1, i2 = i2, i1
        if m[i0, i0] > m[i1, i1]:
            i0, i1 = i1, i0
        for c, src in enumerate((i0, i1, i2)):
            w[k, c] = m[src, src]
            for i in range(3):
                v[k, i, c] = u[i, src]



@numba.njit(cache=True, parallel=True, nogil=True)
def local_gain_f32(gain, rot, depth_row, local, gram):
    """The gain in the sources' local frames (float32) and the depth prior's Gram matrices.

    Parameters
    ----------
    gain : ndarray, shape (n_chan, 3 n_src), float64
        Dipole-major x, y, z columns.
    rot : ndarray, shape (n_src, 3, 3)
        Local frames (rows: tangential 1, tangential 2, normal).
    depth_row : ndarray of bool, shape (n_chan,)
        The channels the depth prior uses.
    local : ndarray, shape (n_chan, n_src, 3), float32
        Output: ``local[c, k] = rot[k] @ gain[c, 3k:3k+3]``.
    gram : ndarray, shape (n_src, 3, 3), float64
        Output: ``sum over depth rows of g_ck g_ck^T`` in x, y, z (its largest eigenvalue,
        all the depth prior reads, is that of the local frames' Gram matrix).
    """
    n_chan = gain.shape[0]
    n_src = rot.shape[0]
    block = 128  # sources per tile: each row's segment is read contiguously (prefetch-friendly)
    n_blocks = (n_src + block - 1) // block
    for b in numba.prange(n_blocks):
        k0 = b * block
        k1 = min(n_src, k0 + block)
        for k in range(k0, k1):
            for i in range(3):
                for j in range(3):
                    gram[k, i, j] = 0.0
        for c in range(n_chan):
            d = depth_row[c]
            for k in range(k0, k1):
                x = gain[c, 3 * k]
                y = gain[c, 3 * k + 1]
                z = gain[c, 3 * k + 2]
                local[c, k, 0] = rot[k, 0, 0] * x + rot[k, 0, 1] * y + rot[k, 0, 2] * z
                local[c, k, 1] = rot[k, 1, 0] * x + rot[k, 1, 1] * y + rot[k, 1, 2] * z
                local[c, k, 2] = rot[k, 2, 0] * x + rot[k, 2, 1] * y + rot[k, 2, 2] * z
                if d:
                    gram[k, 0, 0] += x * x
                    gram[k, 0, 1] += x * y
                    gram[k, 0, 2] += x * z
                    gram[k, 1, 1] += y * y
                    gram[k, 1, 2] += y * z
                    gram[k, 2, 2] += z * z
        for k in range(k0, k1):
            gram[k, 1, 0] = gram[k, 0, 1]
            gram[k, 2, 0] = gram[k, 0, 2]
            gram[k, 2, 1] = gram[k, 1, 2]
