"""Input health checks the loop runs beside the operator: dead channels and the real rate.

:class:`NonFiniteGuard`
    A channel that keeps delivering NaN/Inf (a dead electrode, a disconnected sensor) would
    make every output sample NaN, because each source mixes every channel. The guard
    follows, per operator channel, how long it has been non-finite; after
    ``exclude_after_s`` in a row (and while the other channels are finite) it asks for the
    channel to be excluded, which the loop does through the bad-channel hot swap (the
    operator rebuilt without it). Once the channel has been finite for ``restore_after_s``
    it is taken back the same way. NaN output samples are grouped into *episodes*: one
    ``nan`` event when the first one appears and one when none has appeared for
    ``episode_end_s``, not one per chunk.

:class:`RateMonitor`
    The effective sampling rate, from the input's timestamps: samples per second of
    timestamp span over stretches without gaps, clock jumps or skips. A rate more than
    ``tolerance`` (2 %) off the declared one over ``window_s`` (10 s) is an event; one
    that is clearly off (``startup_tolerance``, 10 %) in the first ``startup_s`` of data
    means the stream's header is wrong, and the loop refuses the stream. Producers that
    back-date chunk timestamps at the nominal rate still anchor each chunk's last sample at
    its push time, so the span over many chunks follows real time.

:func:`implausible_amplitudes`
    The first chunk's amplitudes per sensor type against what that type can record in the
    declared unit (a unit mix-up in the stream's header).

Both classes allocate only when something is wrong (a chunk with non-finite values, an
excluded channel); a clean chunk costs a few comparisons. The ``report_*`` functions turn
their findings into the loop's events, counters and log lines.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import StreamError

if TYPE_CHECKING:  # annotations only
    from .channels import ChannelMap
    from .events import EventPublisher
    from .telemetry import LoopStats

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NonFiniteChange:
    """Channels the guard wants excluded or restored after a chunk (operator channel names)."""

    excluded: tuple[str, ...] = ()
    restored: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.excluded or self.restored)


class NonFiniteGuard:
    """Per-channel runs of non-finite samples, exclusion decisions and NaN episodes.

    Parameters
    ----------
    ch_names : sequence of str
        The bundle's channels (operator order).
    stream_index : ndarray of int, shape (n_channels,)
        Column of each channel in the stream chunk (``ChannelMap.index`` of the full bundle).
    sfreq : float
        Sampling rate (Hz), to turn the times below into sample counts.
    exclude_after_s : float
        A channel non-finite for this long in a row is excluded (0: never exclude).
    restore_after_s : float
        An excluded channel finite for this long in a row is taken back.
    episode_end_s : float
        A NaN episode ends when no NaN output sample came for this long (input time).
    """

    def __init__(self, ch_names, stream_index, sfreq: float, *, exclude_after_s: float = 0.1, restore_after_s: float = 1.0, episode_end_s: float = 1.0):
        self.ch_names = tuple(ch_names)
        self._index = np.asarray(stream_index, dtype=np.int64)
        n = len(self.ch_names)
        self.exclude_after = int(round(exclude_after_s * sfreq)) if exclude_after_s > 0 else 0
        self.restore_after = max(1, int(round(restore_after_s * sfreq)))
        self.episode_end_s = float(episode_end_s)
        self._bad_run = np.zeros(n, dtype=np.int64)  # trailing non-finite samples per channel
        self._good_run = np.zeros(n, dtype=np.int64)  # trailing finite samples (excluded channels)
        self._excluded = np.zeros(n, dtype=bool)
        self._watching = False  # some run is non-zero: look at every chunk until it clears
        # the current NaN episode (output rows that are NaN)
        self.episode_start: float | None = None
        self.episode_last = 0.0
        self.episode_samples = 0

    @property
    def excluded(self) -> tuple[str, ...]:
        """Channels excluded because they are non-finite (operator order)."""
        return tuple(c for c, e in zip(self.ch_names, self._excluded) if e)

    def observe(self, chunk: np.ndarray, n: int, any_bad: bool) -> NonFiniteChange:
        """Update the runs with the first ``n`` rows of a stream chunk.

        ``any_bad``: the operator found a non-finite value in this chunk (cheap pre-check:
        clean chunks with nothing excluded and no open run cost nothing here).
        """
        if not (any_bad or self._watching or self._excluded.any()):
            return NonFiniteChange()
        finite = np.isfinite(chunk[:n, self._index])  # (n, n_channels)
        all_bad = ~finite.any(axis=0)
        # samples after the last finite one (n if none) and after the last non-finite one
        last_finite = np.where(all_bad, -1, n - 1 - np.argmax(finite[::-1], axis=0))
        all_good = finite.all(axis=0)
        last_bad = np.where(all_good, -1, n - 1 - np.argmax(~finite[::-1], axis=0))
        self._bad_run = np.where(all_bad, self._bad_run + n, n - 1 - last_finite)
        self._good_run = np.where(all_good, self._good_run + n, n - 1 - last_bad)
        self._watching = bool(self._bad_run.any())
        excluded, restored = [], []
        if self.exclude_after:
            dead = (self._bad_run >= self.exclude_after) & ~self._excluded
            # Many channels dead at once is not a dead electrode but a dropout of the whole
            # stream (or a wrong channel map): excluding them would leave too little.
            alive = ~(self._excluded | (self._bad_run >= self.exclude_after))
            if dead.any() and alive.sum() >= max(2, len(self.ch_names) // 2):
                self._excluded |= dead
                excluded = [self.ch_names[j] for j in np.flatnonzero(dead)]
        back = self._excluded & (self._good_run >= self.restore_after)
        if back.any():
            self._excluded &= ~back
            restored = [self.ch_names[j] for j in np.flatnonzero(back)]
        return NonFiniteChange(tuple(excluded), tuple(restored))

    def nan_rows(self, first_ts: float, last_ts: float, n_nan: int) -> bool:
        """Record ``n_nan`` NaN output rows; True when they start a new episode."""
        new = self.episode_start is None
        if new:
            self.episode_start = first_ts
            self.episode_samples = 0
        self.episode_last = last_ts
        self.episode_samples += n_nan
        return new

    def episode_over(self, now_ts: float) -> bool:
        """True (once) when the open episode has had no NaN sample for ``episode_end_s``."""
        return self.episode_start is not None and now_ts - self.episode_last > self.episode_end_s

    def close_episode(self) -> tuple[float, float, int]:
        """(start, last NaN timestamp, NaN samples) of the open episode, which is closed."""
        out = (float(self.episode_start), float(self.episode_last), int(self.episode_samples))
        self.episode_start = None
        return out


def report_nonfinite_change(change: NonFiniteChange, events: EventPublisher, error: Exception | None = None) -> None:
    """Publish the guard's exclusions and restorations (``nonfinite_channel`` events), or
    that the operator could not follow them (``error``: no rebuilder, the channel floor)."""
    import pylsl

    now = pylsl.local_clock()
    if error is not None:
        events.publish("nonfinite_channel", now, channel=",".join(change.excluded or change.restored), action="failed", error=str(error)[:300])
        logger.error("could not exclude non-finite channel(s): %s", error)
        return
    for name in change.excluded:
        events.publish("nonfinite_channel", now, channel=name, action="excluded")
        logger.warning("channel %s delivers only NaN/Inf: excluded from the operator until it recovers", name)
    for name in change.restored:
        events.publish("nonfinite_channel", now, channel=name, action="restored")
        logger.info("channel %s is finite again: taken back into the operator", name)


class RateMonitor:
    """Effective sampling rate of the input from its timestamps (see the module docstring).

    Parameters
    ----------
    declared : float
        The stream's nominal rate (Hz).
    window_s : float
        Timestamp span over which the rate is measured.
    tolerance : float
        Relative deviation that is reported (0.02: 2 %).
    startup_s, startup_tolerance : float
        The first stretch of data: a deviation beyond ``startup_tolerance`` over
        ``startup_s`` refuses the stream (0: no start-up check).
    """

    def __init__(self, declared: float, *, window_s: float = 10.0, tolerance: float = 0.02, startup_s: float = 2.0, startup_tolerance: float = 0.1):
        self.declared = float(declared)
        self.window_s = float(window_s)
        self.tolerance = float(tolerance)
        self.startup_s = float(startup_s)
        self.startup_tolerance = float(startup_tolerance)
        self.measured = 0.0  # last measured rate (Hz), 0 before the first window
        self.off = False  # the last window was off by more than the tolerance
        self._startup_done = startup_s <= 0
        self._t0: float | None = None
        self._count = 0

    def restart(self) -> None:
        """Start a new stretch (after a gap, clock jump, skip or reconnection)."""
        self._t0 = None
        self._count = 0
        self._startup_done = True  # the start-up check covers only the first stretch

    def update(self, first_ts: float, last_ts: float, n: int) -> str:
        """Count a chunk; returns '' or one of 'refuse', 'off', 'back' (state changes)."""
        if self._t0 is None:
            self._t0 = first_ts
            self._count = n
            return ""
        self._count += n
        span = last_ts - self._t0
        if not self._startup_done and span >= self.startup_s:
            self._startup_done = True
            rate = (self._count - 1) / span
            if abs(rate / self.declared - 1.0) > self.startup_tolerance:
                self.measured = rate
                return "refuse"
        if span < self.window_s:
            return ""
        self.measured = (self._count - 1) / span
        self._t0, self._count = last_ts, 1
        off = abs(self.measured / self.declared - 1.0) > self.tolerance
        if off == self.off:
            return ""
        self.off = off
        return "off" if off else "back"


def report_rate_change(monitor: RateMonitor, change: str, stream_name: str, stats: LoopStats, events: EventPublisher) -> StreamError | None:
    """Publish a change of the effective rate (``RateMonitor.update``'s answer).

    Returns the error that refuses the stream ('refuse': the loop stops with it), else None.
    """
    import pylsl

    rate, declared = monitor.measured, monitor.declared
    stats.effective_rate_hz = rate
    if change == "refuse":
        exc = StreamError(
            f"stream {stream_name!r} declares {declared:g} Hz but delivers {rate:.4g} Hz (over its first "
            f"{monitor.startup_s:g} s of timestamps); fix the amplifier software's nominal rate, "
            f"or set the amplifier to {declared:g} Hz"
        )
        events.publish("rate_mismatch", pylsl.local_clock(), declared_hz=declared, measured_hz=round(rate, 4), action="refused")
        events.publish("stopped", pylsl.local_clock(), reason=str(exc))
        logger.error("%s", exc)
        return exc
    if change == "off":
        stats.rate_mismatches += 1
        events.publish("rate_mismatch", pylsl.local_clock(), declared_hz=declared, measured_hz=round(rate, 4), window_s=monitor.window_s)
        logger.warning("stream %r delivers %.4g Hz, not the declared %g Hz (over %g s)", stream_name, rate, declared, monitor.window_s)
    else:
        events.publish("rate_ok", pylsl.local_clock(), declared_hz=declared, measured_hz=round(rate, 4))
        logger.info("stream %r is back at its declared rate (%.4g Hz)", stream_name, rate)
    return None


@dataclass(frozen=True)
class AmplitudeWarning:
    """Amplitudes that cannot be this sensor type in the declared unit (a unit mix-up)."""

    kind: str  # sensor type: 'eeg', 'mag', 'grad'
    peak: float  # largest deviation from the chunk mean over the type's channels, SI
    too_large: bool
    units: str  # the stream's unit(s) for these channels
    message: str


# Peak deviation within a chunk beyond which (or, over all channels of a type, below which)
# the data cannot be that sensor type: scalp EEG stays well under 10 mV, and no amplifier is
# quieter than ~0.1 uV (10 nV leaves a wide margin); MEG sensors record pT (biomagnetic) to
# nT (environment left by shielding), and their noise floor is a few fT (fT/cm).
_PLAUSIBLE = {
    # kind: (smallest peak over all channels, largest peak, SI unit, the mix-ups that cause each)
    "eeg": (1e-8, 10e-3, "V", "volt numbers labelled as microvolts", "microvolt numbers labelled as volts"),
    "mag": (1e-16, 1e-7, "T", "tesla numbers labelled as femtotesla", "femtotesla numbers labelled as tesla"),
    "grad": (1e-14, 1e-5, "T/m", "T/m numbers labelled as fT/cm", "fT/cm numbers labelled as T/m"),
}


def implausible_amplitudes(x: np.ndarray, ch_types, stream_units, *, check_small: bool = True) -> list[AmplitudeWarning]:
    """Check a chunk's amplitudes per sensor type (the first chunk of a stream).

    Parameters
    ----------
    x : ndarray, shape (n_samples, n_channels)
        Finite samples in SI units (after the stream's unit conversion), operator order.
    ch_types : sequence of {"eeg", "mag", "grad"}
    stream_units : sequence of str
        The unit each channel declared in the stream.
    check_small : bool
        Also warn when every channel of a type is far too small (needs a few samples).
    """
    out = []
    types = np.asarray(ch_types)
    dev = np.abs(x - x.mean(axis=0)).max(axis=0) if len(x) else np.zeros(x.shape[1])
    for kind, (small, large, unit, small_cause, large_cause) in _PLAUSIBLE.items():
        members = types == kind
        if not members.any() or not len(x):
            continue
        peak = float(dev[members].max())
        units = "/".join(sorted({u for u, m in zip(stream_units, members) if m}))
        what = {"eeg": "scalp EEG", "mag": "a magnetometer", "grad": "a gradiometer"}[kind]
        if peak > large:
            msg = (f"the first chunk swings {peak:.3g} {unit} after unit conversion (units {units}): that is not {what}; "
                   f"the stream's unit metadata is probably wrong ({large_cause}?)")  # fmt: skip
            out.append(AmplitudeWarning(kind, peak, True, units, msg))
        elif check_small and peak < small:
            msg = (f"all {int(members.sum())} {kind.upper()} channels swing at most {peak:.3g} {unit} in the first chunk after unit "
                   f"conversion (units {units}): below any sensor's noise; the stream's unit metadata is probably wrong "
                   f"({small_cause}?) or the amplifier sends no signal")  # fmt: skip
            out.append(AmplitudeWarning(kind, peak, False, units, msg))
    return out


def report_implausible_amplitudes(chunk: np.ndarray, n: int, cmap: ChannelMap, ch_types, stats: LoopStats, events: EventPublisher) -> None:
    """Warn loudly (``unit_warning`` events) if a chunk's amplitudes cannot be its sensor types
    in the declared unit; ``chunk`` (>= n, n_stream_channels) as pulled."""
    import pylsl

    x = chunk[:n, cmap.index].astype(np.float64) * cmap.scale
    x = x[np.all(np.isfinite(x), axis=1)]
    # "too small" needs a few samples: one sample deviates from its own mean by 0
    for w in implausible_amplitudes(x, ch_types, cmap.stream_units, check_small=len(x) >= 10):
        stats.unit_warnings += 1
        events.publish("unit_warning", pylsl.local_clock(), sensor=w.kind, peak=w.peak, too_large=w.too_large, units=w.units, hint=w.message)
        logger.warning("%s", w.message)
