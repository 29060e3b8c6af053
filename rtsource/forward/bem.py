"""Boundary-element forward models: EEG (1 to n layers) and MEG (single layer).

Linear collocation with analytic triangle integrals and the isolated-problem approach
(Hamalainen & Sarvas 1989, IEEE TBME 36:165; de Munck 1992, IEEE TBME 39:986), written from
the formulas in ``reference/forward_inverse.md`` section 3. The work splits in two:

1. :func:`solve_bem` (seconds, once per head model): assembles the double-layer matrix with
   parallel numba kernels (:mod:`rtsource.forward._bem_kernels`) and solves for a *transfer
   matrix* that maps the infinite-medium potentials of any source at the innermost surface's
   vertices to the potentials at the outer surface's vertices. It does not depend on the
   electrodes or the sources, so it is cached on disk (``rtsource.build.cache_dir() / "bem"``,
   npz without pickle) keyed by a hash of the meshes and conductivities.
2. :func:`eeg_bem_leadfield` / :func:`meg_bem_field` (fractions of a second): project the
   sensors, take the rows they need, and apply them to the sources' infinite-medium
   potentials in blocks (numba kernel + BLAS).

Surfaces are ordered outermost first (scalp, outer skull, inner skull), as
:meth:`rtsource.anatomy.template.HeadModelSurfaces.as_tuple` returns them, and
``conductivities[k]`` is the conductivity (S/m) of the compartment just inside surface k
(scalp tissue, skull, brain). Sources must lie inside the innermost surface.

The equations (sigma_k^- inside and sigma_k^+ outside surface k, air = 0)::

    V_i = g_i + 1/(2 pi) sum_l gamma_kl sum_j C_ij V_j,      i on surface k
    gamma_kl = (sigma_l^- - sigma_l^+) / (sigma_k^- + sigma_k^+)
    g_i = 2/(sigma_k^- + sigma_k^+) u_i,  u_i = Q.(r_i - r_q) / (4 pi |r_i - r_q|^3)

(Hamalainen & Sarvas 1989 eq. 12-14), C_ij the solid-angle integral of vertex j's hat
function seen from vertex i (de Munck 1992), with the auto solid angles completed so that
each surface's own row block sums to 2 pi, and the null space of constant potentials
deflated by adding 1/N to every entry (Lynn & Timlake 1968).

Isolated problem approach (used when sigma_2/sigma_b <= 0.1 at the innermost surface): with
phi the potential of the brain alone in an insulator, (I - C_bb/2pi) phi = (2/sigma_b) u on
the innermost surface, subtracting the isolated problem's integral equation from the full
one removes u from every equation, and the exact identity A^{-1} A[:, b] = E_b leaves

    V_outer = -4 sigma_2 / (sigma_b^2 - sigma_2^2) (A^{-1})[outer, b] P u_b,
    P = (I + 1/N_b - C_bb / 2pi)^{-1}

so only the innermost vertices carry sources and only the (outer, inner) block of A^{-1}
is needed, which a block elimination gets at about 3/4 of the cost of one LU of A. (This
subtracts the whole isolated problem; MNE-Python subtracts (1 - mu) of it, which keeps a
mu-weighted copy of the standard equations and needs sources on every surface. Both are
exact in the continuum; this form needs a third of the storage and of the sensor work.)

Refinement (``refine=1``, the default for small models): the unknowns stay the vertex
potentials and the collocation points the vertices, but the integrals run over
butterfly-subdivided surfaces (Dyn et al. 1990) on which the potential is the butterfly
interpolant of the vertex values, smooth instead of piecewise linear. With a skull much
thinner than the triangles, linear collocation misrepresents the potential jump across
the skull; the smooth interpolant cuts the error on 642-vertex spheres 2-3 fold at 4x the
integration work (not the linear algebra, which keeps its size).

The dense linear algebra runs in single precision by default (relative difference to double
~1e-5, far below the discretisation error); integrals are always double.

MEG (Geselowitz 1970, Biophys J 10:39): B(r) = B0(r) - mu0/(4 pi) sum_l (sigma_l^- -
sigma_l^+) int V n' x (r - r')/|r - r'|^3 dS', from the vertex potentials of a single-layer
(inner skull) model; the normal component at integration points is returned so that coil
weights are applied by the caller (``signal = sum_i w_i B(r_i).n_i``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.linalg

from ..arrays import frozen as _readonly
from ..errors import ForwardError, GeometryError
from ..geometry import Frame, Mesh, Points, check_nested, check_same_frame, project_onto_mesh, signed_distance
from ..geometry.icosphere import icosphere
from ..geometry.intersect import check_no_crossing, check_self_intersection
from .positions import positions_m

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_CONDUCTIVITIES",
    "BemLeadfieldReport",
    "BemModel",
    "BemSolution",
    "bem_model_from_surfaces",
    "concentric_sphere_model",
    "eeg_bem_leadfield",
    "make_bem_leadfield",
    "meg_bem_field",
    "solve_bem",
    "warm_up",
]

#: Template conductivities in S/m, outermost compartment first: scalp, skull, brain.
#: 0.33 for scalp and brain and a brain:skull ratio of about 80 (0.0042), the 3-shell
#: default of FieldTrip and the classic ratio of Rush & Driscoll (1968, IEEE TBME 15:8).
DEFAULT_CONDUCTIVITIES = (0.33, 0.0042, 0.33)

#: Version of the cached solution's layout and algorithm; bump to invalidate old caches.
FORMAT_VERSION = 1

# the next corner of a triangle, cyclically: corner k -> corner k + 1 (mod 3)
_NEXT = np.array([1, 2, 0])

#: Hamalainen & Sarvas (1989) use the isolated problem approach when sigma_out/sigma_in at the
#: innermost surface is at most this.
IPA_RATIO_LIMIT = 0.1

#: Models with at most this many vertices in all are refined once by default (3 x 642 is;
#: 3 x 2562 is not: there the refinement would quadruple a 3-6 s integration).
AUTO_REFINE_MAX_VERTICES = 3000

#: Default limit on the distance of an electrode from the scalp before projection (metres).
MAX_ELECTRODE_DISTANCE_M = 0.010

_DIPOLE_BLOCK = 2048  # dipoles per block of the lead-field product (~ 2562 x 6144 doubles)


def _mm(p) -> str:
    return "(" + ", ".join(f"{x * 1e3:.1f}" for x in np.asarray(p, float)) + ") mm"


# --------------------------------------------------------------------------------- model


@dataclass(frozen=True, eq=False)
class BemModel:
    """Nested closed surfaces with the conductivity inside each, validated on construction.

    Parameters
    ----------
    surfaces : sequence of Mesh
        Outermost first (e.g. scalp, outer skull, inner skull; or the inner skull alone for
        MEG). Stored in metres. All in one frame.
    conductivities : sequence of float, shape (n_surfaces,)
        S/m of the compartment just inside each surface, outermost first (scalp tissue,
        skull, brain for three layers). Adjacent compartments must differ.
    check_intersections : bool
        Run the triangle-level self-intersection and crossing checks (about 0.1 s per
        2562-vertex surface). Disable only for surfaces checked before.

    Attributes
    ----------
    frame : Frame
        The surfaces' common frame.

    Raises
    ------
    GeometryError
        A surface is open, inverted, degenerate, self-intersecting, not nested inside the
        previous one, or crosses it (the message names the surface and where).
    ForwardError
        Bad conductivities.
    FrameError
        Surfaces in different frames.
    """

    surfaces: tuple[Mesh, ...]
    conductivities: np.ndarray
    check_intersections: bool = True
    frame: Frame = field(init=False)

    def __post_init__(self) -> None:
        surfaces = tuple(self.surfaces) if not isinstance(self.surfaces, Mesh) else (self.surfaces,)
        if not surfaces:
            raise GeometryError("a BEM model needs at least one surface (the inner skull for MEG; scalp, outer skull, inner skull for EEG)")
        for k, s in enumerate(surfaces):
            if not isinstance(s, Mesh):
                raise GeometryError(f"BEM surface {k} must be a rtsource.geometry.Mesh, got {type(s).__name__}")
        for s in surfaces[1:]:
            check_same_frame(surfaces[0].frame, s.frame, f"BEM surface {surfaces[0].name!r}", f"BEM surface {s.name!r}")
        surfaces = tuple(s if s.unit == "m" else s.to_unit("m") for s in surfaces)
        try:
            sig = np.atleast_1d(np.array(self.conductivities, dtype=float))
        except (TypeError, ValueError):
            raise ForwardError(f"conductivities must be numbers in S/m, got {self.conductivities!r}") from None
        if sig.shape != (len(surfaces),):
            raise ForwardError(
                f"{sig.size} conductivities for {len(surfaces)} surfaces "
                f"({', '.join(s.name for s in surfaces)}); give one S/m value per compartment, "
                f"outermost first, e.g. {DEFAULT_CONDUCTIVITIES} for scalp, skull, brain"
            )
        for k, x in enumerate(sig):
            if not (math.isfinite(x) and x > 0):
                raise ForwardError(
                    f"conductivities[{k}] = {float(x)!r} (inside {surfaces[k].name!r}) must be a positive "
                    f"number of S/m, e.g. 0.33 for scalp and brain, 0.0042 for skull"
                )
        for k in range(1, len(sig)):
            if sig[k] == sig[k - 1]:
                raise ForwardError(
                    f"conductivities[{k - 1}] = conductivities[{k}] = {float(sig[k])!r}: surface "
                    f"{surfaces[k].name!r} separates equal conductivities and adds nothing; drop it"
                )
        for s in surfaces:
            s.check_closed()
            area = s.triangle_areas()
            if np.any(area <= 1e-12 * area.max()):
                i = int(np.argmin(area))
                raise GeometryError(
                    f"mesh {s.name!r} has {int((area <= 1e-12 * area.max()).sum())} degenerate "
                    f"(zero-area) triangles, the first is triangle {i} near "
                    f"{_mm(s.vertices_m[s.triangles[i]].mean(axis=0))}; remesh the surface"
                )
            if self.check_intersections:
                check_self_intersection(s)
        for outer, inner in itertools.pairwise(surfaces):
            check_nested(inner, outer)
            if self.check_intersections:
                check_no_crossing(inner, outer)
        object.__setattr__(self, "surfaces", surfaces)
        object.__setattr__(self, "conductivities", _readonly(sig))
        object.__setattr__(self, "frame", surfaces[0].frame)

    @property
    def n_layers(self) -> int:
        return len(self.surfaces)

    @property
    def n_vertices(self) -> tuple[int, ...]:
        return tuple(len(s.vertices) for s in self.surfaces)

    @property
    def outer(self) -> Mesh:
        """The outermost surface (the scalp of an EEG model)."""
        return self.surfaces[0]

    @property
    def inner(self) -> Mesh:
        """The innermost surface (the inner skull); sources must lie inside it."""
        return self.surfaces[-1]

    def sigma_in_out(self) -> tuple[np.ndarray, np.ndarray]:
        """Conductivity just inside and just outside each surface, S/m (air outside = 0)."""
        sig_in = np.asarray(self.conductivities, float)
        sig_out = np.r_[0.0, sig_in[:-1]]
        return sig_in, sig_out

    def hash(self) -> str:
        """Hex digest of the meshes (vertices in m, triangles) and conductivities."""
        h = hashlib.sha256()
        h.update(f"rtsource-bem-model|{len(self.surfaces)}|".encode())
        for s in self.surfaces:
            h.update(np.ascontiguousarray(s.vertices_m, dtype="<f8").tobytes())
            h.update(np.ascontiguousarray(s.triangles, dtype="<i8").tobytes())
            h.update(b"|")
        h.update(np.ascontiguousarray(self.conductivities, dtype="<f8").tobytes())
        return h.hexdigest()

    def describe(self) -> dict[str, Any]:
        return {
            "surfaces": [s.name for s in self.surfaces],
            "n_vertices": list(self.n_vertices),
            "conductivities_s_per_m": [float(x) for x in self.conductivities],
            "frame": self.frame.value,
        }


def bem_model_from_surfaces(surfaces, conductivities=DEFAULT_CONDUCTIVITIES, *, layers: int | None = None) -> BemModel:
    """A BEM model from head surfaces (e.g. ``load_template(4).surfaces``).

    Parameters
    ----------
    surfaces : HeadModelSurfaces or sequence of Mesh
        Anything with ``as_tuple()`` (scalp, outer skull, inner skull) or the meshes
        themselves, outermost first.
    conductivities : sequence of float
        S/m per compartment, outermost first; with ``layers=1`` a single value (brain) or
        the full sequence (its last value is used).
    layers : {None, 1}
        1 keeps only the innermost surface (the single-layer model for MEG).
    """
    meshes = tuple(surfaces.as_tuple()) if hasattr(surfaces, "as_tuple") else tuple(surfaces)
    sig = np.atleast_1d(np.asarray(conductivities, dtype=float))
    if layers == 1:
        meshes = meshes[-1:]
        sig = sig[-1:]
    elif layers is not None:
        raise ForwardError(f"layers = {layers!r}: use None (all surfaces) or 1 (inner skull only, for MEG)")
    return BemModel(meshes, sig)


def concentric_sphere_model(
    radii_m: Sequence[float] = (0.090, 0.085, 0.081),
    conductivities: Sequence[float] = (0.3, 0.006, 0.3),
    *,
    order: int = 4,
    center_m=(0.0, 0.0, 0.0),
    frame: Frame | str = Frame.HEAD,
    names: Sequence[str] | None = None,
) -> BemModel:
    """Concentric icosphere surfaces (for validation against the analytic series).

    Parameters
    ----------
    radii_m : sequence of float
        Radii, outermost first, metres (default 90/85/81 mm: scalp, outer, inner skull).
    conductivities : sequence of float
        S/m inside each surface, outermost first.
    order : int
        Icosphere order: 3 gives 642 vertices per surface, 4 gives 2562.
    center_m : array-like, shape (3,)
    frame : Frame or str
    names : sequence of str, optional
        Surface names (default scalp / outer_skull / inner_skull for three radii).
    """
    radii = [float(r) for r in radii_m]
    if names is None:
        default = {1: ("inner_skull",), 2: ("outer", "inner_skull"), 3: ("scalp", "outer_skull", "inner_skull")}
        names = default.get(len(radii), tuple(f"surface{k}" for k in range(len(radii))))
    v, t = icosphere(order)
    c = np.asarray(center_m, dtype=float)
    meshes = tuple(Mesh(c + r * v, t, frame, "m", str(n)) for r, n in zip(radii, names))
    return BemModel(meshes, conductivities)


# ------------------------------------------------------------------------------ assembly


@dataclass(frozen=True)
class _TriangleTables:
    pts: np.ndarray  # (n_tri, 3, 3)
    idx: np.ndarray  # (n_tri, 3)
    normal: np.ndarray  # (n_tri, 3)
    edge_dir: np.ndarray  # (n_tri, 3, 3)
    edge_len: np.ndarray  # (n_tri, 3)
    edge_normal: np.ndarray  # (n_tri, 3, 3)
    grad: np.ndarray  # (n_tri, 3, 3)
    grad_dot_m: np.ndarray  # (n_tri, 3, 3)
    inv_two_area: np.ndarray  # (n_tri,)
    vertices: np.ndarray  # (n_vertices, 3)
    edges: np.ndarray  # (n_edges, 2), each undirected edge once
    edges_dir: np.ndarray  # (n_edges, 3) unit vectors edges[:, 0] -> edges[:, 1]
    edges_len: np.ndarray  # (n_edges,) metres
    tri_edges: np.ndarray  # (n_tri, 3) edge k (v_k -> v_(k+1)) of each triangle in `edges`


def _triangle_tables(mesh: Mesh) -> _TriangleTables:
    """Per-triangle constants of the analytic integrals (see _bem_kernels docstring)."""
    v = mesh.vertices_m
    t = np.ascontiguousarray(mesh.triangles, dtype=np.int64)
    pts = np.ascontiguousarray(v[t])
    edge = pts[:, _NEXT] - pts  # edge e: v_e -> v_(e+1)
    length = np.linalg.norm(edge, axis=2)
    u = edge / length[..., None]
    cross = np.cross(pts[:, 1] - pts[:, 0], pts[:, 2] - pts[:, 0])
    two_area = np.linalg.norm(cross, axis=1)
    n = cross / two_area[:, None]
    m = np.cross(u, n[:, None, :])  # outward in-plane edge normals
    # grad lambda_k = n x (v_(k+2) - v_(k+1)) / 2A: edge k+1 is the one opposite vertex k
    grad = np.cross(n[:, None, :], edge[:, _NEXT]) / two_area[:, None, None]
    gm = np.einsum("tki,tei->tke", grad, m)
    # undirected edges, shared by two triangles: their integrals are computed once per point
    directed = np.stack([t, t[:, _NEXT]], axis=2).reshape(-1, 2)
    keys = np.sort(directed, axis=1)
    edges, inverse = np.unique(keys, axis=0, return_inverse=True)
    evec = v[edges[:, 1]] - v[edges[:, 0]]
    elen = np.linalg.norm(evec, axis=1)
    edir = evec / elen[:, None]
    c = np.ascontiguousarray
    return _TriangleTables(
        c(pts), t, c(n), c(u), c(length), c(m), c(grad), c(gm), c(1.0 / two_area),
        c(v), c(edges.astype(np.int64)), c(edir), c(elen), c(inverse.reshape(-1, 3).astype(np.int64)),
    )


def _potential_block(points: np.ndarray, skip: np.ndarray, tab: _TriangleTables, out: np.ndarray) -> None:
    """out (n_points, n_vertices) += the double-layer coefficients of ``tab``'s surface."""
    import numba

    from . import _bem_kernels as kernels

    n_threads = numba.get_num_threads()
    scratch_v = np.empty((n_threads, 4, len(tab.vertices)))
    scratch_e = np.empty((n_threads, len(tab.edges)))
    kernels.potential_coefficients(
        np.ascontiguousarray(points, dtype=np.float64), np.ascontiguousarray(skip, dtype=np.int64),
        tab.vertices, tab.edges, tab.edges_dir, tab.edges_len, tab.idx, tab.tri_edges, tab.inv_two_area,
        tab.grad, tab.grad_dot_m, scratch_v, scratch_e, out,
    )


