"""Units of length and of signals, and the guess of a length unit from a point cloud's extent.

Inside rtsource everything is SI (m, V, T, A*m). Units are converted only at the edges:
readers, writers, the stream inlet and the display. This module is where the names and
factors live, so that ``"uV"``, ``"microvolts"`` and ``"µV"`` all mean 1e-6 V everywhere.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from ..errors import UnitError

logger = logging.getLogger(__name__)

#: Length units and their size in metres.
LENGTH_UNITS: dict[str, float] = {"m": 1.0, "dm": 0.1, "cm": 1e-2, "mm": 1e-3}

# Signal units: canonical name -> (SI base unit, factor to the base unit). The spellings
# below cover what LSL streams carry in practice (XDF meta-data spec uses "microvolts").
_SIGNAL_UNITS: dict[str, tuple[str, float]] = {
    "V": ("V", 1.0),
    "mV": ("V", 1e-3),
    "uV": ("V", 1e-6),
    "nV": ("V", 1e-9),
    "T": ("T", 1.0),
    "pT": ("T", 1e-12),
    "fT": ("T", 1e-15),
    "T/m": ("T/m", 1.0),
    "fT/cm": ("T/m", 1e-13),
    "fT/mm": ("T/m", 1e-12),
}
_SIGNAL_ALIASES: dict[str, str] = {
    "v": "V",
    "volt": "V",
    "volts": "V",
    "mv": "mV",
    "millivolt": "mV",
    "millivolts": "mV",
    "uv": "uV",
    "µv": "uV",
    "μv": "uV",
    "microvolt": "uV",
    "microvolts": "uV",
    "nv": "nV",
    "nanovolt": "nV",
    "nanovolts": "nV",
    "t": "T",
    "tesla": "T",
    "pt": "pT",
    "picotesla": "pT",
    "ft": "fT",
    "femtotesla": "fT",
    "t/m": "T/m",
    "ft/cm": "fT/cm",
    "ft/mm": "fT/mm",
}


def length_factor(unit: str) -> float:
    """Size of one ``unit`` in metres.

    Parameters
    ----------
    unit : str
        One of ``"m"``, ``"dm"``, ``"cm"``, ``"mm"``.

    Returns
    -------
    float
        Metres per unit.
    """
    try:
        return LENGTH_UNITS[unit]
    except KeyError:
        raise UnitError(
            f"length unit {unit!r} is not known; use one of {sorted(LENGTH_UNITS)}"
        ) from None


def convert_length(values: np.ndarray, from_unit: str, to_unit: str) -> np.ndarray:
    """Return ``values`` (any shape) converted from ``from_unit`` to ``to_unit``."""
    factor = length_factor(from_unit) / length_factor(to_unit)
    return np.asarray(values, dtype=float) * factor


def parse_signal_unit(text: str) -> tuple[str, str, float]:
    """Parse a channel unit as streams and files write it.

    Parameters
    ----------
    text : str
        For example ``"uV"``, ``"microvolts"``, ``"µV"``, ``"V"``, ``"fT"``, ``"T/m"``.

    Returns
    -------
    canonical : str
        The canonical spelling (``"uV"``).
    base : str
        The SI unit it is a multiple of (``"V"``, ``"T"`` or ``"T/m"``).
    factor : float
        Size of one ``canonical`` in ``base`` (1e-6 for ``"uV"``).
    """
    key = text.strip()
    canonical = key if key in _SIGNAL_UNITS else _SIGNAL_ALIASES.get(key.lower())
    if canonical is None:
        known = ", ".join(_SIGNAL_UNITS)
        raise UnitError(
            f"signal unit {text!r} is not known; use one of {known} "
            "(or a common spelling such as 'microvolts')"
        )
    base, factor = _SIGNAL_UNITS[canonical]
    return canonical, base, factor


def estimate_length_unit(points: np.ndarray, *, expected_extent_m: float = 0.2) -> str:
    """Guess the length unit of head-sized coordinates from their extent.

    Like FieldTrip's ``ft_estimate_units``: the diagonal of the bounding box is compared
    with the size the object is expected to have (a head is about 0.2 m across), and the
    unit that brings the two closest on a log scale wins. A warning is logged, because a
    guess is a guess; readers that know the unit from the file must not call this.

    Parameters
    ----------
    points : ndarray, shape (n, 3)
        Coordinates in an unknown unit.
    expected_extent_m : float
        The extent the object has in metres (0.2 for a head or electrode cap).

    Returns
    -------
    str
        ``"m"``, ``"cm"`` or ``"mm"``.
    """
    pts = np.asarray(points, dtype=float)
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) < 2:
        raise UnitError(
            f"cannot guess a unit from points of shape {pts.shape}; need (n >= 2, 3)"
        )
    finite = pts[np.all(np.isfinite(pts), axis=1)]
    extent = float(np.linalg.norm(np.ptp(finite, axis=0))) if len(finite) >= 2 else 0.0
    if not extent > 0:
        raise UnitError("cannot guess a unit: all points coincide (extent 0)")
    best = min(
        ("m", "cm", "mm"),
        key=lambda u: abs(math.log10(extent * LENGTH_UNITS[u] / expected_extent_m)),
    )
    logger.warning(
        "unit not given: guessed %r from an extent of %.4g (expected about %.2g m); "
        "pass the unit explicitly if this is wrong",
        best,
        extent,
        expected_extent_m,
    )
    return best
