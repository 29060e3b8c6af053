"""The connectivity stage against NumPy twins, mne-connectivity, and coupled/leaky test signals."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import lfilter

from rtsource.errors import ConfigError
from rtsource.stream.bandpower import Band, BandPowerSpec
from rtsource.stream.connectivity import ConnectivitySpec, ConnectivityStage, pair_labels

SFREQ = 500.0
SPEC = ConnectivitySpec(window_s=1.0, step_s=0.1, segment_s=0.5)


# ---- NumPy twins ------------------------------------------------------------------------------


def segments_of_window(x, c, w, seg, hop):
    """The (n_seg, L, K) segments of the window ending before sample c."""
    ends = np.arange(c - w + seg, c + 1, hop)
    return np.stack([x[e - seg : e] for e in ends])


def spectral_twin(segs, bins_per_band, measure, bad=None):
    """measure per band (n_bands, n_pairs) from segments (n_seg, L, K), rfft + Hann as MNE does."""
    if bad is not None:
        segs = segs[~bad]
    seg = segs.shape[1]
    x = segs - segs.mean(axis=1, keepdims=True)
    X = np.fft.rfft(x * np.hanning(seg)[None, :, None], axis=1)  # (n_seg, n_freq, K)
    i, j = np.triu_indices(x.shape[2], 1)
    out = []
    for k in bins_per_band:
        S = X[:, k][:, :, i] * np.conj(X[:, k][:, :, j])  # (n_seg, n_bins, n_pairs)
        P = (np.abs(X[:, k]) ** 2).mean(axis=0)
        if measure == "coh":
            v = np.abs(S.mean(0)) / np.sqrt(P[:, i] * P[:, j])
        elif measure == "imcoh":
            v = S.mean(0).imag / np.sqrt(P[:, i] * P[:, j])
        elif measure == "plv":
            v = np.abs((S / np.abs(S)).mean(0))
        else:
            v = np.abs(S.imag.sum(0)) / np.abs(S.imag).sum(0)
        out.append(v.mean(axis=0))
    return np.array(out)


def aec_twin(x, spec, sfreq, c, w):
    """Orthogonalised AEC (Hipp 2012) per band (n_bands, n_pairs) over the window ending before c."""
    out = []
    for b0, b1, a1 in BandPowerSpec(bands=spec.bands, filter_order=spec.aec_filter_order).design_analytic(sfreq):
        y = x[:c].astype(complex)
        for s in range(len(b0)):
            y = lfilter([b0[s], b1[s]], [1.0, a1[s]], y, axis=0)
        y = y[c - w : c]
        i, j = np.triu_indices(x.shape[1], 1)
        yi, yj = y[:, i], y[:, j]
        q = np.abs(np.imag(yi * np.conj(yj)))
        ai, aj = np.abs(yi), np.abs(yj)

        def corr(a, e):
            a = a - a.mean(0)
            e = e - e.mean(0)
            return (a * e).sum(0) / np.sqrt((a * a).sum(0) * (e * e).sum(0))

        out.append(0.5 * (corr(aj, q / aj) + corr(ai, q / ai)))
    return np.array(out)


def run_stage(stage, x, chunks, flags=None):
    vals, stamps = [], []
    ts = np.arange(len(x)) / SFREQ
    i = 0
    rng = np.random.default_rng(3)
    while i < len(x):
        m = min(int(rng.choice(chunks)), len(x) - i)
        f = None if flags is None else flags[i : i + m]
        v, t = stage.process(x[i : i + m], ts[i : i + m], m, f)
        vals.append(v.copy())
        stamps.append(t.copy())
        i += m
    return np.vstack(vals), np.concatenate(stamps)


def as_bands(row, stage, measure):
    m = stage.spec.measures.index(measure)
    return row.reshape(len(stage.spec.measures), stage.n_bands, stage.n_pairs)[m]


# ---- kernels against twins ---------------------------------------------------------------------


@pytest.mark.parametrize("chunks, hop", [((1, 7, 13), None), ((50,), None), ((120, 3), None), ((9, 31), 0.02)])
def test_stage_matches_numpy_twin(chunks, hop):
    rng = np.random.default_rng(0)
    k_roi, n = 5, int(3.3 * SFREQ)
    x = rng.normal(size=(n, k_roi)).cumsum(axis=0) * 0.1 + rng.normal(size=(n, k_roi))
    spec = ConnectivitySpec(window_s=1.0, step_s=0.1, segment_s=0.5, segment_step_s=hop)
    stage = ConnectivityStage(spec, [f"r{i}" for i in range(k_roi)], SFREQ, max_chunk=128)
    vals, stamps = run_stage(stage, x, chunks)
    w, s, seg, hop = stage.window, stage.step, stage.seg_len, stage.hop
    assert len(vals) == n // s and stage.rows_out == n // s
    np.testing.assert_allclose(stamps, (np.arange(1, n // s + 1) * s - 1) / SFREQ)
    assert np.all(np.isnan(vals[: w // s - 1]))  # no output before the first full window
    bins = spec.bins(SFREQ)
    assert stage.n_segments == (6 if spec.segment_step_s is None else 26)
    for r in range(w // s - 1, n // s):
        c = (r + 1) * s
        segs = segments_of_window(x, c, w, seg, hop)
        for measure in ("coh", "imcoh", "plv", "wpli"):
            np.testing.assert_allclose(as_bands(vals[r], stage, measure), spectral_twin(segs, bins, measure), atol=2e-6, rtol=1e-5)
        np.testing.assert_allclose(as_bands(vals[r], stage, "aec"), aec_twin(x, SPEC, SFREQ, c, w), atol=2e-5)


def test_incremental_sums_do_not_drift(monkeypatch):
    """Thousands of add/subtract steps (with the exact re-summation) equal a fresh twin."""
    import rtsource.stream.connectivity as conn

    monkeypatch.setattr(conn, "_RESUM_EVERY", 37)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(int(60 * SFREQ), 3)) * 1e-9  # tiny values in SI units
    stage = ConnectivityStage(ConnectivitySpec(measures=("coh", "imcoh", "wpli")), ["a", "b", "c"], SFREQ, max_chunk=64)
    vals, _ = stage.run_offline(x, np.arange(len(x)) / SFREQ, chunk=25)
    segs = segments_of_window(x, len(x), stage.window, stage.seg_len, stage.hop)
    for measure in ("coh", "imcoh", "wpli"):
        np.testing.assert_allclose(as_bands(vals[-1], stage, measure), spectral_twin(segs, SPEC.bins(SFREQ), measure), atol=2e-6)


def test_flagged_and_nan_samples_leave_their_segments_out():
    rng = np.random.default_rng(2)
    n = int(2.0 * SFREQ)
    x = rng.normal(size=(n, 4))
    flags = np.zeros(n, np.uint8)
    flags[520] = 1  # in the last window's first segment only
    x[980, 2] = np.nan  # in its last segment only
    stage = ConnectivityStage(ConnectivitySpec(measures=("coh", "plv", "wpli", "aec")), list("abcd"), SFREQ, max_chunk=64)
    vals, _ = run_stage(stage, x, (10, 33), flags=flags)
    assert np.all(np.isfinite(vals[-1]))
    w, seg, hop = stage.window, stage.seg_len, stage.hop
    ends = np.arange(n - w + seg, n + 1, hop)
    bad_rows = (flags != 0) | ~np.isfinite(x).all(axis=1)
    bad = np.array([bad_rows[e - seg : e].any() for e in ends])
    assert 0 < bad.sum() < len(bad)
    segs = segments_of_window(np.nan_to_num(x), n, w, seg, hop)
    for measure in ("coh", "plv", "wpli"):
        np.testing.assert_allclose(as_bands(vals[-1], stage, measure), spectral_twin(segs, SPEC.bins(SFREQ), measure, bad=bad), atol=2e-6)
    # a window whose every segment is flagged gives NaN, not a stale value
    stage2 = ConnectivityStage(ConnectivitySpec(measures=("coh",)), ["a", "b"], SFREQ, max_chunk=600)
    v, _ = stage2.process(rng.normal(size=(500, 2)), np.zeros(500), 500, np.ones(500, np.uint8))
    assert np.all(np.isnan(v))


def test_labels_and_layout():
    spec = ConnectivitySpec(measures=("coh", "wpli"))
    labels = pair_labels(["superiortemporal-lh", "precentral-rh", "V1"], spec)
    assert labels[0] == "coh:alpha:superiortemporal-lh~precentral-rh"
    assert labels[3] == "coh:beta:superiortemporal-lh~precentral-rh"
    assert labels[-1] == "wpli:beta:precentral-rh~V1"
    assert len(labels) == 2 * 2 * 3
    stage = ConnectivityStage(spec, [f"roi{i}" for i in range(68)], SFREQ, 32)
    assert stage.n_pairs == 2278 and stage.n_out == 2278 * 4 == len(stage.labels)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(window_s=1.0, step_s=0.3), "multiple of step_s"),
        (dict(segment_s=2.0), "must not exceed"),
        (dict(segment_s=0.1, bands=(Band("mu", 11.0, 19.0),)), "no frequency bin"),
        (dict(measures=("coh", "granger")), "measures"),
        (dict(step_s=0.1, segment_step_s=0.03), "whole number of samples|must divide"),
        (dict(bands=(Band("gamma", 200.0, 260.0),)), "Nyquist"),
    ],
)
def test_spec_errors_name_the_setting(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ConnectivityStage(ConnectivitySpec(**kwargs), ["a", "b"], SFREQ, 16)


def test_bad_roi_names_and_sizes():
    with pytest.raises(ConfigError, match="at least 2 ROIs"):
        ConnectivityStage(SPEC, ["a"], SFREQ, 16)
    with pytest.raises(ConfigError, match="without ':' or '~'"):
        ConnectivityStage(SPEC, ["a", "b~c"], SFREQ, 16)
    stage = ConnectivityStage(SPEC, ["a", "b"], SFREQ, 16)
    with pytest.raises(ConfigError, match="max_chunk"):
        stage.process(np.zeros((20, 2)), np.zeros(20), 20)
    with pytest.raises(ConfigError, match="shape"):
        stage.process(np.zeros((4, 3)), np.zeros(4), 4)


# ---- the reference implementation ------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:fmin=.*cycles:RuntimeWarning")  # short segments on purpose
def test_matches_mne_connectivity_fourier_mode():
    mc = pytest.importorskip("mne_connectivity", reason="mne-connectivity (the `peers` extra) is not installed")
    rng = np.random.default_rng(4)
    k_roi, n = 6, int(2.5 * SFREQ)
    x = rng.normal(size=(n, k_roi))
    x[:, 1] += 0.7 * np.roll(x[:, 0], 3)  # some coupling so values are not all near 0
    spec = ConnectivitySpec(measures=("coh", "imcoh", "plv", "wpli"), segment_s=0.4, segment_step_s=0.05)  # 13 segments, hop < step
    stage = ConnectivityStage(spec, [f"r{i}" for i in range(k_roi)], SFREQ, 64)
    vals, _ = stage.run_offline(x, np.arange(n) / SFREQ, chunk=17)
    i, j = np.triu_indices(k_roi, 1)
    for r in (len(vals) - 1, len(vals) - 7):
        c = (r + 1) * stage.step
        segs = segments_of_window(x, c, stage.window, stage.seg_len, stage.hop)  # (n_epochs, L, K)
        res = mc.spectral_connectivity_epochs(
            np.transpose(segs, (0, 2, 1)), method=["coh", "imcoh", "plv", "wpli"], indices=(i, j), sfreq=SFREQ, mode="fourier",
            fmin=[b.low_hz for b in spec.bands], fmax=[b.high_hz for b in spec.bands], faverage=True, verbose=False,
        )  # fmt: skip
        for measure, con in zip(("coh", "imcoh", "plv", "wpli"), res):
            ref = con.get_data()  # (n_pairs, n_bands)
            np.testing.assert_allclose(as_bands(vals[r], stage, measure), ref.T, atol=1e-6, err_msg=measure)


# ---- coupled sources and leakage ---------------------------------------------------------------


def coupled_signals(n, rng, lag_deg, strength, mix=0.0, snr=1.0):
    """Six ROIs: broadband noise plus an 8-12 Hz rhythm each (band amplitude ``snr`` times the
    noise's in that band). ROI 1's rhythm is ROI 0's lagged by ``lag_deg`` with weight
    ``strength``; with ``mix`` ROIs 2 and 3 carry +/- ``mix`` of one common rhythm at zero lag
    (volume conduction), not lagged copies."""
    from scipy.signal import butter, hilbert, sosfiltfilt

    sos = butter(4, [8, 12], "bandpass", fs=SFREQ, output="sos")
    rhythm = sosfiltfilt(sos, rng.normal(size=(n, 7)), axis=0)
    rhythm /= rhythm.std(axis=0)
    noise = rng.normal(size=(n, 6))
    band_noise = sosfiltfilt(sos, noise, axis=0).std()
    r = rhythm[:, :6].copy()
    lagged = np.real(hilbert(rhythm[:, 0]) * np.exp(-1j * np.deg2rad(lag_deg)))
    r[:, 1] = strength * lagged + np.sqrt(1 - strength**2) * rhythm[:, 1]
    if mix:
        r[:, 2] = mix * rhythm[:, 6] + np.sqrt(1 - mix**2) * rhythm[:, 2]
        r[:, 3] = -mix * rhythm[:, 6] + np.sqrt(1 - mix**2) * rhythm[:, 3]
    return snr * band_noise * r + noise


def test_lagged_coupling_and_zero_lag_leakage(capsys):
    rng = np.random.default_rng(5)
    n = int(40 * SFREQ)
    x = coupled_signals(n, rng, lag_deg=90.0, strength=0.9, mix=0.9, snr=3.0)
    stage = ConnectivityStage(ConnectivitySpec(bands=(Band("alpha", 8.0, 12.0),), measures=("coh", "imcoh", "wpli", "aec")), list("abcdef"), SFREQ, 64)
    vals, _ = stage.run_offline(x, np.arange(n) / SFREQ, chunk=50)
    vals = vals[20:]  # settled windows
    pairs = [(i, j) for i in range(6) for j in range(i + 1, 6)]
    p_coupled, p_leak = pairs.index((0, 1)), pairs.index((2, 3))
    uncoupled = [p for p, (i, j) in enumerate(pairs) if {i, j}.isdisjoint({0, 1}) and (i, j) != (2, 3)]
    summary = {}
    for measure in ("coh", "imcoh", "wpli", "aec"):
        mi = stage.spec.measures.index(measure)
        v = vals[:, mi * stage.n_pairs : (mi + 1) * stage.n_pairs]  # one band
        summary[measure] = (np.abs(v[:, p_coupled]), np.abs(v[:, p_leak]), np.abs(v[:, uncoupled]).ravel())
    with capsys.disabled():
        print("\n|value| over 1 s windows (median [5%, 95%]): coupled 90 deg | zero-lag leakage | uncoupled")
        for m, (c, leak, u) in summary.items():
            f = lambda a: f"{np.median(a):.3f} [{np.percentile(a, 5):.3f}, {np.percentile(a, 95):.3f}]"  # noqa: E731
            print(f"  {m:6s} {f(c)} | {f(leak)} | {f(u)}")
    coh_c, coh_leak, coh_u = summary["coh"]
    im_c, im_leak, im_u = summary["imcoh"]
    w_c, w_leak, w_u = summary["wpli"]
    # 90 deg coupling: imaginary coherence and wPLI clearly above the uncoupled pairs
    assert np.median(im_c) > 2 * np.median(im_u) and np.mean(im_c > np.median(im_u)) > 0.85
    assert np.median(w_c) > np.median(w_u) + 0.2 and np.mean(w_c > np.median(w_u)) > 0.85
    # zero-lag leakage fools coherence but not imaginary coherence, whose signed value averages 0
    assert np.median(coh_leak) > np.median(coh_u) + 0.1
    assert np.median(im_leak) < np.median(im_u)
    mi = stage.spec.measures.index("imcoh")
    signed = vals[:, mi * stage.n_pairs + p_leak]
    with capsys.disabled():
        print(f"  signed imcoh of the leaky pair: mean {signed.mean():+.3f} (sd {signed.std():.3f}, {len(signed)} windows)")
    assert abs(signed.mean()) < 0.05
    # orthogonalised AEC is blind to the zero-lag mixture, not to the lagged coupling
    assert np.median(summary["aec"][1]) < np.median(summary["aec"][2]) < 0.5 * np.median(summary["aec"][0])


def test_zscore_against_calibration():
    rng = np.random.default_rng(6)
    calib = rng.normal(size=(int(20 * SFREQ), 3))
    spec = ConnectivitySpec(measures=("coh", "aec"), zscore=True)
    stage = ConnectivityStage(spec, list("abc"), SFREQ, 50)
    mean, std = stage.calibrate(calib)
    assert mean.shape == (stage.n_out,) and np.all(std > 0)
    vals, _ = stage.run_offline(rng.normal(size=(int(20 * SFREQ), 3)), np.arange(int(20 * SFREQ)) / SFREQ)
    z = vals[30:]
    assert abs(np.mean(z)) < 0.3 and 0.6 < np.std(z) < 1.5  # same statistics: z ~ N(0, 1)-ish
    with pytest.raises(ConfigError, match="zscore"):
        ConnectivityStage(ConnectivitySpec(), list("ab"), SFREQ, 50).set_baseline(np.zeros(10), np.ones(10))


def test_process_allocates_no_arrays_per_step():
    """After warm-up, steps allocate only small Python objects (views), never state-sized arrays."""
    import tracemalloc

    rng = np.random.default_rng(8)
    stage = ConnectivityStage(SPEC, [f"r{i}" for i in range(20)], SFREQ, 50)
    x = rng.normal(size=(50 * 40, 20)).astype(np.float32)
    ts = np.arange(len(x)) / SFREQ
    for k in range(20):
        stage.process(x[k * 50 : (k + 1) * 50], ts[k * 50 : (k + 1) * 50], 50)
    tracemalloc.start()
    for k in range(20, 40):
        stage.process(x[k * 50 : (k + 1) * 50], ts[k * 50 : (k + 1) * 50], 50)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 16_000, f"{peak} bytes allocated in 20 steps (one output row alone is {stage.n_out * 4} bytes)"


def test_reset_equals_a_fresh_stage():
    rng = np.random.default_rng(9)
    x = rng.normal(size=(int(3 * SFREQ), 4))
    ts = np.arange(len(x)) / SFREQ
    used = ConnectivityStage(SPEC, list("abcd"), SFREQ, 50)
    used.run_offline(rng.normal(size=(777, 4)), np.arange(777) / SFREQ)
    used.reset()
    a, _ = used.run_offline(x, ts)
    b, _ = ConnectivityStage(SPEC, list("abcd"), SFREQ, 50).run_offline(x, ts)
    np.testing.assert_array_equal(a, b)
