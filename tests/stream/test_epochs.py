"""The epoch engine: cuts against a NumPy twin, any marker/data order, averages and their noise."""

from __future__ import annotations

import numpy as np
import pytest

from rtsource.errors import ConfigError
from rtsource.stream.epochs import EpochEngine, EpochSpec, EpochWindow, FeatureWindow

SFREQ = 500.0
T0 = 1000.0  # LSL times are large numbers


def stream(n, n_ch, rng):
    x = rng.normal(size=(n, n_ch))
    ts = T0 + np.arange(n) / SFREQ
    return x, ts


def twin_epoch(x, ts, t, tmin, tmax, baseline):
    """Nearest sample to t, window of round(tmin*sfreq)..round(tmax*sfreq) samples, baseline mean removed."""
    idx = int(np.argmin(np.abs(ts - t)))
    a, b = int(round(tmin * SFREQ)), int(round(tmax * SFREQ))
    ep = x[idx + a : idx + b + 1].copy()
    if baseline is not None:
        b0, b1 = int(round(baseline[0] * SFREQ)) - a, int(round(baseline[1] * SFREQ)) - a + 1
        ep -= ep[b0:b1].mean(axis=0)
    return ep


SPEC = EpochSpec(
    events=(EpochWindow("target", -0.2, 0.8), EpochWindow("std", -0.1, 0.5)),
    baseline=(-0.1, 0.0),
    features=(FeatureWindow("p300", 0.25, 0.45), FeatureWindow("early", 0.0, 0.1)),
    buffer_s=5.0,
)


def markers_for(rng, n_samples, k):
    """k markers spread over the recording (away from its ends), random types and sub-sample times."""
    times = T0 + np.sort(rng.uniform(0.5, n_samples / SFREQ - 1.0, size=k))
    names = rng.choice(["target", "std"], size=k)
    return list(zip(names, times))


def feed(engine, x, ts, markers, order, rng, chunk=(1, 9, 40)):
    """Deliver data in random chunks and markers according to ``order``; returns all epochs."""
    out = []
    if order == "markers_first":
        for m in markers:
            out += engine.push_marker(*m)
    late = list(markers) if order == "markers_late" else []
    shuffled = list(markers)
    rng.shuffle(shuffled)
    i = 0
    while i < len(x):
        m = min(int(rng.choice(chunk)), len(x) - i)
        out += engine.push_data(x[i : i + m], ts[i : i + m])
        i += m
        if order == "interleaved":  # each marker arrives 0..300 ms after its time
            while markers and markers[0][1] + rng.uniform(0, 0.3) <= ts[i - 1]:
                out += engine.push_marker(*markers.pop(0))
        if order == "markers_late":  # each marker arrives 1.5 s after its time (data already there)
            while late and late[0][1] + 1.5 <= ts[i - 1]:
                out += engine.push_marker(*late.pop(0))
        if order == "shuffled" and i >= len(x) and shuffled:  # all at once, out of order, after all data
            for mk in shuffled:
                out += engine.push_marker(*mk)
            shuffled = []
    for m in late + (markers if order == "interleaved" else []):
        out += engine.push_marker(*m)
    return out


@pytest.mark.parametrize("order", ["markers_first", "interleaved", "markers_late", "shuffled"])
def test_every_marker_cut_exactly_once_in_any_order(order):
    rng = np.random.default_rng({"markers_first": 0, "interleaved": 1, "markers_late": 2, "shuffled": 3}[order])
    n = int(8 * SFREQ)  # 8 s; with buffer_s = 5 s, shuffled markers of the first seconds are too old
    x, ts = stream(n, 3, rng)
    markers = markers_for(rng, n, 12)
    eng = EpochEngine(SPEC, ["a", "b", "c"], SFREQ, max_chunk=64)
    epochs = feed(eng, x, ts, list(markers), order, rng)
    keys = [(e.event, e.marker_time) for e in epochs]
    assert len(keys) == len(set(keys)), "an epoch was emitted twice"
    c = eng.counts
    # every marker is decided exactly once (or still pending)
    assert c["markers"] == len(markers)
    assert c["accepted"] + c["too_old"] + c["rejected_gap"] + eng.pending == len(markers)
    assert c["accepted"] == len(epochs)
    if order != "shuffled":  # all arrive within the buffer's reach
        assert c["accepted"] == len(markers) and eng.pending == 0 and c["too_old"] == 0
    else:
        # the ring holds the last 5 s: exactly the markers whose window starts before it are too old
        first_kept = n - int(SPEC.buffer_s * SFREQ)
        offset = dict(target=int(round(-0.2 * SFREQ)), std=int(round(-0.1 * SFREQ)))
        expect_old = sum(int(np.argmin(np.abs(ts - t))) + offset[nm] < first_kept for nm, t in markers)
        assert c["too_old"] == expect_old > 0 and c["accepted"] == len(markers) - expect_old
    wins = {w.name: w for w in SPEC.events}
    for e in epochs:
        w = wins[e.event]
        np.testing.assert_allclose(e.data, twin_epoch(x, ts, e.marker_time, w.tmin, w.tmax, SPEC.baseline), atol=1e-12)
        assert e.data.shape[0] == len(e.times) and not e.data.flags.writeable
        # features: mean over [start, stop) after the marker
        i_p3 = (e.times >= 0.25 - 1e-9) & (e.times < 0.45 - 1e-9)
        np.testing.assert_allclose(e.features[0], e.data[i_p3].mean(axis=0), atol=1e-12)
    # duplicates of already handled markers are recognised, not re-cut
    again = sum((eng.push_marker(*m) for m in markers), [])
    assert again == [] and eng.counts["duplicate"] == len(markers)
    # ... also when re-measured clock offsets moved them by tens of microseconds
    jittered = sum((eng.push_marker(name, t + 4e-5 * (-1) ** i) for i, (name, t) in enumerate(markers)), [])
    assert jittered == [] and eng.counts["duplicate"] == 2 * len(markers)


