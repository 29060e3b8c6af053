"""Ocular and cardiac components for signal-space projection, found on calibration data.

As MNE-Python's ``compute_proj_eog`` / ``compute_proj_ecg`` (Uusitalo & Ilmoniemi 1997,
Med Biol Eng Comput 35:135, signal-space projection): events are detected on a reference
signal, the data around them are stacked, and their leading spatial principal components
are the patterns to project out. The reference signal is

- for blinks: an EOG channel when the stream has one, else the mean of the frontal
  channels (``Fp*`` / ``AF*``, or the ones named): a "frontal blink template";
- for heartbeats: an ECG channel (no ECG channel: no cardiac component);
- for muscle (optional, ``n_muscle``): the data's own high-frequency power (45 Hz up to
  0.45 fs, summed over channels, 0.1 s smoothing): bursts are where it exceeds five times
  its median, and the components are those of the 20 Hz+ data in the bursts. Muscle
  activity of a few muscles (the temporalis, the frontalis) has stable scalp patterns;
  widespread muscle activity is for ASR.

Each component is then checked as MNE's ICA ``find_bads_eog`` checks components: its time
course over the whole calibration must correlate with the reference signal (|r| >= 0.1 in
the event band), so a component that is not ocular (or cardiac) is never projected.

Detection (as MNE's ``find_eog_events``): the reference signal band-passed 1-10 Hz
(ECG: 5-35 Hz), sign chosen so the largest excursion is positive, peaks above a quarter
of the peak-to-peak range, at least 0.3 s apart; epochs -0.2..0.2 s (ECG -0.1..0.1 s)
of the data band-passed 1-35 Hz.

The projector ``P = I - U U^T`` (U orthonormal) is folded into the operator at build time
(the inverse is built from ``P M G`` and ``P M C M^T P``, as SSP; see
:func:`rtsource.inverse.make.make_operator`'s ``projector``), so it costs nothing per chunk.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

SCHEMA = 1
MIN_EVENTS = 5
MIN_CORRELATION = 0.1


@dataclass(frozen=True)
class ArtifactProjection:
    """Spatial patterns to project out: data, not code.

    Attributes
    ----------
    ch_names : tuple of str
        Channels of the vectors' rows.
    vectors : ndarray, shape (n_ch, k)
        Orthonormal columns (in the referenced data space the operator sees).
    kinds : tuple of str
        "ocular", "cardiac" or "muscle" per column.
    explained : ndarray, shape (k,)
        Fraction of the event epochs' variance each column carries.
    provenance : str
        JSON text: reference signals, events found, correlations.
    """

    ch_names: tuple[str, ...]
    vectors: np.ndarray
    kinds: tuple[str, ...]
    explained: np.ndarray
    provenance: str = "{}"

    def __post_init__(self):
        v = np.array(self.vectors, dtype=float).reshape(len(self.ch_names), -1)
        e = np.array(self.explained, dtype=float).reshape(-1)
        for a in (v, e):
            a.flags.writeable = False
        object.__setattr__(self, "vectors", v)
        object.__setattr__(self, "explained", e)
        object.__setattr__(self, "ch_names", tuple(self.ch_names))
        object.__setattr__(self, "kinds", tuple(self.kinds))
        if len(self.kinds) != v.shape[1] or len(e) != v.shape[1]:
            raise ValueError(f"ArtifactProjection: {v.shape[1]} vectors, {len(self.kinds)} kinds, {len(e)} explained; give one of each per vector")
        if not np.all(np.isfinite(v)):
            raise ValueError("ArtifactProjection.vectors contain NaN or inf; refit on finite data")
        if v.shape[1] and np.abs(v.T @ v - np.eye(v.shape[1])).max() > 1e-6:
            raise ValueError("ArtifactProjection.vectors are not orthonormal; refit (fit_projection)")

    @property
    def n_vectors(self) -> int:
        return self.vectors.shape[1]

    def projector(self, ch_names) -> np.ndarray:
        """``I - U U^T`` on ``ch_names`` (rows matched by name; other channels pass).

        As MNE's ``make_projector``: the vectors restricted to the named channels are
        re-orthonormalised (a channel dropped as bad leaves them slightly shorter), and
        directions that lost almost all their norm are dropped.
        """
        names = tuple(ch_names)
        pos = {c: i for i, c in enumerate(self.ch_names)}
        u = np.zeros((len(names), self.n_vectors))
        for i, c in enumerate(names):
            if c in pos:
                u[i] = self.vectors[pos[c]]
        p = np.eye(len(names))
        if not self.n_vectors:
            return p
        q, s, _ = np.linalg.svd(u, full_matrices=False)
        q = q[:, s > 0.1]  # a vector that kept < 10 % of its norm on these channels is not there
        return p - q @ q.T

    def to_arrays(self) -> tuple[dict[str, np.ndarray], str]:
        meta = {"schema": SCHEMA, "ch_names": list(self.ch_names), "kinds": list(self.kinds), "provenance": self.provenance}
        return {"vectors": np.array(self.vectors), "explained": np.array(self.explained)}, json.dumps(meta)

    @classmethod
    def from_arrays(cls, arrays: dict, json_text: str) -> "ArtifactProjection":
        meta = json.loads(json_text)
        if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
            raise ValueError(f"artifact projection schema {meta.get('schema') if isinstance(meta, dict) else meta!r} is not {SCHEMA}; recalibrate")
        missing = [k for k in ("vectors", "explained") if k not in arrays]
        if missing:
            raise ValueError(f"artifact projection arrays lack {missing}; recalibrate")
        return cls(tuple(str(c) for c in meta["ch_names"]), arrays["vectors"], tuple(str(k) for k in meta["kinds"]), arrays["explained"], str(meta["provenance"]))


def _bandpass(x: np.ndarray, sfreq: float, lo: float, hi: float) -> np.ndarray:
    from scipy.signal import butter, sosfiltfilt

    hi = min(hi, 0.45 * sfreq)
    return sosfiltfilt(butter(4, [lo, hi], "bandpass", fs=sfreq, output="sos"), x, axis=0)


def find_events(signal: np.ndarray, sfreq: float, band: tuple[float, float], min_distance_s: float = 0.3) -> np.ndarray:
    """Peak samples of blinks (or heartbeats) in a reference signal, as MNE's ``find_eog_events``.

    The signal is band-passed, turned so its largest excursion is positive, and peaks above
    a quarter of its peak-to-peak range (robust: 0.1 and 99.9 percentiles) and at least
    ``min_distance_s`` apart are returned.
    """
    from scipy.signal import find_peaks

    s = _bandpass(np.asarray(signal, dtype=float), sfreq, *band)
    lo, hi = np.percentile(s, [0.1, 99.9])
    if abs(lo) > abs(hi):
        s, lo, hi = -s, -hi, -lo
    peaks, _ = find_peaks(s, height=np.median(s) + (hi - lo) / 4.0, distance=max(1, int(min_distance_s * sfreq)))
    return peaks


def _components(data_f: np.ndarray, events: np.ndarray, half: int, n: int, exclude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Leading spatial components of the stacked epochs (orthogonal to ``exclude``)."""
    keep = events[(events >= half) & (events + half < len(data_f))]
    x = np.concatenate([data_f[e - half : e + half] for e in keep])
    if exclude.shape[1]:
        x = x - (x @ exclude) @ exclude.T
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    var = s**2 / max(np.sum(s**2), 1e-300)
    return vt[:n].T, var[:n]


