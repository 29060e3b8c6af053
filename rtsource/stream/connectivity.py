"""ROI connectivity on sliding windows: coherence, imaginary coherence, PLV, wPLI, orthogonalised AEC.

    ROI chunk (n, K) ─> ring of the last L samples ─> every H samples: tapered DFT of the
        segment at the bands' bins ─> segment ring (M slots) ─> running sums over the window
                     ─> per band: causal analytic signal ─> AEC block sums (one per step)
        every S samples: (n_measures x n_bands x n_pairs) values ─> [z-score] ─> one row

Causal: the row emitted at sample ``c`` (a multiple of the step ``S``) uses the window of
samples ``c - W .. c - 1`` only, and carries that last sample's timestamp.

Spectral measures (coherence, imaginary coherence, PLV, wPLI) use a Welch-style Fourier
estimator: the window holds ``M = (W - L) / H + 1`` segments of ``L`` samples starting every
``H`` samples; each segment is demeaned, multiplied by a symmetric Hann taper
(``np.hanning(L)``) and transformed at the bins ``f_k = k sfreq / L`` that fall inside each
band (edges included). Cross-spectra are summed over the segments and each measure is
computed per bin, then averaged over the band's bins. This is what
``mne_connectivity.spectral_connectivity_epochs(mode='fourier', faverage=True)`` computes
when the window's segments are given as its epochs (checked to 1e-6 in the tests). The
sums are updated incrementally: a new segment's terms are added and the leaving segment's
terms (recomputed from its stored spectrum) subtracted; every ``_RESUM_EVERY`` segments the
sums are recomputed exactly from the ring, so rounding cannot drift.

Orthogonalised amplitude-envelope correlation (Hipp et al. 2012, Nat Neurosci 15:884): the
analytic signal of each band comes from a causal complex band-pass (the band-power stage's
design, :meth:`rtsource.stream.bandpower.BandPowerSpec.design_analytic`); per sample each
signal is orthogonalised on the other, and the Pearson correlation of the amplitude envelope
with the other's orthogonalised envelope over the window is averaged over both directions.
Envelopes are amplitudes (not log power, which Hipp et al. also used; the default of
``mne_connectivity.envelope_correlation``). Block sums per step make the window update
O(pairs) per step.

Pair ``p`` joins ROIs ``i < j`` in row-major order; output channel
``(m * n_bands + b) * n_pairs + p`` is labelled ``<measure>:<band>:<roi_i>~<roi_j>``, e.g.
``coh:alpha:superiortemporal-lh~precentral-rh``. The sign of imaginary coherence follows
``S_ij = X_i conj(X_j)``: positive when ROI ``i`` leads ROI ``j``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError
from .bandpower import Band, BandPowerSpec, checked_baseline

logger = logging.getLogger(__name__)

MEASURES = ("coh", "imcoh", "plv", "wpli", "aec")
_MEASURE_CODE = {m: i for i, m in enumerate(MEASURES)}
_RESUM_EVERY = 1024  # segments between exact re-summations of the running sums
_MIN_BASELINE_ROWS = 10


@dataclass(frozen=True)
class ConnectivitySpec:
    """What the connectivity stage computes.

    Attributes
    ----------
    bands : tuple of Band
    measures : tuple of str
        Any of ``coh``, ``imcoh``, ``plv``, ``wpli``, ``aec``; output order follows this tuple.
    window_s : float
        Window length W (s); a multiple of the step.
    step_s : float
        Output interval S (s).
    segment_s : float
        Spectral segment length L (s), <= window; frequency resolution ``1 / segment_s``.
    segment_step_s : float or None
        Hop H between segment starts (s); divides the step and ``window - segment``.
        None: the step.
    aec_filter_order : int
        Order of the complex band-pass of the AEC's analytic signal.
    zscore : bool
        Publish ``(value - baseline mean) / baseline std`` after :meth:`ConnectivityStage.calibrate`.
    """

    bands: tuple[Band, ...] = field(default_factory=lambda: (Band("alpha", 8.0, 12.0), Band("beta", 13.0, 30.0)))
    measures: tuple[str, ...] = MEASURES
    window_s: float = 1.0
    step_s: float = 0.1
    segment_s: float = 0.5
    segment_step_s: float | None = None
    aec_filter_order: int = 2
    zscore: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "bands", tuple(self.bands))
        object.__setattr__(self, "measures", tuple(self.measures))
        if not self.bands:
            raise ConfigError("[connectivity] bands is empty; give at least one band, e.g. bands = {alpha = [8, 12]}")
        names = [b.name for b in self.bands]
        if len(set(names)) != len(names):
            raise ConfigError(f"[connectivity] band names repeat: {names}")
        if not self.measures or any(m not in MEASURES for m in self.measures) or len(set(self.measures)) != len(self.measures):
            raise ConfigError(f"[connectivity] measures = {list(self.measures)!r} must be distinct names from {', '.join(MEASURES)}")
        for key in ("window_s", "step_s", "segment_s"):
            v = getattr(self, key)
            if not (np.isfinite(v) and v > 0):
                raise ConfigError(f"[connectivity] {key} = {v!r} must be > 0 s")
        if self.segment_step_s is not None and not (np.isfinite(self.segment_step_s) and self.segment_step_s > 0):
            raise ConfigError(f"[connectivity] segment_step_s = {self.segment_step_s!r} must be > 0 s (or omitted: the step)")
        if not 1 <= self.aec_filter_order <= 8:
            raise ConfigError(f"[connectivity] aec_filter_order = {self.aec_filter_order!r} must be in 1..8")

    def samples(self, sfreq: float) -> tuple[int, int, int, int]:
        """(W, S, L, H) in samples at ``sfreq``, checked for the divisibility the ring needs."""
        def n(key, v):
            k = int(round(v * sfreq))
            if k < 1 or abs(k - v * sfreq) > 1e-6 * max(1.0, v * sfreq):
                raise ConfigError(f"[connectivity] {key} = {v:g} s is not a whole number of samples at {sfreq:g} Hz; use a multiple of {1 / sfreq:g} s")
            return k

        w, s, seg = n("window_s", self.window_s), n("step_s", self.step_s), n("segment_s", self.segment_s)
        h = s if self.segment_step_s is None else n("segment_step_s", self.segment_step_s)
        if w % s:
            raise ConfigError(f"[connectivity] window_s = {self.window_s:g} s must be a multiple of step_s = {self.step_s:g} s")
        if seg > w:
            raise ConfigError(f"[connectivity] segment_s = {self.segment_s:g} s must not exceed window_s = {self.window_s:g} s")
        if s % h or (w - seg) % h:
            raise ConfigError(
                f"[connectivity] segment_step_s = {h / sfreq:g} s must divide step_s = {self.step_s:g} s and "
                f"window_s - segment_s = {(w - seg) / sfreq:g} s; e.g. segment_step_s = step_s with window - segment a multiple of the step"
            )
        return w, s, seg, h

    def bins(self, sfreq: float) -> list[np.ndarray]:
        """Per band, the DFT bin indices ``k`` with ``low <= k sfreq / L <= high``."""
        _, _, seg, _ = self.samples(sfreq)
        freqs = np.fft.rfftfreq(seg, 1.0 / sfreq)
        out = []
        for b in self.bands:
            if b.high_hz >= sfreq / 2:
                raise ConfigError(f"[connectivity] band {b.name!r} upper edge {b.high_hz:g} Hz must be below the Nyquist frequency {sfreq / 2:g} Hz")
            k = np.flatnonzero((freqs >= b.low_hz) & (freqs <= b.high_hz))
            if len(k) == 0:
                raise ConfigError(
                    f"[connectivity] band {b.name!r} [{b.low_hz:g}, {b.high_hz:g}] Hz holds no frequency bin of a "
                    f"{self.segment_s:g} s segment (resolution {sfreq / seg:g} Hz); lengthen segment_s or widen the band"
                )
            out.append(k)
        return out


def pair_labels(roi_names, spec: ConnectivitySpec) -> tuple[str, ...]:
    """``<measure>:<band>:<roi_i>~<roi_j>`` in output order (measure, band, pair i < j)."""
    n = len(roi_names)
    pairs = [f"{roi_names[i]}~{roi_names[j]}" for i in range(n) for j in range(i + 1, n)]
    return tuple(f"{m}:{b.name}:{p}" for m in spec.measures for b in spec.bands for p in pairs)


class ConnectivityStage:
    """Connectivity between ROI time courses on causal sliding windows.

    Parameters
    ----------
    spec : ConnectivitySpec
    roi_names : sequence of str
        Input columns (at least 2); names may not contain ``:`` or ``~`` (label separators).
    sfreq : float
        Input rate (Hz).
    max_chunk : int
        Largest input chunk (samples).

    Notes
    -----
    State is preallocated here; :meth:`process` allocates nothing per call (numba kernels
    over ring buffers with write indices). Memory: ``M x n_bins x K`` complex spectra,
    ``5 x n_bins x n_pairs`` sums, ``(W/S) x n_bands x 6 x n_pairs`` AEC block sums.
    """

    def __init__(self, spec: ConnectivitySpec, roi_names, sfreq: float, max_chunk: int):
        from . import _connectivity_kernels

        self._k = _connectivity_kernels
        self.spec = spec
        self.roi_names = tuple(roi_names)
        if len(self.roi_names) < 2:
            raise ConfigError(f"connectivity needs at least 2 ROIs, got {len(self.roi_names)} ({list(self.roi_names)})")
        for r in self.roi_names:
            if not isinstance(r, str) or not r or ":" in r or "~" in r:
                raise ConfigError(f"ROI name {r!r} cannot appear in a connectivity label; use a non-empty name without ':' or '~'")
        if len(set(self.roi_names)) != len(self.roi_names):
            raise ConfigError(f"ROI names repeat: {list(self.roi_names)}")
        if not (np.isfinite(sfreq) and sfreq > 0):
            raise ConfigError(f"sfreq = {sfreq!r} must be > 0 Hz")
        if int(max_chunk) < 1:
            raise ConfigError(f"max_chunk = {max_chunk!r} must be >= 1")
        self.sfreq = float(sfreq)
        self.max_chunk = int(max_chunk)
        self.window, self.step, self.seg_len, self.hop = spec.samples(self.sfreq)
        self.rate_hz = self.sfreq / self.step
        k_roi = len(self.roi_names)
        iu = np.triu_indices(k_roi, 1)
        self.pair_i = np.ascontiguousarray(iu[0], dtype=np.int64)
        self.pair_j = np.ascontiguousarray(iu[1], dtype=np.int64)
        self.n_pairs = len(self.pair_i)
        self.n_bands = len(spec.bands)
        self.n_out = len(spec.measures) * self.n_bands * self.n_pairs
        self._measures = np.array([_MEASURE_CODE[m] for m in spec.measures], dtype=np.int64)
        self._spectral = any(m != "aec" for m in spec.measures)
        self._aec = "aec" in spec.measures

        # spectral state
        bins = spec.bins(self.sfreq)
        self.bin_freqs = tuple(k * self.sfreq / self.seg_len for k in bins)
        self._band_start = np.cumsum([0] + [len(k) for k in bins]).astype(np.int64)
        allk = np.concatenate(bins)
        t = np.arange(self.seg_len)
        taper = np.hanning(self.seg_len)
        self._basis = np.ascontiguousarray(taper[None, :] * np.exp(-2j * np.pi * allk[:, None] * t[None, :] / self.seg_len))
        n_bins = len(allk)
        self.n_segments = (self.window - self.seg_len) // self.hop + 1
        self._ring = np.zeros((self.seg_len, k_roi))
        self._ring_bad = np.ones(self.seg_len, dtype=np.uint8)  # unfilled rows count as bad
        self._pos = 0
        self._spec_ring = np.zeros((self.n_segments, n_bins, k_roi), dtype=np.complex128)
        self._spec_valid = np.zeros(self.n_segments, dtype=np.uint8)
        self._seg_slot = 0
        self._mean_scratch = np.zeros(k_roi)
        self._inv_rms = np.zeros((n_bins, k_roi))
        self._s_xx = np.zeros((n_bins, k_roi))
        self._s_xy = np.zeros((n_bins, self.n_pairs), dtype=np.complex128)
        self._s_phase = np.zeros((n_bins, self.n_pairs), dtype=np.complex128)
        self._s_im = np.zeros((n_bins, self.n_pairs))
        self._s_absim = np.zeros((n_bins, self.n_pairs))
        self._since_resum = 0

        # AEC state: complex band-pass per band, block sums per step
        n_blocks = self.window // self.step + 1  # the window's blocks + the one being filled
        order = spec.aec_filter_order
        if self._aec:
            csec = BandPowerSpec(bands=spec.bands, filter_order=order).design_analytic(self.sfreq)
        else:
            csec = [(np.zeros(order, complex),) * 3 for _ in spec.bands]
        self._b0 = np.ascontiguousarray([c[0] for c in csec], dtype=np.complex128)
        self._b1 = np.ascontiguousarray([c[1] for c in csec], dtype=np.complex128)
        self._a1 = np.ascontiguousarray([c[2] for c in csec], dtype=np.complex128)
        self._zstate = np.zeros((self.n_bands, order, k_roi), dtype=np.complex128)
        self._y = np.zeros(k_roi, dtype=np.complex128)
        self._amp = np.zeros(k_roi)
        self._inv_amp = np.zeros(k_roi)
        n_aec_pairs = self.n_pairs if self._aec else 0
        self._roi_blocks = np.zeros((n_blocks, self.n_bands, 2, k_roi))
        self._pair_blocks = np.zeros((n_blocks, self.n_bands, 6, n_aec_pairs))
        self._block_count = np.zeros((n_blocks, 1), dtype=np.int64)
        self._roi_win = np.zeros((self.n_bands, 2, k_roi))
        self._pair_win = np.zeros((self.n_bands, 6, n_aec_pairs))
        self._n_aec = np.zeros(self.n_bands, dtype=np.int64)
        self._block = 0
        self._no_pairs = np.zeros(0, dtype=np.int64)

        self._count = 0  # samples received (position on the step / segment grid)
        self._no_flags = np.zeros(0, dtype=np.uint8)
        self._out = np.zeros((self.max_chunk // self.step + 1, self.n_out), dtype=np.float32)
        self._ts_out = np.zeros(len(self._out))
        self._mean = np.zeros(self.n_out)
        self._inv_std = np.ones(self.n_out)
        self.baseline_mean: np.ndarray | None = None
        self.baseline_std: np.ndarray | None = None
        self.rows_out = 0  # counted where rows are produced

    # ---- description ----
    @property
    def labels(self) -> tuple[str, ...]:
        return pair_labels(self.roi_names, self.spec)

    @property
    def max_rows(self) -> int:
        """Most rows one :meth:`process` call returns."""
        return len(self._out)

    # ---- processing ----
    def process(self, roi: np.ndarray, ts: np.ndarray, n: int, flags: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Feed ``n`` ROI samples; return the rows that fall due (one per completed step).

        Parameters
        ----------
        roi : ndarray, shape (>= n, n_roi)
            Signed ROI time courses (e.g. ``mean_flip``), any float dtype, any unit.
        ts : ndarray of float64, shape (>= n,)
            Their timestamps (LSL time, s).
        n : int
            1 <= n <= max_chunk.
        flags : ndarray of uint8, shape (>= n,), optional
            Non-zero marks a rejected sample (artifact flag): segments containing it are left
            out of the spectral sums and it is left out of the AEC.

        Returns
        -------
        values : ndarray of float32, shape (k, n_out)
            NaN until the first window is complete (or when it holds no valid segment).
        timestamps : ndarray of float64, shape (k,)
            Timestamp of each window's last sample. Views, valid until the next call.
        """
        if not 1 <= n <= self.max_chunk:
            raise ConfigError(f"n = {n} must be in 1..max_chunk = {self.max_chunk}; split the chunk or raise max_chunk")
        if roi.ndim != 2 or roi.shape[0] < n or roi.shape[1] != len(self.roi_names):
            raise ConfigError(f"roi has shape {roi.shape}, expected (>= {n}, {len(self.roi_names)})")
        fl = self._no_flags if flags is None else flags
        k = self._k
        rows = 0
        i = 0
        while i < n:
            m = min(n - i, self.hop - self._count % self.hop)
            if self._spectral:
                self._pos = k.ring_write(roi, i, i + m, fl, self._ring, self._ring_bad, self._pos)
            if self._aec:
                b = self._block
                k.aec_samples(roi, i, i + m, fl, self._b0, self._b1, self._a1, self._zstate, self._y, self._amp, self._inv_amp, self.pair_i, self.pair_j,
                              self._roi_blocks[b], self._pair_blocks[b], self._block_count[b])  # fmt: skip
            i += m
            self._count += m
            if self._count % self.hop == 0 and self._spectral:
                self._new_segment()
            if self._count % self.step == 0:
                if self._aec:
                    self._close_block()
                self._emit(rows, ts[i - 1])
                rows += 1
        self.rows_out += rows
        return self._out[:rows], self._ts_out[:rows]

    def _new_segment(self) -> None:
        k = self._k
        slot = self._seg_slot
        sums = (self._s_xx, self._s_xy, self._s_phase, self._s_im, self._s_absim)
        if self._spec_valid[slot]:  # the oldest segment leaves the window
            k.accumulate_segment(self._spec_ring[slot], self.pair_i, self.pair_j, -1.0, *sums)
        ok = k.segment_spectrum(self._ring, self._ring_bad, self._pos, self._basis, self._mean_scratch, self._spec_ring[slot])
        self._spec_valid[slot] = ok
        if ok:
            k.accumulate_segment(self._spec_ring[slot], self.pair_i, self.pair_j, 1.0, *sums)
        self._seg_slot = (slot + 1) % self.n_segments
        self._since_resum += 1
        if self._since_resum >= _RESUM_EVERY:
            self._resum()

    def _resum(self) -> None:
        sums = (self._s_xx, self._s_xy, self._s_phase, self._s_im, self._s_absim)
        self._k.zero_sums(*sums)
        for s in range(self.n_segments):
            if self._spec_valid[s]:
                self._k.accumulate_segment(self._spec_ring[s], self.pair_i, self.pair_j, 1.0, *sums)
        self._since_resum = 0

    def _close_block(self) -> None:
        k = self._k
        b = self._block
        k.add_scaled(self._roi_win, self._roi_blocks[b], 1.0)
        k.add_scaled(self._pair_win, self._pair_blocks[b], 1.0)
        self._n_aec += self._block_count[b, 0]
        # the next slot holds the block that now leaves the window
        nb = (b + 1) % len(self._block_count)
        k.add_scaled(self._roi_win, self._roi_blocks[nb], -1.0)
        k.add_scaled(self._pair_win, self._pair_blocks[nb], -1.0)
        self._n_aec -= self._block_count[nb, 0]
        self._roi_blocks[nb] = 0.0
        self._pair_blocks[nb] = 0.0
        self._block_count[nb] = 0
        self._block = nb

    def _emit(self, row: int, t: float) -> None:
        self._ts_out[row] = t
        if self._count < self.window:
            self._out[row] = np.nan
            return
        n_valid = int(self._spec_valid.sum()) if self._spectral else 0
        self._k.connectivity_output(self._measures, self._band_start, n_valid, self._s_xx, self._s_xy, self._s_phase, self._s_im,
                                    self._s_absim, self.pair_i, self.pair_j, self._n_aec, self._roi_win, self._pair_win,
                                    self._inv_rms, self._mean, self._inv_std, self._out, row)  # fmt: skip

    def reset(self) -> None:
        """Forget all windows and filter memory (after a gap in the input); rows are NaN until a window fills again."""
        self._ring[:] = 0.0
        self._ring_bad[:] = 1
        self._pos = self._seg_slot = self._block = self._count = self._since_resum = 0
        self._spec_valid[:] = 0
        self._k.zero_sums(self._s_xx, self._s_xy, self._s_phase, self._s_im, self._s_absim)
        for a in (self._zstate, self._roi_blocks, self._pair_blocks, self._block_count, self._roi_win, self._pair_win, self._n_aec):
            a[...] = 0

    # ---- baseline ----
    def set_baseline(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Z-score against this baseline from now on (shape (n_out,) each)."""
        if not self.spec.zscore:
            raise ConfigError("set_baseline needs [connectivity] zscore = true")
        self.baseline_mean, self.baseline_std = checked_baseline(mean, std, self.labels, "connectivity", "record a longer or real calibration")
        self._mean[:] = mean
        self._inv_std[:] = 1.0 / std

    def calibrate(self, roi_data: np.ndarray, *, discard_s: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Baseline mean and std per output over a calibration block (this stage's state untouched).

        Runs a fresh twin of this stage (without z-scoring) over ``roi_data`` (n_samples,
        n_roi), drops rows whose window started within ``discard_s`` of the start (the AEC
        filter settling), and installs the result if ``spec.zscore``.
        """
        import dataclasses

        roi_data = np.asarray(roi_data, dtype=np.float64)
        if roi_data.ndim != 2 or roi_data.shape[1] != len(self.roi_names):
            raise ConfigError(f"calibration ROI data have shape {roi_data.shape}, expected (n_samples, {len(self.roi_names)})")
        twin = ConnectivityStage(dataclasses.replace(self.spec, zscore=False), self.roi_names, self.sfreq, self.max_chunk)
        vals, _ = twin.run_offline(roi_data, np.arange(len(roi_data)) / self.sfreq)
        vals = vals[int(np.ceil((self.window / self.sfreq + discard_s) * self.rate_hz)) - 1 :]
        if len(vals) < _MIN_BASELINE_ROWS:
            raise ConfigError(
                f"the calibration block ({len(roi_data) / self.sfreq:.1f} s) leaves {len(vals)} connectivity rows; "
                f"record at least {(_MIN_BASELINE_ROWS + 1) / self.rate_hz + self.window / self.sfreq + discard_s:.1f} s"
            )
        mean, std = np.nanmean(vals, axis=0).astype(np.float64), np.nanstd(vals, axis=0).astype(np.float64)
        if self.spec.zscore:
            self.set_baseline(mean, std)
        return mean, std

    def run_offline(self, roi_data: np.ndarray, timestamps: np.ndarray, chunk: int | None = None, flags: np.ndarray | None = None):
        """Run a whole recording through :meth:`process` (tests, calibration); returns copies."""
        chunk = chunk or self.max_chunk
        vals, stamps = [], []
        for i in range(0, len(roi_data), chunk):
            m = min(chunk, len(roi_data) - i)
            f = None if flags is None else flags[i : i + m]
            v, t = self.process(roi_data[i : i + m], timestamps[i : i + m], m, f)
            vals.append(v.copy())
            stamps.append(t.copy())
        return (np.vstack(vals) if vals else np.zeros((0, self.n_out), np.float32)), (np.concatenate(stamps) if stamps else np.zeros(0))
