"""MEG sensors: coils with integration points, sensor arrays, a file format, a generic helmet.

A MEG channel measures the magnetic flux through one or more pick-up loops. Numerically it is
a set of *integration points* (position r_i, unit normal n_i, weight w_i) given in the coil's
own frame and placed by the channel's position and rotation; the signal is

    s = sum_i w_i B(r_i) . n_i

(Hamalainen et al. 1993, Rev Mod Phys 65:413, sec. IV; the same discretisation MNE-Python's
``coil_def.dat`` uses). Any MEG forward model (Sarvas sphere, BEM) only has to give B.n at the
points; :meth:`MegArray.channel_signals` applies the weights.

Coil types
----------
The coil frame has its z axis along the coil normal (pointing away from the head) and, for a
planar gradiometer, its x axis along the measured gradient. Three accuracy levels are
defined (``"normal"`` is the default, as in MNE-Python):

============  =====  =====================================================================
type          unit   integration points (coil frame, metres)
============  =====  =====================================================================
mag           T      square loop of side 25.8 mm (Vectorview-like). point: 1 point at the
                     centre, w = 1. normal: 2x2 Gauss-Legendre points (+-7.45 mm, +-7.45 mm),
                     w = 1/4 (exact for a field quadratic over the loop). accurate: 3x3
                     Gauss-Legendre points with product weights.
planar_grad   T/m    baseline b = 16.8 mm along x. point and normal: 2 points at
                     x = +-8.4 mm, w = +-1/b (the reference's definition; the difference
                     quotient of B.n along x). accurate: each lobe a rectangle of
                     8.4 mm (x) by 26.4 mm (y) centred at x = +-8.4 mm, 2x2
                     Gauss-Legendre points per lobe, w = +-1/(4 b).
axial_grad    T      baseline 50 mm along z, loop radius 9 mm. point: 2 points on the axis,
                     w = +1 at z = 0 and -1 at z = 0.05 m. normal: 4 points at
                     (+-4.5 mm, +-4.5 mm) per loop (radius R/sqrt(2): exact for quadratics
                     over the disk), w = +-1/4. accurate: Radon's 7-point degree-5 disk rule
                     per loop (centre 1/4, six points at radius sqrt(2/3) R with 1/8).
eeg           V      one point, w = 1 (an electrode: the "field" is the potential).
============  =====  =====================================================================

These are generic coils, not a vendor's. MNE-Python's Vectorview definitions differ: its
"normal" planar gradiometer has 4 points (+-8.4 mm, +-6.7 mm) 0.3 mm above the coil, its T3
magnetometer a 21 mm loop; against them our "normal" channels differ by up to ~6 %
(gradiometers) and ~1.5 % (magnetometers) for the closest sources, while point
magnetometers agree to round-off (tests/forward/test_meg_sphere.py).

Frames
------
A :class:`MegArray` is in one frame, usually :attr:`~rtsource.geometry.Frame.DEVICE` (fixed to
the helmet). It may carry the DEVICE -> HEAD (or -> TEMPLATE) transform of the recording,
``dev_head_t``; :meth:`MegArray.to_head` applies it. Only rigid transforms are accepted: coil
sizes are physical.

JSON file format (``rtsource-meg-array``, version 1)
---------------------------------------------------
UTF-8 JSON, one object::

    {
      "format": "rtsource-meg-array",          # required, exactly this
      "version": 1,                            # required
      "name": "my-system",                     # optional
      "frame": "device",                       # required: device, head, template, mri, ctf
      "unit": "mm",                            # required: m, cm or mm (every length below)
      "accuracy": "normal",                    # optional: point, normal (default), accurate
      "dev_head_t": {                          # optional: only for frame "device"
        "to": "head",                          #   head or template (or mri)
        "matrix": [[1,0,0,0],[0,1,0,0],[0,0,1,40],[0,0,0,1]]  # 4x4, translation in "unit"
      },
      "channels": [                            # required, at least one
        {"name": "MEG001G1", "type": "planar_grad",
         "position": [x, y, z],                # coil centre, in "unit"
         "normal": [nx, ny, nz],               # unit vector, away from the head
         "x_axis": [ex, ey, ez]},              # unit, normal to "normal"; required for
                                               #   planar_grad (the gradient direction)
        {"name": "MEG001M", "type": "mag", "position": [...], "normal": [...]}
      ]
    }

``type`` is one of ``mag``, ``planar_grad``, ``axial_grad`` (and ``eeg``). Unknown keys are
an error (a misspelt ``"x-axis"`` must not be silently ignored). Every error names the
offending entry (``channels[17] ('MEG006G2')``) and says what to fix.

The generic whole-head array
----------------------------
:func:`generic_meg_array` builds 102 sensor sites, each with two orthogonal planar
gradiometers and one magnetometer (306 channels, the layout of an Elekta/MEGIN Vectorview),
on a helmet around the embedded template head; see its docstring for the construction.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..arrays import frozen as _ro
from ..errors import ChannelError, FrameError, GeometryError, UnitError
from ..geometry import Frame, Points, Transform, as_frame, check_same_frame
from ..geometry.units import length_factor

logger = logging.getLogger(__name__)

__all__ = [
    "ACCURACIES",
    "COIL_TYPES",
    "CoilDef",
    "MegArray",
    "coil_definition",
    "make_meg_array",
    "read_meg_array",
    "write_meg_array",
    "meg_array_from_dict",
    "meg_array_to_dict",
    "WHITENING_GROUP",
    "LSL_TYPE",
    "generic_meg_array",
    "generic_helmet_transform",
    "GENERIC_GAP_M",
    "load_meg_array",
    "channel_metadata",
    "AD_HOC_NOISE_STD",
    "ad_hoc_noise_std",
]

#: Coil types and the unit of their signal.
COIL_TYPES: dict[str, str] = {"mag": "T", "planar_grad": "T/m", "axial_grad": "T", "eeg": "V"}
#: Integration accuracies, coarse to fine.
ACCURACIES = ("point", "normal", "accurate")
#: Groups the inverse whitens separately (MNE-Python's channel types): axial gradiometers
#: measure T like magnetometers and are grouped with them, as MNE does for CTF systems.
WHITENING_GROUP = {"mag": "mag", "axial_grad": "mag", "planar_grad": "grad", "eeg": "eeg"}
#: Channel types written into LSL stream metadata (``type`` of each channel).
LSL_TYPE = {"mag": "MAG", "axial_grad": "MAG", "planar_grad": "GRAD", "eeg": "EEG"}
#: Noise standard deviation per whitening group for a diagonal ("ad hoc") covariance, SI
#: units: MNE-Python's ``make_ad_hoc_cov`` defaults (0.2 uV, 20 fT, 5 fT/cm).
AD_HOC_NOISE_STD = {"eeg": 0.2e-6, "mag": 20e-15, "grad": 5e-13}

# Coil geometry (metres). The magnetometer loop is Vectorview-like (25.8 mm square), the
# planar gradiometer the reference's 16.8 mm baseline with Vectorview-like lobes (8.4 x 26.4 mm),
# the axial gradiometer CTF-like (50 mm baseline, 9 mm loop radius).
MAG_SIDE_M = 0.0258
PLANAR_BASELINE_M = 0.0168
PLANAR_LOBE_M = (0.0084, 0.0264)  # width (along the gradient) and height of one lobe
AXIAL_BASELINE_M = 0.050
AXIAL_RADIUS_M = 0.009

# Tolerances: orientations read from files carry a few decimals.
_UNIT_TOL = 1e-3
_ORTHO_TOL = 1e-3
_ROT_TOL = 1e-6


# --------------------------------------------------------------------------------------
# Coil definitions
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CoilDef:
    """A coil type's integration points in its own frame.

    Attributes
    ----------
    kind : str
        ``"mag"``, ``"planar_grad"``, ``"axial_grad"`` or ``"eeg"``.
    accuracy : str
        ``"point"``, ``"normal"`` or ``"accurate"``.
    unit : str
        Unit of the channel signal (``"T"``, ``"T/m"``, ``"V"``).
    points_m : ndarray, shape (k, 3)
        Integration points in the coil frame, metres (z along the coil normal).
    normals : ndarray, shape (k, 3)
        Unit normals of the points in the coil frame.
    weights : ndarray, shape (k,)
        Weights; the signal is ``sum_i w_i B(r_i).n_i`` (1/m for planar gradiometers).
    description : str
        One line for reports.
    """

    kind: str
    accuracy: str
    unit: str
    points_m: np.ndarray
    normals: np.ndarray
    weights: np.ndarray
    description: str


def _gauss_rect(width: float, height: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n x n Gauss-Legendre points and weights (summing to 1) over a centred rectangle."""
    x, w = np.polynomial.legendre.leggauss(n)
    xx, yy = np.meshgrid(x * width / 2.0, x * height / 2.0, indexing="ij")
    ww = np.outer(w / 2.0, w / 2.0)
    return np.c_[xx.ravel(), yy.ravel(), np.zeros(n * n)], ww.ravel()


