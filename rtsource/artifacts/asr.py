"""Artifact subspace reconstruction (ASR): offline calibration and per-chunk processing.

Our implementation of the published method: Mullen et al. 2015, "Real-time neuroimaging
and cognitive monitoring using wearable dry EEG", IEEE TBME 62(9):2553-2567; Kothe & Jung,
US patent application 2016/0113587 and the clean_rawdata description; cutoff from Chang
et al. 2020, "Evaluation of artifact subspace reconstruction for automatic artifact
components removal in multi-channel EEG recordings", IEEE TBME 67(4):1114-1121 (20-30
recommended; 20 here).

Calibration (:func:`calibrate_asr`) on rest data:

1. clean windows: 1 s windows (50 % overlap) whose channel RMS robust z-scores lie in
   [-3.5, 5] on all but ``max_bad_channels`` of the channels (clean_rawdata's
   clean_windows criterion, with median/MAD z-scores instead of a fitted distribution);
2. the spectral weighting filter (an order-8 IIR fitted to clean_rawdata's template:
   gain 3 below 2 Hz, 0.33 over 3-13 Hz, 1 over 16-40 Hz, 3 above 80 Hz, so that ocular
   and muscle power weighs more than the alpha rhythm; see :func:`spectral_filter`);
3. robust covariance: the geometric median (Weiszfeld) of the filtered windows'
   covariance matrices, Sigma; mixing matrix M = sqrtm(Sigma);
4. thresholds: the filtered clean data projected on the eigenvectors V of M, RMS in
   0.5 s windows, per component ``mean + cutoff * std`` (both estimated robustly from the
   lower half of the distribution); T = diag(thresholds) V^T.

Online (:class:`AsrProcessor`): the filtered running covariance over the last 0.5 s, its
eigendecomposition every ``update_every`` samples (at chunk ends), components with more
variance than ``||T v||^2`` dropped and reconstructed (:func:`._kernels.asr_update`), the
new matrix blended in over the chunk with a raised cosine. Look-ahead: by default 0.25 s,
half the window, as in the method: the output is that much behind the input, which counts
as latency. ``lookahead_s = 0`` is the fully causal variant (no added latency) but it
repairs an artifact only once it dominates the 0.5 s window: on the simulator it removes
a third of the blink power where the look-ahead removes 90 % (numbers in
tests/artifacts/test_asr_simulator.py and the report of issue 16).

The input must be high-passed (>= 0.5 Hz, as the stream's causal filters do): the
covariance is not mean-corrected, as in the method.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError

logger = logging.getLogger(__name__)

SCHEMA = 1
# clean_rawdata's spectral weighting template (frequency in Hz, amplitude)
_TEMPLATE_HZ = (0.0, 2.0, 3.0, 13.0, 16.0, 40.0, 80.0)
_TEMPLATE_GAIN = (3.0, 0.75, 0.33, 0.33, 1.0, 1.0, 3.0)


def _frozen(a) -> np.ndarray:
    a = np.array(a, dtype=float)
    a.flags.writeable = False
    return a


def spectral_filter(sfreq: float, order: int = 8, iterations: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """The ASR spectral weighting IIR filter ``(b, a)`` for a sampling rate.

    The magnitude template of clean_rawdata (3 at 0 Hz, 0.75 at 2 Hz, 0.33 over 3-13 Hz,
    1 over 16-40 Hz, 3 from 80 Hz up to Nyquist; linear in between) is made minimum-phase
    (folded real cepstrum; Oppenheim & Schafer, Discrete-Time Signal Processing, ch. 13)
    and fitted with a pole-zero filter of ``order`` by Steiglitz-McBride iterations
    (IEEE TAC 1965), weighted by 1/sqrt(f) so the low band counts; poles outside the unit
    circle are reflected inside. Within ~0.1 of the template's gain from 0.5 Hz up.

    Returns
    -------
    b, a : ndarray, shape (order + 1,)
    """
    nyq = sfreq / 2.0
    n_fft = 4096
    f = np.linspace(0.0, nyq, n_fft // 2 + 1)
    hz = [h for h in _TEMPLATE_HZ if h < nyq - 1.0]
    gain = list(_TEMPLATE_GAIN[: len(hz)])
    mag = np.interp(f, hz + [nyq], gain + [gain[-1]])
    ceps = np.fft.irfft(np.log(mag))
    fold = np.zeros_like(ceps)
    fold[0] = ceps[0]
    fold[1 : n_fft // 2] = 2 * ceps[1 : n_fft // 2]
    fold[n_fft // 2] = ceps[n_fft // 2]
    target = np.exp(np.fft.rfft(fold))
    e = np.exp(-1j * np.outer(np.pi * f / nyq, np.arange(order + 1)))
    weight = 1.0 / np.sqrt(np.maximum(f, 0.25))
    a = np.r_[1.0, np.zeros(order)]
    b = np.zeros(order + 1)
    for _ in range(iterations):
        # B(w) - H(w) A(w) = 0, linear in (b, a[1:]), prefiltered by 1 / A_previous
        d = weight / np.abs(e @ a)
        lhs = np.hstack([e, -target[:, None] * e[:, 1:]]) * d[:, None]
        rhs = target * d
        sol = np.linalg.lstsq(np.vstack([lhs.real, lhs.imag]), np.r_[rhs.real, rhs.imag], rcond=None)[0]
        b, a = sol[: order + 1], np.r_[1.0, sol[order + 1 :]]
        roots = np.roots(a)
        if np.any(np.abs(roots) >= 1.0):
            a = np.real(np.poly(np.where(np.abs(roots) >= 1.0, 1.0 / np.conj(roots), roots)))
    return b, a


@dataclass(frozen=True)
class AsrCalibration:
    """ASR calibration: data, not code (arrays, parameters and provenance).

    Attributes
    ----------
    ch_names : tuple of str
        Channels, in the order of the arrays.
    sfreq : float
        Sampling rate, Hz.
    mixing : ndarray, shape (n_ch, n_ch)
        M = sqrtm(Sigma), Sigma the robust covariance of the filtered calibration data
        (input unit squared).
    thresholds : ndarray, shape (n_ch, n_ch)
        T = diag(mean + cutoff * std of the component RMS, robust estimates) V^T.
    filter_b, filter_a : ndarray, shape (order + 1,)
        The spectral weighting filter.
    cutoff : float
        Threshold in standard deviations of the component RMS.
    window_s : float
        Window of the running covariance and of the threshold RMS, s.
    max_remove_fraction : float
        Largest fraction of components dropped at once.
    n_windows_used, n_windows_total : int
        Clean 1 s windows kept for the calibration, of all.
    provenance : str
        JSON text: where the data came from, when, the software version.
    """

    ch_names: tuple[str, ...]
    sfreq: float
    mixing: np.ndarray
    thresholds: np.ndarray
    filter_b: np.ndarray
    filter_a: np.ndarray
    cutoff: float = 20.0
    window_s: float = 0.5
    max_remove_fraction: float = 0.66
    n_windows_used: int = 0
    n_windows_total: int = 0
    provenance: str = "{}"

    def __post_init__(self):
        n = len(self.ch_names)
        for name in ("mixing", "thresholds", "filter_b", "filter_a"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        for name in ("mixing", "thresholds"):
            if getattr(self, name).shape != (n, n):
                raise ValueError(f"AsrCalibration.{name} has shape {getattr(self, name).shape}, expected ({n}, {n}) for {n} channels")
        if self.filter_a.shape != self.filter_b.shape or self.filter_a[0] != 1.0:
            raise ValueError(f"AsrCalibration filter: b {self.filter_b.shape} and a {self.filter_a.shape} need equal length and a[0] == 1")
        if not (np.all(np.isfinite(self.mixing)) and np.all(np.isfinite(self.thresholds))):
            raise ValueError("AsrCalibration arrays contain NaN or inf; recalibrate on finite data")
        object.__setattr__(self, "ch_names", tuple(self.ch_names))

    @property
    def covariance(self) -> np.ndarray:
        """Sigma = M M^T, shape (n_ch, n_ch)."""
        return self.mixing @ self.mixing.T

    def to_arrays(self) -> tuple[dict[str, np.ndarray], str]:
        """``(arrays, json_text)`` for a bundle: arrays by name and the rest as JSON."""
        arrays = {"mixing": np.array(self.mixing), "thresholds": np.array(self.thresholds), "filter_b": np.array(self.filter_b), "filter_a": np.array(self.filter_a)}
        meta = {
            "schema": SCHEMA, "ch_names": list(self.ch_names), "sfreq": self.sfreq, "cutoff": self.cutoff, "window_s": self.window_s,
            "max_remove_fraction": self.max_remove_fraction, "n_windows_used": self.n_windows_used,
            "n_windows_total": self.n_windows_total, "provenance": self.provenance,
        }  # fmt: skip
        return arrays, json.dumps(meta)

    @classmethod
    def from_arrays(cls, arrays: dict, json_text: str) -> "AsrCalibration":
        """Inverse of :meth:`to_arrays`; refuses a foreign schema or missing fields by name."""
        meta = json.loads(json_text)
        if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
            raise ValueError(f"ASR calibration schema {meta.get('schema') if isinstance(meta, dict) else meta!r} is not {SCHEMA}; recalibrate")
        missing = [k for k in ("mixing", "thresholds", "filter_b", "filter_a") if k not in arrays]
        if missing:
            raise ValueError(f"ASR calibration arrays lack {missing}; recalibrate")
        return cls(
            ch_names=tuple(str(c) for c in meta["ch_names"]), sfreq=float(meta["sfreq"]),
            mixing=arrays["mixing"], thresholds=arrays["thresholds"], filter_b=arrays["filter_b"], filter_a=arrays["filter_a"],
            cutoff=float(meta["cutoff"]), window_s=float(meta["window_s"]), max_remove_fraction=float(meta["max_remove_fraction"]),
            n_windows_used=int(meta["n_windows_used"]), n_windows_total=int(meta["n_windows_total"]), provenance=str(meta["provenance"]),
        )  # fmt: skip


def _sym_sqrt(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(0.5 * (a + a.T))
    return (v * np.sqrt(np.maximum(w, 0.0))) @ v.T


def restrict_calibration(cal: AsrCalibration, ch_names, scale=None) -> AsrCalibration:
    """The calibration on a subset of its channels, optionally in another unit.

    Exact for what ASR uses: the covariance ``Sigma`` restricted to the channels, and the
    thresholds as the quadratic form ``Q = T^T T`` (the threshold along a direction ``v``
    is ``v^T Q v``), restricted likewise; a channel dropped as bad is thus simply absent,
    as if the calibration had never seen it.

    Parameters
    ----------
    cal : AsrCalibration
    ch_names : sequence of str
        Channels to keep, in the order wanted (all must be in ``cal.ch_names``).
    scale : array_like, shape (len(ch_names),), optional
        Factor from the wanted unit to the calibration's (1e-6 for data in uV against a
        calibration in V): ``Sigma' = D^-1 Sigma D^-1``, ``Q' = D^-1 Q D^-1``, D = diag(scale).
    """
    names = tuple(ch_names)
    missing = [c for c in names if c not in cal.ch_names]
    if missing:
        raise ValueError(f"the ASR calibration has no channel(s) {missing[:8]}; recalibrate on the operator's channels (rtsource setup)")
    idx = np.array([cal.ch_names.index(c) for c in names], dtype=int)
    d = np.ones(len(idx)) if scale is None else 1.0 / np.asarray(scale, dtype=float)
    if d.shape != (len(idx),) or not np.all(np.isfinite(d)):
        raise ValueError(f"restrict_calibration scale has shape {np.shape(scale)}; pass one finite factor per channel ({len(idx)})")
    sigma = cal.covariance[np.ix_(idx, idx)] * np.outer(d, d)
    q = (cal.thresholds.T @ cal.thresholds)[np.ix_(idx, idx)] * np.outer(d, d)
    return AsrCalibration(
        names, cal.sfreq, _sym_sqrt(sigma), _sym_sqrt(q), cal.filter_b, cal.filter_a, cal.cutoff, cal.window_s, cal.max_remove_fraction,
        cal.n_windows_used, cal.n_windows_total, cal.provenance,
    )  # fmt: skip


def _windows(n_times: int, length: int, step: int) -> np.ndarray:
    return np.arange(0, n_times - length + 1, step)


def clean_windows(data: np.ndarray, sfreq: float, window_s: float = 1.0, max_bad_channels: float = 0.075, z_range=(-3.5, 5.0)) -> np.ndarray:
    """Start samples of the clean windows of ``data`` (n_times, n_ch).

    A window is clean when at most ``max_bad_channels`` of the channels have an RMS whose
    robust z-score (median and 1.4826 MAD over windows, per channel) leaves ``z_range``.
    """
    length = int(round(window_s * sfreq))
    starts = _windows(len(data), length, max(1, length // 2))
    rms = np.array([np.sqrt(np.mean(data[s : s + length] ** 2, axis=0)) for s in starts])
    med = np.median(rms, axis=0)
    mad = 1.4826 * np.median(np.abs(rms - med), axis=0)
    z = (rms - med) / np.maximum(mad, 1e-30)
    bad = (z < z_range[0]) | (z > z_range[1])
    return starts[bad.mean(axis=1) <= max_bad_channels]


def _geometric_median(points: np.ndarray, iters: int = 500, tol: float = 1e-10) -> np.ndarray:
    """Weiszfeld's algorithm (1937) over rows of ``points``."""
    y = np.median(points, axis=0)
    scale = np.linalg.norm(y) + 1e-300
    for _ in range(iters):
        d = np.linalg.norm(points - y, axis=1)
        w = 1.0 / np.maximum(d, 1e-12 * scale)
        y_new = (w[:, None] * points).sum(axis=0) / w.sum()
        if np.linalg.norm(y_new - y) <= tol * scale:
            return y_new
        y = y_new
    return y


