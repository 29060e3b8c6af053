"""EEG forward model of concentric spheres: the exact series, validated.

A :class:`SphereModel` holds the centre, radii and conductivities of nested spherical
shells in a named frame. :func:`eeg_sphere_leadfield` computes the potential lead field of
point dipoles inside the innermost shell with the exact series of Zhang (1995, Phys Med Biol
40:335) / de Munck & Peters (1993, IEEE TBME 40:1166), summed per dipole until the rest is
below ``rtol``. The arithmetic lives in :mod:`rtsource.forward._sphere_kernels` (numba),
which is imported only when a lead field is computed, so importing this module is cheap.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np

from ..arrays import frozen as _readonly
from ..errors import ForwardError
from ..geometry.frames import Frame, as_frame
from .positions import positions_m

logger = logging.getLogger(__name__)

__all__ = [
    "SphereModel",
    "SeriesReport",
    "make_sphere_model",
    "eeg_sphere_leadfield",
    "series_coefficients",
]

# An electrode this close to the centre (relative to R) has no usable direction.
_CENTRE_TOL = 1e-6
# Electrodes further than this (relative to R) from the outer sphere are projected with a
# warning: it usually means a wrong unit, frame or centre rather than a sloppy montage.
_OFF_SPHERE_WARN = 0.2


def _fmt_vec(v: np.ndarray) -> str:
    return "(" + ", ".join(f"{x:.4g}" for x in np.asarray(v, dtype=float)) + ")"


@dataclass(frozen=True, eq=False)
class SphereModel:
    """Concentric spherical shells with isotropic conductivities.

    Parameters
    ----------
    center_m : ndarray, shape (3,)
        Common centre in metres, in ``frame``.
    radii_m : ndarray, shape (n_layers,)
        Shell radii in metres, strictly ascending; the last is the scalp (outer) surface.
    conductivities : ndarray, shape (n_layers,)
        Conductivity of each shell in S/m, innermost first (brain, [CSF], skull, scalp);
        ``conductivities[k]`` fills the region between ``radii_m[k-1]`` and ``radii_m[k]``.
    frame : Frame
        Coordinate frame of ``center_m`` (and of the positions used with this model).

    Raises
    ------
    ForwardError
        If a field has the wrong shape, non-finite or non-positive values, or radii that
        are not strictly ascending.
    """

    center_m: np.ndarray
    radii_m: np.ndarray
    conductivities: np.ndarray
    frame: Frame

    def __post_init__(self) -> None:
        object.__setattr__(self, "frame", as_frame(self.frame))
        center = np.array(self.center_m, dtype=float)
        if center.shape != (3,) or not np.all(np.isfinite(center)):
            raise ForwardError(
                f"SphereModel center_m must be 3 finite numbers in metres, got {self.center_m!r}; "
                f"pass the sphere centre as (x, y, z) in the model's frame"
            )
        radii = np.atleast_1d(np.array(self.radii_m, dtype=float))
        sig = np.atleast_1d(np.array(self.conductivities, dtype=float))
        if radii.ndim != 1 or radii.size < 1:
            raise ForwardError(
                f"SphereModel radii_m must be a 1-D array of at least one radius, got shape "
                f"{radii.shape}; pass e.g. (0.081, 0.085, 0.09) metres"
            )
        if sig.shape != radii.shape:
            raise ForwardError(
                f"SphereModel conductivities has {sig.size} values but radii_m has {radii.size}; "
                f"give one conductivity per shell, innermost first"
            )
        bad = np.flatnonzero(~np.isfinite(radii) | (radii <= 0))
        if bad.size:
            k = int(bad[0])
            raise ForwardError(
                f"SphereModel radii_m[{k}] = {float(radii[k])!r} is not a positive finite radius; "
                f"radii are metres, e.g. 0.09 for a 9 cm head"
            )
        steps = np.flatnonzero(np.diff(radii) <= 0)
        if steps.size:
            k = int(steps[0])
            raise ForwardError(
                f"SphereModel radii_m must be strictly ascending (outermost last), but "
                f"radii_m[{k}] = {float(radii[k])!r} >= radii_m[{k + 1}] = {float(radii[k + 1])!r}; "
                f"sort the shells from the brain outwards to the scalp"
            )
        bad = np.flatnonzero(~np.isfinite(sig) | (sig <= 0))
        if bad.size:
            k = int(bad[0])
            raise ForwardError(
                f"SphereModel conductivities[{k}] = {float(sig[k])!r} is not a positive finite "
                f"conductivity; give S/m, e.g. 0.33 for brain and scalp, 0.004-0.01 for skull"
            )
        object.__setattr__(self, "center_m", _readonly(center))
        object.__setattr__(self, "radii_m", _readonly(radii))
        object.__setattr__(self, "conductivities", _readonly(sig))

    @property
    def n_layers(self) -> int:
        """Number of shells."""
        return int(self.radii_m.size)

    @property
    def outer_radius_m(self) -> float:
        """Radius of the outer (scalp) sphere in metres."""
        return float(self.radii_m[-1])

    @property
    def inner_radius_m(self) -> float:
        """Radius of the innermost sphere (the region sources must lie in), metres."""
        return float(self.radii_m[0])

    def __repr__(self) -> str:
        radii_mm = ", ".join(f"{r * 1e3:.1f}" for r in self.radii_m)
        sig = ", ".join(f"{s:.4g}" for s in self.conductivities)
        return (
            f"SphereModel(center_m={_fmt_vec(self.center_m)}, radii_mm=({radii_mm}), "
            f"conductivities=({sig}), frame={self.frame.value!r})"
        )


@dataclass(frozen=True, eq=False)
class SeriesReport:
    """How the series converged for each dipole of :func:`eeg_sphere_leadfield`.

    Parameters
    ----------
    n_terms : ndarray of int, shape (n_dipoles,)
        Number of series terms summed for each dipole.
    max_tail : ndarray, shape (n_dipoles,)
        Upper bound on the omitted terms, relative to the dipole's largest potential over
        the electrodes and unit orientations; <= ``rtol`` when converged.
    eccentricity : ndarray, shape (n_dipoles,)
        Distance of each dipole from the centre divided by the innermost radius.
    """

    n_terms: np.ndarray
    max_tail: np.ndarray
    eccentricity: np.ndarray


def make_sphere_model(
    center_m: np.ndarray,
    radius_m: float,
    frame: Frame | str,
    *,
    relative_radii: tuple[float, ...] = (0.90, 0.92, 0.97, 1.0),
    conductivities: tuple[float, ...] = (0.33, 1.0, 0.004, 0.33),
) -> SphereModel:
    """Concentric-sphere model with MNE-Python's default proportions.

    Parameters
    ----------
    center_m : ndarray, shape (3,)
        Centre in metres, in ``frame`` (e.g. from
        :func:`rtsource.geometry.sphere_fit.fit_sphere` on scalp points).
    radius_m : float
        Outer (scalp) radius in metres.
    frame : Frame or str
        Coordinate frame of the centre.
    relative_radii : sequence of float, shape (n_layers,)
        Shell radii as fractions of ``radius_m``, ascending, last 1.0. The default is
        MNE-Python's brain, CSF, skull, scalp.
    conductivities : sequence of float, shape (n_layers,)
        S/m per shell, innermost first (MNE-Python's default 0.33, 1.0, 0.004, 0.33).

    Returns
    -------
    SphereModel

    Raises
    ------
    ForwardError
        If the radius is not positive and finite or the shells are invalid.
    """
    try:
        radius = float(radius_m)
    except (TypeError, ValueError):
        radius = float("nan")
    if not (math.isfinite(radius) and radius > 0):
        raise ForwardError(
            f"make_sphere_model radius_m = {radius_m!r} is not a positive finite radius; "
            f"give the scalp radius in metres, e.g. 0.09"
        )
    rel = np.atleast_1d(np.array(relative_radii, dtype=float))
    if rel.ndim != 1 or rel.size < 1:
        raise ForwardError(
            f"make_sphere_model relative_radii must be a 1-D sequence, got {relative_radii!r}"
        )
    if not math.isclose(float(rel[-1]), 1.0, rel_tol=0, abs_tol=1e-9):
        raise ForwardError(
            f"make_sphere_model relative_radii must end with 1.0 (the scalp), got "
            f"{tuple(rel.tolist())}; give the radii as fractions of radius_m"
        )
    return SphereModel(
        center_m=np.asarray(center_m, dtype=float),
        radii_m=rel * radius,
        conductivities=np.asarray(conductivities, dtype=float),
        frame=as_frame(frame),
    )


def series_coefficients(model: SphereModel, n_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Layer factors f_n of the series for ``model`` (Zhang 1995).

    Parameters
    ----------
    model : SphereModel
    n_max : int
        Highest order.

    Returns
    -------
    f : ndarray, shape (n_max + 1,)
        ``f[n]`` for n = 1..n_max (``f[0]`` = 0); all ones for a homogeneous sphere.
    ratio_sup : ndarray, shape (n_max + 1,)
        max over m >= n of |f_{m+1}/f_m|, used to bound the series tail.
    """
    if isinstance(n_max, bool) or not isinstance(n_max, (int, np.integer)) or n_max < 1:
        raise ForwardError(f"n_max = {n_max!r} must be a positive integer")
    from . import _sphere_kernels as kernels

    radii = model.radii_m
    rel = np.ascontiguousarray(radii[:-1] / radii[-1])
    sig = model.conductivities
    ratios = np.ascontiguousarray(sig[:-1] / sig[1:])
    f = np.empty(int(n_max) + 1)
    ratio_sup = np.empty(int(n_max) + 1)
    kernels.sphere_coefficients(rel, ratios, f, ratio_sup)
    return f, ratio_sup


def eeg_sphere_leadfield(
    electrodes_m: np.ndarray,
    dipoles_m: np.ndarray,
    model: SphereModel,
    *,
    rtol: float = 1e-6,
    max_terms: int = 2000,
    min_distance_m: float = 0.0,
) -> tuple[np.ndarray, SeriesReport]:
    """EEG potential lead field of point dipoles in concentric spheres (exact series).

    V(r) = 1/(4 pi s_N R^2) sum_n (2n+1)/n (b/R)^(n-1) f_n [n (Q.r_q^) P_n(cos g)
    + (Q.t) P_n^1(cos g)] (Zhang 1995, Phys Med Biol 40:335; de Munck & Peters 1993, IEEE
    TBME 40:1166), summed per dipole until a bound on the remaining terms is below
    ``rtol`` times that dipole's largest potential over the electrodes.

    Parameters
    ----------
    electrodes_m : ndarray, shape (n_electrodes, 3), or Points
        Electrode positions in metres in ``model.frame``. Each is projected radially onto
        the outer sphere (the series is defined there).
    dipoles_m : ndarray, shape (n_dipoles, 3), or Points
        Dipole positions in metres in ``model.frame``, inside the innermost sphere.
    model : SphereModel
        The conductor.
    rtol : float
        Relative accuracy per dipole, in (0, 1).
    max_terms : int
        Most terms summed for any dipole; reaching it without convergence is an error.
    min_distance_m : float
        Refuse dipoles closer than this (metres) to the innermost sphere.

    Returns
    -------
    leadfield : ndarray, shape (n_electrodes, 3 * n_dipoles)
        Potential in V per A*m against infinity (no re-referencing). Columns are
        dipole-major: [d0_x, d0_y, d0_z, d1_x, ...] along the axes of ``model.frame``.
    report : SeriesReport
        Terms used, achieved tail bound and eccentricity per dipole.

    Raises
    ------
    ForwardError
        On non-finite positions, an electrode at the centre, dipoles at or outside the
        innermost sphere (or within ``min_distance_m`` of it), bad ``rtol``/``max_terms``,
        or a dipole whose series did not converge within ``max_terms``.
    FrameError
        If a :class:`Points` argument is in another frame than the model.
    """
    if not isinstance(model, SphereModel):
        raise ForwardError(
            f"model must be a SphereModel, got {type(model).__name__}; build one with "
            f"make_sphere_model(center_m, radius_m, frame)"
        )
    try:
        rtol_f = float(rtol)
    except (TypeError, ValueError):
        rtol_f = float("nan")
    if not (0.0 < rtol_f < 1.0):
        raise ForwardError(f"rtol = {rtol!r} must be in (0, 1); the default 1e-6 suits EEG")
    if isinstance(max_terms, bool) or not isinstance(max_terms, (int, np.integer)) or max_terms < 1:
        raise ForwardError(f"max_terms = {max_terms!r} must be a positive integer, e.g. 2000")
    max_terms = int(max_terms)
    try:
        min_dist = float(min_distance_m)
    except (TypeError, ValueError):
        min_dist = float("nan")
    if not (math.isfinite(min_dist) and min_dist >= 0.0):
        raise ForwardError(
            f"min_distance_m = {min_distance_m!r} must be a finite distance >= 0 in metres"
        )

    elec = positions_m(electrodes_m, "electrodes_m", model.frame, model="the sphere model")
    dip = positions_m(dipoles_m, "dipoles_m", model.frame, model="the sphere model")
    n_e, n_d = len(elec), len(dip)
    if n_e == 0:
        raise ForwardError("electrodes_m is empty; pass at least one electrode position")

    center = model.center_m
    radius = model.outer_radius_m
    r1 = model.inner_radius_m

    rel_e = elec - center
    dist_e = np.linalg.norm(rel_e, axis=1)
    at_centre = np.flatnonzero(dist_e < _CENTRE_TOL * radius)
    if at_centre.size:
        k = int(at_centre[0])
        raise ForwardError(
            f"electrodes_m[{k}] = {_fmt_vec(elec[k])} m is at the sphere centre "
            f"{_fmt_vec(center)} m, so it cannot be projected onto the scalp sphere; check the "
            f"electrode positions, their unit (metres) and the model's centre"
        )
    off = np.abs(dist_e - radius) / radius
    if off.max() > _OFF_SPHERE_WARN:
        k = int(np.argmax(off))
        logger.warning(
            "electrode %d is %.1f mm from the centre but the scalp sphere has radius %.1f mm; "
            "projecting it radially anyway (check unit, frame and centre)",
            k, dist_e[k] * 1e3, radius * 1e3,
        )
    elec_dirs = np.ascontiguousarray(rel_e / dist_e[:, None])

    rel_d = np.ascontiguousarray(dip - center)
    b = np.linalg.norm(rel_d, axis=1)
    gap = r1 - b
    refused = np.flatnonzero((gap <= 0.0) | (gap < min_dist))
    if refused.size:
        k = int(refused[0])
        limit = f" or closer than min_distance_m = {min_dist * 1e3:.3g} mm to it" if min_dist > 0 else ""
        raise ForwardError(
            f"{refused.size} of {n_d} dipoles are at or outside the innermost sphere "
            f"(r_1 = {r1 * 1e3:.4g} mm){limit}; the first is dipoles_m[{k}] = {_fmt_vec(dip[k])} m, "
            f"{b[k] * 1e3:.4g} mm from the centre {_fmt_vec(center)} m vs r_1 = {r1 * 1e3:.4g} mm. "
            f"Move the sources inside the inner sphere, use a smaller source space (or a larger "
            f"inner radius / better fitted centre), or use a BEM model"
        )

    ecc = b / r1
    out = np.zeros((n_e, 3 * n_d))
    n_terms = np.zeros(n_d, dtype=np.int64)
    tails = np.zeros(n_d)
    if n_d == 0:
        return out, SeriesReport(_ro_int(n_terms), _readonly(tails), _readonly(ecc))

    from . import _sphere_kernels as kernels

    t0 = time.perf_counter()
    f, ratio_sup = series_coefficients(model, max_terms + 2)
    gain = 1.0 / (4.0 * math.pi * float(model.conductivities[-1]) * radius * radius)
    kernels.eeg_sphere_series(
        elec_dirs, rel_d, radius, gain, f, ratio_sup, rtol_f, max_terms, out, n_terms, tails
    )
    elapsed = time.perf_counter() - t0

    failed = np.flatnonzero(~(tails <= rtol_f))
    if failed.size:
        k = int(failed[0])
        raise ForwardError(
            f"the sphere series did not reach rtol = {rtol_f:g} within max_terms = {max_terms} "
            f"for {failed.size} of {n_d} dipoles; the first is dipoles_m[{k}] = "
            f"{_fmt_vec(dip[k])} m at eccentricity {ecc[k]:.4f} (tail bound {tails[k]:.3g}). "
            f"Raise max_terms, or keep sources further from the inner sphere (min_distance_m)"
        )
    logger.debug(
        "sphere lead field: %d electrodes x %d dipoles, %d layers, terms %d..%d (median %d), "
        "%.3f s",
        n_e, n_d, model.n_layers, n_terms.min(), n_terms.max(), int(np.median(n_terms)), elapsed,
    )
    return out, SeriesReport(_ro_int(n_terms), _readonly(tails), _readonly(ecc))


def _ro_int(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.int64, copy=True)
    a.flags.writeable = False
    return a
