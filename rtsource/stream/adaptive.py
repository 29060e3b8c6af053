"""Adaptive beamformer machinery: a live data covariance and periodic background rebuilds.

    loop thread, per chunk:  prepared channel chunk ─> ExpWeightedCovariance.update (numba, in place)
                             swap = adaptive.take() ─> install swap.value between chunks
    worker thread, every interval_s:  snapshot (under a lock, a copy) ─> build(snapshot) ─> ready

The covariance is an exponentially weighted moving estimate (a recursive least-squares
style forgetting factor; e.g. Haykin, *Adaptive Filter Theory*, 5th ed., ch. 10): each new
sample ``y`` (in V) updates ``S <- lam S + (1 - lam) y y^T`` and the mean likewise, with
``lam = 0.5 ** (1 / (half_life_s * sfreq))`` so a sample's weight halves every
``half_life_s`` seconds. Dividing by the total weight ``W = 1 - lam^n`` removes the start-up
bias; the snapshot is ``S / W - mu mu^T`` (``demean``) or ``S / W``.

Age: the covariance "is" the data it weights most; its age is the weighted mean age of
its samples, ``sum w_i (t_now - t_i) / sum w_i``, tracked exactly per sample (tends to
``lam / (1 - lam)`` samples, about ``1.44 half_life_s``). The telemetry value
``covariance_age_s`` is the age of the covariance *behind the live weights*: its age when
the snapshot was taken plus the time since (:meth:`CovarianceSnapshot.age_at`).

The builder is any callable ``build(snapshot) -> result`` (for LCMV:
``rtsource.inverse.beamformer.make_lcmv`` on ``snapshot.data`` wrapped by the loop into a
prepared operator); nothing here depends on the beamformer's code.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..errors import ConfigError
from .swap import BackgroundRebuilder, Swap

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class CovarianceSnapshot:
    """A consistent copy of the live covariance.

    Attributes
    ----------
    data : ndarray, shape (n_channels, n_channels)
        Covariance in V^2, symmetric, read-only.
    mean : ndarray, shape (n_channels,)
        Weighted mean in V (removed from ``data`` when the estimator demeans).
    n_samples : int
        Samples that went into the estimate since start (or reset).
    weight : float
        Total weight ``W`` in (0, 1]; ``1 - W`` is the share of the (unknown) past before
        the first sample.
    effective_samples : float
        ``1 / (1 - lam)`` capped by ``n_samples``: roughly how many samples it averages.
    age_s : float
        Weighted mean age of the data at the snapshot (s).
    last_timestamp : float
        Timestamp of the newest sample in it (producer clock), NaN if not given.
    taken_at : float
        ``time.perf_counter()`` when the snapshot was taken.
    ch_names : tuple of str
    """

    data: np.ndarray
    mean: np.ndarray
    n_samples: int
    weight: float
    effective_samples: float
    age_s: float
    last_timestamp: float
    taken_at: float
    ch_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("data", "mean"):
            a = np.array(getattr(self, name), dtype=np.float64)
            a.flags.writeable = False
            object.__setattr__(self, name, a)

    def age_at(self, now: float | None = None) -> float:
        """Age (s) of the data behind this snapshot at ``now`` (``time.perf_counter()``)."""
        now = time.perf_counter() if now is None else now
        return self.age_s + (now - self.taken_at)


class ExpWeightedCovariance:
    """Exponentially weighted channel covariance, updated in place chunk by chunk.

    Parameters
    ----------
    n_channels : int
    sfreq : float
        Sampling rate (Hz).
    half_life_s : float
        Time (s) after which a sample's weight has halved.
    scale : ndarray, shape (n_channels,), optional
        Factor from the chunk's unit to V per channel (``ChannelMap.scale``); default ones.
    demean : bool
        Subtract the weighted mean in the snapshot (raw EEG has DC offsets).
    ch_names : sequence of str, optional
        Carried into snapshots.

    Notes
    -----
    :meth:`update` runs in the loop thread and :meth:`snapshot` in any other; a lock held
    for the duration of one update (microseconds) or one copy keeps snapshots consistent.
    """

    def __init__(self, n_channels: int, sfreq: float, half_life_s: float, *, scale: np.ndarray | None = None, demean: bool = True, ch_names=()):
        from . import _covariance_kernels

        if not (np.isfinite(half_life_s) and half_life_s > 0):
            raise ConfigError(f"[adaptive] half_life_s = {half_life_s!r} must be a positive number of seconds")
        if not (np.isfinite(sfreq) and sfreq > 0):
            raise ConfigError(f"sfreq = {sfreq!r} must be a positive rate in Hz")
        self._k = _covariance_kernels
        self.n_channels = int(n_channels)
        self.sfreq = float(sfreq)
        self.half_life_s = float(half_life_s)
        self.lam = float(0.5 ** (1.0 / (half_life_s * sfreq)))
        self.demean = bool(demean)
        self.ch_names = tuple(ch_names)
        self._scale = np.ones(self.n_channels) if scale is None else np.ascontiguousarray(scale, dtype=np.float64)
        if self._scale.shape != (self.n_channels,):
            raise ConfigError(f"scale has shape {self._scale.shape}, expected ({self.n_channels},)")
        self._sxx = np.zeros((self.n_channels, self.n_channels))
        self._sx = np.zeros(self.n_channels)
        self._state = np.zeros(4)  # W, age (samples), samples used, samples skipped
        self._lock = threading.Lock()
        #: timestamp of the newest sample (producer clock) and perf_counter time of the last update
        self.last_timestamp = float("nan")
        self.last_update = float("nan")

    @property
    def n_samples(self) -> int:
        return int(self._state[2])

    @property
    def n_skipped(self) -> int:
        """Samples skipped because they held a non-finite value."""
        return int(self._state[3])

    @property
    def age_s(self) -> float:
        """Weighted mean age (s) of the data, relative to the newest sample; NaN if empty."""
        return self._state[1] / self.sfreq if self._state[2] else float("nan")

    def update(self, x: np.ndarray, n: int, last_timestamp: float | None = None) -> None:
        """Fold the first ``n`` rows of ``x`` (shape (>= n, n_channels), float32) into the estimate."""
        with self._lock:
            self._k.ew_cov_update(x, n, self.lam, self._scale, self._sxx, self._sx, self._state)
            if last_timestamp is not None:
                self.last_timestamp = last_timestamp
            self.last_update = time.perf_counter()

    def seed(self, cov: np.ndarray, *, weight: float = 1.0, mean: np.ndarray | None = None) -> None:
        """Start from a known covariance (V^2), e.g. from a calibration recording.

        ``weight`` in (0, 1] is how much it counts, as a share of the steady-state total.
        """
        cov = np.asarray(cov, dtype=np.float64)
        if cov.shape != (self.n_channels, self.n_channels):
            raise ConfigError(f"seed covariance has shape {cov.shape}, expected ({self.n_channels}, {self.n_channels})")
        if not 0 < weight <= 1:
            raise ConfigError(f"seed weight {weight!r} must be in (0, 1]")
        mu = np.zeros(self.n_channels) if mean is None else np.asarray(mean, dtype=np.float64)
        with self._lock:
            self._sxx[:] = weight * (cov + np.outer(mu, mu))
            self._sx[:] = weight * mu
            self._state[:] = (weight, 1.0 / (1.0 - self.lam) - 1.0, 0.0, 0.0)

    def reset(self) -> None:
        """Forget everything (after a change of the channel set)."""
        with self._lock:
            self._sxx[:] = 0.0
            self._sx[:] = 0.0
            self._state[:] = 0.0
            self.last_timestamp = float("nan")

    def snapshot(self) -> CovarianceSnapshot | None:
        """A consistent copy of the current estimate, or None before the first sample."""
        with self._lock:
            w = self._state[0]
            if w <= 0:
                return None
            sxx = self._sxx.copy()
            sx = self._sx.copy()
            state = self._state.copy()
            last_ts = self.last_timestamp
            taken = time.perf_counter()
        upper = np.triu(sxx)
        s = (upper + upper.T - np.diag(np.diag(upper))) / w
        mu = sx / w
        cov = s - np.outer(mu, mu) if self.demean else s
        cov = 0.5 * (cov + cov.T)
        eff = min(1.0 / (1.0 - self.lam), max(state[2], 1.0))
        return CovarianceSnapshot(cov, mu, int(state[2]), float(w), float(eff), float(state[1] / self.sfreq), float(last_ts), taken, self.ch_names)

    def warm_up(self) -> None:
        """Compile the kernel (the estimate is restored afterwards)."""
        saved = (self._sxx.copy(), self._sx.copy(), self._state.copy())
        self._k.ew_cov_update(np.zeros((1, self.n_channels), np.float32), 1, self.lam, self._scale, self._sxx, self._sx, self._state)
        self._sxx[:], self._sx[:], self._state[:] = saved


class AdaptiveOperator:
    """Rebuild an operator from the live covariance every ``interval_s`` seconds, in the background.

    Parameters
    ----------
    covariance : ExpWeightedCovariance
        Fed by the loop through :meth:`update`.
    build : callable
        ``build(snapshot: CovarianceSnapshot) -> result`` (runs in the worker thread), e.g.
        LCMV weights from ``snapshot.data`` wrapped into a prepared operator.
    interval_s : float
        Seconds between rebuilds.
    min_samples : int, optional
        Do not build before the covariance holds this many samples (default: one
        half-life of data). A rank-deficient covariance makes poor weights.
    on_built : callable, optional
        Push-style hand-over instead of :meth:`take` (see
        :class:`~rtsource.stream.swap.BackgroundRebuilder`); :attr:`live_snapshot` is then
        updated when the result is handed over.
    start : bool
        Start the worker now.
    """

    def __init__(self, covariance: ExpWeightedCovariance, build: Callable[[CovarianceSnapshot], Any], *, interval_s: float,
                 min_samples: int | None = None, on_built: Callable[[Swap], None] | None = None, start: bool = True):  # fmt: skip
        if not (np.isfinite(interval_s) and interval_s > 0):
            raise ConfigError(f"[adaptive] interval_s = {interval_s!r} must be a positive number of seconds")
        self.covariance = covariance
        self.interval_s = float(interval_s)
        self.min_samples = int(round(covariance.half_life_s * covariance.sfreq)) if min_samples is None else int(min_samples)
        self.live_snapshot: CovarianceSnapshot | None = None
        hand_over = None
        if on_built is not None:

            def hand_over(swap: Swap) -> None:
                on_built(swap)
                self.live_snapshot = swap.payload

        self.rebuilder: BackgroundRebuilder[CovarianceSnapshot, Any] = BackgroundRebuilder(
            build, name="rtsource-adaptive", interval_s=self.interval_s, payload_fn=self._payload, periodic_reason="adaptive",
            on_built=hand_over, start=start,
        )  # fmt: skip

    def _payload(self) -> CovarianceSnapshot | None:
        snap = self.covariance.snapshot()
        if snap is None or snap.n_samples < self.min_samples:
            return None
        return snap

    # ---- loop side ----
    def update(self, x: np.ndarray, n: int, last_timestamp: float | None = None) -> None:
        """Per chunk: fold the prepared channel chunk into the covariance."""
        self.covariance.update(x, n, last_timestamp)

    def take(self) -> Swap | None:
        """Per chunk, between chunks: a newly built operator to install, or None."""
        swap = self.rebuilder.take()
        if swap is not None:
            self.live_snapshot = swap.payload
        return swap

    def request_now(self) -> int | None:
        """Build from the current covariance at once (e.g. after calibration); None if too few samples."""
        snap = self._payload()
        return None if snap is None else self.rebuilder.request(snap, "adaptive")

    # ---- telemetry ----
    @property
    def covariance_age_s(self) -> float:
        """Age (s) of the covariance behind the live weights; NaN before the first swap."""
        snap = self.live_snapshot
        return snap.age_at() if snap is not None else float("nan")

    def telemetry(self) -> dict[str, float]:
        """The loop's telemetry values this component owns (names of ``TELEMETRY_CHANNELS``)."""
        st = self.rebuilder.stats
        return {"operator_swaps": float(st.swaps), "last_swap_ms": float(st.last_swap_ms), "covariance_age_s": self.covariance_age_s}

    def close(self, timeout: float = 10.0) -> None:
        self.rebuilder.close(timeout)