def _disk_rule(radius: float, accuracy: str) -> tuple[np.ndarray, np.ndarray]:
    """Cubature points and weights (summing to 1) over a disk in the z = 0 plane."""
    if accuracy == "point":
        return np.zeros((1, 3)), np.ones(1)
    if accuracy == "normal":
        # four points at radius R/sqrt(2) on the diagonals: exact for quadratics (mean r^2 = R^2/2)
        h = radius / 2.0
        pts = np.array([[h, h, 0], [-h, h, 0], [-h, -h, 0], [h, -h, 0]], dtype=float)
        return pts, np.full(4, 0.25)
    # Radon's 7-point rule, degree 5 (Stroud 1971, S2:5-1): centre 1/4, six points at
    # radius sqrt(2/3) R, 60 degrees apart, 1/8 each.
    ang = np.arange(6) * np.pi / 3.0
    rr = math.sqrt(2.0 / 3.0) * radius
    pts = np.vstack([[0.0, 0.0, 0.0], np.c_[rr * np.cos(ang), rr * np.sin(ang), np.zeros(6)]])
    return pts, np.r_[0.25, np.full(6, 0.125)]


@lru_cache(maxsize=None)
def coil_definition(kind: str, accuracy: str = "normal") -> CoilDef:
    """The integration points of a coil type (see the module docstring for the table).

    Parameters
    ----------
    kind : {"mag", "planar_grad", "axial_grad", "eeg"}
    accuracy : {"point", "normal", "accurate"}

    Returns
    -------
    CoilDef

    Raises
    ------
    ChannelError
        Unknown ``kind`` or ``accuracy``.
    """
    if kind not in COIL_TYPES:
        raise ChannelError(f"coil type {kind!r} is not known; use one of {', '.join(COIL_TYPES)}")
    if accuracy not in ACCURACIES:
        raise ChannelError(f"coil accuracy {accuracy!r} is not known; use one of {', '.join(ACCURACIES)}")
    z = np.array([0.0, 0.0, 1.0])
    if kind == "eeg":
        pts, w, desc = np.zeros((1, 3)), np.ones(1), "EEG electrode, 1 point"
    elif kind == "mag":
        if accuracy == "point":
            pts, w = np.zeros((1, 3)), np.ones(1)
        else:
            pts, w = _gauss_rect(MAG_SIDE_M, MAG_SIDE_M, 2 if accuracy == "normal" else 3)
        desc = f"magnetometer, {MAG_SIDE_M * 1e3:.1f} mm square loop, {len(w)} points"
    elif kind == "planar_grad":
        b = PLANAR_BASELINE_M
        if accuracy in ("point", "normal"):
            pts = np.array([[b / 2, 0, 0], [-b / 2, 0, 0]], dtype=float)
            w = np.array([1.0 / b, -1.0 / b])
        else:
            lobe, lw = _gauss_rect(PLANAR_LOBE_M[0], PLANAR_LOBE_M[1], 2)
            pts = np.vstack([lobe + [b / 2, 0, 0], lobe + [-b / 2, 0, 0]])
            w = np.r_[lw / b, -lw / b]
        desc = f"planar gradiometer, baseline {b * 1e3:.1f} mm, {len(w)} points"
    else:  # axial_grad
        disk, dw = _disk_rule(AXIAL_RADIUS_M, accuracy)
        far = disk + [0.0, 0.0, AXIAL_BASELINE_M]
        pts = np.vstack([disk, far])
        w = np.r_[dw, -dw]
        desc = (
            f"axial gradiometer, baseline {AXIAL_BASELINE_M * 1e3:.0f} mm, loop radius "
            f"{AXIAL_RADIUS_M * 1e3:.0f} mm, {len(w)} points"
        )
    normals = np.tile(z, (len(w), 1))
    return CoilDef(kind, accuracy, COIL_TYPES[kind], _ro(pts), _ro(normals), _ro(w), desc)


