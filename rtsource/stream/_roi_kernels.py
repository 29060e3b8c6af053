"""numba kernels of the feature stages: ROIs, band power, adaptive covariance, bad channels.

Plain functions over arrays and scalars that write into preallocated outputs and allocate
nothing; validation lives in the Python wrappers (:mod:`.roi`, :mod:`.bandpower`,
:mod:`.adaptive`, :mod:`.badchannels`), which check shapes and dtypes once at construction.
Each kernel has a NumPy twin in the tests. Layouts follow LSL: (n_samples, n_columns).
"""

from __future__ import annotations

import numba
import numpy as np

# ---- ROIs -----------------------------------------------------------------------------------


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


# ---- band power -----------------------------------------------------------------------------


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


# ---- adaptive covariance -------------------------------------------------------------------


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


# ---- bad channels --------------------------------------------------------------------------

# columns of the per-channel block accumulator ``acc`` (qc_accumulate / qc_evaluate)
ACC_SUM_Y, ACC_SUMSQ_Y, ACC_SUMSQ_F, ACC_RAIL, ACC_MAX, ACC_MIN, ACC_AT_MAX, ACC_AT_MIN, ACC_N, ACC_SUM_H, ACC_SUMSQ_H, ACC_NONFINITE, ACC_SUMSQ_L = range(13)
N_ACC = 13

# reason codes (index + 1 into the rule arrays); order = priority when several persist at once
FLAT, NONFINITE, SATURATED, HF_NOISE, DEVIATION, LOW_CORRELATION, MANUAL = 1, 2, 3, 4, 5, 6, 7
N_RULES = 6


@numba.njit(cache=True, nogil=True)
def _biquads(v, sos, state, c):
    """One sample through cascaded biquads (transposed direct form II), column c of state."""
    for s in range(sos.shape[0]):
        y = sos[s, 0] * v + state[s, c, 0]
        state[s, c, 0] = sos[s, 1] * v - sos[s, 4] * y + state[s, c, 1]
        state[s, c, 1] = sos[s, 2] * v - sos[s, 5] * y
        v = y
    return v


@numba.njit(cache=True, nogil=True)
def qc_accumulate(x, start, n, index, scale, good, rail, eeg, hp_sos, hp_state, hf_sos, hf_state, lf_sos, lf_state, h, acc, cross, block_len, pos):
    """Per-channel quality statistics over blocks of ``block_len`` samples.

    For rows ``start <= t < n`` and operator channel j: ``r = x[t, index[j]] * scale[j]``
    (SI: V, T or T/m); ``h_j`` = r high-passed by ``hp_sos`` (drift removed); for EEG
    channels (``eeg[j]``) ``y_j = h_j - mean of h over the good EEG channels`` (average
    reference), for MEG channels ``y_j = h_j`` (a magnetometer has no reference);
    ``f_j`` = r high-passed by ``hf_sos`` (the high-frequency part) and ``l_j`` = h
    low-passed by ``lf_sos`` (the signal band). Accumulated per channel in
    ``acc[j, ACC_*]``: sums of y, y^2, f^2, l^2, h, h^2, samples at or beyond the channel's
    rail (``|r| >= rail[j] > 0``), the block's max and min of r
    and how many samples sit exactly at them, finite and non-finite sample counts; and
    ``cross[i, j] += y_i y_j`` (i < j) for the correlation criterion. A non-finite value
    counts in ACC_NONFINITE and is otherwise skipped (its filters keep their state).

    ``pos[0]`` is the position within the current block. Returns the row index just after
    the row that completed a block (the caller evaluates the block, then calls again from
    there), or -1 when the rows ran out first.
    """
    n_chan = index.shape[0]
    for t in range(start, n):
        mean_h = 0.0
        n_good = 0
        for j in range(n_chan):
            r = np.float64(x[t, index[j]]) * scale[j]
            if not np.isfinite(r):
                acc[j, ACC_NONFINITE] += 1.0
                h[j] = np.nan
                continue
            hj = _biquads(r, hp_sos, hp_state, j)
            f = _biquads(r, hf_sos, hf_state, j)
            lo = _biquads(hj, lf_sos, lf_state, j)
            h[j] = hj
            acc[j, ACC_SUMSQ_F] += f * f
            acc[j, ACC_SUMSQ_L] += lo * lo
            acc[j, ACC_SUM_H] += hj
            acc[j, ACC_SUMSQ_H] += hj * hj
            if rail[j] > 0.0 and abs(r) >= rail[j]:
                acc[j, ACC_RAIL] += 1.0
            if acc[j, ACC_N] == 0.0 or r > acc[j, ACC_MAX]:
                acc[j, ACC_MAX] = r
                acc[j, ACC_AT_MAX] = 1.0
            elif r == acc[j, ACC_MAX]:
                acc[j, ACC_AT_MAX] += 1.0
            if acc[j, ACC_N] == 0.0 or r < acc[j, ACC_MIN]:
                acc[j, ACC_MIN] = r
                acc[j, ACC_AT_MIN] = 1.0
            elif r == acc[j, ACC_MIN]:
                acc[j, ACC_AT_MIN] += 1.0
            acc[j, ACC_N] += 1.0
            if good[j] and eeg[j]:
                mean_h += hj
                n_good += 1
        if n_good > 0:
            mean_h /= n_good
        for j in range(n_chan):
            if np.isfinite(h[j]):
                yj = h[j] - mean_h if eeg[j] else h[j]
                h[j] = yj
                acc[j, ACC_SUM_Y] += yj
                acc[j, ACC_SUMSQ_Y] += yj * yj
            else:
                h[j] = 0.0
        for i in range(n_chan):
            yi = h[i]
            for j in range(i + 1, n_chan):
                cross[i, j] += yi * h[j]
        pos[0] += 1
        if pos[0] >= block_len:
            pos[0] = 0
            return t + 1
    return -1


