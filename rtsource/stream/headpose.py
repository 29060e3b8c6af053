"""Head pose from cHPI coil fields: coil dipole fits, the rigid fit, quaternions.

Three steps turn the field patterns of the coils into a head pose:

1. :func:`fit_coil`: each coil's pattern (one value per MEG channel, SI) is fitted by a
   magnetic dipole in free space (:func:`rtsource.stream._chpi_kernels.magnetic_dipole_gain`)
   whose position is found by Levenberg-Marquardt on the variable-projection residual
   (the moment is solved linearly for every trial position; Golub & Pereyra 1973), starting
   from where the coil was last. Goodness of fit ``1 - |residual|^2 / |data|^2`` on the
   whitened channels, as MNE-Python's ``compute_chpi_locs``.
2. :func:`fit_rigid`: the device -> head rotation and translation that map the fitted coil
   positions onto the digitised ones in the least-squares sense (Horn 1987, J Opt Soc Am A
   4:629, by the SVD of the cross-covariance as in Kabsch 1976 / Arun et al. 1987).
3. :func:`rot_to_quat`: the rotation as (q1, q2, q3) of a unit quaternion with q0 >= 0,
   MNE-Python's head-position (``.pos``) convention.

Nothing here knows about sensor files: the coils are given as integration points
(:class:`ChpiGeometry`), which the pipeline builds from a
:class:`rtsource.sensors.meg.MegArray` in the DEVICE frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..arrays import frozen as _ro
from ..errors import StreamError

__all__ = ["ChpiGeometry", "CoilFit", "HeadPose", "fit_coil", "fit_rigid", "rot_to_quat", "quat_to_rot", "pose_displacement_m"]


@dataclass(frozen=True, eq=False)
class ChpiGeometry:
    """The MEG channels the tracker fits, as coil integration points in the DEVICE frame.

    Attributes
    ----------
    ch_names : tuple of str, length n_channels
    ch_types : tuple of str
        ``"mag"`` or ``"grad"`` (the stream's channel kinds).
    ch_units : tuple of str
        SI unit per channel (``"T"``, ``"T/m"``).
    points_m : ndarray, shape (k, 3)
        Integration points, DEVICE frame, metres.
    normals : ndarray, shape (k, 3)
        Unit normals of the points.
    weights : ndarray, shape (k,)
    point_channel : ndarray of int64, shape (k,)
    noise_std : ndarray, shape (n_channels,)
        Per channel the noise level (SI) that whitens the fit, so that magnetometers (T) and
        gradiometers (T/m) weigh alike.
    """

    ch_names: tuple[str, ...]
    ch_types: tuple[str, ...]
    ch_units: tuple[str, ...]
    points_m: np.ndarray
    normals: np.ndarray
    weights: np.ndarray
    point_channel: np.ndarray
    noise_std: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.ch_names)
        if not n or len(self.ch_types) != n or len(self.ch_units) != n:
            raise StreamError(f"ChpiGeometry: {n} names, {len(self.ch_types)} types, {len(self.ch_units)} units; give one of each per channel")
        pts = np.ascontiguousarray(self.points_m, dtype=np.float64)
        k = len(pts)
        if pts.shape != (k, 3) or k < n:
            raise StreamError(f"ChpiGeometry: points_m has shape {pts.shape}; expected (k >= {n}, 3)")
        pc = np.ascontiguousarray(self.point_channel, dtype=np.int64)
        if pc.shape != (k,) or pc.min() < 0 or pc.max() >= n:
            raise StreamError(f"ChpiGeometry: point_channel must be {k} channel indices in [0, {n})")
        std = np.ascontiguousarray(self.noise_std, dtype=np.float64)
        if std.shape != (n,) or not np.all(std > 0):
            raise StreamError(f"ChpiGeometry: noise_std must be {n} positive numbers (SI), got shape {std.shape}")
        object.__setattr__(self, "points_m", _ro(pts))
        object.__setattr__(self, "normals", _ro(np.ascontiguousarray(self.normals, dtype=np.float64)))
        object.__setattr__(self, "weights", _ro(np.ascontiguousarray(self.weights, dtype=np.float64)))
        object.__setattr__(self, "point_channel", _ro(pc))
        object.__setattr__(self, "noise_std", _ro(std))

    @property
    def n_channels(self) -> int:
        return len(self.ch_names)

    def dipole_gain(self, pos_m: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """(n_channels, 3) gain of a magnetic dipole at ``pos_m`` (DEVICE, m), T per A*m^2."""
        from ._chpi_kernels import magnetic_dipole_gain

        if out is None:
            out = np.empty((self.n_channels, 3))
        magnetic_dipole_gain(self.points_m, self.normals, self.weights, self.point_channel, np.ascontiguousarray(pos_m, dtype=np.float64), out)
        return out


@dataclass(frozen=True)
class CoilFit:
    """One coil's dipole fit: position (DEVICE, m), moment (A*m^2), goodness of fit."""

    position_m: np.ndarray
    moment: np.ndarray
    gof: float


@dataclass(frozen=True)
class HeadPose:
    """A head pose as MNE-Python's head-position files give it.

    Attributes
    ----------
    time : float
        LSL time of the window's last sample, s.
    quat : ndarray, shape (3,)
        q1, q2, q3 of the DEVICE -> HEAD rotation (q0 >= 0 implied).
    translation_m : ndarray, shape (3,)
        DEVICE -> HEAD translation, m.
    gof : float
        Mean goodness of fit of the coils used.
    error_m : float
        Mean distance between the digitised coils and the fitted ones mapped to HEAD, m.
    velocity_m_s : float
        Speed of the translation since the previous pose, m/s (0 for the first).
    n_coils : int
        Coils used for the rigid fit.
    coil_gof : ndarray, shape (n_coils_total,)
    """

    time: float
    quat: np.ndarray
    translation_m: np.ndarray
    gof: float
    error_m: float
    velocity_m_s: float
    n_coils: int
    coil_gof: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def rotation(self) -> np.ndarray:
        return quat_to_rot(self.quat)

    @property
    def matrix(self) -> np.ndarray:
        """4x4 DEVICE -> HEAD transform."""
        t = np.eye(4)
        t[:3, :3] = self.rotation
        t[:3, 3] = self.translation_m
        return t

    def row(self) -> list[float]:
        """t, q1, q2, q3, x, y, z, gof, err, v: a row of an MNE-Python head-position file."""
        return [self.time, *map(float, self.quat), *map(float, self.translation_m), self.gof, self.error_m, self.velocity_m_s]


def rot_to_quat(rot: np.ndarray) -> np.ndarray:
    """(q1, q2, q3) of a proper rotation's unit quaternion, sign chosen so that q0 >= 0."""
    r = np.asarray(rot, dtype=float)
    # Shepperd's method: pick the largest of the four squared components for stability
    tr = np.trace(r)
    d = np.array([tr, r[0, 0], r[1, 1], r[2, 2]])
    k = int(np.argmax(d))
    if k == 0:
        q0 = 0.5 * np.sqrt(1.0 + tr)
        q = np.array([q0, (r[2, 1] - r[1, 2]) / (4 * q0), (r[0, 2] - r[2, 0]) / (4 * q0), (r[1, 0] - r[0, 1]) / (4 * q0)])
    elif k == 1:
        q1 = 0.5 * np.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2])
        q = np.array([(r[2, 1] - r[1, 2]) / (4 * q1), q1, (r[0, 1] + r[1, 0]) / (4 * q1), (r[0, 2] + r[2, 0]) / (4 * q1)])
    elif k == 2:
        q2 = 0.5 * np.sqrt(1.0 - r[0, 0] + r[1, 1] - r[2, 2])
        q = np.array([(r[0, 2] - r[2, 0]) / (4 * q2), (r[0, 1] + r[1, 0]) / (4 * q2), q2, (r[1, 2] + r[2, 1]) / (4 * q2)])
    else:
        q3 = 0.5 * np.sqrt(1.0 - r[0, 0] - r[1, 1] + r[2, 2])
        q = np.array([(r[1, 0] - r[0, 1]) / (4 * q3), (r[0, 2] + r[2, 0]) / (4 * q3), (r[1, 2] + r[2, 1]) / (4 * q3), q3])
    q /= np.linalg.norm(q)
    if q[0] < 0:
        q = -q
    return q[1:]


