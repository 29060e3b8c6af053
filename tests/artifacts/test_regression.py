"""EOG regression: the kernel against its twin, and the fit on the simulator's eyes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from rtsource.artifacts import EogRegression, EogRegressor, fit_eog_regression
from rtsource.artifacts import _kernels as k


def test_regress_out_matches_twin():
    rng = np.random.default_rng(0)
    eeg, eog, coef = rng.normal(size=(12, 9)), rng.normal(size=(12, 2)), rng.normal(size=(2, 9))
    out = np.zeros((16, 9))
    k.regress_out(eeg, eog, 10, coef, out)
    np.testing.assert_allclose(out[:10], eeg[:10] - eog[:10] @ coef, atol=1e-12)
    np.testing.assert_array_equal(out[10:], 0.0)


def test_simulated_blinks_and_saccades_are_regressed_out():
    """EOG electrodes at the eyes see the same simulated eye dipoles as the EEG."""
    from rtsource.config import Settings
    from rtsource.sensors.montage import standard_montage
    from rtsource.simulation_artifacts import ArtifactGenerator
    from rtsource.simulator import SIM_REFERENCE, SignalGenerator, simulated_channels

    s = Settings()
    sim = dataclasses.replace(s.simulate, artifacts=("blinks", "saccades"), n_noise_sources=200, seed=5)
    names, array = simulated_channels(s)
    gen = SignalGenerator(sim, names, array)
    # VEOG below the left eye, HEOG at both outer canthi, referenced to Nz like the EEG
    eog_pos = np.array([[-0.032, 0.075, -0.065], [-0.055, 0.050, -0.040], [0.055, 0.050, -0.040]])
    ref = standard_montage("standard_1005").pick([SIM_REFERENCE]).electrodes.positions_m[0]
    eyes = ArtifactGenerator(sim, eog_pos, ref, ["VEOG", "HEOG-L", "HEOG-R"])
    rng = np.random.default_rng(1)
    blocks = [gen.next_block(500) for _ in range(90)]
    data = np.vstack([b.data_v for b in blocks]) * 1e6
    clean = np.vstack([b.clean_v for b in blocks]) * 1e6
    eog = eyes.next(0, len(data))[0] * 1e6 + rng.normal(0, 2.0, (len(data), 3))  # + 2 uV EOG amplifier noise
    from scipy.signal import butter, sosfilt

    sos = butter(2, 0.5, "hp", fs=500, output="sos")
    data, clean, eog = (sosfilt(sos, x, axis=0) for x in (data, clean, eog))
    cal = slice(0, 60 * 500)
    reg = fit_eog_regression(data[cal], eog[cal], 500.0, names, ["VEOG", "HEOG-L", "HEOG-R"], source="simulator")
    proc = EogRegressor(reg, max_chunk=10)
    out = np.zeros((10, len(names)))
    test = slice(60 * 500, len(data))
    x, e = data[test], eog[test]
    res = np.vstack([(proc.process(x[i : i + 10], e[i : i + 10], out), out[:10].copy())[1] for i in range(0, len(x), 10)])
    art = x - clean[test]
    removed = 1 - np.sum((res - clean[test]) ** 2) / np.sum(art**2)
    assert removed > 0.95
    arrays, text = reg.to_arrays()
    again = EogRegression.from_arrays(arrays, text)
    np.testing.assert_array_equal(again.coefficients, reg.coefficients)
    assert again.eog_names == ("VEOG", "HEOG-L", "HEOG-R")


def test_validation():
    reg = EogRegression(("a", "b"), ("eog",), np.ones((1, 2)), 100.0)
    p = EogRegressor(reg, max_chunk=4)
    out = np.zeros((4, 2))
    with pytest.raises(ValueError, match="max_chunk"):
        p.process(np.zeros((5, 2)), np.zeros((5, 1)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="eog"):
        p.process(np.zeros((3, 2)), np.zeros((3, 2)), out)
    with pytest.raises(ValueError, match="NaN"):
        p.process(np.full((3, 2), np.nan), np.zeros((3, 1)), out)
    with pytest.raises(ValueError, match="shape"):
        EogRegression(("a", "b"), ("eog",), np.ones((2, 2)), 100.0)
    with pytest.raises(ValueError, match="collinear"):
        fit_eog_regression(np.ones((100, 2)), np.zeros((100, 1)), 100.0, ["a", "b"], ["eog"])
    with pytest.raises(ValueError, match="schema"):
        EogRegression.from_arrays(*(lambda a, t: (a, t.replace('"schema": 1', '"schema": 7')))(*reg.to_arrays()))
