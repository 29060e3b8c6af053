"""Bad-channel detection (rtsource.stream.badchannels): kernels vs NumPy twins, injected faults on
simulated EEG, hysteresis, manual marks, and no false positives on a minute of clean EEG."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import butter, lfilter, sosfilt

from rtsource.errors import ChannelError, ConfigError
from rtsource.stream import _qc_kernels as k
from rtsource.stream.badchannels import BadChannelDetector, BadChannelRules

SFREQ = 500.0


# ---- kernels vs NumPy twins ----

def test_robust_z_matches_numpy():
    rng = np.random.default_rng(0)
    v = rng.normal(size=40)
    v[3] = np.nan
    good = (rng.uniform(size=40) > 0.2).astype(np.uint8)
    out = np.zeros(40)
    spread = k.robust_z(v, good, np.zeros(40), out)
    g = v[(good == 1) & np.isfinite(v)]
    q1, med, q3 = np.percentile(g, [25, 50, 75])
    assert np.isclose(spread, 0.7413 * (q3 - q1))
    fin = np.isfinite(v)
    assert np.allclose(out[fin], (v[fin] - med) / spread) and out[3] == 0


def test_max_correlation_matches_numpy():
    rng = np.random.default_rng(1)
    y = rng.normal(size=(300, 8)) @ rng.normal(size=(8, 8))
    good = np.ones(8, np.uint8)
    good[5] = 0
    acc = np.zeros((8, k.N_ACC))
    acc[:, k.ACC_SUM_Y] = y.sum(axis=0)
    acc[:, k.ACC_SUMSQ_Y] = (y**2).sum(axis=0)
    acc[:, k.ACC_N] = 300
    cross = np.triu(y.T @ y, 1)
    out = np.zeros(8)
    k.max_correlation(cross, acc, good, np.zeros(8, np.int64), 0.98, np.zeros(8), out)
    c = np.abs(np.corrcoef(y.T))
    for i in range(8):
        partners = [j for j in range(8) if j != i and good[j]]
        assert np.isclose(out[i], np.percentile(c[i, partners], 98))


def eeg_sensors(n_chan, rail=0.0):
    """QcSensors of n_chan EEG channels (the EEG limits do not matter to qc_accumulate)."""
    zeros = np.zeros(n_chan)
    return k.QcSensors(np.zeros(n_chan, np.int64), np.ones(n_chan, np.uint8), 3, np.full(n_chan, rail), zeros, zeros)


def test_accumulate_matches_numpy_over_chunk_and_block_boundaries():
    rng = np.random.default_rng(2)
    n_chan, n = 6, 230
    x = (rng.normal(size=(n, n_chan + 2)) * 20).astype(np.float32)
    x[50, 2] = np.nan
    index = np.array([7, 0, 3, 1, 5, 2])
    scale = np.full(n_chan, 1e-6)
    good = np.array([1, 1, 0, 1, 1, 1], np.uint8)
    hp = butter(2, 1.0, "highpass", output="sos", fs=SFREQ)
    hf = butter(4, 40.0, "highpass", output="sos", fs=SFREQ)
    lf = butter(4, 40.0, "lowpass", output="sos", fs=SFREQ)
    states = [np.zeros((len(s), n_chan, 2)) for s in (hp, hf, lf)]
    acc = np.zeros((n_chan, k.N_ACC))
    cross = np.zeros((n_chan, n_chan))
    pos = np.zeros(1, np.int64)
    h = np.zeros(n_chan)
    block_len = 1000  # no block completes: the sums cover all rows
    for start, stop in ((0, 37), (37, 200), (200, 230)):
        filters, block = k.QcFilters(hp, states[0], hf, states[1], lf, states[2]), k.QcBlock(acc, cross, h, pos, block_len)
        assert k.qc_accumulate(x, start, stop, index, scale, good, eeg_sensors(n_chan, rail=25e-6), filters, block) == -1
    r = x[:, index].astype(np.float64) * scale
    fin = np.isfinite(r)
    hh = np.zeros_like(r)
    ff = np.zeros_like(r)
    ll = np.zeros_like(r)
    for j in range(n_chan):
        rj = r[fin[:, j], j]
        hh[fin[:, j], j] = sosfilt(hp, rj)
        ff[fin[:, j], j] = sosfilt(hf, rj)
        ll[fin[:, j], j] = sosfilt(lf, hh[fin[:, j], j])
    mean_good = np.array([hh[t, (good == 1) & fin[t]].mean() for t in range(n)])
    y = np.where(fin, hh - mean_good[:, None], 0.0)
    for j in range(n_chan):
        m = fin[:, j]
        assert np.isclose(acc[j, k.ACC_SUM_Y], y[m, j].sum()) and np.isclose(acc[j, k.ACC_SUMSQ_Y], (y[m, j] ** 2).sum())
        assert np.isclose(acc[j, k.ACC_SUMSQ_F], (ff[m, j] ** 2).sum()) and np.isclose(acc[j, k.ACC_SUMSQ_L], (ll[m, j] ** 2).sum())
        assert np.isclose(acc[j, k.ACC_SUMSQ_H], (hh[m, j] ** 2).sum())
        assert acc[j, k.ACC_RAIL] == np.sum(np.abs(r[m, j]) >= 25e-6) and acc[j, k.ACC_N] == m.sum()
        assert acc[j, k.ACC_MAX] == r[m, j].max() and acc[j, k.ACC_AT_MAX] == np.sum(r[m, j] == r[m, j].max())
        assert acc[j, k.ACC_NONFINITE] == (~m).sum()
    assert np.allclose(np.triu(cross, 1), np.triu(y.T @ y, 1))
    # a block boundary returns the row after it
    acc[:] = 0
    pos[0] = 0
    filters, block = k.QcFilters(hp, states[0], hf, states[1], lf, states[2]), k.QcBlock(acc, cross, h, pos, 100)
    assert k.qc_accumulate(x, 0, n, index, scale, good, eeg_sensors(n_chan), filters, block) == 100


# ---- synthetic EEG with injected faults ----

def simulated_eeg(seconds, seed=0):
    """The package's simulator (64 channels, 1000 1/f cortical dipoles + 1 uV sensor noise), in uV."""
    from rtsource.config import Settings
    from rtsource.simulator import SignalGenerator

    s = Settings()
    gen = SignalGenerator(s.simulate, s.sensors.channels)
    x, _ = gen.next(int(seconds * SFREQ))
    return list(s.sensors.channels), x * 1e6