def _butterfly(mesh: Mesh) -> tuple[Mesh, scipy.sparse.csr_matrix]:
    """One step of butterfly subdivision (Dyn, Levin & Gregory 1990, ACM TOG 9:160).

    Every edge gets a new vertex at 1/2 (a + b) + 1/8 (c + d) - 1/16 (e + f + g + h), with a, b
    the edge's ends, c, d the vertices opposite it and e..h the four "wings" across the other
    edges of its two triangles; old vertices stay (interpolating). Applied to positions it
    gives a smooth surface through the original vertices; applied to vertex potentials the
    smooth interpolant the refined BEM integrates (each triangle -> 4).

    Returns
    -------
    fine : Mesh
        The subdivided surface; its first ``n`` vertices are the original ones.
    interp : scipy.sparse.csr_matrix, shape (n_fine, n)
        Values at the fine vertices from values at the original vertices.
    """
    import scipy.sparse

    t = mesh.triangles
    n = len(mesh.vertices)
    n_t = len(t)
    tail = t.reshape(-1)
    head = t[:, _NEXT].reshape(-1)  # half-edge 3i+k: v_k -> v_(k+1)
    opposite = t[:, _NEXT[_NEXT]].reshape(-1)  # the third vertex of that triangle
    key = np.minimum(tail, head) * n + np.maximum(tail, head)
    edge_keys, edge_of = np.unique(key, return_inverse=True)
    n_e = len(edge_keys)
    # twin half-edge: the same undirected edge in the neighbouring triangle
    order = np.argsort(edge_of, kind="stable")
    first, second = order[0::2], order[1::2]
    twin = np.empty(3 * n_t, np.int64)
    twin[first], twin[second] = second, first
    across = opposite[twin]  # vertex opposite each half-edge in the neighbouring triangle
    tri_of = np.arange(3 * n_t) // 3
    k_of = np.arange(3 * n_t) % 3
    nxt1 = 3 * tri_of + (k_of + 1) % 3
    nxt2 = 3 * tri_of + (k_of + 2) % 3
    h = first  # one half-edge per undirected edge (edge_of[h] are 0..n_e-1 in order)
    g = twin[h]
    new = n + edge_of[h]
    cols = np.stack([tail[h], head[h], opposite[h], opposite[g], across[nxt1[h]], across[nxt2[h]], across[nxt1[g]], across[nxt2[g]]], axis=1)
    weights = np.array([0.5, 0.5, 0.125, 0.125, -0.0625, -0.0625, -0.0625, -0.0625])
    rows = np.concatenate([np.arange(n), np.repeat(new, 8)])
    cols = np.concatenate([np.arange(n), cols.reshape(-1)])
    vals = np.concatenate([np.ones(n), np.tile(weights, n_e)])
    interp = scipy.sparse.csr_matrix((vals, (rows, cols)), shape=(n + n_e, n))
    interp.sum_duplicates()
    m = n + edge_of.reshape(n_t, 3)  # midpoint of edge k of each triangle
    v0, v1, v2 = t[:, 0], t[:, 1], t[:, 2]
    fine_t = np.concatenate([
        np.stack([v0, m[:, 0], m[:, 2]], 1),
        np.stack([v1, m[:, 1], m[:, 0]], 1),
        np.stack([v2, m[:, 2], m[:, 1]], 1),
        np.stack([m[:, 0], m[:, 1], m[:, 2]], 1),
    ])
    fine = Mesh(interp @ mesh.vertices_m, fine_t, mesh.frame, "m", f"{mesh.name} (refined)")
    return fine, interp


