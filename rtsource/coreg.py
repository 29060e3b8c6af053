"""Coregistration: put digitised electrodes (and headshape points) on the head model.

    position file(s) ─> Digitization (frame UNKNOWN / HEAD / CTF / TEMPLATE)
        ─> initial alignment to the template   (fiducials, else electrode labels, else frame)
        ─> ICP refinement against the scalp    (point-to-plane, robust, optional scale)
        ─> projection of the electrodes onto the scalp
        ─> quality control (distances to the scalp, refusal threshold, QC picture)

Initial alignment
    *Fiducials* (NAS, LPA, RPA in the file): the least-squares rigid (or similarity) fit of
    the three landmarks onto the template's (Umeyama 1991, via
    :func:`rtsource.geometry.head_frames.fit_points`). *Labels*: without fiducials, the same
    fit over electrodes whose labels the template knows (10-05 names, old 10-20 names and the
    alias map), reweighted once so that a mislabelled electrode does not pull it. *Frame*:
    positions already in a fiducial frame (HEAD, CTF) use the template's own fiducial frame.

ICP (Besl & McKay 1992, IEEE TPAMI 14:239) with the point-to-plane error of Chen & Medioni
1992 (Image Vis Comput 10:145): each iteration finds every point's closest place on the scalp
and its outward pseudo-normal n, then solves the linearised least-squares problem
``min sum_i w_i ((p_i - q_i).n_i + (a_i x n_i).w + n_i.t + (n_i.a_i) ds)^2`` for a small
rotation w, translation t and (optionally) scale ds about the points' centroid
(a_i = p_i - centroid), plus the three fiducial pairs as point-to-point terms (weight
``fiducial_weight`` each), which pin the rotations a nearly spherical head leaves free.

Robustness (iteratively reweighted least squares): w_i is Tukey's biweight of the point's
distance d_i to the scalp, ``w = (1 - (d/c)^2)^2`` for ``d < c`` else 0, with
``c = 4.685 sigma`` and ``sigma = max(1.4826 median(d), 1 mm)`` (Beaton & Tukey 1974,
Technometrics 16:147; the MAD scale of Hampel 1974). Points with weight 0 are *outliers*.

The cutoff c follows the residuals for the first 8 iterations (the start may be centimetres
off) and is then frozen, and each step is halved until the robust objective (Tukey's rho of
the distances plus the pair term) does not rise, so the iteration cannot cycle. Without
fiducials, when the start came from electrode labels, the label correspondences take the
fiducials' place in the pair term (``label_weight`` each).

Convergence: stop when no point moves by more than ``tol_mm`` (0.001 mm) in an iteration,
or no step lowers the objective, or after ``max_iterations`` (100; reported as not
converged).

Accuracy: with 2 mm (per axis) noise on 100 headshape points, 64 electrodes and the
fiducials, the registration error at the electrodes is limited by the information in the
points (Cramer-Rao: a median over the electrodes of 1.5 mm on average, 2.5 mm at the 95th
percentile of draws, for a head this close to a sphere); this ICP reaches it.

Quality control: the signed distance of every electrode and headshape point to the scalp
after alignment (before projection; + outside). ``rms_mm`` is over the points that are not
outliers (by the same Tukey rule); ``rms_all_mm`` and ``max_mm`` over all. The fit is
refused (:class:`~rtsource.errors.GeometryError`) when ``rms_mm > max_rms_mm`` or more than
``max_outlier_fraction`` of the points are outliers, unless ``allow_bad_fit`` is set.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from .errors import ConfigError, FrameError, GeometryError
from .geometry import Frame, Mesh, Points, Transform, project_onto_mesh
from .geometry.head_frames import (
    FIDUCIAL_NAMES,
    check_spans_plane,
    compose,
    ctf_from_fiducials,
    fit_points,
    head_from_fiducials,
)
from .channel_names import canonical_label
from .sensors.montage import Montage
from .sensors.readers import Digitization, ReadReport, read_digitization

logger = logging.getLogger(__name__)

#: Default refusal threshold on the RMS distance of the (inlier) points to the scalp, mm.
#: Measured on the template (ICP, rigid): montages digitised on other heads (MNE-Python's
#: colin27, MGH60/70, EGI GSN 65/257) land at 1.6-3.1 mm; a head 14% smaller than the
#: template (GSN 129) at 9.3 mm (1.4 mm with scale=True); an idealised BrainVision sphere
#: at 9.2 mm (6.1 mm scaled). Units or frames gone wrong give centimetres.
DEFAULT_MAX_RMS_MM = 5.0
#: Default refusal threshold on the fraction of points the robust fit rejects.
DEFAULT_MAX_OUTLIER_FRACTION = 0.2
#: The methods :func:`coregister` knows.
METHODS = ("icp", "fiducials", "none")

_BY_LABELS = "electrode labels"
_TUKEY_C = 4.685  # 95% efficiency at the Gaussian (Beaton & Tukey 1974)
_MAD_TO_SIGMA = 1.4826  # MAD of a Gaussian times this is its sigma


# ---- robust weights ---------------------------------------------------------------------------


def tukey_weights(distances_m: np.ndarray, *, sigma_floor_m: float = 1e-3) -> tuple[np.ndarray, float]:
    """Tukey biweight of distances with a MAD scale (see module docstring).

    Returns
    -------
    weights : ndarray, shape (n,)
        In [0, 1]; 0 marks an outlier.
    cutoff_m : float
        The distance ``c`` beyond which the weight is 0.
    """
    d = np.abs(np.asarray(distances_m, dtype=float))
    if not len(d):
        return d, np.inf
    sigma = max(_MAD_TO_SIGMA * float(np.median(d)), sigma_floor_m)
    c = _TUKEY_C * sigma
    u = d / c
    return np.where(u < 1.0, (1.0 - u**2) ** 2, 0.0), c


class _Projector:
    """Closest points on one mesh, with the search structures built once.

    The same search as :func:`rtsource.geometry.project_onto_mesh` (the triangles around the
    nearest vertices, Ericson's closest point on each), but the k-d tree and the
    vertex -> triangle table are kept across the many calls an ICP makes, and all candidate
    triangles are tested in one vectorised pass.
    """

    def __init__(self, mesh: Mesh, n_candidates: int = 12):
        from scipy.spatial import cKDTree

        self.mesh = mesh
        self.v = mesh.vertices_m
        self.t = mesh.triangles
        self.vn = mesh.vertex_normals()
        self.tree = cKDTree(self.v)
        counts = np.bincount(self.t.ravel(), minlength=len(self.v))
        order = np.argsort(self.t.ravel(), kind="stable")
        starts = np.r_[0, np.cumsum(counts)[:-1]]
        width = int(counts.max())
        table = np.full((len(self.v), width), -1, dtype=np.int64)
        for k in range(width):
            has = counts > k
            table[has, k] = order[starts[has] + k] // 3
        self.table = table
        self.k = min(n_candidates, len(self.v))

    def __call__(self, points_m: np.ndarray):
        """Closest points (n, 3), outward pseudo-normals there (n, 3), signed distances (n,)."""
        from .geometry.mesh import _closest_on_triangles

        p = np.atleast_2d(np.asarray(points_m, dtype=float))
        _, near = self.tree.query(p, k=self.k)
        cand = self.table[np.asarray(near).reshape(len(p), self.k)].reshape(len(p), -1)
        ok = cand >= 0
        tri = np.where(ok, cand, 0)
        rows = np.repeat(np.arange(len(p)), cand.shape[1])
        flat = tri.ravel()
        a, b, c = (self.v[self.t[flat, i]] for i in range(3))
        w = _closest_on_triangles(p[rows], a, b, c)
        q = w[:, :1] * a + w[:, 1:2] * b + w[:, 2:] * c
        d = np.linalg.norm(q - p[rows], axis=1).reshape(len(p), -1)
        d[~ok] = np.inf
        best = np.argmin(d, axis=1)
        pick = np.arange(len(p)) * cand.shape[1] + best
        q, w, tri_best = q[pick], w[pick], flat[pick]
        dist = d[np.arange(len(p)), best]
        # pseudo-normal: barycentric blend of vertex normals (Baerentzen & Aanaes 2005)
        normal = np.einsum("nk,nkj->nj", w, self.vn[self.t[tri_best]])
        normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
        signed = np.einsum("nj,nj->n", p - q, normal)
        return q, normal, np.where(signed < 0, -dist, dist)


def _skew(a: np.ndarray) -> np.ndarray:
    """Stacked cross-product matrices: _skew(a) @ w == a x w, shape (n, 3, 3)."""
    z = np.zeros(len(a))
    return np.stack(
        [np.stack([z, -a[:, 2], a[:, 1]], 1), np.stack([a[:, 2], z, -a[:, 0]], 1), np.stack([-a[:, 1], a[:, 0], z], 1)], 1
    )


def _rotation(rotvec: np.ndarray) -> np.ndarray:
    """Rodrigues' formula: the rotation by |v| radians about v."""
    theta = float(np.linalg.norm(rotvec))
    if theta < 1e-15:
        return np.eye(3)
    k = rotvec / theta
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(theta) * kx + (1 - np.cos(theta)) * kx @ kx


def _apply(m: np.ndarray, p: np.ndarray) -> np.ndarray:
    return p @ m[:3, :3].T + m[:3, 3]


@dataclass(frozen=True)
class IcpFit:
    """Result of :func:`icp_to_surface`.

    Attributes
    ----------
    matrix : ndarray, shape (4, 4)
        The refined transform (metres), initial transform included.
    iterations : int
    converged : bool
    weights : ndarray, shape (n,)
        Final robust weights of the surface points (0 = outlier).
    distances_m : ndarray, shape (n,)
        Final signed distances to the surface (+ outside).
    """

    matrix: np.ndarray
    iterations: int
    converged: bool
    weights: np.ndarray
    distances_m: np.ndarray


def icp_to_surface(
    points_m: np.ndarray,
    surface: Mesh,
    *,
    initial: np.ndarray | None = None,
    pairs: tuple[np.ndarray, np.ndarray] | None = None,
    pair_weight: float = 1.0,
    scale: bool = False,
    max_iterations: int = 100,
    tol_mm: float = 1e-3,
    robust: bool = True,
) -> IcpFit:
    """Robust point-to-plane ICP of points onto a surface (see the module docstring).

    Parameters
    ----------
    points_m : ndarray, shape (n, 3)
        Points (metres) in the frame ``initial`` maps from; n >= 4 spanning a plane.
    surface : Mesh
        The surface, in the frame ``initial`` maps to.
    initial : ndarray, shape (4, 4), optional
        Starting transform (identity).
    pairs : (source, target), each ndarray (k, 3), optional
        Point-to-point correspondences (fiducials) kept during the fit.
    pair_weight : float
        Weight of each pair (a surface point has weight <= 1).
    scale : bool
        Fit a uniform scale as well.
    max_iterations : int
    tol_mm : float
        Stop when no point moves more than this in an iteration.
    robust : bool
        Tukey reweighting (else all points weigh 1).
    """
    p0 = np.asarray(points_m, dtype=float)
    check_spans_plane(p0, "ICP points")
    m = np.eye(4) if initial is None else np.array(initial, dtype=float)
    project = _Projector(surface)
    n_par = 7 if scale else 6
    pair_src = pair_dst = None
    if pairs is not None and pair_weight > 0:
        pair_src = np.asarray(pairs[0], dtype=float)
        pair_dst = np.asarray(pairs[1], dtype=float)

    def geometry(mat: np.ndarray) -> tuple:
        p = _apply(mat, p0)
        return (p, *project(p))

    def objective(mat: np.ndarray, geo: tuple, cutoff: float) -> float:
        """Tukey rho of the surface distances plus the weighted pair term (metres^2)."""
        d = geo[3]
        if robust:
            u = np.minimum(np.abs(d) / cutoff, 1.0)
            cost = float((cutoff**2 / 6.0 * (1.0 - (1.0 - u**2) ** 3)).sum())
        else:
            cost = float(0.5 * (d**2).sum())
        if pair_src is not None:
            cost += 0.5 * pair_weight * float(((_apply(mat, pair_src) - pair_dst) ** 2).sum())
        return cost

    # The Tukey cutoff follows the residuals for the first iterations (the start may be
    # centimetres off), then is frozen so that every iteration lowers one fixed objective:
    # with the step halving below, the iteration cannot cycle.
    n_adapt = 8
    geo = geometry(m)
    cutoff = np.inf
    converged = False
    it = 0
    moved = np.inf
    for it in range(1, max_iterations + 1):
        p, q, n, d = geo
        if robust and it <= n_adapt:
            cutoff = tukey_weights(d)[1]
        cost = objective(m, geo, cutoff)
        if robust:
            u = np.abs(d) / cutoff
            weights = np.where(u < 1.0, (1.0 - u**2) ** 2, 0.0)
        else:
            weights = np.ones(len(p))
        if np.count_nonzero(weights) < n_par:
            raise GeometryError(
                f"ICP: only {np.count_nonzero(weights)} of {len(p)} points are near the scalp "
                f"(median distance {np.median(np.abs(d)) * 1e3:.1f} mm); the initial alignment is too far off"
            )
        c = np.average(p, axis=0, weights=weights)
        a = p - c
        r = np.einsum("ij,ij->i", p - q, n)
        rows = [np.c_[np.cross(a, n), n] if not scale else np.c_[np.cross(a, n), n, np.einsum("ij,ij->i", n, a)]]
        res = [r]
        w = [weights]
        if pair_src is not None:
            src = _apply(m, pair_src)
            af = src - c
            jac = np.concatenate([-_skew(af), np.broadcast_to(np.eye(3), (len(af), 3, 3))], axis=2)
            if scale:
                jac = np.concatenate([jac, af[:, :, None]], axis=2)
            rows.append(jac.reshape(-1, n_par))
            res.append((src - pair_dst).reshape(-1))
            w.append(np.full(3 * len(af), pair_weight))
        jmat = np.concatenate(rows)
        sw = np.sqrt(np.concatenate(w))
        x, *_ = np.linalg.lstsq(jmat * sw[:, None], -np.concatenate(res) * sw, rcond=None)
        # Backtracking: halve the step until the objective does not rise (the Gauss-Newton
        # step of the linearised problem can overshoot where closest points jump).
        for _ in range(8):
            inc = np.eye(4)
            rot = (1.0 + (x[6] if scale else 0.0)) * _rotation(x[:3])
            inc[:3, :3] = rot
            inc[:3, 3] = c - rot @ c + x[3:6]
            new_geo = geometry(inc @ m)
            if objective(inc @ m, new_geo, cutoff) <= cost * (1 + 1e-12):
                break
            x = 0.5 * x
        else:
            converged = True  # no descent direction left
            break
        m = inc @ m
        geo = new_geo
        moved = float(np.linalg.norm(new_geo[0] - p, axis=1).max())
        if moved < tol_mm * 1e-3:
            converged = True
            break
    d = geo[3]
    if robust:
        u = np.abs(d) / cutoff
        weights = np.where(u < 1.0, (1.0 - u**2) ** 2, 0.0)
    else:
        weights = np.ones(len(d))
    if not converged:
        logger.warning("ICP did not converge in %d iterations (last step %.3g mm)", max_iterations, moved * 1e3)
    return IcpFit(m, it, converged, weights, d)


# ---- initial alignment ----------------------------------------------------------------------


def fiducial_alignment(fiducials: Points, target: Points, *, scale: bool = False) -> Transform:
    """Least-squares fit of NAS, LPA, RPA onto the target's (Umeyama 1991).

    Parameters
    ----------
    fiducials : Points
        NAS, LPA, RPA (canonical or known spellings) in any frame.
    target : Points
        The head model's NAS, LPA, RPA (e.g. the template's, TEMPLATE frame).
    scale : bool
        Also fit a uniform scale.

    Returns
    -------
    Transform
        ``fiducials.frame -> target.frame``.
    """
    from .geometry.head_frames import fiducials_m

    src = np.array(fiducials_m(fiducials))
    dst = np.array(fiducials_m(target))
    fit = fit_points(src, dst, scale=scale, what="fiducial alignment")
    return fit.transform(fiducials.frame, target.frame)


def _label_pairs(electrodes: Points, target: Points, aliases: Mapping[str, str] | None):
    lookup = {canonical_label(x): i for i, x in enumerate(target.labels)}
    src, dst, names = [], [], []
    for label, pos in zip(electrodes.labels, electrodes.positions_m):
        j = lookup.get(canonical_label(label, aliases))
        if j is not None:
            src.append(pos)
            dst.append(target.positions_m[j])
            names.append(label)
    return np.array(src).reshape(-1, 3), np.array(dst).reshape(-1, 3), names


def label_alignment(
    electrodes: Points, target: Points, *, aliases: Mapping[str, str] | None = None, scale: bool = False, min_labels: int = 4
) -> tuple[Transform, list[str]]:
    """Fit electrodes onto the template's positions of the same names (Umeyama 1991).

    One robust pass: after the first fit, pairs further than Tukey's cutoff of the
    residuals are dropped and the fit repeated (a mislabelled electrode must not pull it).

    Returns
    -------
    transform : Transform
        ``electrodes.frame -> target.frame``.
    used : list of str
        The labels the final fit used.
    """
    src, dst, names = _label_pairs(electrodes, target, aliases)
    if len(names) < min_labels:
        raise GeometryError(
            f"only {len(names)} electrode label(s) ({', '.join(names) or 'none'}) match the template's "
            f"10-05 names; need at least {min_labels} to align by labels"
        )
    fit = fit_points(src, dst, scale=scale, what="label alignment")
    w, _ = tukey_weights(fit.residuals_m, sigma_floor_m=2e-3)
    keep = w > 0
    if keep.sum() >= min_labels and not keep.all():
        fit = fit_points(src[keep], dst[keep], scale=scale, what="label alignment")
        names = [n for n, k in zip(names, keep) if k]
    return fit.transform(electrodes.frame, target.frame), names


def initial_alignment(
    dig: Digitization, template, *, aliases: Mapping[str, str] | None = None, scale: bool = False
) -> tuple[Transform, str]:
    """The first transform of ``dig`` onto the template, and how it was obtained.

    Order of preference: already in TEMPLATE; fiducials; electrode labels; a fiducial
    frame (HEAD, CTF) mapped through the template's own fiducial frame.
    """
    if dig.frame == Frame.TEMPLATE:
        return Transform.identity(Frame.TEMPLATE, Frame.TEMPLATE), "positions already in the template frame"
    if dig.has_fiducials:
        t = fiducial_alignment(dig.fiducials, template.fiducials, scale=scale)
        return t, "fiducials (NAS, LPA, RPA) fitted to the template's"
    n_match = 0
    if dig.electrodes is not None:
        _, _, names = _label_pairs(dig.electrodes, template.electrodes, aliases)
        n_match = len(names)
        if n_match >= 4:
            try:
                t, used = label_alignment(dig.electrodes, template.electrodes, aliases=aliases, scale=scale)
                return t, f"{_BY_LABELS} ({len(used)}) fitted to the template's 10-05 positions"
            except GeometryError as exc:
                logger.warning("label alignment failed (%s)", exc)
    if dig.frame == Frame.HEAD:
        return head_from_fiducials(template.fiducials).inverse(), "HEAD frame mapped through the template's own fiducial head frame"
    if dig.frame == Frame.CTF:
        return ctf_from_fiducials(template.fiducials).inverse(), "CTF frame mapped through the template's own fiducial CTF frame"
    raise GeometryError(
        f"cannot place {dig.name!r} on the template: it has no fiducials (NAS, LPA, RPA), only {n_match} "
        f"electrode label(s) that the template knows (need 4), and its frame is {dig.frame.value!r}; "
        f"add the fiducials to the file, pass an alias map to standard names, or state the frame "
        f"(frame='head' / 'ctf' / 'template')"
    )


# ---- results ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CoregQC:
    """How well the aligned points sit on the scalp (distances in mm, + outside).

    Attributes
    ----------
    method, initial : str
        The method and how the initial alignment was made.
    scale : float
        Uniform scale of the transform (1 for rigid).
    rotation_deg, translation_mm : float
        Size of the rotation and of the translation (at the origin) of the transform.
    iterations : int
    converged : bool
        ICP iterations and whether it converged (0 / True without ICP).
    point_kinds, point_labels : tuple of str
        ``"electrode"`` or ``"headshape"`` and the label ("" for headshape) per point.
    distances_mm : ndarray, shape (n,)
        Signed distance of each point to the scalp after alignment, before projection.
    outliers : ndarray of bool, shape (n,)
        Points beyond Tukey's cutoff (see module docstring).
    rms_mm : float
        RMS distance over the points that are not outliers: the number tested.
    rms_all_mm, max_mm, median_mm : float
        Over all points (``max`` and ``median`` of the absolute distance).
    fiducial_errors_mm : tuple of (str, float)
        Distance of each aligned fiducial from the template's.
    max_rms_mm, max_outlier_fraction : float
        The thresholds.
    passed : bool
        ``rms_mm <= max_rms_mm`` and the outlier fraction <= ``max_outlier_fraction``.
    """

    method: str
    initial: str
    scale: float
    rotation_deg: float
    translation_mm: float
    iterations: int
    converged: bool
    point_kinds: tuple[str, ...]
    point_labels: tuple[str, ...]
    distances_mm: np.ndarray
    outliers: np.ndarray
    rms_mm: float
    rms_all_mm: float
    max_mm: float
    median_mm: float
    fiducial_errors_mm: tuple[tuple[str, float], ...]
    max_rms_mm: float
    max_outlier_fraction: float
    passed: bool

    @property
    def n_points(self) -> int:
        return len(self.distances_mm)

    @property
    def outlier_fraction(self) -> float:
        return float(self.outliers.mean()) if len(self.outliers) else 0.0

    def outlier_names(self) -> list[str]:
        """Labels of the outlying points (``headshape #k`` for unlabelled ones)."""
        out = []
        k_hs = 0
        for kind, label, bad in zip(self.point_kinds, self.point_labels, self.outliers):
            if kind == "headshape":
                k_hs += 1
            if bad:
                out.append(label if label else f"headshape #{k_hs}")
        return out

    def as_dict(self) -> dict:
        """JSON-ready summary (per-point distances included)."""
        return {
            "method": self.method,
            "initial": self.initial,
            "scale": self.scale,
            "rotation_deg": self.rotation_deg,
            "translation_mm": self.translation_mm,
            "iterations": self.iterations,
            "converged": self.converged,
            "n_points": self.n_points,
            "rms_mm": self.rms_mm,
            "rms_all_mm": self.rms_all_mm,
            "max_mm": self.max_mm,
            "median_mm": self.median_mm,
            "outliers": self.outlier_names(),
            "fiducial_errors_mm": dict(self.fiducial_errors_mm),
            "max_rms_mm": self.max_rms_mm,
            "max_outlier_fraction": self.max_outlier_fraction,
            "passed": self.passed,
            "points": [
                {"kind": k, "label": lab, "distance_mm": round(float(d), 3), "outlier": bool(o)}
                for k, lab, d, o in zip(self.point_kinds, self.point_labels, self.distances_mm, self.outliers)
            ],
        }

    def summary(self) -> str:
        """A few lines for the CLI and logs."""
        n_el = self.point_kinds.count("electrode")
        n_hs = self.point_kinds.count("headshape")
        lines = [
            f"coregistration ({self.method}; start: {self.initial})",
            f"  points: {n_el} electrodes, {n_hs} headshape; distance to scalp RMS {self.rms_mm:.2f} mm "
            f"(all points {self.rms_all_mm:.2f} mm), median {self.median_mm:.2f} mm, max {self.max_mm:.2f} mm",
            f"  transform: rotation {self.rotation_deg:.1f} deg, translation {self.translation_mm:.1f} mm, "
            f"scale {self.scale:.4f}" + (f"; ICP {self.iterations} iterations" + ("" if self.converged else " (NOT converged)") if self.iterations else ""),
        ]
        if self.fiducial_errors_mm:
            lines.append("  fiducials vs template: " + ", ".join(f"{n} {e:.1f} mm" for n, e in self.fiducial_errors_mm))
        names = self.outlier_names()
        if names:
            shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
            lines.append(f"  outliers ({len(names)}, {self.outlier_fraction:.0%}): {shown}")
        verdict = "PASSED" if self.passed else "FAILED"
        lines.append(
            f"  {verdict}: RMS {self.rms_mm:.2f} mm vs max_rms_mm {self.max_rms_mm:g}; outliers "
            f"{self.outlier_fraction:.0%} vs max {self.max_outlier_fraction:.0%}"
        )
        return "\n".join(lines)


@dataclass(frozen=True)
class CoregResult:
    """Everything coregistration produced.

    Attributes
    ----------
    transform : Transform
        From the digitisation's frame to TEMPLATE (rigid, or with a uniform scale).
    montage : Montage
        Electrodes in TEMPLATE, projected onto the scalp (when ``project``), with the
        aligned fiducials; labels as in the file (``montage.pick(channels, aliases)``).
    aligned : Digitization
        Every point set moved to TEMPLATE, not projected.
    qc : CoregQC
    reports : tuple of ReadReport
        How the input files were read.
    projection_mm : ndarray, shape (n_electrodes,)
        How far each electrode moved when projected onto the scalp.
    qc_png : str or None
        The QC picture written, if any.
    """

    transform: Transform
    montage: Montage
    aligned: Digitization
    qc: CoregQC
    reports: tuple[ReadReport, ...] = ()
    projection_mm: np.ndarray = field(default_factory=lambda: np.zeros(0))
    qc_png: str | None = None

    def summary(self) -> str:
        head = [r.describe() for r in self.reports]
        tail = [f"QC picture: {self.qc_png}"] if self.qc_png else []
        return "\n".join(head + [self.qc.summary()] + tail)

    def to_dict(self) -> dict:
        """JSON-ready: transform, electrode positions (TEMPLATE, m), QC, how files were read."""
        return {
            "transform": {
                "from": self.transform.from_frame.value,
                "to": self.transform.to_frame.value,
                "unit": "m",
                "matrix": self.transform.matrix.tolist(),
            },
            "electrodes": {
                "frame": self.montage.frame.value,
                "unit": "m",
                "labels": list(self.montage.labels),
                "positions": self.montage.electrodes.positions_m.tolist(),
            },
            "qc": self.qc.as_dict(),
            "reports": [r.describe() for r in self.reports],
            "qc_png": self.qc_png,
        }

    def write_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON (provenance for the bundle, or a record of the fit)."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        return path


def _rotation_angle_deg(m: np.ndarray) -> float:
    r = m[:3, :3] / np.cbrt(np.linalg.det(m[:3, :3]))
    return float(np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1, 1))))


