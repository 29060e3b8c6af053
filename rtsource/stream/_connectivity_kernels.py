"""numba kernels of the connectivity stage (:mod:`rtsource.stream.connectivity`).

Plain functions over preallocated arrays; they allocate nothing and validate nothing (the
wrapper checks shapes and dtypes once at construction). Layouts: samples (n, n_roi) as LSL
gives them; spectra (n_bins, n_roi); pair sums (n_bins, n_pairs); pair ``p`` joins ROIs
``pair_i[p] < pair_j[p]``. Every kernel has a NumPy twin in ``tests/stream/test_connectivity.py``.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def ring_write(x, i0, i1, flags, ring, ring_bad, pos):
    """Copy rows ``i0:i1`` of ``x`` into the ring at write index ``pos``; return the new index.

    ``ring_bad[slot] = 1`` where the row has a non-finite value or ``flags[t] != 0``
    (``flags`` may have length 0: no flags).
    """
    cap = ring.shape[0]
    n_roi = ring.shape[1]
    use_flags = flags.shape[0] > 0
    for t in range(i0, i1):
        bad = 0
        for k in range(n_roi):
            v = x[t, k]
            ring[pos, k] = v
            if not np.isfinite(v):
                bad = 1
        if use_flags and flags[t] != 0:
            bad = 1
        ring_bad[pos] = bad
        pos += 1
        if pos == cap:
            pos = 0
    return pos


@numba.njit(cache=True, nogil=True)
def segment_spectrum(ring, ring_bad, pos, basis, mean, out):
    """Tapered DFT of the newest ``L = basis.shape[1]`` ring rows at the selected bins.

    The ring's oldest row is at ``pos`` (the write index), so segment sample ``t`` is ring
    row ``(pos + t) % L`` when the ring has exactly ``L`` rows. The mean of each ROI over the
    segment is removed first (as MNE's ``_mt_spectra`` does), then
    ``out[f, k] = sum_t basis[f, t] (x[t, k] - mean_k)`` with ``basis = taper * exp(-2 pi i k_f t / L)``.
    Returns 0 (and leaves ``out`` untouched) if any row of the segment is flagged, else 1.
    """
    n_len = basis.shape[1]
    n_roi = ring.shape[1]
    for t in range(n_len):
        if ring_bad[t] != 0:
            return 0
    for k in range(n_roi):
        mean[k] = 0.0
    for t in range(n_len):
        for k in range(n_roi):
            mean[k] += ring[t, k]
    for k in range(n_roi):
        mean[k] /= n_len
    for f in range(basis.shape[0]):
        for k in range(n_roi):
            out[f, k] = 0.0
        for t in range(n_len):
            r = pos + t
            if r >= n_len:
                r -= n_len
            w = basis[f, t]
            for k in range(n_roi):
                out[f, k] += w * (ring[r, k] - mean[k])
    return 1


@numba.njit(cache=True, nogil=True)
def accumulate_segment(spec, pair_i, pair_j, sign, s_xx, s_xy, s_phase, s_im, s_absim):
    """Add (``sign = 1``) or remove (``sign = -1``) one segment's contributions to the sums.

    With the cross-spectrum ``S_ij = X_i conj(X_j)`` per bin (MNE's convention: seed first):
    ``s_xx += |X_k|^2``, ``s_xy += S_ij``, ``s_phase += S_ij / |S_ij|`` (PLV; 0 where
    ``S_ij = 0``), ``s_im += Im S_ij`` and ``s_absim += |Im S_ij|`` (wPLI).
    """
    n_bins = spec.shape[0]
    n_roi = spec.shape[1]
    for f in range(n_bins):
        for k in range(n_roi):
            z = spec[f, k]
            s_xx[f, k] += sign * (z.real * z.real + z.imag * z.imag)
        for p in range(pair_i.shape[0]):
            a = spec[f, pair_i[p]]
            b = spec[f, pair_j[p]]
            re = a.real * b.real + a.imag * b.imag
            im = a.imag * b.real - a.real * b.imag
            s_xy[f, p] += sign * complex(re, im)
            mag = np.sqrt(re * re + im * im)
            if mag > 0.0:
                s_phase[f, p] += sign * complex(re / mag, im / mag)
            s_im[f, p] += sign * im
            s_absim[f, p] += sign * abs(im)


@numba.njit(cache=True, nogil=True)
def zero_sums(s_xx, s_xy, s_phase, s_im, s_absim):
    """Reset the segment sums (before re-summing the ring exactly)."""
    s_xx[:] = 0.0
    s_xy[:] = 0.0
    s_phase[:] = 0.0
    s_im[:] = 0.0
    s_absim[:] = 0.0


@numba.njit(cache=True, nogil=True)
def aec_samples(x, i0, i1, flags, b0, b1, a1, zstate, y, amp, inv_amp, pair_i, pair_j, roi_acc, pair_acc, count):
    """Causal analytic signal per band and ROI, and the block sums of the orthogonalised AEC.

    For rows ``i0:i1`` of ``x`` (rows with a non-finite value or a flag are skipped: no
    filter update, no contribution) and each band ``b``: the complex band-pass (cascaded
    first-order sections ``y = b0 x + b1 x[-1] - a1 y[-1]``, transposed direct form, state
    ``zstate[b, s, k]``) gives the analytic signal ``y_k``. Orthogonalisation (Hipp et al.
    2012, Nat Neurosci 15:884, eq. in Methods): ``Y_perp_X = Im(Y conj(X) / |X|)``, so with
    ``q = |Im(y_i conj(y_j))|`` the two orthogonalised envelopes are ``q / |y_j|`` (i against
    j) and ``q / |y_i|`` (j against i). Accumulated per band:
    ``roi_acc[b] = [sum a, sum a^2]`` (a = |y_k|) and per pair
    ``pair_acc[b] = [sum e1, sum e1^2, sum a_j e1, sum e2, sum e2^2, sum a_i e2]`` with
    ``e1 = q/|y_j|`` correlated against ``a_j`` and ``e2 = q/|y_i|`` against ``a_i``.
    ``count[0]`` counts the samples used. ``y``, ``amp``, ``inv_amp`` (n_roi,) are scratch:
    the amplitudes and their inverses are computed once per ROI, not per pair (the pair loop
    is the cost: 2,278 pairs x 2 bands x 500 Hz).
    """
    n_bands = b0.shape[0]
    n_sec = b0.shape[1]
    n_roi = x.shape[1]
    use_flags = flags.shape[0] > 0
    for t in range(i0, i1):
        bad = use_flags and flags[t] != 0
        if not bad:
            for k in range(n_roi):
                if not np.isfinite(x[t, k]):
                    bad = True
                    break
        if bad:
            continue
        count[0] += 1
        for b in range(n_bands):
            for k in range(n_roi):
                v = complex(x[t, k], 0.0)
                for s in range(n_sec):
                    out = b0[b, s] * v + zstate[b, s, k]
                    zstate[b, s, k] = b1[b, s] * v - a1[b, s] * out
                    v = out
                y[k] = v
                a = abs(v)
                amp[k] = a
                inv_amp[k] = 1.0 / a if a > 0.0 else 0.0
                roi_acc[b, 0, k] += a
                roi_acc[b, 1, k] += a * a
            for p in range(pair_i.shape[0]):
                i = pair_i[p]
                j = pair_j[p]
                yi = y[i]
                yj = y[j]
                ai = amp[i]
                aj = amp[j]
                q = abs(yi.imag * yj.real - yi.real * yj.imag)
                e1 = q * inv_amp[j]
                e2 = q * inv_amp[i]
                pair_acc[b, 0, p] += e1
                pair_acc[b, 1, p] += e1 * e1
                pair_acc[b, 2, p] += aj * e1
                pair_acc[b, 3, p] += e2
                pair_acc[b, 4, p] += e2 * e2
                pair_acc[b, 5, p] += ai * e2


@numba.njit(cache=True, nogil=True)
def add_scaled(dst, src, sign):
    """dst += sign * src, elementwise over same-shaped contiguous arrays (block sums)."""
    d = dst.ravel()
    s = src.ravel()
    for i in range(d.shape[0]):
        d[i] += sign * s[i]


@numba.njit(cache=True, nogil=True)
def _pearson(n, sa, saa, sb, sbb, sab):
    va = n * saa - sa * sa
    vb = n * sbb - sb * sb
    if va <= 0.0 or vb <= 0.0:
        return np.nan
    return (n * sab - sa * sb) / np.sqrt(va * vb)


@numba.njit(cache=True, nogil=True)
def connectivity_output(measures, band_start, n_valid, s_xx, s_xy, s_phase, s_im, s_absim, pair_i, pair_j,
                        n_aec, roi_win, pair_win, inv_rms, mean, inv_std, out, row):  # fmt: skip
    """One output row: ``out[row, (m * n_bands + b) * n_pairs + p]``, measure-major.

    ``measures`` codes: 0 coh, 1 imcoh, 2 plv, 3 wpli, 4 aec. Spectral measures per bin
    ``f`` (``n`` = number of valid segments), then averaged over the band's bins
    ``band_start[b]:band_start[b+1]`` (as mne-connectivity's ``faverage``):

    - coherence ``|<S_ij>| / sqrt(<S_ii><S_jj>)``
    - imaginary coherence ``Im<S_ij> / sqrt(<S_ii><S_jj>)`` (Nolte et al. 2004, Clin
      Neurophysiol 115:2292): signed, insensitive to zero-lag mixing
    - PLV ``|<S_ij / |S_ij|>|`` (Lachaux et al. 1999, Hum Brain Mapp 8:194)
    - wPLI ``|<Im S_ij>| / <|Im S_ij|>`` (Vinck et al. 2011, NeuroImage 55:1548), 0
      where the denominator is 0
    - AEC: Pearson correlation of each envelope with the other signal's orthogonalised
      envelope over the window, averaged over both directions (Hipp et al. 2012)

    Then ``(value - mean) * inv_std`` (0 and 1 without z-scoring). With no valid segment
    (or AEC sample) the row holds NaN. ``inv_rms`` (n_bins, n_roi) is scratch for
    ``1 / sqrt(<S_kk>)`` (NaN where the power is 0), computed once per ROI rather than per pair.
    """
    n_bands = band_start.shape[0] - 1
    n_pairs = pair_i.shape[0]
    for f in range(s_xx.shape[0]):
        for k in range(s_xx.shape[1]):
            v = s_xx[f, k]
            inv_rms[f, k] = 1.0 / np.sqrt(v) if v > 0.0 else np.nan
    for mi in range(measures.shape[0]):
        m = measures[mi]
        for b in range(n_bands):
            base = (mi * n_bands + b) * n_pairs
            f0 = band_start[b]
            f1 = band_start[b + 1]
            for p in range(n_pairs):
                i = pair_i[p]
                j = pair_j[p]
                val = 0.0
                if m == 4:
                    if n_aec[b] < 3:
                        val = np.nan
                    else:
                        n = float(n_aec[b])
                        # direction 1: a_j against e1 (i orthogonalised on j), direction 2: a_i against e2
                        c1 = _pearson(n, roi_win[b, 0, j], roi_win[b, 1, j], pair_win[b, 0, p], pair_win[b, 1, p], pair_win[b, 2, p])
                        c2 = _pearson(n, roi_win[b, 0, i], roi_win[b, 1, i], pair_win[b, 3, p], pair_win[b, 4, p], pair_win[b, 5, p])
                        val = 0.5 * (c1 + c2)
                elif n_valid == 0:
                    val = np.nan
                else:
                    for f in range(f0, f1):
                        if m == 0:
                            z = s_xy[f, p]
                            val += np.sqrt(z.real * z.real + z.imag * z.imag) * inv_rms[f, i] * inv_rms[f, j]
                        elif m == 1:
                            val += s_xy[f, p].imag * inv_rms[f, i] * inv_rms[f, j]
                        elif m == 2:
                            z = s_phase[f, p]
                            val += np.sqrt(z.real * z.real + z.imag * z.imag) / n_valid
                        else:
                            den = s_absim[f, p]
                            if den > 0.0:
                                val += abs(s_im[f, p]) / den
                    val /= f1 - f0
                q = base + p
                out[row, q] = (val - mean[q]) * inv_std[q]