# --------------------------------------------------------------------------------------
# Orientation helpers
# --------------------------------------------------------------------------------------


def _perpendicular(normal: np.ndarray) -> np.ndarray:
    """A deterministic unit vector normal to ``normal`` (for coils whose x axis is free)."""
    ref = np.array([1.0, 0.0, 0.0]) if abs(normal[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    x = ref - (ref @ normal) * normal
    return x / np.linalg.norm(x)


def _rotation_from(normal: np.ndarray, x_axis: np.ndarray | None, where: str) -> np.ndarray:
    """3x3 rotation with columns (x, y, z) of the coil frame; z = normal."""
    n = np.asarray(normal, dtype=float)
    if n.shape != (3,) or not np.all(np.isfinite(n)):
        raise GeometryError(f"{where}: normal must be 3 finite numbers, got {normal!r}")
    ln = float(np.linalg.norm(n))
    if abs(ln - 1.0) > _UNIT_TOL:
        raise GeometryError(
            f"{where}: normal {np.round(n, 6).tolist()} has length {ln:.6g}; orientations must be "
            f"unit vectors (divide it by its length)"
        )
    n = n / ln
    if x_axis is None:
        x = _perpendicular(n)
    else:
        x = np.asarray(x_axis, dtype=float)
        if x.shape != (3,) or not np.all(np.isfinite(x)):
            raise GeometryError(f"{where}: x_axis must be 3 finite numbers, got {x_axis!r}")
        lx = float(np.linalg.norm(x))
        if abs(lx - 1.0) > _UNIT_TOL:
            raise GeometryError(
                f"{where}: x_axis {np.round(x, 6).tolist()} has length {lx:.6g}; orientations must "
                f"be unit vectors (divide it by its length)"
            )
        x = x / lx
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
        object.__setattr__(self, "ch_names", names)
        object.__setattr__(self, "ch_types", types)
        object.__setattr__(self, "positions_m", _ro(pos))
        object.__setattr__(self, "rotations", _ro(rot))
        self._place_points()

    def _place_points(self) -> None:
        pts, nrm, wts, chan = [], [], [], []
        for i, t in enumerate(self.ch_types):
            coil = coil_definition(t, self.accuracy)
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
            f"frame={self.frame.value!r}, accuracy={self.accuracy!r})"
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
        return MegArray(
            self.ch_names,
            self.ch_types,
            transform.apply_m(self.positions_m),
            np.einsum("ij,njk->nik", rot, self.rotations),
            transform.to_frame,
            self.accuracy,
            self.dev_head_t,
            self.name,
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
        return MegArray(base.ch_names, base.ch_types, base.positions_m, base.rotations, Frame.DEVICE, base.accuracy, transform, base.name)

    def with_accuracy(self, accuracy: str) -> "MegArray":
        """The same channels with another coil integration accuracy."""
        return MegArray(self.ch_names, self.ch_types, self.positions_m, self.rotations, self.frame, accuracy, self.dev_head_t, self.name)

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
        return MegArray(
            tuple(names),
            tuple(self.ch_types[i] for i in idx),
            self.positions_m[idx],
            self.rotations[idx],
            self.frame,
            self.accuracy,
            self.dev_head_t,
            self.name,
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
    return MegArray(tuple(names), tuple(types), pos, rot, as_frame(frame), accuracy, dev_head_t, name)


# --------------------------------------------------------------------------------------
# JSON reader / writer
# --------------------------------------------------------------------------------------

_FORMAT = "rtsource-meg-array"
_TOP_KEYS = {"format", "version", "name", "frame", "unit", "accuracy", "dev_head_t", "channels"}
_CHANNEL_KEYS = {"name", "type", "position", "normal", "x_axis"}


def _vector(entry: dict, key: str, where: str, required: bool = True):
    if key not in entry:
        if required:
            raise ChannelError(f"{where}: {key!r} is missing; give it as [x, y, z]")
        return None
    v = entry[key]
    if (
        not isinstance(v, list)
        or len(v) != 3
        or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
    ):
        raise ChannelError(f"{where}: {key!r} must be a list of 3 numbers, got {v!r}")
    a = np.asarray(v, dtype=float)
    if not np.all(np.isfinite(a)):
        raise ChannelError(f"{where}: {key!r} = {v!r} is not finite")
    return a


def meg_array_from_dict(doc: Any, *, source: str = "MEG array document") -> MegArray:
    """Validate a parsed ``rtsource-meg-array`` document (see the module docstring)."""
    if not isinstance(doc, dict):
        raise ChannelError(f"{source}: the top level must be a JSON object, got {type(doc).__name__}")
    extra = sorted(set(doc) - _TOP_KEYS)
    if extra:
        raise ChannelError(f"{source}: unknown top-level keys {extra}; allowed: {sorted(_TOP_KEYS)}")
    if doc.get("format") != _FORMAT:
        raise ChannelError(f"{source}: 'format' must be {_FORMAT!r}, got {doc.get('format')!r}")
    if doc.get("version") != 1:
        raise ChannelError(f"{source}: 'version' {doc.get('version')!r} is not supported; this rtsource reads version 1")
    if "frame" not in doc:
        raise ChannelError(f"{source}: 'frame' is missing; say which frame the positions are in (e.g. 'device')")
    try:
        frame = as_frame(doc["frame"])
    except FrameError as exc:
        raise FrameError(f"{source}: {exc}") from None
    if frame == Frame.UNKNOWN:
        raise FrameError(f"{source}: frame 'unknown' is not allowed for a MEG array; name the real frame (usually 'device')")
    unit = doc.get("unit")
    if unit is None:
        raise ChannelError(f"{source}: 'unit' is missing; give the length unit of the positions ('m', 'cm' or 'mm')")
    try:
        scale = length_factor(str(unit))
    except UnitError as exc:
        raise ChannelError(f"{source}: {exc}") from None
    accuracy = doc.get("accuracy", "normal")
    if accuracy not in ACCURACIES:
        raise ChannelError(f"{source}: 'accuracy' {accuracy!r} is not known; use one of {', '.join(ACCURACIES)}")
    chans = doc.get("channels")
    if not isinstance(chans, list) or not chans:
        raise ChannelError(f"{source}: 'channels' must be a non-empty list of channel objects")
    names, types, pos, nrm, xs = [], [], [], [], []
    for i, entry in enumerate(chans):
        label = entry.get("name") if isinstance(entry, dict) else None
        where = f"{source}: channels[{i}]" + (f" ({label!r})" if isinstance(label, str) else "")
        if not isinstance(entry, dict):
            raise ChannelError(f"{where} must be an object with name, type, position, normal, got {entry!r}")
        unknown = sorted(set(entry) - _CHANNEL_KEYS)
        if unknown:
            raise ChannelError(f"{where}: unknown keys {unknown}; allowed: {sorted(_CHANNEL_KEYS)}")
        if not isinstance(label, str) or not label.strip():
            raise ChannelError(f"{where}: 'name' must be a non-empty string, got {label!r}")
        kind = entry.get("type")
        if kind not in COIL_TYPES:
            raise ChannelError(f"{where}: coil type {kind!r} is not known; use one of {', '.join(COIL_TYPES)}")
        names.append(label)
        types.append(kind)
        pos.append(_vector(entry, "position", where) * scale)
        nrm.append(_vector(entry, "normal", where))
        xs.append(_vector(entry, "x_axis", where, required=False))
    dup = sorted({x for x in names if names.count(x) > 1})
    if dup:
        raise ChannelError(f"{source}: channel names {dup} appear more than once; names must be unique")
    dev_head_t = None
    if "dev_head_t" in doc and doc["dev_head_t"] is not None:
        spec = doc["dev_head_t"]
        if frame != Frame.DEVICE:
            raise ChannelError(f"{source}: 'dev_head_t' is only allowed with frame 'device', but frame is {frame.value!r}")
        if not isinstance(spec, dict) or set(spec) - {"to", "matrix"} or "matrix" not in spec:
            raise ChannelError(f"{source}: 'dev_head_t' must be an object {{'to': 'head', 'matrix': 4x4 list}}, got {spec!r}")
        try:
            m = np.asarray(spec["matrix"], dtype=float)
        except (TypeError, ValueError):
            m = np.zeros(0)
        if m.shape != (4, 4):
            raise ChannelError(f"{source}: 'dev_head_t' matrix must be 4x4 numbers, got {spec['matrix']!r}")
        m = m.copy()
        m[:3, 3] *= scale
        try:
            dev_head_t = Transform(Frame.DEVICE, as_frame(spec.get("to", "head")), m)
        except FrameError as exc:
            raise FrameError(f"{source}: 'dev_head_t': {exc}") from None
    try:
        return make_meg_array(
            names, types, np.asarray(pos), np.asarray(nrm), xs, frame=frame, accuracy=accuracy,
            dev_head_t=dev_head_t, name=str(doc.get("name", source)),
        )
    except (GeometryError, ChannelError, FrameError) as exc:
        raise type(exc)(f"{source}: {exc}") from None


def read_meg_array(path: str | Path) -> MegArray:
    """Read a sensor array from an ``rtsource-meg-array`` JSON file (module docstring).

    Raises
    ------
    ChannelError
        Unreadable JSON (with line and column), missing or unknown keys, unknown coil types;
        every message names the file and the offending entry.
    GeometryError
        Non-unit or non-perpendicular orientations, named by entry.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ChannelError(f"cannot read MEG array file {str(path)!r}: {exc}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ChannelError(
            f"MEG array file {str(path)!r} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    return meg_array_from_dict(doc, source=f"MEG array file {path.name!r}")


def meg_array_to_dict(array: MegArray, *, unit: str = "mm") -> dict:
    """The ``rtsource-meg-array`` document of ``array`` (lengths in ``unit``)."""
    scale = 1.0 / length_factor(unit)
    chans = []
    for i, (n, t) in enumerate(zip(array.ch_names, array.ch_types)):
        entry = {
            "name": n,
            "type": t,
            "position": [round(float(x), 9) for x in array.positions_m[i] * scale],
            "normal": [round(float(x), 12) for x in array.rotations[i, :, 2]],
            "x_axis": [round(float(x), 12) for x in array.rotations[i, :, 0]],
        }
        chans.append(entry)
    doc: dict[str, Any] = {
        "format": _FORMAT,
        "version": 1,
        "name": array.name,
        "frame": array.frame.value,
        "unit": unit,
        "accuracy": array.accuracy,
    }
    if array.dev_head_t is not None and array.frame == Frame.DEVICE:
        m = np.array(array.dev_head_t.matrix)
        m[:3, 3] *= scale
        doc["dev_head_t"] = {"to": array.dev_head_t.to_frame.value, "matrix": m.round(12).tolist()}
    doc["channels"] = chans
    return doc


def write_meg_array(array: MegArray, path: str | Path, *, unit: str = "mm") -> None:
    """Write ``array`` as an ``rtsource-meg-array`` JSON file (lengths in ``unit``)."""
    path = Path(path)
    text = json.dumps(meg_array_to_dict(array, unit=unit), indent=1)
    path.write_text(text + "\n", encoding="utf-8")


# --------------------------------------------------------------------------------------
# The generic whole-head array
# --------------------------------------------------------------------------------------

#: Distance of the generic helmet's sensor sites from the (smoothed) template scalp.
GENERIC_GAP_M = 0.025
#: Number of sensor sites of the generic array (each: 2 planar gradiometers + 1 magnetometer).
GENERIC_N_SITES = 102
# The sites cover a spherical cap of this half-angle about an axis tilted backwards, so the
# helmet reaches lower over the occiput than over the forehead (as real helmets do).
_CAP_HALF_ANGLE_DEG = 112.0
_CAP_TILT_DEG = 15.0
# Umbrella-smoothing passes of the scalp's radial function (the helmet is smooth, heads are not).
_SMOOTH_ITER = 20


def _smooth_on_mesh(values: np.ndarray, triangles: np.ndarray, n_iter: int) -> np.ndarray:
    n = len(values)
    edges = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    count = np.bincount(edges[:, 0], minlength=n)
    out = values.copy()
    for _ in range(n_iter):
        out = 0.5 * out + 0.5 * np.bincount(edges[:, 0], weights=out[edges[:, 1]], minlength=n) / count
    return out


@lru_cache(maxsize=1)
def _generic_sites() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sites (template frame), their normals, the helmet centre, all from the template."""
    from ..anatomy.template import load_template
    from ..geometry import Mesh, project_onto_mesh
    from ..geometry.icosphere import icosphere

    template = load_template(4)
    center = np.asarray(template.scalp_center_m, dtype=float)
    scalp = template.surfaces.scalp.vertices_m
    dirs, tris = icosphere(4)
    radial = np.linalg.norm(scalp - center, axis=1)
    if not np.allclose((scalp - center) / radial[:, None], dirs, atol=1e-5):
        raise GeometryError(
            "the template scalp is not the radial icosphere resampling the generic helmet expects; "
            "rebuild the template with tools/build_template.py"
        )
    smooth = _smooth_on_mesh(radial, tris, _SMOOTH_ITER)
    inner = Mesh(center + dirs * smooth[:, None], tris, Frame.TEMPLATE, "m", "smoothed scalp")
    vnorm = inner.vertex_normals()
    # Fibonacci (golden-angle) points, equal-area over a cap: z uniform in [cos(theta), 1]
    # (Gonzalez 2010, Math Geosci 42:49).
    n = GENERIC_N_SITES
    k = np.arange(n)
    z = 1.0 - (k + 0.5) / n * (1.0 - math.cos(math.radians(_CAP_HALF_ANGLE_DEG)))
    phi = k * math.pi * (3.0 - math.sqrt(5.0))
    s = np.sqrt(1.0 - z * z)
    d = np.c_[s * np.cos(phi), s * np.sin(phi), z]
    tilt = math.radians(_CAP_TILT_DEG)  # rotate the cap axis from +z towards -y (backwards)
    rx = np.array([[1, 0, 0], [0, math.cos(tilt), -math.sin(tilt)], [0, math.sin(tilt), math.cos(tilt)]])
    d = d @ rx.T
    unit_sphere = Mesh(dirs, tris, Frame.TEMPLATE, "m", "unit sphere")
    proj = project_onto_mesh(d, unit_sphere)
    corner = tris[proj.triangles]
    r = np.einsum("nk,nk->n", proj.weights, smooth[corner])
    normal = np.einsum("nk,nkj->nj", proj.weights, vnorm[corner])
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    sites = center + d * r[:, None] + GENERIC_GAP_M * normal
    return sites, normal, center, d


def generic_helmet_transform() -> Transform:
    """The generic array's default DEVICE -> TEMPLATE transform.

    A pure translation: the device origin is the centre of the sphere fitted to the template's
    upper scalp (``load_template().scalp_center_m``, about (0.7, -18.9, 1.7) mm), device axes
    parallel to the template's (x right, y front, z up).
    """
    _, _, center, _ = _generic_sites()
    return Transform.from_rotation_translation(Frame.DEVICE, Frame.TEMPLATE, np.eye(3), center)


def generic_meg_array(accuracy: str = "normal") -> MegArray:
    """A generic 306-channel whole-head array (Vectorview-like layout) for demos and tests.

    Construction (deterministic, from the embedded template head):

    1. The template scalp's radial function about the centre of its upper-scalp sphere is
       smoothed (20 umbrella passes over its icosphere) into a smooth head-shaped surface.
    2. 102 site directions are spread evenly (golden-angle spiral, equal area) over a
       spherical cap of half-angle 112 degrees whose axis is tilted 15 degrees backwards:
       the helmet reaches down to the forehead above the nasion, to the ears at the sides and
       below the inion at the back.
    3. Each site sits 25 mm (:data:`GENERIC_GAP_M`) outside the smoothed surface along its
       normal; its coil normal is that surface normal. On the real (unsmoothed) template
       scalp this leaves 23-28 mm between every site and the scalp.
    4. At every site: two planar gradiometers, ``G1`` with its gradient along the local
       "longitude" (horizontal, ``z_device x normal``) and ``G2`` along the "latitude"
       (up-down), and one magnetometer ``M``. Channel names are ``MEG{site:03d}G1``,
       ``MEG{site:03d}G2``, ``MEG{site:03d}M`` (sites 001..102), in that order -- not
       Vectorview's names, so a real Vectorview recording can never be matched to these
       positions by accident.

    The array is in the DEVICE frame and carries :func:`generic_helmet_transform` (DEVICE ->
    TEMPLATE) as ``dev_head_t``; ``array.to_head()`` places it around the template head.

    Parameters
    ----------
    accuracy : {"point", "normal", "accurate"}
        Coil integration accuracy.

    Returns
    -------
    MegArray
        306 channels: 204 ``planar_grad`` (T/m) and 102 ``mag`` (T).
    """
    sites_t, normal, center, _ = _generic_sites()
    sites = sites_t - center  # device frame: translation only
    up = np.array([0.0, 0.0, 1.0])
    names, types, pos, rot = [], [], [], []
    for i in range(len(sites)):
        n = normal[i]
        e_lon = np.cross(up, n)
        if np.linalg.norm(e_lon) < 0.1:  # at the vertex "horizontal" is undefined: use x
            e_lon = np.array([1.0, 0.0, 0.0]) - n[0] * n
        e_lon /= np.linalg.norm(e_lon)
        e_lat = np.cross(n, e_lon)
        frames = {
            "G1": np.column_stack([e_lon, np.cross(n, e_lon), n]),
            "G2": np.column_stack([e_lat, np.cross(n, e_lat), n]),
            "M": np.column_stack([e_lon, np.cross(n, e_lon), n]),
        }
        for suffix, kind in (("G1", "planar_grad"), ("G2", "planar_grad"), ("M", "mag")):
            names.append(f"MEG{i + 1:03d}{suffix}")
            types.append(kind)
            pos.append(sites[i])
            rot.append(frames[suffix])
    return MegArray(
        tuple(names),
        tuple(types),
        np.asarray(pos),
        np.asarray(rot),
        Frame.DEVICE,
        accuracy,
        generic_helmet_transform(),
        "generic-306",
    )


# --------------------------------------------------------------------------------------
# Helpers for the pipeline (config, simulator, covariance)
# --------------------------------------------------------------------------------------


def load_meg_array(spec: str | Path, *, accuracy: str | None = None) -> MegArray:
    """The array a configuration names: ``"generic"`` or the path of a JSON array file.

    Parameters
    ----------
    spec : str or Path
        ``"generic"`` (:func:`generic_meg_array`) or an ``rtsource-meg-array`` file.
    accuracy : {"point", "normal", "accurate"}, optional
        Override the coil integration accuracy (default: the file's, or "normal").
    """
    if str(spec) == "generic":
        return generic_meg_array(accuracy or "normal")
    array = read_meg_array(spec)
    return array if accuracy is None or accuracy == array.accuracy else array.with_accuracy(accuracy)


def channel_metadata(array: MegArray, *, unit: str = "mm") -> tuple[dict[str, str], ...]:
    """Per channel the values a stream header (LSL ``desc/channels/channel``) carries.

    Keys: ``label``, ``type`` (``MAG``/``GRAD``/``EEG``), ``unit`` (``T``, ``T/m``, ``V``),
    ``X``, ``Y``, ``Z`` (coil centre in ``unit``), ``normal`` and ``x_axis`` (three
    space-separated numbers), and ``frame``. Strings, ready for ``append_child_value``.
    """
    scale = 1.0 / length_factor(unit)
    out = []
    for i, name in enumerate(array.ch_names):
        p = array.positions_m[i] * scale
        out.append(
            {
                "label": name,
                "type": LSL_TYPE[array.ch_types[i]],
                "unit": COIL_TYPES[array.ch_types[i]],
                "X": f"{p[0]:.3f}",
                "Y": f"{p[1]:.3f}",
                "Z": f"{p[2]:.3f}",
                "normal": " ".join(f"{x:.6f}" for x in array.rotations[i, :, 2]),
                "x_axis": " ".join(f"{x:.6f}" for x in array.rotations[i, :, 0]),
                "frame": array.frame.value,
            }
        )
    return tuple(out)


def ad_hoc_noise_std(groups: Sequence[str]) -> np.ndarray:
    """Noise standard deviation per channel (SI) for a diagonal covariance, by whitening group.

    Parameters
    ----------
    groups : sequence of {"eeg", "mag", "grad"}
        E.g. ``MegArray.whitening_groups``.

    Returns
    -------
    ndarray, shape (n_channels,)
        From :data:`AD_HOC_NOISE_STD` (V, T, T/m).
    """
    bad = sorted({g for g in groups if g not in AD_HOC_NOISE_STD})
    if bad:
        raise ChannelError(f"whitening groups {bad} are not known; use {', '.join(AD_HOC_NOISE_STD)}")
    return np.array([AD_HOC_NOISE_STD[g] for g in groups], dtype=float)
