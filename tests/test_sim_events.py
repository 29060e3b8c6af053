"""Simulator event-locked sources and coupled pairs (rtsource.sim_events) and their use by the simulator."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from rtsource.config import Settings
from rtsource.errors import ConfigError
from rtsource.sim_events import CoupledPair, EventedSources, EventSchedule, EvokedSource
from rtsource.stream.bandpower import Band
from rtsource.stream.connectivity import ConnectivitySpec, ConnectivityStage
from rtsource.stream.epochs import EpochEngine, EpochSpec, EpochWindow

SFREQ = 500.0


def run_blocks(src, n_total, block):
    moms, marks = [], []
    for i in range(0, n_total, block):
        m, mk = src.next(min(block, n_total - i))
        moms.append(m)
        marks += mk
    return np.vstack(moms), marks


def test_evoked_responses_follow_the_markers_and_blocks_do_not_matter():
    ev = EvokedSource((0.0, 0.0, 0.0), amplitude_nam=30.0, latency_s=0.12, width_s=0.02, event="tone")
    sched = EventSchedule(events=("tone", "other"), interval_s=0.5, jitter_s=0.1)
    a, marks_a = run_blocks(EventedSources(SFREQ, evoked=[ev], schedule=sched, seed=1), 5000, 7)
    b, marks_b = run_blocks(EventedSources(SFREQ, evoked=[ev], schedule=sched, seed=1), 5000, 500)
    np.testing.assert_allclose(a, b, atol=1e-20)
    assert marks_a == marks_b and [m[0] for m in marks_a[:3]] == ["tone", "other", "tone"]
    gaps = np.diff([k for _, k in marks_a]) / SFREQ
    assert np.all((gaps >= 0.5) & (gaps < 0.6 + 1e-9))
    for name, k in marks_a[:-1]:
        seg = a[k : k + int(0.4 * SFREQ), 0]
        if name == "tone":
            assert abs(np.argmax(seg) / SFREQ - 0.12) <= 1 / SFREQ and seg.max() == pytest.approx(30e-9, rel=1e-3)
        else:
            assert seg.max() < 1e-12  # no response to the other event
    with pytest.raises(ConfigError, match="never sends"):
        EventedSources(SFREQ, evoked=[ev], schedule=EventSchedule(events=("x",)))


@pytest.mark.parametrize("lag_deg, coupling", [(90.0, 0.8), (0.0, 0.8), (90.0, 0.0)])
def test_coupled_pair_has_the_configured_lag_and_strength(lag_deg, coupling, capsys):
    pair = CoupledPair((0, 0, 0), (1, 1, 1), frequency_hz=10.0, bandwidth_hz=2.0, lag_deg=lag_deg, coupling=coupling)
    m, _ = run_blocks(EventedSources(SFREQ, pairs=[pair], seed=2), int(60 * SFREQ), 50)
    rng = np.random.default_rng(0)
    x = m / m.std() + 0.3 * rng.normal(size=m.shape)  # some sensor-like noise
    stage = ConnectivityStage(ConnectivitySpec(bands=(Band("alpha", 8.0, 12.0),), measures=("coh", "imcoh", "wpli"), window_s=2.0, segment_s=0.5), ["a", "b"], SFREQ, 50)
    vals, _ = stage.run_offline(x, np.arange(len(x)) / SFREQ)
    coh, imcoh, wpli = np.nanmedian(vals, axis=0)
    with capsys.disabled():
        print(f"\npair lag {lag_deg:g} deg, coupling {coupling:g}: median coh {coh:.2f}, imcoh {imcoh:+.2f}, wpli {wpli:.2f} (2 s windows)")
    if coupling == 0:
        assert coh < 0.5 and abs(imcoh) < 0.2
    elif lag_deg == 90:
        assert imcoh > 0.5 and wpli > 0.8  # A leads B: positive imaginary part
    else:
        assert coh > 0.6 and abs(imcoh) < 0.1


@pytest.mark.slow
def test_simulator_adds_the_evoked_source_and_its_latency_is_recovered():
    """Template head, 64 EEG channels, 30 nAm evoked source at 1 uV sensor noise: the extra
    moments reach the sensors through the simulator's own gain, and 20 averaged epochs at the
    best channel recover the latency within 10 ms."""
    from rtsource.simulator import SignalGenerator

    s = Settings()
    sim = dataclasses.replace(s.simulate, sources=(), sensor_noise_uv=1.0)
    ev = EvokedSource((-38.0, -22.0, 58.0), amplitude_nam=30.0, latency_s=0.1, width_s=0.02)
    extra = EventedSources(sim.sfreq, evoked=[ev], schedule=EventSchedule(interval_s=0.8, jitter_s=0.2), seed=3)
    g = SignalGenerator(sim, s.sensors.channels, extra=extra)
    plain = SignalGenerator(sim, s.sensors.channels)
    ch = int(np.argmax(np.abs(g._extra_gain[0] - g._extra_gain[0].mean())))
    eng = EpochEngine(EpochSpec(events=(EpochWindow("stim", -0.2, 0.5),), baseline=(-0.2, 0.0)), ["best"], sim.sfreq, max_chunk=50)
    t0 = 100.0
    for i in range(int(23 * sim.sfreq) // 50):
        x, _ = g.next(50)
        y, _ = plain.next(50)
        np.testing.assert_allclose(x - y, g.extra_moments @ g._extra_gain, atol=1e-15)
        car = x - x.mean(axis=1, keepdims=True)
        ts = t0 + (i * 50 + np.arange(50)) / sim.sfreq
        for name, k in g.markers:
            eng.push_marker(name, t0 + k / sim.sfreq)
        eng.push_data(car[:, [ch]], ts)
    evk = eng.evoked("stim")
    assert evk.count >= 20
    sign = np.sign(g._extra_gain[0, ch] - g._extra_gain[0].mean())
    # Compared on the sample grid: 0.09 - 0.1 is 0.010000000000000009 in floating point.
    peak_samples = round((evk.times[np.argmax(sign * evk.average[:, 0])] - 0.1) * sim.sfreq)
    assert abs(peak_samples) <= round(0.010 * sim.sfreq)


def test_simulator_marker_outlet_over_lsl_feeds_the_epoch_engine():
    """Real LSL: the simulator's EEG and marker outlets; every marker received is cut once."""
    import threading

    import pylsl

    from rtsource.simulator import Simulator

    from .stream.lsl_helpers import Collector, unique

    name = unique("simev")
    s = Settings()
    sim_s = dataclasses.replace(s.simulate, stream_name=name, source_id=name, chunk_size=25, n_noise_sources=50)
    ev = EvokedSource((-38.0, -22.0, 58.0), amplitude_nam=30.0, latency_s=0.1)
    extra = EventedSources(sim_s.sfreq, evoked=[ev], schedule=EventSchedule(interval_s=0.4, jitter_s=0.1, first_s=0.5), seed=4)
    sim = Simulator(sim_s, s.sensors.channels, extra=extra)
    eeg = Collector(name)
    found = pylsl.resolve_byprop("name", name + "-markers", minimum=1, timeout=30)
    assert found
    inlet = pylsl.StreamInlet(found[0])
    inlet.open_stream(timeout=10)
    received, stop = [], threading.Event()

    def pull():
        while not stop.is_set():
            sample, t = inlet.pull_sample(timeout=0.1)
            if sample is not None:
                received.append((sample[0], t + inlet.time_correction()))

    th = threading.Thread(target=pull, daemon=True)
    th.start()
    sim.run(duration=3.0)
    import time

    time.sleep(0.5)
    stop.set()
    th.join(timeout=5)
    eeg.stop()
    data, ts = eeg.data()
    assert len(ts) == 1500
    expected = [(n, sim.t0 + k / sim_s.sfreq) for n, k in extra_markers(sim_s.sfreq, extra.schedule, 1500)]
    assert [r[0] for r in received] == [e[0] for e in expected]
    np.testing.assert_allclose([r[1] for r in received], [e[1] for e in expected], atol=1e-3)
    eng = EpochEngine(EpochSpec(events=(EpochWindow("stim", -0.2, 0.5),)), ["Cz"], sim_s.sfreq, max_chunk=1500)
    for m in received[: len(received) // 2]:  # half the markers before the data, half after
        eng.push_marker(*m)
    eng.push_data(data[:, [list(s.sensors.channels).index("Cz")]], ts)
    for m in received[len(received) // 2 :]:
        eng.push_marker(*m)
    in_range = sum(t - 0.2 >= ts[0] and t + 0.5 <= ts[-1] for _, t in received)
    assert eng.counts["accepted"] == in_range >= 4 and eng.counts["duplicate"] == 0


def extra_markers(sfreq, schedule, n):
    """The markers a fresh schedule with the same seed emits in n samples (twin of EventedSources)."""
    return run_blocks(EventedSources(sfreq, evoked=[EvokedSource((0, 0, 0))], schedule=schedule, seed=4), n, n)[1]


@pytest.mark.slow
def test_acceptance_evoked_source_through_bundle_roi_and_epochs(capsys):
    """Issue 18's acceptance: the simulator's evoked source (30 nAm, 1 uV sensor noise, its
    1/f background) through a template dSPM bundle and a ``mean_flip`` ROI around it: the
    running average recovers the latency within 10 ms after 20 epochs, and its noise (the
    average of the noise-only part, measured) falls as 1/sqrt(n)."""
    from rtsource.build import build_bundle
    from rtsource.config import NoiseCovSettings
    from rtsource.inverse.roi import roi_from_sphere
    from rtsource.roi_operator import RoiOperator
    from rtsource.simulator import SignalGenerator
    from rtsource.stream.roi import RoiStage

    s = dataclasses.replace(Settings(), noise_cov=NoiseCovSettings(source="ad_hoc"))
    sim = dataclasses.replace(s.simulate, sources=(), sensor_noise_uv=1.0)
    bundle = build_bundle(s, sfreq=SFREQ)
    pos = (-38.0, -22.0, 58.0)
    ev = EvokedSource(pos, amplitude_nam=30.0, latency_s=0.1, width_s=0.02)
    extra = EventedSources(SFREQ, evoked=[ev], schedule=EventSchedule(interval_s=0.9, jitter_s=0.2), seed=5)
    g = SignalGenerator(sim, s.sensors.channels, extra=extra)
    roi = roi_from_sphere(bundle.sources, "M1l", pos, 15.0)
    op = RoiOperator.from_bundle(bundle, [roi], "mean_flip")
    stage_all = RoiStage(op, 50, channel_scale=np.full(bundle.n_channels, 1e-6))
    stage_noise = RoiStage(op, 50, channel_scale=np.full(bundle.n_channels, 1e-6))
    spec = EpochSpec(events=(EpochWindow("stim", -0.2, 0.5),), baseline=(-0.2, 0.0))
    eng_all = EpochEngine(spec, ["M1l"], SFREQ, max_chunk=50)
    eng_noise = EpochEngine(spec, ["M1l"], SFREQ, max_chunk=50)
    t0 = 500.0
    latency, noise = {}, {}
    for i in range(int(70 * SFREQ) // 50):
        x, _ = g.next(50)
        ts = t0 + (i * 50 + np.arange(50)) / SFREQ
        for name, k in g.markers:
            eng_all.push_marker(name, t0 + k / SFREQ)
            eng_noise.push_marker(name, t0 + k / SFREQ)
        evoked_part = g.extra_moments @ g._extra_gain
        eng_all.push_data(stage_all.process((x * 1e6).astype(np.float32), 50).copy(), ts)
        eng_noise.push_data(stage_noise.process(((x - evoked_part) * 1e6).astype(np.float32), 50).copy(), ts)
        n = eng_all.evoked("stim").count
        if n in (1, 4, 16, 20, 64) and n not in latency:
            a = eng_all.evoked("stim")
            latency[n] = a.times[np.argmax(np.abs(a.average[:, 0]))]
            noise[n] = eng_noise.evoked("stim").average[:, 0].std()
    clean = eng_all.evoked("stim").average[:, 0] - eng_noise.evoked("stim").average[:, 0]  # the evoked part alone
    clean_latency = a.times[np.argmax(np.abs(clean))]
    with capsys.disabled():
        print(f"\nnoise-free ROI response peaks at {clean_latency:.3f} s, |peak| {np.abs(clean).max():.3g}")
        print("\nROI running average: n, peak latency (s), noise sd, noise sd * sqrt(n) / sd(1)")
        for n in sorted(latency):
            print(f"  {n:3d}  {latency[n]:.3f}  {noise[n]:.3g}  {noise[n] * np.sqrt(n) / noise[1]:.2f}")
    assert abs(clean_latency - 0.1) < 1e-9  # no delay in the chain
    assert abs(latency[20] - 0.1) <= 0.010 + 1e-9
    for n in (16, 64):
        assert 0.6 < noise[n] * np.sqrt(n) / noise[1] < 1.6


def test_simulate_config_publishes_event_locked_sources_and_their_markers():
    """[[simulate.evoked]] / [[simulate.coupled]] reach the simulator (rtsource simulate): its own
    marker outlet sends one marker per event, stamped with the LSL time of the sample it refers to."""
    import pylsl

    from rtsource.config import settings_from_dict
    from rtsource.simulator import Simulator

    from .stream.lsl_helpers import unique

    name = unique("sim-ev")
    s = settings_from_dict({"simulate": {
        "spacing": "ico4", "n_noise_sources": 0, "sources": [], "stream_name": name, "source_id": name, "truth_stream": False, "chunk_size": 25,
        "evoked": [{"position_mm": [-38.0, -22.0, 58.0], "event": "tone"}], "coupled": [{}], "event_interval_s": 0.3, "event_jitter_s": 0.0,
    }})  # fmt: skip
    sim = Simulator.from_settings(s)
    assert sim.generator.extra.n_sources == 3 and sim.markers is not None
    found = pylsl.resolve_byprop("name", name + "-markers", minimum=1, timeout=10)
    inlet = pylsl.StreamInlet(found[0])
    inlet.open_stream(timeout=10)
    assert sim.markers.wait_for_consumers(10)
    sim.run(duration=2.0)
    got = []
    while True:
        sample, t = inlet.pull_sample(timeout=1.0)
        if sample is None:
            break
        got.append((sample[0], t))
    # first marker at 1 s, then every 0.3 s: 1.0, 1.3, 1.6, 1.9
    assert [g[0] for g in got] == ["tone"] * 4
    np.testing.assert_allclose([g[1] - sim.t0 for g in got], [1.0, 1.3, 1.6, 1.9], atol=1e-6)
