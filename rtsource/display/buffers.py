"""What the readers keep for the GUI: the newest samples (:class:`SampleRing`) and the events (:class:`EventLog`).

One reader thread writes, the GUI thread copies out under a short lock, so it is never
blocked by LSL.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque

import numpy as np


class SampleRing:
    """The newest samples of a stream with their timestamps, kept with a write index.

    One thread writes (:meth:`write`), others copy out (:meth:`mean_latest`, :meth:`ordered`,
    :meth:`latest`); a lock held only for the copies keeps rows whole.

    Parameters
    ----------
    capacity : int
        Samples kept.
    n_channels : int
    """

    def __init__(self, capacity: int, n_channels: int):
        self.capacity = int(max(capacity, 1))
        self.n_channels = int(n_channels)
        self._data = np.zeros((self.capacity, self.n_channels), dtype=np.float32)
        self._times = np.zeros(self.capacity, dtype=np.float64)
        self._next = 0
        self.count = 0  # samples ever written
        self.writes = 0  # chunks ever written
        self.last_write = 0.0  # time.monotonic() of the last write
        self._lock = threading.Lock()

    def write(self, data: np.ndarray, times: np.ndarray) -> None:
        """Append samples ``data`` (n, n_channels) with ``times`` (n,)."""
        received = n = len(times)
        if n == 0:
            return
        if n > self.capacity:  # only the newest fit
            data, times, n = data[-self.capacity :], times[-self.capacity :], self.capacity
        with self._lock:
            first = min(n, self.capacity - self._next)
            self._data[self._next : self._next + first] = data[:first]
            self._times[self._next : self._next + first] = times[:first]
            if first < n:
                self._data[: n - first] = data[first:]
                self._times[: n - first] = times[first:]
            self._next = (self._next + n) % self.capacity
            self.count += received
            self.writes += 1
            self.last_write = time.monotonic()

    def _spans(self, n: int) -> list[slice]:
        """Slices of the newest ``n`` rows, oldest first (call under the lock)."""
        start = self._next - n
        if start >= 0:
            return [slice(start, self._next)]
        return [slice(self.capacity + start, self.capacity), slice(0, self._next)]

    def mean_latest(self, n: int, out: np.ndarray) -> int:
        """Mean over the newest ``n`` samples into ``out`` (n_channels,); returns how many were used."""
        with self._lock:
            n = int(min(n, self.count, self.capacity))
            if n == 0:
                return 0
            spans = self._spans(n)
            np.sum(self._data[spans[0]], axis=0, out=out, dtype=out.dtype)
            if len(spans) > 1:
                out += self._data[spans[1]].sum(axis=0, dtype=out.dtype)
        if n > 1:
            out /= n
        return n

    def ordered(self, data_out: np.ndarray, times_out: np.ndarray) -> int:
        """Copy all kept samples, oldest first, into the front of the given arrays; returns how many."""
        with self._lock:
            n = min(self.count, self.capacity, len(times_out))
            k = 0
            for s in self._spans(n):
                m = s.stop - s.start
                data_out[k : k + m] = self._data[s]
                times_out[k : k + m] = self._times[s]
                k += m
        return n

    def latest(self) -> tuple[np.ndarray, float] | None:
        """A copy of the newest sample and its timestamp (None before the first)."""
        with self._lock:
            if self.count == 0:
                return None
            i = (self._next - 1) % self.capacity
            return self._data[i].copy(), float(self._times[i])


class EventLog:
    """The events stream's JSON objects, and the bad channels they announce."""

    def __init__(self, keep: int = 50):
        self._events: deque[dict] = deque(maxlen=keep)
        self._bad: dict[str, str] = {}
        self._recalibration: dict | None = None
        self._lock = threading.Lock()
        self.count = 0

    def add(self, text: str) -> None:
        try:
            event = json.loads(text)
        except (json.JSONDecodeError, TypeError):
            event = {"event": "text", "text": str(text)}
        if not isinstance(event, dict):
            event = {"event": "text", "text": str(text)}
        kind = event.get("event")
        with self._lock:
            self._events.append(event)
            self.count += 1
            if kind == "bad_channel" and event.get("channel"):
                self._bad[str(event["channel"])] = str(event.get("reason", ""))
            elif kind == "operator_swap" and isinstance(event.get("bad_channels"), list):
                # the new operator excludes exactly these channels
                self._bad = {str(c): self._bad.get(str(c), "") for c in event["bad_channels"]}
            elif kind == "started":
                self._bad = {}
            elif kind == "artifact_calibration":
                self._recalibration = event

    def bad_channels(self) -> dict[str, str]:
        """Bad channel -> reason."""
        with self._lock:
            return dict(self._bad)

    def recalibration(self) -> dict | None:
        """The last ``artifact_calibration`` event (a live recalibration's state), if any."""
        with self._lock:
            return self._recalibration

    def recent(self, n: int = 5) -> list[dict]:
        with self._lock:
            return list(self._events)[-n:]

