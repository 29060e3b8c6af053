"""Argument checks shared by the inverse modules (messages name the value and the fix)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import InverseError


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


def check_reference_matrix(reference, n_chan: int, name: str = "reference") -> np.ndarray:
    ref = np.asarray(reference, dtype=np.float64)
    if ref.shape != (n_chan, n_chan):
        raise InverseError(
            f"{name} has shape {ref.shape}, expected ({n_chan}, {n_chan}) for {n_chan} "
            "channels; pass e.g. average_reference_matrix(n_chan) or np.eye(n_chan)"
        )
    if not np.all(np.isfinite(ref)):
        raise InverseError(f"{name} contains non-finite values; pass a finite matrix")
    return ref


#: Sensor types a channel can have (``ch_types`` arguments, bundle ``ch_types``).
CH_TYPES = ("eeg", "mag", "grad")


def check_ch_types(ch_types, n_chan: int) -> tuple[str, ...] | None:
    """Validate ``ch_types`` (None, or one of :data:`CH_TYPES` per channel)."""
    if ch_types is None:
        return None
    if isinstance(ch_types, str):
        raise InverseError(
            f"ch_types is the string {ch_types!r}; pass one type per channel, e.g. "
            f"('eeg',) * {n_chan}"
        )
    types = tuple(str(t).lower() for t in ch_types)
    if len(types) != n_chan:
        raise InverseError(
            f"ch_types has {len(types)} entries for {n_chan} channels; pass one type per "
            "channel in the covariance's order"
        )
    bad = sorted({t for t in types if t not in CH_TYPES})
    if bad:
        raise InverseError(
            f"ch_types contains {', '.join(repr(b) for b in bad)}; every channel must be "
            f"one of {', '.join(CH_TYPES)}"
        )
    return types
