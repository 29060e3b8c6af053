"""numba kernels of artifact subspace reconstruction (ASR), one chunk at a time.

Plain functions over preallocated arrays; validation lives in :mod:`rtsource.artifacts.asr`.
Each kernel has a NumPy twin in ``tests/artifacts/naive.py``. Method: Mullen et al. 2015,
IEEE TBME 62(9):2553 (ASR, online form); Kothe & Jung, US patent 2016/0113587 and the
clean_rawdata description (running covariance, per-component thresholds, blending).
"""

from __future__ import annotations

import numba
import numpy as np

# state[] slots (one int64 array, so the kernels can advance it in place)
WIN_IDX = 0  # next write row of the covariance window ring
WIN_FILL = 1  # rows of the ring holding data (< window length while it fills up)
DELAY_IDX = 2  # next write row of the look-ahead delay ring
N_STATE = 3


@numba.njit(cache=True)
def asr_ingest(x, n, b, a, zi, win, cov_sum, delay, xd, state):
    """Filter ``n`` samples, slide the running covariance, delay the raw samples.

    Parameters
    ----------
    x : ndarray, shape (>= n, n_ch)
        Raw input samples (high-passed), any unit.
    n : int
        Samples of ``x`` to take.
    b, a : ndarray, shape (order + 1,)
        Spectral weighting IIR filter (``a[0] == 1``).
    zi : ndarray, shape (order, n_ch)
        Filter state (transposed direct form II), updated in place.
    win : ndarray, shape (n_win, n_ch)
        Ring of the last ``n_win`` filtered samples, updated in place.
    cov_sum : ndarray, shape (n_ch, n_ch)
        Upper triangle (j >= i) holds the sum of outer products of the rows of ``win``.
    delay : ndarray, shape (n_delay, n_ch)
        Ring of the last ``n_delay`` raw samples (the look-ahead); ``n_delay`` may be 0.
    xd : ndarray, shape (>= n, n_ch)
        Output: the raw samples ``n_delay`` samples ago (zeros before the first arrived).
    state : ndarray of int64, shape (3,)
        Ring indices (WIN_IDX, WIN_FILL, DELAY_IDX), updated in place.
    """
    n_ch = x.shape[1]
    order = a.shape[0] - 1
    n_win = win.shape[0]
    n_delay = delay.shape[0]
    for t in range(n):
        w = state[WIN_IDX]
        full = state[WIN_FILL] == n_win
        # remove the oldest filtered sample's outer product before overwriting it
        if full:
            for i in range(n_ch):
                vi = win[w, i]
                for j in range(i, n_ch):
                    cov_sum[i, j] -= vi * win[w, j]
        for c in range(n_ch):
            v = x[t, c]
            y = b[0] * v + zi[0, c]
            for k in range(order - 1):
                zi[k, c] = b[k + 1] * v + zi[k + 1, c] - a[k + 1] * y
            zi[order - 1, c] = b[order] * v - a[order] * y
            win[w, c] = y
        for i in range(n_ch):
            vi = win[w, i]
            for j in range(i, n_ch):
                cov_sum[i, j] += vi * win[w, j]
        state[WIN_IDX] = w + 1 if w + 1 < n_win else 0
        if not full:
            state[WIN_FILL] += 1
        if n_delay == 0:
            for c in range(n_ch):
                xd[t, c] = x[t, c]
        else:
            d = state[DELAY_IDX]
            for c in range(n_ch):
                xd[t, c] = delay[d, c]
                delay[d, c] = x[t, c]
            state[DELAY_IDX] = d + 1 if d + 1 < n_delay else 0


