"""The cortex mesh behind a source stream: the surface the viewer paints the values on (no Qt).

:func:`cortex_geometry` takes it from the bundle the stream's metadata names (its own
triangulation), else from a template surface matched to the source positions by nearest
neighbour, else draws the source points.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..arrays import frozen as _readonly
from ..errors import RtsourceError, StreamError
from .layout import StreamLayout

logger = logging.getLogger(__name__)

#: The template meshes the viewer can fall back to, by number of vertices.
_TEMPLATE_SIZES = {"ico4": 5124, "ico5": 20484}
MESH_CHOICES = ("auto", "bundle", "ico4", "ico5")


@dataclass(frozen=True)
class CortexGeometry:
    """The surface the source values are painted on.

    Attributes
    ----------
    vertices_m : ndarray, shape (n_vertices, 3)
        Mesh vertices (or source points when ``faces`` is empty) in metres.
    faces : ndarray of int, shape (n_faces, 3)
        Triangles; empty for sources without a surface (volume grids): drawn as points.
    value_index : ndarray of int, shape (n_vertices,)
        For each vertex, the stream channel whose value it shows.
    missing : ndarray of int
        Vertices with no source nearby (painted as bare cortex).
    signed : bool or None
        True for signed outputs (fixed orientation), False for magnitudes (pooled),
        None when the metadata does not say.
    frame : str
        Coordinate frame of the vertices.
    origin : str
        Where the mesh came from, for the health panel ("bundle NAME", "template ico5", ...).
    cull_back_faces : bool
        The surface is closed and wound outward (counter-clockwise seen from outside), so the
        renderer may skip triangles facing away: half the rasterisation work.
    outline : ndarray of int
        Vertices painted as atlas region borders (:mod:`rtsource.display.outlines`); empty: none.
    """

    vertices_m: np.ndarray
    faces: np.ndarray
    value_index: np.ndarray
    missing: np.ndarray
    signed: bool | None
    frame: str
    origin: str
    cull_back_faces: bool = False
    outline: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def n_vertices(self) -> int:
        return len(self.vertices_m)


def _outward(vertices_m: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, bool]:
    """``faces`` wound outward and whether that could be established.

    A surface can be culled when it is closed and consistently wound (every directed edge
    has its reverse in another triangle); its winding is outward when the enclosed signed
    volume is positive, otherwise the triangles are flipped.
    """
    faces = np.asarray(faces, dtype=np.int64)
    if not len(faces):
        return faces, False
    n = int(faces.max()) + 1
    a = faces.ravel()
    b = faces[:, [1, 2, 0]].ravel()
    directed = a * n + b
    if len(np.unique(directed)) != len(directed) or not np.all(np.isin(b * n + a, directed)):
        return faces, False
    v = np.asarray(vertices_m, dtype=float)
    volume = np.einsum("ij,ij->", v[faces[:, 0]], np.cross(v[faces[:, 1]], v[faces[:, 2]])) / 6.0
    if volume < 0:
        faces = faces[:, ::-1].copy()
    return faces, True


def _surface(vertices_m, faces, value_index, missing, signed, frame, origin) -> CortexGeometry:
    faces, closed = _outward(vertices_m, faces)
    return CortexGeometry(_readonly(vertices_m, float), _readonly(faces, np.int64), _readonly(value_index, np.int64),
                          _readonly(np.reshape(missing, -1), np.int64), signed, frame, origin, closed)


def _signed_from(layout: StreamLayout) -> bool | None:
    kinds = set(layout.channel_types)
    if kinds == {"source_pooled"}:
        return False
    if kinds == {"source"}:
        return True
    n_orient = layout.meta.get("n_orient", "")
    return {"3": False, "1": True}.get(n_orient)


def _map_nearest(mesh_vertices_m: np.ndarray, sources_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest source for every mesh vertex; vertices farther than a few source spacings are missing."""
    from scipy.spatial import cKDTree

    tree = cKDTree(sources_m)
    dist, index = tree.query(mesh_vertices_m)
    if len(sources_m) > 1:
        spacing = float(np.median(tree.query(sources_m, k=2)[0][:, 1]))
    else:
        spacing = 0.01
    # a vertex more than ~3 source spacings (at least 5 mm) from any source shows no value
    limit = max(3.0 * spacing, 5e-3)
    return index.astype(np.int64), np.flatnonzero(dist > limit)


