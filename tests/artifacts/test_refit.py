"""Live refit of a calibration (rtsource.artifacts.refit): what a live recording cannot refit is
kept, a recording without blinks never replaces the ocular projection with nothing."""

from __future__ import annotations

import numpy as np
import pytest

from rtsource.artifacts import ArtifactCalibration, ArtifactProjection, EogRegression
from rtsource.artifacts.refit import refit_calibration

FS = 200.0
NAMES = ("Fp1", "Fp2", "F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2")


def _data(seconds: float, blinks: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = int(seconds * FS)
    x = rng.normal(size=(n, len(NAMES))) * 5e-6
    eog = rng.normal(size=(n, 1)) * 2e-6
    if blinks:
        w = int(0.3 * FS)
        for at in range(int(0.5 * FS), n - w, int(0.8 * FS)):
            eog[at : at + w, 0] += 150e-6 * np.hanning(w)
    pattern = np.linspace(1.0, 0.05, len(NAMES))
    return x + eog * pattern, eog, pattern


def _calibration():
    u = np.linalg.qr(np.random.default_rng(3).normal(size=(len(NAMES), 2)))[0]
    proj = ArtifactProjection(NAMES, u, ("ocular", "cardiac"), np.array([0.9, 0.5]), '{"ocular": {"correlation": [0.9]}}')
    reg = EogRegression(NAMES, ("VEOG",), np.full((1, len(NAMES)), 0.5), FS)
    return ArtifactCalibration(("regression", "projection"), regression=reg, projection=proj)


def test_refit_keeps_what_it_cannot_refit():
    cal = _calibration()
    x, eog, pattern = _data(20, blinks=True)
    keep = NAMES[:-1]  # O2 was bad while recording
    new, changes = refit_calibration(cal, x[:, :-1], FS, keep, methods=("regression", "projection"), eog=eog, reference="average")
    reg = new.regression
    assert reg.eog_names == ("VEOG",) and set(reg.eeg_names) == set(NAMES)
    coef = dict(zip(reg.eeg_names, reg.coefficients[0]))
    assert coef["O2"] == 0.5  # not recorded: the old factor
    assert np.allclose([coef[c] for c in keep], pattern[:-1], atol=0.03)
    proj = new.projection
    assert proj.kinds == ("ocular", "cardiac") and proj.ch_names == keep  # the cardiac one carried over (no ECG live)
    assert np.allclose(proj.vectors.T @ proj.vectors, np.eye(2), atol=1e-9)
    assert "carried_over" in proj.provenance and changes["projection"]["kinds"] == ["ocular", "cardiac"]
    assert changes["regression"]["channels"] == len(keep) and changes["fit_ms"] > 0


def test_refit_without_blinks_keeps_the_projection_and_says_why():
    x, eog, _ = _data(20, blinks=False)
    eog[:] = 0.0  # the EOG electrode came off: no blink to be found
    with pytest.raises(ValueError, match="no ocular component.*kept.*blinking"):
        refit_calibration(_calibration(), x, FS, NAMES, methods=("projection",), eog=eog)
    with pytest.raises(ValueError, match=r"pass finite \(n_times, 10\)"):
        refit_calibration(_calibration(), np.full((100, len(NAMES)), np.nan), FS, NAMES, methods=("projection",))
