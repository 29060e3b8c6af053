"""Spherical MEG forward model (Sarvas 1987) for any coil set.

In a spherically symmetric conductor the magnetic field outside does not depend on the
conductivities or radii, only on the sphere's origin (Sarvas 1987, Phys Med Biol 32:11):

    F     = a (r a + r^2 - r0.r),   a = r - r0 (coordinates relative to the origin)
    gradF = (a^2/r + a.r/a + 2a + 2r) r - (a + 2r + a.r/a) r0
    B     = mu0/(4 pi F^2) [F (Q x r0) - ((Q x r0).r) gradF]

Radial dipoles (Q parallel to r0) give no field, and neither does any dipole at the origin
(r0 = 0: the formula is not singular there, F = 2 r^3, and B = 0 exactly). The origin is by
default the centre of the sphere fitted to the inner skull (:func:`meg_sphere_origin`).

:func:`meg_sphere_field` gives B.n at arbitrary integration points (any MEG forward plugs
into :meth:`rtsource.sensors.meg.MegArray.channel_signals`); :func:`meg_sphere_leadfield`
applies the coil weights inside the kernel (no (points x sources) intermediate). The lead
field of a source space comes from :func:`rtsource.forward.leadfield.make_leadfield` with a
:class:`rtsource.forward.head_model.SphereHead`, which moves the sensors into the sources'
frame, checks both against the inner skull and calls :func:`meg_sphere_leadfield`.
The arithmetic lives in :mod:`rtsource.forward._meg_kernels` (numba, parallel over dipoles).
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from ..errors import ForwardError
from ..geometry import Mesh
from ..geometry.sphere_fit import fit_sphere
from ..sensors.meg import MegArray
from .positions import positions_m

logger = logging.getLogger(__name__)

__all__ = [
    "meg_sphere_field",
    "meg_sphere_leadfield",
    "meg_sphere_origin",
    "MIN_ORIGIN_DISTANCE_M",
]

#: Sources closer than this to the sphere origin are refused by the lead-field entry point:
#: their MEG lead field vanishes (exactly zero at the origin), so the inverse's depth
#: weighting (1 / |G_k|) would blow up.
MIN_ORIGIN_DISTANCE_M = 1e-4


def _origin(origin_m) -> np.ndarray:
    o = np.asarray(origin_m, dtype=float)
    if o.shape != (3,) or not np.all(np.isfinite(o)):
        raise ForwardError(
            f"origin_m must be 3 finite numbers in metres, got {origin_m!r}; use meg_sphere_origin(inner_skull)"
        )
    return o


def _check_geometry(points_rel: np.ndarray, dipoles_rel: np.ndarray, labels: Sequence[str] | None) -> None:
    """Every field point must lie further from the origin than every dipole (F > 0)."""
    if not len(dipoles_rel) or not len(points_rel):
        return
    rp = np.linalg.norm(points_rel, axis=1)
    rd = np.linalg.norm(dipoles_rel, axis=1)
    i = int(np.argmin(rp))
    j = int(np.argmax(rd))
    if rp[i] <= rd[j]:
        who = f"integration point {i}" + (f" (channel {labels[i]!r})" if labels is not None else "")
        raise ForwardError(
            f"{who} is {rp[i] * 1e3:.1f} mm from the sphere origin but dipole {j} is {rd[j] * 1e3:.1f} mm from "
            f"it; the Sarvas formula needs every sensor outside the sphere through the sources. "
            f"The sensors are probably in the wrong frame (apply the device->head transform) or the "
            f"origin is wrong"
        )


def meg_sphere_field(points_m: np.ndarray, normals: np.ndarray, dipoles_m: np.ndarray, origin_m: np.ndarray) -> np.ndarray:
    """Normal magnetic field at integration points of unit dipoles (Sarvas 1987).

    Parameters
    ----------
    points_m : ndarray, shape (k, 3)
        Field points in metres (any frame shared with the dipoles and origin).
    normals : ndarray, shape (k, 3)
        Unit normals at the points.
    dipoles_m : ndarray, shape (m, 3)
        Dipole positions in metres.
    origin_m : ndarray, shape (3,)
        Centre of the spherically symmetric conductor, metres.

    Returns
    -------
    ndarray, shape (k, 3 m)
        B.n in T per A*m; columns dipole-major (x, y, z components of the moment).

    Raises
    ------
    ForwardError
        Bad shapes, non-finite values, non-unit normals, or a field point not further from
        the origin than every dipole.
    """
    o = _origin(origin_m)
    pts = positions_m(points_m, "points_m") - o
    nrm = positions_m(normals, "normals")
    if len(nrm) != len(pts):
        raise ForwardError(f"normals has {len(nrm)} rows but points_m has {len(pts)}; give one normal per point")
    lengths = np.linalg.norm(nrm, axis=1)
    bad = np.flatnonzero(np.abs(lengths - 1.0) > 1e-6)
    if bad.size:
        k = int(bad[0])
        raise ForwardError(f"normals[{k}] = {nrm[k].tolist()} has length {lengths[k]:.6g}; normals must be unit vectors")
    dip = positions_m(dipoles_m, "dipoles_m") - o
    _check_geometry(pts, dip, None)
    out = np.empty((len(pts), 3 * len(dip)))
    if out.size:
        from . import _meg_kernels

        _meg_kernels.sarvas_field(np.ascontiguousarray(pts), np.ascontiguousarray(nrm), np.ascontiguousarray(dip), out)
    return out


def meg_sphere_leadfield(array: MegArray, dipoles_m: np.ndarray, origin_m: np.ndarray) -> np.ndarray:
    """Lead field of ``array``'s channels for dipoles in a spherical conductor (Sarvas 1987).

    Parameters
    ----------
    array : MegArray
        The sensors, in the same frame as ``dipoles_m`` and ``origin_m`` (this function
        cannot check raw arrays' frames; :func:`rtsource.forward.leadfield.make_leadfield` does).
    dipoles_m : ndarray, shape (m, 3)
        Dipole positions in metres.
    origin_m : ndarray, shape (3,)
        Sphere origin in metres.

    Returns
    -------
    ndarray, shape (n_channels, 3 m)
        T (magnetometers, axial gradiometers) or T/m (planar gradiometers) per A*m, columns
        dipole-major; equal to ``array.channel_signals(meg_sphere_field(...))``. The coils'
        own gain: an array's gradient compensation (``G - C G_ref``) is applied by
        :func:`rtsource.forward.leadfield.make_leadfield`.

    Raises
    ------
    ForwardError
        EEG channels in the array, bad shapes, or sensors not outside the sources.
    """
    if not isinstance(array, MegArray):
        raise ForwardError(f"array must be a rtsource.sensors.meg.MegArray, got {type(array).__name__}")
    eeg = [n for n, t in zip(array.ch_names, array.ch_types) if t == "eeg"]
    if eeg:
        raise ForwardError(
            f"{len(eeg)} EEG channels ({', '.join(eeg[:5])}) in MEG array {array.name!r}: the Sarvas model gives "
            f"magnetic fields only; compute EEG with rtsource.forward.leadfield.make_leadfield"
        )
    o = _origin(origin_m)
    dip = positions_m(dipoles_m, "dipoles_m") - o
    pts = np.ascontiguousarray(array.points_m - o)
    labels = [array.ch_names[c] for c in array.point_channel]
    _check_geometry(pts, dip, labels)
    out = np.empty((array.n_channels, 3 * len(dip)))
    if out.size:
        from . import _meg_kernels

        _meg_kernels.sarvas_leadfield(
            pts,
            np.ascontiguousarray(array.point_normals),
            np.ascontiguousarray(array.weights),
            np.ascontiguousarray(array.point_channel),
            np.ascontiguousarray(dip),
            out,
        )
    return out


def meg_sphere_origin(inner_skull: Mesh) -> tuple[np.ndarray, float]:
    """Origin (and radius) of the sphere fitted to an inner-skull mesh (least squares).

    Returns
    -------
    origin_m : ndarray, shape (3,)
        In ``inner_skull.frame``.
    radius_m : float
    """
    if not isinstance(inner_skull, Mesh):
        raise ForwardError(f"inner_skull must be a rtsource.geometry.Mesh, got {type(inner_skull).__name__}")
    return fit_sphere(inner_skull.vertices_m)
