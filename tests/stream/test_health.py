"""Honest counters, dead channels and a wrong rate, through the real loop over real LSL.

Faults are made real: an outlet that refuses the chunk (wrong width), a channel of NaN from
the producer, timestamps at another rate than the header says.
"""

from __future__ import annotations

import dataclasses
import json
import time

import numpy as np
import pylsl
import pytest

from rtsource.errors import StreamError
from rtsource.stream.health import NonFiniteGuard, RateMonitor
from rtsource.stream.inlet import StreamSelector
from rtsource.stream.loop import LoopOptions, StreamLoop
from rtsource.stream.outputs import EVENTS_SUFFIX, TELEMETRY_CHANNELS, TELEMETRY_SUFFIX

from ..conftest import make_bundle
from .lsl_helpers import Collector, eeg_outlet, unique
from .test_reliability import events_of, offline, push, start_loop, wait_for

SFREQ = 500.0
CH = tuple(f"E{i:02d}" for i in range(8))


def test_a_failed_push_is_lost_and_reported():
    """lost = in - out - skipped is measured: chunks the outlet refuses show up in it."""
    bundle = make_bundle(n_chan=8, n_src=30, ch_names=CH)
    in_name, out_name = unique("pf-eeg"), unique("pf-src")
    rng = np.random.default_rng(0)
    outlet = eeg_outlet(in_name, CH, sfreq=SFREQ, source_id=in_name)
    loop, thread = start_loop(bundle, in_name, out_name)
    out = Collector(out_name)
    events = Collector(out_name + EVENTS_SUFFIX)
    tel = Collector(out_name + TELEMETRY_SUFFIX)
    assert outlet.wait_for_consumers(20)
    x = rng.normal(size=(3000, 8)).astype(np.float32) * 10
    stamps = 30.0 + np.arange(3000) / SFREQ
    push(outlet, x[:1000], stamps[:1000])
    assert wait_for(lambda: out.n_samples >= 1000)
    good = loop.outlet
    # a real outlet of the wrong width: pylsl refuses every chunk pushed to it
    info = pylsl.StreamInfo(unique("pf-wrong"), "Sources", bundle.n_sources + 1, SFREQ, pylsl.cf_float32, unique("pf-wrong"))
    loop.outlet = pylsl.StreamOutlet(info)
    push(outlet, x[1000:1700], stamps[1000:1700])
    assert wait_for(lambda: loop.stats.samples_in >= 1700)
    loop.outlet = good
    push(outlet, x[1700:], stamps[1700:])
    assert wait_for(lambda: out.n_samples >= 2300)
    time.sleep(1.2)  # one more telemetry sample after the last chunk
    loop.stop()
    thread.join(10)
    for c in (out, events, tel):
        c.stop()
    s = loop.stats
    assert s.samples_in == 3000 and s.samples_out == 2300 and s.skipped == 0
    assert s.lost == 700 and s.push_failures > 0
    assert s.summary()["lost"] == 700
    data, got = out.data()
    assert np.array_equal(got, np.r_[stamps[:1000], stamps[1700:]])
    labels = [label for label, _ in TELEMETRY_CHANNELS]
    rows = [dict(zip(labels, r)) for r in tel.data()[0]]
    assert rows[-1]["lost"] == 700 and rows[-1]["samples_in"] == 3000 and rows[-1]["push_failures"] == s.push_failures
    evs = events_of(events)
    failed = [e for e in evs if e["event"] == "push_failed"]
    back = [e for e in evs if e["event"] == "push_ok"]
    assert len(failed) == 1 and failed[0]["start"] == pytest.approx(stamps[1000]) and "channels" in failed[0]["error"]
    assert len(back) == 1 and back[0]["lost"] == 700 and back[0]["first"] == pytest.approx(stamps[1700])
    stopped = [e for e in evs if e["event"] == "stopped"]
    assert stopped[-1]["lost"] == 700
    loop.close()


