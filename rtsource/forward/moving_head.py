"""The MEG lead field of a head that moves inside the helmet, with the fixed part prepared once.

    moving = prepare_moving_head(sources, array, head_model)   # once: checks, origin, coil points
    moving.leadfield(dev_to_model)                             # per pose: == make_leadfield(...)

In the device frame the helmet is fixed and the head moves; in the head's frame the sources,
the conductor and the sphere origin are fixed and only the sensors move. The lead field
for a new DEVICE -> head transform therefore needs the coil integration points moved (a
rigid transform of ~1k points) and the field recomputed; what does not depend on the pose
is done by :func:`prepare_moving_head`: the frame and inside-the-skull checks of the sources,
the sphere origin, the coil integration points in DEVICE coordinates, the sources relative
to the origin. :meth:`MovingHead.leadfield` returns what :func:`~.leadfield.make_leadfield`
returns for the array at that pose (the same Sarvas kernel on the same points, up to the
rounding of the transform), so it is the entry point's fast path for this one case, not
another method.

Sphere model (Sarvas 1987) only. A single-layer BEM would keep the BEM solution (the
inner-skull potentials of every source are fixed to the head) and need, per pose, the
magnetic coefficients of the moved coils and a product with the (vertices x 3 n_sources)
potentials (~40 GFLOP for 306 channels x 8k sources and a 2.5k-vertex skull, seconds on
two cores); :func:`prepare_moving_head` refuses a :class:`~.head_model.BemHead` with that
reason (:data:`BEM_REASON`), and the head-motion stage reports it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..anatomy.source_space import SourceSpace
from ..errors import ForwardError
from ..geometry import Frame, Mesh, check_same_frame, signed_distance
from ..sensors.meg import MegArray
from .head_model import BemHead, HeadModel, SphereHead
from .leadfield import LeadField, SensorLeadField

__all__ = ["BEM_REASON", "MovingHead", "prepare_moving_head"]

#: why the forward does not follow the head with a BEM (events, logs, errors)
BEM_REASON = (
    "the forward follows the head for the sphere model only: a single-layer BEM lead field for a new pose needs the "
    "moved coils' magnetic coefficients times the inner-skull potentials of every source (~40 GFLOP for 306 x 8k, "
    "seconds), not implemented; use [forward] method = 'sphere' or keep the operator of the start pose"
)


@dataclass(frozen=True, eq=False)
class MovingHead:
    """The pose-independent part of a MEG sphere-model lead field (see the module doc).

    Attributes
    ----------
    sources : SourceSpace
    array : MegArray
        The sensors in DEVICE coordinates.
    origin_m : ndarray, shape (3,)
        Sphere origin in the sources' frame.
    description : dict
        ``LeadField.model`` of every lead field (as :func:`~.leadfield.make_leadfield`).
    """

    sources: SourceSpace
    array: MegArray
    origin_m: np.ndarray
    description: dict
    _points: np.ndarray  # (k, 3) DEVICE
    _normals: np.ndarray  # (k, 3) DEVICE
    _weights: np.ndarray  # (k,)
    _point_channel: np.ndarray  # (k,) int64
    _dipoles: np.ndarray  # (m, 3) relative to the origin
    _max_dipole_r: float
    _inner_skull: Mesh | None
    _max_skull_r: float

    def moved_points(self, dev_to_model: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(points relative to the origin, normals), (k, 3) each, for the 4x4 DEVICE -> sources' frame."""
        m = _rigid(dev_to_model)
        rot, t = m[:3, :3], m[:3, 3]
        return np.ascontiguousarray(self._points @ rot.T + (t - self.origin_m)), np.ascontiguousarray(self._normals @ rot.T)

    def gain(self, dev_to_model: np.ndarray) -> np.ndarray:
        """The (n_channels, 3 n_sources) lead field (T or T/m per A*m) with the head at ``dev_to_model``.

        Raises
        ------
        ForwardError
            A coil point not further from the origin than every source (Sarvas' formula), or
            inside the inner skull: the transform is wrong (units? direction?).
        """
        from . import _meg_kernels

        pts, nrm = self.moved_points(dev_to_model)
        self._check(pts)
        a = self.array
        out = np.empty((a.n_channels, 3 * len(self._dipoles)))
        _meg_kernels.sarvas_leadfield(pts, nrm, self._weights, self._point_channel, self._dipoles, out)
        return out

    def leadfield(self, dev_to_model: np.ndarray) -> SensorLeadField:
        """What :func:`~.leadfield.make_leadfield` gives for the array at ``dev_to_model`` (4x4, DEVICE -> sources' frame)."""
        gain = self.gain(dev_to_model)
        m = _rigid(dev_to_model)
        positions = self.array.positions_m @ m[:3, :3].T + m[:3, 3]
        lf = LeadField(gain, self.array.ch_names, positions, self.sources, dict(self.description), None)
        return SensorLeadField(lf, tuple(self.array.whitening_groups), tuple(self.array.ch_units))

    def _check(self, pts: np.ndarray) -> None:
        r = np.sqrt(np.einsum("ij,ij->i", pts, pts))
        i = int(np.argmin(r))
        if r[i] <= self._max_dipole_r:
            raise ForwardError(
                f"integration point {i} (channel {self.array.ch_names[self.array.point_channel[i]]!r}) is {r[i] * 1e3:.1f} mm from "
                f"the sphere origin but a source is {self._max_dipole_r * 1e3:.1f} mm from it: the head pose puts the sensors inside "
                "the head; check the device->head transform (metres, direction)"
            )
        if self._inner_skull is None or r[i] > self._max_skull_r:
            return  # every point is further out than the whole skull: outside it
        sd = signed_distance(pts + self.origin_m, self._inner_skull)
        bad = np.flatnonzero(sd <= 0)
        if bad.size:
            k = int(bad[np.argmin(sd[bad])])
            raise ForwardError(
                f"{bad.size} integration point(s) lie inside {self._inner_skull.name!r} at this head pose (worst: channel "
                f"{self.array.ch_names[self.array.point_channel[k]]!r}, {-sd[k] * 1e3:.1f} mm inside); check the device->head transform"
            )


