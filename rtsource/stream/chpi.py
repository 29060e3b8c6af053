"""Continuous head tracking from cHPI coils, and the coils' lines removed from the data.

Per chunk, before the operator sees it (:meth:`ChpiTracker.process`)::

    chunk (stream units) ─> ring of the last ``window_s`` (SI, MEG channels) ─> every hop_s:
        least-squares fit of  sum_f (a_f + a'_f u) cos(w_f t) + (b_f + b'_f u) sin(w_f t) + c + d u
        per channel (u: time from the window's centre over its length)
    chunk - fitted sinusoids (in place) ─> operator           (the lines, never the drift)
    every step_s: per coil the pattern of its frequency ─> dipole fit ─> rigid fit ─> HeadPose

The fit uses only the window that ends with the newest sample (causal). Its design matrix
is that of a fixed window relative to the window's first sample, so its pseudo-inverse is
computed once; the coefficients are then rotated to the absolute phase of the sample
counter so they extrapolate to the samples of the chunks that follow until the next refit
(a stationary sinusoid extrapolates exactly; the amplitude slopes a', b' follow a moving
head, so the lines are removed with their amplitude at the newest sample, while the pose
uses the amplitudes at the window's centre). The constant and linear terms absorb slow
drifts as in MNE-Python's ``compute_chpi_amplitudes`` (Larson & Taulu 2017, IEEE TBME
64:2, "The importance of properly compensating for head movements..."); they are fitted, not
subtracted. The removal is MNE-Python's ``filter_chpi`` made causal: until the first window
is full, the data pass unchanged.

Each coil's pattern is the first singular vector (times its singular value) of its cosine
and sine amplitude rows (MNE-Python does the same): a coil's field oscillates in phase on
every channel. :mod:`.headpose` fits it with a magnetic dipole and the coils with a rigid
transform.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from ..errors import StreamError
from .channels import StreamDescription, map_stream_channels
from .headpose import ChpiGeometry, HeadPose, fit_coil, fit_rigid, rot_to_quat

logger = logging.getLogger(__name__)

__all__ = ["ChpiSettings", "ChpiTracker", "ChpiWindow"]

_TWO_PI = 2.0 * math.pi


@dataclass(frozen=True, eq=False)
class ChpiSettings:
    """How the cHPI coils are driven and tracked.

    Attributes
    ----------
    coil_freqs_hz : tuple of float
        One frequency per coil, Hz (typically 83-331 Hz), distinct, below Nyquist.
    coil_head_m : ndarray, shape (n_coils, 3)
        The digitised coil positions in the HEAD frame, metres, in ``coil_freqs_hz`` order.
    dev_head_t : ndarray, shape (4, 4)
        The DEVICE -> HEAD transform at the start (of the recording, or the operator's):
        the first coil fits start from it.
    window_s : float
        Length of the least-squares window, s (0.2: MNE-Python's default).
    step_s : float
        A head pose every this long, s.
    hop_s : float
        The lines' fit is refreshed every this long for their removal, s.
    gof_limit : float
        Coils fitted worse are not used for the pose (MNE-Python: 0.98).
    dist_limit_m : float
        Coils further than this from their digitised position after the rigid fit are
        dropped and the pose refitted (MNE-Python: 5 mm).
    remove_lines : bool
        Subtract the fitted sinusoids from the MEG channels before the operator.
    """

    coil_freqs_hz: tuple[float, ...]
    coil_head_m: np.ndarray
    dev_head_t: np.ndarray
    window_s: float = 0.2
    step_s: float = 0.1
    hop_s: float = 0.01
    gof_limit: float = 0.98
    dist_limit_m: float = 0.005
    remove_lines: bool = True

    def __post_init__(self) -> None:
        freqs = tuple(float(f) for f in self.coil_freqs_hz)
        if len(freqs) < 3 or len(set(freqs)) != len(freqs) or not all(f > 0 for f in freqs):
            raise StreamError(f"coil_freqs_hz = {freqs!r}: give at least 3 distinct positive frequencies (one per coil), e.g. [83, 143, 203, 263]")
        coils = np.array(self.coil_head_m, dtype=float)
        if coils.shape != (len(freqs), 3) or not np.all(np.isfinite(coils)):
            raise StreamError(f"coil_head_m has shape {coils.shape}; give one digitised position (HEAD, m) per coil frequency: ({len(freqs)}, 3)")
        t = np.array(self.dev_head_t, dtype=float)
        if t.shape != (4, 4) or not np.allclose(t[:3, :3] @ t[:3, :3].T, np.eye(3), atol=1e-5):
            raise StreamError(f"dev_head_t must be a rigid 4x4 DEVICE -> HEAD transform, got shape {t.shape}")
        for name in ("window_s", "step_s", "hop_s"):
            if not getattr(self, name) > 0:
                raise StreamError(f"ChpiSettings.{name} = {getattr(self, name)!r}; it must be > 0 s")
        object.__setattr__(self, "coil_freqs_hz", freqs)
        coils.flags.writeable = False
        t.flags.writeable = False
        object.__setattr__(self, "coil_head_m", coils)
        object.__setattr__(self, "dev_head_t", t)

    @property
    def n_coils(self) -> int:
        return len(self.coil_freqs_hz)


@dataclass(frozen=True)
class ChpiWindow:
    """What a pose is fitted from: the coils' field patterns of one window.

    Attributes
    ----------
    time : float
        Timestamp of the window's last sample, s.
    patterns : ndarray, shape (n_coils, n_channels)
        Each coil's amplitude per channel, SI.
    """

    time: float
    patterns: np.ndarray


def _design(n: int, omega: np.ndarray) -> np.ndarray:
    """(n, 4 F + 2): per frequency cos and sin (window-relative phase), then per frequency the
    same times ``u`` (amplitudes that change linearly over the window: a moving head), then
    constant and ``u``, with ``u = (j - (n - 1) / 2) / n`` zero at the window's centre."""
    j = np.arange(n, dtype=float)
    u = (j - (n - 1) / 2.0) / n
    lines = []
    for w in omega:
        lines += [np.cos(w * j), np.sin(w * j)]
    lines = np.column_stack(lines)
    return np.column_stack([lines, lines * u[:, None], np.ones(n), u])


class ChpiTracker:
    """Fits the cHPI lines of a stream's MEG channels chunk by chunk (see the module doc).

    Parameters
    ----------
    geometry : ChpiGeometry
        The MEG channels to fit (DEVICE frame).
    settings : ChpiSettings
    sfreq : float
        The stream's rate, Hz.

    Attributes
    ----------
    poses : int
        Poses fitted so far; ``rejected``: windows whose coils were too few or too poor.
    last_pose : HeadPose or None
    coil_positions_m : ndarray, shape (n_coils, 3)
        The coils' last fitted positions (DEVICE, m).
    """

    def __init__(self, geometry: ChpiGeometry, settings: ChpiSettings, sfreq: float):
        nyq = sfreq / 2.0
        high = [f for f in settings.coil_freqs_hz if f >= nyq]
        if high:
            raise StreamError(f"cHPI frequencies {high} Hz are not below the stream's Nyquist frequency {nyq:g} Hz; sample faster or drive the coils lower")
        self.geometry = geometry
        self.settings = settings
        self.sfreq = float(sfreq)
        self.window = int(round(settings.window_s * sfreq))
        if self.window < 4 * settings.n_coils + 2:
            raise StreamError(f"window_s = {settings.window_s:g} s is only {self.window} samples; need at least {4 * settings.n_coils + 2}")
        self.hop = max(1, int(round(settings.hop_s * sfreq)))
        self.step = max(1, int(round(settings.step_s * sfreq)))
        self.omega = np.asarray(settings.coil_freqs_hz) * _TWO_PI / sfreq
        design = _design(self.window, self.omega)
        self._pinv = np.linalg.pinv(design)  # (p, window)
        n_q = geometry.n_channels
        self._ring = np.zeros((self.window, n_q))
        self._win = np.zeros((self.window, n_q))
        self._coef = np.zeros((len(self._pinv), n_q))
        self._cos = np.zeros((settings.n_coils, n_q))  # absolute phase, SI
        self._sin = np.zeros((settings.n_coils, n_q))
        self._u_end = (self.window - 1) / 2.0 / self.window  # u of the window's last sample
        self._cos_stream = np.zeros_like(self._cos)
        self._sin_stream = np.zeros_like(self._sin)
        self._write = 0
        self.samples = 0  # samples seen since the last restart (the phase counter)
        self._have_fit = False
        self._last_fit = -(10**12)
        self._last_pose_at = -(10**12)
        inv = np.linalg.inv(settings.dev_head_t)
        self.coil_positions_m = (inv[:3, :3] @ settings.coil_head_m.T).T + inv[:3, 3]
        self.columns = np.zeros(0, np.int64)
        self.scale = np.ones(0)
        self.poses = 0
        self.rejected = 0
        self.restarts = 0
        self.last_pose: HeadPose | None = None

    # ---- setup ----
    def bind(self, stream: StreamDescription, *, aliases=None, assume_unit: str = "") -> None:
        """Find the geometry's channels in ``stream`` (by name, with units to SI)."""
        g = self.geometry
        cmap = map_stream_channels(stream, g.ch_names, g.ch_units, aliases=aliases, assume_unit=assume_unit, ch_types=g.ch_types)
        self.columns = np.ascontiguousarray(cmap.index, dtype=np.int64)
        self.scale = np.ascontiguousarray(cmap.scale, dtype=np.float64)
        if stream.sfreq and abs(stream.sfreq - self.sfreq) > 1e-6 * self.sfreq:
            raise StreamError(f"stream {stream.name!r} runs at {stream.sfreq:g} Hz but the cHPI tracker was set up for {self.sfreq:g} Hz")

    def restart(self) -> None:
        """Forget the window (after a gap): the lines pass until it is full again."""
        self._write = 0
        self.samples = 0
        self._have_fit = False
        self._last_fit = -(10**12)
        self._last_pose_at = -(10**12)
        self.restarts += 1

    # ---- per chunk ----
    def process(self, buf: np.ndarray, n: int, ts: np.ndarray) -> ChpiWindow | None:
        """Take a chunk: update the fit, remove the lines from ``buf[:n]`` in place.

        Parameters
        ----------
        buf : ndarray, shape (rows, n_stream_channels)
            The stream's pull buffer, stream units; the MEG columns of rows ``[:n]`` lose
            their cHPI lines.
        n : int
        ts : ndarray, shape (n,)
            The samples' timestamps (s). The phase runs on the sample count: after a gap in
            the input call :meth:`restart`.

        Returns
        -------
        ChpiWindow or None
            The coil patterns when a pose is due (fit it with :meth:`fit_pose`, in this or
            one other thread).
        """
        from ._chpi_kernels import store_ring, subtract_lines

        if n <= 0:
            return None
        if not len(self.columns):
            raise StreamError("ChpiTracker.process before bind(stream): the tracker does not know the stream's columns")
        chunk_start = self.samples
        self._write = store_ring(buf, n, self.columns, self.scale, self._ring, self._write)
        self.samples += n
        if self.samples >= self.window and self.samples - self._last_fit >= self.hop:
            self._refit()
        due = None
        if self._have_fit:
            if self.settings.remove_lines:
                phase0 = np.mod(self.omega * chunk_start, _TWO_PI)
                subtract_lines(buf, n, self.columns, self._cos_stream, self._sin_stream, self.omega, phase0)
            if self.samples - self._last_pose_at >= self.step and self._last_fit == self.samples:
                self._last_pose_at = self.samples
                due = ChpiWindow(float(ts[n - 1]), self.coil_patterns())
        return due

    def _refit(self) -> None:
        w, start = self.window, self._write  # the ring's oldest row is at the write index
        self._win[: w - start] = self._ring[start:]
        self._win[w - start :] = self._ring[:start]
        np.dot(self._pinv, self._win, out=self._coef)
        s0 = self.samples - w  # absolute sample index of the window's first row
        phi = np.mod(self.omega * s0, _TWO_PI)
        nf = len(self.omega)
        a, b = self._coef[0 : 2 * nf : 2], self._coef[1 : 2 * nf : 2]  # amplitudes at the window's centre
        da, db = self._coef[2 * nf : 4 * nf : 2], self._coef[2 * nf + 1 : 4 * nf : 2]  # their change over the window
        c, s = np.cos(phi)[:, None], np.sin(phi)[:, None]
        # a cos(w (t - s0)) + b sin(w (t - s0)) in terms of cos(w t), sin(w t)
        np.subtract(a * c, b * s, out=self._cos)  # the pose uses the centre (the window's mean)
        np.add(a * s, b * c, out=self._sin)
        # the removal extrapolates from the newest sample's amplitudes
        ae, be = a + da * self._u_end, b + db * self._u_end
        np.divide(ae * c - be * s, self.scale, out=self._cos_stream)
        np.divide(ae * s + be * c, self.scale, out=self._sin_stream)
        self._have_fit = True
        self._last_fit = self.samples

    def coil_patterns(self) -> np.ndarray:
        """(n_coils, n_channels): each coil's field amplitude per channel from the last fit, SI."""
        g = self.geometry
        out = np.empty((self.settings.n_coils, g.n_channels))
        inv_std = 1.0 / g.noise_std
        for k in range(self.settings.n_coils):
            pair = np.vstack([self._cos[k], self._sin[k]]) * inv_std  # whitened: one SVD for both types
            u, s, vt = np.linalg.svd(pair, full_matrices=False)
            out[k] = s[0] * vt[0] * g.noise_std
        return out

    def fit_pose(self, window: ChpiWindow) -> HeadPose | None:
        """The head pose of a window: coil dipole fits, then the rigid fit (None: too few good coils).

        Call it from one thread at a time (the loop's, or one worker): it updates the coils'
        last positions, :attr:`last_pose`, :attr:`poses` and :attr:`rejected`.
        """
        st = self.settings
        time_s, patterns = window.time, window.patterns
        fits = [fit_coil(self.geometry, patterns[k], self.coil_positions_m[k]) for k in range(st.n_coils)]
        gof = np.array([f.gof for f in fits])
        pos = np.array([f.position_m for f in fits])
        use = gof >= st.gof_limit
        pose = None
        for _ in range(2):  # drop coils far from where the rigid fit puts them, once
            if use.sum() < 3:
                break
            rot, trans = fit_rigid(pos[use], st.coil_head_m[use])
            dist = np.linalg.norm((rot @ pos.T).T + trans - st.coil_head_m, axis=1)
            far = use & (dist > st.dist_limit_m)
            if far.any() and (use & ~far).sum() >= 3:
                use = use & ~far
                continue
            pose = (rot, trans, float(dist[use].mean()))
            break
        if pose is None:
            self.rejected += 1
            return None
        rot, trans, err = pose
        self.coil_positions_m = np.where(use[:, None], pos, self.coil_positions_m)
        v = 0.0
        if self.last_pose is not None and time_s > self.last_pose.time:
            v = float(np.linalg.norm(trans - self.last_pose.translation_m) / (time_s - self.last_pose.time))
        hp = HeadPose(time_s, rot_to_quat(rot), trans, float(gof[use].mean()), err, v, int(use.sum()), gof)
        self.last_pose = hp
        self.poses += 1
        return hp