def cortex_geometry(layout: StreamLayout, *, bundle_path: str | None = None, mesh: str = "auto") -> CortexGeometry:
    """Find the surface to paint a source stream on.

    Parameters
    ----------
    layout : StreamLayout
        The source stream's layout.
    bundle_path : str, optional
        Bundle to read the mesh from instead of the one named in the metadata.
    mesh : {"auto", "bundle", "ico4", "ico5"}
        "auto": the bundle's own triangulation when it has one, else the template surface
        matching the sources; "bundle": the bundle's, or an error; "ico4" / "ico5": the
        template surface of that density (values mapped to it by nearest source; ico4 is
        the cheaper one to draw).

    Returns
    -------
    CortexGeometry

    Raises
    ------
    StreamError
        Neither the bundle nor the metadata say where the sources are.
    """
    from ..geometry import Frame

    if mesh not in MESH_CHOICES:
        raise StreamError(f"mesh = {mesh!r} is not known; use one of {', '.join(MESH_CHOICES)}")
    n = layout.n_channels
    signed = _signed_from(layout)
    path = bundle_path or layout.bundle_path
    positions = None if layout.positions_mm is None else layout.positions_mm * 1e-3
    frame = layout.meta.get("source_frame", "")
    reasons = []
    if path:
        from ..bundle import load_bundle

        try:
            bundle = load_bundle(path)
        except RtsourceError as exc:
            reasons.append(str(exc))
            logger.warning("cannot use the bundle for the cortex mesh: %s", exc)
        else:
            if bundle.n_sources != n or tuple(bundle.source_labels()) != tuple(layout.labels):
                reasons.append(f"bundle {path!r} has {bundle.n_sources} sources, the stream {n} channels with other labels")
                logger.warning("bundle %r does not match stream %r (%d sources vs %d channels)", path, layout.name, bundle.n_sources, n)
            else:
                positions = np.asarray(bundle.sources.positions_m, dtype=float)
                frame = bundle.sources.frame.value
                if signed is None:
                    signed = bundle.n_orient == 1
                if mesh in ("auto", "bundle") and len(bundle.sources.triangles):
                    return _surface(positions, bundle.sources.triangles, np.arange(n), (), signed, frame, f"bundle {Path(path).name}")
                if mesh == "bundle":
                    raise StreamError(f"bundle {path!r} has no triangulation of its sources; use --mesh auto")
    elif mesh == "bundle":
        raise StreamError(f"stream {layout.name!r} names no bundle; pass --bundle PATH or use --mesh auto")
    if mesh == "bundle":
        raise StreamError(f"cannot read the mesh from the bundle: {'; '.join(reasons)}")

    on_template = frame in ("", Frame.TEMPLATE.value)
    if on_template:
        from ..anatomy.template import template_source_space

        by_count = {v: k for k, v in _TEMPLATE_SIZES.items()}
        spacing = mesh if mesh in _TEMPLATE_SIZES else by_count.get(n, "ico5")
        space = template_source_space(spacing)
        same = n == space.n_sources and tuple(layout.labels) == space.labels()
        if same and positions is None:
            # the template's own order (labels lh_00000 ... rh_10241): no positions needed
            return _surface(space.positions_m, space.triangles, np.arange(n), (), signed, Frame.TEMPLATE.value, f"template {spacing}")
        if positions is not None:
            index, missing = _map_nearest(np.asarray(space.positions_m), positions)
            return _surface(space.positions_m, space.triangles, index, missing, signed, Frame.TEMPLATE.value, f"template {spacing}")
    if positions is not None:
        # sources in a subject's frame without a triangulation: draw them as points
        return CortexGeometry(_readonly(positions, float), _readonly(np.zeros((0, 3)), np.int64), _readonly(np.arange(n), np.int64),
                              _readonly(np.zeros(0), np.int64), signed, frame or "unknown", "source positions")
    why = f" ({'; '.join(reasons)})" if reasons else ""
    raise StreamError(
        f"stream {layout.name!r} has {n} channels without locations and no usable bundle{why}; "
        "pass the bundle with --bundle PATH"
    )

