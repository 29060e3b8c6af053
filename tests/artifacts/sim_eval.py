"""Shared evaluation of artifact correction on the simulator: data, band power, metrics.

Used by the tests (tests/artifacts/test_asr_simulator.py) and, for the numbers in the report,
by ``python -m tests.artifacts.sim_eval``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, sosfilt

FRONTAL = ("Fp1", "Fp2", "AF3", "AF4", "F3", "F4", "Fz")
OCCIPITAL = ("O1", "O2", "Oz", "PO7", "PO8", "POz")
TEMPORAL = ("T7", "T8", "FT7", "FT8", "TP7", "TP8")
# (name, channels, band) as in issue 16's acceptance
FEATURES = (("occipital 8-12", OCCIPITAL, (8.0, 12.0)), ("frontal 4-8", FRONTAL, (4.0, 8.0)),
            ("frontal 15-25", FRONTAL, (15.0, 25.0)), ("temporal 15-25", TEMPORAL, (15.0, 25.0)))  # fmt: skip


@dataclass(frozen=True)
class SimData:
    """High-passed simulator EEG in uV: calibration part and test part, with ground truth."""

    ch_names: tuple
    sfreq: float
    calib: np.ndarray  # (n, n_ch) with artifacts (rest recording at setup)
    raw: np.ndarray  # (n, n_ch) test data with artifacts
    clean: np.ndarray  # (n, n_ch) the same without artifacts
    active: np.ndarray  # (n, n_kinds) bool


def simulate(kinds=("blinks", "emg"), calib_s=60.0, test_s=60.0, seed=0, scales=None) -> SimData:
    from rtsource.config import Settings
    from rtsource.simulator import SignalGenerator, simulated_channels

    s = Settings()
    sim = dataclasses.replace(s.simulate, artifacts=tuple(kinds), seed=seed, **(scales or {}))
    names, array = simulated_channels(s)
    gen = SignalGenerator(sim, names, array)
    fs = gen.sfreq
    blocks = [gen.next_block(int(fs)) for _ in range(int(calib_s + test_s))]
    data = np.vstack([b.data_v for b in blocks]) * 1e6
    clean = np.vstack([b.clean_v for b in blocks]) * 1e6
    active = np.vstack([b.artifact_active for b in blocks])
    # the stream's causal high-pass (the same linear filter on both keeps the truth exact)
    sos = butter(2, 0.5, "hp", fs=fs, output="sos")
    data, clean = sosfilt(sos, data, axis=0), sosfilt(sos, clean, axis=0)
    n_cal = int(calib_s * fs)
    return SimData(tuple(names), fs, data[:n_cal], data[n_cal:], clean[n_cal:], active[n_cal:])


def run_processor(proc, x: np.ndarray, chunk: int = 10) -> np.ndarray:
    """Stream ``x`` through an AsrProcessor in chunks; output re-aligned for its delay."""
    out = np.zeros((chunk, x.shape[1]))
    res = np.zeros_like(x)
    for s in range(0, len(x), chunk):
        n = proc.process(np.ascontiguousarray(x[s : s + chunk]), out)
        res[s : s + n] = out[:n]
    d = proc.delay_samples
    return np.vstack([res[d:], np.zeros((d, x.shape[1]))])  # last d samples unknown (zero)


def band_power_series(x, sfreq, idx, band, win_s=0.5, step_s=0.05):
    """Mean band power over channels ``idx`` in sliding Hann windows: (starts, power)."""
    n = int(win_s * sfreq)
    starts = np.arange(0, len(x) - n, int(step_s * sfreq))
    f = np.fft.rfftfreq(n, 1 / sfreq)
    sel = (f >= band[0]) & (f <= band[1])
    w = np.hanning(n)
    seg = np.stack([x[s : s + n, idx] for s in starts]) * w[None, :, None]
    p = np.abs(np.fft.rfft(seg, axis=1)[:, sel]) ** 2
    return starts, p.sum(axis=1).mean(axis=1)


def metrics(data: SimData, corrected: np.ndarray, kind_col: int, valid: int | None = None) -> dict:
    """Band-power correlations (corrected and raw vs truth) and artifact power removed, in episodes of one kind."""
    valid = len(data.raw) if valid is None else valid
    fs = data.sfreq
    ep = data.active[:valid, kind_col]
    out = {}
    for name, chans, band in FEATURES:
        idx = [data.ch_names.index(c) for c in chans]
        starts, truth = band_power_series(data.clean[:valid], fs, idx, band)
        _, raw = band_power_series(data.raw[:valid], fs, idx, band)
        _, cor = band_power_series(corrected[:valid], fs, idx, band)
        n = int(0.5 * fs)
        in_ep = np.array([ep[s : s + n].any() for s in starts])
        out[name] = (float(np.corrcoef(cor[in_ep], truth[in_ep])[0, 1]), float(np.corrcoef(raw[in_ep], truth[in_ep])[0, 1]))
    art = data.raw[:valid][ep] - data.clean[:valid][ep]
    resid = corrected[:valid][ep] - data.clean[:valid][ep]
    out["removed"] = float(1 - np.sum(resid**2) / np.sum(art**2))
    return out


def distortion(x: np.ndarray, y: np.ndarray) -> float:
    """var(y - x) / var(x): how much a correction changed data that needed none."""
    return float(np.var(y - x) / np.var(x))
