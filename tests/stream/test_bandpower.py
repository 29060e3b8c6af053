"""Band-power feedback (rtsource.stream.bandpower): kernels vs NumPy twins, the stage, the stream
header, and the acceptance scenario (simulated 10 Hz source modulated at 0.2 Hz in an ROI)."""

from __future__ import annotations

import dataclasses
import time
import xml.etree.ElementTree as ET

import numpy as np
import pylsl
import pytest
from scipy.signal import lfilter, sosfilt

from rtsource.errors import ConfigError
from rtsource.stream import _bandpower_kernels as k
from rtsource.stream.bandpower import Band, BandPowerSpec, BandPowerStage
from rtsource.stream.outlets import make_bandpower_info
from rtsource.stream.outputs import BANDPOWER_TYPE

from .lsl_helpers import Collector, unique

SFREQ = 500.0


# ---- NumPy twins ----

def twin_smooth(v, alpha, stages):
    for _ in range(stages):
        v = lfilter([alpha], [1.0, alpha - 1.0], v, axis=0)
    return v


def twin_stage(spec, x, sfreq=SFREQ):
    """Whole-recording NumPy reference of BandPowerStage (no z-score): values at every step-th sample."""
    step = max(1, int(round(sfreq / spec.rate_hz)))
    n_stages = spec.smoothing_stages if spec.smoothing_s > 0 else 0
    alpha = 1 - np.exp(-1 / (spec.smoothing_s / max(n_stages, 1) * sfreq)) if n_stages else 1.0
    cols = []
    for r in range(x.shape[1]):
        for b, band in enumerate(spec.bands):
            if spec.envelope == "analytic":
                b0, b1, a1 = spec.design_analytic(sfreq)[b]
                y = x[:, r].astype(complex)
                for s in range(len(b0)):
                    y = lfilter([b0[s], b1[s]], [1.0, a1[s]], y)
                v = 2 * np.abs(y) ** 2
            else:
                y = sosfilt(spec.design(sfreq)[b], x[:, r].astype(np.float64))
                v = y**2 if spec.envelope == "square" else np.abs(y)
            v = twin_smooth(v, alpha, n_stages)
            if spec.envelope == "rectify":
                a = np.pi / 2 * v
                val = a**2 / 2 if spec.quantity == "power" else a
            else:
                val = v if spec.quantity == "power" else np.sqrt(2 * v)
            cols.append(val)
    full = np.stack(cols, axis=1)
    idx = np.arange(step - 1, len(x), step)
    return full[idx], idx


# ---- kernels ----

@pytest.mark.parametrize("kind, stages", [(0, 2), (1, 1), (2, 0), (2, 3)])
def test_envelope_kernel_matches_numpy(kind, stages):
    rng = np.random.default_rng(kind)
    x = rng.normal(size=(100, 3))
    alpha = 0.1
    state = np.zeros((stages, 6))
    last = np.full(6, np.nan)
    env = np.zeros((100, 6))
    bad = np.zeros(100, np.uint8)
    for i in range(0, 100, 30):  # band 1 of 2: columns 1, 3, 5; chunked
        m = min(30, 100 - i)
        k.envelope(x[i : i + m], m, bad, 1, 2, kind, alpha, state, last, env[i : i + m])
    v = x**2 if kind == 0 else (np.abs(x) if kind == 1 else x)
    assert np.allclose(env[:, 1::2], twin_smooth(v, alpha, stages))
    assert np.all(env[:, 0::2] == 0)


def test_analytic_power_matches_complex_lfilter():
    spec = BandPowerSpec(bands=(Band("alpha", 8, 12),), filter_order=3)
    b0, b1, a1 = spec.design_analytic(SFREQ)[0]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2))
    buf = x.copy()
    state = np.zeros((3, 2), complex)
    bad = np.zeros(400, np.uint8)
    for i in range(0, 400, 64):
        m = min(64, 400 - i)
        k.analytic_power(buf[i : i + m], m, bad, b0, b1, a1, state)
    y = x.astype(complex)
    for s in range(3):
        y = lfilter([b0[s], b1[s]], [1.0, a1[s]], y, axis=0)
    assert np.allclose(buf, 2 * np.abs(y) ** 2)
    # unit gain at the band centre, positive frequencies only
    f = np.array([-10.0, 10.0, 8.0, 12.0, 20.0])
    z = np.exp(-2j * np.pi * f / SFREQ)
    h = np.prod([(b0[s] + b1[s] * z) / (1 + a1[s] * z) for s in range(3)], axis=0)
    assert abs(abs(h[1]) - 1) < 1e-9 and abs(h[0]) < 0.01 and np.allclose(np.abs(h[2:4]), 2**-0.5, atol=0.01) and abs(h[4]) < 0.01