@pytest.fixture(scope="module")
def clean_minute():
    return simulated_eeg(60.0)


def run(det, x, chunk=10):
    ts = np.arange(len(x)) / SFREQ
    events = []
    x = np.ascontiguousarray(x, dtype=np.float32)
    for i in range(0, len(x), chunk):
        m = min(chunk, len(x) - i)
        if det.update(x[i : i + m], m, ts[i : i + m]):
            events += det.events()
    return events


def test_clean_eeg_gives_no_false_positive_over_a_minute(clean_minute):
    names, x = clean_minute
    det = BadChannelDetector(names, SFREQ, scale=np.full(len(names), 1e-6))
    det.warm_up()
    events = run(det, x)
    assert events == [] and det.bad_channels == ()
    assert det.blocks == 60
    # margins: how far from the thresholds clean data stay
    print(f"clean minute: max deviation z {np.nanmax(det.values[k.DEVIATION - 1]):.2f}, max hf z {np.nanmax(det.values[k.HF_NOISE - 1]):.2f}, "
          f"min block SD {np.nanmin(det.values[k.FLAT - 1]) * 1e6:.2f} uV, min max-correlation {np.nanmin(det.values[k.LOW_CORRELATION - 1]):.2f}")  # fmt: skip


def test_injected_faults_are_found_with_their_reason(clean_minute):
    names, x = clean_minute
    x = x[: int(30 * SFREQ)].copy()
    rng = np.random.default_rng(5)
    t0 = int(10 * SFREQ)
    n1 = len(x) - t0
    t = np.arange(len(x)) / SFREQ

    def ch(name):
        return names.index(name)

    x[t0:, ch("Fp1")] = 5.0 + 0.05 * rng.standard_normal(n1)  # electrode off: flat with a DC offset
    x[t0:, ch("C3")] = np.clip(x[t0:, ch("C3")] * 30, -300, 300)  # amplifier clipping
    x[t0:, ch("Cz")] = 32767.0  # ADC pinned at its top code
    x[t0:, ch("Pz")] += 1200.0  # beyond the amplifier's +-1 mV rail
    x[t0:, ch("P4")] *= 4  # loose contact: 4x amplitude
    x[t0:, ch("FC4")] += 20 * np.sin(2 * np.pi * 50 * t[t0:])  # line noise
    x[t0:, ch("T7")] = 10 * rng.standard_normal(n1)  # broadband noise instead of EEG
    band = sosfilt(butter(4, [1, 35], "bandpass", output="sos", fs=SFREQ), rng.standard_normal(len(x)))
    x[t0:, ch("F8")] = band[t0:] / band[t0:].std() * x[t0:, ch("F8")].std()  # same amplitude and band, unrelated to the EEG
    x[t0 : t0 + int(6 * SFREQ), ch("AF3")] = np.nan  # the amplifier sends NaN for 6 s
    det = BadChannelDetector(names, SFREQ, scale=np.full(64, 1e-6), rules=BadChannelRules(rail_uv=1000.0))
    events = run(det, x)
    bad = {e.channel: e for e in events if e.kind == "bad"}
    expected = {"Fp1": "flat", "C3": "saturated", "Cz": "saturated", "Pz": "saturated", "P4": "noisy_deviation",
                "FC4": "noisy_hf", "T7": "noisy_hf", "F8": "low_correlation", "AF3": "nonfinite"}  # fmt: skip
    assert {c: e.reason for c, e in bad.items()} == expected
    assert sum(e.kind == "bad" for e in events) == len(expected)  # at most once per channel
    # detection latency: persistence of each rule after the fault began at 10 s
    assert bad["C3"].time < 11.0 and bad["Cz"].time < 11.0 and bad["AF3"].time < 11.0
    assert 14.9 < bad["Fp1"].time < 15.0  # flat_s = 5 s
    assert all(bad[c].time < 17.0 for c in ("P4", "FC4", "T7"))
    assert bad["F8"].time < 25.0
    # AF3 came back at 16 s: re-armed after recover_s = 10 s without any rule
    rec = [e for e in events if e.kind == "recovered"]
    assert [(e.channel, e.reason) for e in rec] == [("AF3", "nonfinite")] and 25.9 < rec[0].time < 26.1
    assert set(det.bad_channels) == set(expected) - {"AF3"}
    assert bad["Fp1"].as_event() == {"event": "bad_channel", "channel": "Fp1", "reason": "flat", "value": bad["Fp1"].value}


