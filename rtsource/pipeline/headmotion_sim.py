"""A MEG recording of a moving head with cHPI coils, computed with the moving forward.

The ground truth of head tracking and of the forward that follows the head
(``tools/headmotion_acceptance.py``, ``rtsource bench headmotion``, the tests):

- sensors fixed in the DEVICE frame (a :class:`~rtsource.sensors.meg.MegArray`, by default
  Vectorview-306 at "accurate" coil integration, so the simulation does not share the
  inverse's coil model);
- a head that moves rigidly: the DEVICE -> HEAD transform at time t is
  ``D(t) = D0 M(t)^-1`` with ``M(t)`` a rotation about the head's centre and a translation
  that both grow linearly to their final values (:meth:`HeadMotionSimulation.dev_head_t`);
- cHPI coils on the scalp (fixed in HEAD), magnetic dipoles along the scalp normal driven
  at their frequencies (free-space field, as the tracker assumes);
- cortical dipoles (fixed in HEAD) with sinusoidal moments along their normals, the field of
  a spherical conductor whose origin is fixed to the head (Sarvas 1987), recomputed for the
  pose of every block of ``block_s``;
- white sensor noise and, optionally, a spatially uniform interference field (what OPM
  arrays pick up and the homogeneous field correction removes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry import Frame
from ..sensors.meg import AD_HOC_NOISE_STD, MegArray

__all__ = ["HeadMotionSimulation", "MotionSpec", "StepMotion", "scalp_coils"]

DEFAULT_COIL_FREQS_HZ = (83.0, 143.0, 263.0, 331.0)


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues' rotation about a unit ``axis`` by ``angle`` (rad)."""
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def scalp_coils(directions=((0.45, 0.85, 0.45), (-0.45, 0.85, 0.45), (0.95, -0.1, 0.3), (-0.95, -0.1, 0.3))) -> tuple[np.ndarray, np.ndarray]:
    """cHPI coil positions on the template scalp (TEMPLATE frame, m) and their outward normals.

    One coil per direction from the upper-scalp centre: the scalp vertex furthest along it
    (default: left and right forehead, above the left and right ear, as labs place them).
    """
    from ..anatomy.template import load_template

    t = load_template()
    verts = t.surfaces.scalp.vertices_m
    c = t.scalp_center_m
    pos, nrm = [], []
    for d in directions:
        d = np.asarray(d, float) / np.linalg.norm(d)
        rel = verts - c
        cosang = rel @ d / np.linalg.norm(rel, axis=1)
        i = int(np.argmax(cosang))
        pos.append(verts[i])
        nrm.append(rel[i] / np.linalg.norm(rel[i]))
    return np.array(pos), np.array(nrm)