def test_decimate_matches_numpy():
    rng = np.random.default_rng(1)
    env = rng.uniform(0, 2, size=(57, 4))
    ts = np.arange(57) * 0.01
    mean, inv = rng.normal(size=4), rng.uniform(0.5, 2, 4)
    out = np.zeros((20, 4), np.float32)
    ts_out = np.zeros(20)
    phase = np.array([3], np.int64)
    rows = k.decimate(env, 57, ts, 5, phase, False, False, mean, inv, out, ts_out)
    idx = np.arange(1, 57, 5)  # phase 3 -> outputs at samples 1, 6, 11, ...
    assert rows == len(idx) and phase[0] == (57 - 2) % 5
    assert np.allclose(out[:rows], (np.sqrt(2 * env[idx]) - mean) * inv, rtol=1e-6)
    assert np.array_equal(ts_out[:rows], ts[idx])


# ---- the stage ----

@pytest.mark.parametrize(
    "spec",
    [
        BandPowerSpec(),
        BandPowerSpec(envelope="square", smoothing_s=0.05),
        BandPowerSpec(envelope="rectify", smoothing_s=0.1, smoothing_stages=1, quantity="power", rate_hz=30),
        BandPowerSpec(bands=(Band("alpha", 8, 12), Band("beta", 15, 25)), envelope="analytic", smoothing_s=0.02, rate_hz=50),
    ],
    ids=["analytic", "square", "rectify-power", "two-bands"],
)
def test_stage_equals_numpy_twin_in_any_chunking(spec):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2000, 2)).astype(np.float32)
    ts = 100.0 + np.arange(2000) / SFREQ
    expected, idx = twin_stage(spec, x.astype(np.float64))
    for chunk in (1, 7, 64, 1000):
        st = BandPowerStage(spec, ["V1", "M1"], SFREQ, 1000)
        vals, stamps = st.run_offline(x, ts, chunk=chunk)
        assert vals.shape == expected.shape
        assert np.allclose(vals, expected, rtol=2e-5, atol=1e-6 * np.abs(expected).max()), chunk
        assert np.array_equal(stamps, ts[idx])
    assert st.labels == tuple(f"{r}_{b.name}" for r in ("V1", "M1") for b in spec.bands)


@pytest.mark.parametrize("envelope, smoothing", [("analytic", 0.0), ("square", 0.2), ("rectify", 0.2)])
def test_a_sinusoid_reads_its_amplitude(envelope, smoothing):
    t = np.arange(int(6 * SFREQ)) / SFREQ
    x = (3.0 * np.sin(2 * np.pi * 10.3 * t))[:, None].astype(np.float32)
    for quantity, expected in (("amplitude", 3.0), ("power", 4.5)):
        st = BandPowerStage(BandPowerSpec(envelope=envelope, smoothing_s=smoothing, quantity=quantity), ["V1"], SFREQ, 256)
        vals, stamps = st.run_offline(x, t, chunk=10)
        late = vals[stamps > 3.0, 0]
        assert np.allclose(late, expected, rtol=0.03), (quantity, late.min(), late.max())


def test_band_selectivity():
    t = np.arange(int(6 * SFREQ)) / SFREQ
    x = np.sin(2 * np.pi * 20 * t)[:, None].astype(np.float32)
    spec = BandPowerSpec(bands=(Band("alpha", 8, 12), Band("beta", 15, 25)))
    vals, stamps = BandPowerStage(spec, ["V1"], SFREQ, 256).run_offline(x, t)
    late = vals[stamps > 3]
    assert np.all(late[:, 1] > 0.95) and np.all(late[:, 0] < 0.05)


