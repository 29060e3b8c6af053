"""Triangle-mesh intersection checks: a surface that cuts itself, two surfaces that cross.

A boundary-element model needs surfaces that are closed, do not intersect themselves and do
not cross each other; vertex tests (:func:`~rtsource.geometry.check_nested`) miss an edge
that pokes through a thin skull between two vertices, so these checks work on triangles.

Candidate pairs come from bounding spheres (centroid and the farthest vertex) in a k-d
tree; each candidate is decided exactly by segment-triangle tests (Moller & Trumbore 1997,
J Graph Tools 2:21): two triangles that are not coplanar intersect if and only if an edge of
one meets the other. Triangles that share a vertex are tested with their opposite edges
only, and triangles that share an edge intersect only when folded flat onto each other.
Exactly coplanar overlaps of triangles that share nothing are not detected (they do not
occur on surfaces resampled from images or spheres).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from ..errors import GeometryError
from .frames import check_same_frame
from .mesh import Mesh

__all__ = [
    "check_no_crossing",
    "check_self_intersection",
    "self_intersections",
    "surface_crossings",
]

# Two triangles sharing an edge whose normals are this close to opposite are folded onto
# each other (a dihedral angle under ~2.6 degrees), which no head surface has.
_FOLD_COS = -0.999


def _bounding_spheres(v: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = v[t]
    c = p.mean(axis=1)
    r = np.linalg.norm(p - c[:, None, :], axis=2).max(axis=1)
    return c, r


def _segments_hit_triangles(p, q, a, b, c) -> np.ndarray:
    """True where segment p->q meets triangle (a, b, c), all (k, 3); endpoints included.

    Moller & Trumbore (1997); a segment parallel to the triangle's plane counts as a miss
    (the coplanar case is handled, where it matters, by the fold test).
    """
    d = q - p
    e1 = b - a
    e2 = c - a
    h = np.cross(d, e2)
    det = np.einsum("ij,ij->i", e1, h)
    scale = np.linalg.norm(d, axis=1) * np.linalg.norm(e1, axis=1) * np.linalg.norm(e2, axis=1)
    ok = np.abs(det) > 1e-12 * np.maximum(scale, 1e-300)
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    s = p - a
    u = inv * np.einsum("ij,ij->i", s, h)
    qv = np.cross(s, e1)
    w = inv * np.einsum("ij,ij->i", d, qv)
    t = inv * np.einsum("ij,ij->i", e2, qv)
    return ok & (u >= 0) & (w >= 0) & (u + w <= 1) & (t >= 0) & (t <= 1)


def _edges_hit(v1, t1, v2, t2, i, j, edges1=(0, 1, 2), edges2=(0, 1, 2)) -> np.ndarray:
    """For candidate pairs (i[k] of mesh 1, j[k] of mesh 2): does an edge of one meet the other?"""
    hit = np.zeros(len(i), bool)
    p1 = v1[t1[i]]
    p2 = v2[t2[j]]
    for e in edges1:
        hit |= _segments_hit_triangles(p1[:, e], p1[:, (e + 1) % 3], p2[:, 0], p2[:, 1], p2[:, 2])
    for e in edges2:
        hit |= _segments_hit_triangles(p2[:, e], p2[:, (e + 1) % 3], p1[:, 0], p1[:, 1], p1[:, 2])
    return hit


def self_intersections(mesh: Mesh) -> np.ndarray:
    """Pairs of triangles of ``mesh`` that intersect each other.

    Parameters
    ----------
    mesh : Mesh

    Returns
    -------
    pairs : ndarray of int, shape (n_pairs, 2)
        Triangle indices (i < j), sorted; empty for a clean surface.
    """
    v = mesh.vertices_m
    t = mesh.triangles
    if len(t) < 2:
        return np.zeros((0, 2), np.int64)
    c, r = _bounding_spheres(v, t)
    tree = cKDTree(c)
    pairs = tree.query_pairs(2.0 * float(r.max()) * (1 + 1e-9), output_type="ndarray")
    if len(pairs) == 0:
        return np.zeros((0, 2), np.int64)
    i, j = pairs[:, 0], pairs[:, 1]
    near = np.linalg.norm(c[i] - c[j], axis=1) <= (r[i] + r[j]) * (1 + 1e-9)
    i, j = i[near], j[near]
    ti, tj = t[i], t[j]
    shared = (ti[:, :, None] == tj[:, None, :])  # (k, 3, 3): vertex a of i equals vertex b of j
    n_shared = shared.sum(axis=(1, 2))
    bad = np.zeros(len(i), bool)

    # no shared vertex: full edge-triangle tests
    m0 = n_shared == 0
    bad[m0] = _edges_hit(v, t, v, t, i[m0], j[m0])

    # one shared vertex: the edge opposite the shared vertex of each triangle against the other
    m1 = np.flatnonzero(n_shared == 1)
    if len(m1):
        ka = np.argmax(shared[m1].any(axis=2), axis=1)  # position of the shared vertex in i
        kb = np.argmax(shared[m1].any(axis=1), axis=1)  # ... and in j
        pi = v[t[i[m1]]]
        pj = v[t[j[m1]]]
        rows = np.arange(len(m1))
        oa0, oa1 = pi[rows, (ka + 1) % 3], pi[rows, (ka + 2) % 3]
        ob0, ob1 = pj[rows, (kb + 1) % 3], pj[rows, (kb + 2) % 3]
        hit = _segments_hit_triangles(oa0, oa1, pj[:, 0], pj[:, 1], pj[:, 2])
        hit |= _segments_hit_triangles(ob0, ob1, pi[:, 0], pi[:, 1], pi[:, 2])
        bad[m1] = hit

    # a shared edge: intersecting only when folded flat onto each other
    m2 = np.flatnonzero(n_shared == 2)
    if len(m2):
        nrm = mesh.triangle_normals()
        bad[m2] = np.einsum("ij,ij->i", nrm[i[m2]], nrm[j[m2]]) < _FOLD_COS

    out = np.stack([i[bad], j[bad]], axis=1).astype(np.int64)
    return out[np.lexsort((out[:, 1], out[:, 0]))] if len(out) else out


def surface_crossings(a: Mesh, b: Mesh) -> np.ndarray:
    """Pairs (triangle of ``a``, triangle of ``b``) that intersect or touch.

    Parameters
    ----------
    a, b : Mesh
        Two surfaces in the same frame.

    Returns
    -------
    pairs : ndarray of int, shape (n_pairs, 2)
        Column 0 indexes ``a.triangles``, column 1 ``b.triangles``; empty when disjoint.

    Raises
    ------
    FrameError
        If the meshes are in different frames.
    """
    check_same_frame(a.frame, b.frame, f"mesh {a.name!r}", f"mesh {b.name!r}")
    va, ta = a.vertices_m, a.triangles
    vb, tb = b.vertices_m, b.triangles
    if len(ta) == 0 or len(tb) == 0:
        return np.zeros((0, 2), np.int64)
    ca, ra = _bounding_spheres(va, ta)
    cb, rb = _bounding_spheres(vb, tb)
    dist = cKDTree(ca).sparse_distance_matrix(cKDTree(cb), float(ra.max() + rb.max()) * (1 + 1e-9), output_type="ndarray")
    if len(dist) == 0:
        return np.zeros((0, 2), np.int64)
    i = dist["i"].astype(np.int64)
    j = dist["j"].astype(np.int64)
    near = dist["v"] <= (ra[i] + rb[j]) * (1 + 1e-9)
    i, j = i[near], j[near]
    hit = _edges_hit(va, ta, vb, tb, i, j)
    out = np.stack([i[hit], j[hit]], axis=1)
    return out[np.lexsort((out[:, 1], out[:, 0]))] if len(out) else out


def _where(points_m: np.ndarray) -> str:
    return "(" + ", ".join(f"{x * 1e3:.1f}" for x in points_m) + ") mm"


def check_self_intersection(mesh: Mesh) -> None:
    """Raise :class:`GeometryError` if ``mesh`` intersects itself, saying where.

    Raises
    ------
    GeometryError
        Naming the mesh, the number of intersecting triangle pairs, the first pair and its
        location in the mesh's frame.
    """
    pairs = self_intersections(mesh)
    if len(pairs):
        i, j = (int(x) for x in pairs[0])
        v = mesh.vertices_m
        where = (v[mesh.triangles[i]].mean(axis=0) + v[mesh.triangles[j]].mean(axis=0)) / 2
        raise GeometryError(
            f"mesh {mesh.name!r} intersects itself: {len(pairs)} pairs of triangles cross, the "
            f"first is triangles {i} and {j} near {_where(where)} in the {mesh.frame.value!r} "
            f"frame; repair the surface (remove the fold, e.g. by smoothing or remeshing it)"
        )


def check_no_crossing(inner: Mesh, outer: Mesh) -> None:
    """Raise :class:`GeometryError` if two surfaces meet, saying where.

    Raises
    ------
    GeometryError
        Naming both surfaces, the number of crossing triangle pairs and the first place.
    FrameError
        If the meshes are in different frames.
    """
    pairs = surface_crossings(inner, outer)
    if len(pairs):
        i, j = (int(x) for x in pairs[0])
        where = (inner.vertices_m[inner.triangles[i]].mean(axis=0) + outer.vertices_m[outer.triangles[j]].mean(axis=0)) / 2
        raise GeometryError(
            f"surfaces {inner.name!r} and {outer.name!r} cross each other: {len(pairs)} pairs "
            f"of triangles intersect, the first is triangle {i} of {inner.name!r} and triangle "
            f"{j} of {outer.name!r} near {_where(where)} in the {inner.frame.value!r} frame; "
            f"move {inner.name!r} inwards there (surfaces of a BEM must be strictly nested)"
        )
