"""numba kernels of the bad-channel detector: per-block channel statistics and the rules.

Plain functions over arrays and scalars that write into preallocated outputs and allocate
nothing; validation lives in the Python wrapper (:class:`.badchannels.BadChannelDetector`),
which checks shapes and dtypes once at construction. Each kernel has a NumPy twin in the
tests (tests/stream/test_badchannels.py). Layouts follow LSL: (n_samples, n_columns).

The kernels read and update the detector's state through typed groups (:class:`QcFilters`,
:class:`QcBlock`, :class:`QcRules`, :class:`QcSensors`, :class:`QcWindow`, :class:`QcFlags`,
:class:`QcScratch`):
named tuples of the detector's own arrays, which numba passes by reference like the arrays
themselves.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

# columns of the per-channel block accumulator ``acc`` (qc_accumulate / qc_evaluate)
ACC_SUM_Y, ACC_SUMSQ_Y, ACC_SUMSQ_F, ACC_RAIL, ACC_MAX, ACC_MIN, ACC_AT_MAX, ACC_AT_MIN, ACC_N, ACC_SUM_H, ACC_SUMSQ_H, ACC_NONFINITE, ACC_SUMSQ_L = range(13)
N_ACC = 13

# reason codes (index + 1 into the rule arrays); order = priority when several persist at once
FLAT, NONFINITE, SATURATED, HF_NOISE, DEVIATION, LOW_CORRELATION, MANUAL = 1, 2, 3, 4, 5, 6, 7
N_RULES = 6


class QcFilters(NamedTuple):
    """The three filters of :func:`qc_accumulate`: second-order sections (n_sections, 6) and
    their states (n_sections, n_channels, 2), transposed direct form II.

    Attributes
    ----------
    hp_sos, hp_state : ndarray of float64
        High-pass that removes drift (h).
    hf_sos, hf_state : ndarray of float64
        High-pass of the raw value: the high-frequency part (f).
    lf_sos, lf_state : ndarray of float64
        Low-pass of h: the signal band (l).
    """

    hp_sos: np.ndarray
    hp_state: np.ndarray
    hf_sos: np.ndarray
    hf_state: np.ndarray
    lf_sos: np.ndarray
    lf_state: np.ndarray


class QcBlock(NamedTuple):
    """The block being accumulated.

    Attributes
    ----------
    acc : ndarray of float64, shape (n_channels, N_ACC)
        Per-channel sums (columns ``ACC_*``).
    cross : ndarray of float64, shape (n_channels, n_channels)
        Upper triangle of sum y_i y_j.
    h : ndarray of float64, shape (n_channels,)
        Work space for one row.
    pos : ndarray of int64, shape (1,)
        Position within the block.
    block_len : int
        Samples per block.
    """

    acc: np.ndarray
    cross: np.ndarray
    h: np.ndarray
    pos: np.ndarray
    block_len: int


class QcRules(NamedTuple):
    """The rules as :func:`qc_evaluate` reads them (see :class:`.badchannels.BadChannelRules`).

    Attributes
    ----------
    params : ndarray of float64, shape (8,)
        [saturation_fraction, deviation_z, hf_z, correlation_min, correlation_fraction,
        nonfinite_fraction, correlation_quantile, deviation_ratio_meg]; the absolute limits
        are per channel, in :class:`QcSensors`.
    persist : ndarray of int64, shape (N_RULES,)
        Blocks in a row that rule code k + 1 must hold to flag a channel.
    recover_blocks : int
        Blocks in a row without any rule that re-arm a flagged channel.
    n_window : int
        Blocks in the window of the window rules (deviation, noise, correlation).
    """

    params: np.ndarray
    persist: np.ndarray
    recover_blocks: int
    n_window: int


class QcSensors(NamedTuple):
    """Sensor type and absolute limits per channel: types are judged apart (microvolts never
    meet femtotesla).

    Attributes
    ----------
    group : ndarray of int64, shape (n_channels,)
        Sensor type 0 .. n_groups - 1 (0: EEG, 1: magnetometer, 2: gradiometer); the
        relative rules compare a channel with its own type only.
    eeg : ndarray of uint8, shape (n_channels,)
        1 for EEG channels (average-referenced in y; MEG channels are not).
    n_groups : int
        Number of sensor types.
    rail : ndarray of float64, shape (n_channels,)
        Amplifier range in the channel's SI unit (0: unknown).
    flat : ndarray of float64, shape (n_channels,)
        Block SD of h below which the channel is flat (V, T or T/m).
    noisy : ndarray of float64, shape (n_channels,)
        Window amplitude above which the channel is noisy (0: no ceiling).
    """

    group: np.ndarray
    eeg: np.ndarray
    n_groups: int
    rail: np.ndarray
    flat: np.ndarray
    noisy: np.ndarray


class QcWindow(NamedTuple):
    """Per-block measurements of the last ``n_window`` blocks, rings with a write index.

    Attributes
    ----------
    blocks_seen : ndarray of int64, shape (1,)
        Blocks evaluated so far (the ring's write index is ``blocks_seen % n_window``).
    amp_ring, ratio_ring, corr_ring : ndarray of float64, shape (n_window, n_channels)
        Block SD of y (SI unit of the channel), RMS(f)/RMS(l), and 1.0/0.0 for "max correlation below the
        minimum" (NaN where the block did not measure it).
    """

    blocks_seen: np.ndarray
    amp_ring: np.ndarray
    ratio_ring: np.ndarray
    corr_ring: np.ndarray


class QcFlags(NamedTuple):
    """Which channels are flagged, and the counters of persistence and recovery.

    Attributes
    ----------
    good : ndarray of uint8, shape (n_channels,)
        1 for channels that count as good references (not flagged, not ignored).
    ignored : ndarray of uint8, shape (n_channels,)
        1 for channels never flagged.
    flagged : ndarray of int64, shape (n_channels,)
        Reason code of the flag (0: not flagged; MANUAL: by hand).
    bad_count : ndarray of int64, shape (N_RULES, n_channels)
        Blocks in a row each rule held.
    clear_count : ndarray of int64, shape (n_channels,)
        Blocks in a row without any rule (flagged channels).
    """

    good: np.ndarray
    ignored: np.ndarray
    flagged: np.ndarray
    bad_count: np.ndarray
    clear_count: np.ndarray


class QcScratch(NamedTuple):
    """Outputs and work space of :func:`qc_evaluate`.

    Attributes
    ----------
    values : ndarray of float64, shape (N_RULES, n_channels)
        The latest measurement of each rule (written).
    cond : ndarray of uint8, shape (N_RULES, n_channels)
        Which rules held in the block (work).
    scratch : ndarray of float64, shape (n_channels,)
    scratch2 : ndarray of float64, shape (n_window,)
    work : ndarray of float64, shape (7, n_channels)
    changes : ndarray of int64, shape (n_channels,)
        New reason code, -1 recovered, 0 nothing (written).
    mask : ndarray of uint8, shape (n_channels,)
        Work space: the good channels of one sensor type.
    """

    values: np.ndarray
    cond: np.ndarray
    scratch: np.ndarray
    scratch2: np.ndarray
    work: np.ndarray
    changes: np.ndarray
    mask: np.ndarray


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
def qc_accumulate(x, start, n, index, scale, good, sensors, filters, block):
    """Per-channel quality statistics over blocks of ``block.block_len`` samples.

    ``index``, ``scale`` (int64, float64; shape (n_channels,)): column of each operator channel
    in ``x`` and its factor to SI; ``good`` (uint8): channels in the average reference;
    ``sensors`` a :class:`QcSensors` (``eeg``, ``rail``); ``filters`` a :class:`QcFilters`;
    ``block`` a :class:`QcBlock`. For rows ``start <= t < n`` and operator channel j:
    ``r = x[t, index[j]] * scale[j]`` (SI: V, T or T/m); ``h_j`` = r high-passed by
    ``hp_sos`` (drift removed); for EEG channels (``eeg[j]``) ``y_j = h_j - mean of h over
    the good EEG channels`` (average reference), for MEG channels ``y_j = h_j`` (a
    magnetometer has no reference); ``f_j`` = r high-passed by ``hf_sos`` (the
    high-frequency part) and ``l_j`` = h low-passed by ``lf_sos`` (the signal band).
    Accumulated per channel in ``acc[j, ACC_*]``: sums of y, y^2, f^2, l^2, h, h^2, samples
    at or beyond the channel's rail (``|r| >= rail[j] > 0``), the block's max and min of r
    and how many samples sit exactly at them, finite and non-finite sample counts; and
    ``cross[i, j] += y_i y_j`` (i < j) for the correlation criterion. A non-finite value
    counts in ACC_NONFINITE and is otherwise skipped (its filters keep their state).

    ``pos[0]`` is the position within the current block. Returns the row index just after
    the row that completed a block (the caller evaluates the block, then calls again from
    there), or -1 when the rows ran out first.
    """
    hp_sos, hp_state, hf_sos, hf_state = filters.hp_sos, filters.hp_state, filters.hf_sos, filters.hf_state
    lf_sos, lf_state = filters.lf_sos, filters.lf_state
    h, acc, cross, block_len, pos = block.h, block.acc, block.cross, block.block_len, block.pos
    eeg, rail = sensors.eeg, sensors.rail
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
def qc_evaluate(block, rules, sensors, window, flags, out):
    """Apply the rules to a completed block; update persistence, hysteresis and the good mask.

    ``block`` is the :class:`QcBlock` :func:`qc_accumulate` completed; ``rules`` a
    :class:`QcRules`, ``sensors`` a :class:`QcSensors` (per-channel limits in SI units, and
    the sensor type within which channels are compared), ``window`` a :class:`QcWindow`,
    ``flags`` a :class:`QcFlags` and ``out`` a :class:`QcScratch`. ``rules.persist[k]``
    blocks of rule k+1 in a row flag a channel; ``rules.recover_blocks`` blocks without any
    rule re-arm it. Rules (codes above): FLAT block SD of h < ``sensors.flat[j]``;
    NONFINITE share of non-finite samples >= nonfinite_fraction; SATURATED rail hits >=
    fraction, or a plateau (samples exactly at the block's max or min) >= fraction, or an
    exactly constant non-zero block; HF_NOISE robust z (within the type) of the window
    median of RMS(f)/RMS(l) > threshold; DEVIATION robust z of the window median of SD(y) >
    threshold for EEG (group 0), that median over the median of the channel's type >
    deviation_ratio_meg for MEG, or that median above ``sensors.noisy[j]`` (> 0);
    LOW_CORRELATION (EEG, group 0, only) share of the window's blocks with max correlation <
    correlation_min >= correlation_fraction. The window rules start once ``rules.n_window``
    blocks were seen.

    Writes ``out.changes[j]`` = new reason code, -1 recovered, 0 nothing; ``out.values[k, j]``
    the latest measurement of rule k+1; resets ``acc`` and ``cross``. Returns the number of
    changes. ``flags.flagged[j]`` == MANUAL is left alone (only an explicit mark_good clears it).
    """
    acc, cross, block_len = block.acc, block.cross, block.block_len
    params, persist, recover_blocks, n_window = rules.params, rules.persist, rules.recover_blocks, rules.n_window
    blocks_seen, amp_ring, ratio_ring, corr_ring = window.blocks_seen, window.amp_ring, window.ratio_ring, window.corr_ring
    good, ignored, flagged, bad_count, clear_count = flags.good, flags.ignored, flags.flagged, flags.bad_count, flags.clear_count
    values, cond, scratch, scratch2, work, changes, mask = out.values, out.cond, out.scratch, out.scratch2, out.work, out.changes, out.mask
    group, n_groups, flat_v, noisy_v = sensors.group, sensors.n_groups, sensors.flat, sensors.noisy
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
    # MEG high-frequency ratio likewise over the type's median: sensor noise makes the ratio
    # nearly equal on clean sensors, and a robust z of that tiny spread flags clean ones.
    for g in range(1, n_groups):
        median_ratio_grouped(work[2], good, group, g, scratch, work[5])
    for j in range(n_chan):
        values[DEVIATION - 1, j] = work[4, j]
        values[HF_NOISE - 1, j] = work[5, j]
        values[LOW_CORRELATION - 1, j] = work[0, j]
        if window_ready and cond[FLAT - 1, j] == 0 and cond[SATURATED - 1, j] == 0 and cond[NONFINITE - 1, j] == 0:
            if work[4, j] > (dev_z if group[j] == 0 else dev_ratio) or (noisy_v[j] > 0 and work[1, j] > noisy_v[j]):
                cond[DEVIATION - 1, j] = 1
            if work[5, j] > (hf_z if group[j] == 0 else dev_ratio):
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