@numba.njit(cache=True, nogil=True)
def _sort_prefix(a, m):
    """Insertion sort of a[:m] in place (m is a channel or block count: small, no allocation)."""
    for i in range(1, m):
        v = a[i]
        k = i - 1
        while k >= 0 and a[k] > v:
            a[k + 1] = a[k]
            k -= 1
        a[k + 1] = v


@numba.njit(cache=True, nogil=True)
def _quantile_sorted(a, m, q):
    """Linear-interpolation quantile of the sorted a[:m] (NumPy's default method)."""
    if m == 0:
        return np.nan
    p = q * (m - 1)
    lo = int(np.floor(p))
    hi = min(lo + 1, m - 1)
    return a[lo] + (p - lo) * (a[hi] - a[lo])


@numba.njit(cache=True, nogil=True)
def robust_z(values, good, scratch, out):
    """Robust z-scores against the good channels (Bigdely-Shamlo et al. 2015, PREP).

    ``z = (v - median_good) / (0.7413 IQR_good)``; 0.7413 IQR estimates the standard
    deviation of a normal distribution. ``out`` is 0 where the value is not finite or the
    spread is 0. Returns the spread.
    """
    m = 0
    for j in range(values.shape[0]):
        if good[j] and np.isfinite(values[j]):
            scratch[m] = values[j]
            m += 1
    _sort_prefix(scratch, m)
    med = _quantile_sorted(scratch, m, 0.5)
    spread = 0.7413 * (_quantile_sorted(scratch, m, 0.75) - _quantile_sorted(scratch, m, 0.25))
    for j in range(values.shape[0]):
        if spread > 0 and np.isfinite(values[j]):
            out[j] = (values[j] - med) / spread
        else:
            out[j] = 0.0
    return spread


@numba.njit(cache=True, nogil=True)
def max_correlation(cross, acc, good, group, q, scratch, out):
    """Per channel, the ``q`` quantile of |correlation| with the other good channels of its group.

    From one block's sums (``cross`` upper triangle of sum y_i y_j, ``acc`` sums of y and
    y^2 and counts). PREP's correlation criterion uses q = 0.98 (Bigdely-Shamlo et al.
    2015). ``group[j]`` is the sensor type (EEG, magnetometer, gradiometer): channels are
    compared only with their own kind. NaN for a channel without variance or without good
    partners.
    """
    n_chan = cross.shape[0]
    for i in range(n_chan):
        ni = acc[i, ACC_N]
        vi = acc[i, ACC_SUMSQ_Y] - acc[i, ACC_SUM_Y] ** 2 / ni if ni > 1 else 0.0
        if vi <= 0.0:
            out[i] = np.nan
            continue
        m = 0
        for j in range(n_chan):
            nj = acc[j, ACC_N]
            if j == i or not good[j] or group[j] != group[i] or nj <= 1:
                continue
            vj = acc[j, ACC_SUMSQ_Y] - acc[j, ACC_SUM_Y] ** 2 / nj
            if vj <= 0.0:
                continue
            c = cross[i, j] if i < j else cross[j, i]
            nn = min(ni, nj)
            scratch[m] = abs((c - acc[i, ACC_SUM_Y] * acc[j, ACC_SUM_Y] / nn) / np.sqrt(vi * vj))
            m += 1
        _sort_prefix(scratch, m)
        out[i] = _quantile_sorted(scratch, m, q) if m > 0 else np.nan