# ---- the step ---------------------------------------------------------------------------


def coregister(
    dig: Digitization,
    *,
    method: str = "icp",
    scale: bool = False,
    aliases: Mapping[str, str] | None = None,
    template=None,
    project: bool = True,
    use_electrodes: bool = True,
    fiducial_weight: float = 1.0,
    label_weight: float = 0.1,
    max_rms_mm: float = DEFAULT_MAX_RMS_MM,
    max_outlier_fraction: float = DEFAULT_MAX_OUTLIER_FRACTION,
    allow_bad_fit: bool = False,
    qc_png: str | Path | None = None,
    max_iterations: int = 100,
) -> CoregResult:
    """Align a digitisation to the template head and check the fit.

    Parameters
    ----------
    dig : Digitization
        Electrodes (required), fiducials and headshape points, in any frame.
    method : {"icp", "fiducials", "none"}
        ``"icp"``: initial alignment refined by ICP; ``"fiducials"``: initial alignment only
        (fiducials, else labels, else frame); ``"none"``: the positions must already be in
        the template frame.
    scale : bool
        Fit a uniform scale (template heads: adapts the template's size to the subject's).
    aliases : mapping, optional
        Label aliases (file name -> standard name), used to match labels to the template.
    template : Template, optional
        The head model (default :func:`rtsource.anatomy.template.load_template`).
    project : bool
        Project the electrodes onto the scalp in the result's montage.
    use_electrodes : bool
        Use the electrodes in the ICP as well as the headshape points.
    fiducial_weight : float
        Weight of each fiducial pair in the ICP (0: headshape only).
    label_weight : float
        Without fiducials, when the start came from electrode labels: weight of each
        label pair (electrode -> template position of that name) in the ICP.
    max_rms_mm, max_outlier_fraction : float
        Refusal thresholds (see module docstring).
    allow_bad_fit : bool
        Return a failed fit instead of raising (a warning is logged).
    qc_png : path, optional
        Write the QC picture there (needs matplotlib: ``pip install rtsource[qc]``); it is
        written before a refusal, so it can be looked at.
    max_iterations : int
        ICP iteration limit.

    Raises
    ------
    GeometryError
        When the fit fails the thresholds and ``allow_bad_fit`` is False; the message
        names the RMS, the threshold and the override.
    """
    from .anatomy.template import load_template

    if method not in METHODS:
        raise ConfigError(f"coregistration method {method!r} is not known; use one of {', '.join(METHODS)}")
    if not max_rms_mm > 0 or not 0 < max_outlier_fraction <= 1:
        raise ConfigError(
            f"max_rms_mm = {max_rms_mm!r} must be > 0 and max_outlier_fraction = {max_outlier_fraction!r} in (0, 1]"
        )
    if dig.electrodes is None or not len(dig.electrodes):
        raise GeometryError(f"{dig.name!r} has no electrodes to coregister")
    template = template or load_template()
    scalp = template.surfaces.scalp

    if method == "none":
        if dig.frame != Frame.TEMPLATE:
            raise FrameError(
                f"coregistration method 'none' needs positions in the 'template' frame, but {dig.name!r} is in "
                f"{dig.frame.value!r}; use method 'fiducials' or 'icp', or state frame='template' if it is"
            )
        transform, initial = Transform.identity(Frame.TEMPLATE, Frame.TEMPLATE), "none (positions taken as they are)"
    else:
        transform, initial = initial_alignment(dig, template, aliases=aliases, scale=scale)
    iterations, converged = 0, True

    surface_sets = [dig.headshape] + ([dig.electrodes] if use_electrodes or dig.headshape is None else [])
    surface_sets = [s for s in surface_sets if s is not None and len(s)]
    src_m = np.concatenate([s.positions_m for s in surface_sets])
    if method == "icp":
        pairs, pair_weight = None, 0.0
        if dig.has_fiducials and fiducial_weight > 0:
            from .geometry.head_frames import fiducials_m

            pairs = (np.array(fiducials_m(dig.fiducials)), np.array(fiducials_m(template.fiducials)))
            pair_weight = fiducial_weight
        elif initial.startswith(_BY_LABELS) and label_weight > 0:
            # no fiducials: the label correspondences pin the rotations instead
            src, dst, _ = _label_pairs(dig.electrodes, template.electrodes, aliases)
            pairs, pair_weight = (src, dst), label_weight
        fit = icp_to_surface(
            src_m, scalp, initial=transform.matrix, pairs=pairs, pair_weight=pair_weight, scale=scale, max_iterations=max_iterations
        )
        transform = Transform(dig.frame, Frame.TEMPLATE, fit.matrix)
        iterations, converged = fit.iterations, fit.converged

    aligned = dig.transformed(transform)
    if aligned.frame != Frame.TEMPLATE:  # identity TEMPLATE->TEMPLATE keeps the frame; anything else is a bug
        raise FrameError(f"coregistration ended in the {aligned.frame.value!r} frame, not 'template'")

    # QC: electrodes, then headshape points
    kinds: list[str] = []
    labels: list[str] = []
    qc_pts = []
    for kind, pts in (("electrode", aligned.electrodes), ("headshape", aligned.headshape)):
        if pts is not None and len(pts):
            kinds += [kind] * len(pts)
            labels += list(pts.labels) if pts.labels else [""] * len(pts)
            qc_pts.append(pts.positions_m)
    qc_m = np.concatenate(qc_pts)
    _, _, dist = _Projector(scalp)(qc_m)
    w, _ = tukey_weights(dist)
    outliers = w == 0
    d_mm = dist * 1e3
    inl = d_mm[~outliers]
    rms = float(np.sqrt(np.mean(inl**2))) if len(inl) else float("inf")
    fid_err: tuple[tuple[str, float], ...] = ()
    if aligned.has_fiducials:
        mine = aligned.fiducials.select(list(FIDUCIAL_NAMES)).positions_m
        theirs = template.fiducials.select(list(FIDUCIAL_NAMES)).positions_m
        fid_err = tuple((n, float(e)) for n, e in zip(FIDUCIAL_NAMES, np.linalg.norm(mine - theirs, axis=1) * 1e3))
    passed = rms <= max_rms_mm and outliers.mean() <= max_outlier_fraction
    mat = transform.matrix
    qc = CoregQC(
        method=method,
        initial=initial,
        scale=float(np.cbrt(np.linalg.det(mat[:3, :3]))),
        rotation_deg=_rotation_angle_deg(mat),
        translation_mm=float(np.linalg.norm(mat[:3, 3]) * 1e3),
        iterations=iterations,
        converged=converged,
        point_kinds=tuple(kinds),
        point_labels=tuple(labels),
        distances_mm=d_mm,
        outliers=outliers,
        rms_mm=rms,
        rms_all_mm=float(np.sqrt(np.mean(d_mm**2))),
        max_mm=float(np.abs(d_mm).max()),
        median_mm=float(np.median(np.abs(d_mm))),
        fiducial_errors_mm=fid_err,
        max_rms_mm=float(max_rms_mm),
        max_outlier_fraction=float(max_outlier_fraction),
        passed=bool(passed),
    )

    el = aligned.electrodes
    if project:
        proj = project_onto_mesh(el.positions_m, scalp)
        el_final = Points(proj.points_m, Frame.TEMPLATE, "m", el.labels)
        moved = proj.distances_m * 1e3
    else:
        el_final, moved = el, np.zeros(len(el))
    fid = aligned.fiducials.select(list(FIDUCIAL_NAMES)) if aligned.has_fiducials else None
    montage = Montage(el_final, fid, dig.name)
    reports = (dig.report,) if dig.report is not None else ()
    result = CoregResult(transform, montage, aligned, qc, reports, moved)

    if qc_png is not None:
        from .qc_plot import write_coreg_qc_png

        png = write_coreg_qc_png(result, template, qc_png)
        result = CoregResult(transform, montage, aligned, qc, reports, moved, str(png))
    logger.info("%s", qc.summary())
    if not passed:
        problem = (
            f"RMS distance to the scalp {qc.rms_mm:.2f} mm exceeds max_rms_mm = {max_rms_mm:g} mm"
            if qc.rms_mm > max_rms_mm
            else f"{qc.outlier_fraction:.0%} of the points are outliers (more than max_outlier_fraction = {max_outlier_fraction:.0%})"
        )
        look = f"look at the QC picture {result.qc_png}, " if result.qc_png else ""
        message = (
            f"coregistration of {dig.name!r} is poor: {problem} ({qc.n_points} points, max {qc.max_mm:.1f} mm, "
            f"method {method!r}); {look}check the file's unit, frame and labels"
            + ("" if scale else ", or try scale=True (--scale)")
            + ", or accept the fit with allow_bad_fit=True (rtsource coreg --allow-bad-fit; [coreg] allow_bad_fit = true)"
        )
        if not allow_bad_fit:
            raise GeometryError(message)
        logger.warning("%s (accepted: allow_bad_fit)", message)
    return result


