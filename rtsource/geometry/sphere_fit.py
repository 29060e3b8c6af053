"""Least-squares sphere through points (scalp, inner skull or electrode positions).

Spherical head models need a centre and a radius: the EEG series
(:mod:`rtsource.forward.sphere`) a sphere fitted to the scalp, the MEG Sarvas formula an
origin fitted to the inner skull, a volume source space the centre it keeps sources away
from. All of them fit here.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from ..errors import GeometryError

logger = logging.getLogger(__name__)

__all__ = ["fit_sphere"]


def _fmt_vec(v: np.ndarray) -> str:
    return "(" + ", ".join(f"{x:.4g}" for x in np.asarray(v, dtype=float)) + ")"


def fit_sphere(points_m: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares sphere through points.

    An algebraic fit (linear in centre and r^2 - |c|^2; Kasa 1976, IEEE Trans Instrum Meas
    25:8) gives the start; a geometric fit (sum of squared distances to the surface)
    refines it.

    Parameters
    ----------
    points_m : ndarray, shape (n_points, 3)
        Points in metres (any frame), n_points >= 4, not all on one plane.

    Returns
    -------
    center_m : ndarray, shape (3,)
        Centre of the sphere in metres, in the points' frame.
    radius_m : float
        Radius in metres.

    Raises
    ------
    GeometryError
        If the points are fewer than 4, non-finite, or (nearly) coplanar.
    """
    p = np.asarray(points_m, dtype=float)
    if p.ndim != 2 or p.shape[1] != 3 or p.shape[0] < 4:
        raise GeometryError(
            f"fit_sphere needs points of shape (n, 3) with n >= 4, got {p.shape}; "
            f"pass at least 4 scalp or electrode positions in metres"
        )
    bad = np.flatnonzero(~np.all(np.isfinite(p), axis=1))
    if bad.size:
        raise GeometryError(
            f"fit_sphere: points_m[{int(bad[0])}] = {p[bad[0]].tolist()} is not finite; "
            f"drop or fix that point"
        )
    mean = p.mean(axis=0)
    q = p - mean  # centring keeps the linear system well conditioned
    design = np.column_stack([2.0 * q, np.ones(len(q))])
    rhs = np.sum(q * q, axis=1)
    sol, _, rank, sv = np.linalg.lstsq(design, rhs, rcond=None)
    if rank < 4 or sv[-1] <= 1e-10 * sv[0]:
        raise GeometryError(
            f"fit_sphere: the {len(p)} points are (nearly) coplanar or collinear, so no sphere "
            f"is defined; pass points that cover a cap of the head, not one plane"
        )
    c0 = sol[:3]
    r0 = math.sqrt(max(sol[3] + float(c0 @ c0), 0.0)) or float(np.linalg.norm(q, axis=1).mean())

    from scipy.optimize import least_squares  # lazily: keeps the module import light

    def residuals(params: np.ndarray) -> np.ndarray:
        return np.linalg.norm(q - params[:3], axis=1) - params[3]

    def jacobian(params: np.ndarray) -> np.ndarray:
        d = q - params[:3]
        dist = np.maximum(np.linalg.norm(d, axis=1), 1e-300)
        return np.column_stack([-d / dist[:, None], -np.ones(len(d))])

    fit = least_squares(residuals, np.r_[c0, r0], jac=jacobian, method="lm", xtol=1e-14, ftol=1e-14)
    center = fit.x[:3] + mean
    radius = abs(float(fit.x[3]))
    if not (np.all(np.isfinite(center)) and np.isfinite(radius) and radius > 0):
        raise GeometryError(
            f"fit_sphere did not converge ({fit.message}); check that the points lie on a "
            f"roughly spherical surface"
        )
    logger.debug(
        "fit_sphere: %d points, centre %s m, radius %.4g m, rms residual %.3g m",
        len(p), _fmt_vec(center), radius, math.sqrt(np.mean(fit.fun**2)),
    )
    return center, radius
