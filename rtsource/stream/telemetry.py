"""Counters and timing statistics the loop keeps, and their telemetry stream.

No per-chunk logging and no allocation per chunk: counters are plain integers, timings go
into fixed-size arrays with a write index, and percentiles are computed only when the
telemetry is published (twice a second) or the summary is printed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .outlets import OutputIdentity, open_telemetry_outlet
from .outputs import TELEMETRY_CHANNELS, TELEMETRY_RATE_HZ


def resident_memory_mb() -> float:
    """Resident memory of this process in MB (Linux /proc; NaN where unavailable).

    Read at the telemetry rate only: one small file read.
    """
    try:
        with open("/proc/self/statm", "rb") as f:
            pages = int(f.read().split()[1])
        return pages * _PAGE_SIZE / 2**20
    except (OSError, ValueError, IndexError):
        return float("nan")


try:
    import os as _os

    _PAGE_SIZE = _os.sysconf("SC_PAGE_SIZE")
except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
    _PAGE_SIZE = 4096


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

    def recent(self, n: int) -> np.ndarray:
        """The newest ``n`` values (fewer if fewer were added), oldest first."""
        n = min(n, self.count, len(self._values))
        idx = (self._next - n + np.arange(n)) % len(self._values)
        return self._values[idx]

    def percentiles(self, qs=(50, 99), last: int | None = None) -> tuple[float, ...]:
        v = self.values() if last is None else self.recent(last)
        if not len(v):
            return tuple(float("nan") for _ in qs)
        return tuple(float(x) for x in np.percentile(v, qs))


@dataclass
class LoopStats:
    """What the streaming loop counts. Read by the CLI summary and the telemetry stream.

    All times in seconds. ``latency`` is publish time minus the newest input sample's
    capture time (both on this machine's LSL clock after time correction).
    """

    samples_in: int = 0
    samples_out: int = 0
    skipped: int = 0
    decimated: int = 0  # input samples the decimation stage kept no output sample of
    chunks: int = 0
    gaps: int = 0
    gap_seconds: float = 0.0
    nan_samples: int = 0
    backlog: int = 0
    max_backlog: int = 0
    max_chunk_seen: int = 0
    unit_warnings: int = 0
    clock_jumps: int = 0
    stream_lost: int = 0
    waiting: bool = False
    bad_channels: int = 0
    operator_swaps: int = 0
    last_swap_ms: float = 0.0
    covariance_age_s: float = 0.0
    hot_swap_ready: bool = False
    rebuild_failures: int = 0
    commands_refused: int = 0  # control commands refused (protocol, key, rate, floor, unknown channel)
    push_failures: int = 0
    nan_episodes: int = 0
    excluded_channels: int = 0
    effective_rate_hz: float = 0.0
    rate_mismatches: int = 0
    max_buffered_s: float = 0.0
    head_displacement_mm: float = float("nan")  # cHPI tracking: from the reference pose
    artifact_delay_s: float = 0.0  # artifact correction (rtsource.stream.artifacts)
    artifact_samples_repaired: float = 0.0
    artifact_channels_repaired: float = 0.0
    artifact_ms_p50: float = 0.0
    artifact_ms_p99: float = 0.0
    artifact_episodes: int = 0
    started_at: float = 0.0
    first_output_at: float = 0.0
    # wall seconds spent per part of the chunks (totals): what `rtsource bench capacity` splits the cost by
    operator_seconds: float = 0.0  # filters, decimation, artifact stage and the operator product
    output_seconds: float = 0.0  # pushing the source outlet
    features_seconds: float = 0.0  # ROIs, band power, epochs and the other feature outlets
    process_seconds: float = 0.0  # the whole chunk (the three above and the loop's own work)
    process_time: RecentValues = field(default_factory=RecentValues)
    latency: RecentValues = field(default_factory=RecentValues)

    @property
    def lost(self) -> int:
        """Input samples that produced no output and were not deliberately skipped (should be 0).

        ``samples_in`` is counted where samples are pulled, ``samples_out`` where the
        outlet accepted them, ``skipped`` where latest-only mode drops the backlog and
        ``decimated`` where the decimation stage keeps no output of them, so this
        difference measures a loss (e.g. a push that failed) instead of restating it.
        """
        return self.samples_in - self.samples_out - self.skipped - self.decimated

    def summary(self) -> dict:
        p50, p99 = self.process_time.percentiles()
        l50, l99 = self.latency.percentiles()
        return {
            "samples_in": self.samples_in,
            "samples_out": self.samples_out,
            "lost": self.lost,
            "skipped": self.skipped,
            "decimated": self.decimated,
            "nan_samples": self.nan_samples,
            "nan_episodes": self.nan_episodes,
            "push_failures": self.push_failures,
            "rate_mismatches": self.rate_mismatches,
            "chunks": self.chunks,
            "gaps": self.gaps,
            "gap_seconds": round(self.gap_seconds, 6),
            "stream_lost": self.stream_lost,
            "clock_jumps": self.clock_jumps,
            "max_backlog": self.max_backlog,
            "operator_swaps": self.operator_swaps,
            "rebuild_failures": self.rebuild_failures,
            "operator_seconds": round(self.operator_seconds, 4),
            "output_seconds": round(self.output_seconds, 4),
            "features_seconds": round(self.features_seconds, 4),
            "process_seconds": round(self.process_seconds, 4),
            "chunk_process_ms_p50": round(p50 * 1e3, 4),
            "chunk_process_ms_p99": round(p99 * 1e3, 4),
            "latency_ms_p50": round(l50 * 1e3, 3),
            "latency_ms_p99": round(l99 * 1e3, 3),
            "max_chunk": self.max_chunk_seen,
            "artifact_episodes": self.artifact_episodes,
            "artifact_repaired": round(self.artifact_samples_repaired, 4),
        }


class TelemetryPublisher:
    """Publishes :class:`LoopStats` on ``NAME-telemetry`` at :data:`TELEMETRY_RATE_HZ`.

    Percentiles cover the last ``window`` chunks, so the stream shows the current state and
    computing it stays cheap.
    """

    def __init__(self, output_name: str, source_id: str, bundle_path: str = "", window: int = 1000):
        self._outlet = open_telemetry_outlet(OutputIdentity(output_name, source_id, bundle_path))
        self._window = window
        self.period = 1.0 / TELEMETRY_RATE_HZ
        self.next_due = 0.0
        self._last = None  # (time, samples_in, samples_out)
        self._row = np.zeros(len(TELEMETRY_CHANNELS))

    def publish(self, stats: LoopStats, now: float) -> None:
        """Publish one telemetry sample (``now``: time.perf_counter())."""
        rate_in = rate_out = 0.0
        if self._last is not None and now > self._last[0]:
            dt = now - self._last[0]
            rate_in = (stats.samples_in - self._last[1]) / dt
            rate_out = (stats.samples_out - self._last[2]) / dt
        self._last = (now, stats.samples_in, stats.samples_out)
        p50, p99 = stats.process_time.percentiles(last=self._window)
        l50, l99 = stats.latency.percentiles(last=self._window)
        values = {
            "samples_in": stats.samples_in,
            "samples_out": stats.samples_out,
            "lost": stats.lost,
            "skipped": stats.skipped,
            "gaps": stats.gaps,
            "gap_seconds": stats.gap_seconds,
            "nan_samples": stats.nan_samples,
            "backlog": stats.backlog,
            "input_rate_hz": rate_in,
            "output_rate_hz": rate_out,
            "process_ms_p50": p50 * 1e3,
            "process_ms_p99": p99 * 1e3,
            "latency_ms_p50": l50 * 1e3,
            "latency_ms_p99": l99 * 1e3,
            "bad_channels": stats.bad_channels,
            "operator_swaps": stats.operator_swaps,
            "last_swap_ms": stats.last_swap_ms,
            "covariance_age_s": stats.covariance_age_s,
            "waiting": float(stats.waiting),
            "clock_jumps": stats.clock_jumps,
            "hot_swap_ready": float(stats.hot_swap_ready),
            "rebuild_failures": stats.rebuild_failures,
            "commands_refused": stats.commands_refused,
            "push_failures": stats.push_failures,
            "excluded_channels": stats.excluded_channels,
            "effective_rate_hz": stats.effective_rate_hz,
            "max_buffered_s": stats.max_buffered_s,
            "rss_mb": resident_memory_mb(),
            "head_displacement_mm": stats.head_displacement_mm,
            "artifact_delay_ms": stats.artifact_delay_s * 1e3,
            "artifact_repaired": stats.artifact_samples_repaired,
            "artifact_channels": stats.artifact_channels_repaired,
            "artifact_ms_p50": stats.artifact_ms_p50,
            "artifact_ms_p99": stats.artifact_ms_p99,
            "artifact_episodes": stats.artifact_episodes,
        }
        for i, (label, _) in enumerate(TELEMETRY_CHANNELS):
            self._row[i] = values[label]
        self._outlet.push_sample(self._row)
        self.next_due = now + self.period