def run_coreg(
    montage_path: str | Path,
    *,
    aliases: Mapping[str, str] | None = None,
    headshape_path: str | Path | None = None,
    method: str = "icp",
    scale: bool = False,
    max_rms_mm: float = DEFAULT_MAX_RMS_MM,
    max_outlier_fraction: float = DEFAULT_MAX_OUTLIER_FRACTION,
    qc_png: str | Path | None = None,
    allow_bad_fit: bool = False,
    channels: Iterable[str] | None = None,
    unit: str | None = None,
    frame: Frame | str | None = None,
    format: str | None = None,
    bem_order: int = 4,
    project: bool = True,
) -> CoregResult:
    """Read a montage (and headshape) file and coregister it to the template: ``rtsource coreg``.

    Parameters
    ----------
    montage_path : path
        Electrode file in any format :func:`rtsource.sensors.readers.read_digitization` reads.
    aliases : mapping, optional
        Stream / file label -> standard name.
    headshape_path : path, optional
        A second file with headshape points (and fiducials, if the montage has none), in the
        same digitiser frame as the montage.
    method, scale, max_rms_mm, max_outlier_fraction, allow_bad_fit, project
        See :func:`coregister`.
    qc_png : path, optional
        Write the QC picture there.
    channels : list of str, optional
        Channel names the electrodes must cover (checked before the fit; the error lists the
        missing ones).
    unit, frame, format : optional
        Override what the montage file says (see ``read_digitization``).
    bem_order : int
        Template surface resolution (3 or 4).
    """
    from .anatomy.template import load_template

    dig = read_digitization(montage_path, format=format, unit=unit, frame=frame)
    reports = [dig.report]
    if headshape_path is not None:
        hs = read_digitization(headshape_path, frame=frame)
        reports.append(hs.report)
        if hs.frame != dig.frame and Frame.UNKNOWN in (hs.frame, dig.frame):
            # one file said its frame, the other did not: they come from the same digitiser
            hs = hs.with_frame(dig.frame) if hs.frame == Frame.UNKNOWN else hs
            dig = dig.with_frame(hs.frame) if dig.frame == Frame.UNKNOWN else dig
        dig = dig.merged(hs)
    if channels is not None:
        dig.montage().pick(list(channels), aliases)  # fails early, listing missing channels
    result = coregister(
        dig,
        method=method,
        scale=scale,
        aliases=aliases,
        template=load_template(bem_order),
        project=project,
        max_rms_mm=max_rms_mm,
        max_outlier_fraction=max_outlier_fraction,
        allow_bad_fit=allow_bad_fit,
        qc_png=qc_png,
    )
    return CoregResult(result.transform, result.montage, result.aligned, result.qc, tuple(reports), result.projection_mm, result.qc_png)


