"""Live recalibration: refit a bundle's artifact calibration on seconds recorded by the loop.

The loop (:mod:`rtsource.stream.artifacts`) records the raw stream columns of the operator's
channels and of the EOG channels (SI units) and asks the bundle's calibration for
:meth:`~.calibration.ArtifactCalibration.refit`. The data are prepared as setup prepares its
rest data (:mod:`rtsource.pipeline.artifacts`): through the stream's causal filter started
at its steady state, the regression fitted on them, the projection fitted in the operator's
re-referenced EEG space, ASR (and the muscle ASR) calibrated on the regressed data, in the
projection's subspace when they run after it (``asr_space = "projected"``; a refitted
projection refits them too, since they live in its subspace). Each method keeps its
setup parameters (ASR cutoff and window, the number of components of each kind).

What a live recording cannot refit is carried over, never dropped silently:

- channels out of the recording (marked bad meanwhile) keep their regression factors;
- cardiac components need an ECG channel, which the stream's calibration does not name:
  they are carried over from the bundle's projection (orthogonalised against the new ones);
- a projection refit that finds no blinks, where the old one had ocular components, is
  refused (ValueError naming the events found and the fix) instead of projecting nothing.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace

import numpy as np

from .asr import calibrate_asr
from .projection import ArtifactProjection, fit_projection, subspace_projector
from .regression import EogRegression, fit_eog_regression

#: Accepted length of a live recording, s (ASR wants its 1 s windows, the projection >= 10 s of blinks).
SECONDS_RANGE = (15.0, 600.0)


def _filtered(x: np.ndarray, sos) -> np.ndarray:
    """``x`` through the stream's causal filter, started at its steady state (as setup)."""
    if sos is None or not len(sos):
        return x
    from scipy.signal import sosfilt, sosfilt_zi

    zi = sosfilt_zi(sos)[:, :, None] * x[0][None, None, :]
    return sosfilt(sos, x, axis=0, zi=zi)[0]


def _n_components(proj: ArtifactProjection, kind: str, default: int) -> int:
    """Components of ``kind`` setup tried (its provenance), else those it kept, else ``default``."""
    try:
        entry = json.loads(proj.provenance).get(kind)
        tried = len(entry["correlation"]) if isinstance(entry, dict) and isinstance(entry.get("correlation"), list) else 0
    except (ValueError, AttributeError, TypeError):
        tried = 0
    return max(tried, sum(k == kind for k in proj.kinds)) or default


def _merge_regression(old: EogRegression, new: EogRegression) -> EogRegression:
    """``new``'s factors where it has the channel, ``old``'s for channels it did not record."""
    names = tuple(old.eeg_names) + tuple(c for c in new.eeg_names if c not in old.eeg_names)
    coef = np.zeros((len(new.eog_names), len(names)))
    pos_new = {c: j for j, c in enumerate(new.eeg_names)}
    pos_old = {c: j for j, c in enumerate(old.eeg_names)}
    for j, c in enumerate(names):
        coef[:, j] = new.coefficients[:, pos_new[c]] if c in pos_new else old.coefficients[:, pos_old[c]]
    return EogRegression(names, new.eog_names, coef, new.sfreq, new.provenance)


def _carry_cardiac(old: ArtifactProjection, new: ArtifactProjection) -> ArtifactProjection:
    """``new`` plus ``old``'s cardiac vectors on ``new``'s channels, orthogonalised against it."""
    cols = [j for j, k in enumerate(old.kinds) if k == "cardiac"]
    if not cols:
        return new
    pos = {c: i for i, c in enumerate(old.ch_names)}
    carried = np.array([old.vectors[pos[c], cols] if c in pos else np.zeros(len(cols)) for c in new.ch_names]).reshape(len(new.ch_names), len(cols))
    carried = carried - new.vectors @ (new.vectors.T @ carried)
    q, r = np.linalg.qr(carried)
    keep = np.abs(np.diag(r)) > 0.1  # a vector that kept < 10 % of its norm on these channels is gone
    vectors = np.hstack([new.vectors, q[:, keep]])
    explained = np.concatenate([new.explained, old.explained[cols][keep]])
    prov = json.loads(new.provenance)
    prov["cardiac"] = {"carried_over": int(keep.sum()), "why": "no ECG channel in the live recording: the bundle's cardiac components are kept"}
    return ArtifactProjection(new.ch_names, vectors, new.kinds + ("cardiac",) * int(keep.sum()), explained, json.dumps(prov))