def test_latest_only_skip_is_not_a_gap():
    bundle = make_bundle(n_chan=8, n_src=30, ch_names=CH)
    in_name, out_name = unique("lg-eeg"), unique("lg-src")
    outlet = eeg_outlet(in_name, CH, sfreq=SFREQ, source_id=in_name)
    loop = StreamLoop(bundle, LoopOptions(selector=StreamSelector(in_name), output_name=out_name, resolve_timeout=20, latest_only=True, max_chunk=64))
    loop.connect()
    out = Collector(out_name)
    thread = loop.run_in_thread()
    assert outlet.wait_for_consumers(20)
    stamps = 10.0 + np.arange(4000) / SFREQ
    push(outlet, np.ones((500, 8), np.float32), stamps[:500])  # kept up with
    assert wait_for(lambda: loop.stats.samples_in >= 500)
    outlet.push_chunk(np.ones((3000, 8), np.float32), stamps[500:3500].tolist())  # 6 s behind at once
    assert wait_for(lambda: loop.stats.samples_in >= 3500)
    push(outlet, np.ones((500, 8), np.float32), stamps[3500:])
    assert wait_for(lambda: loop.stats.samples_in >= 4000)
    time.sleep(0.3)
    loop.stop()
    thread.join(10)
    out.stop()
    s = loop.stats
    assert s.skipped > 0 and s.lost == 0 and s.samples_out == out.n_samples == 4000 - s.skipped
    assert s.gaps == 0 and s.gap_seconds == 0.0, "a deliberate skip is reported as skipped, not also as a gap"
    skipped = [e for e in loop.events.recent if e["event"] == "skipped"]
    assert sum(e["n_samples"] for e in skipped) == s.skipped
    loop.close()


# ---- the rate ----------------------------------------------------------------------------


def test_rate_monitor_windows():
    mon = RateMonitor(500.0, window_s=10.0, tolerance=0.02, startup_s=2.0)
    t = 0.0
    changes = []
    for rate in (500.0,) * 1500 + (480.0,) * 1500 + (500.0,) * 1500:  # 10-sample chunks
        ts = t + np.arange(10) / rate
        changes.append(mon.update(ts[0], ts[-1], 10))
        t = ts[-1] + 1 / rate
    kinds = [c for c in changes if c]
    assert kinds == ["off", "back"]
    mon = RateMonitor(500.0)
    ts = np.arange(2000) / 250.0
    got = [mon.update(ts[i], ts[i + 9], 10) for i in range(0, 2000, 10)]
    assert "refuse" in got and mon.measured == pytest.approx(250.0, rel=1e-3)
    assert got.index("refuse") == 50  # after 2 s of timestamps


def test_rate_off_by_a_few_percent_is_an_event():
    bundle = make_bundle(n_chan=8, n_src=30, ch_names=CH)
    in_name, out_name = unique("rt-eeg"), unique("rt-src")
    outlet = eeg_outlet(in_name, CH, sfreq=SFREQ, source_id=in_name)
    loop, thread = start_loop(bundle, in_name, out_name)
    out = Collector(out_name)
    assert outlet.wait_for_consumers(20)
    n = 6000  # 12.5 s of timestamps at 480 Hz (4 % slow); pushed faster than real time
    stamps = 5.0 + np.arange(n) / 480.0
    push(outlet, np.zeros((n, 8), np.float32), stamps, chunk=50)
    assert wait_for(lambda: out.n_samples >= n)
    loop.stop()
    thread.join(10)
    out.stop()
    ev = [e for e in loop.events.recent if e["event"] == "rate_mismatch"]
    assert len(ev) == 1 and ev[0]["measured_hz"] == pytest.approx(480.0, rel=1e-3) and ev[0]["declared_hz"] == SFREQ
    assert loop.error is None and loop.stats.rate_mismatches == 1 and loop.stats.lost == 0
    assert loop.stats.effective_rate_hz == pytest.approx(480.0, rel=1e-3)
    loop.close()


def test_clearly_wrong_rate_is_refused_at_start():
    """Declares 500 Hz, delivers 250 Hz (timestamps in real time): the loop stops with a message."""
    bundle = make_bundle(n_chan=8, n_src=30, ch_names=CH)
    in_name, out_name = unique("rr-eeg"), unique("rr-src")
    outlet = eeg_outlet(in_name, CH, sfreq=SFREQ, source_id=in_name)
    loop, thread = start_loop(bundle, in_name, out_name)
    assert outlet.wait_for_consumers(20)
    stamps = 5.0 + np.arange(1500) / 250.0
    push(outlet, np.zeros((1500, 8), np.float32), stamps, chunk=25)
    thread.join(20)
    assert not thread.is_alive(), "the loop kept running on a stream with a wrong rate"
    assert isinstance(loop.error, StreamError)
    msg = str(loop.error)
    assert "declares 500 Hz but delivers 250 Hz" in msg and "nominal rate" in msg
    assert any(e["event"] == "rate_mismatch" and e.get("action") == "refused" for e in loop.events.recent)
    loop.close()