def test_hysteresis_one_event_until_recovered(clean_minute):
    names, x = clean_minute
    x = x[: int(50 * SFREQ)].copy()
    j = names.index("O2")
    rng = np.random.default_rng(6)
    off = lambda a, b: slice(int(a * SFREQ), int(b * SFREQ))  # noqa: E731
    x[off(5, 20), j] = 0.01 * rng.standard_normal(int(15 * SFREQ))  # flat 5-20 s (the 1 Hz high-pass rings for the first block)
    x[off(21, 24), j] = 0.0  # flaps back to flat for 3 s: within recover_s, no event, recovery clock restarts
    x[off(38, 48), j] = 0.0  # flat again after recovery
    det = BadChannelDetector(names, SFREQ, scale=np.full(64, 1e-6))
    events = [(e.kind, e.reason, round(e.time)) for e in run(det, x) if e.channel == "O2"]
    assert events == [("bad", "flat", 11), ("recovered", "flat", 34), ("bad", "flat", 44)]


def test_manual_marks_and_ignored_channels(clean_minute):
    names, x = clean_minute
    x = x[: int(20 * SFREQ)].copy()
    x[:, names.index("Fz")] = 0.0  # e.g. the recording reference: all zeros
    det = BadChannelDetector(names, SFREQ, scale=np.full(64, 1e-6), ignore=["Fz"])
    ev = det.mark_bad("Oz", time=1.0)
    assert ev.reason == "manual" and det.mark_bad("Oz") is None
    assert det.events() == [ev] and det.events() == []
    assert run(det, x) == []  # Fz is never flagged; Oz never auto-recovers
    assert det.bad_channels == ("Oz",) and det.reason("Oz") == "manual"
    back = det.mark_good("Oz", time=20.0)
    assert back.kind == "recovered" and back.reason == "manual" and det.bad_channels == () and det.mark_good("Oz") is None
    with pytest.raises(ChannelError, match="not one of the operator's channels"):
        det.mark_bad("XYZ")
    with pytest.raises(ChannelError, match="ignore"):
        BadChannelDetector(names, SFREQ, ignore=["XYZ"])