def default_frontal(ch_names) -> tuple[str, ...]:
    """Channels in front of the head by their 10-20 names (Fp*, AF*)."""
    return tuple(c for c in ch_names if c.lower().startswith(("fp", "af")))


def _muscle(x: np.ndarray, sfreq: float, n: int, exclude: np.ndarray, report: dict) -> tuple[np.ndarray, np.ndarray]:
    """Leading components of the high-frequency bursts (see the module docstring)."""
    from scipy.ndimage import uniform_filter1d

    hi = min(100.0, 0.45 * sfreq)
    env = uniform_filter1d(np.sum(_bandpass(x, sfreq, 45.0, hi) ** 2, axis=1), max(1, int(0.1 * sfreq)))
    burst = env > 5.0 * np.median(env)
    entry = {"reference": "high-frequency power (45 Hz up)", "burst_seconds": round(float(burst.sum() / sfreq), 2)}
    report["muscle"] = entry
    if burst.sum() < sfreq:  # less than a second of bursts: nothing to learn from
        entry.update(kept=0, why="less than 1 s of muscle bursts in the calibration")
        return np.zeros((x.shape[1], 0)), np.zeros(0)
    xb = _bandpass(x, sfreq, 20.0, hi)[burst]
    if exclude.shape[1]:
        xb = xb - (xb @ exclude) @ exclude.T
    _, s, vt = np.linalg.svd(xb, full_matrices=False)
    var = s**2 / max(np.sum(s**2), 1e-300)
    comps = vt[:n].T
    r = [float(abs(np.corrcoef(uniform_filter1d(_bandpass(x @ comps[:, j], sfreq, 45.0, hi) ** 2, max(1, int(0.1 * sfreq))), env)[0, 1])) for j in range(comps.shape[1])]
    keep = [j for j in range(comps.shape[1]) if r[j] >= MIN_CORRELATION]
    entry.update(correlation=[round(v, 3) for v in r], explained=[round(float(v), 4) for v in var[:n]], kept=len(keep))
    return comps[:, keep], var[keep]