def test_zscore_from_calibration_and_from_the_stream_start():
    rng = np.random.default_rng(3)
    t = np.arange(int(40 * SFREQ)) / SFREQ
    x = (rng.normal(size=(len(t), 1)) + np.sin(2 * np.pi * 10 * t)[:, None]).astype(np.float32)
    spec = BandPowerSpec(zscore=True, baseline_s=10.0)
    st = BandPowerStage(spec, ["V1"], SFREQ, 512)
    mean, std = st.calibrate(x[: int(20 * SFREQ)])
    assert st.baseline_ready and mean.shape == (1,) and std[0] > 0
    vals, _ = st.run_offline(x[: int(20 * SFREQ)], t[: int(20 * SFREQ)])
    late = vals[40:, 0]  # after the settling the calibration discarded
    assert abs(late.mean()) < 0.15 and 0.8 < late.std() < 1.2
    # without calibration: NaN during the first baseline_s, then z-scores
    online = BandPowerStage(spec, ["V1"], SFREQ, 512)
    assert not online.baseline_ready
    vals, stamps = online.run_offline(x, t, chunk=25)
    assert np.all(np.isnan(vals[stamps < 10.0 - 1 / SFREQ - 0.05]))
    assert online.baseline_ready and np.all(np.isfinite(vals[stamps > 10.1]))
    raw, _ = BandPowerStage(dataclasses.replace(spec, zscore=False), ["V1"], SFREQ, 512).run_offline(x, t, chunk=25)
    base = raw[: int(10.0 * online.rate_hz), 0].astype(np.float64)
    assert np.allclose(online.baseline_mean, base.mean(), rtol=1e-5) and np.allclose(online.baseline_std, base.std(), rtol=1e-4)
    after = stamps > 10.1
    assert np.allclose(vals[after, 0], (raw[after, 0] - base.mean()) / base.std(), rtol=1e-4, atol=1e-4)
    with pytest.raises(ConfigError, match="baseline_s"):
        BandPowerStage(BandPowerSpec(zscore=True, baseline_s=0.1), ["V1"], SFREQ, 64)


def test_nan_input_rows_do_not_poison_the_filters():
    t = np.arange(int(4 * SFREQ)) / SFREQ
    x = np.sin(2 * np.pi * 10 * t)[:, None].astype(np.float32)
    x[1000:1005] = np.nan
    vals, stamps = BandPowerStage(BandPowerSpec(), ["V1"], SFREQ, 64).run_offline(x, t, chunk=10)
    assert np.all(np.isfinite(vals[stamps > 0.2]))
    assert np.allclose(vals[stamps > 3.0, 0], 1.0, rtol=0.03)


def test_spec_validation():
    with pytest.raises(ConfigError, match="0 < low < high"):
        Band("alpha", 12, 8)
    with pytest.raises(ConfigError, match="Nyquist"):
        BandPowerStage(BandPowerSpec(bands=(Band("gamma", 200, 260),)), ["V1"], SFREQ, 64)
    with pytest.raises(ConfigError, match="envelope"):
        BandPowerSpec(envelope="hilbert")
    with pytest.raises(ConfigError, match="repeat"):
        BandPowerSpec(bands=(Band("a", 8, 12), Band("a", 13, 20)))
    spec = BandPowerSpec.from_mapping({"alpha": [8, 12], "beta": [13, 30]}, rate_hz=25)
    assert [b.name for b in spec.bands] == ["alpha", "beta"] and spec.rate_hz == 25
    with pytest.raises(ConfigError, match=r"\[low_hz, high_hz\]"):
        BandPowerSpec.from_mapping({"alpha": 8})


def test_outputs_are_views_of_preallocated_buffers():
    st = BandPowerStage(BandPowerSpec(rate_hz=50), ["V1", "M1"], SFREQ, 100)
    x = np.ones((100, 2), np.float32)
    v1, t1 = st.process(x, np.arange(100.0), 100)
    v2, t2 = st.process(x, np.arange(100.0), 100)
    assert np.shares_memory(v1, v2) and np.shares_memory(t1, t2) and len(t1) == 10


def test_bandpower_stream_header_and_samples_over_lsl():
    spec = BandPowerSpec(bands=(Band("alpha", 8, 12), Band("beta", 13, 30)), rate_hz=20)
    st = BandPowerStage(spec, ["V1", "M1"], SFREQ, 100, unit="")
    name = unique("bp-test")
    info = make_bandpower_info(st, output_name=name, source_id=name + "-bp", bundle_path="/x/b.npz", method="dSPM", roi_mode="mean_flip")
    root = ET.fromstring(info.as_xml())
    assert root.findtext("name") == name + "-bandpower" and root.findtext("type") == BANDPOWER_TYPE
    assert float(root.findtext("nominal_srate")) == 20.0
    chans = root.findall("desc/channels/channel")
    assert [c.findtext("label") for c in chans] == ["V1_alpha", "V1_beta", "M1_alpha", "M1_beta"]
    assert chans[1].findtext("band") == "beta" and float(chans[1].findtext("low_hz")) == 13.0
    meta = root.find("desc/rtsource")
    assert meta.findtext("rois") == "V1,M1" and meta.findtext("bands") == "alpha:8-12,beta:13-30"
    assert meta.findtext("envelope") == "analytic" and meta.findtext("zscore") == "false"
    assert meta.findtext("output_name") == name and meta.findtext("bundle") == "/x/b.npz"
    assert float(meta.findtext("rate_hz")) == 20.0 and meta.findtext("smoothing_s") == "0.0"
    assert [b.findtext("name") for b in meta.findall("bands/band")] == ["alpha", "beta"]
    outlet = pylsl.StreamOutlet(info, chunk_size=0, max_buffered=60)
    coll = Collector(name + "-bandpower")
    time.sleep(0.5)
    t = 50.0 + np.arange(1000) / SFREQ
    x = np.stack([np.sin(2 * np.pi * 10 * t), np.sin(2 * np.pi * 20 * t)], axis=1).astype(np.float32)
    sent_v, sent_t = [], []
    for i in range(0, 1000, 10):
        v, ts = st.process(x[i : i + 10], t[i : i + 10], 10)
        if len(ts):
            outlet.push_chunk(v, ts.tolist())
            sent_v.append(v.copy())
            sent_t.append(ts.copy())
    sent_v, sent_t = np.vstack(sent_v), np.concatenate(sent_t)
    assert len(sent_t) == 40
    deadline = time.monotonic() + 20
    while coll.n_samples < 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    coll.stop()
    coll.inlet.close_stream()
    del outlet
    data, stamps = coll.data()
    assert np.array_equal(stamps, sent_t) and np.allclose(data, sent_v)


