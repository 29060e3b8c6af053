"""Length units of position files: spellings, and the check that a unit makes a head head-sized.

A unit the file states is used; a unit passed by the caller overrides it; only when neither
exists is it guessed from the extent (:func:`rtsource.geometry.estimate_length_unit`). A
stated unit that the extent contradicts -- a head that would be under 5 cm or over 1 m
across, when a unit 10 or more times smaller or larger makes it head-sized -- is refused with
:class:`~rtsource.errors.UnitError` (millimetres read as metres and the reverse).
"""

from __future__ import annotations

import math

import numpy as np

from ...errors import UnitError
from ...geometry.units import LENGTH_UNITS, estimate_length_unit

#: A head-sized point set (electrodes, fiducials, headshape) spans this much (bounding-box
#: diagonal, metres). Outside it in the stated unit, but inside it in another unit, the
#: stated unit is refused.
HEAD_EXTENT_RANGE_M = (0.05, 1.0)


_UNIT_SPELLINGS = {
    "m": "m", "meter": "m", "meters": "m", "metre": "m", "metres": "m",
    "cm": "cm", "centimeter": "cm", "centimeters": "cm", "centimetre": "cm", "centimetres": "cm",
    "mm": "mm", "millimeter": "mm", "millimeters": "mm", "millimetre": "mm", "millimetres": "mm",
    "dm": "dm",
}  # fmt: skip


def parse_length_unit(text: str, *, where: str = "unit") -> str:
    """Canonical length unit (``"m"``, ``"cm"``, ``"mm"``, ``"dm"``) for a spelling."""
    key = text.strip().strip("[]()").strip().casefold()
    try:
        return _UNIT_SPELLINGS[key]
    except KeyError:
        raise UnitError(f"{where}: length unit {text.strip()!r} is not known; use one of m, cm, mm") from None


def _extent(points: np.ndarray) -> float:
    return float(np.linalg.norm(np.ptp(points, axis=0))) if len(points) >= 2 else 0.0


def check_unit_against_extent(positions: np.ndarray, unit: str, *, where: str, source: str = "stated") -> None:
    """Refuse a unit that makes head-sized data implausibly small or large.

    Parameters
    ----------
    positions : ndarray, shape (n, 3)
        Coordinates as written in the file.
    unit : str
        The unit they are said to be in.
    where : str
        The file (for the message).
    source : str
        Who said so (``"stated in the file"``, ``"passed as unit="``).

    Raises
    ------
    UnitError
        When the bounding-box diagonal in ``unit`` is outside :data:`HEAD_EXTENT_RANGE_M`
        while another of m / cm / mm (a factor of 10 or more away) brings it inside.
        Fewer than 3 points, or coincident points, are not checked.
    """
    pts = np.asarray(positions, dtype=float)
    if len(pts) < 3:
        return
    extent = _extent(pts)
    if not extent > 0:
        return
    lo, hi = HEAD_EXTENT_RANGE_M
    size = extent * LENGTH_UNITS[unit]
    if lo <= size <= hi:
        return
    fits = [u for u in ("m", "cm", "mm") if lo <= extent * LENGTH_UNITS[u] <= hi]
    if fits:
        better = min(fits, key=lambda u: abs(math.log10(extent * LENGTH_UNITS[u] / 0.2)))
        raise UnitError(
            f"{where}: positions are said to be in {unit!r} ({source}) but then the head would be "
            f"{size * 1e3:.4g} mm across (bounding-box diagonal of {len(pts)} points), not the "
            f"50-1000 mm of a head; the numbers fit {better!r} (the head would be "
            f"{extent * LENGTH_UNITS[better] * 1e3:.0f} mm across). Fix the unit in the file or pass "
            f"unit={better!r}"
        )


def resolve_unit(
    stated_unit: str | None,
    stated_line: int,
    positions: np.ndarray,
    unit_arg: str | None,
    where: str,
    fmt_unit: str | None = None,
) -> tuple[str, str]:
    """The unit of a file's numbers and where it came from (argument, file, format or guess).

    Parameters
    ----------
    stated_unit : str or None
        The canonical unit the file states (None if it states none).
    stated_line : int
        The line it is stated on (0: not a line, e.g. a sidecar JSON).
    positions : ndarray, shape (n, 3)
        The numbers as written in the file.
    unit_arg : str or None
        The unit the caller passed (wins over the file).
    where : str
        The file (for messages).
    fmt_unit : str or None
        The unit the format fixes (BrainVision: mm), used when the file states none.

    Returns
    -------
    unit : str
    source : {"argument", "file", "format", "guessed from extent"}
    """
    if unit_arg is not None:
        unit = parse_length_unit(unit_arg, where=f"{where}: unit argument")
        check_unit_against_extent(positions, unit, where=where, source="passed as unit=")
        return unit, "argument"
    if stated_unit is not None:
        src = "stated in the file" + (f" on line {stated_line}" if stated_line else "")
        check_unit_against_extent(positions, stated_unit, where=where, source=src)
        return stated_unit, "file"
    if fmt_unit is not None:
        check_unit_against_extent(positions, fmt_unit, where=where, source="fixed by the format")
        return fmt_unit, "format"
    if len(positions) < 2 or not _extent(positions) > 0:
        raise UnitError(
            f"{where}: the file does not state a unit and {len(positions)} point(s) are too few to "
            f"guess it from their extent; pass unit='mm' (or 'cm', 'm')"
        )
    unit = estimate_length_unit(positions)
    size = _extent(positions) * LENGTH_UNITS[unit]
    lo, hi = HEAD_EXTENT_RANGE_M
    if len(positions) >= 3 and not lo <= size <= hi:
        raise UnitError(
            f"{where}: the file does not state a unit and its {len(positions)} points span "
            f"{_extent(positions):.4g} (bounding-box diagonal), not head-sized in m, cm or mm; "
            f"check the file or pass unit="
        )
    return unit, "guessed from extent"


__all__ = ["HEAD_EXTENT_RANGE_M", "check_unit_against_extent", "parse_length_unit", "resolve_unit"]