@dataclass(frozen=True, eq=False)
class _Discretisation:
    """How a surface's potential is represented between its vertices.

    ``mesh`` is the model's surface, whose vertices are the unknowns and the collocation
    points; integrals run over the triangles of ``fine`` with vertex values
    ``interp @ V`` (``interp`` None: fine is mesh, linear interpolation).
    """

    mesh: Mesh
    fine: Mesh
    interp: Any
    tables: _TriangleTables

    def to_coarse(self, block: np.ndarray) -> np.ndarray:
        """Columns on the fine vertices -> columns on the mesh's vertices."""
        if self.interp is None:
            return block
        return np.asarray((self.interp.T @ block.T).T)


def _discretise(mesh: Mesh, refine: int) -> _Discretisation:
    if refine:
        fine, interp = _butterfly(mesh)
        return _Discretisation(mesh, fine, interp, _triangle_tables(fine))
    return _Discretisation(mesh, mesh, None, _triangle_tables(mesh))


def _auto_solid_angles(block: np.ndarray, mesh: Mesh) -> np.ndarray:
    """Complete a surface's own rows so each sums to 2 pi; returns the added amounts.

    ``block`` holds the rows of the first ``block.shape[0]`` vertices of ``mesh`` (the
    collocation points) against all its vertices. The triangles around a vertex are
    skipped by the kernel (flat, so their solid angle is zero); the missing part is the
    curvature of that 1-ring. Half of it goes to the vertex itself and half to its
    neighbours, in proportion to the angles of the triangles they share with it: in polar
    coordinates around the vertex a hat function integrates to half the radial extent, the
    other hats to the other half (Hamalainen & Sarvas 1989, sec. III).
    """
    n_rows = block.shape[0]
    miss = 2.0 * np.pi - block.sum(axis=1)
    v = mesh.vertices_m
    t = mesh.triangles
    rows, cols, weights = [], [], []
    for k in range(3):
        a, b, c = t[:, k], t[:, (k + 1) % 3], t[:, (k + 2) % 3]
        e1 = v[b] - v[a]
        e2 = v[c] - v[a]
        ang = np.arctan2(np.linalg.norm(np.cross(e1, e2), axis=1), np.einsum("ij,ij->i", e1, e2))
        rows += [a, a]
        cols += [b, c]
        weights += [ang / 2.0, ang / 2.0]
    rows = np.concatenate(rows)
    cols = np.concatenate(cols)
    weights = np.concatenate(weights)
    keep = rows < n_rows
    rows, cols, weights = rows[keep], cols[keep], weights[keep]
    total = np.bincount(rows, weights=weights, minlength=n_rows)
    share = weights / total[rows] * (0.5 * miss[rows])
    np.add.at(block, (rows, cols), share)
    block[np.arange(n_rows), np.arange(n_rows)] += 0.5 * miss
    return miss