@dataclass(frozen=True)
class MotionSpec:
    """Head motion: translation (m, DEVICE axes) and rotation (axis, degrees) reached at ``duration_s``."""

    translation_m: tuple[float, float, float] = (0.006, -0.005, 0.0063)  # 10 mm
    rotation_axis: tuple[float, float, float] = (0.3, 0.2, 1.0)
    rotation_deg: float = 3.0
    duration_s: float = 30.0

    def at(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """(R, translation) of the motion at time t (linear ramp, held after ``duration_s``)."""
        f = min(max(t / self.duration_s, 0.0), 1.0) if self.duration_s > 0 else 1.0
        return _rotation(np.asarray(self.rotation_axis), np.deg2rad(self.rotation_deg) * f), np.asarray(self.translation_m) * f


@dataclass(frozen=True)
class StepMotion:
    """Head jumps: translation ``jump_m`` along ``axis``, at ``first_s`` and every ``interval_s``,
    alternating forth and back (the benchmark of the forward that follows)."""

    jump_m: float = 0.004
    axis: tuple[float, float, float] = (0.0, 0.6, 0.8)
    first_s: float = 3.0
    interval_s: float = 3.0

    def at(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        k = 0 if t < self.first_s else int((t - self.first_s) // self.interval_s) + 1
        a = np.asarray(self.axis, float) / np.linalg.norm(self.axis)
        return np.eye(3), a * self.jump_m * (k % 2)

    def jump_times(self, duration_s: float) -> list[float]:
        return [float(x) for x in np.arange(self.first_s, duration_s, self.interval_s)]


@dataclass
class HeadMotionSimulation:
    """Blocks of a moving-head MEG recording (see the module doc).

    Parameters
    ----------
    array : MegArray
        DEVICE-frame sensors carrying the start pose ``dev_head_t`` (DEVICE -> TEMPLATE).
    sfreq : float
    motion : MotionSpec, StepMotion or None
        None: the head stays still.
    coil_freqs_hz : tuple of float
    coil_moment : float
        Magnetic moment of each cHPI coil, A*m^2.
    sources_m, source_normals : ndarray, shape (n, 3)
        Cortical dipoles (TEMPLATE frame) and their orientations.
    source_freqs_hz : sequence of float
    source_amplitude : float
        Dipole moment amplitude, A*m.
    origin_m : ndarray, shape (3,)
        Sphere origin (TEMPLATE frame).
    noise_scale : float
        White sensor noise in units of the ad hoc noise levels (0: none).
    uniform_field_t : tuple of float
        Amplitude (T) of a uniform interference field along x, y, z (OPM simulations),
        oscillating at ``uniform_freq_hz`` plus a slow drift.
    block_s : float
        The forward is recomputed for the pose of each block this long.
    seed : int
    """

    array: MegArray
    sfreq: float
    motion: MotionSpec | StepMotion | None
    sources_m: np.ndarray
    source_normals: np.ndarray
    origin_m: np.ndarray
    coil_freqs_hz: tuple[float, ...] = DEFAULT_COIL_FREQS_HZ
    coil_moment: float = 2e-8
    source_freqs_hz: tuple[float, ...] = (11.0,)
    source_amplitude: float = 40e-9
    noise_scale: float = 1.0
    uniform_field_t: tuple[float, float, float] = (0.0, 0.0, 0.0)
    uniform_freq_hz: float = 2.3
    block_s: float = 0.02
    seed: int = 0
    with_chpi: bool = True
    coil_head_m: np.ndarray | None = None  # default: scalp_coils()
    coil_normals: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.array.frame != Frame.DEVICE or self.array.dev_head_t is None:
            raise ValueError("HeadMotionSimulation needs a DEVICE-frame array carrying its start pose (dev_head_t)")
        if self.coil_head_m is None:
            pos, nrm = scalp_coils()
            self.coil_head_m, self.coil_normals = pos[: len(self.coil_freqs_hz)], nrm[: len(self.coil_freqs_hz)]
        self.d0 = np.asarray(self.array.dev_head_t.matrix, float)
        self.head_centre_m = np.asarray(self.origin_m, float)
        self._rng = np.random.default_rng(self.seed)
        self._sample = 0
        self._noise_std = np.array([AD_HOC_NOISE_STD[g] for g in self.array.whitening_groups])

    @property
    def n_channels(self) -> int:
        return self.array.n_channels

    def dev_head_t(self, t: float) -> np.ndarray:
        """4x4 DEVICE -> TEMPLATE transform at time t (s)."""
        if self.motion is None:
            return self.d0.copy()
        rot, trans = self.motion.at(t)
        # M moves the head in DEVICE: rotate about the head centre (in DEVICE), then translate
        inv_d0 = np.linalg.inv(self.d0)
        c_dev = inv_d0[:3, :3] @ self.head_centre_m + inv_d0[:3, 3]
        m = np.eye(4)
        m[:3, :3] = rot
        m[:3, 3] = c_dev - rot @ c_dev + trans
        return self.d0 @ np.linalg.inv(m)

    def _gains(self, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(coil gains (n_ch, n_coils) per unit drive, source gains (n_ch, n_src) along normals) at pose ``d``."""
        from ..forward.meg_sphere import meg_sphere_field
        from ..stream._chpi_kernels import magnetic_dipole_gain

        a = self.array
        rot, tr = d[:3, :3], d[:3, 3]
        pts_h = a.points_m @ rot.T + tr
        nrm_h = a.point_normals @ rot.T
        # cHPI coils: free-space magnetic dipoles along the scalp normal, in HEAD
        coil = np.zeros((a.n_channels, len(self.coil_freqs_hz)))
        if self.with_chpi:
            g = np.empty((a.n_channels, 3))
            for k in range(len(self.coil_freqs_hz)):
                magnetic_dipole_gain(np.ascontiguousarray(pts_h), np.ascontiguousarray(nrm_h), np.ascontiguousarray(a.weights), np.ascontiguousarray(a.point_channel), np.ascontiguousarray(self.coil_head_m[k]), g)
                coil[:, k] = g @ self.coil_normals[k] * self.coil_moment
        src = np.zeros((a.n_channels, len(self.sources_m)))
        if len(self.sources_m):
            f = meg_sphere_field(pts_h, nrm_h, self.sources_m, self.origin_m)  # (k, 3 n)
            lf = self.array.channel_signals(f)
            src = np.einsum("cnj,nj->cn", lf.reshape(a.n_channels, -1, 3), self.source_normals)
        return coil, src

    def next(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The next ``n`` samples (n, n_channels) in SI (T, T/m), and their times (s)."""
        out = np.empty((n, self.n_channels))
        times = (self._sample + np.arange(n)) / self.sfreq
        blk = max(1, int(round(self.block_s * self.sfreq)))
        unif = np.asarray(self.uniform_field_t, float)
        a = self.array
        j = 0
        while j < n:
            s = self._sample + j
            m = min(n - j, blk - (s % blk))
            t_mid = (s + (m - 1) / 2.0) / self.sfreq
            coil, src = self._gains(self.dev_head_t(t_mid))
            tt = times[j : j + m]
            block = np.zeros((m, self.n_channels))
            if self.with_chpi:
                drive = np.column_stack([np.cos(2 * np.pi * f * tt) for f in self.coil_freqs_hz])
                block += drive @ coil.T
            if len(self.sources_m):  # source i oscillates at source_freqs_hz[i] (the last one repeats)
                freqs = [self.source_freqs_hz[min(i, len(self.source_freqs_hz) - 1)] for i in range(len(self.sources_m))]
                wave = np.column_stack([np.sin(2 * np.pi * f * tt) for f in freqs])
                block += (wave * self.source_amplitude) @ src.T
            if np.any(unif):
                # a uniform field B(t) in DEVICE: each channel sees n . B (gradiometers nothing)
                b = np.outer(np.sin(2 * np.pi * self.uniform_freq_hz * tt) + 0.3 + 0.1 * tt, unif)
                field_pts = b @ a.point_normals.T  # (m, k)
                block += self.array.channel_signals(field_pts.T).T
            out[j : j + m] = block
            j += m
        if self.noise_scale:
            out += self._rng.normal(size=out.shape) * self._noise_std * self.noise_scale
        self._sample += n
        return out, times

    def true_coils_device(self, t: float) -> np.ndarray:
        """(n_coils, 3) coil positions in DEVICE at time t."""
        inv = np.linalg.inv(self.dev_head_t(t))
        return self.coil_head_m @ inv[:3, :3].T + inv[:3, 3]


def rotation_angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Angle (degrees) of the rotation between two 3x3 rotations."""
    r = np.asarray(a)[:3, :3].T @ np.asarray(b)[:3, :3]
    return float(np.rad2deg(np.arccos(np.clip((np.trace(r) - 1) / 2, -1.0, 1.0))))


__all__ += ["rotation_angle_deg", "DEFAULT_COIL_FREQS_HZ"]