def _rigid(matrix) -> np.ndarray:
    m = np.asarray(matrix, dtype=float)
    if m.shape != (4, 4) or not np.all(np.isfinite(m)):
        raise ForwardError(f"dev_to_model must be a finite 4x4 matrix (metres), got shape {m.shape}")
    if not np.allclose(m[:3, :3] @ m[:3, :3].T, np.eye(3), atol=1e-6):
        raise ForwardError("dev_to_model must be rigid (an orthonormal rotation); pass a head pose, not a scaling")
    return m


def prepare_moving_head(sources: SourceSpace, array: MegArray, head_model: HeadModel) -> MovingHead:
    """Prepare the lead field of ``sources`` at ``array`` for any head pose (see the module doc).

    Parameters
    ----------
    sources : SourceSpace
        In the head model's frame (HEAD or TEMPLATE).
    array : MegArray
        The MEG sensors (DEVICE frame, or with a ``dev_head_t`` that leads back to it);
        without gradient compensation.
    head_model : SphereHead
        As given to :func:`~.leadfield.make_leadfield`.

    Raises
    ------
    ForwardError
        A BemHead (:data:`BEM_REASON`), a compensated array, or what ``make_leadfield``
        refuses of the sources (outside the inner skull, at the sphere origin).
    """
    from .leadfield import _meg_description, _template_inner_skull
    from .meg_sphere import MIN_ORIGIN_DISTANCE_M, meg_sphere_origin

    if isinstance(head_model, BemHead):
        raise ForwardError(BEM_REASON)
    if not isinstance(head_model, SphereHead):
        raise ForwardError(f"head_model must be a SphereHead, got {type(head_model).__name__}")
    if not isinstance(sources, SourceSpace) or not isinstance(array, MegArray):
        raise ForwardError(f"prepare_moving_head needs a SourceSpace and a MegArray, got {type(sources).__name__} and {type(array).__name__}")
    dev = array if array.frame == Frame.DEVICE else array.in_frame(Frame.DEVICE)
    if dev.compensation is not None:
        raise ForwardError(
            f"MEG array {dev.name!r} carries a gradient compensation (CTF); a moving head is implemented for uncompensated "
            "arrays only: keep the operator of the start pose"
        )
    if any(t == "eeg" for t in dev.ch_types):
        raise ForwardError(f"MEG array {dev.name!r} has EEG channels; a moving head concerns the MEG sensors only")
    inner_skull = head_model.inner_skull if head_model.inner_skull is not None else _template_inner_skull(sources.frame)
    if head_model.check_inside:
        if inner_skull is None:
            raise ForwardError("check_inside=True needs the inner skull: pass SphereHead(inner_skull=...) or SphereHead(check_inside=False)")
        check_same_frame(inner_skull.frame, sources.frame, "the inner skull", "the source space")
        sd = signed_distance(sources.positions_m, inner_skull)
        if len(sd) and sd.max() > 0:
            k = int(np.argmax(sd))
            raise ForwardError(
                f"{int((sd > 0).sum())} source(s) lie outside {inner_skull.name!r}; the worst is source {k}, {sd[k] * 1e3:.1f} mm "
                "outside. Check the source space's frame and unit, or drop those sources"
            )
    else:
        inner_skull = None
    if head_model.meg_origin_m is None:
        if inner_skull is None and head_model.inner_skull is None:
            raise ForwardError("no sphere origin: pass SphereHead(meg_origin_m=...) or SphereHead(inner_skull=...)")
        skull = inner_skull if inner_skull is not None else head_model.inner_skull
        origin, radius = meg_sphere_origin(skull)
        how = f"fitted to {skull.name!r} (radius {radius * 1e3:.1f} mm)"
    else:
        origin, how = np.asarray(head_model.meg_origin_m, dtype=float), "given"
    dip = np.ascontiguousarray(sources.positions_m - origin)
    rd = np.linalg.norm(dip, axis=1)
    if len(rd) and rd.min() < MIN_ORIGIN_DISTANCE_M:
        raise ForwardError(
            f"source {int(np.argmin(rd))} lies within {MIN_ORIGIN_DISTANCE_M * 1e3:.1f} mm of the MEG sphere origin (zero lead "
            "field); remove it or move the origin"
        )
    desc = {"kind": "meg_sphere_sarvas", "origin_m": origin.tolist(), "origin": how, **_meg_description(dev, sources)}
    desc["frame"] = sources.frame.value
    skull_r = float(np.linalg.norm(inner_skull.vertices_m - origin, axis=1).max()) if inner_skull is not None else np.inf
    return MovingHead(
        sources, dev, origin, desc, np.ascontiguousarray(dev.points_m), np.ascontiguousarray(dev.point_normals),
        np.ascontiguousarray(dev.weights, dtype=np.float64), np.ascontiguousarray(dev.point_channel, dtype=np.int64), dip,
        float(rd.max()) if len(rd) else 0.0, inner_skull, skull_r,
    )  # fmt: skip