@numba.njit(cache=True)
def asr_update(cov_sum, n_fill, thresholds, sigma, max_remove, cov, evecs_t, buf1, buf2, gram, r_new):
    """New reconstruction matrix from the running covariance (Mullen et al. 2015, eq. 3-4).

    Components of the window's covariance whose variance exceeds the calibrated threshold
    along them, ``lambda_i > ||T v_i||^2``, are dropped (at most ``max_remove``, the
    strongest), and the signal is rebuilt from the rest through the calibration
    covariance ``Sigma = M M^T``::

        R = Sigma V_k (V_k^T Sigma V_k)^-1 V_k^T

    which equals clean_rawdata's ``M pinv(diag(keep) V^T M) V^T``; it is the projector that
    annihilates the dropped components and maps the kept ones back as calibration data
    would have carried them.

    Parameters
    ----------
    cov_sum : ndarray, shape (n_ch, n_ch)
        Upper triangle of the running sum of outer products (from :func:`asr_ingest`).
    n_fill : int
        Samples in that sum.
    thresholds : ndarray, shape (n_ch, n_ch)
        T = diag(rms threshold) V_cal^T from the calibration.
    sigma : ndarray, shape (n_ch, n_ch)
        Calibration covariance M M^T.
    max_remove : int
        Most components dropped at once.
    cov, evecs_t, buf1, buf2, gram : ndarray, shape (n_ch, n_ch)
        Work space.
    r_new : ndarray, shape (n_ch, n_ch)
        Output: the reconstruction matrix (identity when nothing is dropped).

    Returns
    -------
    n_removed : int
        Components dropped.

    Notes
    -----
    The eigendecomposition calls LAPACK (``syevd``) through numba, which allocates its
    result and work space: the one allocation of the method, once per update, never per
    sample.
    """
    n_ch = cov.shape[0]
    inv_n = 1.0 / max(n_fill, 1)
    for i in range(n_ch):
        for j in range(i, n_ch):
            v = cov_sum[i, j] * inv_n
            cov[i, j] = v
            cov[j, i] = v
    evals, evecs = np.linalg.eigh(cov)  # ascending
    # threshold along each eigenvector: ||T v_i||^2
    np.dot(thresholds, evecs, buf1)
    k = 0
    for i in range(n_ch):
        thr = 0.0
        for r in range(n_ch):
            thr += buf1[r, i] * buf1[r, i]
        if evals[i] < thr or i < n_ch - max_remove:
            for c in range(n_ch):
                evecs_t[k, c] = evecs[c, i]
            k += 1
    if k == n_ch:
        for i in range(n_ch):
            for j in range(n_ch):
                r_new[i, j] = 1.0 if i == j else 0.0
        return 0
    vk_t = evecs_t[:k]
    svk_t = buf2[:k]
    np.dot(vk_t, sigma, svk_t)  # V_k^T Sigma (Sigma symmetric)
    g = gram[:k, :k]
    for i in range(k):
        for j in range(i, k):
            s = 0.0
            for c in range(n_ch):
                s += svk_t[i, c] * vk_t[j, c]
            g[i, j] = s
            g[j, i] = s
    # Cholesky G = L L^T in place (lower triangle)
    for j in range(k):
        s = g[j, j]
        for p in range(j):
            s -= g[j, p] * g[j, p]
        s = np.sqrt(max(s, 1e-300))
        g[j, j] = s
        for i in range(j + 1, k):
            t = g[i, j]
            for p in range(j):
                t -= g[i, p] * g[j, p]
            g[i, j] = t / s
    # W = G^-1 V_k^T (k, n_ch) into buf1, by forward then backward substitution
    w = buf1[:k]
    for c in range(n_ch):
        for i in range(k):
            t = vk_t[i, c]
            for p in range(i):
                t -= g[i, p] * w[p, c]
            w[i, c] = t / g[i, i]
        for i in range(k - 1, -1, -1):
            t = w[i, c]
            for p in range(i + 1, k):
                t -= g[p, i] * w[p, c]
            w[i, c] = t / g[i, i]
    # R = (Sigma V_k) W (plain loops: a BLAS call here woke OpenBLAS's threads and cost
    # 6 ms median on 2 busy cores, the loops 0.5 ms)
    for i in range(n_ch):
        for j in range(n_ch):
            r_new[i, j] = 0.0
    for p in range(k):
        for i in range(n_ch):
            s_ip = svk_t[p, i]
            for j in range(n_ch):
                r_new[i, j] += s_ip * w[p, j]
    return n_ch - k


@numba.njit(cache=True)
def asr_reconstruct(xd, n, r_old, r_new, old_identity, new_identity, blend, out):
    """Apply the reconstruction to ``n`` samples, blending from ``r_old`` to ``r_new``.

    With ``blend`` the matrix moves from ``r_old`` to ``r_new`` over the ``n`` samples
    with a raised-cosine weight (clean_rawdata's blending between updates), so a change
    of ``R`` never steps the signal; without it ``r_new`` alone is applied. An identity
    matrix (flag) costs a copy.

    Parameters
    ----------
    xd : ndarray, shape (>= n, n_ch)
        Delayed raw samples.
    r_old, r_new : ndarray, shape (n_ch, n_ch)
    old_identity, new_identity : bool
        Whether the matrices are the identity.
    blend : bool
    out : ndarray, shape (>= n, n_ch)
        Output samples.
    """
    n_ch = xd.shape[1]
    for t in range(n):
        w_new = 0.5 * (1.0 - np.cos(np.pi * (t + 1) / n)) if blend else 1.0
        w_old = 1.0 - w_new
        for i in range(n_ch):
            s = 0.0
            if new_identity:
                s = w_new * xd[t, i]
            else:
                acc = 0.0
                for j in range(n_ch):
                    acc += r_new[i, j] * xd[t, j]
                s = w_new * acc
            if w_old > 0.0:
                if old_identity:
                    s += w_old * xd[t, i]
                else:
                    acc = 0.0
                    for j in range(n_ch):
                        acc += r_old[i, j] * xd[t, j]
                    s += w_old * acc
            out[t, i] = s


@numba.njit(cache=True)
def regress_out(eeg, eog, n, coef, out):
    """EEG minus the regressed EOG, ``out = eeg - eog @ coef`` for ``n`` samples.

    Parameters
    ----------
    eeg : ndarray, shape (>= n, n_eeg)
    eog : ndarray, shape (>= n, n_eog)
    coef : ndarray, shape (n_eog, n_eeg)
        Propagation factors (Gratton et al. 1983; Croft & Barry 2000).
    out : ndarray, shape (>= n, n_eeg)
    """
    n_eeg = eeg.shape[1]
    n_eog = eog.shape[1]
    for t in range(n):
        for c in range(n_eeg):
            s = eeg[t, c]
            for e in range(n_eog):
                s -= eog[t, e] * coef[e, c]
            out[t, c] = s


@numba.njit(cache=True)
def apply_matrix(x, n, m, out):
    """``out[t] = m @ x[t]`` for ``n`` samples (a spatial projector before ASR).

    Plain loops, as :func:`asr_update`: a BLAS call on a 10-sample chunk wakes OpenBLAS's
    threads, which costs more than the product on a busy machine.

    Parameters
    ----------
    x : ndarray, shape (>= n, n_ch)
    m : ndarray, shape (n_ch, n_ch)
    out : ndarray, shape (>= n, n_ch)
        Must not be ``x``.
    """
    n_ch = x.shape[1]
    for t in range(n):
        for i in range(n_ch):
            s = 0.0
            for j in range(n_ch):
                s += m[i, j] * x[t, j]
            out[t, i] = s
