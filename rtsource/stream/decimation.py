"""Decimation before the operator: a causal anti-aliasing filter, then every D-th sample.

``[stream] output_rate_hz`` (0: off) lowers the rate at which the operator is applied. The
input is filtered in channel space (the operator's channels, after gathering and the
``[preprocess]`` filter) by a causal Butterworth low-pass appended to the same cascade of
second-order sections, so its state carries across chunks, hot swaps and gaps exactly as
the pre-processing filter's does; then only every ``D = input_rate / output_rate``-th
sample is kept and the operator is applied to those alone, which divides the operator's
cost per second of data by ``D``.

The filter (Butterworth, Oppenheim & Schafer 2010, sec. 7.2; designed by
:func:`~rtsource.stream.filter_design.butter_sos`):

- pass-band: -3 dB at ``0.2 * output_rate`` (100 Hz for a 500 Hz output), maximally flat
  below;
- stop-band: at least :data:`MIN_ATTENUATION_DB` (60 dB) from the new Nyquist frequency
  ``output_rate / 2`` up, the order chosen as the smallest that reaches it (8 for 5 kHz ->
  500 Hz: 63.7 dB at 250 Hz);
- group delay: :attr:`AntiAliasFilter.group_delay_s`, the delay of the pass-band's low end
  (8.1 ms for 5 kHz -> 500 Hz), which the loop adds to its latency telemetry: the output's
  content lags its timestamps by that much.

Timestamps: output sample ``i`` is the filter's output at input sample ``k0 + i * D`` and
carries that input sample's own timestamp. The phase ``k0`` runs on across chunks (a chunk
of 7 samples at D = 10 may keep none, the next one two), so no input position is kept twice
or skipped, whatever the chunk sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

#: Attenuation (dB) the anti-aliasing filter reaches at and above the new Nyquist frequency.
MIN_ATTENUATION_DB = 60.0
#: Pass-band edge (-3 dB) as a fraction of the output rate.
PASSBAND_FRACTION = 0.2
_MAX_ORDER = 16


@dataclass(frozen=True)
class AntiAliasFilter:
    """A designed decimation stage.

    Attributes
    ----------
    factor : int
        D: one output sample per D input samples.
    input_rate_hz, output_rate_hz : float
    sos : ndarray, shape (n_sections, 6)
        The causal low-pass, at the input rate (rows ``[b0, b1, b2, 1, a1, a2]``).
    passband_hz : float
        -3 dB edge.
    stopband_hz : float
        The new Nyquist frequency, from which on the attenuation is at least ``attenuation_db``.
    attenuation_db : float
        Attenuation at ``stopband_hz`` (it only grows above, up to the input's Nyquist).
    group_delay_s : float
        Group delay at the pass-band's low end (s).
    order : int
    """

    factor: int
    input_rate_hz: float
    output_rate_hz: float
    sos: np.ndarray
    passband_hz: float
    stopband_hz: float
    attenuation_db: float
    group_delay_s: float
    order: int

    def describe(self) -> dict[str, str]:
        """The stage as text fields, for the output streams' metadata."""
        return {
            "input_rate_hz": f"{self.input_rate_hz:g}",
            "output_rate_hz": f"{self.output_rate_hz:g}",
            "decimation_factor": str(self.factor),
            "antialias": f"causal Butterworth low-pass, order {self.order}",
            "antialias_passband_hz": f"{self.passband_hz:g}",
            "antialias_stopband_hz": f"{self.stopband_hz:g}",
            "antialias_attenuation_db": f"{self.attenuation_db:.1f}",
            "antialias_group_delay_ms": f"{self.group_delay_s * 1e3:.3f}",
        }


def sos_response(sos: np.ndarray, freqs_hz: np.ndarray, fs: float) -> np.ndarray:
    """Complex frequency response of second-order sections at ``freqs_hz`` (as scipy's sosfreqz)."""
    z = np.exp(-2j * np.pi * np.asarray(freqs_hz, dtype=float) / fs)
    h = np.ones_like(z)
    for b0, b1, b2, a0, a1, a2 in np.asarray(sos, dtype=float):
        h = h * (b0 + b1 * z + b2 * z * z) / (a0 + a1 * z + a2 * z * z)
    return h


def group_delay(sos: np.ndarray, freq_hz: float, fs: float, step_hz: float | None = None) -> float:
    """Group delay (s) of ``sos`` at ``freq_hz``: -d(phase)/d(omega), by a central difference."""
    step = step_hz or fs * 1e-5
    f = np.array([max(freq_hz - step, 0.0), freq_hz + step])
    phase = np.unwrap(np.angle(sos_response(sos, f, fs)))
    return float(-(phase[1] - phase[0]) / (2 * np.pi * (f[1] - f[0])))


def design_antialias(input_rate_hz: float, output_rate_hz: float) -> AntiAliasFilter:
    """The decimation stage from ``input_rate_hz`` to ``output_rate_hz``.

    Raises
    ------
    ConfigError
        When the output rate is not the input rate divided by a whole number >= 2.
    """
    from .filter_design import butter_sos

    ratio = input_rate_hz / output_rate_hz if output_rate_hz > 0 else 0.0
    factor = int(round(ratio))
    if output_rate_hz <= 0 or factor < 2 or abs(ratio - factor) > 1e-9 * ratio:
        divisors = [input_rate_hz / d for d in range(2, 11) if (input_rate_hz / d) == int(input_rate_hz / d)]
        raise ConfigError(
            f"[stream] output_rate_hz = {output_rate_hz:g} Hz must be the input rate {input_rate_hz:g} Hz divided by a whole "
            f"number >= 2 (e.g. {', '.join(f'{d:g}' for d in divisors[:4]) or input_rate_hz / 2}), or 0 for no decimation"
        )
    passband = PASSBAND_FRACTION * output_rate_hz
    stopband = output_rate_hz / 2.0
    for order in range(2, _MAX_ORDER + 1):
        sos = butter_sos(order, passband, "lowpass", input_rate_hz)
        worst = _worst_attenuation(sos, stopband, input_rate_hz)
        if worst >= MIN_ATTENUATION_DB:
            break
    else:  # pragma: no cover - factor >= 2 always reaches 60 dB by order 16
        raise ConfigError(f"no Butterworth of order <= {_MAX_ORDER} reaches {MIN_ATTENUATION_DB} dB at {stopband:g} Hz")
    delay = group_delay(sos, passband * 0.05, input_rate_hz)
    return AntiAliasFilter(factor, float(input_rate_hz), float(output_rate_hz), sos, passband, stopband, worst, delay, order)


def _worst_attenuation(sos: np.ndarray, stopband_hz: float, fs: float) -> float:
    """Smallest attenuation (dB) between ``stopband_hz`` and fs / 2."""
    f = np.linspace(stopband_hz, fs / 2.0, 512)
    return float(-20.0 * np.log10(np.max(np.abs(sos_response(sos, f, fs)))))