def refit_calibration(cal, data, sfreq: float, ch_names, *, methods, ch_types=None, reference: str = "average", eog=None, sos=None, source: str = ""):
    """A copy of ``cal`` with ``methods`` refitted on ``data``, and what changed.

    Parameters
    ----------
    cal : ArtifactCalibration
        The calibration in use (its parameters are kept).
    data : ndarray, shape (n_times, n_ch)
        Raw stream samples of the operator's channels, SI units, finite.
    sfreq : float
        Hz.
    ch_names : sequence of str
        The columns of ``data`` (the operator's channels while recording).
    methods : sequence of str
        Which of ``cal.methods`` to refit.
    ch_types : sequence of str, optional
        Per column ("eeg", "mag", "grad"); default all EEG.
    reference : str
        The bundle's EEG reference (the projection lives in the re-referenced space).
    eog : ndarray, shape (n_times, n_eog), optional
        Raw EOG samples (SI) of ``cal.regression.eog_names``.
    sos : ndarray, shape (n_sections, 6), optional
        The stream's causal filter (``[preprocess]``).
    source : str
        Provenance.

    Returns
    -------
    (ArtifactCalibration, dict)
        The new calibration and, per refitted method, a short summary (for the events).
    """
    from ..inverse.reference import reference_matrix

    t0 = time.perf_counter()
    names = tuple(ch_names)
    methods = tuple(m for m in cal.methods if m in methods)
    x = np.asarray(data, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(names) or not np.isfinite(x).all():
        raise ValueError(f"refit_calibration data has shape {x.shape} (finite: {bool(np.isfinite(x).all())}); pass finite (n_times, {len(names)}) samples")
    x = _filtered(x, sos)
    e = None
    if eog is not None and np.asarray(eog).size:
        e = _filtered(np.asarray(eog, dtype=np.float64).reshape(len(x), -1), sos)
    changes: dict = {}
    out = {}
    reg = cal.regression
    if "regression" in methods:
        if e is None:
            raise ValueError(f"EOG regression refit needs the EOG channels {list(reg.eog_names)} in the stream")
        new = fit_eog_regression(x, e, sfreq, names, reg.eog_names, source=source)
        reg = out["regression"] = _merge_regression(cal.regression, new)
        changes["regression"] = {"variance_explained": json.loads(new.provenance)["variance_explained"], "channels": len(names)}
    if "projection" in methods:
        old = cal.projection
        kinds = tuple(ch_types) if ch_types is not None else ("eeg",) * len(names)
        m = reference_matrix(names, reference, kinds)
        cols = [i for i, k in enumerate(kinds) if "eeg" not in kinds or k == "eeg"]  # one sensor type, as setup
        xr = (x @ m.T)[:, cols]
        new = fit_projection(
            xr, sfreq, [names[i] for i in cols], eog=e, frontal=(), n_ocular=_n_components(old, "ocular", 2), n_cardiac=0,
            n_muscle=_n_components(old, "muscle", 0) if "muscle" in old.kinds else 0, source=source,
        )  # fmt: skip
        if "ocular" in old.kinds and "ocular" not in new.kinds:
            found = json.loads(new.provenance).get("ocular", {})
            raise ValueError(
                f"projection refit found no ocular component ({found.get('why') or found}); the projection in use is kept: "
                "record with the subject blinking, or recalibrate only asr/regression"
            )
        proj = out["projection"] = _carry_cardiac(old, new)
        changes["projection"] = {"kinds": list(proj.kinds), "n_vectors": proj.n_vectors}
    if "projection" in methods and cal.asr_space == "projected":
        methods += tuple(m for m in ("asr", "muscle") if m in cal.methods and m not in methods)  # they live in its subspace
    q = subspace_projector(out.get("projection", cal.projection), cal.reference, names) if cal.asr_space == "projected" else None
    xa = x
    if {"asr", "muscle"} & set(methods) and reg is not None and "regression" in cal.methods and e is not None:
        pos = {c: j for j, c in enumerate(reg.eeg_names)}
        coef = np.array([reg.coefficients[:, pos[c]] if c in pos else np.zeros(len(reg.eog_names)) for c in names]).T
        xa = x - e @ coef  # ASR sees the regressed data, as in the loop
    for part in ("asr", "muscle"):
        if part in methods:
            old = getattr(cal, part)
            band = json.loads(old.provenance).get("band_hz") if part == "muscle" else None
            new_part = out[part] = calibrate_asr(
                xa, sfreq, names, cutoff=old.cutoff, window_s=old.window_s, max_remove_fraction=old.max_remove_fraction, source=source, projector=q, band_hz=band,
            )  # fmt: skip
            changes[part] = {"windows_used": new_part.n_windows_used, "windows_total": new_part.n_windows_total, "channels": len(names)}
    for m in changes:
        changes[m]["seconds"] = round(len(x) / sfreq, 3)
    changes["fit_ms"] = round((time.perf_counter() - t0) * 1e3, 1)
    return replace(cal, **out), changes


__all__ = ["SECONDS_RANGE", "refit_calibration"]