def test_too_old_marker_is_counted_and_buffer_is_bounded():
    rng = np.random.default_rng(4)
    x, ts = stream(int(12 * SFREQ), 2, rng)
    eng = EpochEngine(EpochSpec(events=(EpochWindow("go", -0.2, 0.8),), buffer_s=3.0), ["a", "b"], SFREQ, max_chunk=100)
    for i in range(0, len(x), 100):
        eng.push_data(x[i : i + 100], ts[i : i + 100])
    assert eng._ring.shape[0] == int(3.0 * SFREQ)  # memory does not grow with the recording
    assert eng.oldest_time == pytest.approx(ts[-1] - 3.0 + 1 / SFREQ)
    assert eng.push_marker("go", ts[100]) == [] and eng.counts["too_old"] == 1
    ok = eng.push_marker("go", ts[-800])  # still buffered
    assert len(ok) == 1 and eng.counts["accepted"] == 1
    assert eng.push_marker("nogo", ts[-800]) == [] and eng.counts["unknown"] == 1
    # a marker before the stream's first sample: its window never existed
    eng2 = EpochEngine(EpochSpec(events=(EpochWindow("go", -0.2, 0.8),)), ["a", "b"], SFREQ, max_chunk=600)
    eng2.push_marker("go", ts[0] + 0.05)
    eng2.push_data(x[:600], ts[:600])
    assert eng2.counts["too_old"] == 1 and eng2.pending == 0


def test_pending_list_is_bounded():
    eng = EpochEngine(EpochSpec(events=(EpochWindow("go"),), max_pending=4), ["a"], SFREQ)
    for k in range(10):
        eng.push_marker("go", T0 + k)
    assert eng.pending == 4 and eng.counts["overflow"] == 6


def test_flagged_and_gapped_epochs_are_rejected_not_averaged():
    rng = np.random.default_rng(5)
    n = int(6 * SFREQ)
    x, ts = stream(n, 2, rng)
    flags = np.zeros(n, np.uint8)
    flags[int(1.3 * SFREQ)] = 1  # inside the epoch of the marker at 1.0 s
    ts[int(4.2 * SFREQ) :] += 0.1  # a 100 ms gap inside the epoch at 4.0 s
    x[int(3.2 * SFREQ), 1] = np.nan  # inside the epoch at 3.0 s
    eng = EpochEngine(EpochSpec(events=(EpochWindow("go", -0.2, 0.8),)), ["a", "b"], SFREQ, max_chunk=n)
    for t in (1.0, 2.0, 3.0, 4.0):
        eng.push_marker("go", T0 + t)
    eps = eng.push_data(x, ts, flags=flags)
    assert [e.marker_time - T0 for e in eps] == pytest.approx([2.0])
    c = eng.counts
    assert (c["rejected_flag"], c["rejected_nonfinite"], c["rejected_gap"], c["accepted"]) == (1, 1, 1, 1)
    ev = eng.evoked("go")
    assert ev.count == 1 and np.allclose(ev.average, eps[0].data)
    # with reject_flagged = False the flagged epoch is kept; the NaN one is still rejected
    eng2 = EpochEngine(EpochSpec(events=(EpochWindow("go", -0.2, 0.8),), reject_flagged=False), ["a", "b"], SFREQ, max_chunk=n)
    for t in (1.0, 3.0):
        eng2.push_marker("go", T0 + t)
    assert len(eng2.push_data(x, ts, flags=flags)) == 1 and eng2.counts["rejected_nonfinite"] == 1


