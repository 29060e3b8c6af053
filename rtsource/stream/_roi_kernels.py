"""numba kernels of the ROI stage: pooling per-chunk values into one value per ROI.

Plain functions over arrays and scalars that write into preallocated outputs and allocate
nothing; validation lives in the Python wrapper (:class:`.roi.RoiStage`), which checks shapes and dtypes
once at construction. Each kernel has a NumPy twin in the tests (tests/stream/test_roi_stage.py). Layouts follow
LSL: (n_samples, n_columns).
"""

from __future__ import annotations

import numba


@numba.njit(cache=True, nogil=True)
def roi_apply(x, n, matrix, out):
    """out[t, r] = sum_j matrix[r, j] * x[t, j] for t < n (folded linear ROI operator).

    x (>= n, n_chan) float32; matrix (n_roi, n_chan) float64; out (>= n, n_roi) float32.
    Accumulates in float64 (a few ROIs: the cost is negligible, the precision free).
    """
    n_roi = matrix.shape[0]
    n_chan = matrix.shape[1]
    for t in range(n):
        for r in range(n_roi):
            a = 0.0
            for j in range(n_chan):
                a += matrix[r, j] * x[t, j]
            out[t, r] = a


@numba.njit(cache=True, nogil=True)
def roi_mean_abs(x, n, indptr, indices, weights, out):
    """out[t, r] = sum_i weights[i] * |x[t, indices[i]]| over ROI r's CSR slice."""
    n_roi = indptr.shape[0] - 1
    for t in range(n):
        for r in range(n_roi):
            a = 0.0
            for i in range(indptr[r], indptr[r + 1]):
                a += weights[i] * abs(x[t, indices[i]])
            out[t, r] = a


@numba.njit(cache=True, nogil=True)
def roi_max_abs(x, n, indptr, indices, out):
    """out[t, r] = max_i |x[t, indices[i]]| over ROI r's CSR slice (NaN if any value is NaN)."""
    n_roi = indptr.shape[0] - 1
    for t in range(n):
        for r in range(n_roi):
            m = 0.0
            for i in range(indptr[r], indptr[r + 1]):
                v = abs(x[t, indices[i]])
                if v > m:
                    m = v
                elif v != v:  # a NaN input row (the operator's output for a bad sample) stays NaN
                    m = v
                    break
            out[t, r] = m
