"""numba kernel of the BLAS path (see :mod:`rtsource.stream.dispatch`): the pooling pass.

Single-threaded on purpose: it runs right after OpenBLAS's threaded sgemm, and waking
numba's thread pool while OpenBLAS's threads still spin makes both wait for each other.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, fastmath=True)
def pool3(y, n, out):
    """out[t, s] = sqrt(y[t, 3s]^2 + y[t, 3s+1]^2 + y[t, 3s+2]^2) for t < n.

    ``y`` (>= n, 3 * n_sources) is x K^T with the noise normalisation already folded into
    K's rows (||c v|| = c ||v|| for c > 0), so the pooling is the whole pass.
    """
    n_src = out.shape[1]
    for t in range(n):
        for s in range(n_src):
            a = y[t, 3 * s]
            b = y[t, 3 * s + 1]
            c = y[t, 3 * s + 2]
            out[t, s] = np.sqrt(a * a + b * b + c * c)