# ---- acceptance: a 10 Hz source modulated at 0.2 Hz, through bundle, ROI and band power ----

@pytest.fixture(scope="module")
def simulated_alpha():
    from rtsource.build import build_bundle
    from rtsource.config import NoiseCovSettings, Settings
    from rtsource.simulator import SignalGenerator

    s = dataclasses.replace(Settings(), noise_cov=NoiseCovSettings(source="ad_hoc"))
    bundle = build_bundle(s, sfreq=SFREQ)
    gen = SignalGenerator(s.simulate, s.sensors.channels)  # defaults: first source 10 Hz at 0.2 Hz
    data, _ = gen.next(int(60 * SFREQ))
    return s, bundle, gen, data


def envelope_match(values, stamps, dipole, max_lag=0.4):
    """Peak correlation of the output with the true envelope delayed by 0..max_lag s, and that lag."""

    def truth(t):
        return dipole.amplitude_am * 0.5 * (1 - np.cos(2 * np.pi * dipole.modulation_hz * t))

    keep = stamps > 2.0  # filter settling
    lags = np.arange(0.0, max_lag, 0.002)
    r = np.array([np.corrcoef(values[keep], truth(stamps[keep] - lag))[0, 1] for lag in lags])
    i = int(np.argmax(r))
    return float(r[i]), float(lags[i]), float(r[0])


def test_alpha_envelope_tracks_simulated_source(simulated_alpha):
    from rtsource.inverse.roi import roi_from_sphere
    from rtsource.roi_operator import RoiOperator
    from rtsource.stream.roi import RoiStage

    s, bundle, gen, data = simulated_alpha
    dipole = gen.dipoles[0]
    assert dipole.frequency_hz == 10.0 and dipole.modulation_hz == 0.2
    # the ROI where the user would put it: around the configured position (not the simulator's vertex)
    roi = roi_from_sphere(bundle.sources, "V1r", s.simulate.sources[0].position_mm, 15.0)
    op = RoiOperator.from_bundle(bundle, [roi], "mean_flip")
    stage = RoiStage(op, 64, channel_scale=np.full(bundle.n_channels, 1e-6))
    x_uv = (data * 1e6).astype(np.float32)  # as the simulator streams it
    ts = 1000.0 + np.arange(len(x_uv)) / SFREQ
    roi_tc = np.vstack([stage.process(x_uv[i : i + 10], 10).copy() for i in range(0, len(x_uv), 10)])
    results = {}
    for label, spec in {
        "analytic (default)": BandPowerSpec(),
        "square 25 ms": BandPowerSpec(envelope="square", smoothing_s=0.025),
        "square 50 ms": BandPowerSpec(envelope="square", smoothing_s=0.05),
        "rectify 50 ms": BandPowerSpec(envelope="rectify", smoothing_s=0.05),
    }.items():
        vals, stamps = BandPowerStage(spec, ["V1r"], SFREQ, 64).run_offline(roi_tc, ts, chunk=10)
        assert abs(np.median(np.diff(stamps)) - 0.05) < 1e-9  # 20 Hz
        results[label] = envelope_match(vals[:, 0].astype(np.float64), stamps - 1000.0, dipole)
    for label, (r, lag, r0) in results.items():
        print(f"8-12 Hz band power, {label}: r = {r:.3f} at lag {lag * 1e3:.0f} ms (r at lag 0: {r0:.3f})")
    r, lag, _ = results["analytic (default)"]
    assert r >= 0.9
    assert lag <= 0.150
