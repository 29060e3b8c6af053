"""Stream faults and bad input over real LSL on loopback (the loop runs in-process here).

The producer is a real pylsl outlet that the test kills and re-creates; the loop is the real
StreamLoop; its outputs, telemetry and events are read by real LSL consumers.
"""

from __future__ import annotations

import gc
import json
import time

import numpy as np
import pytest

from rtsource.stream.inlet import StreamSelector
from rtsource.stream.loop import LoopOptions, StreamLoop
from rtsource.stream.outputs import EVENTS_SUFFIX, TELEMETRY_CHANNELS, TELEMETRY_SUFFIX

from ..conftest import make_bundle
from .lsl_helpers import Collector, eeg_outlet, unique

SFREQ = 500.0
CH = tuple(f"E{i:02d}" for i in range(8))


def offline(bundle, x_uv):
    y = (x_uv.astype(np.float64) * 1e-6) @ bundle.kernel.T
    if bundle.n_orient == 3:
        y = np.sqrt((y.reshape(len(y), -1, 3) ** 2).sum(axis=2))
    return y / bundle.noise_norm


def start_loop(bundle, in_name, out_name, **opts):
    options = LoopOptions(selector=StreamSelector(in_name, "EEG", in_name), output_name=out_name, resolve_timeout=20, **opts)
    loop = StreamLoop(bundle, options)
    loop.connect()
    thread = loop.run_in_thread()
    return loop, thread


def push(outlet, x, stamps, chunk=10, pace=0.002):
    for s in range(0, len(x), chunk):
        outlet.push_chunk(x[s : s + chunk], stamps[s : s + chunk].tolist())
        time.sleep(pace)


def wait_for(cond, timeout=30.0):
    end = time.monotonic() + timeout
    while not cond() and time.monotonic() < end:
        time.sleep(0.05)
    return cond()


def events_of(collector):
    data, _ = collector.data()
    return [json.loads(row[0]) for row in data] if len(data) else []


def test_producer_killed_and_restarted():
    bundle = make_bundle(n_chan=8, n_src=30, ch_names=CH)
    in_name, out_name = unique("rel-eeg"), unique("rel-src")
    rng = np.random.default_rng(0)
    outlet = eeg_outlet(in_name, CH, sfreq=SFREQ, source_id=in_name)
    loop, thread = start_loop(bundle, in_name, out_name, lost_after=0.5)
    out = Collector(out_name)
    events = Collector(out_name + EVENTS_SUFFIX)
    assert outlet.wait_for_consumers(20)

    # part 1: 4 s of data, then the producer dies
    x1 = rng.normal(size=(2000, 8)).astype(np.float32) * 10
    t1 = 100.0 + np.arange(2000) / SFREQ
    push(outlet, x1, t1)
    assert wait_for(lambda: out.n_samples >= 2000)
    del outlet
    gc.collect()
    assert wait_for(lambda: loop.stats.waiting, 10), "the loop did not notice the stream went away"

    # part 2: the producer comes back (same source_id) 3 s later in its own timeline
    outlet = eeg_outlet(in_name, CH, sfreq=SFREQ, source_id=in_name)
    assert outlet.wait_for_consumers(30), "the loop did not reconnect"
    x2 = rng.normal(size=(1500, 8)).astype(np.float32) * 10
    t2 = t1[-1] + 3.0 + np.arange(1500) / SFREQ
    push(outlet, x2, t2)
    assert wait_for(lambda: out.n_samples >= 3500)
    time.sleep(0.3)
    loop.stop()
    thread.join(10)
    out.stop()
    events.stop()

    data, stamps = out.data()
    assert len(stamps) == 3500, "every sample pushed while connected appears exactly once"
    assert np.array_equal(stamps, np.r_[t1, t2])
    assert np.allclose(data, offline(bundle, np.vstack([x1, x2])), rtol=1e-4, atol=1e-5 * np.abs(data).max())
    s = loop.stats
    assert s.lost == 0 and s.gaps == 1 and s.stream_lost == 1 and not s.waiting
    assert s.gap_seconds == pytest.approx(3.0 - 1 / SFREQ, abs=1e-6)
    kinds = [e["event"] for e in events_of(events)]
    assert "stream_lost" in kinds and "stream_back" in kinds
    gap = next(e for e in events_of(events) if e["event"] == "gap")
    assert gap["duration_s"] == pytest.approx(3.0 - 1 / SFREQ, abs=1e-5) and gap["samples_missing"] == 1499
    loop.close()