def template_montage(
    montage: str,
    channels: Iterable[str],
    *,
    aliases: Mapping[str, str] | None = None,
    base_dir: str | Path = ".",
    **coreg_kwargs,
) -> tuple[Montage, CoregResult | None]:
    """Electrodes for the offline build, in the TEMPLATE frame, picked in channel order.

    ``montage`` is a standard name (``standard_1020``/``standard_1010``/``standard_1005``:
    positions already on the template, no coregistration) or a file path (relative to
    ``base_dir``), which is coregistered with :func:`run_coreg` (``coreg_kwargs``: method,
    headshape_path, scale, max_rms_mm, allow_bad_fit, qc_png, unit, frame, bem_order).

    Returns
    -------
    montage : Montage
        TEMPLATE frame, metres, one electrode per channel, named like the channels.
    result : CoregResult or None
        The coregistration (None for standard montages), for provenance.
    """
    from .sensors.montage import STANDARD_SYSTEMS, standard_montage

    channels = list(channels)
    if montage in STANDARD_SYSTEMS:
        return standard_montage(montage).pick(channels, aliases), None
    path = Path(montage).expanduser()
    if not path.is_absolute():
        path = Path(base_dir) / path
    hs = coreg_kwargs.pop("headshape_path", None)
    if hs:
        hs = Path(hs).expanduser()
        hs = hs if hs.is_absolute() else Path(base_dir) / hs
    result = run_coreg(path, aliases=aliases, headshape_path=hs or None, channels=channels, **coreg_kwargs)
    return result.montage.pick(channels, aliases), result


