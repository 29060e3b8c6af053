"""Argument checks shared by the operator builders (messages name the value and the fix)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import InverseError
from .covariance import DataCovariance, NoiseCovariance


def short_list(items: Sequence, n: int = 6) -> str:
    """``"a, b, c, ... (64 in all)"`` for error messages."""
    items = [str(i) for i in items]
    if len(items) <= n:
        return ", ".join(items)
    return ", ".join(items[:n]) + f", ... ({len(items)} in all)"



def check_scalar(name: str, value, *, low: float, low_open: bool, high=None, fix: str):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InverseError(f"{name} is {value!r}; {fix}") from None
    ok = np.isfinite(v) and (v > low if low_open else v >= low)
    if high is not None:
        ok = ok and v <= high
    if not ok:
        raise InverseError(f"{name} is {value!r}; {fix}")
    return v


def check_channels(op_names: tuple[str, ...], cov_names: tuple[str, ...]) -> None:
    if op_names == cov_names:
        return
    missing = [c for c in op_names if c not in cov_names]
    extra = [c for c in cov_names if c not in op_names]
    parts = []
    if missing:
        parts.append(f"missing from the covariance: {short_list(missing)}")
    if extra:
        parts.append(f"only in the covariance: {short_list(extra)}")
    if not parts:
        moved = [
            f"{i}: {a} (covariance has {b})"
            for i, (a, b) in enumerate(zip(op_names, cov_names))
            if a != b
        ]
        parts.append(
            f"same channels in a different order, first at position {short_list(moved, 3)}"
        )
    raise InverseError(
        "noise_cov.ch_names do not match the gain's channels ("
        + "; ".join(parts)
        + "); re-estimate the covariance on the operator's channels in the same order"
    )


def check_noise_cov(noise_cov, ch_names) -> tuple[str, ...]:
    """Validate the noise covariance; returns the channel names of the operator."""
    if not isinstance(noise_cov, NoiseCovariance) or isinstance(noise_cov, DataCovariance):
        what = type(noise_cov).__name__
        raise InverseError(
            f"noise_cov is a {what}; pass a NoiseCovariance (estimate_noise_covariance "
            "or ad_hoc_noise_covariance)"
            + (
                " -- a DataCovariance contains the activity and belongs to a beamformer's "
                "data_cov"
                if what == "DataCovariance"
                else ""
            )
        )
    names = noise_cov.ch_names if ch_names is None else tuple(str(c) for c in ch_names)
    check_channels(names, noise_cov.ch_names)
    return names

