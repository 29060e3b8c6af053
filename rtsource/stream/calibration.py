"""Capturing a calibration recording from a live stream (for the noise covariance)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ..errors import ConfigError, StreamError
from .channels import StreamDescription, map_stream_channels
from .inlet import Inlet, StreamSelector, resolve_stream

logger = logging.getLogger(__name__)

#: Longest calibration capture ([noise_cov] and [data_cov] seconds have the same bound).
MAX_CAPTURE_S = 600.0


@dataclass(frozen=True)
class Calibration:
    """Samples captured from a stream, in the requested channel order, in SI units."""

    data: np.ndarray  # (n_samples, n_channels), V
    timestamps: np.ndarray  # (n_samples,)
    ch_names: tuple[str, ...]
    stream: StreamDescription
    gaps: int


def capture_calibration(
    selector: StreamSelector,
    ch_names: tuple[str, ...],
    seconds: float,
    *,
    ch_units: tuple[str, ...] | None = None,
    ch_types: tuple[str, ...] | None = None,
    resolve_timeout: float = 10.0,
    assume_unit: str = "",
    aliases: Mapping[str, str] | None = None,
    skip_seconds: float = 0.0,
) -> Calibration:
    """Record ``seconds`` of data from a stream, mapped by channel name to SI units.

    Parameters
    ----------
    skip_seconds : float
        Discard this much first (amplifier settling).
    """
    if not (np.isfinite(seconds) and 0 < seconds <= MAX_CAPTURE_S) or not (np.isfinite(skip_seconds) and 0 <= skip_seconds <= MAX_CAPTURE_S):
        raise ConfigError(
            f"calibration of {seconds!r} s (skipping {skip_seconds!r} s): give a positive number of seconds, at most {MAX_CAPTURE_S:g} "
            "(longer captures add nothing to a covariance and hold GBs of samples in memory)"
        )
    info = resolve_stream(selector, resolve_timeout)
    inlet = Inlet(info, max_chunk=1024, open_timeout=resolve_timeout)
    try:
        desc = inlet.description
        units = ch_units or ("V",) * len(ch_names)
        cmap = map_stream_channels(desc, tuple(ch_names), tuple(units), aliases=aliases, assume_unit=assume_unit, ch_types=ch_types)
        n_skip = int(round(skip_seconds * desc.sfreq))
        n_want = int(round(seconds * desc.sfreq))
        out = np.empty((n_want, len(ch_names)))
        stamps = np.empty(n_want)
        got = skipped = 0
        last_data = time.monotonic()
        while got < n_want:
            ts = inlet.pull(timeout=0.2)
            n = len(ts)
            if n == 0:
                if time.monotonic() - last_data > max(5.0, 10.0 / desc.sfreq):
                    raise StreamError(f"stream {desc.name!r} stopped sending during calibration ({got} of {n_want} samples captured)")
                continue
            last_data = time.monotonic()
            block = inlet.buffer[:n, cmap.index].astype(np.float64) * cmap.scale
            if skipped < n_skip:
                drop = min(n, n_skip - skipped)
                skipped += drop
                block, ts = block[drop:], ts[drop:]
            take = min(len(ts), n_want - got)
            out[got : got + take] = block[:take]
            stamps[got : got + take] = ts[:take]
            got += take
        gaps = int(np.sum(np.diff(stamps) > 3.0 / desc.sfreq)) if n_want > 1 else 0
        if gaps:
            logger.warning("calibration recording has %d gaps in its timestamps", gaps)
        return Calibration(out, stamps, tuple(ch_names), desc, gaps)
    finally:
        inlet.close()
