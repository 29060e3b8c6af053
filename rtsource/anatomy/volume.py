"""Volume and discrete source spaces: a grid inside the inner skull, or the user's own points.

Orientation
-----------
Volume and discrete sources have no cortical surface, so their orientation is free: build the
inverse with ``loose = 1`` (free orientation, three dipoles per location). They still carry a
unit "normal" because :class:`~rtsource.anatomy.source_space.SourceSpace` requires one: for a
grid it is an arbitrary fixed axis (+z) and means nothing; for discrete points it is the
user's normal when given (then fixed or loose orientation are meaningful too). Both have
``hemisphere = -1`` and ``areas_m2 = 0``; :func:`orientation_is_free` tells the two apart.

CSV format of discrete points (:func:`read_source_points_csv`)
-------------------------------------------------------------
One source per line, comma separated, lengths in millimetres in the template frame (unless
the reader is told otherwise)::

    # comment lines and blank lines are ignored
    name,x,y,z[,nx,ny,nz]          <- an optional header line (first non-comment line)
    V1_left,-10.0,-95.0,5.0
    M1_hand,-38,-22,58,-0.5,0,0.866

Either every line has a normal or none has; normals must be unit vectors (to 1e-3).
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

import numpy as np

from ..errors import GeometryError
from ..geometry import Frame, Mesh, as_frame, check_same_frame, signed_distance
from .source_space import SourceSpace

logger = logging.getLogger(__name__)

__all__ = [
    "volume_source_space",
    "discrete_source_space",
    "read_source_points_csv",
    "orientation_is_free",
    "SPACING_RANGE_M",
    "FREE_NORMAL",
]

#: Allowed grid spacing in metres (2 mm gives ~190k points in a brain: more is not useful).
SPACING_RANGE_M = (0.002, 0.03)
#: The placeholder "normal" of free-orientation sources.
FREE_NORMAL = (0.0, 0.0, 1.0)
# signed_distance on blocks of points keeps its (n, candidates) temporaries small
_BLOCK = 50_000


def _as_float(value, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise GeometryError(f"{name} = {value!r} must be a number of metres") from None
    if not math.isfinite(v):
        raise GeometryError(f"{name} = {value!r} must be finite")
    return v


def _default_inner_skull(frame: Frame) -> Mesh:
    if frame != Frame.TEMPLATE:
        raise GeometryError(
            f"no inner skull for the {frame.value!r} frame: pass inner_skull (a Mesh in that frame), or "
            f"check_inside=False to skip the check"
        )
    from .template import load_template

    return load_template().surfaces.inner_skull


def _signed_distance_blocks(points_m: np.ndarray, mesh: Mesh) -> np.ndarray:
    out = np.empty(len(points_m))
    for start in range(0, len(points_m), _BLOCK):
        out[start : start + _BLOCK] = signed_distance(points_m[start : start + _BLOCK], mesh)
    return out


def volume_source_space(
    inner_skull: Mesh | None = None,
    *,
    spacing_m: float = 0.007,
    mindist_m: float = 0.005,
    exclude_m: float = 0.0,
    exclude_center_m: np.ndarray | None = None,
    name: str | None = None,
) -> SourceSpace:
    """A regular grid of free-orientation sources inside the inner skull.

    The grid points are the integer multiples of ``spacing_m`` along the axes of the mesh's
    frame (so grids of the same spacing line up across calls, as in MNE-Python's
    ``setup_volume_source_space``); a point is kept when it lies inside the inner skull by at
    least ``mindist_m`` (signed distance to the mesh, :func:`rtsource.geometry.signed_distance`)
    and at least ``exclude_m`` from ``exclude_center_m``.

    Parameters
    ----------
    inner_skull : Mesh, optional
        Closed inner-skull surface; default the template's.
    spacing_m : float
        Grid step in metres, in [0.002, 0.03]; default 7 mm (MNE-Python's volume tutorials).
    mindist_m : float
        Minimum distance from the inner skull in metres, in [0, 0.03]; default 5 mm.
    exclude_m : float
        Drop points closer than this to ``exclude_center_m`` (e.g. the MEG sphere origin,
        where a spherical MEG model sees nothing); default 0 (keep all).
    exclude_center_m : ndarray, shape (3,), optional
        Centre of the exclusion; default the centre of the sphere fitted to the inner skull.
    name : str, optional
        Default ``"volume-7mm"``.

    Returns
    -------
    SourceSpace
        ``hemisphere`` -1, ``areas_m2`` 0, normals :data:`FREE_NORMAL` (orientation free),
        no triangles, in the mesh's frame.

    Raises
    ------
    GeometryError
        Spacing or distances out of range (with the likely unit mistake), an open mesh, or a
        grid with no point inside.
    """
    spacing = _as_float(spacing_m, "spacing_m")
    lo, hi = SPACING_RANGE_M
    if not lo <= spacing <= hi:
        hint = ""
        if lo <= spacing * 1e-3 <= hi:
            hint = f" (did you mean {spacing:g} mm = {spacing * 1e-3:g} m?)"
        raise GeometryError(
            f"spacing_m = {spacing!r} is out of range [{lo}, {hi}] m{hint}; give the grid step in metres, "
            f"e.g. 0.007 for 7 mm"
        )
    mindist = _as_float(mindist_m, "mindist_m")
    if not 0.0 <= mindist <= 0.03:
        raise GeometryError(f"mindist_m = {mindist!r} must be in [0, 0.03] m (default 0.005 = 5 mm)")
    exclude = _as_float(exclude_m, "exclude_m")
    if not 0.0 <= exclude <= 0.1:
        raise GeometryError(f"exclude_m = {exclude!r} must be in [0, 0.1] m")
    mesh = inner_skull if inner_skull is not None else _default_inner_skull(Frame.TEMPLATE)
    if not isinstance(mesh, Mesh):
        raise GeometryError(f"inner_skull must be a rtsource.geometry.Mesh, got {type(mesh).__name__}")
    mesh.check_closed()
    v = mesh.vertices_m
    lo_i = np.floor(v.min(axis=0) / spacing).astype(int)
    hi_i = np.ceil(v.max(axis=0) / spacing).astype(int)
    axes = [np.arange(a, b + 1) * spacing for a, b in zip(lo_i, hi_i)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    # cheap pre-filter: points further from the vertex centroid than the farthest vertex are out
    c = v.mean(axis=0)
    grid = grid[np.linalg.norm(grid - c, axis=1) <= np.linalg.norm(v - c, axis=1).max()]
    sd = _signed_distance_blocks(grid, mesh)
    keep = sd <= -mindist
    if exclude > 0:
        if exclude_center_m is None:
            from ..geometry.sphere_fit import fit_sphere

            center, _ = fit_sphere(v)
        else:
            center = np.asarray(exclude_center_m, dtype=float)
            if center.shape != (3,) or not np.all(np.isfinite(center)):
                raise GeometryError(f"exclude_center_m must be 3 finite numbers in metres, got {exclude_center_m!r}")
        keep &= np.linalg.norm(grid - center, axis=1) >= exclude
    pos = grid[keep]
    if len(pos) == 0:
        raise GeometryError(
            f"no grid point of spacing {spacing * 1e3:g} mm lies {mindist * 1e3:g} mm inside {mesh.name!r}; "
            f"use a smaller spacing or mindist, and check the mesh is in metres"
        )
    n = len(pos)
    logger.info(
        "volume source space: %d points at %.1f mm spacing, >= %.1f mm inside %r",
        n, spacing * 1e3, mindist * 1e3, mesh.name,
    )
    return SourceSpace(
        pos,
        np.tile(FREE_NORMAL, (n, 1)),
        np.zeros(n),
        np.full(n, -1, dtype=np.int8),
        mesh.frame,
        name or f"volume-{spacing * 1e3:g}mm",
    )


def discrete_source_space(
    positions_m: np.ndarray,
    normals: np.ndarray | None = None,
    *,
    frame: Frame | str = Frame.TEMPLATE,
    inner_skull: Mesh | None = None,
    check_inside: bool = True,
    labels: tuple[str, ...] | None = None,
    name: str = "discrete",
) -> SourceSpace:
    """Sources at the user's points, with optional normals.

    Parameters
    ----------
    positions_m : ndarray, shape (n, 3)
        Positions in metres in ``frame``.
    normals : ndarray, shape (n, 3), optional
        Unit normals (to 1e-3; renormalised). Without them the orientation is free and the
        placeholder :data:`FREE_NORMAL` is stored.
    frame : Frame or str
        Frame of the positions; default TEMPLATE.
    inner_skull : Mesh, optional
        Inner skull in ``frame`` for the inside check; default the template's (TEMPLATE only).
    check_inside : bool
        Refuse points outside the inner skull.
    labels : tuple of str, optional
        Names used in error messages (the CSV reader passes its names).
    name : str

    Returns
    -------
    SourceSpace
        ``hemisphere`` -1, ``areas_m2`` 0.

    Raises
    ------
    GeometryError
        Bad shapes, non-finite values, non-unit normals, or points outside the inner skull
        (naming the point, where it is and how far out).
    """
    frame = as_frame(frame)
    pos = np.asarray(positions_m, dtype=float)
    if pos.ndim == 1 and pos.size == 3:
        pos = pos[None, :]
    if pos.ndim != 2 or pos.shape[1] != 3 or len(pos) == 0:
        raise GeometryError(f"positions_m must have shape (n >= 1, 3) in metres, got {pos.shape}")
    n = len(pos)

    def who(i: int) -> str:
        return f"point {i}" + (f" ({labels[i]!r})" if labels else "")

    bad = np.flatnonzero(~np.all(np.isfinite(pos), axis=1))
    if bad.size:
        raise GeometryError(f"{who(int(bad[0]))} has a non-finite position {pos[bad[0]].tolist()}")
    if normals is None:
        nrm = np.tile(FREE_NORMAL, (n, 1))
    else:
        nrm = np.asarray(normals, dtype=float)
        if nrm.shape != (n, 3):
            raise GeometryError(f"normals must have shape ({n}, 3) like positions_m, got {nrm.shape}")
        length = np.linalg.norm(nrm, axis=1)
        badn = np.flatnonzero(~np.isfinite(length) | (np.abs(length - 1.0) > 1e-3))
        if badn.size:
            i = int(badn[0])
            raise GeometryError(
                f"{who(i)}: normal {nrm[i].tolist()} has length {length[i]:.4g}; normals must be unit vectors "
                f"(divide by the length), or leave them out for free orientation"
            )
        nrm = nrm / length[:, None]
    if check_inside:
        mesh = inner_skull if inner_skull is not None else _default_inner_skull(frame)
        check_same_frame(mesh.frame, frame, f"mesh {mesh.name!r}", "the source points")
        sd = signed_distance(pos, mesh)
        out = np.flatnonzero(sd > 0)
        if out.size:
            i = int(out[np.argmax(sd[out])])
            raise GeometryError(
                f"{out.size} of {n} source points lie outside {mesh.name!r}; the worst is {who(i)} at "
                f"{np.round(pos[i] * 1e3, 1).tolist()} mm ({frame.value} frame), {sd[i] * 1e3:.1f} mm outside. "
                f"Check the unit (metres here; mm in CSV files) and the frame, or drop the point"
            )
    return SourceSpace(pos, nrm, np.zeros(n), np.full(n, -1, dtype=np.int8), frame, name)


def read_source_points_csv(
    path: str | Path,
    *,
    frame: Frame | str = Frame.TEMPLATE,
    inner_skull: Mesh | None = None,
    check_inside: bool = True,
) -> tuple[SourceSpace, tuple[str, ...]]:
    """Read discrete source points from a CSV file (format in the module docstring).

    Returns
    -------
    sources : SourceSpace
        In metres, ``frame``.
    names : tuple of str
        The names in file order (one per source).

    Raises
    ------
    GeometryError
        A malformed line (its line number, the text and what was expected), duplicate names,
        normals on some lines only, or points outside the inner skull (by name).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise GeometryError(f"cannot read source points file {str(path)!r}: {exc}") from None
    names: list[str] = []
    rows: list[list[float]] = []
    lines: list[int] = []
    first = True
    for lineno, row in enumerate(csv.reader(text.splitlines()), start=1):
        cells = [c.strip() for c in row]
        if not cells or not any(cells) or cells[0].startswith("#"):
            continue
        where = f"{path.name} line {lineno}"
        if first:
            first = False
            if cells[0].casefold() == "name" and len(cells) >= 4 and cells[1].casefold() == "x":
                continue  # header
        if len(cells) not in (4, 7):
            raise GeometryError(
                f"{where}: expected 4 fields (name,x,y,z) or 7 (name,x,y,z,nx,ny,nz), got {len(cells)}: "
                f"{','.join(row)!r}"
            )
        if not cells[0]:
            raise GeometryError(f"{where}: the name (first field) is empty")
        try:
            values = [float(c) for c in cells[1:]]
        except ValueError:
            raise GeometryError(
                f"{where}: fields 2-{len(cells)} must be numbers (mm, and unit normals), got {','.join(cells[1:])!r}"
            ) from None
        if not all(math.isfinite(x) for x in values):
            raise GeometryError(f"{where}: non-finite number in {','.join(cells[1:])!r}")
        if rows and len(values) != len(rows[0]):
            raise GeometryError(
                f"{where}: has {'a normal' if len(values) == 6 else 'no normal'} but line {lines[0]} "
                f"{'has none' if len(values) == 6 else 'has one'}; give normals on every line or on none"
            )
        names.append(cells[0])
        rows.append(values)
        lines.append(lineno)
    if not rows:
        raise GeometryError(f"{path.name}: no source points found (expected lines name,x,y,z[,nx,ny,nz] in mm)")
    seen: dict[str, int] = {}
    for name, ln in zip(names, lines):
        if name in seen:
            raise GeometryError(f"{path.name} line {ln}: name {name!r} already used on line {seen[name]}")
        seen[name] = ln
    data = np.asarray(rows)
    pos = data[:, :3] * 1e-3
    normals = data[:, 3:] if data.shape[1] == 6 else None
    space = discrete_source_space(
        pos,
        normals,
        frame=frame,
        inner_skull=inner_skull,
        check_inside=check_inside,
        labels=tuple(f"{n}, line {ln}" for n, ln in zip(names, lines)),
        name=f"discrete:{path.name}",
    )
    return space, tuple(names)


def orientation_is_free(space: SourceSpace) -> bool:
    """True if the sources carry no orientation (volume grids, normal-less discrete points).

    The inverse should then use ``loose = 1``. Detected as: not cortical (hemisphere -1) and
    every normal equal to the :data:`FREE_NORMAL` placeholder.
    """
    return bool(
        space.n_sources
        and np.all(space.hemisphere == -1)
        and np.allclose(space.normals, np.asarray(FREE_NORMAL)[None, :], atol=0.0, rtol=0.0)
    )