@numba.njit(cache=True, nogil=True)
def _window_median(ring, m, j, scratch):
    k = 0
    for b in range(m):
        v = ring[b, j]
        if np.isfinite(v):
            scratch[k] = v
            k += 1
    _sort_prefix(scratch, k)
    return _quantile_sorted(scratch, k, 0.5)


@numba.njit(cache=True, nogil=True)
def robust_z_grouped(values, good, group, n_groups, mask, scratch, tmp, out):
    """:func:`robust_z` within each sensor type: channel j against the good channels of group[j]."""
    for g in range(n_groups):
        any_member = False
        for j in range(values.shape[0]):
            mask[j] = 1 if (good[j] and group[j] == g) else 0
            any_member = any_member or group[j] == g
        if not any_member:
            continue
        robust_z(values, mask, scratch, tmp)
        for j in range(values.shape[0]):
            if group[j] == g:
                out[j] = tmp[j]


@numba.njit(cache=True, nogil=True)
def median_ratio_grouped(values, good, group, g, scratch, out):
    """out[j] = values[j] / median of the good finite values of group g, for the members of g."""
    m = 0
    for j in range(values.shape[0]):
        if good[j] and group[j] == g and np.isfinite(values[j]):
            scratch[m] = values[j]
            m += 1
    _sort_prefix(scratch, m)
    med = _quantile_sorted(scratch, m, 0.5)
    for j in range(values.shape[0]):
        if group[j] == g:
            out[j] = values[j] / med if (m > 0 and med > 0 and np.isfinite(values[j])) else 0.0