def _assemble_coefficients(
    model: BemModel, order: Sequence[int] | None = None, dtype=np.float64, refine: int = 0
) -> np.ndarray:
    """The solid-angle coefficient matrix C (N x N) with the surfaces in ``order``.

    ``order`` lists surface indices (default: outermost first); rows and columns of C
    follow it, vertex by vertex. Rows are the vertices (collocation points); with
    ``refine`` the integrals run over butterfly-subdivided surfaces with the potential
    interpolated smoothly (:func:`_butterfly`). Blocks are computed in double precision
    and stored as ``dtype``.
    """
    order = list(range(model.n_layers)) if order is None else list(order)
    discs = [_discretise(model.surfaces[k], refine) for k in order]
    sizes = [len(d.mesh.vertices) for d in discs]
    offsets = np.r_[0, np.cumsum(sizes)]
    coeff = np.empty((int(offsets[-1]),) * 2, dtype=dtype)
    for r, dr in enumerate(discs):
        pts = np.ascontiguousarray(dr.mesh.vertices_m)
        rows = slice(offsets[r], offsets[r + 1])
        for c, dc in enumerate(discs):
            cols = slice(offsets[c], offsets[c + 1])
            # the mesh's vertices come first among the fine vertices, so a collocation
            # point is skipped by its own index
            skip = np.arange(sizes[r], dtype=np.int64) if r == c else np.full(sizes[r], -1, np.int64)
            block = np.zeros((sizes[r], len(dc.fine.vertices)))
            _potential_block(pts, skip, dc.tables, block)
            if r == c:
                miss = _auto_solid_angles(block, dc.fine)
                logger.debug("surface %r: auto solid angles %.3g..%.3g sr", dr.mesh.name, miss.min(), miss.max())
            else:
                # a closed polyhedron subtends exactly 4 pi from inside, 0 from outside
                inside = order[r] > order[c]
                err = np.abs(block.sum(axis=1) - (4.0 * np.pi if inside else 0.0)).max()
                if err > 1e-6:
                    raise GeometryError(
                        f"surface {dr.mesh.name!r} is not entirely {'inside' if inside else 'outside'} "
                        f"{dc.mesh.name!r} (solid angle off by {err:.3g} sr); check the nesting"
                    )
            coeff[rows, cols] = dc.to_coarse(block)
    return coeff


def _system_matrix(model: BemModel, coeff: np.ndarray, order: Sequence[int] | None = None) -> np.ndarray:
    """In place: C -> A = I + 1/N - (1/2 pi) Gamma o C (Hamalainen & Sarvas 1989 eq. 14).

    gamma_kl = (sigma_l^- - sigma_l^+)/(sigma_k^- + sigma_k^+) for row surface k and column
    surface l; adding 1/N to every entry deflates the constant null vector (the potential
    is defined up to a constant; Lynn & Timlake 1968, Chan 1984).
    """
    order = list(range(model.n_layers)) if order is None else list(order)
    sizes = [model.n_vertices[k] for k in order]
    offsets = np.r_[0, np.cumsum(sizes)]
    sig_in, sig_out = model.sigma_in_out()
    for r, k in enumerate(order):
        for c, l in enumerate(order):
            gamma = (sig_in[l] - sig_out[l]) / (sig_in[k] + sig_out[k])
            coeff[offsets[r] : offsets[r + 1], offsets[c] : offsets[c + 1]] *= -gamma / (2.0 * np.pi)
    coeff[np.diag_indices_from(coeff)] += 1.0
    coeff += 1.0 / coeff.shape[0]
    return coeff


# --------------------------------------------------------------------------------- solve