def fit_projection(
    data, sfreq: float, ch_names, *, eog=None, ecg=None, frontal=(), n_ocular: int = 2, n_cardiac: int = 1, n_muscle: int = 0, source: str = "",
) -> ArtifactProjection:  # fmt: skip
    """Ocular (and cardiac) patterns of calibration data.

    Parameters
    ----------
    data : array_like, shape (n_times, n_ch)
        Calibration data on the operator's channels, re-referenced as the operator
        re-references (the patterns live in that space), any unit.
    sfreq : float
        Sampling rate, Hz.
    ch_names : sequence of str
    eog : array_like, shape (n_times, n_eog), optional
        EOG channels recorded alongside; the first with the largest blink peaks is used.
    ecg : array_like, shape (n_times, n_ecg), optional
        ECG channels; without them no cardiac component is fitted.
    frontal : sequence of str
        Without EOG: blinks are detected on the mean of these channels (default: Fp*/AF*).
    n_ocular, n_cardiac, n_muscle : int
        Components of each kind kept at most (muscle: 0, off, by default).
    source : str
        Provenance.

    Returns
    -------
    ArtifactProjection
        Possibly with no vector (no events found, or none correlated): the projector is
        then the identity, and the provenance says why.
    """
    x = np.asarray(data, dtype=float)
    names = tuple(ch_names)
    if x.ndim != 2 or x.shape[1] != len(names):
        raise ValueError(f"fit_projection data has shape {x.shape}; expected (n_times, {len(names)}) for the {len(names)} ch_names")
    if not np.all(np.isfinite(x)):
        raise ValueError("fit_projection data contain NaN or inf; drop those samples first")
    if len(x) < 10 * sfreq:
        raise ValueError(f"fit_projection needs at least 10 s of data with blinks, got {len(x) / sfreq:.1f} s; record a longer calibration")
    data_f = _bandpass(x, sfreq, 1.0, 35.0)
    vectors = np.zeros((len(names), 0))
    kinds: list[str] = []
    explained: list[float] = []
    report: dict = {"source": source}
    refs = []
    if n_ocular:
        if eog is not None and np.asarray(eog).size:
            e = np.asarray(eog, dtype=float).reshape(len(x), -1)
            best = int(np.argmax(np.ptp(_bandpass(e, sfreq, 1.0, 10.0), axis=0)))
            refs.append(("ocular", e[:, best], (1.0, 10.0), 0.2, n_ocular, f"EOG channel {best}"))
        else:
            front = tuple(frontal) or default_frontal(names)
            idx = [names.index(c) for c in front if c in names]
            if idx:
                refs.append(("ocular", x[:, idx].mean(axis=1), (1.0, 10.0), 0.2, n_ocular, f"mean of {', '.join(names[i] for i in idx)}"))
            else:
                report["ocular"] = "no EOG channel and no frontal channel (Fp*/AF*, or [artifacts] frontal_channels): no ocular component"
    if n_cardiac and ecg is not None and np.asarray(ecg).size:
        c = np.asarray(ecg, dtype=float).reshape(len(x), -1)
        refs.append(("cardiac", c[:, 0], (5.0, 35.0), 0.1, n_cardiac, "ECG channel 0"))
    for kind, ref, band, half_s, n, what in refs:
        events = find_events(ref, sfreq, band)
        entry = {"reference": what, "events": int(len(events))}
        if len(events) < MIN_EVENTS:
            entry["kept"] = 0
            entry["why"] = f"{len(events)} events (< {MIN_EVENTS}); record blinks (heartbeats) in the calibration"
            report[kind] = entry
            continue
        comps, var = _components(data_f, events, int(half_s * sfreq), n, vectors)
        ref_f = _bandpass(ref, sfreq, *band)
        r = [float(abs(np.corrcoef(_bandpass(x @ comps[:, j], sfreq, *band), ref_f)[0, 1])) for j in range(comps.shape[1])]
        keep = [j for j in range(comps.shape[1]) if r[j] >= MIN_CORRELATION]
        entry.update(correlation=[round(v, 3) for v in r], explained=[round(float(v), 4) for v in var], kept=len(keep))
        report[kind] = entry
        vectors = np.hstack([vectors, comps[:, keep]])
        kinds += [kind] * len(keep)
        explained += [float(var[j]) for j in keep]
    if n_muscle:
        comps, var = _muscle(x, sfreq, n_muscle, vectors, report)
        vectors = np.hstack([vectors, comps])
        kinds += ["muscle"] * comps.shape[1]
        explained += [float(v) for v in var]
    if vectors.shape[1]:
        q, _ = np.linalg.qr(vectors)
        vectors = q * np.sign(np.sum(q * vectors, axis=0))  # keep each vector's sign
    logger.info("artifact projection: %d vector(s) (%s)", vectors.shape[1], ", ".join(kinds) or "none")
    return ArtifactProjection(names, vectors, tuple(kinds), np.array(explained), json.dumps(report))


def subspace_projector(projection: ArtifactProjection, reference: str, ch_names, scale=None) -> np.ndarray:
    """``Q = (I - U U^T) M`` on ``ch_names``: the spatial filter before ASR when it runs in
    the projection's subspace (:meth:`~.calibration.ArtifactCalibration.asr_projector`).

    Parameters
    ----------
    projection : ArtifactProjection
    reference : str
        The operator's EEG reference ("average", a channel name, "none").
    ch_names : sequence of str
    scale : array_like, shape (n_ch,), optional
        Per-channel factor from the data's unit to SI (``Q`` becomes ``D^-1 Q D``).

    Returns
    -------
    ndarray, shape (n_ch, n_ch)
    """
    from ..inverse.reference import reference_matrix

    names = tuple(ch_names)
    eeg = set(projection.ch_names)  # the projection lives on the EEG channels (all, without EEG)
    kinds = tuple("eeg" if c in eeg else "mag" for c in names)
    q = projection.projector(names) @ reference_matrix(names, reference, kinds)
    if scale is not None:
        d = np.asarray(scale, dtype=float)
        q = q * d[None, :] / d[:, None]
    return q
