"""The per-chunk artifact stage the stream operator runs between its filter and its kernel.

:class:`ArtifactStage` works in place on the operator's gathered, filtered channels (float32,
stream units, operator order): EOG regression (no delay), then, when ASR runs after the
projection, the spatial filter ``Q = (I - U U^T) M`` (which the operator's own ``K P M``
does not notice), then ASR, then the muscle ASR (ASR deciding in a high band; each adds its
look-ahead to the delay). :attr:`ArtifactStage.asr` is the first ASR processor on (the
loop reads its output counter); episodes are reported in final output samples.
It keeps everything the loop reports: the delay, the per-chunk cost, the repair counters and
the repair episodes with a kind. A live recalibration (:mod:`rtsource.stream.artifacts`,
:mod:`.refit`) builds a new stage that :meth:`ArtifactStage.adopt` s this one's state.

Rows flagged non-finite by the operator's gather are zeros for ASR, and their flags are
delayed with the data, so the NaN output row is the sample that was bad. The first
``delay_samples`` output rows are zeros (nothing has arrived yet): the loop publishes every
output sample with the timestamp of the input sample it is, ``delay`` earlier.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from .asr import AsrProcessor, restrict_calibration
from .projection import default_frontal

logger = logging.getLogger(__name__)

#: Removed-signal ratio mean(diff^2) / mean(x^2) above which an episode is "muscle": the
#: ratio is (2 sin(pi f / fs))^2 for a sine of f Hz, 0.016 at 10 Hz / 500 Hz.
MUSCLE_RATIO = 0.016


@dataclass(frozen=True)
class Episode:
    """A run of repaired output samples: first output sample index, length, kind."""

    start: int
    n_samples: int
    kind: str  # "ocular", "muscle" or "other" (from the removed signal)


class ArtifactStage:
    """Regression and ASR on an operator's channels, chunk by chunk (see the module docstring).

    Made by :meth:`~.calibration.ArtifactCalibration.stage`.
    """

    def __init__(self, calibration, ch_names, scale, max_chunk: int, *, eog_index=None, eog_scale=None, sos=None):
        self.calibration = calibration
        self.ch_names = tuple(ch_names)
        self.scale = np.asarray(scale, dtype=float)
        if self.scale.shape != (len(self.ch_names),):
            raise ValueError(f"ArtifactStage scale has shape {self.scale.shape}; pass one factor per channel ({len(self.ch_names)})")
        self.max_chunk = int(max_chunk)
        n = len(self.ch_names)
        self._x = np.zeros((self.max_chunk, n))
        self._y = np.zeros((self.max_chunk, n))
        self._y2 = np.zeros((self.max_chunk, n))
        self._q = None  # the projection before ASR, stream units
        self._xq = None
        q = calibration.asr_projector(self.ch_names, self.scale)
        if q is not None:
            from ._kernels import apply_matrix

            self._q = np.ascontiguousarray(q)
            self._xq = np.zeros((self.max_chunk, n))
            self._apply = apply_matrix
        self.broadband = self._processor(calibration.asr) if "asr" in calibration.methods else None
        self.muscle = self._processor(calibration.muscle) if "muscle" in calibration.methods else None
        self.asr: AsrProcessor | None = self.broadband if self.broadband is not None else self.muscle
        self.delay_samples = sum(p.delay_samples for p in (self.broadband, self.muscle) if p is not None)
        self.sfreq = calibration.sfreq
        self._flags = np.zeros(self.delay_samples + self.max_chunk, dtype=np.uint8)
        self._flags_pending = 0  # flagged rows inside the delay line
        self._reg = None
        if "regression" in calibration.methods:
            self._setup_regression(calibration.regression, eog_index, eog_scale, sos)
        self._costs = np.zeros(2000)
        self._n_costs = 0
        self.chunks = 0
        self.episodes: deque[Episode] = deque(maxlen=1000)  # closed, not yet reported
        self._acc = np.zeros(3)  # removed energy, its difference energy, frontal energy
        front = set(default_frontal(self.ch_names))
        self._frontal = np.array([c in front for c in self.ch_names])

    # ---- construction -------------------------------------------------------------------
    def _processor(self, asr_cal) -> AsrProcessor:
        c = self.calibration
        local = restrict_calibration(asr_cal, self.ch_names, self.scale)
        return AsrProcessor(local, self.max_chunk, lookahead_s=c.lookahead_s, update_every=c.update_every)

    def _setup_regression(self, reg, eog_index, eog_scale, sos) -> None:
        if eog_index is None or len(eog_index) != len(reg.eog_names):
            raise ValueError(f"EOG regression needs the stream columns of {list(reg.eog_names)}; the stream must carry them")
        pos = {c: i for i, c in enumerate(self.ch_names)}
        coef = np.zeros((len(reg.eog_names), len(self.ch_names)))
        for j, c in enumerate(reg.eeg_names):
            if c in pos:  # in stream units: eeg_stream -= eog_stream * (s_eog / s_eeg) * b
                coef[:, pos[c]] = reg.coefficients[:, j] * np.asarray(eog_scale, dtype=float) / self.scale[pos[c]]
        self._reg_coef = np.ascontiguousarray(coef)
        self._eog_index = np.asarray(eog_index, dtype=np.int64)
        self._eog_scale = np.asarray(eog_scale, dtype=float)
        self._eog = np.zeros((self.max_chunk, len(self._eog_index)))
        self._sos = None if sos is None or not len(sos) else np.asarray(sos, dtype=float)
        self._eog_zi = None
        from . import _kernels

        self._reg = _kernels.regress_out

    # ---- per chunk ------------------------------------------------------------------------
    def run_offline(self, x: np.ndarray) -> np.ndarray:
        """Run a recording through the stage as the loop does (float32 chunks of ``max_chunk``
        samples, no EOG columns, no bad rows): the acceptance tool's and the tests' path.

        Returns the output, shape of ``x`` (rows after the last whole chunk are zeros); it is
        :attr:`delay_samples` behind the input.
        """
        c = self.max_chunk
        out = np.zeros_like(x)
        bad = np.zeros(c, np.uint8)
        for s in range(0, len(x) - c + 1, c):
            picked = x[s : s + c].astype(np.float32)
            self.process(picked, picked, c, bad, 0)
            out[s : s + c] = picked
        return out

    def process(self, chunk: np.ndarray, picked: np.ndarray, n: int, bad_rows: np.ndarray, n_bad: int) -> int:
        """Correct ``picked[:n]`` in place; returns the number of flagged (NaN) output rows.

        Parameters
        ----------
        chunk : ndarray, shape (>= n, n_stream_channels)
            The raw stream chunk (for the EOG columns).
        picked : ndarray of float32, shape (>= n, n_ch)
            The operator's filtered channels, stream units.
        bad_rows : ndarray of uint8, shape (>= n,)
            Non-finite input flags; delayed in place with the data.
        n_bad : int
            Flags set among the first ``n``.
        """
        t0 = time.perf_counter()
        x = self._x[:n]
        np.copyto(x, picked[:n], casting="same_kind")
        if n_bad:
            x[bad_rows[:n] != 0] = 0.0
        if self._reg is not None:
            self._regress(chunk, n, x)
        if self._q is not None:
            self._project(x, n)
        if self.asr is not None:
            y = x
            bb = self.broadband
            if bb is not None:
                before = bb._episode_start
                bb.process(x, self._y)
                y = self._y[:n]
                if bb.samples_repaired and (before >= 0 or bb._episode_start >= 0):
                    self._observe(bb._xd[:n] - y, before)
            mu = self.muscle
            if mu is not None:
                before = mu._episode_start
                mu.process(y, self._y2)
                y = self._y2[:n]
                if before >= 0 and mu._episode_start < 0:
                    last = mu._episodes[-1]
                    self.episodes.append(Episode(last.start, last.duration, "muscle"))
            np.copyto(picked[:n], y, casting="same_kind")
            n_bad = self._delay_flags(bad_rows, n, n_bad)
        else:
            np.copyto(picked[:n], x, casting="same_kind")
        self._costs[self._n_costs % len(self._costs)] = time.perf_counter() - t0
        self._n_costs += 1
        self.chunks += 1
        return n_bad

    def _regress(self, chunk, n, x) -> None:
        e = self._eog[:n]
        np.copyto(e, chunk[:n, self._eog_index], casting="unsafe")
        if not np.isfinite(e).all():
            e[~np.isfinite(e)] = 0.0
        if self._sos is not None:
            from scipy.signal import sosfilt, sosfilt_zi

            if self._eog_zi is None:
                self._eog_zi = sosfilt_zi(self._sos)[:, :, None] * e[0][None, None, :]
            e[:], self._eog_zi = sosfilt(self._sos, e, axis=0, zi=self._eog_zi)
        self._reg(x, e, n, self._reg_coef, x)

    def _project(self, x, n) -> None:
        self._apply(x, n, self._q, self._xq)
        x[:] = self._xq[:n]

    def _delay_flags(self, bad_rows, n, n_bad) -> int:
        d = self.delay_samples
        if not d or (n_bad == 0 and self._flags_pending == 0):
            return n_bad
        f = self._flags
        f[d : d + n] = bad_rows[:n]
        bad_rows[:n] = f[:n]
        f[:d] = f[n : n + d].copy()
        self._flags_pending = int(np.count_nonzero(f[:d]))
        return int(np.count_nonzero(bad_rows[:n]))

    def _observe(self, removed: np.ndarray, before: int) -> None:
        asr = self.broadband
        if before < 0:  # an episode opened in this chunk
            self._acc[:] = 0.0
        e = removed * removed
        self._acc[0] += e.sum()
        if len(removed) > 1:
            d = np.diff(removed, axis=0)
            self._acc[1] += (d * d).sum() * len(removed) / (len(removed) - 1)
        self._acc[2] += e[:, self._frontal].sum()
        if before >= 0 and asr._episode_start < 0:  # it closed; in final output samples (after the muscle ASR's delay)
            last = asr._episodes[-1]
            after = self.muscle.delay_samples if self.muscle is not None else 0
            self.episodes.append(Episode(last.start + after, last.duration, self._kind()))

    def _kind(self) -> str:
        total, diff, front = self._acc
        if total <= 0:
            return "other"
        if diff / total > MUSCLE_RATIO:
            return "muscle"
        return "ocular" if self._frontal.any() and front / total > 0.5 else "other"

    # ---- telemetry ----------------------------------------------------------------------------
    def cost_ms(self, qs=(50, 99)) -> tuple[float, ...]:
        """Percentiles of the per-chunk cost over the last chunks, ms."""
        k = min(self._n_costs, len(self._costs))
        if not k:
            return tuple(float("nan") for _ in qs)
        return tuple(float(v) * 1e3 for v in np.percentile(self._costs[:k], qs))

    def fractions(self) -> tuple[float, float]:
        """(fraction of output samples repaired, mean fraction of channels changed in them)."""
        stats = [p.stats() for p in (self.broadband, self.muscle) if p is not None]
        if not stats:
            return 0.0, 0.0
        s = max(stats, key=lambda st: st.fraction_samples_repaired)  # the one repairing most
        return s.fraction_samples_repaired, s.fraction_channels_repaired

    # ---- hot swap and recalibration: continue another stage's state ---------------------------------------------------------
    def adopt(self, other: "ArtifactStage") -> None:
        """Continue ``other``'s state (a new operator without a bad channel replaces its)."""
        for mine, theirs in ((self.broadband, other.broadband), (self.muscle, other.muscle)):
            if mine is not None and theirs is not None:
                mine.adopt(theirs)
        if self.delay_samples == other.delay_samples:
            self._flags[: self.delay_samples] = other._flags[: other.delay_samples]
            self._flags_pending = other._flags_pending
        if self._reg is not None and other._reg is not None:
            self._eog_zi = other._eog_zi
        self._costs, self._n_costs, self.chunks = other._costs, other._n_costs, other.chunks
        self.episodes, self._acc = other.episodes, other._acc