def evoked_run(n_epochs, noise_sd, rng, latency=0.12, n_ch=20):
    """n_ch ROIs; ROI 0 carries a 1-unit Gaussian bump (sd 20 ms) at ``latency`` after each marker."""
    period = 1.3
    n = int((n_epochs * period + 2) * SFREQ)
    x, ts = stream(n, n_ch, rng)
    x *= noise_sd
    t_m = T0 + 1.0 + period * np.arange(n_epochs) + rng.uniform(0, 0.2, n_epochs)
    t = ts[:, None] - t_m[None, :]
    x[:, 0] += np.exp(-0.5 * ((t - latency) / 0.02) ** 2).sum(axis=1)
    return x, ts, t_m


def test_running_average_noise_falls_as_one_over_sqrt_n_and_latency_is_recovered(capsys):
    rng = np.random.default_rng(6)
    x, ts, t_m = evoked_run(64, 2.0, rng)
    spec = EpochSpec(events=(EpochWindow("stim", -0.2, 0.8),), baseline=(-0.2, 0.0), ewma_alpha=0.05)
    eng = EpochEngine(spec, [f"r{i}" for i in range(20)], SFREQ, max_chunk=50)
    residual, latency = {}, {}
    k = sent = 0
    for i in range(0, len(x), 50):
        for e in eng.push_data(x[i : i + 50], ts[i : i + 50]):
            assert e.index == k
            k += 1
        while sent < len(t_m) and t_m[sent] <= ts[min(i + 49, len(ts) - 1)]:  # markers arrive with their sample
            eng.push_marker("stim", t_m[sent])
            sent += 1
        ev = eng.evoked("stim")
        if ev.count in (1, 4, 16, 20, 64) and ev.count not in residual:
            residual[ev.count] = ev.average[:, 1:].std()  # noise-only ROIs
            latency[ev.count] = ev.times[np.argmax(ev.average[:, 0])]
    assert eng.counts["accepted"] == 64
    ratios = {n: residual[n] / residual[1] * np.sqrt(n) for n in residual}
    with capsys.disabled():
        print("\nresidual noise of the running average (noise-only ROIs): n, sd, sd * sqrt(n) / sd_1, peak latency (s)")
        for n_ in sorted(residual):
            print(f"  {n_:3d}  {residual[n_]:.4f}  {ratios[n_]:.3f}  {latency[n_]:.3f}")
    for n_ in (4, 16, 64):
        assert 0.85 < ratios[n_] < 1.15
    assert abs(latency[20] - 0.12) <= 0.010
    # the EWMA is the bias-corrected exponential average of the same epochs
    ev = eng.evoked("stim")
    true = np.exp(-0.5 * ((ev.times - 0.12) / 0.02) ** 2)
    r_avg, r_ewma = np.corrcoef(ev.average[:, 0], true)[0, 1], np.corrcoef(ev.ewma[:, 0], true)[0, 1]
    assert r_avg > 0.4 and r_ewma > 0.25, (r_avg, r_ewma)  # 64 epochs vs an effective ~25 (alpha 0.05)


def test_ewma_matches_its_twin():
    rng = np.random.default_rng(7)
    x, ts = stream(int(10 * SFREQ), 2, rng)
    a = 0.3
    eng = EpochEngine(EpochSpec(events=(EpochWindow("go", -0.1, 0.3),), baseline=None, ewma_alpha=a), ["a", "b"], SFREQ, max_chunk=len(x))
    for t in (1.0, 2.5, 4.0, 6.0):
        eng.push_marker("go", T0 + t)
    eps = eng.push_data(x, ts)
    e = w = 0.0
    for ep in eps:
        e = (1 - a) * e + a * ep.data
        w = (1 - a) * w + a
    np.testing.assert_allclose(eng.evoked("go").ewma, e / w, atol=1e-12)
    np.testing.assert_allclose(eng.evoked("go").average, np.mean([ep.data for ep in eps], axis=0), atol=1e-12)


def test_spec_errors_name_the_setting():
    with pytest.raises(ConfigError, match="tmin"):
        EpochWindow("go", 0.5, 0.1)
    with pytest.raises(ConfigError, match="baseline"):
        EpochSpec(events=(EpochWindow("go", -0.1, 0.5),), baseline=(-0.3, 0.0))
    with pytest.raises(ConfigError, match="buffer_s"):
        EpochSpec(events=(EpochWindow("go", -0.2, 0.8),), buffer_s=1.0)
    with pytest.raises(ConfigError, match="outside"):
        EpochSpec(events=(EpochWindow("go", -0.2, 0.8),), features=(FeatureWindow("late", 0.5, 1.0),))
    with pytest.raises(ConfigError, match="not configured"):
        EpochEngine(EpochSpec(events=(EpochWindow("go"),)), ["a"], SFREQ).evoked("stop")
    eng = EpochEngine(EpochSpec(events=(EpochWindow("go"),)), ["a", "b"], SFREQ, max_chunk=10)
    assert eng.feature_labels() == ()
    with pytest.raises(ConfigError, match="max_chunk"):
        eng.push_data(np.zeros((20, 2)), np.zeros(20))