@dataclass(frozen=True, eq=False)
class BemSolution:
    """The electrode-independent part of a BEM forward model.

    Potentials at the vertices of ``model.surfaces[field_surface]`` are
    ``matrix @ u`` where u are the unit-conductivity infinite-medium potentials
    Q.(r_i - r_q)/(4 pi |r_i - r_q|^3) of the sources at the vertices of the surfaces listed
    in ``source_surfaces`` (concatenated in that order).

    Attributes
    ----------
    model : BemModel
    matrix : ndarray, shape (n_field_vertices, n_source_vertices)
        Ohm m (V per unit of u). Read-only.
    field_surface : int
        Index of the surface the rows belong to (0: the outermost).
    source_surfaces : tuple of int
        Surfaces whose vertices the columns belong to: (n_layers - 1,) with the isolated
        problem approach or for one layer, all surfaces otherwise.
    approach : str
        "isolated_problem", "standard" or "single_layer".
    refine : int
        0: potentials linear over the model's triangles; 1: integrals over butterfly-
        subdivided surfaces with the potentials interpolated smoothly (the sensor steps use
        the same representation).
    key : str
        Hash of the model and the algorithm (the cache key).
    info : Mapping
        Timings in seconds ("assembly_s", "solve_s", "load_s") and whether it came from
        the cache ("cached").
    """

    model: BemModel
    matrix: np.ndarray
    field_surface: int
    source_surfaces: tuple[int, ...]
    approach: str
    refine: int
    key: str
    info: Mapping[str, Any] = field(default_factory=dict)

    def discretisation(self, surface: int) -> _Discretisation:
        """How potentials are represented on ``model.surfaces[surface]`` (computed once)."""
        memo = self.__dict__.setdefault("_discretisations", {})  # not a field: frozen-safe
        if surface not in memo:
            memo[surface] = _discretise(self.model.surfaces[surface], self.refine)
        return memo[surface]

    @property
    def source_points_m(self) -> np.ndarray:
        """The vertices the columns of ``matrix`` refer to, shape (n_source_vertices, 3)."""
        return np.concatenate([self.model.surfaces[k].vertices_m for k in self.source_surfaces])


def _choose_approach(model: BemModel, approach: str) -> str:
    if model.n_layers == 1:
        return "single_layer"
    sig_in, sig_out = model.sigma_in_out()
    ratio = sig_out[-1] / sig_in[-1]
    if approach == "auto":
        return "isolated_problem" if ratio <= IPA_RATIO_LIMIT else "standard"
    if approach in ("isolated_problem", "standard"):
        return approach
    raise ForwardError(f"approach = {approach!r} is not known; use 'auto', 'isolated_problem' or 'standard'")


def _choose_refine(model: BemModel, refine) -> int:
    if refine == "auto":
        return 1 if sum(model.n_vertices) <= AUTO_REFINE_MAX_VERTICES else 0
    if refine in (0, 1, False, True):
        return int(refine)
    raise ForwardError(f"refine = {refine!r} is not known; use 'auto', 0 (no refinement) or 1 (one butterfly subdivision)")


def _solution_key(model: BemModel, approach: str, precision: str, refine: int) -> str:
    h = hashlib.sha256()
    h.update(f"rtsource-bem-solution|v{FORMAT_VERSION}|{approach}|{precision}|refine{refine}|".encode())
    h.update(model.hash().encode())
    return h.hexdigest()[:32]


def _solve(model: BemModel, approach: str, precision: str, refine: int) -> tuple[np.ndarray, tuple[int, ...], dict[str, float]]:
    dtype = np.float32 if precision == "single" else np.float64
    sizes = model.n_vertices
    sig_in, sig_out = model.sigma_in_out()
    t0 = time.perf_counter()
    if approach == "single_layer":
        # V = (2/sigma) (I + 1/N - C/2pi)^{-1} u: the homogeneous conductor
        coeff = _assemble_coefficients(model, refine=refine)
        t1 = time.perf_counter()
        p_inv = coeff * (-1.0 / (2.0 * np.pi))
        p_inv[np.diag_indices_from(p_inv)] += 1.0
        p_inv += 1.0 / sizes[0]
        matrix = scipy.linalg.inv(p_inv.astype(dtype), overwrite_a=True, check_finite=False) * (2.0 / sig_in[0])
        sources: tuple[int, ...] = (0,)
    elif approach == "isolated_problem":
        # unknowns ordered (middle surfaces, outermost, innermost): the blocks the
        # elimination works on are then contiguous
        k = model.n_layers
        order = list(range(1, k - 1)) + [0, k - 1]
        coeff = _assemble_coefficients(model, order, refine=refine)
        t1 = time.perf_counter()
        nb = sizes[-1]
        # P^{-1} of the isolated inner compartment, before C is scaled in place
        p_inv = coeff[-nb:, -nb:] * (-1.0 / (2.0 * np.pi))
        p_inv[np.diag_indices_from(p_inv)] += 1.0
        p_inv += 1.0 / nb
        a = _system_matrix(model, coeff, order)
        if dtype != a.dtype:
            a = a.astype(dtype)
            del coeff
        x1p = _outer_inner_block_times_p(a, sum(sizes[1:-1]), sizes[0], p_inv.astype(dtype))
        s2, sb = sig_out[-1], sig_in[-1]
        matrix = x1p.astype(np.float64) * (-4.0 * s2 / (sb * sb - s2 * s2))
        sources = (k - 1,)
    else:
        coeff = _assemble_coefficients(model, refine=refine)
        t1 = time.perf_counter()
        a = _system_matrix(model, coeff).astype(dtype, copy=False)
        n0 = sizes[0]
        lu = scipy.linalg.lu_factor(a, overwrite_a=True, check_finite=False)
        rhs = np.zeros((a.shape[0], n0), dtype=dtype)
        rhs[np.arange(n0), np.arange(n0)] = 1.0
        rows = scipy.linalg.lu_solve(lu, rhs, trans=1, overwrite_b=True, check_finite=False).T  # (A^{-1})[outer, :]
        factor = np.repeat(2.0 / (sig_in + sig_out), sizes)
        matrix = rows.astype(np.float64) * factor[None, :]
        sources = tuple(range(model.n_layers))
    t2 = time.perf_counter()
    return np.ascontiguousarray(matrix, dtype=np.float64), sources, {"assembly_s": t1 - t0, "solve_s": t2 - t1}


def _outer_inner_block_times_p(a: np.ndarray, n_m: int, n_o: int, p_inv: np.ndarray) -> np.ndarray:
    """(A^{-1})[o, b] @ P with P = p_inv^{-1}, by block elimination (A is overwritten).

    A is ordered (m, o, b): the middle surfaces (possibly none), the outermost, the
    innermost. Eliminating m leaves the Schur complement S on (o, b), whose inverse is the
    (o, b) part of A^{-1}; its off-diagonal block is -S_oo^{-1} S_ob Sigma^{-1} with
    Sigma = S_bb - S_bo S_oo^{-1} S_ob, and Sigma^{-1} P = (P^{-1} Sigma)^{-1}. About 22 n^3
    flops for three n-vertex surfaces, three quarters of an LU of A and its solve.
    """
    lu_kw = {"check_finite": False}
    if n_m:
        lu = scipy.linalg.lu_factor(a[:n_m, :n_m], **lu_kw)
        w = scipy.linalg.lu_solve(lu, a[:n_m, n_m:], **lu_kw)  # A_mm^{-1} A_m,ob
        del lu
        s = a[n_m:, n_m:]
        s -= a[n_m:, :n_m] @ w
        del w
    else:
        s = a
    s_oo, s_ob = s[:n_o, :n_o], s[:n_o, n_o:]
    s_bo, s_bb = s[n_o:, :n_o], s[n_o:, n_o:]
    lu = scipy.linalg.lu_factor(s_oo, **lu_kw)
    t = scipy.linalg.lu_solve(lu, s_ob, **lu_kw)  # S_oo^{-1} S_ob
    del lu
    sigma = s_bb - s_bo @ t
    q = p_inv @ sigma
    del sigma
    # X P = -T Q^{-1}  <=>  Q^T (X P)^T = -T^T
    return -scipy.linalg.solve(q.T, t.T, overwrite_a=True, overwrite_b=True, **lu_kw).T


