"""Marker-locked epochs, running and exponentially weighted averages, per-epoch features.

    samples (n, C) + timestamps ─> ring buffer (write index, fixed capacity) ─┐
    markers (name, LSL time) ─> pending list (bounded) ──────────────────────┴─> cut when the
        window has closed ─> baseline ─> [reject if a sample is flagged] ─> Epoch (+ features)
        ─> running average (sum / count) and EWMA per event type

Markers and data may arrive in any order: a marker waits (pending) until the sample at its
window's end has arrived, and a marker whose data are already buffered is cut at once. Each
marker is decided exactly once, into one of: accepted, rejected (a flagged sample, a
non-finite value, or a gap in the timestamps), too old, unknown name, duplicate, or dropped from a full pending list;
:attr:`EpochEngine.counts` holds these counters (counted where decided) so that
``accepted + rejected_* + too_old + duplicate + unknown + overflow + pending`` equals the
markers received.

Alignment: the marker's sample is the buffered sample whose timestamp is nearest the
marker time (both on the LSL clock after time correction); the epoch is the
``round(tmax * sfreq) - round(tmin * sfreq) + 1`` samples from ``round(tmin * sfreq)``
samples around it. Policy for old markers: if the window's first sample has already left
the ring (capacity ``buffer_s``) or precedes the first sample ever received, the marker is
``too_old`` (counted, logged at INFO); size ``buffer_s`` for the marker stream's
worst delay plus the epoch length.

Running average of ``n`` epochs: ``sum / n``; its noise falls as ``1 / sqrt(n)`` for noise
independent across epochs. Exponentially weighted average with weight ``alpha``:
``e_n = (1 - alpha) e_{n-1} + alpha x_n``, normalised by ``w_n = (1 - alpha) w_{n-1} + alpha``
so it is unbiased from the first epoch on (the bias correction of Adam, Kingma & Ba 2015).
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpochWindow:
    """An event type and its window around the marker (s, ``tmin < 0 < tmax`` typically)."""

    name: str
    tmin: float = -0.2
    tmax: float = 0.8

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"[epochs] event name {self.name!r} must be a non-empty string")
        if not (np.isfinite(self.tmin) and np.isfinite(self.tmax) and self.tmin < self.tmax):
            raise ConfigError(f"[epochs] event {self.name!r}: tmin = {self.tmin!r} s must be below tmax = {self.tmax!r} s")


@dataclass(frozen=True)
class FeatureWindow:
    """Mean amplitude of each channel between ``start`` and ``stop`` (s after the marker, ``[start, stop)``)."""

    name: str
    start: float
    stop: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.start) and np.isfinite(self.stop) and self.start < self.stop):
            raise ConfigError(f"[epochs] feature window {self.name!r} = [{self.start!r}, {self.stop!r}) s must have start < stop")


@dataclass(frozen=True)
class EpochSpec:
    """What the epoch engine cuts and keeps.

    Attributes
    ----------
    events : tuple of EpochWindow
    baseline : (float, float) or None
        Baseline interval (s relative to the marker, ``[start, stop]`` inclusive) whose mean
        is subtracted per channel; None: no correction.
    reject_flagged : bool
        Reject an epoch if any of its samples is flagged (artifact flags). Epochs with a
        non-finite value are always rejected (they would poison the averages).
    ewma_alpha : float
        Weight of the newest epoch in the exponentially weighted average (0 < alpha <= 1).
    features : tuple of FeatureWindow
    buffer_s : float
        Ring capacity (s): the oldest data a late marker can still be cut from.
    max_pending : int
        Markers waiting for their data; beyond this the oldest is dropped (``overflow``).
    """

    events: tuple[EpochWindow, ...]
    baseline: tuple[float, float] | None = (-0.2, 0.0)
    reject_flagged: bool = True
    ewma_alpha: float = 0.1
    features: tuple[FeatureWindow, ...] = ()
    buffer_s: float = 10.0
    max_pending: int = 256

    def __post_init__(self) -> None:
        object.__setattr__(self, "events", tuple(self.events))
        object.__setattr__(self, "features", tuple(self.features))
        if not self.events:
            raise ConfigError("[epochs] events is empty; give at least one, e.g. events = {target = [-0.2, 0.8]}")
        names = [e.name for e in self.events]
        if len(set(names)) != len(names):
            raise ConfigError(f"[epochs] event names repeat: {names}")
        if not 0 < self.ewma_alpha <= 1:
            raise ConfigError(f"[epochs] ewma_alpha = {self.ewma_alpha!r} must be in (0, 1]")
        if self.max_pending < 1:
            raise ConfigError(f"[epochs] max_pending = {self.max_pending!r} must be >= 1")
        longest = max(e.tmax - e.tmin for e in self.events)
        if not (np.isfinite(self.buffer_s) and self.buffer_s >= longest + 0.5):
            raise ConfigError(f"[epochs] buffer_s = {self.buffer_s!r} s must hold the longest epoch ({longest:g} s) plus 0.5 s of marker delay")
        for e in self.events:
            if self.baseline is not None and not (e.tmin <= self.baseline[0] < self.baseline[1] <= e.tmax):
                raise ConfigError(f"[epochs] baseline = {list(self.baseline)} s must lie inside event {e.name!r}'s window [{e.tmin:g}, {e.tmax:g}] s")
            for f in self.features:
                if not (e.tmin <= f.start and f.stop <= e.tmax):
                    raise ConfigError(f"[epochs] feature window {f.name!r} [{f.start:g}, {f.stop:g}) s is outside event {e.name!r}'s window")


@dataclass(frozen=True)
class Epoch:
    """One accepted epoch.

    Attributes
    ----------
    event : str
    marker_time : float
        The marker's LSL time (s).
    index : int
        0-based count of accepted epochs of this event type (order of acceptance).
    data : ndarray, shape (n_times, n_channels)
        Baseline-corrected values (input unit), read-only.
    times : ndarray, shape (n_times,)
        Sample times relative to the marker's sample (s), read-only.
    features : ndarray, shape (n_features, n_channels)
        Mean amplitude per feature window and channel, read-only.
    """

    event: str
    marker_time: float
    index: int
    data: np.ndarray
    times: np.ndarray
    features: np.ndarray


@dataclass(frozen=True)
class Evoked:
    """Running and exponentially weighted averages of one event type (read-only copies)."""

    event: str
    count: int
    average: np.ndarray  # (n_times, n_channels), sum / count
    ewma: np.ndarray  # (n_times, n_channels), bias-corrected
    times: np.ndarray


class _EventState:
    def __init__(self, win: EpochWindow, sfreq: float, n_ch: int, spec: EpochSpec):
        self.win = win
        self.offset = int(round(win.tmin * sfreq))
        self.n_times = int(round(win.tmax * sfreq)) - self.offset + 1
        self.times = (self.offset + np.arange(self.n_times)) / sfreq
        self.times.flags.writeable = False
        if spec.baseline is None:
            self.b0 = self.b1 = 0
        else:
            self.b0 = int(round(spec.baseline[0] * sfreq)) - self.offset
            self.b1 = int(round(spec.baseline[1] * sfreq)) - self.offset + 1
        self.feat = [(int(np.ceil(f.start * sfreq - 1e-9)) - self.offset, int(np.ceil(f.stop * sfreq - 1e-9)) - self.offset) for f in spec.features]
        self.buf = np.zeros((self.n_times, n_ch))
        self.sum = np.zeros((self.n_times, n_ch))
        self.ewma = np.zeros((self.n_times, n_ch))
        self.ewma_w = 0.0
        self.count = 0


class EpochEngine:
    """Cuts marker-locked epochs from a timestamped sample stream; keeps averages.

    Parameters
    ----------
    spec : EpochSpec
    channel_names : sequence of str
        Columns of the sample stream (ROIs or sources).
    sfreq : float
        Nominal rate of the sample stream (Hz).
    max_chunk : int
        Largest chunk :meth:`push_data` accepts.
    """

    def __init__(self, spec: EpochSpec, channel_names, sfreq: float, max_chunk: int = 1024):
        from . import _epoch_kernels

        self._k = _epoch_kernels
        if not (np.isfinite(sfreq) and sfreq > 0):
            raise ConfigError(f"sfreq = {sfreq!r} must be > 0 Hz")
        self.spec = spec
        self.channel_names = tuple(channel_names)
        if not self.channel_names:
            raise ConfigError("the epoch engine needs at least one channel")
        self.sfreq = float(sfreq)
        self.max_chunk = int(max_chunk)
        n_ch = len(self.channel_names)
        self.capacity = int(np.ceil(spec.buffer_s * self.sfreq))
        if self.capacity < self.max_chunk:
            raise ConfigError(f"buffer_s = {spec.buffer_s:g} s holds fewer samples than max_chunk = {max_chunk}; raise buffer_s")
        self._ring = np.zeros((self.capacity, n_ch))
        self._ring_ts = np.zeros(self.capacity)
        self._ring_bad = np.zeros(self.capacity, dtype=np.uint8)
        self._pos = 0
        self._n_total = 0  # samples ever received: logical index of the next sample
        self._events = {w.name: _EventState(w, self.sfreq, n_ch, spec) for w in spec.events}
        self._pending: collections.deque = collections.deque()
        self._seen: collections.deque = collections.deque()
        self._seen_set: dict = {}  # (event, sample bucket) -> marker times taken
        self._no_flags = np.zeros(0, dtype=np.uint8)
        self.counts = collections.Counter(
            dict.fromkeys(("markers", "accepted", "rejected_flag", "rejected_nonfinite", "rejected_gap", "too_old", "unknown", "duplicate", "overflow"), 0)
        )  # fmt: skip

    # ---- input ----
    def push_marker(self, name: str, time: float) -> list[Epoch]:
        """Register a marker (event name, LSL time); returns the epochs it completes now."""
        self.counts["markers"] += 1
        name = str(name)
        if name not in self._events or not np.isfinite(time):
            self.counts["unknown"] += 1
            return []
        # A duplicate is the same event within half a sample of a marker already taken: it
        # would cut the same epoch. Not an exact time match: the clock offsets that bring a
        # marker onto the data clock are re-measured per pull and move by tens of us, so a
        # marker delivered twice arrives with two slightly different times.
        time = float(time)
        bucket = int(np.floor(time * self.sfreq))
        if any(abs(time - t) <= 0.5 / self.sfreq for b in (bucket - 1, bucket, bucket + 1) for t in self._seen_set.get((name, b), ())):
            self.counts["duplicate"] += 1
            return []
        key = (name, bucket)
        self._seen.append((key, time))
        self._seen_set.setdefault(key, []).append(time)
        if len(self._seen) > 4 * self.spec.max_pending + 1024:  # bounded memory of past markers
            (old_key, old_t) = self._seen.popleft()
            times = self._seen_set[old_key]
            times.remove(old_t)
            if not times:
                del self._seen_set[old_key]
        if len(self._pending) >= self.spec.max_pending:
            self._pending.popleft()
            self.counts["overflow"] += 1
            logger.warning("epoch engine: more than %d markers pending; dropped the oldest", self.spec.max_pending)
        self._pending.append((name, time))
        return self._resolve()

    def push_data(self, x: np.ndarray, ts: np.ndarray, n: int | None = None, flags: np.ndarray | None = None) -> list[Epoch]:
        """Append ``n`` samples (rows of ``x``, timestamps ``ts``, optional flags); returns completed epochs.

        Parameters
        ----------
        x : ndarray, shape (>= n, n_channels)
        ts : ndarray of float64, shape (>= n,), non-decreasing LSL times (s)
        n : int, optional (default ``len(x)``), at most ``max_chunk``
        flags : ndarray of uint8, shape (>= n,), optional; non-zero marks an artifact
        """
        n = len(x) if n is None else int(n)
        if not 0 <= n <= self.max_chunk:
            raise ConfigError(f"n = {n} must be in 0..max_chunk = {self.max_chunk}; split the chunk")
        if x.ndim != 2 or x.shape[0] < n or x.shape[1] != len(self.channel_names) or len(ts) < n:
            raise ConfigError(f"x has shape {x.shape} and ts {np.shape(ts)}, expected (>= {n}, {len(self.channel_names)}) and (>= {n},)")
        if n == 0:
            return []
        fl = self._no_flags if flags is None else flags
        self._pos = self._k.ring_append(x, n, ts, fl, self._ring, self._ring_ts, self._ring_bad, self._pos)
        self._n_total += n
        return self._resolve() if self._pending else []

    # ---- output ----
    def evoked(self, event: str) -> Evoked:
        """The averages of ``event`` so far (count 0: zeros)."""
        if event not in self._events:
            raise ConfigError(f"event {event!r} is not configured; configured: {', '.join(self._events)}")
        s = self._events[event]
        avg = s.sum / max(s.count, 1)
        ew = s.ewma / s.ewma_w if s.ewma_w > 0 else s.ewma.copy()
        for a in (avg, ew):
            a.flags.writeable = False
        return Evoked(event, s.count, avg, ew, s.times)

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def oldest_time(self) -> float:
        """Timestamp of the oldest buffered sample (NaN before any data)."""
        if self._n_total == 0:
            return np.nan
        return float(self._ring_ts[self._slot(max(0, self._n_total - self.capacity))])

    # ---- internals ----
    def _slot(self, logical: int) -> int:
        return logical % self.capacity

    def _nearest(self, t: float) -> int:
        """Logical index of the buffered sample nearest ``t`` (binary search over the ring)."""
        lo, hi = max(0, self._n_total - self.capacity), self._n_total - 1
        ts = self._ring_ts
        while lo < hi:
            mid = (lo + hi) // 2
            if ts[self._slot(mid)] < t:
                lo = mid + 1
            else:
                hi = mid
        if lo > 0 and lo - 1 >= self._n_total - self.capacity and abs(ts[self._slot(lo - 1)] - t) <= abs(ts[self._slot(lo)] - t):
            lo -= 1
        return lo

    def _resolve(self) -> list[Epoch]:
        out = []
        if self._n_total == 0:
            return out
        half = 0.5 / self.sfreq
        newest_t = self._ring_ts[self._slot(self._n_total - 1)]
        oldest = max(0, self._n_total - self.capacity)
        keep = collections.deque()
        while self._pending:
            name, t = self._pending.popleft()
            st = self._events[name]
            if t + st.win.tmin < self._ring_ts[self._slot(oldest)] - half:
                self.counts["too_old"] += 1
                logger.info("epoch engine: marker %r at %.3f is older than the buffer (oldest sample %.3f); dropped", name, t, self._ring_ts[self._slot(oldest)])
                continue
            if newest_t < t - half:
                keep.append((name, t))  # its data have not arrived
                continue
            idx = self._nearest(t)
            i0 = idx + st.offset
            i1 = i0 + st.n_times  # exclusive
            if i0 < oldest:
                self.counts["too_old"] += 1
                continue
            if i1 > self._n_total:
                keep.append((name, t))  # the window has not closed
                continue
            out_epoch = self._cut(st, name, t, idx, i0, i1)
            if out_epoch is not None:
                out.append(out_epoch)
        self._pending = keep
        return out

    def _cut(self, st: _EventState, name: str, t: float, idx: int, i0: int, i1: int) -> Epoch | None:
        ts = self._ring_ts
        tol = 1.5 / self.sfreq
        span = ts[self._slot(i1 - 1)] - ts[self._slot(i0)]
        if abs(ts[self._slot(idx)] - t) > tol or abs(span - (st.n_times - 1) / self.sfreq) > tol:
            self.counts["rejected_gap"] += 1
            return None
        bits = self._k.cut_epoch(self._ring, self._ring_bad, self._slot(i0), st.n_times, st.b0, st.b1, st.buf)
        if bits & 2:  # a NaN would poison the averages whatever the flag policy
            self.counts["rejected_nonfinite"] += 1
            return None
        if bits & 1 and self.spec.reject_flagged:
            self.counts["rejected_flag"] += 1
            return None
        data = st.buf.copy()
        feats = np.array([data[a:b].mean(axis=0) for a, b in st.feat]).reshape(len(st.feat), data.shape[1])
        st.sum += data
        a = self.spec.ewma_alpha
        st.ewma *= 1.0 - a
        st.ewma += a * data
        st.ewma_w = (1.0 - a) * st.ewma_w + a
        index = st.count
        st.count += 1
        self.counts["accepted"] += 1
        for arr in (data, feats):
            arr.flags.writeable = False
        return Epoch(name, t, index, data, st.times, feats)

    def feature_labels(self) -> tuple[str, ...]:
        """``<feature>:<channel>`` for the flattened features (feature-major), e.g. ``p300:precentral-lh``."""
        return tuple(f"{f.name}:{c}" for f in self.spec.features for c in self.channel_names)
