"""Artifact correction: offline calibration and per-chunk processing.

- :mod:`.asr`: artifact subspace reconstruction (Mullen et al. 2015): :func:`.asr.calibrate_asr`
  makes an :class:`.asr.AsrCalibration` (data for the bundle), :class:`.asr.AsrProcessor`
  repairs chunk by chunk with the numba kernels of :mod:`._kernels`.
- :mod:`.regression`: EOG regression (Gratton et al. 1983; Croft & Barry 2000):
  :func:`.regression.fit_eog_regression`, :class:`.regression.EogRegressor`.
- :mod:`.projection`: ocular/cardiac patterns for SSP (:func:`.projection.fit_projection`),
  folded into the operator at build time.
- :mod:`.calibration`: :class:`.calibration.ArtifactCalibration`, what the bundle carries,
  and :mod:`.stage`, the per-chunk stage it makes for the stream operator.

This package belongs to the offline side and to the per-chunk kernels alike: it never
imports ``stream/`` or ``display/``; the stream gets its stage from the bundle's calibration.
"""

from .asr import AsrCalibration, AsrEpisode, AsrProcessor, AsrStats, calibrate_asr
from .calibration import METHOD_ORDER, ArtifactCalibration
from .projection import ArtifactProjection, fit_projection
from .regression import EogRegression, EogRegressor, fit_eog_regression

__all__ = ["METHOD_ORDER", "ArtifactCalibration", "ArtifactProjection", "fit_projection", "AsrCalibration", "AsrEpisode", "AsrProcessor", "AsrStats", "EogRegression", "EogRegressor", "calibrate_asr", "fit_eog_regression"]