def _cache_path(key: str) -> Path:
    from ..build import cache_dir  # lazily: build imports the forward package

    return cache_dir() / "bem" / f"{key}.npz"


def _read_cache(path: Path, model: BemModel, key: str, approach: str, refine: int) -> BemSolution | None:
    if not path.exists():
        return None
    t0 = time.perf_counter()
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            matrix = z["matrix"]
        sources = tuple(int(x) for x in meta["source_surfaces"])
        n_rows = model.n_vertices[int(meta["field_surface"])]
        n_cols = sum(model.n_vertices[k] for k in sources)
        if (meta.get("format_version"), meta.get("key"), meta.get("approach"), meta.get("refine")) != (FORMAT_VERSION, key, approach, refine):
            raise ValueError("key, approach, refinement or format version differ")
        if matrix.shape != (n_rows, n_cols) or matrix.dtype != np.float64:
            raise ValueError(f"matrix has shape {matrix.shape} {matrix.dtype}, expected ({n_rows}, {n_cols}) float64")
        if not np.isfinite(matrix).all():
            raise ValueError("matrix has non-finite values")
    except Exception as exc:  # noqa: BLE001 -- a damaged cache entry is recomputed, never trusted
        logger.warning("ignoring damaged BEM cache file %s (%s); recomputing", path, exc)
        return None
    matrix.flags.writeable = False
    info = {"cached": True, "load_s": time.perf_counter() - t0, "path": str(path)}
    info.update({k: meta[k] for k in ("precision", "assembly_s", "solve_s") if k in meta})
    return BemSolution(model, matrix, int(meta["field_surface"]), sources, approach, refine, key, info)


