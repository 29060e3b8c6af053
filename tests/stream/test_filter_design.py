"""Butterworth design without scipy.signal (rtsource.stream.filter_design) against scipy.signal."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from rtsource.errors import ConfigError
from rtsource.stream.filter_design import butter_sos, butter_zpk, sosfilt_zi

CASES = [("lowpass", 40.0), ("highpass", 0.5), ("highpass", 1.0), ("bandpass", (8.0, 12.0)), ("bandpass", (0.1, 40.0)), ("lowpass", 0.3)]


@pytest.mark.parametrize("fs", [250.0, 500.0, 1000.0, 2048.0])
@pytest.mark.parametrize("order", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize("btype, freq", CASES)
def test_same_filter_as_scipy(fs, order, btype, freq):
    freq = freq * fs if btype == "lowpass" and freq < 1 else freq
    ours, ref = butter_sos(order, freq, btype, fs), signal.butter(order, freq, btype, output="sos", fs=fs)
    assert ours.shape == ref.shape and np.all(ours[:, 3] == 1.0)
    _, h_ours = signal.sosfreqz(ours, worN=2048, fs=fs)
    _, h_ref = signal.sosfreqz(ref, worN=2048, fs=fs)
    assert np.max(np.abs(h_ours - h_ref)) < 1e-9 * np.max(np.abs(h_ref))
    z, p, k = butter_zpk(order, freq, btype, fs)
    z_ref, p_ref, k_ref = signal.butter(order, freq, btype, output="zpk", fs=fs)
    np.testing.assert_allclose(p, p_ref, rtol=1e-12, atol=1e-14)  # same poles in the same order
    np.testing.assert_allclose(np.sort(z.real), np.sort(z_ref.real), atol=1e-12)
    assert k == pytest.approx(k_ref, rel=1e-12)
    np.testing.assert_allclose(sosfilt_zi(ours), signal.sosfilt_zi(ours), rtol=1e-10, atol=1e-12)
    if order <= 5:  # (an order-8 0.1-40 Hz band-pass is so ill-conditioned that any pairing rounds differently)
        x = np.random.default_rng(0).normal(size=2000)
        y_ours, y_ref = signal.sosfilt(ours, x), signal.sosfilt(ref, x)
        assert np.max(np.abs(y_ours - y_ref)) < 1e-8 * np.max(np.abs(y_ref))


def test_steady_state_of_a_step():
    sos = butter_sos(4, 1.0, "highpass", 500.0)
    zi = sosfilt_zi(sos)
    y, _ = signal.sosfilt(sos, np.full(50, 3.0), zi=3.0 * zi)
    assert np.max(np.abs(y)) < 1e-12  # a constant passes a high-pass with no transient


@pytest.mark.parametrize("args, match", [
    ((0, 10.0, "lowpass", 500.0), "order"),
    ((2, 10.0, "notch", 500.0), "filter type"),
    ((2, (8.0, 12.0), "lowpass", 500.0), "one cutoff"),
    ((2, 300.0, "lowpass", 500.0), "Nyquist"),
    ((2, (12.0, 8.0), "bandpass", 500.0), "increasing"),
])
def test_bad_designs_are_refused(args, match):
    with pytest.raises(ConfigError, match=match):
        butter_sos(*args)
