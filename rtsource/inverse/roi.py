"""Regions of interest (ROIs) from what a user knows: a template coordinate and a radius, an
explicit vertex list, a hemisphere, or a coordinate file (``name,x,y,z[,radius]``).

The builders return :class:`~rtsource.anatomy.regions.Roi` objects; how ROIs are aggregated into
one time course each, and folded with an inverse operator, is :mod:`rtsource.roi_operator`
(the part the stream applies).

Coordinates of ROIs are in the template frame (fsaverage surface RAS, which *is* MNI305)
in millimetres. MNI152 atlas coordinates differ from MNI305 by a few millimetres (an
affine, FreeSurfer "CoordinateSystems"), less than a typical ROI radius; no transform is
applied.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..anatomy.source_space import SourceSpace
from ..errors import ConfigError, FrameError
from ..geometry import Frame
from ..anatomy.regions import Roi
from ..channel_names import check_roi_name

logger = logging.getLogger(__name__)

_HEMIS = {"lh": 0, "rh": 1}

#: An ROI with fewer sources than this triggers a warning (its time course is one or two
#: dipoles, not a region).
MIN_SOURCES_WARN = 3


# ---- constructors --------------------------------------------------------------------------

def _check_template_frame(sources: SourceSpace, what: str) -> None:
    if sources.frame != Frame.TEMPLATE:
        raise FrameError(
            f"{what} are template (MNI305) coordinates but the source space {sources.name!r} is in the "
            f"{sources.frame.value!r} frame; transform the coordinates into {sources.frame.value!r} first "
            "or use an explicit vertex list"
        )


def roi_from_sphere(
    sources: SourceSpace,
    name: str,
    centre_mm: Sequence[float],
    radius_mm: float,
    *,
    hemisphere: str | None = None,
    description: str = "",
    min_sources: int = MIN_SOURCES_WARN,
) -> Roi:
    """The sources within ``radius_mm`` of a template-frame (MNI305) coordinate.

    Parameters
    ----------
    sources : SourceSpace
        In the template frame.
    name : str
    centre_mm : sequence of 3 float
        Centre in mm, template frame (fsaverage surface RAS = MNI305).
    radius_mm : float
        Inclusive radius in mm.
    hemisphere : {'lh', 'rh'}, optional
        Keep only sources of this hemisphere (for centres near the midline).
    min_sources : int
        Warn (log) if fewer sources than this fall in the sphere.

    Raises
    ------
    ConfigError
        No source lies within the radius (the message gives the nearest source's distance).
    """
    check_roi_name(name)
    _check_template_frame(sources, f"ROI {name!r} centre_mm")
    c = np.asarray(centre_mm, dtype=np.float64)
    if c.shape != (3,) or not np.all(np.isfinite(c)):
        raise ConfigError(f"ROI {name!r}: centre_mm = {list(np.ravel(centre_mm))} must be 3 finite numbers (x, y, z in mm)")
    if not (np.isfinite(radius_mm) and radius_mm > 0):
        raise ConfigError(f"ROI {name!r}: radius_mm = {radius_mm!r} must be a positive number of mm")
    pos_mm = sources.positions_m * 1e3
    d = np.linalg.norm(pos_mm - c, axis=1)
    keep = d <= radius_mm
    if hemisphere is not None:
        if hemisphere not in _HEMIS:
            raise ConfigError(f"ROI {name!r}: hemisphere = {hemisphere!r} must be 'lh' or 'rh'")
        in_hemi = sources.hemisphere == _HEMIS[hemisphere]
        keep &= in_hemi
        d = np.where(in_hemi, d, np.inf)
    idx = np.flatnonzero(keep)
    if idx.size == 0:
        j = int(np.argmin(d))
        raise ConfigError(
            f"ROI {name!r}: no source of {sources.name!r} lies within {radius_mm:g} mm of "
            f"{np.round(c, 1).tolist()} mm{' in ' + hemisphere if hemisphere else ''}; the nearest is "
            f"{d[j]:.1f} mm away at {np.round(pos_mm[j], 1).tolist()} mm. Increase radius_mm or move the centre onto the cortex"
        )
    if idx.size < min_sources:
        logger.warning(
            "ROI %r has only %d source(s) within %g mm of %s mm; its time course is that of single dipoles, "
            "consider a larger radius",
            name, idx.size, radius_mm, np.round(c, 1).tolist(),
        )
    desc = description or f"sphere r={radius_mm:g} mm at ({c[0]:g}, {c[1]:g}, {c[2]:g}) mm template{' ' + hemisphere if hemisphere else ''}"
    return Roi(name, idx, desc)


def roi_from_vertices(sources: SourceSpace, name: str, vertices: Iterable[int], *, description: str = "") -> Roi:
    """An ROI from explicit source indices into ``sources``."""
    roi = Roi(name, np.asarray(list(vertices) if not isinstance(vertices, np.ndarray) else vertices), description or "vertex list")
    roi.check_fits(sources)
    return roi


def roi_from_hemisphere(sources: SourceSpace, hemisphere: str, *, name: str | None = None) -> Roi:
    """All sources of one hemisphere (``'lh'`` or ``'rh'``)."""
    if hemisphere not in _HEMIS:
        raise ConfigError(f"hemisphere = {hemisphere!r} must be 'lh' or 'rh'")
    idx = np.flatnonzero(sources.hemisphere == _HEMIS[hemisphere])
    if idx.size == 0:
        raise ConfigError(f"the source space {sources.name!r} has no {hemisphere} sources (volume or one-hemisphere source space)")
    return Roi(name or hemisphere, idx, f"hemisphere {hemisphere}")


def read_roi_file(
    path: str | Path,
    sources: SourceSpace,
    *,
    default_radius_mm: float | None = None,
    min_sources: int = MIN_SOURCES_WARN,
) -> tuple[Roi, ...]:
    """ROIs from a CSV file of ``name,x,y,z[,radius]`` lines (mm, template frame).

    Blank lines and lines starting with ``#`` are skipped; a first line whose first field is
    ``name`` is taken as a header. A line without a radius uses ``default_radius_mm``.

    Raises
    ------
    ConfigError
        The file is missing, a line is malformed (the message gives ``path:line``), a name
        repeats, or a sphere holds no source.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"ROI file {str(path)!r} does not exist; fix [roi] file or the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"ROI file {str(path)!r} cannot be read as UTF-8 text ({exc})") from None
    rois: list[Roi] = []
    first_line: dict[str, int] = {}
    for lineno, row in enumerate(csv.reader(text.splitlines()), start=1):
        fields = [f.strip() for f in row]
        if not fields or not any(fields) or fields[0].startswith("#"):
            continue
        where = f"{path}:{lineno}"
        if not rois and not first_line and fields[0].lower() == "name":
            continue  # header
        if len(fields) not in (4, 5):
            raise ConfigError(f"{where}: expected 'name,x,y,z[,radius]' (4 or 5 fields), got {len(fields)}: {','.join(fields)!r}")
        name = fields[0]
        try:
            check_roi_name(name)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        try:
            nums = [float(f) for f in fields[1:]]
        except ValueError:
            raise ConfigError(f"{where}: x, y, z and radius must be numbers in mm, got {','.join(fields[1:])!r}") from None
        if not all(np.isfinite(nums)):
            raise ConfigError(f"{where}: non-finite number in {','.join(fields[1:])!r}")
        if len(nums) == 4:
            radius = nums[3]
        elif default_radius_mm is not None:
            radius = float(default_radius_mm)
        else:
            raise ConfigError(f"{where}: ROI {name!r} has no radius; add a 5th field (mm) or set a default radius")
        if radius <= 0:
            raise ConfigError(f"{where}: radius {radius:g} mm must be positive")
        if name in first_line:
            raise ConfigError(f"{where}: ROI name {name!r} repeats (first on line {first_line[name]}); ROI names must be unique")
        first_line[name] = lineno
        try:
            rois.append(roi_from_sphere(sources, name, nums[:3], radius, min_sources=min_sources,
                                        description=f"sphere r={radius:g} mm at ({nums[0]:g}, {nums[1]:g}, {nums[2]:g}) mm template, {path.name}:{lineno}"))  # fmt: skip
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    if not rois:
        raise ConfigError(f"ROI file {str(path)!r} defines no ROI; add lines 'name,x,y,z[,radius]' in mm")
    return tuple(rois)