# ---- dead channels -------------------------------------------------------------------------


def test_guard_runs_and_episodes():
    names = [f"E{i}" for i in range(8)]
    g = NonFiniteGuard(names, np.arange(8), 500.0, exclude_after_s=0.1, restore_after_s=1.0)
    x = np.zeros((10, 8), np.float32)
    assert not g.observe(x, 10, False) and g.excluded == ()
    x[3, 2] = np.nan  # an isolated NaN: no exclusion
    assert not g.observe(x, 10, True)
    x[:, 2] = np.nan
    changes = [g.observe(x, 10, True) for _ in range(5)]  # 50 samples = 0.1 s
    assert [bool(c) for c in changes] == [False] * 4 + [True] and changes[-1].excluded == ("E2",)
    x[:, :5] = np.nan  # five of eight dead at once: a dropout, not a dead electrode
    assert all(not g.observe(x, 10, True) for _ in range(10)) and g.excluded == ("E2",)
    x[:] = 0.0
    restored = [g.observe(x, 10, False) for _ in range(50)]
    assert [bool(c) for c in restored].index(True) == 49 and restored[-1].restored == ("E2",) and g.excluded == ()
    assert g.nan_rows(1.0, 1.1, 3) and not g.nan_rows(1.2, 1.3, 2)
    assert not g.episode_over(2.0) and g.episode_over(2.31)
    assert g.close_episode() == (1.0, 1.3, 5)


@pytest.fixture(scope="module")
def real_bundle():
    """A small real template operator (64 channels, 600 sources) that can be rebuilt without channels."""
    from rtsource.anatomy.template import load_template, template_source_space
    from rtsource.build import build_bundle
    from rtsource.config import NoiseCovSettings, Settings
    from rtsource.forward.head_model import SphereHead, sphere_model_for_template
    from rtsource.forward.leadfield import make_leadfield
    from rtsource.sensors.montage import CAP_64, standard_montage

    s = dataclasses.replace(Settings(), noise_cov=NoiseCovSettings(source="ad_hoc"))
    dense = template_source_space("ico5")
    sources = dense.subset(np.arange(0, dense.n_sources, 34)[:600].tolist(), name="fsaverage-ico5-600")
    head = SphereHead(sphere_model_for_template(load_template(), s.forward.relative_radii, s.forward.conductivities))
    slf = make_leadfield(sources, standard_montage("standard_1005").pick(CAP_64), head, use_cache=False)
    return build_bundle(s, sfreq=SFREQ, leadfield=slf)


def start_loop_rebuilding(bundle, in_name, out_name):
    """start_loop with the offline side's rebuilder (excluding a channel rebuilds the operator)."""
    from rtsource.session import operator_rebuilder

    options = LoopOptions(selector=StreamSelector(in_name, "EEG", in_name), output_name=out_name, resolve_timeout=20)
    loop = StreamLoop(bundle, options, rebuilder=operator_rebuilder())
    loop.connect()
    return loop, loop.run_in_thread()


