"""Small batched linear algebra shared by the operator builders.

Per-source 3 x 3 products and powers of symmetric matrices, used by the minimum-norm
builder, eLORETA and the beamformers alike (so none of them imports another for them).
The 3 x 3 eigendecompositions run in the numba kernel :func:`._kernels.eigh_sym3`.
"""

from __future__ import annotations

import numpy as np


def gram_blocks(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-source 3x3 products ``A_k^T B_k``.

    Parameters
    ----------
    a, b : ndarray, shape (n_rows, n_sources, 3)

    Returns
    -------
    ndarray, shape (n_sources, 3, 3)
        ``out[k, i, j] = sum_c a[c, k, i] b[c, k, j]`` (a batched matmul: several times
        faster than ``einsum`` here).
    """
    return np.matmul(a.transpose(1, 2, 0), b.transpose(1, 0, 2))


def apply_blocks(mats: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Per-source ``A_k M_k^T``.

    Parameters
    ----------
    mats : ndarray, shape (n_sources, 3, 3)
    a : ndarray, shape (n_rows, n_sources, 3)

    Returns
    -------
    ndarray, shape (n_rows, n_sources, 3)
        ``out[c, k, i] = sum_j mats[k, i, j] a[c, k, j]``.
    """
    out = np.matmul(a.transpose(1, 0, 2), mats.transpose(0, 2, 1))  # (n_src, n_rows, 3)
    return np.ascontiguousarray(out.transpose(1, 0, 2))


def eigh(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.linalg.eigh``, by the numba kernel for stacks of 3 x 3 matrices (the per-source
    blocks of eLORETA and the beamformers), where LAPACK's per-call overhead dominates."""
    if a.ndim == 3 and a.shape[1:] == (3, 3) and a.dtype == np.float64:
        from ._kernels import eigh_sym3

        w = np.empty((a.shape[0], 3))
        v = np.empty(a.shape)
        eigh_sym3(np.ascontiguousarray(a), w, v)
        return w, v
    return np.linalg.eigh(a)


def sym_pow(a: np.ndarray, power: float, rcond: float = 1e-7) -> np.ndarray:
    """Power of symmetric positive semi-definite matrices (batched), pseudo-style.

    Eigenvalues at or below ``rcond`` times the largest one are treated as zero: they
    stay zero for positive powers and are dropped (not inverted) for negative ones, as
    MNE-Python's ``_sym_mat_pow``.

    Parameters
    ----------
    a : ndarray, shape (..., n, n)
    power : float
        e.g. 0.5, -0.5, -1.

    Returns
    -------
    ndarray, shape (..., n, n)
    """
    s, u = eigh(a)
    limit = s[..., -1:] * rcond
    keep = s > limit
    safe = np.where(keep, s, 1.0)
    p = np.where(keep, safe**power, 0.0)
    return np.matmul(u * p[..., None, :], np.swapaxes(u, -1, -2))

