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
applies the coil weights inside the kernel (no (points x sources) intermediate);
:func:`make_meg_leadfield` is what the offline pipeline calls: frames checked, sources
checked against the inner skull, the result a :class:`~rtsource.forward.leadfield.LeadField`;
with ``bem=`` it uses the single-layer BEM field (:func:`rtsource.forward.bem.meg_bem_field`)
at the same integration points instead.
The arithmetic lives in :mod:`rtsource.forward._meg_kernels` (numba, parallel over dipoles).
"""

from __future__ import annotations

import logging
import time
from typing import Sequence

import numpy as np

from ..anatomy.source_space import SourceSpace
from ..errors import ForwardError
from ..geometry import Frame, Mesh, check_same_frame, signed_distance
from ..sensors.meg import MegArray
from .leadfield import LeadField
from .positions import positions_m
from .sphere import fit_sphere

logger = logging.getLogger(__name__)

__all__ = [
    "meg_sphere_field",
    "meg_sphere_leadfield",
    "meg_sphere_origin",
    "make_meg_leadfield",
    "concatenate_leadfields",
    "MIN_ORIGIN_DISTANCE_M",
]

#: Sources closer than this to the sphere origin are refused by :func:`make_meg_leadfield`:
#: their MEG lead field vanishes (exactly zero at the origin), so the inverse's depth
#: weighting (1 / |G_k|) would blow up.
MIN_ORIGIN_DISTANCE_M = 1e-4


def _fmt(v) -> str:
    return "(" + ", ".join(f"{x:.4g}" for x in np.asarray(v, dtype=float)) + ")"


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
        cannot check raw arrays' frames; :func:`make_meg_leadfield` does).
    dipoles_m : ndarray, shape (m, 3)
        Dipole positions in metres.
    origin_m : ndarray, shape (3,)
        Sphere origin in metres.

    Returns
    -------
    ndarray, shape (n_channels, 3 m)
        T (magnetometers, axial gradiometers) or T/m (planar gradiometers) per A*m, columns
        dipole-major; equal to ``array.channel_signals(meg_sphere_field(...))``.

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
            f"magnetic fields only; compute EEG with rtsource.forward.leadfield.make_eeg_leadfield"
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


def _template_inner_skull(frame: Frame) -> Mesh | None:
    if frame != Frame.TEMPLATE:
        return None
    from ..anatomy.template import load_template

    return load_template().surfaces.inner_skull


def make_meg_leadfield(
    array: MegArray,
    sources: SourceSpace,
    *,
    origin_m: np.ndarray | None = None,
    inner_skull: Mesh | None = None,
    check_inside: bool = True,
    bem=None,
) -> LeadField:
    """MEG lead field of a source space -- the pipeline's entry point (sphere or BEM).

    Parameters
    ----------
    array : MegArray
        The sensors. If they are in DEVICE and carry a ``dev_head_t`` leading to the sources'
        frame, they are moved there; any other frame mismatch is an error.
    sources : SourceSpace
        Dipole positions and normals.
    origin_m : ndarray, shape (3,), optional
        Sphere origin in the sources' frame. Default: the centre of the sphere fitted to
        ``inner_skull``. Ignored with ``bem``.
    inner_skull : Mesh, optional
        Inner skull in the sources' frame. Default: the BEM's innermost surface with ``bem``,
        else the template's when the sources are in the TEMPLATE frame. Needed unless
        ``origin_m`` is given and ``check_inside`` is False.
    check_inside : bool
        Refuse sources outside the inner skull and sensors inside it.
    bem : rtsource.forward.bem.BemSolution or BemModel, optional
        A single-layer (inner skull) BEM: the field is then
        :func:`rtsource.forward.bem.meg_bem_field` (Geselowitz 1970) at the integration
        points instead of Sarvas' sphere; the coil weights are applied the same way.

    Returns
    -------
    LeadField
        ``gain`` (n_channels, 3 n_sources) in T or T/m per A*m; ``model`` records the kind,
        origin (sphere), frame, coil accuracy and channel types, units and whitening groups.

    Raises
    ------
    FrameError
        Sensors, sources, skull or BEM in different frames with no carried transform.
    ForwardError
        Sources outside the inner skull, sensors inside it, sources at the sphere origin
        (their lead field vanishes), or no way to get an origin.
    """
    if not isinstance(sources, SourceSpace):
        raise ForwardError(f"sources must be a SourceSpace, got {type(sources).__name__}")
    if not isinstance(array, MegArray):
        raise ForwardError(f"array must be a rtsource.sensors.meg.MegArray, got {type(array).__name__}")
    arr = array.in_frame(sources.frame)
    bem_model = None
    if bem is not None:
        bem_model = getattr(bem, "model", bem)
        check_same_frame(bem_model.frame, sources.frame, "the BEM model", "the source space")
        if inner_skull is None:
            inner_skull = bem_model.surfaces[-1]
    if inner_skull is None:
        inner_skull = _template_inner_skull(sources.frame)
    if inner_skull is not None:
        check_same_frame(inner_skull.frame, sources.frame, f"mesh {inner_skull.name!r}", "the source space")
    pos = sources.positions_m
    if check_inside:
        if inner_skull is None:
            raise ForwardError(
                "check_inside=True needs the inner skull: pass inner_skull (a Mesh in the sources' frame) "
                "or check_inside=False"
            )
        _check_sources_inside(pos, inner_skull)
        _check_sensors_outside(arr, inner_skull)
    desc = {
        "frame": sources.frame.value,
        "coil_accuracy": arr.accuracy,
        "n_integration_points": int(arr.n_points),
        "array": arr.name,
        "ch_types": list(arr.ch_types),
        "ch_units": list(arr.ch_units),
        "whitening_groups": list(arr.whitening_groups),
    }
    t0 = time.perf_counter()
    if bem is not None:
        gain = _bem_gain(arr, pos, bem)
        desc = {"kind": "meg_bem_single_layer", "bem_surface": bem_model.surfaces[-1].name, **desc}
    else:
        if origin_m is None:
            if inner_skull is None:
                raise ForwardError(
                    f"no sphere origin for sources in the {sources.frame.value!r} frame: pass origin_m "
                    f"(metres) or inner_skull (a Mesh in that frame) to fit one"
                )
            origin, radius = meg_sphere_origin(inner_skull)
            origin_how = f"fitted to {inner_skull.name!r} (radius {radius * 1e3:.1f} mm)"
        else:
            origin = _origin(origin_m)
            origin_how = "given"
        r = np.linalg.norm(pos - origin, axis=1)
        near = np.flatnonzero(r < MIN_ORIGIN_DISTANCE_M)
        if near.size:
            k = int(near[0])
            raise ForwardError(
                f"{near.size} source(s) lie within {MIN_ORIGIN_DISTANCE_M * 1e3:.1f} mm of the MEG sphere origin "
                f"{_fmt(origin * 1e3)} mm (first: source {k} at {_fmt(pos[k] * 1e3)} mm); a spherical conductor "
                f"hides them completely (zero lead field). Remove them (volume_source_space(exclude_m=...)) "
                f"or move the origin"
            )
        gain = meg_sphere_leadfield(arr, pos, origin)
        desc = {"kind": "meg_sphere_sarvas", "origin_m": origin.tolist(), "origin": origin_how, **desc}
    logger.info(
        "%s lead field %d x %d (%d integration points, accuracy %r) in %.2f s",
        desc["kind"], gain.shape[0], gain.shape[1], arr.n_points, arr.accuracy, time.perf_counter() - t0,
    )
    return LeadField(gain, arr.ch_names, arr.positions_m, sources, desc, None)


# The BEM field comes per integration point for all dipoles at once; channels are done in
# groups so that the (points x 3 n_sources) block stays below about this many bytes.
_BEM_BLOCK_BYTES = 128 * 2**20


def _bem_gain(arr: MegArray, pos: np.ndarray, bem) -> np.ndarray:
    from scipy.sparse import csr_array

    from .bem import BemModel, meg_bem_field, solve_bem

    if isinstance(bem, BemModel):
        bem = solve_bem(bem)  # once, not per channel group
    counts = np.bincount(arr.point_channel, minlength=arr.n_channels)
    gain = np.empty((arr.n_channels, 3 * len(pos)))
    per_point = max(1, 3 * len(pos) * 8)
    max_points = max(1, _BEM_BLOCK_BYTES // per_point)
    start = 0
    while start < arr.n_channels:
        # whole channels only: a group ends where its points would exceed the block
        stop = start + 1
        n_pts = int(counts[start])
        while stop < arr.n_channels and n_pts + int(counts[stop]) <= max_points:
            n_pts += int(counts[stop])
            stop += 1
        sel = np.flatnonzero((arr.point_channel >= start) & (arr.point_channel < stop))
        field = meg_bem_field(bem, arr.points_m[sel], arr.point_normals[sel], pos)
        weights = csr_array((arr.weights[sel], (arr.point_channel[sel] - start, np.arange(len(sel)))), shape=(stop - start, len(sel)))
        gain[start:stop] = weights @ field
        start = stop
    return gain


def _check_sources_inside(pos: np.ndarray, inner_skull: Mesh) -> None:
    sd = signed_distance(pos, inner_skull)
    out = np.flatnonzero(sd > 0)
    if out.size:
        k = int(out[np.argmax(sd[out])])
        raise ForwardError(
            f"{out.size} source(s) lie outside {inner_skull.name!r}; the worst is source {k} at "
            f"{_fmt(pos[k] * 1e3)} mm, {sd[k] * 1e3:.1f} mm outside. Check the source space's frame and unit, "
            f"or drop those sources"
        )


def _check_sensors_outside(array: MegArray, inner_skull: Mesh) -> None:
    sd = signed_distance(array.points_m, inner_skull)
    bad = np.flatnonzero(sd <= 0)
    if bad.size:
        i = int(bad[np.argmin(sd[bad])])
        ch = array.ch_names[array.point_channel[i]]
        raise ForwardError(
            f"{bad.size} integration point(s) of MEG array {array.name!r} lie inside {inner_skull.name!r} "
            f"(worst: channel {ch!r}, {-sd[i] * 1e3:.1f} mm inside); the sensors are in the wrong place -- "
            f"check the device->head transform (MegArray.with_dev_head_t)"
        )


def concatenate_leadfields(leadfields: Sequence[LeadField], ch_types: Sequence[Sequence[str]]) -> tuple[LeadField, tuple[str, ...]]:
    """Stack lead fields of different sensor kinds (EEG + MEG) computed for the same sources.

    Parameters
    ----------
    leadfields : sequence of LeadField
        Same source space (same positions and frame), different channels.
    ch_types : sequence of sequence of str
        Per lead field, the whitening group of each channel (``"eeg"``, ``"mag"``,
        ``"grad"``; ``MegArray.whitening_groups`` for MEG).

    Returns
    -------
    leadfield : LeadField
        Rows stacked in the given order; ``model`` holds the parts' models under ``"parts"``.
    ch_types : tuple of str
        Whitening group per row (pass it to the inverse's per-type whitener).
    """
    if not leadfields:
        raise ForwardError("concatenate_leadfields needs at least one lead field")
    if len(ch_types) != len(leadfields):
        raise ForwardError(f"{len(ch_types)} ch_types lists for {len(leadfields)} lead fields; give one per lead field")
    first = leadfields[0]
    names: list[str] = []
    types: list[str] = []
    for i, (lf, kinds) in enumerate(zip(leadfields, ch_types)):
        if lf.sources.frame != first.sources.frame or lf.sources.positions_m.shape != first.sources.positions_m.shape or not np.array_equal(
            lf.sources.positions_m, first.sources.positions_m
        ):
            raise ForwardError(
                f"lead field {i} ({lf.model.get('kind', '?')}) was computed for other sources than lead field 0 "
                f"({lf.sources.name!r} vs {first.sources.name!r}); compute all parts on one source space"
            )
        if len(kinds) != len(lf.ch_names):
            raise ForwardError(f"ch_types[{i}] has {len(kinds)} entries for {len(lf.ch_names)} channels")
        names += list(lf.ch_names)
        types += [str(k) for k in kinds]
    dup = sorted({x for x in names if names.count(x) > 1})
    if dup:
        raise ForwardError(f"channel names {dup[:10]} occur in more than one lead field; rename one sensor set")
    gain = np.vstack([lf.gain for lf in leadfields])
    pos = np.vstack([lf.channel_positions_m for lf in leadfields])
    model = {"kind": "combined", "parts": [dict(lf.model) for lf in leadfields]}
    return LeadField(gain, tuple(names), pos, first.sources, model, None), tuple(types)