def test_dead_channel_is_excluded_and_taken_back(real_bundle):
    """One channel of NaN for 4 s: NaN output only until the hot swap, one episode, then back."""
    from rtsource.sensors.montage import CAP_64

    bundle = real_bundle
    in_name, out_name = unique("dead-eeg"), unique("dead-src")
    outlet = eeg_outlet(in_name, CAP_64, sfreq=SFREQ, source_id=in_name)
    loop, thread = start_loop_rebuilding(bundle, in_name, out_name)
    out = Collector(out_name)
    events = Collector(out_name + EVENTS_SUFFIX)
    assert outlet.wait_for_consumers(20)
    assert wait_for(lambda: loop.stats.hot_swap_ready, 60)
    rng = np.random.default_rng(3)
    n = 4500
    x = (rng.normal(size=(n, 64)) * 10).astype(np.float32)
    cz = CAP_64.index("Cz")
    x[1000:3000, cz] = np.nan  # the electrode dies for 4 s
    stamps = 60.0 + np.arange(n) / SFREQ
    push(outlet, x, stamps, pace=0.02)  # real time: 10 samples per 20 ms
    assert wait_for(lambda: out.n_samples >= n, 60)
    time.sleep(0.3)
    loop.stop()
    thread.join(10)
    out.stop()
    events.stop()
    data, got = out.data()
    assert np.array_equal(got, stamps), "every sample exactly once, in order"
    nan_rows = np.flatnonzero(np.isnan(data).any(axis=1))
    s = loop.stats
    assert len(nan_rows) == s.nan_samples > 0 and s.lost == 0
    # NaN only from the first dead sample until the swap (exclusion after 0.1 s + rebuild)
    assert nan_rows[0] == 1000 and np.array_equal(nan_rows, np.arange(1000, 1000 + len(nan_rows)))
    assert len(nan_rows) < 0.1 * SFREQ + 0.5 * SFREQ, f"{len(nan_rows)} NaN samples: the swap took too long"
    assert np.all(np.isfinite(data[nan_rows[-1] + 1 :]))
    evs = events_of(events)
    nan_events = [e for e in evs if e["event"] == "nan"]
    assert [e["state"] for e in nan_events] == ["start", "end"], "one event at the start of the episode, one at its end"
    assert nan_events[0]["channels"] == ["Cz"] and nan_events[1]["n_samples"] == len(nan_rows)
    excl = [(e["channel"], e["action"]) for e in evs if e["event"] == "nonfinite_channel"]
    assert excl == [("Cz", "excluded"), ("Cz", "restored")]
    swaps = [e for e in evs if e["event"] == "operator_swap"]
    assert [sw["bad_channels"] for sw in swaps] == [["Cz"], []]
    assert s.excluded_channels == 0 and not any(e["event"] == "rate_mismatch" for e in evs)
    # while Cz is out, the output is the operator rebuilt without it
    from rtsource.inverse.rebuild import rebuild_without_channels

    nb = rebuild_without_channels(bundle, ["Cz"])
    keep = [CAP_64.index(c) for c in nb.ch_names]
    part = slice(nan_rows[-1] + 1, 3000)
    expected = offline(nb, x[part][:, keep] * 1.0)
    assert np.allclose(data[part], expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())
    # after it came back (finite for 1 s) the full operator again
    full = offline(bundle, x[4200:])
    assert np.allclose(data[4200:], full, rtol=1e-3, atol=1e-4 * np.abs(full).max())
    loop.close()


# ---- units ---------------------------------------------------------------------------------


def test_volts_labelled_as_microvolts_is_a_unit_warning():
    bundle = make_bundle(n_chan=8, n_src=30, ch_names=CH)
    in_name, out_name = unique("uw-eeg"), unique("uw-src")
    outlet = eeg_outlet(in_name, CH, sfreq=SFREQ, source_id=in_name)  # says microvolts
    loop, thread = start_loop(bundle, in_name, out_name)
    out = Collector(out_name)
    assert outlet.wait_for_consumers(20)
    x = (np.random.default_rng(4).normal(size=(500, 8)) * 10e-6).astype(np.float32)  # but sends volts
    push(outlet, x, 5.0 + np.arange(500) / SFREQ)
    assert wait_for(lambda: out.n_samples >= 500)
    loop.stop()
    thread.join(10)
    out.stop()
    warnings = [e for e in loop.events.recent if e["event"] == "unit_warning"]
    assert len(warnings) == 1 and loop.stats.unit_warnings == 1
    assert warnings[0]["sensor"] == "eeg" and not warnings[0]["too_large"] and "volt numbers labelled as microvolts" in warnings[0]["hint"]
    loop.close()


def test_amplitude_checks_per_sensor_type():
    from rtsource.stream.health import implausible_amplitudes

    rng = np.random.default_rng(5)
    types = ["eeg"] * 4 + ["mag"] * 2 + ["grad"] * 4
    units = ["uV"] * 4 + ["fT"] * 2 + ["fT/cm"] * 4
    x = rng.normal(size=(50, 10)) * np.r_[[20e-6] * 4, [300e-15] * 2, [50e-13] * 4]
    assert implausible_amplitudes(x, types, units) == []  # plausible EEG and MEG together
    y = x.copy()
    y[:, 4:6] *= 1e15  # tesla numbers read as fT -> x 1e-15 twice: here, fT numbers read as T
    w = implausible_amplitudes(y, types, units)
    assert [(a.kind, a.too_large) for a in w] == [("mag", True)] and "femtotesla numbers labelled as tesla" in w[0].message
    y = x.copy()
    y[:, 6:] *= 1e-13  # T/m numbers read as fT/cm
    w = implausible_amplitudes(y, types, units)
    assert [(a.kind, a.too_large) for a in w] == [("grad", False)]
    assert implausible_amplitudes(y[:1], types, units, check_small=False) == []
