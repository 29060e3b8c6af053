"""The built-in simulator's samples as an in-memory recording (no LSL): data for examples,
tests and calibrations without an amplifier."""

from __future__ import annotations

from pathlib import Path

from ..config import Settings
from ..errors import ConfigError
from .setup import as_settings


def simulate_recording(config: Settings | str | Path | None = None, seconds: float = 10.0):
    """``seconds`` of what ``rtsource simulate`` would publish, as a :class:`~rtsource.recordings.Recording`.

    Parameters
    ----------
    config : Settings, str, Path or None
        ``[simulate]`` (sources, noise, rate, unit, seed, ``baseline_seconds`` of noise
        only at the start) and ``[sensors]`` (channels, modality).
    seconds : float
        Length in s.

    Returns
    -------
    rtsource.recordings.Recording
        ``data`` (n_samples, n_channels) float32 in the published units (EEG in
        ``[simulate] unit``, magnetometers in T, gradiometers in T/m), channel names, types
        and units as the simulated stream declares them. The same seed gives the same samples.
    """
    import numpy as np

    from ..recordings import Recording
    from ..simulator import SignalGenerator, publish_scale, simulated_channels

    settings = as_settings(config)
    sim = settings.simulate
    n = int(round(seconds * sim.sfreq))
    if n < 1:
        raise ConfigError(f"seconds = {seconds!r}: need at least one sample at {sim.sfreq:g} Hz")
    names, array = simulated_channels(settings)
    gen = SignalGenerator(sim, names, array)
    data, _ = gen.next(n)
    data = (data * publish_scale(gen.ch_types, sim.unit)).astype(np.float32)
    units = {"eeg": sim.unit, "mag": "T", "grad": "T/m"}
    return Recording(
        data, gen.sfreq, gen.ch_names, tuple("EEG" if t == "eeg" else "MEG" for t in gen.ch_types), tuple(units[t] for t in gen.ch_types),
        name=sim.stream_name, type="MEG" if "eeg" not in gen.ch_types else "EEG", path="<simulated>", format="simulated",
    )  # fmt: skip
