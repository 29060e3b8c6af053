"""Source time courses published by rtsource as an MNE ``SourceEstimate``."""

from __future__ import annotations

import logging

import numpy as np

from ...bundle import OperatorBundle
from ...errors import ConfigError
from ._common import import_mne
from .sources import source_vertices

logger = logging.getLogger(__name__)


def to_source_estimate(timestamps, values, bundle: OperatorBundle, *, tmin: float | None = None, gaps: str = "nan", subject: str | None = None):
    """Source time courses published by rtsource as an MNE ``SourceEstimate``.

    Parameters
    ----------
    timestamps : array, shape (n_samples,)
        LSL timestamps of the samples (e.g. a collector's or pyxdf's ``time_stamps``).
    values : array, shape (n_samples, n_sources)
        The source outlet's values (its channel order is the bundle's source order).
    bundle : OperatorBundle
        The bundle that produced them.
    tmin : float, optional
        Time of the first sample in the estimate (default 0: times relative to the first
        timestamp; pass ``timestamps[0]`` to keep LSL time).
    gaps : {"nan", "raise"}
        Samples missing from regular timing (a gap in the stream) become NaN columns, or
        an error.
    subject : str, optional
        Override the subject (default: from the bundle).

    Returns
    -------
    mne.SourceEstimate, mne.VolSourceEstimate or mne.MixedSourceEstimate
    """
    mne = import_mne()
    ts = np.asarray(timestamps, dtype=np.float64).ravel()
    y = np.asarray(values, dtype=np.float64)
    if y.ndim != 2 or y.shape != (len(ts), bundle.n_sources):
        raise ConfigError(f"values have shape {y.shape}; expected ({len(ts)} timestamps, {bundle.n_sources} sources of the bundle)")
    if len(ts) == 0:
        raise ConfigError("no samples to convert")
    kinds, vertices, indices, subj = source_vertices(bundle)
    step = 1.0 / bundle.sfreq
    pos = np.round((ts - ts[0]) / step).astype(np.int64)
    if np.any(np.diff(pos) <= 0):
        raise ConfigError("timestamps repeat or go backwards; pass the samples of one stream in the order received")
    n_times = int(pos[-1]) + 1
    if n_times != len(ts):
        missing = n_times - len(ts)
        if gaps == "raise":
            raise ConfigError(f"{missing} sample(s) are missing from regular timing at {bundle.sfreq:g} Hz (gaps in the stream); pass gaps='nan'")
        logger.warning("%d sample(s) missing at %g Hz: NaN in the SourceEstimate", missing, bundle.sfreq)
    data = np.full((bundle.n_sources, n_times), np.nan)
    data[:, pos] = y.T
    order = np.concatenate(indices)
    data = data[order]
    t0 = 0.0 if tmin is None else float(tmin)
    subject = subject or subj or None
    surf = [k in ("lh", "rh") for k in kinds]
    if kinds == ["lh", "rh"]:
        return mne.SourceEstimate(data, vertices, t0, step, subject=subject)
    if not any(surf):
        return mne.VolSourceEstimate(data, vertices, t0, step, subject=subject)
    if kinds[:2] == ["lh", "rh"]:
        return mne.MixedSourceEstimate(data, vertices, t0, step, subject=subject)
    raise ConfigError(f"source spaces {kinds} cannot make an MNE SourceEstimate (it needs lh then rh, or volumes)")


__all__ = ["to_source_estimate"]
