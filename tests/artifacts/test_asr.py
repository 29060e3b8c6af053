"""ASR: kernels against their NumPy twins, the processor's validation, counters and calibration."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.signal import butter, freqz, lfilter

from rtsource.artifacts import AsrCalibration, AsrProcessor, calibrate_asr
from rtsource.artifacts import _kernels as k
from rtsource.artifacts.asr import spectral_filter

from . import naive

FS = 250.0


def _eeg(n_ch: int, seconds: float, seed: int) -> np.ndarray:
    """Correlated, high-passed Gaussian 'EEG' (arbitrary unit ~ uV)."""
    rng = np.random.default_rng(seed)
    mix = np.random.default_rng(99).normal(size=(n_ch, n_ch)) + 3 * np.eye(n_ch)
    x = rng.normal(size=(int(seconds * FS), n_ch)) @ mix.T
    return lfilter(*butter(2, 1.0, "hp", fs=FS), x, axis=0)


def _blink(n_times: int, n_ch: int, at: int, width: int, amp: float) -> np.ndarray:
    art = np.zeros((n_times, n_ch))
    pattern = np.linspace(1.0, 0.0, n_ch) ** 2
    art[at : at + width] = amp * np.hanning(width)[:, None] * pattern
    return art


@pytest.fixture(scope="module")
def cal8():
    return calibrate_asr(_eeg(8, 60, 1), FS, [f"E{i}" for i in range(8)], cutoff=20, source="test")


@pytest.mark.parametrize("sfreq", [100.0, 250.0, 500.0, 1000.0])
def test_spectral_filter_follows_the_template_and_is_stable(sfreq):
    b, a = spectral_filter(sfreq)
    assert np.all(np.abs(np.roots(a)) < 1.0)
    f = np.array([0.5, 2.0, 8.0, 25.0] + ([100.0] if sfreq >= 250 else []))
    want = np.interp(f, [0, 2, 3, 13, 16, 40, 80, sfreq / 2], [3, 0.75, 0.33, 0.33, 1, 1, 3, 3])
    got = np.abs(freqz(b, a, worN=f, fs=sfreq)[1])
    np.testing.assert_allclose(got, want, rtol=0.2)


def test_ingest_matches_twin_over_uneven_chunks(cal8):
    x = _eeg(8, 6, 2)
    n_win, n_delay = 125, 17
    zi = np.zeros((len(cal8.filter_a) - 1, 8))
    win, cov_sum, delay = np.zeros((n_win, 8)), np.zeros((8, 8)), np.zeros((n_delay, 8))
    xd = np.zeros((64, 8))
    state = np.zeros(k.N_STATE, dtype=np.int64)
    got, pos = [], 0
    rng = np.random.default_rng(0)
    while pos < len(x):
        n = int(min(rng.integers(1, 64), len(x) - pos))
        k.asr_ingest(x[pos : pos + n], n, cal8.filter_b, cal8.filter_a, zi, win, cov_sum, delay, xd, state)
        got.append(xd[:n].copy())
        pos += n
        if pos in (40, len(x)) or rng.random() < 0.05:  # while filling the window and after
            _, want_cov, fill, _ = naive.ingest(x[:pos], cal8.filter_b, cal8.filter_a, n_win, n_delay)
            assert state[k.WIN_FILL] == fill
            np.testing.assert_allclose(np.triu(cov_sum), np.triu(want_cov), rtol=1e-9, atol=1e-9 * np.abs(want_cov).max())
    _, _, _, want_delayed = naive.ingest(x, cal8.filter_b, cal8.filter_a, n_win, n_delay)
    np.testing.assert_allclose(np.vstack(got), want_delayed, rtol=0, atol=0)


@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_update_matches_clean_rawdata_pinv_formula(cal8, scale):
    x = _eeg(8, 1, 3) + _blink(250, 8, 50, 100, 200.0 * scale)
    y = lfilter(cal8.filter_b, cal8.filter_a, x, axis=0)[-125:]
    cov_sum = y.T @ y
    ws = [np.zeros((8, 8)) for _ in range(5)]
    r = np.zeros((8, 8))
    for max_remove in (5, 1):
        removed = k.asr_update(np.triu(cov_sum), 125, np.ascontiguousarray(cal8.thresholds), cal8.covariance, max_remove, *ws, r)
        want, want_removed = naive.update(cov_sum, 125, cal8.thresholds, cal8.mixing, max_remove)
        assert removed == want_removed
        np.testing.assert_allclose(r, want, atol=1e-8)
    if scale > 1:
        assert removed == 1  # capped by max_remove


def test_update_identity_on_clean_window(cal8):
    y = lfilter(cal8.filter_b, cal8.filter_a, _eeg(8, 1, 4), axis=0)[-125:]
    r = np.full((8, 8), 7.0)
    assert k.asr_update(np.triu(y.T @ y), 125, np.ascontiguousarray(cal8.thresholds), cal8.covariance, 5, *[np.zeros((8, 8)) for _ in range(5)], r) == 0
    np.testing.assert_array_equal(r, np.eye(8))


@pytest.mark.parametrize("blend", [True, False])
@pytest.mark.parametrize("identity", [(False, False), (True, False), (False, True)])
def test_reconstruct_matches_twin(blend, identity):
    rng = np.random.default_rng(5)
    xd = rng.normal(size=(10, 6))
    r_old, r_new = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    r_old = np.eye(6) if identity[0] else r_old
    r_new = np.eye(6) if identity[1] else r_new
    out = np.zeros((16, 6))
    k.asr_reconstruct(xd, 10, r_old, r_new, identity[0], identity[1], blend, out)
    np.testing.assert_allclose(out[:10], naive.reconstruct(xd, r_old, r_new, blend), atol=1e-12)


@pytest.mark.parametrize("lookahead_s", [0.0, 0.1])
def test_processor_matches_twin_and_repairs(cal8, lookahead_s):
    x = _eeg(8, 8, 6)
    x = x + _blink(len(x), 8, 1000, 80, 400.0)
    rng = np.random.default_rng(1)
    chunks = []
    while sum(chunks) < len(x):
        chunks.append(int(min(rng.integers(1, 40), len(x) - sum(chunks))))
    p = AsrProcessor(cal8, max_chunk=40, lookahead_s=lookahead_s, update_every=16)
    out = np.zeros((40, 8))
    got, pos = [], 0
    for n in chunks:
        assert p.process(x[pos : pos + n], out) == n
        got.append(out[:n].copy())
        pos += n
    got = np.vstack(got)
    want = naive.process(cal8, x, chunks, p.delay_samples, 16)
    np.testing.assert_allclose(got, want, atol=1e-7 * np.abs(x).max())
    st = p.stats()
    assert st.samples_in == st.samples_out == len(x)
    assert st.samples_repaired > 0 and len(st.episodes) >= 1
    ep = max(st.episodes, key=lambda e: e.duration)
    assert 1000 - 40 <= ep.start - p.delay_samples <= 1080  # the repair starts within the blink
    assert 0 < st.fraction_channels_repaired <= 1
    assert st.samples_repaired < len(x) / 4


def test_clean_data_is_left_alone():
    names = [f"E{i}" for i in range(32)]
    x_cal = _eeg(32, 60, 7)
    cal = calibrate_asr(x_cal, FS, names)
    x = _eeg(32, 30, 8)
    p = AsrProcessor(cal, max_chunk=10)
    assert p.delay_samples == round(0.25 * FS) and p.latency_s == p.delay_samples / FS
    out = np.zeros((10, 32))
    res = np.vstack([(p.process(x[s : s + 10], out), out[:10].copy())[1] for s in range(0, len(x), 10)])
    d = p.delay_samples
    assert np.var(res[d:] - x[:-d]) / np.var(x) < 0.01
    np.testing.assert_array_equal(res[:d], 0.0)
    assert p.stats().fraction_samples_repaired < 0.02


def test_large_artifact_mostly_removed():
    names = [f"E{i}" for i in range(32)]
    cal = calibrate_asr(_eeg(32, 60, 9), FS, names)
    x = _eeg(32, 10, 10)
    art = _blink(len(x), 32, 1200, 75, 300.0)
    for lookahead_s, most in ((0.25, 0.05), (0.0, 0.6)):
        p = AsrProcessor(cal, max_chunk=10, lookahead_s=lookahead_s)
        out = np.zeros((10, 32))
        res = np.vstack([(p.process(x[s : s + 10] + art[s : s + 10], out), out[:10].copy())[1] for s in range(0, len(x), 10)])
        d = p.delay_samples
        resid = res[d:] - x[: len(x) - d]
        sl = slice(1100, 1400)
        assert np.sum(resid[sl] ** 2) < most * np.sum(art[sl] ** 2), lookahead_s


def test_processor_validates_input(cal8):
    p = AsrProcessor(cal8, max_chunk=10)
    out = np.zeros((10, 8))
    with pytest.raises(ValueError, match="max_chunk"):
        p.process(np.zeros((11, 8)), np.zeros((11, 8)))
    with pytest.raises(ValueError, match=r"\(n, 8\)"):
        p.process(np.zeros((5, 7)), out)
    with pytest.raises(ValueError, match="float64"):
        p.process(np.zeros((5, 8), dtype=np.float32), out)
    with pytest.raises(ValueError, match="NaN"):
        p.process(np.full((5, 8), np.nan), out)
    with pytest.raises(ValueError, match="out"):
        p.process(np.zeros((5, 8)), np.zeros((4, 8)))
    with pytest.raises(ValueError, match="max_chunk"):
        AsrProcessor(cal8, max_chunk=0)
    with pytest.raises(TypeError, match="AsrCalibration"):
        AsrProcessor({"mixing": 1}, max_chunk=10)
    assert p.process(np.zeros((0, 8)), out) == 0


def test_calibration_round_trip_and_frozen(cal8):
    arrays, text = cal8.to_arrays()
    again = AsrCalibration.from_arrays(arrays, text)
    assert again == again and again.ch_names == cal8.ch_names
    for name in ("mixing", "thresholds", "filter_b", "filter_a"):
        np.testing.assert_array_equal(getattr(again, name), getattr(cal8, name))
    assert again.cutoff == 20 and again.n_windows_used == cal8.n_windows_used
    assert json.loads(again.provenance)["source"] == "test"
    with pytest.raises(ValueError):
        cal8.mixing[0, 0] = 1.0
    meta = json.loads(text)
    meta["schema"] = 99
    with pytest.raises(ValueError, match="schema"):
        AsrCalibration.from_arrays(arrays, json.dumps(meta))
    with pytest.raises(ValueError, match="thresholds"):
        AsrCalibration.from_arrays({k: v for k, v in arrays.items() if k != "thresholds"}, text)
    with pytest.raises(ValueError, match="shape"):
        AsrCalibration.from_arrays({**arrays, "mixing": np.eye(3)}, text)


def test_calibration_refuses_bad_data():
    names = [f"E{i}" for i in range(8)]
    with pytest.raises(ValueError, match="clean 1 s windows"):
        calibrate_asr(_eeg(8, 5, 1), FS, names)
    x = _eeg(8, 60, 1)
    with pytest.raises(ValueError, match="ch_names"):
        calibrate_asr(x, FS, names[:7])
    x_bad = x.copy()
    x_bad[100, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        calibrate_asr(x_bad, FS, names)
    with pytest.raises(ValueError, match="rank"):
        calibrate_asr(np.hstack([x, x[:, :1]]), FS, names + ["dup"])
    from rtsource.errors import ConfigError

    with pytest.raises(ConfigError, match="cutoff"):
        calibrate_asr(x, FS, names, cutoff=0.1)


def test_calibration_ignores_artifact_windows():
    """Blinks in the rest data leave the thresholds close to those of clean data."""
    names = [f"E{i}" for i in range(16)]
    x = _eeg(16, 90, 11)
    dirty = x.copy()
    for at in range(500, len(x) - 200, 1000):  # a blink every 4 s
        dirty += _blink(len(x), 16, at, 75, 300.0)
    a, b = calibrate_asr(x, FS, names), calibrate_asr(dirty, FS, names)
    assert b.n_windows_used < a.n_windows_used
    np.testing.assert_allclose(np.linalg.norm(b.thresholds, axis=1).max(), np.linalg.norm(a.thresholds, axis=1).max(), rtol=0.25)


def test_bench_artifacts_runs_and_reports_both_sides():
    from rtsource.artifacts.bench import bench_artifacts

    lines = []
    res = bench_artifacts(n_ch=16, seconds=4.0, rounds=1, progress=lines.append)
    for key in ("baseline", "asr", "asr_update_chunks", "stage_projection_asr_muscle", "numpy_eigh_64"):
        assert res[key]["median_ms"] > 0 and res[key]["p99_ms"] >= res[key]["median_ms"]
    assert 0.2 < res["updates_per_chunk"] < 0.4  # every 32 samples with 10-sample chunks
    assert res["fraction_repaired"] > 0
    assert "median" in lines[0] and "eigen-update" in lines[1] and "muscle" in lines[2]