def _write_cache(path: Path, sol: BemSolution) -> None:
    meta = {
        "format_version": FORMAT_VERSION,
        "key": sol.key,
        "approach": sol.approach,
        "refine": sol.refine,
        "field_surface": sol.field_surface,
        "source_surfaces": list(sol.source_surfaces),
        "model": sol.model.describe(),
        "precision": sol.info.get("precision"),
        "assembly_s": sol.info.get("assembly_s"),
        "solve_s": sol.info.get("solve_s"),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{time.time_ns()}.tmp.npz")
        np.savez(tmp, matrix=sol.matrix, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
        tmp.replace(path)
    except OSError as exc:
        logger.warning("could not cache the BEM solution in %s (%s)", path, exc)


def solve_bem(
    model: BemModel, *, use_cache: bool = True, approach: str = "auto", precision: str = "single", refine: int | str = "auto"
) -> BemSolution:
    """Solve the BEM (assembly + linear algebra), or load the solution from the disk cache.

    Parameters
    ----------
    model : BemModel
        One layer (homogeneous conductor, for MEG) or several (EEG).
    use_cache : bool
        Read and write ``rtsource.build.cache_dir() / "bem" / <key>.npz``. A damaged
        file is recomputed with a warning.
    approach : {"auto", "isolated_problem", "standard"}
        "auto" uses the isolated problem approach when the innermost surface's outside to
        inside conductivity ratio is <= 0.1 (Hamalainen & Sarvas 1989), else the standard
        deflated system.
    precision : {"single", "double"}
        Floating-point type of the dense linear algebra (the integrals are always double).
        Single precision halves the time and memory; its relative difference to double is
        about 1e-5 on 3 x 2562 vertices, far below the discretisation error (~1e-2).
    refine : {"auto", 0, 1}
        1 integrates over once-subdivided surfaces (butterfly) with smoothly interpolated
        potentials: on 642-vertex spheres it cuts the error 2-3 fold (RDM at eccentricity
        0.9 from 0.07 to 0.04), at 4x the integration work. "auto" refines models of at most
        ``AUTO_REFINE_MAX_VERTICES`` vertices in all (3 x 642), where the cost is small and
        linear collocation on its own is too coarse for a thin skull.

    Returns
    -------
    BemSolution
        ``info`` has "assembly_s" and "solve_s" (or "load_s" when read from the cache).

    Raises
    ------
    ForwardError
        Bad arguments.
    """
    if not isinstance(model, BemModel):
        raise ForwardError(f"model must be a BemModel, got {type(model).__name__}; build one with BemModel(surfaces, conductivities)")
    if precision not in ("single", "double"):
        raise ForwardError(f"precision = {precision!r} is not known; use 'single' (default) or 'double'")
    approach = _choose_approach(model, approach)
    refine = _choose_refine(model, refine)
    key = _solution_key(model, approach, precision, refine)
    path = _cache_path(key) if use_cache else None
    if path is not None:
        cached = _read_cache(path, model, key, approach, refine)
        if cached is not None:
            logger.info("BEM solution from cache %s (%.2f s)", path, cached.info["load_s"])
            return cached
    matrix, sources, timing = _solve(model, approach, precision, refine)
    matrix.flags.writeable = False
    sol = BemSolution(model, matrix, 0, sources, approach, refine, key, {"cached": False, "precision": precision, **timing})
    logger.info(
        "BEM solution (%s, %s vertices, refine %d, %s precision): assembly %.2f s, solve %.2f s",
        approach, "+".join(map(str, model.n_vertices)), refine, precision, timing["assembly_s"], timing["solve_s"],
    )
    if path is not None:
        _write_cache(path, sol)
    return sol


# ------------------------------------------------------------------------- sensor steps


@dataclass(frozen=True, eq=False)
class BemLeadfieldReport:
    """What :func:`eeg_bem_leadfield` did with the electrodes and dipoles.

    Attributes
    ----------
    electrode_distances_m : ndarray, shape (n_electrodes,)
        How far each electrode was moved onto the scalp.
    electrodes_on_scalp_m : ndarray, shape (n_electrodes, 3)
        Where they landed.
    dipole_depths_m : ndarray, shape (n_dipoles,)
        Distance of each dipole inside the innermost surface (positive).
    timings_s : Mapping
        "electrodes" (projection and rows of the solution), "leadfield" (source checks and
        the product with the sources' infinite-medium potentials).
    """

    electrode_distances_m: np.ndarray
    electrodes_on_scalp_m: np.ndarray
    dipole_depths_m: np.ndarray
    timings_s: Mapping[str, float] = field(default_factory=dict)


def _list_far(index: np.ndarray, dist: np.ndarray, labels=None, limit: int = 8) -> str:
    items = []
    for i in index[:limit]:
        name = labels[i] if labels is not None else f"#{int(i)}"
        items.append(f"{name} {dist[i] * 1e3:.1f} mm")
    more = f" and {len(index) - limit} more" if len(index) > limit else ""
    return ", ".join(items) + more


def _check_dipoles(dipoles: np.ndarray, model: BemModel, memo: dict | None = None) -> np.ndarray:
    """Depth (m, positive inside) of each dipole in the innermost surface; refuses others.

    ``memo`` (a solution's private dict) remembers the last source set checked, so callers
    that evaluate one source space in several sensor groups pay for the check once.
    """
    if len(dipoles) == 0:
        return np.zeros(0)
    key = None
    if memo is not None:
        key = hashlib.sha1(np.ascontiguousarray(dipoles).tobytes()).hexdigest()
        if memo.get("key") == key:
            return memo["depth"]
    depth = -signed_distance(dipoles, model.inner)
    out = np.flatnonzero(depth <= 0)
    if out.size:
        raise ForwardError(
            f"{out.size} of {len(dipoles)} dipoles are on or outside the innermost BEM surface "
            f"{model.inner.name!r} (dipole and distance outside: {_list_far(out, -depth)}); the "
            f"first, dipoles_m[{int(out[0])}], is at {_mm(dipoles[out[0]])}. Sources must lie "
            f"inside {model.inner.name!r}: use a source space inside it (e.g. the white-matter "
            f"surface), a finer BEM surface, or move those sources inwards"
        )
    if memo is not None:
        memo.clear()
        memo.update(key=key, depth=depth)
    return depth


def _apply_transfer(transfer: np.ndarray, source_points: np.ndarray, dipoles: np.ndarray, out: np.ndarray, *, block: int = _DIPOLE_BLOCK) -> None:
    """out[:, 3j:3j+3] += transfer @ u(source_points, dipole j), in blocks of dipoles."""
    from . import _bem_kernels as kernels

    n_d = len(dipoles)
    buf = np.empty((len(source_points), 3 * min(block, max(n_d, 1))))
    for start in range(0, n_d, block):
        stop = min(start + block, n_d)
        u = buf[:, : 3 * (stop - start)]
        kernels.infinite_potentials(source_points, np.ascontiguousarray(dipoles[start:stop]), u)
        out[:, 3 * start : 3 * stop] += transfer @ u


def _electrode_projection(model: BemModel, electrodes: np.ndarray, max_distance_m: float, labels=None):
    """Project electrodes onto the outer surface; refuse those farther than the limit."""
    proj = project_onto_mesh(electrodes, model.outer)
    far = np.flatnonzero(proj.distances_m > max_distance_m)
    if far.size:
        raise ForwardError(
            f"{far.size} of {len(electrodes)} electrodes are more than {max_distance_m * 1e3:.1f} mm "
            f"from the scalp surface {model.outer.name!r} before projection: "
            f"{_list_far(far, proj.distances_m, labels)}. Check the electrode unit (metres), the "
            f"frame and the coregistration; raise max_electrode_distance_m only if the positions are right"
        )
    return proj


def _electrode_rows(solution: BemSolution, electrodes: np.ndarray, max_distance_m: float, labels=None):
    """Rows of the solution at the electrodes, and the projection onto the scalp."""
    import scipy.sparse

    model = solution.model
    if solution.field_surface != 0:
        raise ForwardError("this BEM solution has no potentials on the outer surface; solve the model again with solve_bem")
    proj = _electrode_projection(model, electrodes, max_distance_m, labels)
    disc = solution.discretisation(0)
    # the potential on the surface the solution integrates over (the refined one, if any),
    # interpolated with barycentric weights on the triangle the electrode lands on
    on = proj if disc.interp is None else project_onto_mesh(electrodes, disc.fine)
    tri = disc.fine.triangles[on.triangles]
    n_el = len(electrodes)
    weights = scipy.sparse.csr_matrix((on.weights.ravel(), (np.repeat(np.arange(n_el), 3), tri.ravel())), shape=(n_el, len(disc.fine.vertices)))
    if disc.interp is not None:
        weights = weights @ disc.interp
    rows = np.asarray(weights @ solution.matrix)
    return rows, proj


def eeg_bem_leadfield(
    solution: BemSolution,
    electrodes_m,
    dipoles_m,
    *,
    max_electrode_distance_m: float = MAX_ELECTRODE_DISTANCE_M,
    electrode_labels: Sequence[str] | None = None,
) -> tuple[np.ndarray, BemLeadfieldReport]:
    """EEG lead field of point dipoles from a BEM solution.

    Each electrode is projected onto the nearest point of the outer (scalp) surface and
    its potential interpolated from that triangle's vertices with barycentric weights
    (Hamalainen & Sarvas 1989). Only this step depends on the electrodes, and only the
    application to the sources on the dipoles: both are cheap next to :func:`solve_bem`.

    Parameters
    ----------
    solution : BemSolution
        From :func:`solve_bem`.
    electrodes_m : ndarray, shape (n_electrodes, 3), or Points
        Electrode positions in metres in the model's frame.
    dipoles_m : ndarray, shape (n_dipoles, 3), or Points
        Dipole positions in metres in the model's frame, inside the innermost surface.
    max_electrode_distance_m : float
        Electrodes farther than this from the scalp before projection are refused.
    electrode_labels : sequence of str, optional
        Names used in error messages.

    Returns
    -------
    gain : ndarray, shape (n_electrodes, 3 * n_dipoles)
        Potentials against infinity (not re-referenced), V per A*m; columns dipole-major
        [d0_x, d0_y, d0_z, d1_x, ...] along the frame's axes, as
        :func:`rtsource.forward.sphere.eeg_sphere_leadfield`.
    report : BemLeadfieldReport

    Raises
    ------
    ForwardError
        Electrodes too far from the scalp (listing which and how far), dipoles on or outside
        the innermost surface (listing which), non-finite positions.
    FrameError
        Points in another frame than the model.
    """
    if not isinstance(solution, BemSolution):
        raise ForwardError(f"solution must be a BemSolution from solve_bem(model), got {type(solution).__name__}")
    try:
        limit = float(max_electrode_distance_m)
    except (TypeError, ValueError):
        limit = float("nan")
    if not (limit >= 0 and math.isfinite(limit)):
        raise ForwardError(f"max_electrode_distance_m = {max_electrode_distance_m!r} must be a distance >= 0 in metres, e.g. 0.01")
    model = solution.model
    if isinstance(electrodes_m, Points) and electrode_labels is None and electrodes_m.labels:
        electrode_labels = electrodes_m.labels
    elec = positions_m(electrodes_m, "electrodes_m", model.frame, model="the BEM model")
    dip = positions_m(dipoles_m, "dipoles_m", model.frame, model="the BEM model")
    if len(elec) == 0:
        raise ForwardError("electrodes_m is empty; pass at least one electrode position")
    t0 = time.perf_counter()
    rows, proj = _electrode_rows(solution, elec, limit, electrode_labels)
    t1 = time.perf_counter()
    depth = _check_dipoles(dip, model, solution.__dict__.setdefault("_dipole_check", {}))
    gain = np.zeros((len(elec), 3 * len(dip)))
    _apply_transfer(rows, solution.source_points_m, dip, gain)
    t2 = time.perf_counter()
    report = BemLeadfieldReport(
        _readonly(proj.distances_m), _readonly(proj.points_m), _readonly(depth), {"electrodes": t1 - t0, "leadfield": t2 - t1}
    )
    logger.debug("BEM EEG lead field %s: electrodes %.3f s, sources %.3f s", gain.shape, t1 - t0, t2 - t1)
    return gain, report


def meg_bem_field(solution, points_m, normals, dipoles_m, *, use_cache: bool = True, min_distance_m: float = 1e-3) -> np.ndarray:
    """Normal component of the magnetic field of dipoles in a single-layer BEM.

    B = B0 + volume-current term (Geselowitz 1970), evaluated analytically over the
    triangles with the linear vertex potentials of the BEM solution. Apply coil weights as
    ``signal = sum_i w_i * out[i]`` over a coil's integration points.

    Parameters
    ----------
    solution : BemSolution or BemModel
        A one-layer model (the inner skull) or its solution; a model is solved (cached).
    points_m : ndarray, shape (n_points, 3)
        Integration points in metres, in the model's frame, outside the surface.
    normals : ndarray, shape (n_points, 3)
        Unit vectors: the field component wanted at each point.
    dipoles_m : ndarray, shape (n_dipoles, 3)
        Dipole positions inside the surface, metres.
    use_cache : bool
        Passed to :func:`solve_bem` when ``solution`` is a model.
    min_distance_m : float
        Points closer than this to the surface (or inside it) are refused.

    Returns
    -------
    field : ndarray, shape (n_points, 3 * n_dipoles)
        T per A*m, columns dipole-major x, y, z.
    """
    from . import _bem_kernels as kernels

    if isinstance(solution, BemModel):
        solution = solve_bem(solution, use_cache=use_cache)
    if not isinstance(solution, BemSolution):
        raise ForwardError(f"solution must be a BemSolution or BemModel, got {type(solution).__name__}")
    model = solution.model
    if model.n_layers != 1:
        raise ForwardError(
            f"meg_bem_field needs a single-layer model (the inner skull), got {model.n_layers} layers "
            f"({', '.join(s.name for s in model.surfaces)}); build it with "
            f"bem_model_from_surfaces(surfaces, conductivities, layers=1)"
        )
    pts = positions_m(points_m, "points_m", model.frame, model="the BEM model")
    nrm = positions_m(normals, "normals", model.frame, model="the BEM model")
    dip = positions_m(dipoles_m, "dipoles_m", model.frame, model="the BEM model")
    if nrm.shape != pts.shape:
        raise ForwardError(f"normals has shape {nrm.shape} but points_m has {pts.shape}; give one unit vector per point")
    length = np.linalg.norm(nrm, axis=1)
    bad = np.flatnonzero(np.abs(length - 1) > 1e-6)
    if bad.size:
        raise ForwardError(f"normals[{int(bad[0])}] has length {length[bad[0]]:.6g}; normals must be unit vectors")
    dist = signed_distance(pts, model.inner)
    close = np.flatnonzero(dist < min_distance_m)
    if close.size:
        raise ForwardError(
            f"{close.size} of {len(pts)} field points are inside {model.inner.name!r} or within "
            f"{min_distance_m * 1e3:.1f} mm of it: {_list_far(close, dist)} (signed distance); MEG "
            f"integration points must lie outside the head (check unit, frame and the device->head transform)"
        )
    _check_dipoles(dip, model, solution.__dict__.setdefault("_dipole_check", {}))
    disc = solution.discretisation(0)
    tab = disc.tables
    sig_in, sig_out = model.sigma_in_out()
    coef = np.zeros((len(pts), len(disc.fine.vertices)))
    scale = -kernels.MU0_OVER_4PI * float(sig_in[0] - sig_out[0])
    kernels.magnetic_coefficients(pts, nrm, tab.pts, tab.idx, tab.normal, tab.edge_dir, tab.edge_len, tab.edge_normal, tab.grad, scale, coef)
    transfer = disc.to_coarse(coef) @ solution.matrix
    out = np.empty((len(pts), 3 * len(dip)))
    kernels.primary_field(pts, nrm, dip, out)
    _apply_transfer(transfer, solution.source_points_m, dip, out)
    return out


# ------------------------------------------------------------------------- integration


def make_bem_leadfield(
    montage,
    sources,
    surfaces,
    conductivities: Sequence[float] = DEFAULT_CONDUCTIVITIES,
    *,
    method: str = "bem",
    use_cache: bool = True,
    max_electrode_distance_m: float = MAX_ELECTRODE_DISTANCE_M,
):
    """EEG lead field of a source space at a montage's electrodes in a BEM head model.

    Parameters
    ----------
    montage : rtsource.sensors.montage.Montage
    sources : rtsource.anatomy.source_space.SourceSpace
    surfaces : HeadModelSurfaces or sequence of Mesh, or BemModel
        Scalp, outer skull, inner skull (outermost first), e.g. ``load_template(4).surfaces``.
    conductivities : sequence of float
        S/m, outermost compartment first (ignored when ``surfaces`` is a BemModel).
    method : {"bem", "openmeeg"}
        Our linear-collocation BEM, or OpenMEEG's symmetric BEM (optional extra).
    use_cache : bool
        Cache the BEM solution on disk (method "bem").
    max_electrode_distance_m : float
        Electrodes farther than this from the scalp are refused.

    Returns
    -------
    rtsource.forward.leadfield.LeadField
    """
    from .leadfield import LeadField

    model = surfaces if isinstance(surfaces, BemModel) else bem_model_from_surfaces(surfaces, conductivities)
    check_same_frame(montage.frame, sources.frame, "the electrodes", "the source space")
    check_same_frame(montage.frame, model.frame, "the electrodes", "the BEM model")
    elec = montage.electrodes.positions_m
    if len(elec) < 3:
        raise ForwardError(f"need at least 3 electrodes for an EEG forward model, got {len(elec)}")
    t0 = time.perf_counter()
    if method == "bem":
        sol = solve_bem(model, use_cache=use_cache)
        gain, report = eeg_bem_leadfield(sol, elec, sources.positions_m, max_electrode_distance_m=max_electrode_distance_m, electrode_labels=montage.labels)
        desc = {
            "kind": "eeg_bem",
            "approach": sol.approach,
            "solution_key": sol.key,
            "solution_cached": bool(sol.info.get("cached")),
            "max_electrode_projection_mm": round(float(report.electrode_distances_m.max()) * 1e3, 3),
            "min_source_depth_mm": round(float(report.dipole_depths_m.min()) * 1e3, 3) if len(report.dipole_depths_m) else None,
        }
    elif method == "openmeeg":
        from .openmeeg_backend import openmeeg_eeg_leadfield

        gain, info = openmeeg_eeg_leadfield(model, elec, sources.positions_m, max_electrode_distance_m=max_electrode_distance_m, electrode_labels=montage.labels)
        desc = {"kind": "eeg_bem_openmeeg", **info}
    else:
        raise ForwardError(f"method = {method!r} is not known; use 'bem' or 'openmeeg'")
    desc.update(model.describe())
    desc["seconds"] = round(time.perf_counter() - t0, 3)
    logger.info("%s lead field %s in %.2f s", desc["kind"], gain.shape, desc["seconds"])
    return LeadField(gain, montage.labels, elec, sources, desc, None)


def warm_up() -> float:
    """Compile (or load from numba's cache) the BEM kernels on a tiny model; seconds taken."""
    from . import _bem_kernels as kernels

    t0 = time.perf_counter()
    v, t = icosphere(0)
    mesh = Mesh(v * 0.08, t, Frame.HEAD, "m", "warmup")
    tab = _triangle_tables(mesh)
    pts = np.ascontiguousarray(mesh.vertices_m)
    out = np.zeros((len(pts), len(pts)))
    _potential_block(pts, np.arange(len(pts), dtype=np.int64), tab, out)
    far = pts * 1.5
    coef = np.zeros((len(pts), len(pts)))
    kernels.magnetic_coefficients(far, pts / np.linalg.norm(pts, axis=1, keepdims=True), tab.pts, tab.idx, tab.normal, tab.edge_dir, tab.edge_len, tab.edge_normal, tab.grad, 1.0, coef)
    u = np.empty((len(pts), 3))
    kernels.infinite_potentials(pts, np.zeros((1, 3)), u)
    kernels.primary_field(far, pts / 0.08, np.zeros((1, 3)), u)
    return time.perf_counter() - t0