# ---- MEG --------------------------------------------------------------------------------


def head_to_template(fiducials_head: Points, *, template=None, scale: bool = False) -> Transform:
    """HEAD -> TEMPLATE (the head model) from the subject's fiducials in the HEAD frame."""
    from .anatomy.template import load_template

    if fiducials_head.frame != Frame.HEAD:
        raise FrameError(f"fiducials must be in the 'head' frame, got {fiducials_head.frame.value!r}")
    template = template or load_template()
    return fiducial_alignment(fiducials_head, template.fiducials, scale=scale)


def device_to_template(device_to_head: Transform, head_to_model: Transform) -> Transform:
    """DEVICE -> HEAD -> TEMPLATE for MEG sensors, with the frames checked at each link."""
    if device_to_head.from_frame != Frame.DEVICE:
        raise FrameError(f"the first transform must start in 'device', not {device_to_head.from_frame.value!r}")
    return compose(device_to_head, head_to_model)


__all__ = [
    "DEFAULT_MAX_OUTLIER_FRACTION",
    "DEFAULT_MAX_RMS_MM",
    "METHODS",
    "CoregQC",
    "CoregResult",
    "IcpFit",
    "coregister",
    "device_to_template",
    "fiducial_alignment",
    "head_to_template",
    "icp_to_surface",
    "initial_alignment",
    "label_alignment",
    "run_coreg",
    "template_montage",
    "tukey_weights",
]
