"""The muscle ASR (ASR deciding in a high band where EMG dominates, reconstructing the full
band): calibration, repair of bursts, no damage on clean data, the stage and the bundle."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.signal import butter, sosfilt

from rtsource.artifacts import ArtifactCalibration, calibrate_asr
from rtsource.artifacts.calibration import from_bundle, to_bundle

FS = 250.0
N_CH = 16
NAMES = tuple(f"E{i}" for i in range(N_CH))


@pytest.fixture(scope="module")
def data():
    """90 s: correlated EEG-like noise (uV, mostly below 30 Hz) and, every ~6 s, a 1 s burst of
    20-100 Hz noise from two sources with lateral patterns; the first 60 s calibrate."""
    rng = np.random.default_rng(5)
    n = int(90 * FS)
    mix = rng.normal(size=(N_CH, N_CH)) * 0.4 + np.eye(N_CH)
    low = sosfilt(butter(2, 30.0, "lp", fs=FS, output="sos"), rng.normal(size=(n, N_CH)), axis=0) * 10.0
    clean = (low + rng.normal(size=(n, N_CH))) @ mix.T  # plus a white floor (sensor noise)
    pattern = np.zeros((2, N_CH))
    pattern[0, :4], pattern[1, -4:] = [3.0, 2.0, 1.0, 0.5], [0.5, 1.0, 2.0, 3.0]
    emg = sosfilt(butter(4, [20.0, 100.0], "bandpass", fs=FS, output="sos"), rng.normal(size=(n, 2)), axis=0) * 5.0
    on = np.zeros(n, bool)
    for at in range(int(2 * FS), n - int(FS), int(6.1 * FS)):
        on[at : at + int(FS)] = True
    art = (emg * on[:, None]) @ pattern
    hp = butter(2, 0.5, "hp", fs=FS, output="sos")
    return sosfilt(hp, clean + art, axis=0), sosfilt(hp, clean, axis=0), on


def _run(cal, x, scale=1e-6):
    stage = cal.stage(NAMES, np.full(N_CH, scale), 10)
    return stage.run_offline(x)[stage.delay_samples :], stage


def test_muscle_asr_removes_bursts_and_leaves_clean_data_alone(data):
    raw, clean, on = data
    n_cal = int(60 * FS)
    muscle = calibrate_asr(raw[:n_cal] * 1e-6, FS, NAMES, cutoff=5.0, band_hz=60.0, source="test")
    broadband = calibrate_asr(raw[:n_cal] * 1e-6, FS, NAMES, cutoff=20.0, source="test")
    assert json.loads(muscle.provenance)["band_hz"] == 60.0
    # the reconstruction goes through the full band's covariance (the clean data's), not the high band's
    full = np.trace(clean[:n_cal].T @ clean[:n_cal]) / n_cal * 1e-12
    assert muscle.filter_a.shape == (5,) and 0.7 < np.trace(muscle.covariance) / full < 1.3
    cal = ArtifactCalibration(("muscle",), muscle=muscle, lookahead_s=0.25)
    assert cal.delay_samples == int(0.25 * FS) and cal.describe()["muscle"]["band_hz"] == 60.0
    test, truth, ep = raw[n_cal:], clean[n_cal:], on[n_cal:]
    y, stage = _run(cal, test)
    ref, b = truth[: len(y)], ep[: len(y)]
    removed = 1 - np.sum((y[b] - ref[b]) ** 2) / np.sum((test[: len(y)][b] - ref[b]) ** 2)
    assert removed > 0.8, removed
    assert stage.fractions()[0] > 0.05 and any(e.kind == "muscle" for e in stage.episodes)
    yc, _ = _run(cal, truth)
    first = int(FS)
    assert np.var(yc[first:] - truth[first : len(yc)]) < 0.01 * np.var(truth)  # < 1 % of the clean variance
    # ASR at its default cutoff on the (weighted) full band removes much less of the bursts
    yb, _ = _run(ArtifactCalibration(("asr",), broadband, lookahead_s=0.25), test)
    removed_bb = 1 - np.sum((yb[b] - ref[b]) ** 2) / np.sum((test[: len(y)][b] - ref[b]) ** 2)
    assert removed_bb < removed - 0.2, (removed_bb, removed)


def test_muscle_calibration_round_trips_and_adds_its_delay(data):
    raw = data[0][: int(60 * FS)] * 1e-6
    muscle = calibrate_asr(raw, FS, NAMES, cutoff=5.0, band_hz=60.0)
    asr = calibrate_asr(raw, FS, NAMES, cutoff=20.0)
    cal = ArtifactCalibration(("muscle", "asr"), asr, muscle=muscle, lookahead_s=0.2)
    assert cal.methods == ("asr", "muscle") and cal.delay_samples == 2 * int(0.2 * FS)
    arrays, header = to_bundle(cal)
    assert {"artifact_muscle_mixing", "artifact_muscle_thresholds"} <= set(arrays)
    back = from_bundle(json.loads(json.dumps(header)), arrays)
    assert np.array_equal(back.muscle.thresholds, muscle.thresholds) and back.muscle.cutoff == 5.0
    stage = back.stage(NAMES, np.full(N_CH, 1e-6), 10)
    assert stage.delay_samples == cal.delay_samples and stage.asr is stage.broadband
    with pytest.raises(Exception, match="band_hz"):
        calibrate_asr(raw, FS, NAMES, band_hz=200.0)
