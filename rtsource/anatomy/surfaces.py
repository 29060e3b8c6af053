"""A user's cortical surfaces (GIFTI or FreeSurfer) as a source space.

Reading needs nibabel (the optional extra ``peers``: ``pip install "rtsource[peers]"`` or
``pip install nibabel``). Coordinates in the files are millimetres; the source space is in
metres, in the frame the caller names (FreeSurfer surfaces are in the subject's MRI surface
RAS, ``Frame.MRI``; fsaverage's are in the template frame, ``Frame.TEMPLATE``).

What each source carries
------------------------
- position: the kept surface vertex;
- normal: the dense surface's area-weighted vertex normal, oriented outward (the winding is
  checked per hemisphere from the enclosed volume and flipped, with a warning, if inverted);
- area: the cortical patch it stands for -- the dense vertex areas (a third of each adjacent
  triangle) summed over the dense vertices closest to it (on the sphere for ``ico``; along
  the mesh edges, a graph Voronoi partition by Dijkstra, for ``n_sources``), so the patch
  areas add up to the surface area;
- hemisphere: 0 (left) or 1 (right).

Decimation
----------
``ico=k`` (needs each hemisphere's sphere, ``?h.sphere`` or ``?h.sphere.reg``): the vertices
closest on the sphere to the vertices of an order-``k`` icosahedron in FreeSurfer's
orientation, with that icosahedron's triangles (as MNE-Python's ``spacing="ico4"``). On
fsaverage these are exactly its first 10 * 4**k + 2 vertices. ``k`` = 3, 4, 5 give 642, 2562,
10242 sources per hemisphere.

``n_sources=N`` (no sphere needed): farthest-point sampling -- start from the vertex furthest
from the hemisphere's centroid, then repeatedly add the vertex furthest (straight-line
distance) from all chosen ones, which spreads the N sources evenly over the surface (Eldar et
al. 1997, IEEE TIP 6:1305). N is split over the hemispheres in proportion to their areas. The
triangles of the decimated surface come from vertex clustering (Rossignac & Borrel 1993):
each dense triangle whose three vertices fall in three different patches adds a triangle
between those patches' sources (for display only).
"""

from __future__ import annotations

import logging
import math
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import GeometryError
from ..geometry import Frame, Mesh, as_frame
from ..geometry.icosphere import icosphere, n_vertices
from ..geometry.units import convert_length
from .source_space import SourceSpace

logger = logging.getLogger(__name__)

__all__ = ["read_surface", "cortical_source_space", "freesurfer_icosphere"]

_NIBABEL_HINT = 'reading cortical surfaces needs nibabel: pip install "rtsource[peers]" (or pip install nibabel)'


def _nibabel():
    try:
        import nibabel
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise ImportError(_NIBABEL_HINT) from None
    return nibabel


def _is_gifti(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".gii") or name.endswith(".gii.gz")