@numba.njit(cache=True, nogil=True)
def qc_evaluate(acc, cross, block_len, params, flat_v, noisy_v, group, n_groups, mask, persist, recover_blocks, n_window, blocks_seen,
                amp_ring, ratio_ring, corr_ring, good, ignored, flagged, bad_count, clear_count, values, cond, scratch, scratch2, work,
                changes):  # fmt: skip
    """Apply the rules to a completed block; update persistence, hysteresis and the good mask.

    ``params``: [saturation_fraction, deviation_z, hf_z, correlation_min,
    correlation_fraction, nonfinite_fraction, correlation_quantile, deviation_ratio_meg];
    ``flat_v`` and
    ``noisy_v`` (n_chan,) the absolute limits per channel in its SI unit (by sensor type);
    ``group`` (n_chan,) the sensor type 0 .. n_groups-1, within which channels are compared;
    ``mask`` a uint8 scratch of n_chan. ``persist[k]`` blocks of rule k+1 in a row flag a
    channel; ``recover_blocks`` blocks without any rule re-arm it. Rules (codes above): FLAT
    block SD of h < flat_v; NONFINITE share of non-finite samples >= nonfinite_fraction;
    SATURATED rail hits >= fraction, or a plateau (samples exactly at the block's max or
    min) >= fraction, or an exactly constant non-zero block; HF_NOISE robust z of the
    window median of RMS(f)/RMS(l) > threshold; DEVIATION robust z of the window median of
    SD(y) > threshold for EEG (group 0), that median over the median of the channel's type
    > deviation_ratio_meg for MEG, or that median above ``noisy_v`` (> 0); LOW_CORRELATION (EEG, group 0,
    only) share of the window's blocks with max correlation < correlation_min >=
    correlation_fraction. The window rules start once ``n_window`` blocks were seen.

    Writes ``changes[j]`` = new reason code, -1 recovered, 0 nothing; ``values[k, j]`` the
    latest measurement of rule k+1; resets ``acc`` and ``cross``. Returns the number of
    changes. ``flagged[j]`` == MANUAL is left alone (only an explicit mark_good clears it).
    """
    n_chan = acc.shape[0]
    sat_frac, dev_z, hf_z, corr_min, corr_frac, nf_frac, corr_q, dev_ratio = params[0], params[1], params[2], params[3], params[4], params[5], params[6], params[7]
    slot = blocks_seen[0] % n_window
    blocks_seen[0] += 1
    m = min(blocks_seen[0], n_window)
    window_ready = blocks_seen[0] >= n_window
    max_correlation(cross, acc, good, group, corr_q, scratch, work[0])
    for j in range(n_chan):
        cnt = acc[j, ACC_N]
        for k in range(N_RULES):
            cond[k, j] = 0
        nf = acc[j, ACC_NONFINITE] / block_len
        values[NONFINITE - 1, j] = nf
        if nf >= nf_frac or cnt < 2:
            cond[NONFINITE - 1, j] = 1
            amp_ring[slot, j] = np.nan
            ratio_ring[slot, j] = np.nan
            corr_ring[slot, j] = np.nan
            continue
        sd_h = np.sqrt(max(acc[j, ACC_SUMSQ_H] / cnt - (acc[j, ACC_SUM_H] / cnt) ** 2, 0.0))
        sd_y = np.sqrt(max(acc[j, ACC_SUMSQ_Y] / cnt - (acc[j, ACC_SUM_Y] / cnt) ** 2, 0.0))
        values[FLAT - 1, j] = sd_h
        constant = acc[j, ACC_MAX] == acc[j, ACC_MIN]
        plateau = max(acc[j, ACC_AT_MAX], acc[j, ACC_AT_MIN]) / cnt
        rail_frac = acc[j, ACC_RAIL] / cnt
        sat_value = max(plateau if not constant else 0.0, rail_frac)
        if constant and acc[j, ACC_MAX] != 0.0:
            sat_value = 1.0
        values[SATURATED - 1, j] = sat_value
        if sat_value >= sat_frac:
            cond[SATURATED - 1, j] = 1
        elif sd_h < flat_v[j]:
            cond[FLAT - 1, j] = 1
        amp_ring[slot, j] = sd_y if sd_h >= flat_v[j] else np.nan
        ratio_ring[slot, j] = np.sqrt(acc[j, ACC_SUMSQ_F] / acc[j, ACC_SUMSQ_L]) if (sd_h >= flat_v[j] and acc[j, ACC_SUMSQ_L] > 0) else np.nan
        mc = work[0, j]
        corr_ring[slot, j] = (1.0 if mc < corr_min else 0.0) if np.isfinite(mc) else np.nan
    # window statistics: median over the window's blocks, robust z across good channels
    for j in range(n_chan):
        work[1, j] = _window_median(amp_ring, m, j, scratch2)
        work[2, j] = _window_median(ratio_ring, m, j, scratch2)
        s = 0.0
        k = 0
        for b in range(m):
            v = corr_ring[b, j]
            if np.isfinite(v):
                s += v
                k += 1
        work[3, j] = s / k if k > 0 else np.nan
    robust_z_grouped(work[1], good, group, n_groups, mask, scratch, work[6], work[4])
    # MEG: amplitude over the type's median. Focal MEG topographies make a few sensors over
    # a strong source several times the median with a tiny spread among the rest, so a
    # robust z of the amplitude would call clean sensors bad.
    for g in range(1, n_groups):
        median_ratio_grouped(work[1], good, group, g, scratch, work[4])
    robust_z_grouped(work[2], good, group, n_groups, mask, scratch, work[6], work[5])
    for j in range(n_chan):
        values[DEVIATION - 1, j] = work[4, j]
        values[HF_NOISE - 1, j] = work[5, j]
        values[LOW_CORRELATION - 1, j] = work[0, j]
        if window_ready and cond[FLAT - 1, j] == 0 and cond[SATURATED - 1, j] == 0 and cond[NONFINITE - 1, j] == 0:
            if work[4, j] > (dev_z if group[j] == 0 else dev_ratio) or (noisy_v[j] > 0 and work[1, j] > noisy_v[j]):
                cond[DEVIATION - 1, j] = 1
            if work[5, j] > hf_z:
                cond[HF_NOISE - 1, j] = 1
            # EEG only: MEG sensors see local fields with sensor noise comparable to the brain
            # signal, so clean neighbours correlate weakly (MNE judges MEG channels against
            # the SSS model instead, find_bad_channels_maxwell)
            if group[j] == 0 and np.isfinite(work[3, j]) and work[3, j] >= corr_frac:
                cond[LOW_CORRELATION - 1, j] = 1
    # persistence and hysteresis
    n_changes = 0
    for j in range(n_chan):
        changes[j] = 0
        any_cond = False
        for k in range(N_RULES):
            if cond[k, j]:
                bad_count[k, j] += 1
                any_cond = True
            else:
                bad_count[k, j] = 0
        if ignored[j] or flagged[j] == MANUAL:
            continue
        if flagged[j] == 0:
            for k in range(N_RULES):
                if cond[k, j] and bad_count[k, j] >= persist[k]:
                    flagged[j] = k + 1
                    changes[j] = k + 1
                    clear_count[j] = 0
                    n_changes += 1
                    break
        else:
            if any_cond:
                clear_count[j] = 0
            else:
                clear_count[j] += 1
                if clear_count[j] >= recover_blocks:
                    flagged[j] = 0
                    changes[j] = -1
                    n_changes += 1
    for j in range(n_chan):
        good[j] = 1 if (flagged[j] == 0 and not ignored[j]) else 0
        for c in range(acc.shape[1]):
            acc[j, c] = 0.0
        for c in range(n_chan):
            cross[j, c] = 0.0
    return n_changes
