"""Counters and timing statistics the loop keeps (no per-chunk logging, no allocation)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class RecentValues:
    """The last ``capacity`` values of a measurement, kept with a write index.

    Percentiles are computed on demand (by the CLI, the display), never per chunk.
    """

    def __init__(self, capacity: int = 20000):
        self._values = np.zeros(int(capacity))
        self._next = 0
        self.count = 0  # values ever added

    def add(self, value: float) -> None:
        self._values[self._next] = value
        self._next = (self._next + 1) % len(self._values)
        self.count += 1

    def values(self) -> np.ndarray:
        """The stored values, oldest first (a copy)."""
        n = min(self.count, len(self._values))
        if self.count <= len(self._values):
            return self._values[:n].copy()
        return np.concatenate([self._values[self._next :], self._values[: self._next]])

    def percentiles(self, qs=(50, 99)) -> tuple[float, ...]:
        v = self.values()
        if not len(v):
            return tuple(float("nan") for _ in qs)
        return tuple(float(x) for x in np.percentile(v, qs))


@dataclass
class LoopStats:
    """What the streaming loop counts. Read by the CLI summary and telemetry outlets.

    All times in seconds. ``latency`` is publish time minus the newest input sample's
    capture time (both on this machine's LSL clock after time correction).
    """

    samples_in: int = 0
    samples_out: int = 0
    chunks: int = 0
    gaps: int = 0
    gap_seconds: float = 0.0
    max_chunk_seen: int = 0
    unit_warnings: int = 0
    started_at: float = 0.0
    first_output_at: float = 0.0
    process_time: RecentValues = field(default_factory=RecentValues)
    latency: RecentValues = field(default_factory=RecentValues)

    @property
    def lost(self) -> int:
        """Input samples that did not produce an output sample."""
        return self.samples_in - self.samples_out

    def summary(self) -> dict:
        p50, p99 = self.process_time.percentiles()
        l50, l99 = self.latency.percentiles()
        return {
            "samples_in": self.samples_in,
            "samples_out": self.samples_out,
            "lost": self.lost,
            "chunks": self.chunks,
            "gaps": self.gaps,
            "gap_seconds": round(self.gap_seconds, 6),
            "chunk_process_ms_p50": round(p50 * 1e3, 4),
            "chunk_process_ms_p99": round(p99 * 1e3, 4),
            "latency_ms_p50": round(l50 * 1e3, 3),
            "latency_ms_p99": round(l99 * 1e3, 3),
            "max_chunk": self.max_chunk_seen,
        }
