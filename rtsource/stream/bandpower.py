"""Band-power feedback: per ROI and band, a causal envelope at a reduced rate (``NAME-bandpower``).

    ROI chunk (n, n_roi) ─┬─> band "alpha": causal band-pass (state kept) ─> envelope ─> [smoothing] ─┐
                          └─> band "beta":  ...                                                        ─┴─> every step-th sample
                                                                                                       ─> [z-score] ─> (k, n_roi x n_bands)

Envelope methods (:attr:`BandPowerSpec.envelope`), all causal and allocation-free:

``analytic`` (default)
    A complex band-pass (a Butterworth low-pass of half the band width, frequency-shifted
    to the band centre; :meth:`BandPowerSpec.design_analytic`) gives the analytic signal
    ``y`` of the band directly; ``2 |y|^2`` is the mean square and ``2 |y|`` the amplitude.
    It has no ripple at twice the oscillation frequency, so it needs no smoothing and the
    envelope's delay is the filter's alone.
``square``
    Real Butterworth band-pass (second-order sections, :func:`rtsource.stream._kernels.sos_filter`),
    then ``x^2`` smoothed; amplitude ``sqrt(2 v)``.
``rectify``
    The same band-pass, then ``|x|`` smoothed; amplitude ``pi/2 v``.

``square`` and ``rectify`` leave a ripple at ``2 f`` (20 Hz for alpha) that the smoother
must remove before decimation, or it aliases (at a 20 Hz output rate a 10.0 Hz rhythm's
ripple aliases to DC, a 10.3 Hz one's to a 0.6 Hz wobble), and the smoothing adds its
delay. Measured on the acceptance scenario (the simulator's default 10 Hz source, modulated
at 0.2 Hz, 60 s, 64 channels, dSPM on the template, ``mean_flip`` ROI of 15 mm; r = peak
correlation with the true envelope, lag = its position; 2nd-order prototype unless noted):

=========================  =================  =================
envelope, smoothing        10.0 Hz: r / lag   10.3 Hz: r / lag
=========================  =================  =================
analytic, none             0.985 / 118 ms     0.986 / 110 ms
analytic, none, order 1    0.974 /  92 ms     0.965 /  70 ms
analytic, 25 ms            0.986 / 140 ms     0.987 / 132 ms
square, 25 ms              0.986 / 146 ms     0.969 / 132 ms
square, 50 ms              0.988 / 166 ms     0.986 / 156 ms
rectify, 25 ms             0.985 / 144 ms     0.957 / 132 ms
rectify, 50 ms             0.988 / 166 ms     0.984 / 156 ms
=========================  =================  =================

(20 Hz output; at 50 Hz output ``square``/``rectify`` with 25 ms drop to r = 0.97 / 0.96 at
10.0 Hz while ``analytic`` is unchanged. The 10.0 Hz column for the default and three
real-filter settings is printed by ``pytest -s
tests/stream/test_bandpower.py::test_alpha_envelope_tracks_simulated_source``.) ``analytic`` without smoothing has the best
lag for the same correlation, so it is the default; the squared envelope beats rectification
at equal smoothing (one ripple tone instead of all even harmonics) and is the better of
the two real-filter methods.

Smoothing (optional, ``smoothing_s > 0``): ``smoothing_stages`` cascaded one-pole
low-passes, each with time constant ``smoothing_s / smoothing_stages``, so its low-frequency
delay is ``smoothing_s`` whatever the number of stages; two stages (critically damped, no
overshoot) suppress ripple better than one at the same delay.

The output is decimated to :attr:`BandPowerSpec.rate_hz` by keeping every
``step = round(sfreq / rate_hz)``-th envelope sample; each output sample carries the
timestamp of the input sample it was taken at.

Optional z-scoring against a baseline: ``(value - mean) / std`` with the mean and standard
deviation of the decimated values over a calibration recording (:meth:`BandPowerStage.calibrate`)
or over the first ``baseline_s`` seconds of the stream (NaN is published until then).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

import numpy as np

from ..channel_names import check_roi_name
from ..errors import ConfigError, StreamError
from ._checks import check_chunk, check_max_chunk

logger = logging.getLogger(__name__)

ENVELOPES = ("analytic", "square", "rectify")
QUANTITIES = ("amplitude", "power")

# A baseline shorter than this many output samples gives a meaningless std.
_MIN_BASELINE_OUTPUTS = 10


@dataclass(frozen=True)
class Band:
    """A frequency band: name (channel label suffix) and edges in Hz."""

    name: str
    low_hz: float
    high_hz: float

    def __post_init__(self) -> None:
        check_roi_name(self.name, "band name")
        if not (np.isfinite(self.low_hz) and np.isfinite(self.high_hz) and 0 < self.low_hz < self.high_hz):
            raise ConfigError(f"band {self.name!r} = [{self.low_hz}, {self.high_hz}] Hz must satisfy 0 < low < high")


@dataclass(frozen=True)
class BandPowerSpec:
    """What the band-power stage computes.

    Attributes
    ----------
    bands : tuple of Band
    rate_hz : float
        Output rate (Hz); the actual rate is ``sfreq / round(sfreq / rate_hz)``.
    smoothing_s : float
        Total time constant of the envelope smoother (s): its low-frequency delay. 0: no
        smoothing (the default, right for ``analytic``; use 0.05 s or more with ``square``).
    smoothing_stages : int
        Number of cascaded one-pole low-passes (1-4).
    envelope : str
        ``analytic``, ``square`` or ``rectify`` (module docstring).
    quantity : str
        ``amplitude`` (ROI unit) or ``power`` (ROI unit squared).
    zscore : bool
        Publish ``(value - baseline mean) / baseline std``.
    baseline_s : float
        With ``zscore`` and no calibration: the first ``baseline_s`` seconds of the stream
        are the baseline (outputs are NaN until it is complete).
    filter_order : int
        Butterworth order of the low-pass prototype. The real band-pass has twice as many
        poles, the complex one as many. Higher: sharper band edges, longer delay.
    """

    bands: tuple[Band, ...] = field(default_factory=lambda: (Band("alpha", 8.0, 12.0),))
    rate_hz: float = 20.0
    smoothing_s: float = 0.0
    smoothing_stages: int = 2
    envelope: str = "analytic"
    quantity: str = "amplitude"
    zscore: bool = False
    baseline_s: float = 30.0
    filter_order: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "bands", tuple(self.bands))
        if not self.bands:
            raise ConfigError("[bandpower] bands is empty; give at least one band, e.g. bands = {alpha = [8, 12]}")
        names = [b.name for b in self.bands]
        if len(set(names)) != len(names):
            raise ConfigError(f"[bandpower] band names repeat: {names}")
        if not (np.isfinite(self.rate_hz) and self.rate_hz > 0):
            raise ConfigError(f"[bandpower] rate_hz = {self.rate_hz!r} must be > 0")
        if not (np.isfinite(self.smoothing_s) and self.smoothing_s >= 0):
            raise ConfigError(f"[bandpower] smoothing_s = {self.smoothing_s!r} must be >= 0 s (0: no smoothing)")
        if not 1 <= self.smoothing_stages <= 4:
            raise ConfigError(f"[bandpower] smoothing_stages = {self.smoothing_stages!r} must be in 1..4")
        if self.envelope not in ENVELOPES:
            raise ConfigError(f"[bandpower] envelope = {self.envelope!r} must be one of {', '.join(ENVELOPES)}")
        if self.quantity not in QUANTITIES:
            raise ConfigError(f"[bandpower] quantity = {self.quantity!r} must be one of {', '.join(QUANTITIES)}")
        if not (np.isfinite(self.baseline_s) and self.baseline_s >= 0):
            raise ConfigError(f"[bandpower] baseline_s = {self.baseline_s!r} must be >= 0 s")
        if not 1 <= self.filter_order <= 8:
            raise ConfigError(f"[bandpower] filter_order = {self.filter_order!r} must be in 1..8")

    @classmethod
    def from_mapping(cls, bands: dict, **kwargs) -> "BandPowerSpec":
        """From a TOML-like ``{name: [low, high]}`` mapping (config: ``bands = {alpha = [8, 12]}``)."""
        out = []
        for name, edges in bands.items():
            try:
                lo, hi = (float(e) for e in edges)
            except (TypeError, ValueError):
                raise ConfigError(f"[bandpower] bands.{name} = {edges!r} must be [low_hz, high_hz]") from None
            out.append(Band(str(name), lo, hi))
        return cls(bands=tuple(out), **kwargs)

    def _check_nyquist(self, sfreq: float) -> None:
        nyq = sfreq / 2
        for b in self.bands:
            if b.high_hz >= nyq:
                raise ConfigError(f"[bandpower] band {b.name!r} upper edge {b.high_hz:g} Hz must be below the Nyquist frequency {nyq:g} Hz")

    def design(self, sfreq: float) -> list[np.ndarray]:
        """Real band-pass second-order sections per band, each of shape (filter_order, 6)."""
        from .filter_design import butter_sos

        self._check_nyquist(sfreq)
        return [np.ascontiguousarray(butter_sos(self.filter_order, [b.low_hz, b.high_hz], "bandpass", sfreq), dtype=np.float64)
                for b in self.bands]  # fmt: skip

    def design_analytic(self, sfreq: float) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Complex band-pass per band: first-order sections ``(b0, b1, a1)``, each (filter_order,).

        A digital Butterworth low-pass of order ``filter_order`` and cutoff half the band
        width, with its poles and zeros rotated by ``exp(i 2 pi f_c / sfreq)`` to the band
        centre ``f_c``: a frequency shift of the low-pass, so it passes ``[low, high]`` of
        the positive frequencies only and its output is an analytic signal whose magnitude
        is the envelope without the ``2 f`` ripple of a real band-pass (the analytic signal of
        a band-limited sequence; Oppenheim & Schafer, *Discrete-Time Signal Processing*, 3rd
        ed., ch. 12). Gain exactly 1 at ``f_c``.
        """
        from .filter_design import butter_zpk

        self._check_nyquist(sfreq)
        out = []
        for b in self.bands:
            z, p, k = butter_zpk(self.filter_order, (b.high_hz - b.low_hz) / 2, "lowpass", sfreq)
            rot = np.exp(2j * np.pi * (b.low_hz + b.high_hz) / 2 / sfreq)
            zr, pr = z * rot, p * rot
            g = np.full(len(pr), complex(abs(k) ** (1.0 / len(pr))))
            b0, b1, a1 = g.copy(), -g * zr, -pr
            # normalise the gain at the centre frequency to exactly 1
            e = np.exp(-2j * np.pi * (b.low_hz + b.high_hz) / 2 / sfreq)
            h = np.prod((b0 + b1 * e) / (1 + a1 * e))
            b0, b1 = b0 / abs(h) ** (1.0 / len(pr)), b1 / abs(h) ** (1.0 / len(pr))
            out.append(tuple(np.ascontiguousarray(v, dtype=np.complex128) for v in (b0, b1, a1)))
        return out


