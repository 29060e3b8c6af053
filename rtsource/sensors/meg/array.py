"""MEG sensor arrays: channels as placed coils (:class:`MegArray`), built with :func:`make_meg_array`.

Each channel is a coil of one type (:mod:`.coils`) at a position with a rotation; the array
places every coil's integration points once, so a forward model only has to give B.n there.

Frames
------
A :class:`MegArray` is in one frame, usually :attr:`~rtsource.geometry.Frame.DEVICE` (fixed to
the helmet). It may carry the DEVICE -> HEAD (or -> TEMPLATE) transform of the recording,
``dev_head_t``; :meth:`MegArray.to_head` applies it. Only rigid transforms are accepted: coil
sizes are physical.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterable, Sequence

import numpy as np

from ...arrays import frozen as _ro
from ...errors import ChannelError, FrameError, GeometryError
from ...geometry import Frame, Points, Transform, as_frame, check_same_frame
from .coils import ACCURACIES, COIL_TYPES, LSL_TYPE, WHITENING_GROUP, coil_definition
from .compensation import GradientCompensation
from .vendor_coils import vendor_coil, vendor_coil_definition

# Tolerances: orientations read from files carry a few decimals.
_UNIT_TOL = 1e-3
_ORTHO_TOL = 1e-3
_ROT_TOL = 1e-6


def _perpendicular(normal: np.ndarray) -> np.ndarray:
    """A deterministic unit vector normal to ``normal`` (for coils whose x axis is free)."""
    ref = np.array([1.0, 0.0, 0.0]) if abs(normal[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    x = ref - (ref @ normal) * normal
    return x / np.linalg.norm(x)


def _unit_vector(value, name: str, where: str) -> np.ndarray:
    """``value`` as a unit 3-vector (renormalised within the tolerance), or a GeometryError."""
    v = np.asarray(value, dtype=float)
    if v.shape != (3,) or not np.all(np.isfinite(v)):
        raise GeometryError(f"{where}: {name} must be 3 finite numbers, got {value!r}")
    length = float(np.linalg.norm(v))
    if abs(length - 1.0) > _UNIT_TOL:
        raise GeometryError(
            f"{where}: {name} {np.round(v, 6).tolist()} has length {length:.6g}; orientations must be "
            f"unit vectors (divide it by its length)"
        )
    return v / length


def _rotation_from(normal: np.ndarray, x_axis: np.ndarray | None, where: str) -> np.ndarray:
    """3x3 rotation with columns (x, y, z) of the coil frame; z = normal."""
    n = _unit_vector(normal, "normal", where)
    if x_axis is None:
        x = _perpendicular(n)
    else:
        x = _unit_vector(x_axis, "x_axis", where)
        dot = float(x @ n)
        if abs(dot) > _ORTHO_TOL:
            raise GeometryError(
                f"{where}: x_axis {np.round(x, 6).tolist()} is not perpendicular to the normal "
                f"{np.round(n, 6).tolist()} (cosine {dot:.4g}); the gradient direction must lie in "
                f"the coil plane"
            )
        x = x - dot * n
        x /= np.linalg.norm(x)
    y = np.cross(n, x)
    return np.column_stack([x, y, n])


# --------------------------------------------------------------------------------------
# The sensor array
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class MegArray:
    """A set of MEG (or EEG) channels as coils with integration points.

    Parameters
    ----------
    ch_names : tuple of str, length n_channels
        Unique channel names.
    ch_types : tuple of str, length n_channels
        Coil type per channel: ``"mag"``, ``"planar_grad"``, ``"axial_grad"`` (or ``"eeg"``).
    positions_m : ndarray, shape (n_channels, 3)
        Coil centres in metres, in ``frame``.
    rotations : ndarray, shape (n_channels, 3, 3)
        Per channel, the coil frame's x, y, z axes as the *columns* (z = coil normal away from
        the head, x = gradient direction of a planar gradiometer). Proper rotations.
    frame : Frame
        Coordinate frame of positions and rotations (usually DEVICE).
    accuracy : str
        Coil integration accuracy: ``"point"``, ``"normal"`` (default) or ``"accurate"``.
    dev_head_t : Transform or None
        DEVICE -> HEAD (or TEMPLATE / MRI) transform of the recording, rigid.
    name : str
        Where the array came from (written into bundles and reports).
    coil_types : tuple of int, optional
        Per channel the vendor coil type id (FIFF convention, e.g. 3012, 5001, 8201;
        :mod:`.vendor_coils`): the integration points then come from the vendor's coil
        definition instead of the generic coil of ``ch_types``, which must match the
        vendor coil's kind. None: generic coils.
    compensation : GradientCompensation, optional
        The gradient compensation in effect (CTF): the lead field is ``G - C G_ref``; the
        reference sensors are in the same frame and move with the array.

    Attributes
    ----------
    points_m : ndarray, shape (k, 3)
        All integration points in ``frame``, metres, channel by channel.
    point_normals : ndarray, shape (k, 3)
        Their unit normals.
    weights : ndarray, shape (k,)
        Their weights.
    point_channel : ndarray of int64, shape (k,)
        The channel each point belongs to.

    Raises
    ------
    ChannelError
        Empty array, duplicate or empty names, unknown coil type or accuracy, mismatched
        lengths.
    GeometryError
        Non-finite positions or rotations that are not proper rotations.
    FrameError
        A ``dev_head_t`` that does not start in DEVICE or is not rigid.
    """

    ch_names: tuple[str, ...]
    ch_types: tuple[str, ...]
    positions_m: np.ndarray
    rotations: np.ndarray
    frame: Frame = Frame.DEVICE
    accuracy: str = "normal"
    dev_head_t: Transform | None = None
    name: str = "meg"
    coil_types: tuple[int, ...] | None = None
    compensation: GradientCompensation | None = None
    points_m: np.ndarray = field(init=False, repr=False)
    point_normals: np.ndarray = field(init=False, repr=False)
    weights: np.ndarray = field(init=False, repr=False)
    point_channel: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "frame", as_frame(self.frame))
        names = tuple(str(x) for x in self.ch_names)
        types = tuple(str(x) for x in self.ch_types)
        n = len(names)
        if n == 0:
            raise ChannelError(f"MEG array {self.name!r} has no channels; give at least one")
        if len(types) != n:
            raise ChannelError(f"MEG array {self.name!r}: {len(types)} channel types for {n} channel names")
        empty = [i for i, x in enumerate(names) if not x.strip()]
        if empty:
            raise ChannelError(f"MEG array {self.name!r}: channel {empty[0]} has an empty name; name every channel")
        seen: dict[str, int] = {}
        for i, x in enumerate(names):
            if x in seen:
                raise ChannelError(
                    f"MEG array {self.name!r}: channel name {x!r} is used by channels {seen[x]} and {i}; "
                    f"names must be unique"
                )
            seen[x] = i
        for i, t in enumerate(types):
            if t not in COIL_TYPES:
                raise ChannelError(
                    f"MEG array {self.name!r}: channel {i} ({names[i]!r}) has coil type {t!r}; use one of "
                    f"{', '.join(COIL_TYPES)}"
                )
        if self.accuracy not in ACCURACIES:
            raise ChannelError(
                f"MEG array {self.name!r}: accuracy {self.accuracy!r} is not known; use one of {', '.join(ACCURACIES)}"
            )
        pos = np.array(self.positions_m, dtype=float)
        if pos.shape != (n, 3):
            raise GeometryError(f"MEG array {self.name!r}: positions_m must have shape ({n}, 3), got {pos.shape}")
        bad = np.flatnonzero(~np.all(np.isfinite(pos), axis=1))
        if bad.size:
            i = int(bad[0])
            raise GeometryError(f"MEG array {self.name!r}: channel {i} ({names[i]!r}) has a non-finite position {pos[i].tolist()}")
        rot = np.array(self.rotations, dtype=float)
        if rot.shape != (n, 3, 3):
            raise GeometryError(f"MEG array {self.name!r}: rotations must have shape ({n}, 3, 3), got {rot.shape}")
        if not np.all(np.isfinite(rot)):
            i = int(np.flatnonzero(~np.all(np.isfinite(rot.reshape(n, 9)), axis=1))[0])
            raise GeometryError(f"MEG array {self.name!r}: channel {i} ({names[i]!r}) has a non-finite rotation")
        err = np.abs(np.einsum("nji,njk->nik", rot, rot) - np.eye(3)).reshape(n, 9).max(axis=1)
        det = np.linalg.det(rot)
        badr = np.flatnonzero((err > _ROT_TOL) | (det < 0))
        if badr.size:
            i = int(badr[0])
            raise GeometryError(
                f"MEG array {self.name!r}: channel {i} ({names[i]!r}) has a rotation that is not a proper "
                f"rotation (|R^T R - I| = {err[i]:.3g}, det = {det[i]:.4g}); its columns must be orthonormal "
                f"coil axes x, y, z (right-handed)"
            )
        if self.dev_head_t is not None:
            _check_dev_head_t(self.dev_head_t)
        if self.coil_types is not None:
            object.__setattr__(self, "coil_types", self._checked_coil_types(names, types))
        if self.compensation is not None:
            self._check_compensation(n)
        object.__setattr__(self, "ch_names", names)
        object.__setattr__(self, "ch_types", types)
        object.__setattr__(self, "positions_m", _ro(pos))
        object.__setattr__(self, "rotations", _ro(rot))
        self._place_points()

    def _checked_coil_types(self, names: tuple[str, ...], types: tuple[str, ...]) -> tuple[int, ...]:
        ids = tuple(self.coil_types)
        if len(ids) != len(names):
            raise ChannelError(f"MEG array {self.name!r}: {len(ids)} coil_types for {len(names)} channels; give one id per channel")
        out = []
        for i, cid in enumerate(ids):
            coil = vendor_coil(cid)
            if coil.kind != types[i]:
                raise ChannelError(
                    f"MEG array {self.name!r}: channel {i} ({names[i]!r}) has ch_type {types[i]!r} but coil type {cid} "
                    f"({coil.description}) is a {coil.kind!r}; give ch_type {coil.kind!r}"
                )
            out.append(int(cid) & 0xFFFF)
        return tuple(out)

    def _check_compensation(self, n: int) -> None:
        comp = self.compensation
        if not isinstance(comp, GradientCompensation):
            raise ChannelError(
                f"MEG array {self.name!r}: compensation must be a GradientCompensation, got {type(comp).__name__}"
            )
        if comp.matrix.shape[0] != n:
            raise ChannelError(
                f"MEG array {self.name!r}: the compensation matrix has {comp.matrix.shape[0]} rows for {n} channels; "
                f"give one row per channel"
            )
        if comp.references.frame != self.frame:
            raise FrameError(
                f"MEG array {self.name!r} is in the {self.frame.value!r} frame but its reference sensors are in "
                f"{comp.references.frame.value!r}; move both with the same transform"
            )

    def _place_points(self) -> None:
        pts, nrm, wts, chan = [], [], [], []
        for i, t in enumerate(self.ch_types):
            if self.coil_types is None:
                coil = coil_definition(t, self.accuracy)
            else:
                coil = vendor_coil_definition(self.coil_types[i], self.accuracy)
            r = self.rotations[i]
            pts.append(coil.points_m @ r.T + self.positions_m[i])
            nrm.append(coil.normals @ r.T)
            wts.append(coil.weights)
            chan.append(np.full(len(coil.weights), i, dtype=np.int64))
        object.__setattr__(self, "points_m", _ro(np.vstack(pts)))
        object.__setattr__(self, "point_normals", _ro(np.vstack(nrm)))
        object.__setattr__(self, "weights", _ro(np.concatenate(wts)))
        object.__setattr__(self, "point_channel", _ro(np.concatenate(chan), np.int64))

    # ---- descriptions ----
    @property
    def n_channels(self) -> int:
        return len(self.ch_names)

    @property
    def n_points(self) -> int:
        """Number of integration points over all channels."""
        return len(self.weights)

    @property
    def ch_units(self) -> tuple[str, ...]:
        """SI unit per channel: ``"T"`` (magnetometers, axial gradiometers), ``"T/m"``, ``"V"``."""
        return tuple(COIL_TYPES[t] for t in self.ch_types)

    @property
    def whitening_groups(self) -> tuple[str, ...]:
        """Per channel the group the inverse whitens separately: ``"mag"``, ``"grad"``, ``"eeg"``."""
        return tuple(WHITENING_GROUP[t] for t in self.ch_types)

    @property
    def lsl_types(self) -> tuple[str, ...]:
        """Per channel the LSL metadata type: ``"MAG"``, ``"GRAD"`` (or ``"EEG"``)."""
        return tuple(LSL_TYPE[t] for t in self.ch_types)

    @property
    def normals(self) -> np.ndarray:
        """Coil normals (third rotation column), shape (n_channels, 3)."""
        return self.rotations[:, :, 2]

    def __repr__(self) -> str:
        counts = {t: self.ch_types.count(t) for t in dict.fromkeys(self.ch_types)}
        kinds = ", ".join(f"{v} {k}" for k, v in counts.items())
        return (
            f"MegArray({self.name!r}: {self.n_channels} channels ({kinds}), {self.n_points} points, "
            f"frame={self.frame.value!r}, accuracy={self.accuracy!r}"
            + ("" if self.coil_types is None else f", coil types {sorted(set(self.coil_types))}")
            + ("" if self.compensation is None else f", compensation grade {self.compensation.grade} with "
               f"{self.compensation.n_references} references")
            + ")"
        )

    # ---- arithmetic ----
    @cached_property
    def _weight_matrix(self):
        from scipy.sparse import csr_array

        return csr_array(
            (np.asarray(self.weights), (np.asarray(self.point_channel), np.arange(self.n_points))),
            shape=(self.n_channels, self.n_points),
        )

    def weight_matrix(self):
        """Sparse (n_channels, n_points) matrix of the weights: signals = W @ field."""
        return self._weight_matrix

    def channel_signals(self, field_per_point: np.ndarray) -> np.ndarray:
        """Apply the coil weights: ``s_c = sum_{i in c} w_i f_i``.

        The coils' own signals: a :attr:`compensation` (``s - C s_ref``) needs the
        references' signals too (:meth:`GradientCompensation.compensate`).

        Parameters
        ----------
        field_per_point : ndarray, shape (n_points,) or (n_points, m)
            B.n at every integration point (T), e.g. per source column (T per A*m).

        Returns
        -------
        ndarray, shape (n_channels,) or (n_channels, m)
            Channel signals (T, T/m, ...) in channel order.
        """
        f = np.asarray(field_per_point, dtype=float)
        if f.ndim not in (1, 2) or f.shape[0] != self.n_points:
            raise ChannelError(
                f"field_per_point must have shape ({self.n_points},) or ({self.n_points}, m) -- one row per "
                f"integration point of {self.name!r} -- got {f.shape}"
            )
        return self._weight_matrix @ f

    # ---- frames ----
    def transformed(self, transform: Transform) -> "MegArray":
        """The array moved into ``transform.to_frame`` (rigid transforms only)."""
        check_same_frame(self.frame, transform.from_frame, f"MEG array {self.name!r}", "the transform's input")
        rot = _rigid_rotation(transform, f"moving MEG array {self.name!r}")
        comp = self.compensation
        if comp is not None:
            comp = comp.with_references(comp.references.transformed(transform))
        return dataclasses.replace(
            self,
            positions_m=transform.apply_m(self.positions_m),
            rotations=np.einsum("ij,njk->nik", rot, self.rotations),
            frame=transform.to_frame,
            compensation=comp,
        )

    def to_head(self) -> "MegArray":
        """The array in the frame its ``dev_head_t`` leads to (a no-op if already there)."""
        if self.dev_head_t is None:
            raise FrameError(
                f"MEG array {self.name!r} carries no device->head transform; set one with "
                f"with_dev_head_t() (e.g. from rtsource.geometry.head_frames.device_to_head_from_hpi)"
            )
        if self.frame == self.dev_head_t.to_frame:
            return self
        return self.transformed(self.dev_head_t)

    def in_frame(self, frame: Frame | str) -> "MegArray":
        """The array in ``frame``: itself, or moved there by its ``dev_head_t``.

        Raises :class:`FrameError` naming both frames when no carried transform leads there.
        """
        frame = as_frame(frame)
        if frame == self.frame:
            return self
        t = self.dev_head_t
        if t is not None and self.frame == Frame.DEVICE and t.to_frame == frame:
            return self.transformed(t)
        if t is not None and self.frame == t.to_frame and frame == Frame.DEVICE:
            return self.transformed(t.inverse())
        carried = f"{t.from_frame.value!r}->{t.to_frame.value!r}" if t is not None else "none"
        raise FrameError(
            f"MEG array {self.name!r} is in the {self.frame.value!r} frame but {frame.value!r} is needed, and "
            f"its carried device->head transform ({carried}) does not lead there; pass a transform "
            f"(MegArray.transformed) or set the right one with with_dev_head_t()"
        )

    def with_dev_head_t(self, transform: Transform | None) -> "MegArray":
        """The same array carrying another DEVICE -> HEAD/TEMPLATE transform.

        If the array is not in DEVICE it is first moved back to DEVICE with the old transform,
        so that the new transform describes the same sensors.
        """
        base = self if self.frame == Frame.DEVICE else self.in_frame(Frame.DEVICE)
        comp = base.compensation
        if comp is not None:
            comp = comp.with_references(dataclasses.replace(comp.references, dev_head_t=transform))
        return dataclasses.replace(base, frame=Frame.DEVICE, dev_head_t=transform, compensation=comp)

    def with_accuracy(self, accuracy: str) -> "MegArray":
        """The same channels (and reference sensors) with another coil integration accuracy."""
        comp = self.compensation
        if comp is not None:
            comp = comp.with_references(comp.references.with_accuracy(accuracy))
        return dataclasses.replace(self, accuracy=accuracy, compensation=comp)

    def without_compensation(self) -> "MegArray":
        """The same channels without gradient compensation (the lead field is then ``G``)."""
        return dataclasses.replace(self, compensation=None)

    def pick(self, names: Iterable[str]) -> "MegArray":
        """The channels ``names`` in that order (exact names)."""
        names = list(names)
        index = {x: i for i, x in enumerate(self.ch_names)}
        missing = [x for x in names if x not in index]
        if missing:
            shown = ", ".join(self.ch_names[:8]) + (", ..." if self.n_channels > 8 else "")
            raise ChannelError(
                f"{len(missing)} channel(s) not in MEG array {self.name!r}: {', '.join(missing[:10])} "
                f"({self.n_channels} available: {shown}); check the names"
            )
        idx = [index[x] for x in names]
        return dataclasses.replace(
            self,
            ch_names=tuple(names),
            ch_types=tuple(self.ch_types[i] for i in idx),
            positions_m=self.positions_m[idx],
            rotations=self.rotations[idx],
            coil_types=None if self.coil_types is None else tuple(self.coil_types[i] for i in idx),
            compensation=None if self.compensation is None else self.compensation.pick_rows(idx),
        )

    def pick_types(self, *types: str) -> "MegArray":
        """The channels of the given coil types (``"mag"``, ``"planar_grad"``, ...), in order."""
        unknown = [t for t in types if t not in COIL_TYPES]
        if unknown:
            raise ChannelError(f"coil types {unknown} are not known; use {', '.join(COIL_TYPES)}")
        return self.pick([n for n, t in zip(self.ch_names, self.ch_types) if t in types])


def _rigid_rotation(transform: Transform, what: str) -> np.ndarray:
    r = np.asarray(transform.matrix[:3, :3])
    err = float(np.abs(r.T @ r - np.eye(3)).max())
    if err > 1e-6 or np.linalg.det(r) < 0:
        raise FrameError(
            f"{what}: the {transform.from_frame.value!r}->{transform.to_frame.value!r} transform is not a "
            f"rigid rotation + translation (|R^T R - I| = {err:.3g}, det = {np.linalg.det(r):.4g}); MEG coil "
            f"geometry cannot be scaled or mirrored -- scale the head model instead"
        )
    return r


def _check_dev_head_t(t: Transform) -> None:
    if not isinstance(t, Transform):
        raise FrameError(f"dev_head_t must be a rtsource.geometry.Transform, got {type(t).__name__}")
    if t.from_frame != Frame.DEVICE or t.to_frame in (Frame.DEVICE, Frame.UNKNOWN):
        raise FrameError(
            f"dev_head_t must map the 'device' frame to 'head' (or 'template' / 'mri'), got "
            f"{t.from_frame.value!r}->{t.to_frame.value!r}"
        )
    _rigid_rotation(t, "dev_head_t")


def make_meg_array(
    ch_names: Sequence[str],
    ch_types: Sequence[str] | str,
    positions_m: np.ndarray | Points,
    normals: np.ndarray,
    x_axes: np.ndarray | Sequence[np.ndarray | None] | None = None,
    *,
    frame: Frame | str | None = None,
    accuracy: str = "normal",
    dev_head_t: Transform | None = None,
    name: str = "meg",
    coil_types: Sequence[int] | None = None,
    compensation: GradientCompensation | None = None,
) -> MegArray:
    """Build a :class:`MegArray` from positions, orientations and coil types.

    Parameters
    ----------
    ch_names : sequence of str, length n
    ch_types : sequence of str, length n, or str
        Coil type per channel (one string for all).
    positions_m : ndarray, shape (n, 3), or Points
        Coil centres in metres (a :class:`Points` gives its own frame and unit).
    normals : ndarray, shape (n, 3)
        Unit coil normals pointing away from the head.
    x_axes : ndarray, shape (n, 3), or sequence with None entries, optional
        Unit in-plane x axis per coil; required for planar gradiometers (the gradient
        direction), else a deterministic perpendicular is chosen.
    frame : Frame or str
        Frame of the positions (required unless ``positions_m`` is a :class:`Points`).
    accuracy : {"point", "normal", "accurate"}
    dev_head_t : Transform, optional
        DEVICE -> HEAD/TEMPLATE transform carried with the array.
    name : str
    coil_types : sequence of int, optional
        Vendor coil type id per channel (:mod:`.vendor_coils`); None: generic coils.
    compensation : GradientCompensation, optional
        Gradient compensation in effect (reference sensors in the same frame).

    Returns
    -------
    MegArray

    Raises
    ------
    ChannelError, GeometryError, FrameError
        Naming the channel: non-unit or non-perpendicular orientations, a planar
        gradiometer without ``x_axes``, unknown types, shape mismatches.
    """
    names = [str(x) for x in ch_names]
    n = len(names)
    types = [ch_types] * n if isinstance(ch_types, str) else [str(t) for t in ch_types]
    if len(types) != n:
        raise ChannelError(f"{len(types)} channel types for {n} channel names")
    if isinstance(positions_m, Points):
        if frame is not None and as_frame(frame) != positions_m.frame:
            check_same_frame(positions_m.frame, as_frame(frame), "positions_m", "the requested frame")
        frame = positions_m.frame
        pos = positions_m.positions_m
    else:
        if frame is None:
            raise FrameError("make_meg_array needs frame= (e.g. 'device') when positions_m is a plain array")
        pos = np.asarray(positions_m, dtype=float)
    if pos.shape != (n, 3):
        raise GeometryError(f"positions_m must have shape ({n}, 3) for {n} channels, got {pos.shape}")
    nrm = np.asarray(normals, dtype=float)
    if nrm.shape != (n, 3):
        raise GeometryError(f"normals must have shape ({n}, 3) for {n} channels, got {nrm.shape}")
    if x_axes is None:
        xs: list = [None] * n
    else:
        xs = list(x_axes)
        if len(xs) != n:
            raise GeometryError(f"x_axes must have {n} entries (one per channel, None allowed), got {len(xs)}")
    rot = np.empty((n, 3, 3))
    for i in range(n):
        where = f"channel {i} ({names[i]!r})"
        if i < len(types) and types[i] == "planar_grad" and xs[i] is None:
            raise GeometryError(
                f"{where} is a planar gradiometer but has no x_axis; give the gradient direction "
                f"(a unit vector in the coil plane)"
            )
        rot[i] = _rotation_from(nrm[i], xs[i], where)
    return MegArray(
        tuple(names), tuple(types), pos, rot, as_frame(frame), accuracy, dev_head_t, name,
        None if coil_types is None else tuple(coil_types), compensation,
    )  # fmt: skip


__all__ = ["MegArray", "make_meg_array"]
