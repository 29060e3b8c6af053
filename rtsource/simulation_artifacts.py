"""Artifacts for the simulator: eyes, heart, muscles and electrodes (EEG channels only).

Each kind is switched on by name in ``[simulate] artifacts`` and scaled by its ``*_uv`` key;
the artifact signal is added to the brain signal, which stays the ground truth. Every kind
draws from its own random streams (seeded from ``[simulate] seed``), so switching one on
changes neither the brain signal nor the other artifacts, and the output does not depend
on the chunk size.

- ``blinks``: the two eyes' corneo-retinal dipoles (cornea positive, ~ at (+-32, 58, -40) mm
  in the template frame) rotate upward during a lid closure (Bell's phenomenon; Matsuo et
  al. 1975, Electroencephalogr Clin Neurophysiol 38:507): a Hann-shaped pulse of 200-400 ms
  every 3-6 s, peak ``blink_uv`` at the strongest (frontal) electrode.
- ``saccades``: horizontal gaze steps every 1-4 s (40 ms transitions) rotating both
  dipoles left/right: opposite-polarity steps at F7/F8 (``saccade_uv`` at full gaze).
- ``ecg``: a QRS-T waveform at 60-80 beats/min with 5 % jitter; the heart is far from the
  head, so its field over the scalp is nearly uniform: potential = field . position
  (``ecg_uv`` at the strongest channel).
- ``emg``: bursts (0.5-2 s, every 4-12 s, left, right or both) of 20-150 Hz noise from
  three sources per temporalis muscle under the scalp near FT7/FT8, falling off with 25 mm
  (the scalp spread of surface EMG); ``emg_uv`` rms at the nearest electrode.
- ``pops``: a step on one electrode decaying with 0.3 s (~2 per minute over the cap).
- ``drifts``: per-electrode 1/f^2 wander below 0.1 Hz, ``drift_uv`` rms.

The eye potential uses the dipole in a homogeneous medium of scalp conductivity (the eyes lie
outside the brain compartment where the sphere series applies); the amplitude is set by
the ``*_uv`` keys, the formula shapes the topography (Fp1/Fp2 strongest, falling to ~10 %
at Cz).
"""

from __future__ import annotations

import numpy as np

from .config import SIM_ARTIFACTS as KINDS
from .errors import ConfigError
# template-frame positions (m) of the eye centres and the temporalis muscles
_EYES_M = np.array([[-0.032, 0.058, -0.040], [0.032, 0.058, -0.040]])
_TEMPORALIS_M = {
    "left": np.array([[-0.074, 0.020, 0.010], [-0.078, 0.000, 0.025], [-0.070, 0.030, 0.030]]),
    "right": np.array([[0.074, 0.020, 0.010], [0.078, 0.000, 0.025], [0.070, 0.030, 0.030]]),
}


def _dipole_potential(pos_m: np.ndarray, at_m: np.ndarray, moment: np.ndarray) -> np.ndarray:
    """Potential shape of a current dipole in a homogeneous medium, p.(r - r0)/|r - r0|^3."""
    d = pos_m - at_m
    return d @ moment / np.linalg.norm(d, axis=1) ** 3


def _normalize(pattern: np.ndarray, peak_v: float) -> np.ndarray:
    m = np.abs(pattern).max()
    return pattern * (peak_v / m) if m > 0 else pattern