def quat_to_rot(quat: np.ndarray) -> np.ndarray:
    """The rotation of (q1, q2, q3) with q0 = sqrt(1 - |q|^2)."""
    b, c, d = (float(x) for x in quat)
    a = np.sqrt(max(0.0, 1.0 - b * b - c * c - d * d))
    return np.array(
        [
            [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
            [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
            [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - b * b - c * c],
        ]
    )


def fit_rigid(src_m: np.ndarray, dst_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation R and translation t minimising sum |R src + t - dst|^2 (Horn 1987; Arun et al. 1987).

    Parameters
    ----------
    src_m, dst_m : ndarray, shape (n >= 3, 3)
        Matched points (fitted coils in DEVICE, digitised coils in HEAD), metres.

    Returns
    -------
    rot : ndarray, shape (3, 3)
        A proper rotation (det +1; a reflection is excluded).
    trans : ndarray, shape (3,)
    """
    src = np.asarray(src_m, float)
    dst = np.asarray(dst_m, float)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 3 or len(src) < 3:
        raise StreamError(f"fit_rigid needs two matched (n >= 3, 3) point sets, got {src.shape} and {dst.shape}")
    cs, cd = src.mean(axis=0), dst.mean(axis=0)
    h = (src - cs).T @ (dst - cd)
    u, _, vt = np.linalg.svd(h)
    sign = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
    rot = vt.T @ np.diag([1.0, 1.0, sign]) @ u.T
    return rot, cd - rot @ cs


def pose_displacement_m(a: np.ndarray, b: np.ndarray, points_head_m: np.ndarray) -> float:
    """Largest movement (m) in the DEVICE frame of head points between two DEVICE -> HEAD poses.

    Parameters
    ----------
    a, b : ndarray, shape (4, 4)
    points_head_m : ndarray, shape (n, 3)
        Points fixed to the head (the digitised cHPI coils), HEAD frame.
    """
    p = np.c_[np.asarray(points_head_m, float), np.ones(len(points_head_m))]
    da = np.linalg.solve(a, p.T)[:3]
    db = np.linalg.solve(b, p.T)[:3]
    return float(np.max(np.linalg.norm(da - db, axis=0)))


def fit_coil(geometry: ChpiGeometry, pattern: np.ndarray, start_m: np.ndarray, *, max_nfev: int = 200) -> CoilFit:
    """Fit one coil's field pattern by a magnetic dipole in free space.

    Parameters
    ----------
    geometry : ChpiGeometry
    pattern : ndarray, shape (n_channels,)
        The coil's amplitude per channel, SI (T, T/m).
    start_m : ndarray, shape (3,)
        Where to start (the coil's last position, DEVICE, m).

    Returns
    -------
    CoilFit
    """
    from scipy.optimize import least_squares

    inv_std = 1.0 / geometry.noise_std
    y = np.asarray(pattern, float) * inv_std
    norm2 = float(y @ y)
    if not norm2 > 0:
        return CoilFit(np.asarray(start_m, float), np.zeros(3), 0.0)
    gain = np.empty((geometry.n_channels, 3))

    def moment(x):
        g = geometry.dipole_gain(x, gain) * inv_std[:, None]
        # 3 unknowns: the normal equations are well conditioned for a coil outside the helmet
        return g, np.linalg.solve(g.T @ g, g.T @ y)

    def residual(x):
        g, m = moment(x)
        return y - g @ m

    # tolerances: 1e-5 relative to a position ~0.1 m from the origin is 1 um
    sol = least_squares(residual, np.asarray(start_m, float), method="lm", x_scale=0.01, xtol=1e-5, ftol=1e-8, max_nfev=max_nfev)
    g, m = moment(sol.x)
    res = y - g @ m
    return CoilFit(sol.x.copy(), m, float(1.0 - (res @ res) / norm2))