class BandPowerStage:
    """Band power of ROI time courses, chunk by chunk, at a reduced rate.

    Parameters
    ----------
    spec : BandPowerSpec
    roi_names : sequence of str
        The ROI stage's channels (input columns).
    sfreq : float
        Input rate (Hz).
    max_chunk : int
        Largest input chunk.
    unit : str
        Unit of the ROI values ("" for dimensionless).

    Notes
    -----
    Output channel ``r * n_bands + b`` is ROI ``r``, band ``b``, labelled ``<roi>_<band>``.
    """

    def __init__(self, spec: BandPowerSpec, roi_names, sfreq: float, max_chunk: int, *, unit: str = ""):
        from . import _bandpower_kernels, _kernels

        self._sos_filter = _kernels.sos_filter
        self._k = _bandpower_kernels
        self.spec = spec
        self.roi_names = tuple(roi_names)
        for r in self.roi_names:
            check_roi_name(r)
        self.sfreq = float(sfreq)
        self.max_chunk = check_max_chunk(max_chunk, "BandPowerStage")
        self.unit = unit
        n_roi, n_bands = len(self.roi_names), len(spec.bands)
        if n_roi == 0:
            raise ConfigError("band power needs at least one ROI")
        self.n_bands = n_bands
        self.n_out = n_roi * n_bands
        self.step = max(1, int(round(self.sfreq / spec.rate_hz)))
        self.rate_hz = self.sfreq / self.step
        if abs(self.rate_hz - spec.rate_hz) > 1e-6 * spec.rate_hz:
            logger.info("band power at %.4g Hz (every %d-th sample of %g Hz; %g Hz requested)", self.rate_hz, self.step, self.sfreq, spec.rate_hz)
        self._analytic = spec.envelope == "analytic"
        if self._analytic:
            self._csec = spec.design_analytic(self.sfreq)
            self._filt_state = [np.zeros((len(c[0]), n_roi), dtype=np.complex128) for c in self._csec]
            self._sos = []
        else:
            self._sos = spec.design(self.sfreq)
            self._filt_state = [np.zeros((len(s), n_roi, 2)) for s in self._sos]
        self._kind = {"square": 0, "rectify": 1, "analytic": 2}[spec.envelope]
        n_stages = spec.smoothing_stages if spec.smoothing_s > 0 else 0
        tau_stage = spec.smoothing_s / max(n_stages, 1)
        self.alpha = float(1.0 - np.exp(-1.0 / (tau_stage * self.sfreq))) if n_stages else 1.0
        self._env_state = np.zeros((n_stages, self.n_out))
        self._last = np.full(self.n_out, np.nan)
        self._buf = np.zeros((self.max_chunk, n_roi))
        self._bad_rows = np.zeros(self.max_chunk, dtype=np.uint8)
        self._env = np.zeros((self.max_chunk, self.n_out))
        max_rows = self.max_chunk // self.step + 1
        self._out = np.zeros((max_rows, self.n_out), dtype=np.float32)
        self._ts_out = np.zeros(max_rows)
        self._phase = np.zeros(1, dtype=np.int64)
        self._rectify = spec.envelope == "rectify"
        self._power = spec.quantity == "power"
        self._mean = np.zeros(self.n_out)
        self._inv_std = np.ones(self.n_out)
        self._zero = np.zeros(self.n_out)
        self._one = np.ones(self.n_out)
        # online baseline (z-score without calibration): running sums of value, value^2
        self._base_sums = np.zeros((2, self.n_out))
        self._base_count = 0
        self._base_needed = int(round(spec.baseline_s * self.rate_hz)) if spec.zscore else 0
        self.baseline_ready = not spec.zscore
        if spec.zscore and self._base_needed < _MIN_BASELINE_OUTPUTS:
            raise ConfigError(
                f"[bandpower] baseline_s = {spec.baseline_s:g} s gives {self._base_needed} baseline values at {self.rate_hz:g} Hz; "
                f"use at least {_MIN_BASELINE_OUTPUTS / self.rate_hz:g} s (30 s or more is usual)"
            )
        self.baseline_mean = np.full(self.n_out, np.nan)
        self.baseline_std = np.full(self.n_out, np.nan)

    # ---- description ----
    @property
    def labels(self) -> tuple[str, ...]:
        """Channel labels ``<roi>_<band>``, ROI-major."""
        return tuple(f"{r}_{b.name}" for r in self.roi_names for b in self.spec.bands)

    @property
    def output_unit(self) -> str:
        if self.spec.zscore:
            return "z"
        u = self.unit or "dimensionless"
        if self.spec.quantity == "power":
            return u + "^2" if self.unit else "dimensionless"
        return u

    @property
    def max_rows(self) -> int:
        """Most output rows one :meth:`process` call can return."""
        return len(self._ts_out)

    # ---- processing ----
    def process(self, roi: np.ndarray, ts: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Feed ``n`` ROI samples; return the band-power samples that fall due.

        Parameters
        ----------
        roi : ndarray, shape (>= n, n_roi)
            ROI values (the ROI stage's output). Rows with a non-finite value (a NaN input
            sample) are skipped by the filters and smoother, whose state stays finite.
        ts : ndarray of float64, shape (>= n,)
            The input samples' timestamps.
        n : int
            1 <= n <= max_chunk.

        Returns
        -------
        values : ndarray of float32, shape (k, n_roi * n_bands)
        timestamps : ndarray of float64, shape (k,)
            Views into the stage's buffers (valid until the next call); k may be 0.
        """
        k = self._k
        check_chunk("band-power stage", roi, n, self.max_chunk, len(self.roi_names))
        if not isinstance(ts, np.ndarray) or ts.ndim != 1 or len(ts) < n:
            raise StreamError(f"band-power stage: timestamps of shape {getattr(ts, 'shape', None)} for {n} rows; pass one float64 timestamp per row")
        for b in range(self.n_bands):
            k.copy_columns(roi, n, self._buf, self._bad_rows)
            if self._analytic:
                b0, b1, a1 = self._csec[b]
                k.analytic_power(self._buf, n, self._bad_rows, b0, b1, a1, self._filt_state[b])
            else:
                self._sos_filter(self._buf, n, self._sos[b], self._filt_state[b], self._bad_rows)
            k.envelope(self._buf, n, self._bad_rows, b, self.n_bands, self._kind, self.alpha, self._env_state, self._last, self._env)
        if self.baseline_ready:
            rows = k.decimate(self._env, n, ts, self.step, self._phase, self._rectify, self._power, self._mean, self._inv_std, self._out, self._ts_out)
        else:
            rows = k.decimate(self._env, n, ts, self.step, self._phase, self._rectify, self._power, self._zero, self._one, self._out, self._ts_out)
            self._accumulate_baseline(rows)
        return self._out[:rows], self._ts_out[:rows]

    def _accumulate_baseline(self, rows: int) -> None:
        if rows:
            self._k.accumulate_moments(self._out, rows, self._base_sums)
            self._base_count += rows
            self._out[:rows] = np.nan  # not z-scored yet
            if self._base_count >= self._base_needed:
                mean = self._base_sums[0] / self._base_count
                var = self._base_sums[1] / self._base_count - mean**2
                self._set_baseline(mean, np.sqrt(np.maximum(var, 0.0)))
                logger.info("band-power baseline complete (%d values, %.1f s)", self._base_count, self._base_count / self.rate_hz)

    def _set_baseline(self, mean: np.ndarray, std: np.ndarray) -> None:
        mean, std = checked_baseline(
            mean, std, self.labels, "band-power", "the baseline recording carries no signal in that band; record a longer or real baseline"
        )
        self.baseline_mean = mean
        self.baseline_std = std
        self._mean[:] = mean
        self._inv_std[:] = 1.0 / std
        self.baseline_ready = True

    def set_baseline(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Z-score against this baseline from now on (shape (n_out,) each, output units)."""
        if not self.spec.zscore:
            raise ConfigError("set_baseline needs [bandpower] zscore = true")
        self._set_baseline(mean, std)

    def calibrate(self, roi_data: np.ndarray, *, discard_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Baseline mean and std of the (decimated, un-z-scored) values over a calibration block.

        Runs a fresh copy of this stage's filters over ``roi_data`` (this stage's state is
        untouched), drops the first ``discard_s`` seconds (default: the filters' settling
        time, 1 s + 5 smoothing constants) and, if ``spec.zscore``, installs the result.

        Parameters
        ----------
        roi_data : ndarray, shape (n_samples, n_roi)
            ROI time courses of the calibration recording (the ROI stage's output).

        Returns
        -------
        mean, std : ndarray, shape (n_out,)
        """
        roi_data = np.asarray(roi_data, dtype=np.float32)
        if roi_data.ndim != 2 or roi_data.shape[1] != len(self.roi_names):
            raise ConfigError(f"calibration ROI data have shape {roi_data.shape}, expected (n_samples, {len(self.roi_names)})")
        twin = BandPowerStage(dataclasses.replace(self.spec, zscore=False), self.roi_names, self.sfreq, self.max_chunk, unit=self.unit)
        vals, _ = twin.run_offline(roi_data, np.arange(len(roi_data)) / self.sfreq)
        discard = 1.0 + 5 * self.spec.smoothing_s if discard_s is None else discard_s
        vals = vals[int(np.ceil(discard * self.rate_hz)) :]
        if len(vals) < _MIN_BASELINE_OUTPUTS:
            raise ConfigError(
                f"the calibration block ({len(roi_data) / self.sfreq:.1f} s) leaves {len(vals)} band-power values after "
                f"{discard:g} s of filter settling; record a longer calibration"
            )
        mean, std = vals.mean(axis=0).astype(np.float64), vals.std(axis=0).astype(np.float64)
        if self.spec.zscore:
            self._set_baseline(mean, std)
        return mean, std

    def run_offline(self, roi_data: np.ndarray, timestamps: np.ndarray, chunk: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Run a whole recording through :meth:`process` (tests, calibration); returns copies."""
        chunk = chunk or self.max_chunk
        vals, stamps = [], []
        roi_data = np.asarray(roi_data, dtype=np.float32)
        timestamps = np.asarray(timestamps, dtype=np.float64)
        for i in range(0, len(roi_data), chunk):
            m = min(chunk, len(roi_data) - i)
            v, t = self.process(roi_data[i : i + m], timestamps[i : i + m], m)
            vals.append(v.copy())
            stamps.append(t.copy())
        return np.vstack(vals) if vals else np.zeros((0, self.n_out), np.float32), np.concatenate(stamps) if stamps else np.zeros(0)

    def reset(self) -> None:
        """Forget the filter and smoother memory (after a gap in the input)."""
        for s in self._filt_state:
            s[:] = 0.0
        self._env_state[:] = 0.0
        self._last[:] = np.nan
        self._phase[0] = 0

    def warm_up(self) -> None:
        """Compile the kernels (state is restored afterwards)."""
        saved = ([s.copy() for s in self._filt_state], self._env_state.copy(), self._phase.copy(), self._base_sums.copy(), self._base_count, self._last.copy())
        self.process(np.zeros((1, len(self.roi_names)), np.float32), np.zeros(1), 1)
        self._k.accumulate_moments(self._out, 0, self._base_sums)
        for s, v in zip(self._filt_state, saved[0]):
            s[:] = v
        self._env_state[:] = saved[1]
        self._phase[:] = saved[2]
        self._base_sums[:] = saved[3]
        self._base_count = saved[4]
        self._last[:] = saved[5]


def checked_baseline(mean, std, labels, what: str, advice: str) -> tuple[np.ndarray, np.ndarray]:
    """A z-scoring baseline, checked: float64 copies of ``mean`` and ``std``, shape (n_out,).

    Raises ``ConfigError`` naming the first outputs whose spread is zero or non-finite
    (z-scores there would be infinite), with ``advice`` as the fix.
    """
    n_out = len(labels)
    mean = np.array(mean, dtype=np.float64)
    std = np.array(std, dtype=np.float64)
    if mean.shape != (n_out,) or std.shape != (n_out,):
        raise ConfigError(f"baseline mean/std must have shape ({n_out},), got {mean.shape} / {std.shape}")
    bad = ~(np.isfinite(std) & (std > 0)) | ~np.isfinite(mean)
    if np.any(bad):
        raise ConfigError(f"{what} baseline has zero or non-finite spread for {', '.join(np.array(labels)[bad][:5])}: {advice}")
    return mean, std
