"""Artifact correction: offline calibration and per-chunk processing.

- :mod:`.asr`: artifact subspace reconstruction (Mullen et al. 2015): :func:`.asr.calibrate_asr`
  makes an :class:`.asr.AsrCalibration` (data for the bundle), :class:`.asr.AsrProcessor`
  repairs chunk by chunk with the numba kernels of :mod:`._kernels`.

This package belongs to the offline side and to the per-chunk kernels alike: it never
imports ``stream/`` or ``display/``; the stream loop will hold an ``AsrProcessor``.
"""

from .asr import AsrCalibration, AsrEpisode, AsrProcessor, AsrStats, calibrate_asr

__all__ = ["AsrCalibration", "AsrEpisode", "AsrProcessor", "AsrStats", "calibrate_asr"]