def test_nan_chunks_are_counted_and_contained():
    bundle = make_bundle(n_chan=8, n_src=30, ch_names=CH, n_orient=1)
    in_name, out_name = unique("nan-eeg"), unique("nan-src")
    rng = np.random.default_rng(1)
    outlet = eeg_outlet(in_name, CH, sfreq=SFREQ, source_id=in_name)
    loop, thread = start_loop(bundle, in_name, out_name)
    out = Collector(out_name)
    assert outlet.wait_for_consumers(20)
    n = 5000
    x = rng.normal(size=(n, 8)).astype(np.float32) * 10
    chunks = np.arange(0, n, 10)
    poisoned = rng.choice(chunks, size=len(chunks) // 20, replace=False)  # 5 % of the chunks
    bad_rows = []
    for c in poisoned:
        r = c + rng.integers(0, 10)
        x[r, rng.integers(0, 8)] = rng.choice([np.nan, np.inf, -np.inf])
        bad_rows.append(r)
    stamps = 50.0 + np.arange(n) / SFREQ
    push(outlet, x, stamps)
    assert wait_for(lambda: out.n_samples >= n)
    loop.stop()
    thread.join(10)
    out.stop()
    data, got_stamps = out.data()
    assert np.array_equal(got_stamps, stamps)
    assert loop.stats.nan_samples == len(bad_rows) and loop.stats.lost == 0
    nan_rows = np.flatnonzero(np.isnan(data).any(axis=1))
    assert sorted(nan_rows.tolist()) == sorted(bad_rows)
    assert np.all(np.isnan(data[bad_rows]))
    clean = np.setdiff1d(np.arange(n), bad_rows)
    expected = offline(bundle, np.nan_to_num(x))[clean]
    assert np.allclose(data[clean], expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    loop.close()


def test_latest_only_skips_explicitly():
    bundle = make_bundle(n_chan=8, n_src=30, ch_names=CH)
    in_name, out_name = unique("lat-eeg"), unique("lat-src")
    outlet = eeg_outlet(in_name, CH, sfreq=SFREQ, source_id=in_name)
    loop = StreamLoop(bundle, LoopOptions(selector=StreamSelector(in_name), output_name=out_name, resolve_timeout=20, latest_only=True, max_chunk=64))
    loop.connect()
    events = Collector(out_name + EVENTS_SUFFIX)
    out = Collector(out_name)
    loop.inlet.open()
    assert outlet.wait_for_consumers(20)
    x = np.ones((3000, 8), np.float32)
    stamps = 10.0 + np.arange(3000) / SFREQ
    outlet.push_chunk(x, stamps.tolist())  # a burst: the loop is 6 s behind at once
    time.sleep(0.5)
    thread = loop.run_in_thread()
    assert wait_for(lambda: loop.stats.samples_in >= 3000)
    time.sleep(0.5)
    loop.stop()
    thread.join(10)
    events.stop()
    out.stop()
    s = loop.stats
    assert s.skipped > 0 and s.samples_in == 3000 and s.lost == 0
    assert s.samples_out == 3000 - s.skipped == out.n_samples
    skipped = [e for e in events_of(events) if e["event"] == "skipped"]
    assert sum(e["n_samples"] for e in skipped) == s.skipped
    loop.close()


def test_backwards_timestamps_are_a_clock_jump():
    bundle = make_bundle(n_chan=8, n_src=30, ch_names=CH)
    in_name, out_name = unique("clk-eeg"), unique("clk-src")
    outlet = eeg_outlet(in_name, CH, sfreq=SFREQ, source_id=in_name)
    loop, thread = start_loop(bundle, in_name, out_name)
    out = Collector(out_name)
    assert outlet.wait_for_consumers(20)
    x = np.zeros((100, 8), np.float32)
    push(outlet, x, 20.0 + np.arange(100) / SFREQ)
    assert wait_for(lambda: out.n_samples >= 100)
    push(outlet, x, 10.0 + np.arange(100) / SFREQ)  # the producer's clock jumped back 10 s
    assert wait_for(lambda: out.n_samples >= 200)
    loop.stop()
    thread.join(10)
    out.stop()
    assert loop.stats.clock_jumps == 1 and loop.stats.lost == 0
    assert any(e["event"] == "clock_jump" for e in loop.events.recent)
    loop.close()


def test_telemetry_stream_layout_and_values():
    bundle = make_bundle(n_chan=8, n_src=30, ch_names=CH)
    in_name, out_name = unique("tel-eeg"), unique("tel-src")
    outlet = eeg_outlet(in_name, CH, sfreq=SFREQ, source_id=in_name)
    loop, thread = start_loop(bundle, in_name, out_name)
    tel = Collector(out_name + TELEMETRY_SUFFIX)
    assert outlet.wait_for_consumers(20)
    push(outlet, np.zeros((1000, 8), np.float32), 5.0 + np.arange(1000) / SFREQ)
    assert wait_for(lambda: loop.stats.samples_out >= 1000)
    time.sleep(1.6)  # telemetry keeps coming; the idle input turns into "waiting" after 1 s
    loop.stop()
    thread.join(10)
    tel.stop()
    import xml.etree.ElementTree as ET

    labels = [c.find("label").text for c in ET.fromstring(tel.info.as_xml()).findall("desc/channels/channel")]
    assert labels == [label for label, _ in TELEMETRY_CHANNELS]
    data, _ = tel.data()
    rows = [dict(zip(labels, r)) for r in data]
    done = [r for r in rows if r["samples_out"] == 1000]
    assert done and all(r["samples_in"] == 1000 and r["lost"] == 0 for r in done)
    assert done[0]["process_ms_p50"] > 0 and done[0]["waiting"] == 0
    assert rows[-1]["waiting"] == 1  # no data for longer than lost_after
    loop.close()


def test_producer_comes_back_with_shuffled_channels():
    """A restarted amplifier app may list its channels in another order: remap by name."""
    bundle = make_bundle(n_chan=8, n_src=30, ch_names=CH)
    in_name, out_name = unique("shuf-eeg"), unique("shuf-src")
    rng = np.random.default_rng(5)
    outlet = eeg_outlet(in_name, CH, sfreq=SFREQ, source_id=in_name)
    loop, thread = start_loop(bundle, in_name, out_name, lost_after=0.5)
    out = Collector(out_name)
    assert outlet.wait_for_consumers(20)
    x1 = rng.normal(size=(500, 8)).astype(np.float32) * 10
    t1 = 10.0 + np.arange(500) / SFREQ
    push(outlet, x1, t1)
    assert wait_for(lambda: out.n_samples >= 500)
    del outlet
    gc.collect()
    assert wait_for(lambda: loop.stats.waiting, 10)
    order = rng.permutation(8)
    outlet = eeg_outlet(in_name, [CH[i] for i in order], sfreq=SFREQ, source_id=in_name)
    assert outlet.wait_for_consumers(30)
    x2 = rng.normal(size=(500, 8)).astype(np.float32) * 10  # in bundle channel order
    t2 = t1[-1] + 1.0 + np.arange(500) / SFREQ
    push(outlet, x2[:, order], t2)
    assert wait_for(lambda: out.n_samples >= 1000)
    loop.stop()
    thread.join(10)
    out.stop()
    data, stamps = out.data()
    assert np.array_equal(stamps, np.r_[t1, t2])
    assert np.allclose(data, offline(bundle, np.vstack([x1, x2])), rtol=1e-4, atol=1e-5 * np.abs(data).max())
    assert any(e["event"] == "operator_swap" and "layout" in e["reason"] for e in loop.events.recent)
    loop.close()
