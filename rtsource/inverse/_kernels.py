"""numba kernels of the inverse operators.

Plain functions over arrays that write into preallocated outputs; the callers in
:mod:`rtsource.inverse.minimum_norm` validate. Each has a NumPy twin in the tests.
"""

from __future__ import annotations

import math

import numba


@numba.njit(cache=True, nogil=True)
def largest_eigenvalues_sym3(a, out):
    """out[k] = largest eigenvalue of the symmetric 3 x 3 matrix a[k], shape (n, 3, 3).

    Cyclic Jacobi rotations (Golub & Van Loan, *Matrix Computations*, 4th ed., sec. 8.5)
    until the off-diagonal part is below rounding: accurate to a few ulps of ``||a[k]||``,
    like LAPACK's ``syev``, and ~20x faster than ``np.linalg.eigvalsh`` on a stack of
    thousands of 3 x 3 matrices (per-matrix call overhead), which is what the depth prior
    of a hot-swap rebuild needs for every source. Only the upper triangle is read.
    """
    for k in range(a.shape[0]):
        a00 = a[k, 0, 0]
        a11 = a[k, 1, 1]
        a22 = a[k, 2, 2]
        a01 = a[k, 0, 1]
        a02 = a[k, 0, 2]
        a12 = a[k, 1, 2]
        for _ in range(30):
            off = a01 * a01 + a02 * a02 + a12 * a12
            if off <= 1e-34 * (a00 * a00 + a11 * a11 + a22 * a22 + 2.0 * off) or off == 0.0:
                break
            # rotation in the (0, 1) plane
            if a01 != 0.0:
                theta = (a11 - a00) / (2.0 * a01)
                t = (1.0 if theta >= 0 else -1.0) / (abs(theta) + math.sqrt(theta * theta + 1.0))
                c = 1.0 / math.sqrt(t * t + 1.0)
                s = t * c
                a00 -= t * a01
                a11 += t * a01
                a01 = 0.0
                a02, a12 = c * a02 - s * a12, s * a02 + c * a12
            # (0, 2)
            if a02 != 0.0:
                theta = (a22 - a00) / (2.0 * a02)
                t = (1.0 if theta >= 0 else -1.0) / (abs(theta) + math.sqrt(theta * theta + 1.0))
                c = 1.0 / math.sqrt(t * t + 1.0)
                s = t * c
                a00 -= t * a02
                a22 += t * a02
                a02 = 0.0
                a01, a12 = c * a01 - s * a12, s * a01 + c * a12
            # (1, 2)
            if a12 != 0.0:
                theta = (a22 - a11) / (2.0 * a12)
                t = (1.0 if theta >= 0 else -1.0) / (abs(theta) + math.sqrt(theta * theta + 1.0))
                c = 1.0 / math.sqrt(t * t + 1.0)
                s = t * c
                a11 -= t * a12
                a22 += t * a12
                a12 = 0.0
                a01, a02 = c * a01 - s * a02, s * a01 + c * a02
        out[k] = max(a00, a11, a22)
