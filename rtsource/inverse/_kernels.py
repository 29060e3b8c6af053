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