def calibrate_asr(
    data, sfreq: float, ch_names, cutoff: float = 20.0, window_s: float = 0.5, max_bad_channels: float = 0.075,
    max_remove_fraction: float = 0.66, source: str = "", projector=None, band_hz: float | None = None,
) -> AsrCalibration:  # fmt: skip
    """Calibrate ASR on rest data.

    Parameters
    ----------
    data : array_like, shape (n_times, n_ch)
        High-passed rest data (any unit, the same the processor will see), at least 15
        clean seconds (a minute is better).
    sfreq : float
        Sampling rate, Hz.
    ch_names : sequence of str
        Channel names, in column order.
    cutoff : float
        Threshold in standard deviations of the component RMS (Chang et al. 2020: 20-30).
    window_s : float
        Sliding window of the running covariance, s (0.5 in the method).
    max_bad_channels : float
        Fraction of channels allowed outside the z-range in a clean window.
    max_remove_fraction : float
        Most components dropped at once, as a fraction of the channels.
    source : str
        Provenance: where the data came from (a file, "setup rest recording", ...).
    projector : ndarray, shape (n_ch, n_ch), optional
        A spatial projector ``Q`` (idempotent, possibly oblique: the artifact projection
        times the reference, ``(I - U U^T) M``) that the processor's input has been through:
        ASR then runs in the subspace the projection leaves (see :func:`_in_subspace`).
        The data are projected here too (a no-op if they already are).
    band_hz : float, optional
        The muscle variant: ASR decides on the data high-passed at ``band_hz`` (4th-order
        Butterworth instead of the spectral weighting filter), where EMG (20-300 Hz,
        Goncharova et al. 2003, Clin Neurophysiol 114:1580) stands far above the EEG, and
        the thresholds are set there; the reconstruction uses the covariance of the
        unfiltered (high-passed) data, so a dropped muscle component is rebuilt with the
        brain signal the other components predict in every band (the conditional mean
        under the calibration covariance, as ASR's reconstruction is).

    Returns
    -------
    AsrCalibration
    """
    import datetime

    from scipy.signal import lfilter

    from .. import __version__

    x = np.asarray(data, dtype=float)
    ch_names = tuple(ch_names)
    if x.ndim != 2 or x.shape[1] != len(ch_names):
        raise ValueError(f"calibrate_asr data has shape {x.shape}; expected (n_times, {len(ch_names)}) for the {len(ch_names)} ch_names")
    if not np.all(np.isfinite(x)):
        raise ValueError("calibrate_asr data contains NaN or inf; interpolate or drop those samples first")
    if not 0 < sfreq:
        raise ValueError(f"calibrate_asr sfreq = {sfreq!r}; pass the sampling rate in Hz")
    if not 1.0 <= cutoff <= 100.0:
        raise ConfigError(f"calibrate_asr cutoff = {cutoff!r}; use 20-30 standard deviations (Chang et al. 2020)")
    q = None
    if projector is not None:
        q = np.asarray(projector, dtype=float)
        if q.shape != (x.shape[1],) * 2 or not np.all(np.isfinite(q)) or np.abs(q @ q - q).max() > 1e-6 * max(1.0, np.abs(q).max()):
            raise ValueError(f"calibrate_asr projector has shape {q.shape}; pass a finite idempotent ({x.shape[1]}, {x.shape[1]}) projector, or None")
        x = x @ q.T
    if band_hz is None:
        b, a = spectral_filter(sfreq)
    else:
        if not 0.0 < band_hz < 0.45 * sfreq:
            raise ConfigError(f"calibrate_asr band_hz = {band_hz!r}; pass a frequency below {0.45 * sfreq:g} Hz (0.45 x sfreq)")
        from scipy.signal import butter

        b, a = butter(4, band_hz, "highpass", fs=sfreq)
    one_s = int(round(sfreq))
    starts = clean_windows(x, sfreq, 1.0, max_bad_channels)
    n_total = len(_windows(len(x), one_s, max(1, one_s // 2)))
    if len(starts) < 15:
        raise ValueError(
            f"calibrate_asr found {len(starts)} clean 1 s windows of {n_total} ({len(x) / sfreq:.1f} s of data); "
            "record at least a minute of rest, or raise max_bad_channels"
        )
    # filter the whole recording once (no start transient inside the windows after 1 s)
    xf = lfilter(b, a, x, axis=0)
    starts = starts[starts >= one_s] if np.count_nonzero(starts >= one_s) >= 15 else starts
    n_ch = x.shape[1]

    def robust_cov(y):
        covs = np.array([y[s : s + one_s].T @ y[s : s + one_s] / one_s for s in starts])
        sigma = _geometric_median(covs.reshape(len(starts), -1)).reshape(n_ch, n_ch)
        sigma = 0.5 * (sigma + sigma.T)
        return _in_subspace(sigma, q) if q is not None else (*np.linalg.eigh(sigma), 0)

    evals, evecs, n_null = robust_cov(xf)
    if evals[n_null] <= evals[-1] * 1e-12:
        raise ValueError(
            f"calibrate_asr: the covariance is rank deficient (smallest/largest eigenvalue {evals[n_null] / evals[-1]:.1e}); "
            "drop flat or duplicate channels (an average reference costs one rank: drop one channel)"
        )
    if band_hz is None:
        mixing = (evecs * np.sqrt(evals)) @ evecs.T
    else:  # thresholds along the high band's components, reconstruction through the full band
        w_full, v_full, _ = robust_cov(x)
        mixing = (v_full * np.sqrt(np.maximum(w_full, 0.0))) @ v_full.T
    # thresholds: component RMS in non-overlapping windows of the clean seconds
    wlen = int(round(window_s * sfreq))
    comp = [xf[s : s + one_s] @ evecs for s in starts]
    rms = np.array([np.sqrt(np.mean(c[k : k + wlen] ** 2, axis=0)) for c in comp for k in range(0, one_s - wlen + 1, wlen)])
    # mean and std estimated robustly from the lower half of the RMS distribution (median,
    # and median minus the 15.87th percentile, one std of a normal): equal to them on clean
    # data, but windows with an artifact's edge, which only add to the upper tail, cannot
    # inflate them (clean_rawdata fits a distribution to the lower part for the same reason)
    med = np.median(rms, axis=0)
    thr = med + cutoff * (med - np.percentile(rms, 15.87, axis=0))
    if n_null:  # no data ever lie there: a threshold nothing reaches keeps those directions
        thr[:n_null] = 1e3 * thr[n_null:].max()
    thresholds = thr[:, None] * evecs.T
    prov = json.dumps({"source": source, "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                       "software": f"rtsource {__version__}", "seconds": round(len(x) / sfreq, 3),
                       "band_hz": band_hz, "projected": q is not None})  # fmt: skip
    logger.info("ASR calibrated on %d of %d clean 1 s windows, cutoff %g", len(starts), n_total, cutoff)
    return AsrCalibration(ch_names, float(sfreq), mixing, thresholds, b, a, float(cutoff), float(window_s), float(max_remove_fraction), len(starts), n_total, prov)


def _in_subspace(sigma: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Eigen-pairs of a covariance of data projected by ``q``, made full rank.

    The data span ``range(q)`` (an orthonormal basis B); the covariance is rank deficient.
    Its complement ``B_perp`` gets a variance ``s`` (the median in-range eigenvalue), so
    ``Sigma' = B B^T Sigma B B^T + s B_perp B_perp^T`` is block-diagonal: ASR's
    reconstruction ``Sigma' V_k (V_k^T Sigma' V_k)^-1 V_k^T`` (Mullen et al. 2015) then maps
    data in ``range(q)`` into ``range(q)`` and never back into the projected-out artifact
    directions, and with the complement's thresholds out of reach it is never dropped.

    Returns
    -------
    evals : ndarray, shape (n_ch,)
        The complement's first (``n_null`` of them), then the in-range ones ascending.
    evecs : ndarray, shape (n_ch, n_ch)
        Orthonormal columns in the same order.
    n_null : int
        Dimension of the complement.
    """
    u, s, _ = np.linalg.svd(q)
    rank = int(np.count_nonzero(s > 1e-6 * s[0]))
    basis, perp = u[:, :rank], u[:, rank:]
    w, v = np.linalg.eigh(basis.T @ sigma @ basis)
    fill = float(np.median(w))
    evecs = np.hstack([perp, basis @ v])
    evals = np.r_[np.full(perp.shape[1], fill), w]
    return evals, evecs, perp.shape[1]


@dataclass(frozen=True)
class AsrEpisode:
    """A run of repaired output samples: first sample index and length (samples)."""

    start: int
    duration: int


@dataclass(frozen=True)
class AsrStats:
    """Telemetry snapshot of an :class:`AsrProcessor` (counts since it started)."""

    samples_in: int
    samples_out: int
    samples_repaired: int
    channel_samples_repaired: int
    n_channels: int
    updates: int
    episodes: tuple[AsrEpisode, ...] = field(default=())

    @property
    def fraction_samples_repaired(self) -> float:
        return self.samples_repaired / self.samples_out if self.samples_out else 0.0

    @property
    def fraction_channels_repaired(self) -> float:
        """Mean fraction of channels changed, over the repaired samples."""
        return self.channel_samples_repaired / (self.samples_repaired * self.n_channels) if self.samples_repaired else 0.0


class AsrProcessor:
    """Causal ASR, one chunk at a time, on preallocated state.

    Parameters
    ----------
    calibration : AsrCalibration
    max_chunk : int
        Largest chunk :meth:`process` accepts (samples).
    lookahead_s : float
        Look-ahead, s (0.25 in the method; 0: fully causal). The output lags the input by
        ``round(lookahead_s * sfreq)`` samples (:attr:`delay_samples`); the first ones are 0.
    update_every : int
        Samples between eigendecompositions (done at the end of the chunk that reaches it;
        clean_rawdata updates every 32 samples).
    max_episodes : int
        Most recent repair episodes kept for telemetry.
    """

    def __init__(self, calibration: AsrCalibration, max_chunk: int, lookahead_s: float = 0.25, update_every: int = 32, max_episodes: int = 1000):
        from . import _kernels as k

        if not isinstance(calibration, AsrCalibration):
            raise TypeError(f"AsrProcessor calibration is {type(calibration).__name__}; pass an AsrCalibration (calibrate_asr)")
        if int(max_chunk) < 1:
            raise ValueError(f"AsrProcessor max_chunk = {max_chunk!r}; pass the largest chunk in samples (>= 1)")
        if not 0.0 <= lookahead_s <= 1.0:
            raise ValueError(f"AsrProcessor lookahead_s = {lookahead_s!r}; use 0 (causal) to 1 s (0.25 s in clean_rawdata)")
        if int(update_every) < 1:
            raise ValueError(f"AsrProcessor update_every = {update_every!r}; pass >= 1 samples")
        self._k = k
        cal = calibration
        self.calibration = cal
        self.max_chunk = int(max_chunk)
        self.update_every = int(update_every)
        n = len(cal.ch_names)
        self.n_channels = n
        self.delay_samples = int(round(lookahead_s * cal.sfreq))
        self._b = np.ascontiguousarray(cal.filter_b)
        self._a = np.ascontiguousarray(cal.filter_a)
        self._zi = np.zeros((len(self._a) - 1, n))
        self._win = np.zeros((max(1, int(round(cal.window_s * cal.sfreq))), n))
        self._cov_sum = np.zeros((n, n))
        self._delay = np.zeros((self.delay_samples, n))
        self._xd = np.zeros((self.max_chunk, n))
        self._state = np.zeros(k.N_STATE, dtype=np.int64)
        self._thresholds = np.ascontiguousarray(cal.thresholds)
        self._sigma = np.ascontiguousarray(cal.covariance)
        self._max_remove = int(np.floor(cal.max_remove_fraction * n))
        self._work = [np.zeros((n, n)) for _ in range(5)]
        self._r = [np.eye(n), np.eye(n)]  # current, next (swapped after an update)
        self._identity = [True, True]
        self._changed_rows = 0  # rows of the current R that differ from the identity
        self._since_update = 0
        self.samples_in = 0
        self.samples_out = 0
        self.samples_repaired = 0
        self.channel_samples_repaired = 0
        self.updates = 0
        self.last_removed = 0
        self._episodes: deque[AsrEpisode] = deque(maxlen=int(max_episodes))
        self._episode_start = -1

    @property
    def latency_s(self) -> float:
        """Delay the processor adds, s."""
        return self.delay_samples / self.calibration.sfreq

    def process(self, chunk_in: np.ndarray, out: np.ndarray) -> int:
        """Repair a chunk into ``out``; returns the number of samples written (= chunk length).

        Parameters
        ----------
        chunk_in : ndarray, shape (n, n_ch), float64
            High-passed samples in the calibration's unit and channel order; n <= max_chunk.
        out : ndarray, shape (>= n, n_ch), float64, C-contiguous
            Output, ``delay_samples`` behind the input.
        """
        k = self._k
        x = chunk_in
        if not isinstance(x, np.ndarray) or x.ndim != 2 or x.shape[1] != self.n_channels or x.dtype != np.float64:
            raise ValueError(
                f"AsrProcessor.process chunk_in is {getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}; "
                f"pass float64 (n, {self.n_channels}) in the calibration's channel order"
            )
        n = x.shape[0]
        if n > self.max_chunk:
            raise ValueError(f"AsrProcessor.process chunk of {n} samples > max_chunk {self.max_chunk}; split it or raise max_chunk")
        if out.ndim != 2 or out.shape[0] < n or out.shape[1] != self.n_channels or out.dtype != np.float64 or not out.flags.c_contiguous:
            raise ValueError(f"AsrProcessor.process out is {out.dtype} {out.shape}; pass C-contiguous float64 (>= {n}, {self.n_channels})")
        if n == 0:
            return 0
        if not np.isfinite(x).all():
            raise ValueError("AsrProcessor.process chunk_in contains NaN or inf; repair or drop the samples before ASR")
        k.asr_ingest(x, n, self._b, self._a, self._zi, self._win, self._cov_sum, self._delay, self._xd, self._state)
        self.samples_in += n
        self._since_update += n
        cur = 0
        if self._since_update >= self.update_every:
            w = self._work
            removed = k.asr_update(self._cov_sum, int(self._state[k.WIN_FILL]), self._thresholds, self._sigma, self._max_remove, w[0], w[1], w[2], w[3], w[4], self._r[1])
            self._identity[1] = removed == 0
            k.asr_reconstruct(self._xd, n, self._r[0], self._r[1], self._identity[0], self._identity[1], True, out)
            self._r.reverse()
            self._identity.reverse()
            self._since_update = 0
            self.updates += 1
            self.last_removed = removed
            self._changed_rows = 0 if removed == 0 else int(np.count_nonzero(np.abs(self._r[0] - np.eye(self.n_channels)).max(axis=1) > 1e-6))
            repaired = removed > 0 or not self._identity[1]  # the blend still carries the old matrix
        else:
            k.asr_reconstruct(self._xd, n, self._r[cur], self._r[cur], self._identity[cur], self._identity[cur], False, out)
            repaired = not self._identity[cur]
        self._count(n, repaired)
        return n

    def _count(self, n: int, repaired: bool) -> None:
        first = self.samples_out
        self.samples_out += n
        if repaired:
            self.samples_repaired += n
            self.channel_samples_repaired += n * max(self._changed_rows, 1)
            if self._episode_start < 0:
                self._episode_start = first
        elif self._episode_start >= 0:
            self._episodes.append(AsrEpisode(self._episode_start, first - self._episode_start))
            self._episode_start = -1

    def adopt(self, other: "AsrProcessor") -> None:
        """Carry on ``other``'s stream state (filter, window, look-ahead, counters) on the
        channels both have, so a swap (a bad channel dropped, a recalibration) neither
        steps the output nor restarts the look-ahead. The reconstruction restarts at the
        identity and is recomputed at the next update."""
        if other.delay_samples != self.delay_samples or other._win.shape[0] != self._win.shape[0]:
            raise ValueError("AsrProcessor.adopt: the processors differ in look-ahead or window; use the same [artifacts] settings")
        theirs = {c: j for j, c in enumerate(other.calibration.ch_names)}
        mine = [i for i, c in enumerate(self.calibration.ch_names) if c in theirs]
        src = [theirs[self.calibration.ch_names[i]] for i in mine]
        if len(self._zi) == len(other._zi):
            self._zi[:, mine] = other._zi[:, src]
        self._win[:, mine] = other._win[:, src]
        self._delay[:, mine] = other._delay[:, src]
        full = np.triu(other._cov_sum) + np.triu(other._cov_sum, 1).T  # the kernels keep the upper triangle
        self._cov_sum[np.ix_(mine, mine)] = full[np.ix_(src, src)]
        self._state[:] = other._state
        self._since_update = other._since_update
        for name in ("samples_in", "samples_out", "samples_repaired", "channel_samples_repaired", "updates"):
            setattr(self, name, getattr(other, name))
        self._episodes = other._episodes
        self._episode_start = other._episode_start

    def stats(self) -> AsrStats:
        """Counters since the start; an open episode is reported up to now."""
        eps = tuple(self._episodes)
        if self._episode_start >= 0:
            eps += (AsrEpisode(self._episode_start, self.samples_out - self._episode_start),)
        return AsrStats(self.samples_in, self.samples_out, self.samples_repaired, self.channel_samples_repaired, self.n_channels, self.updates, eps)