def test_stream_layout_and_units_are_mapped():
    """The detector reads the raw stream chunk through the channel map (index, scale)."""
    rng = np.random.default_rng(7)
    n = int(12 * SFREQ)
    mix = rng.normal(size=(5, 8))
    eeg = lfilter([1.0], [1.0, -0.95], rng.normal(size=(n, 5)), axis=0) @ mix * 3.0
    stream = np.zeros((n, 10), np.float32)
    index = np.array([9, 1, 2, 8, 4, 5, 6, 0])
    stream[:, index] = eeg
    stream[:, 3] = 1e9  # an extra stream channel (a trigger) the detector must not look at
    stream[int(2 * SFREQ) :, 6] = 0.0  # operator channel 6 goes flat
    det = BadChannelDetector([f"E{i}" for i in range(8)], SFREQ, index=index, scale=np.full(8, 1e-6))
    events = run(det, stream)
    assert [(e.channel, e.reason) for e in events] == [("E6", "flat")]


def test_rules_validation():
    with pytest.raises(ConfigError, match="flat_uv"):
        BadChannelRules(flat_uv=0)
    with pytest.raises(ConfigError, match="saturation_fraction"):
        BadChannelRules(saturation_fraction=1.5)
    with pytest.raises(ConfigError, match="window_s"):
        BadChannelRules(window_s=0.5)
    with pytest.raises(ConfigError, match="at least 4 channels"):
        BadChannelDetector(["a", "b"], SFREQ)


# ---- sensor types: MEG in T and T/m, EEG in V, judged apart ----


def simulated(modality, seconds, seed=0):
    """The package's simulator for ``modality`` ('meg', 'eeg+meg'): (names, types, data in SI)."""
    import dataclasses

    from rtsource.config import Settings
    from rtsource.simulator import SignalGenerator, simulated_channels

    s = Settings()
    s = dataclasses.replace(s, sensors=dataclasses.replace(s.sensors, modality=modality), simulate=dataclasses.replace(s.simulate, seed=seed))
    names, array = simulated_channels(s)
    gen = SignalGenerator(s.simulate, names, array)
    x, _ = gen.next(int(seconds * SFREQ))
    return list(names), gen.ch_types, x


@pytest.fixture(scope="module")
def meg_30s():
    return simulated("meg", 30.0)


@pytest.fixture(scope="module")
def mixed_30s():
    return simulated("eeg+meg", 30.0, seed=1)


def test_clean_meg_has_no_bad_channel(meg_30s):
    """306 channels in T and T/m: no flat, no noisy channel (microvolt limits called them all flat)."""
    names, types, x = meg_30s
    assert set(types) == {"mag", "grad"} and len(names) == 306
    det = BadChannelDetector(names, SFREQ, rules=BadChannelRules(), ch_types=types)
    det.warm_up()
    events = run(det, x)
    assert events == [] and det.bad_channels == () and det.hints == []
    mags = np.array([t == "mag" for t in types])
    sd = det.values[k.FLAT - 1]
    print(f"clean MEG: min block SD mag {sd[mags].min() / 1e-15:.1f} fT (floor 5), grad {sd[~mags].min() / 1e-13:.1f} fT/cm (floor 5); "
          f"max deviation z {np.nanmax(det.values[k.DEVIATION - 1]):.2f}")  # fmt: skip


