"""numba kernel of the adaptive beamformer: the exponentially weighted data covariance.

Plain functions over arrays and scalars that write into preallocated outputs and allocate
nothing; validation lives in the Python wrapper (:class:`.adaptive.ExpWeightedCovariance`), which checks shapes and dtypes
once at construction. Each kernel has a NumPy twin in the tests (tests/stream/test_adaptive.py). Layouts follow
LSL: (n_samples, n_columns).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def ew_cov_update(x, n, lam, scale, sxx, sx, state):
    """Exponentially weighted second moments over the first n rows of x.

    For each sample (oldest first) with ``y = x_t * scale`` (stream units -> V):
    ``S <- lam S + (1 - lam) y y^T``, ``m <- lam m + (1 - lam) y``, ``W <- lam W + (1 - lam)``
    (W is the total weight, which tends to 1: dividing by it removes the start-up bias),
    and the weighted mean age of the data in samples ``A <- lam W_old (A + 1) / W_new``.
    Only the upper triangle of ``sxx`` is kept (the snapshot mirrors it). Rows with a
    non-finite value are skipped (as if absent).

    x (>= n, n_chan) float32; scale (n_chan,) float64; sxx (n_chan, n_chan) float64;
    sx (n_chan,) float64; state float64 [W, A, samples used, samples skipped].
    """
    n_chan = sxx.shape[0]
    g = 1.0 - lam
    for t in range(n):
        finite = True
        for i in range(n_chan):
            if not np.isfinite(x[t, i]):
                finite = False
                break
        if not finite:
            state[3] += 1.0
            continue
        for i in range(n_chan):
            yi = x[t, i] * scale[i]
            sx[i] = lam * sx[i] + g * yi
            gyi = g * yi
            for j in range(i, n_chan):
                sxx[i, j] = lam * sxx[i, j] + gyi * (x[t, j] * scale[j])
        w_old = state[0]
        w_new = lam * w_old + g
        state[1] = lam * w_old * (state[1] + 1.0) / w_new
        state[0] = w_new
        state[2] += 1.0
