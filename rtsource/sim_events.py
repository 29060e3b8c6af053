"""Simulator sources for event-related and connectivity tests: evoked responses and coupled pairs.

Ground truth the epoch and connectivity stages must recover:

- :class:`EvokedSource`: a Gaussian moment ``A exp(-((t - t_m - latency) / width)^2 / 2)``
  along the cortical normal after every marker ``t_m`` of its event (0 before ``t_m``); the markers follow an
  :class:`EventSchedule` (interval plus uniform jitter) and the simulator publishes them on
  its own marker outlet, stamped with the LSL time of the sample they refer to.
- :class:`CoupledPair`: two narrowband sources sharing a rhythm with a known phase lag. The
  rhythm is a complex AR(1) process ``z[n] = rho e^{i w} z[n-1] + sqrt(1 - rho^2) e[n]`` (a
  one-pole complex resonator driven by complex white noise: positive frequencies only, so
  ``Re(z e^{-i phi})`` is ``Re z`` delayed in phase by ``phi`` at every frequency of the band;
  ``rho = exp(-pi B / sfreq)`` gives a -3 dB bandwidth of about ``B``). Source A is
  ``sqrt(2) Re z_1``; source B is ``sqrt(2) Re(c z_1 e^{-i phi} + sqrt(1 - c^2) z_2)`` with
  coupling ``c`` and an independent ``z_2``, so A leads B by ``phi`` and
  ``|coherency| = c``.

:class:`EventedSources` produces their moments block by block (deterministic for a seed);
:class:`rtsource.simulator.SignalGenerator` projects them through its own forward model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ConfigError


@dataclass(frozen=True)
class EvokedSource:
    """An event-locked source: position (template frame, mm), peak moment (nA*m), latency and width (s)."""

    position_mm: tuple[float, float, float]
    amplitude_nam: float = 30.0
    latency_s: float = 0.1
    width_s: float = 0.02
    event: str = "stim"

    def __post_init__(self) -> None:
        if not (self.latency_s >= 0 and self.width_s > 0 and np.isfinite(self.amplitude_nam)):
            raise ConfigError(f"evoked source {self!r}: latency_s must be >= 0, width_s > 0 and amplitude_nam finite")


@dataclass(frozen=True)
class CoupledPair:
    """Two sources sharing a narrowband rhythm, B lagging A by ``lag_deg`` with coupling ``coupling`` (0..1)."""

    position_a_mm: tuple[float, float, float]
    position_b_mm: tuple[float, float, float]
    frequency_hz: float = 10.0
    bandwidth_hz: float = 2.0
    amplitude_nam: float = 50.0
    lag_deg: float = 90.0
    coupling: float = 0.8

    def __post_init__(self) -> None:
        if not 0 <= self.coupling <= 1:
            raise ConfigError(f"coupled pair: coupling = {self.coupling!r} must be in [0, 1]")
        if not (self.frequency_hz > 0 and self.bandwidth_hz > 0):
            raise ConfigError(f"coupled pair: frequency_hz = {self.frequency_hz!r} and bandwidth_hz = {self.bandwidth_hz!r} must be > 0")


@dataclass(frozen=True)
class EventSchedule:
    """Markers every ``interval_s`` plus uniform jitter in [0, jitter_s), cycling through ``events``."""

    events: tuple[str, ...] = ("stim",)
    interval_s: float = 1.0
    jitter_s: float = 0.2
    first_s: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "events", tuple(self.events))
        if not self.events or self.interval_s <= 0 or self.jitter_s < 0 or self.first_s < 0:
            raise ConfigError(f"event schedule {self!r}: needs events, interval_s > 0, jitter_s >= 0, first_s >= 0")


class EventedSources:
    """Moments (A*m) of evoked sources and coupled pairs, and the markers, block by block.

    Columns: the evoked sources in order, then ``a, b`` of each pair (:attr:`positions_mm`).
    """

    def __init__(self, sfreq: float, evoked=(), pairs=(), schedule: EventSchedule | None = None, seed: int = 0):
        self.sfreq = float(sfreq)
        self.evoked = tuple(evoked)
        self.pairs = tuple(pairs)
        self.schedule = schedule or EventSchedule(events=tuple(dict.fromkeys(e.event for e in self.evoked)) or ("stim",))
        missing = {e.event for e in self.evoked} - set(self.schedule.events)
        if missing:
            raise ConfigError(f"evoked sources respond to {sorted(missing)}, which the schedule never sends ({list(self.schedule.events)})")
        for p in self.pairs:
            if p.frequency_hz + p.bandwidth_hz >= self.sfreq / 2:
                raise ConfigError(f"coupled pair at {p.frequency_hz:g} Hz is too close to the Nyquist frequency {self.sfreq / 2:g} Hz")
        self._rng = np.random.default_rng(seed)
        self._next = 0  # next sample index
        self._next_marker = int(round(self.schedule.first_s * self.sfreq))
        self._n_markers = 0
        self._recent: list[tuple[str, int]] = []  # markers whose responses may still be running
        self._span = max([int(np.ceil((e.latency_s + 6 * e.width_s) * self.sfreq)) for e in self.evoked] + [0])
        self._ar = [(np.exp(-np.pi * p.bandwidth_hz / self.sfreq) * np.exp(2j * np.pi * p.frequency_hz / self.sfreq)) for p in self.pairs]
        self._z = np.zeros((len(self.pairs), 2), dtype=complex)

    @property
    def positions_mm(self) -> list[tuple[float, float, float]]:
        out = [tuple(e.position_mm) for e in self.evoked]
        for p in self.pairs:
            out += [tuple(p.position_a_mm), tuple(p.position_b_mm)]
        return out

    @property
    def n_sources(self) -> int:
        return len(self.evoked) + 2 * len(self.pairs)

    def next(self, n: int) -> tuple[np.ndarray, list[tuple[str, int]]]:
        """The next ``n`` samples: moments (n, n_sources) in A*m and markers ``(event, sample_index)``."""
        from scipy.signal import lfilter

        start = self._next
        markers = []
        while self._next_marker < start + n:
            name = self.schedule.events[self._n_markers % len(self.schedule.events)]
            markers.append((name, self._next_marker))
            self._n_markers += 1
            gap = self.schedule.interval_s + self._rng.uniform(0, self.schedule.jitter_s)
            self._next_marker += max(1, int(round(gap * self.sfreq)))
        self._recent = [m for m in self._recent if m[1] + self._span >= start] + markers
        out = np.zeros((n, self.n_sources))
        t = start + np.arange(n)
        for j, e in enumerate(self.evoked):
            for name, k in self._recent:
                if name == e.event:  # causal, and cut 6 widths after the peak (block-size independent)
                    dt = (t - k) / self.sfreq
                    on = (dt >= 0) & (t - k <= int(np.ceil((e.latency_s + 6 * e.width_s) * self.sfreq)))
                    out[:, j] += np.where(on, e.amplitude_nam * 1e-9 * np.exp(-0.5 * ((dt - e.latency_s) / e.width_s) ** 2), 0.0)
        for q, (p, a) in enumerate(zip(self.pairs, self._ar)):
            rho = abs(a)
            drive = (self._rng.standard_normal((2, n)) + 1j * self._rng.standard_normal((2, n))) * np.sqrt((1 - rho**2) / 2)
            z, zf = lfilter([1.0], [1.0, -a], drive, axis=1, zi=self._z[q][:, None])
            self._z[q] = zf[:, 0]
            c = p.coupling
            amp = p.amplitude_nam * 1e-9 * np.sqrt(2)
            col = len(self.evoked) + 2 * q
            out[:, col] = amp * z[0].real
            out[:, col + 1] = amp * (c * z[0] * np.exp(-1j * np.deg2rad(p.lag_deg)) + np.sqrt(1 - c**2) * z[1]).real
        self._next += n
        return out, markers
