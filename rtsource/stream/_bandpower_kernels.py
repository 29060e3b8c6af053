"""numba kernels of the band-power stage: band filters, envelopes, decimation, baseline moments.

Plain functions over arrays and scalars that write into preallocated outputs and allocate
nothing; validation lives in the Python wrapper (:class:`.bandpower.BandPowerStage`), which checks shapes and dtypes
once at construction. Each kernel has a NumPy twin in the tests (tests/stream/test_bandpower.py). Layouts follow
LSL: (n_samples, n_columns).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def copy_columns(x, n, out, bad_rows):
    """out[t, c] = x[t, c] for t < n; bad_rows[t] = 1 if any value of row t is not finite.

    Returns the number of flagged rows (float32 ROI output -> float64 filter buffer).
    """
    n_bad = 0
    for t in range(n):
        bad = 0
        for c in range(x.shape[1]):
            v = x[t, c]
            out[t, c] = v
            if not np.isfinite(v):
                bad = 1
        bad_rows[t] = bad
        n_bad += bad
    return n_bad


@numba.njit(cache=True, nogil=True)
def analytic_power(xb, n, bad_rows, b0, b1, a1, state):
    """Complex (analytic) band-pass, in place: xb[t, r] <- 2 |y[t, r]|^2.

    ``y`` is ``xb`` through cascaded first-order complex sections
    ``y = b0 v + s; s <- b1 v - a1 y`` (a low-pass prototype whose poles and zeros are
    rotated to the band centre, so it passes positive frequencies only). For a sinusoid
    of amplitude A, ``|y| = A / 2`` and ``2 |y|^2 = A^2 / 2``, its mean square.

    xb (>= n, n_roi) float64; b0, b1, a1 (n_sec,) complex128; state (n_sec, n_roi)
    complex128 carried across chunks. Flagged rows are skipped (state untouched).
    """
    n_sec = b0.shape[0]
    for t in range(n):
        if bad_rows[t]:
            continue
        for r in range(xb.shape[1]):
            v = xb[t, r] + 0j
            for s in range(n_sec):
                y = b0[s] * v + state[s, r]
                state[s, r] = b1[s] * v - a1[s] * y
                v = y
            xb[t, r] = 2.0 * (v.real * v.real + v.imag * v.imag)


@numba.njit(cache=True, nogil=True)
def envelope(xb, n, bad_rows, band, n_bands, kind, alpha, state, last, env):
    """Smoothed envelope of band-passed signals, one band at a time.

    For every column r of ``xb``: ``v = x^2`` (``kind`` 0: a real band-passed signal),
    ``v = |x|`` (1) or ``v = x`` (2: already a power, from :func:`analytic_power`), then
    ``n_stages = state.shape[0]`` cascaded one-pole low-passes ``s <- s + alpha (v - s)``
    (none if n_stages is 0). The result goes to ``env[t, r * n_bands + band]``. Rows
    flagged in ``bad_rows`` (non-finite input) leave the state alone and repeat the last
    envelope value (``last``, carried across chunks; NaN before the first good sample).

    xb (>= n, n_roi) float64; state (n_stages, n_out) float64 (carried across chunks);
    last (n_out,) float64; env (>= n, n_out) float64.
    """
    n_roi = xb.shape[1]
    n_stages = state.shape[0]
    for t in range(n):
        if bad_rows[t]:
            for r in range(n_roi):
                c = r * n_bands + band
                env[t, c] = last[c]
            continue
        for r in range(n_roi):
            c = r * n_bands + band
            x = xb[t, r]
            if kind == 0:
                v = x * x
            elif kind == 1:
                v = abs(x)
            else:
                v = x
            for k in range(n_stages):
                s = state[k, c] + alpha * (v - state[k, c])
                state[k, c] = s
                v = s
            env[t, c] = v
            last[c] = v


@numba.njit(cache=True, nogil=True)
def decimate(env, n, ts, step, phase, rectify, power, mean, inv_std, out, ts_out):
    """Pick every ``step``-th sample of the smoothed envelope, convert and z-score it.

    ``phase[0]`` counts input samples since the last output (carried across chunks); an
    output is produced when it reaches ``step``. The smoothed value ``v`` becomes

    - amplitude: ``sqrt(2 v)`` (mean square -> sinusoid amplitude) or ``pi/2 v`` (mean
      rectified value -> sinusoid amplitude);
    - power (``power`` true): ``v`` (mean square) or ``(pi/2 v)^2 / 2``;

    then ``(value - mean) * inv_std`` (mean 0, inv_std 1 when not z-scoring).

    Returns the number of output rows written to ``out`` / ``ts_out``.
    """
    n_out = env.shape[1]
    k = 0
    p = phase[0]
    half_pi = np.pi / 2.0
    for t in range(n):
        p += 1
        if p >= step:
            p = 0
            for c in range(n_out):
                v = env[t, c]
                if rectify:
                    a = half_pi * v
                    val = 0.5 * a * a if power else a
                else:
                    val = v if power else (np.sqrt(2.0 * v) if v > 0.0 else v * 0.0)  # NaN stays NaN
                out[k, c] = (val - mean[c]) * inv_std[c]
            ts_out[k] = ts[t]
            k += 1
    phase[0] = p
    return k


@numba.njit(cache=True, nogil=True)
def accumulate_moments(out, k, sums):
    """sums[0, c] += out[t, c]; sums[1, c] += out[t, c]^2 for t < k (baseline statistics)."""
    for t in range(k):
        for c in range(out.shape[1]):
            v = np.float64(out[t, c])
            sums[0, c] += v
            sums[1, c] += v * v