def read_surface(path: str | Path, *, frame: Frame | str = Frame.MRI, unit: str = "mm", name: str | None = None) -> Mesh:
    """Read a triangulated surface from a GIFTI (``.gii``, ``.gii.gz``) or FreeSurfer file.

    Parameters
    ----------
    path : str or Path
        GIFTI surface (a POINTSET and a TRIANGLE data array) or a FreeSurfer geometry file
        (``lh.white``, ``rh.pial``, ``lh.sphere.reg``, ...).
    frame : Frame or str
        Frame of the coordinates (default MRI: FreeSurfer surface RAS).
    unit : str
        Length unit in the file (FreeSurfer and GIFTI surfaces use millimetres).
    name : str, optional
        Mesh name for messages; default the file name.

    Returns
    -------
    Mesh
        In metres.

    Raises
    ------
    GeometryError
        Unreadable file, missing arrays, bad shapes or triangle indices.
    ImportError
        nibabel is not installed (the message says how to install it).
    """
    nib = _nibabel()
    path = Path(path)
    label = name or path.name
    if not path.is_file():
        raise GeometryError(f"surface file {str(path)!r} does not exist")
    try:
        if _is_gifti(path):
            img = nib.load(str(path))
            darrays = getattr(img, "darrays", None)
            if darrays is None:
                raise GeometryError(f"{label}: not a GIFTI image ({type(img).__name__})")
            code = nib.nifti1.intent_codes.code
            pts = [d for d in darrays if d.intent == code["NIFTI_INTENT_POINTSET"]]
            tri = [d for d in darrays if d.intent == code["NIFTI_INTENT_TRIANGLE"]]
            if len(pts) != 1 or len(tri) != 1:
                raise GeometryError(
                    f"{label}: a GIFTI surface needs exactly one POINTSET and one TRIANGLE data array, found "
                    f"{len(pts)} and {len(tri)} (is this a surface, not a shape/func/label file?)"
                )
            verts = np.asarray(pts[0].data, dtype=float)
            faces = np.asarray(tri[0].data, dtype=np.int64)
        else:
            verts, faces = nib.freesurfer.read_geometry(str(path))[:2]
            verts = np.asarray(verts, dtype=float)
            faces = np.asarray(faces, dtype=np.int64)
    except GeometryError:
        raise
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise GeometryError(f"cannot read surface {str(path)!r}: {type(exc).__name__}: {exc}") from None
    if verts.ndim != 2 or verts.shape[1] != 3 or len(verts) < 4:
        raise GeometryError(f"{label}: vertices must have shape (n >= 4, 3), got {verts.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) < 4:
        raise GeometryError(f"{label}: triangles must have shape (n >= 4, 3), got {faces.shape}")
    return Mesh(convert_length(verts, unit, "m"), faces, as_frame(frame), "m", label)


def _as_mesh(value, what: str, frame: Frame, unit: str) -> Mesh:
    if isinstance(value, Mesh):
        if value.frame != frame:
            raise GeometryError(
                f"{what} mesh {value.name!r} is in the {value.frame.value!r} frame but frame={frame.value!r} "
                f"was requested; transform it first or pass the matching frame"
            )
        return value.to_unit("m")
    return read_surface(value, frame=frame, unit=unit, name=f"{what} ({Path(value).name})")


# --------------------------------------------------------------------------------------
# FreeSurfer-oriented icosahedra
# --------------------------------------------------------------------------------------

# FreeSurfer's icosahedron (ic0.tri) has a vertex at the north pole and one at
# (2/sqrt(5), 0, 1/sqrt(5)). rtsource.geometry.icosphere starts from the golden-ratio
# icosahedron; the rotation below maps its vertex 0 to the pole and its vertex 1 to that
# second vertex, after which both have the same 12 vertices, and (subdivision commuting
# with rotations) the same vertices at every order.
@lru_cache(maxsize=1)
def _freesurfer_rotation() -> np.ndarray:
    v, _ = icosphere(0)
    fs0 = np.array([0.0, 0.0, 1.0])
    fs1 = np.array([2.0 / math.sqrt(5.0), 0.0, 1.0 / math.sqrt(5.0)])

    def basis(a, b):
        e2 = b - (b @ a) * a
        e2 /= np.linalg.norm(e2)
        return np.column_stack([a, e2, np.cross(a, e2)])

    return basis(fs0, fs1) @ basis(v[0], v[1]).T


def freesurfer_icosphere(order: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit icosphere of ``order`` in FreeSurfer's orientation (vertices, triangles)."""
    v, t = icosphere(order)
    return v @ _freesurfer_rotation().T, t


# --------------------------------------------------------------------------------------
# Patches, decimation
# --------------------------------------------------------------------------------------


def _edge_graph(mesh: Mesh):
    from scipy.sparse import coo_matrix

    t = mesh.triangles
    v = mesh.vertices_m
    e = np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
    e = np.unique(np.sort(e, axis=1), axis=0)
    w = np.linalg.norm(v[e[:, 0]] - v[e[:, 1]], axis=1)
    w = np.maximum(w, 1e-12)  # coincident vertices: keep the edge (0 would drop it)
    n = len(v)
    g = coo_matrix((np.r_[w, w], (np.r_[e[:, 0], e[:, 1]], np.r_[e[:, 1], e[:, 0]])), shape=(n, n))
    return g.tocsr()


def _patches(mesh: Mesh, kept: np.ndarray) -> np.ndarray:
    """For every dense vertex the position in ``kept`` of its nearest kept vertex along edges."""
    from scipy.sparse.csgraph import dijkstra

    _, _, nearest = dijkstra(_edge_graph(mesh), directed=False, indices=kept, min_only=True, return_predecessors=True)
    owner = np.full(len(mesh.vertices), -1, dtype=np.int64)
    reach = nearest >= 0
    pos_in_kept = np.full(len(mesh.vertices), -1, dtype=np.int64)
    pos_in_kept[kept] = np.arange(len(kept))
    owner[reach] = pos_in_kept[nearest[reach]]
    if np.any(~reach):
        # vertices in a component without kept vertex (islands): nearest kept vertex in space
        from scipy.spatial import cKDTree

        _, j = cKDTree(mesh.vertices_m[kept]).query(mesh.vertices_m[~reach])
        owner[~reach] = j
        logger.warning(
            "%s: %d vertices are not connected to any kept vertex; assigned by straight-line distance",
            mesh.name, int((~reach).sum()),
        )
    return owner


def _farthest_points(points: np.ndarray, n: int) -> np.ndarray:
    """Farthest-point sampling (Eldar et al. 1997): indices of ``n`` well-spread points.

    Only points within the current largest distance of a new sample can get closer to the
    sample set, so each step updates a k-d tree ball instead of every point.
    """
    from scipy.spatial import cKDTree

    tree = cKDTree(points)
    c = points.mean(axis=0)
    first = int(np.argmax(np.linalg.norm(points - c, axis=1)))
    chosen = np.empty(n, dtype=np.int64)
    chosen[0] = first
    diff = points - points[first]
    dist = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    for k in range(1, n):
        nxt = int(np.argmax(dist))
        chosen[k] = nxt
        near = np.asarray(tree.query_ball_point(points[nxt], float(dist[nxt])), dtype=np.int64)
        if near.size:
            diff = points[near] - points[nxt]
            dist[near] = np.minimum(dist[near], np.sqrt(np.einsum("ij,ij->i", diff, diff)))
        dist[nxt] = 0.0
    return np.sort(chosen)


def _cluster_triangles(triangles: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Vertex-clustering triangles (Rossignac & Borrel 1993) over the patches."""
    t = owner[triangles]
    ok = (t[:, 0] != t[:, 1]) & (t[:, 1] != t[:, 2]) & (t[:, 0] != t[:, 2])
    t = t[ok]
    # one triangle per unordered triple, keeping the first occurrence's winding
    key = np.sort(t, axis=1)
    _, first = np.unique(key, axis=0, return_index=True)
    return t[np.sort(first)]


def _ico_subset(sphere: Mesh, order: int, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense vertices nearest to a FreeSurfer-oriented ico ``order``, its triangles, the patches.

    The patch of a kept vertex is the dense vertices nearest to it on the sphere, where the
    cells are regular (on the folded surface, ties between neighbours break erratically).
    """
    from scipy.spatial import cKDTree

    s = sphere.vertices_m
    r = np.linalg.norm(s, axis=1)
    if np.any(r <= 0) or (r.max() - r.min()) > 0.05 * r.mean():
        raise GeometryError(
            f"{what}: {sphere.name!r} is not a sphere centred at the origin (radii {r.min() * 1e3:.1f}-"
            f"{r.max() * 1e3:.1f} mm); pass the hemisphere's ?h.sphere or ?h.sphere.reg file"
        )
    ico_v, ico_t = freesurfer_icosphere(order)
    _, idx = cKDTree(s / r[:, None]).query(ico_v)
    if len(np.unique(idx)) != len(idx):
        raise GeometryError(
            f"{what}: the sphere {sphere.name!r} ({len(s)} vertices) is too coarse or distorted for ico{order} "
            f"({n_vertices(order)} vertices): several icosahedron vertices map onto one surface vertex; "
            f"use a lower order or n_sources="
        )
    order_idx = np.argsort(idx, kind="stable")
    kept = idx[order_idx]
    remap = np.empty(len(idx), dtype=np.int64)
    remap[order_idx] = np.arange(len(idx))
    _, owner = cKDTree(s[kept] / r[kept, None]).query(s / r[:, None])
    return kept, remap[ico_t], owner


def _outward(mesh: Mesh) -> Mesh:
    vol = mesh.signed_volume()
    if vol < 0:
        logger.warning("%s: triangles wound inward (volume %.3g m^3); flipping them so normals point outward", mesh.name, vol)
        return Mesh(mesh.vertices, mesh.triangles[:, ::-1], mesh.frame, mesh.unit, mesh.name)
    return mesh


def _hemisphere_space(mesh: Mesh, kept: np.ndarray | None, triangles: np.ndarray | None, owner: np.ndarray | None = None):
    """Positions, normals, areas, triangles of one hemisphere (all vertices or ``kept``).

    ``owner`` (dense vertex -> position in ``kept``) defaults to the graph Voronoi patches.
    """
    normals = mesh.vertex_normals()
    areas = mesh.vertex_areas()
    zero = np.flatnonzero(np.linalg.norm(normals, axis=1) < 0.5)
    if kept is None:
        if zero.size:
            raise GeometryError(
                f"{mesh.name}: {zero.size} vertices belong to no triangle (first: {int(zero[0])}), so they have no "
                f"normal; remove unused vertices or decimate (n_sources=)"
            )
        return mesh.vertices_m, normals, areas, mesh.triangles
    if np.isin(kept, zero).any():
        raise GeometryError(f"{mesh.name}: a kept vertex belongs to no triangle; the surface has stray vertices")
    if owner is None:
        owner = _patches(mesh, kept)
    patch_area = np.bincount(owner, weights=areas, minlength=len(kept))
    tris = triangles if triangles is not None else _cluster_triangles(mesh.triangles, owner)
    return mesh.vertices_m[kept], normals[kept], patch_area, tris


def cortical_source_space(
    lh: str | Path | Mesh | None = None,
    rh: str | Path | Mesh | None = None,
    *,
    frame: Frame | str = Frame.MRI,
    unit: str = "mm",
    ico: int | None = None,
    lh_sphere: str | Path | Mesh | None = None,
    rh_sphere: str | Path | Mesh | None = None,
    n_sources: int | None = None,
    name: str | None = None,
) -> SourceSpace:
    """A cortical source space from a user's surfaces (see the module docstring).

    Parameters
    ----------
    lh, rh : path or Mesh, optional
        Left / right hemisphere surfaces (typically ``lh.white``/``rh.white`` or GIFTI files);
        at least one.
    frame : Frame or str
        Frame of the surfaces (MRI for a subject's FreeSurfer surfaces, TEMPLATE for fsaverage).
    unit : str
        Length unit in the files (mm); ignored for Mesh inputs.
    ico : int, optional
        Icosahedral subset of this order (1..6), needs ``lh_sphere``/``rh_sphere``.
    lh_sphere, rh_sphere : path or Mesh, optional
        The hemispheres' spheres (same vertex count and order as the surfaces).
    n_sources : int, optional
        Total target count by farthest-point sampling (split by area over hemispheres).
        Neither ``ico`` nor ``n_sources``: every vertex is a source.
    name : str, optional

    Returns
    -------
    SourceSpace
        Metres, ``frame``; left hemisphere first.

    Raises
    ------
    GeometryError
        No hemisphere, both ``ico`` and ``n_sources``, a missing or mismatched sphere, a count
        out of range, unreadable files.
    ImportError
        Reading files without nibabel.
    """
    frame = as_frame(frame)
    if lh is None and rh is None:
        raise GeometryError("cortical_source_space needs at least one hemisphere: pass lh=... and/or rh=...")
    if ico is not None and n_sources is not None:
        raise GeometryError(f"give either ico={ico!r} or n_sources={n_sources!r}, not both")
    hemis = [(h, surf, sph) for h, surf, sph in ((0, lh, lh_sphere), (1, rh, rh_sphere)) if surf is not None]
    meshes = [(h, _outward(_as_mesh(surf, "lh" if h == 0 else "rh", frame, unit)), sph) for h, surf, sph in hemis]
    parts = []
    if ico is not None:
        if isinstance(ico, bool) or not isinstance(ico, (int, np.integer)) or not 1 <= int(ico) <= 6:
            raise GeometryError(f"ico = {ico!r} must be an icosahedron order in 1..6 (4: 2562 sources per hemisphere)")
        for h, mesh, sph in meshes:
            what = "lh" if h == 0 else "rh"
            if sph is None:
                raise GeometryError(
                    f"ico={ico} needs the {what} sphere ({what}_sphere=path to {what}.sphere or {what}.sphere.reg); "
                    f"without it use n_sources="
                )
            sphere = _as_mesh(sph, f"{what} sphere", frame, unit)
            if len(sphere.vertices) != len(mesh.vertices):
                raise GeometryError(
                    f"{what}: the sphere has {len(sphere.vertices)} vertices but the surface {len(mesh.vertices)}; "
                    f"they must be the same subject's files"
                )
            kept, tris, owner = _ico_subset(sphere, int(ico), what)
            parts.append((h, *_hemisphere_space(mesh, kept, tris, owner)))
        label = f"ico{ico}"
    elif n_sources is not None:
        total_dense = sum(len(m.vertices) for _, m, _ in meshes)
        if isinstance(n_sources, bool) or not isinstance(n_sources, (int, np.integer)) or not 4 * len(meshes) <= n_sources <= total_dense:
            raise GeometryError(
                f"n_sources = {n_sources!r} must be an integer in [{4 * len(meshes)}, {total_dense}] "
                f"(the surfaces have {total_dense} vertices)"
            )
        area = np.array([m.triangle_areas().sum() for _, m, _ in meshes])
        counts = np.floor(n_sources * area / area.sum()).astype(int)
        counts[: n_sources - counts.sum()] += 1  # hand out the remainder
        for (h, mesh, _), k in zip(meshes, counts):
            k = int(min(max(k, 4), len(mesh.vertices)))
            kept = _farthest_points(mesh.vertices_m, k)
            parts.append((h, *_hemisphere_space(mesh, kept, None)))
        label = f"{n_sources}"
    else:
        for h, mesh, _ in meshes:
            parts.append((h, *_hemisphere_space(mesh, None, None)))
        label = "full"
    pos, nrm, area_list, hemi, tris = [], [], [], [], []
    offset = 0
    for h, p, n, a, t in parts:
        pos.append(p)
        nrm.append(n)
        area_list.append(a)
        hemi.append(np.full(len(p), h, dtype=np.int8))
        tris.append(np.asarray(t, dtype=np.int64) + offset)
        offset += len(p)
    space = SourceSpace(
        np.vstack(pos),
        np.vstack(nrm),
        np.concatenate(area_list),
        np.concatenate(hemi),
        frame,
        name or f"cortex-{label}",
        np.vstack(tris),
    )
    logger.info(
        "cortical source space %r: %d sources, total area %.0f cm^2", space.name, space.n_sources, space.areas_m2.sum() * 1e4
    )
    return space