class ArtifactGenerator:
    """Artifact signals for the EEG channels, sample block by sample block.

    Parameters
    ----------
    settings : rtsource.config.SimulateSettings
        ``artifacts`` (kinds on) and the ``*_uv`` scales; ``seed``, ``sfreq``.
    positions_m : ndarray, shape (n_eeg, 3)
        Electrode positions, template frame, m.
    reference_m : ndarray, shape (3,)
        The reference electrode's position (its potential is subtracted).
    ch_names : sequence of str
        The EEG channels' names (for the episode list).
    """

    def __init__(self, settings, positions_m: np.ndarray, reference_m: np.ndarray, ch_names):
        from scipy.signal import butter

        unknown = sorted(set(settings.artifacts) - set(KINDS))
        if unknown:
            raise ConfigError(f"[simulate] artifacts (or --artifacts) has {unknown}; choose among {', '.join(KINDS)}")
        self.kinds = tuple(k for k in KINDS if k in settings.artifacts)
        self.sfreq = float(settings.sfreq)
        self.ch_names = tuple(ch_names)
        n = len(positions_m)
        self.n_channels = n
        pos = np.vstack([positions_m, reference_m[None]])

        def referenced(p):
            return p[:-1] - p[-1]

        uv = 1e-6
        # eyes: vertical (blink) and horizontal (saccade) rotations of both dipoles
        up = sum(_dipole_potential(pos, e, np.array([0.0, 0.0, 1.0])) for e in _EYES_M)
        side = sum(_dipole_potential(pos, e, np.array([1.0, 0.0, 0.0])) for e in _EYES_M)
        self._blink_pattern = _normalize(referenced(up), settings.blink_uv * uv)
        self._saccade_pattern = _normalize(referenced(side), settings.saccade_uv * uv)
        field = np.array([-0.5, -0.3, -1.0]) / np.linalg.norm([-0.5, -0.3, -1.0])  # heart: left, below, behind
        self._ecg_pattern = _normalize(referenced(pos @ field), settings.ecg_uv * uv)
        emg = []
        for side_name in ("left", "right"):
            srcs = _TEMPORALIS_M[side_name]
            g = np.exp(-np.linalg.norm(pos[:, None, :] - srcs[None], axis=2) / 0.025)  # (n+1, 3)
            g = g[:-1] - g[-1]
            emg.append(g * (settings.emg_uv * uv / np.sqrt(np.sum(g**2, axis=1)).max()))
        self._emg_gain = np.hstack(emg)  # (n, 6): left sources then right
        self._pop_v = settings.pop_uv * uv
        self._drift_v = settings.drift_uv * uv
        nyq = self.sfreq / 2
        self._emg_ba = butter(4, [20.0 / nyq, min(150.0, 0.45 * self.sfreq) / nyq], "bandpass")
        self._emg_zi = np.zeros((8, 6))
        # drift: white noise through two one-pole lowpasses at 0.05 Hz (1/f^2 above it)
        self._drift_pole = float(np.exp(-2 * np.pi * 0.05 / self.sfreq))
        self._drift_state = np.zeros((2, n))
        p = self._drift_pole  # rms of unit white noise through (1 - p)^2 / (1 - p z^-1)^2
        self._drift_gain = (1 - p) ** 2 * np.sqrt((1 + p**2) / (1 - p**2) ** 3)
        seeds = np.random.SeedSequence([int(settings.seed), 16]).spawn(2 * len(KINDS))
        self._ev_rng = {k: np.random.default_rng(seeds[2 * i]) for i, k in enumerate(KINDS)}
        self._noise_rng = {k: np.random.default_rng(seeds[2 * i + 1]) for i, k in enumerate(KINDS)}
        # scheduled events per kind: (start_sample, duration_samples, param), generated ahead
        self.events: dict[str, list[tuple[int, int, float]]] = {k: [] for k in KINDS}
        self._next_at = {k: 0.0 for k in KINDS}
        self._first = {k: 0 for k in KINDS}  # events before this index ended before the last block
        self._gaze = 0.0  # gaze at the end of the scheduled saccades
        self._gaze_base = 0.0  # gaze after the saccades that ended before the current block

    # ---- schedules ----
    def _schedule(self, kind: str, until: int) -> None:
        """Draw events of ``kind`` up to sample ``until`` (in order, from the kind's own stream)."""
        rng, fs = self._ev_rng[kind], self.sfreq
        while self._next_at[kind] * fs < until:
            t = self._next_at[kind]
            if kind == "blinks":
                t += rng.uniform(3.0, 6.0)
                self.events[kind].append((int(t * fs), int(rng.uniform(0.2, 0.4) * fs), rng.uniform(0.8, 1.2)))
            elif kind == "saccades":
                t += rng.uniform(1.0, 4.0)
                target = float(np.clip(rng.uniform(-1, 1) if abs(self._gaze) < 0.5 else 0.0, -1, 1))
                self.events[kind].append((int(t * fs), int(0.04 * fs), target - self._gaze))
                self._gaze = target
            elif kind == "ecg":
                t += 60.0 / rng.uniform(60.0, 80.0) * rng.uniform(0.95, 1.05)
                self.events[kind].append((int(t * fs), int(0.45 * fs), 1.0))
            elif kind == "emg":
                t += rng.uniform(4.0, 12.0)
                dur = rng.uniform(0.5, 2.0)
                self.events[kind].append((int(t * fs), int(dur * fs), float(rng.integers(0, 3))))  # 0 left, 1 right, 2 both
                t += dur
            elif kind == "pops":
                t += rng.exponential(30.0)
                self.events[kind].append((int(t * fs), int(1.5 * fs), float(rng.integers(0, self.n_channels))))
            else:
                self._next_at[kind] = np.inf
                return
            self._next_at[kind] = t

    def _overlapping(self, kind: str, start: int, n: int):
        self._schedule(kind, start + n + int(2 * self.sfreq))
        ev, i = self.events[kind], self._first[kind]
        while i < len(ev) and ev[i][0] + ev[i][1] <= start:  # events end in order (no overlaps)
            i += 1
        self._first[kind] = i
        out = []
        for e in ev[i:]:
            if e[0] >= start + n:
                break
            out.append(e)
        return out

    # ---- signal ----
    def next(self, start: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Artifacts for samples ``start .. start + n``.

        Returns
        -------
        artifact_v : ndarray, shape (n, n_eeg)
            Volts, referenced like the EEG.
        active : ndarray of bool, shape (n, len(KINDS))
            Which kinds are in an episode at each sample (drifts: always, when on).
        """
        from scipy.signal import lfilter

        fs = self.sfreq
        out = np.zeros((n, self.n_channels))
        active = np.zeros((n, len(KINDS)), dtype=bool)
        idx = start + np.arange(n)
        if "blinks" in self.kinds:
            for s, d, amp in self._overlapping("blinks", start, n):
                m = (idx >= s) & (idx < s + d)
                out[m] += np.outer(amp * 0.5 * (1 - np.cos(2 * np.pi * (idx[m] - s) / d)), self._blink_pattern)
                active[m, 0] = True
        if "saccades" in self.kinds:
            ev = self.events["saccades"]
            while self._first["saccades"] < len(ev) and sum(ev[self._first["saccades"]][:2]) <= start:
                self._gaze_base += ev[self._first["saccades"]][2]
                self._first["saccades"] += 1
            gaze = np.full(n, self._gaze_base)
            self._schedule("saccades", start + n)
            for s, d, step in ev[self._first["saccades"] :]:
                if s >= start + n:
                    break
                gaze += step * np.clip((idx - s + 1) / max(d, 1), 0.0, 1.0)
            for s, d, _ in ev[max(0, self._first["saccades"] - 8) :]:
                if s >= start + n:
                    break
                active[(idx >= s) & (idx < s + d + int(0.3 * fs)), 1] = True
            out += np.outer(gaze, self._saccade_pattern)
        if "ecg" in self.kinds:
            for s, d, _ in self._overlapping("ecg", start, n):
                t = (idx - s) / fs
                wave = (-0.1 * np.exp(-(((t - 0.04) / 0.008) ** 2)) + np.exp(-(((t - 0.05) / 0.01) ** 2))
                        - 0.2 * np.exp(-(((t - 0.065) / 0.01) ** 2)) + 0.25 * np.exp(-(((t - 0.3) / 0.05) ** 2)))  # fmt: skip
                m = (idx >= s) & (idx < s + d)
                out[m] += np.outer(wave[m], self._ecg_pattern)
                active[m & (t < 0.12), 2] = True
        if "emg" in self.kinds:
            noise = self._noise_rng["emg"].standard_normal((n, 6))
            band, self._emg_zi = lfilter(*self._emg_ba, noise, axis=0, zi=self._emg_zi)
            band *= 1.0 / np.sqrt(2 * 130.0 / fs)  # ~unit rms after the 20-150 Hz band
            env = np.zeros((n, 6))
            for s, d, side in self._overlapping("emg", start, n):
                ramp = int(0.02 * fs)
                k = idx - s
                e = np.clip(np.minimum(k + 1, d - k) / ramp, 0.0, 1.0) * ((k >= 0) & (k < d))
                cols = slice(0, 3) if side == 0 else slice(3, 6) if side == 1 else slice(0, 6)
                env[:, cols] = np.maximum(env[:, cols], e[:, None])
                active[e > 0, 3] = True
            out += (band * env) @ self._emg_gain.T
        if "pops" in self.kinds:
            for s, d, ch in self._overlapping("pops", start, n):
                m = (idx >= s) & (idx < s + d)
                out[m, int(ch)] += self._pop_v * np.exp(-(idx[m] - s) / (0.3 * fs))
                active[m, 4] = True
        if "drifts" in self.kinds:
            w = self._noise_rng["drifts"].standard_normal((n, self.n_channels)) * (self._drift_v / self._drift_gain)
            p = self._drift_pole
            x1, _ = lfilter([1 - p], [1, -p], w, axis=0, zi=self._drift_state[0:1] * p)
            x2, _ = lfilter([1 - p], [1, -p], x1, axis=0, zi=self._drift_state[1:2] * p)
            self._drift_state[0], self._drift_state[1] = x1[-1], x2[-1]
            out += x2
            active[:, 5] = True
        return out, active
