"""Source spaces: where the inverse places its dipoles."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import GeometryError
from ..geometry import Frame, Transform, as_frame, check_same_frame
from ..geometry.points import readonly_array


@dataclass(frozen=True)
class SourceSpace:
    """Dipole locations with their orientation information.

    Parameters
    ----------
    positions_m : ndarray, shape (n_sources, 3)
        Dipole positions in metres.
    normals : ndarray, shape (n_sources, 3)
        Unit surface normals (outward from white matter) for cortical sources; used for
        fixed and loose orientation. Volume sources carry an arbitrary unit vector.
    areas_m2 : ndarray, shape (n_sources,)
        Cortical patch area each source stands for, in m^2 (0 for volume sources).
    hemisphere : ndarray of int8, shape (n_sources,)
        0 left, 1 right, -1 not cortical.
    frame : Frame
        Coordinate frame of positions and normals.
    name : str
        Short description ("fsaverage ico4 white", ...), written into bundles and outlets.
    triangles : ndarray of int, shape (n_triangles, 3)
        Surface triangulation over these sources (for display), or shape (0, 3).
    """

    positions_m: np.ndarray
    normals: np.ndarray
    areas_m2: np.ndarray
    hemisphere: np.ndarray
    frame: Frame
    name: str = "sources"
    triangles: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), dtype=np.int64))

    def __post_init__(self) -> None:
        object.__setattr__(self, "frame", as_frame(self.frame))
        pos = readonly_array(self.positions_m, shape_tail=(3,), name="source positions")
        nrm = readonly_array(self.normals, shape_tail=(3,), name="source normals")
        n = len(pos)
        if len(nrm) != n:
            raise GeometryError(f"{len(nrm)} normals for {n} source positions")
        lengths = np.linalg.norm(nrm, axis=1)
        if n and np.max(np.abs(lengths - 1)) > 1e-3:
            i = int(np.argmax(np.abs(lengths - 1)))
            raise GeometryError(f"source normal {i} has length {lengths[i]:.4g}; normals must be unit vectors")
        areas = readonly_array(self.areas_m2, name="source areas")
        hemi = readonly_array(self.hemisphere, dtype=np.int8, name="hemisphere")
        if areas.shape != (n,) or hemi.shape != (n,):
            raise GeometryError(f"areas {areas.shape} and hemisphere {hemi.shape} must have shape ({n},)")
        tris = readonly_array(self.triangles, dtype=np.int64, name="source triangles").reshape(-1, 3)
        if len(tris) and (tris.min() < 0 or tris.max() >= n):
            raise GeometryError(f"source triangles index outside [0, {n - 1}]")
        for key, val in (("positions_m", pos), ("normals", nrm), ("areas_m2", areas), ("hemisphere", hemi), ("triangles", tris)):
            object.__setattr__(self, key, val)

    @property
    def n_sources(self) -> int:
        return len(self.positions_m)

    def labels(self) -> tuple[str, ...]:
        """One ASCII name per source: ``lh_00042``, ``rh_00007`` or ``src_00003``."""
        prefix = {0: "lh", 1: "rh"}
        counters = {0: 0, 1: 0, -1: 0}
        out = []
        for h in self.hemisphere.tolist():
            out.append(f"{prefix.get(h, 'src')}_{counters[h]:05d}")
            counters[h] += 1
        return tuple(out)

    def transformed(self, transform: Transform) -> "SourceSpace":
        check_same_frame(self.frame, transform.from_frame, "the source space", "the transform's input")
        return SourceSpace(
            transform.apply_m(self.positions_m),
            transform.apply_vectors(self.normals),
            self.areas_m2,
            self.hemisphere,
            transform.to_frame,
            self.name,
            self.triangles,
        )

    def subset(self, index: np.ndarray, name: str | None = None) -> "SourceSpace":
        """Keep the sources in ``index`` (triangles are dropped unless all kept)."""
        index = np.asarray(index, dtype=np.int64)
        tris = np.zeros((0, 3), np.int64)
        if len(self.triangles):
            remap = np.full(self.n_sources, -1)
            remap[index] = np.arange(len(index))
            t = remap[self.triangles]
            tris = t[np.all(t >= 0, axis=1)]
        return SourceSpace(
            self.positions_m[index],
            self.normals[index],
            self.areas_m2[index],
            self.hemisphere[index],
            self.frame,
            name or self.name,
            tris,
        )


def nearest_source(space: SourceSpace, positions_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the closest source to each position and the distance in metres."""
    from scipy.spatial import cKDTree

    d, i = cKDTree(space.positions_m).query(np.atleast_2d(positions_m))
    return i, d