def test_mixed_eeg_meg_sources_switching_on_is_not_a_bad_channel():
    """The demo's stream: 5 s of noise, then the sources switch on. The MEG high-frequency ratio
    of a gradiometer changed by a robust z of 6 there (a clean channel flagged 'noisy_hf' in
    the EEG+MEG demo); judged over its type's median it stays clean."""
    import dataclasses

    from rtsource.config import Settings
    from rtsource.pipeline.simulated import simulate_recording

    s = Settings()
    s = dataclasses.replace(s, sensors=dataclasses.replace(s.sensors, modality="eeg+meg"),
                            simulate=dataclasses.replace(s.simulate, seed=1, baseline_seconds=5.0))
    rec = simulate_recording(s, seconds=60.0)  # as published: EEG in uV, MEG in T and T/m
    types = tuple("eeg" if t == "EEG" else ("grad" if u == "T/m" else "mag") for t, u in zip(rec.ch_types, rec.ch_units))
    scale = np.array([1e-6 if u == "uV" else 1.0 for u in rec.ch_units])
    det = BadChannelDetector(rec.ch_names, rec.sfreq, scale=scale, ch_types=types)
    assert run(det, np.ascontiguousarray(rec.data, dtype=np.float32)) == [] and det.bad_channels == ()


def test_mixed_eeg_meg_clean_then_faults(mixed_30s):
    names, types, x = mixed_30s
    assert {"eeg", "mag", "grad"} == set(types)
    det = BadChannelDetector(names, SFREQ, ch_types=types)
    assert run(det, x[: int(15 * SFREQ)]) == [] and det.bad_channels == ()
    mag = next(i for i, t in enumerate(types) if t == "mag")
    grad = [i for i, t in enumerate(types) if t == "grad"][17]
    y = x[int(15 * SFREQ) :].copy()
    rng = np.random.default_rng(3)
    y[:, mag] = 2e-12 + 1e-17 * rng.standard_normal(len(y))  # SQUID stuck: a DC value, 0.01 fT noise
    y[:, grad] += 8 * y[:, grad].std() * rng.standard_normal(len(y))  # a noisy gradiometer
    events = run(det, y)
    got = {e.channel: e.reason for e in events if e.kind == "bad"}
    assert set(got) == {names[mag], names[grad]}, got
    assert got[names[mag]] == "flat" and got[names[grad]] in ("noisy_hf", "noisy_deviation"), got


def test_volts_labelled_as_microvolts_gives_one_hint(clean_minute, caplog):
    names, x = clean_minute
    x = x[: int(8 * SFREQ)] * 1e-6  # the numbers are volts ...
    det = BadChannelDetector(names, SFREQ, scale=np.full(64, 1e-6))  # ... but the stream says uV
    with caplog.at_level("WARNING"):
        events = run(det, x)
    assert len(events) == 64 and {e.reason for e in events} == {"flat"}
    assert len(det.hints) == 1 and "all 64 EEG channels are flat" in det.hints[0] and "labelled as microvolts" in det.hints[0]
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1, "one message with the likely cause, not 64"


def test_rules_per_type_validation():
    with pytest.raises(ConfigError, match="flat_mag_ft"):
        BadChannelRules(flat_mag_ft=-1)
    with pytest.raises(ConfigError, match="noisy_grad_ft_cm"):
        BadChannelRules(noisy_grad_ft_cm=float("nan"))
    with pytest.raises(ChannelError, match="ch_types"):
        BadChannelDetector(["a", "b", "c", "d"], SFREQ, ch_types=["eeg", "eeg", "eeg", "eog"])
    assert BadChannelRules().limits("grad") == (5e-13, 4000e-13, 0.0)
