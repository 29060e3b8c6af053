"""Decimation before the operator: the anti-aliasing filter, the phase across chunks, timestamps."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from rtsource.bench.common import random_bundle
from rtsource.errors import ConfigError
from rtsource.stream.channels import ChannelMap
from rtsource.stream.decimation import MIN_ATTENUATION_DB, design_antialias, group_delay, sos_response
from rtsource.stream.inlet import StreamSelector
from rtsource.stream.loop import LoopOptions, StreamLoop
from rtsource.stream.operator import FilterSpec, StreamOperator

from .lsl_helpers import Collector, eeg_outlet, unique
from .test_reliability import push, wait_for


@pytest.mark.parametrize("rates", [(5000.0, 500.0), (2000.0, 500.0), (5000.0, 1000.0), (1000.0, 500.0)])
def test_antialias_attenuates_above_the_new_nyquist(rates):
    fs, out = rates
    d = design_antialias(fs, out)
    assert d.factor == round(fs / out) and d.stopband_hz == out / 2
    f = np.linspace(out / 2, fs / 2, 4001)
    gain_db = 20 * np.log10(np.maximum(np.abs(sos_response(d.sos, f, fs)), 1e-300))
    assert gain_db.max() <= -MIN_ATTENUATION_DB and d.attenuation_db >= MIN_ATTENUATION_DB
    # pass-band: -3 dB at the stated edge, flat below
    edge = 20 * np.log10(abs(sos_response(d.sos, [d.passband_hz], fs)[0]))
    assert abs(edge + 3.01) < 0.05
    low = 20 * np.log10(np.abs(sos_response(d.sos, np.linspace(0, 0.5 * d.passband_hz, 50), fs)))
    assert np.all(np.abs(low) < 0.1)
    # against scipy (the reference implementation)
    signal = pytest.importorskip("scipy.signal")
    w, h = signal.sosfreqz(d.sos, worN=f, fs=fs)
    assert np.allclose(np.abs(h), np.abs(sos_response(d.sos, f, fs)), rtol=1e-6, atol=1e-12)
    b, a = signal.sos2tf(d.sos)
    _, gd = signal.group_delay((b, a), w=[0.05 * d.passband_hz], fs=fs)
    assert d.group_delay_s == pytest.approx(gd[0] / fs, rel=1e-3)
    assert group_delay(d.sos, 0.05 * d.passband_hz, fs) == d.group_delay_s


def test_5k_to_500_states_its_numbers():
    d = design_antialias(5000.0, 500.0)
    assert d.factor == 10 and d.passband_hz == 100.0 and d.order == 8
    assert 60 <= d.attenuation_db < 70 and 0.005 < d.group_delay_s < 0.012
    assert d.describe()["decimation_factor"] == "10"


@pytest.mark.parametrize("out", [480.0, 5000.0, 7000.0, -1.0])
def test_output_rate_must_divide_the_input_rate(out):
    with pytest.raises(ConfigError, match=r"output_rate_hz = .* whole number"):
        design_antialias(5000.0, out)


def _operator(fs, out, filt=None, n_chan=6, n_src=40, n_orient=3, max_chunk=64):
    b = random_bundle(n_chan, n_src, n_orient, sfreq=fs, seed=3)
    cmap = ChannelMap(np.arange(n_chan), np.ones(n_chan), ("V",) * n_chan, (), False)
    op = StreamOperator(b, cmap, max_chunk, filt, low_rank="off", output_rate_hz=out)
    op.warm_up()
    return b, op


def _naive(b, x, sos, factor, first=0):
    """NumPy twin: the cascade over the whole signal (scipy), every factor-th row, K x, pooling."""
    signal = pytest.importorskip("scipy.signal")
    zi = signal.sosfilt_zi(sos)[:, :, None] * x[0].astype(np.float64)[None, None, :]  # the loop starts at steady state
    y = signal.sosfilt(sos, x.astype(np.float64), axis=0, zi=zi)[0]
    kept = y[first::factor]
    s = kept @ b.kernel.T
    if b.n_orient == 3:
        s = np.sqrt((s.reshape(len(kept), -1, 3) ** 2).sum(axis=2))
    return s / b.noise_norm, np.arange(first, len(x), factor)


@pytest.mark.parametrize("chunks", [[1], [3, 7, 13], [64, 9, 1, 30], [10]])
def test_chunked_decimation_equals_the_whole_signal(chunks):
    fs, out = 1000.0, 250.0
    b, op = _operator(fs, out, FilterSpec(highpass_hz=1.0))
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(997, b.n_channels)) + 3.0).astype(np.float32)  # DC offset: the steady-state start matters
    ts = 10.0 + np.arange(len(x)) / fs
    got, stamps, pos, i = [], [], 0, 0
    while pos < len(x):
        n = min(chunks[i % len(chunks)], len(x) - pos)
        y = op.process(x[pos : pos + n], n)
        m, t = op.output_stamps(ts[pos : pos + n], n)
        assert y.shape[0] == m == op.last_out
        got.append(y.copy())
        stamps.append(np.array(t))
        pos += n
        i += 1
    got, stamps = np.vstack(got), np.concatenate(stamps)
    want, rows = _naive(b, x, op._sos, 4)
    assert np.array_equal(stamps, ts[rows])  # none lost, none twice, each the stamp of its input sample
    assert len(got) == len(want) == 250
    assert np.allclose(got, want, rtol=2e-4, atol=1e-4 * np.abs(want).max())


def test_aliasing_frequency_is_removed_and_the_passband_kept():
    fs, out = 5000.0, 500.0
    b, op = _operator(fs, out, n_chan=2, n_src=1, n_orient=1, max_chunk=256)
    t = np.arange(int(fs)) / fs
    for f, lo, hi in ((310.0, 0.0, 1e-3), (30.0, 0.99, 1.01)):  # 310 Hz would alias to 190 Hz
        x = np.stack([np.sin(2 * np.pi * f * t), np.zeros_like(t)], axis=1).astype(np.float32)
        op.restart_filter_at(x, 1)
        ys = []
        for s in range(0, len(x), 256):
            n = min(256, len(x) - s)
            ys.append(op.process(x[s : s + n], n).copy())
        y = np.vstack(ys)[:, 0] * b.noise_norm[0] / b.kernel[0, 0]
        amp = np.abs(y[len(y) // 2 :]).max()
        assert lo <= amp <= hi, (f, amp)


def test_hot_swap_keeps_the_phase():
    b, op = _operator(1000.0, 250.0)
    x = np.ones((64, b.n_channels), np.float32)
    op.process(x, 5)  # keeps rows 0 and 4; next kept is 3 rows into the next chunk
    new = StreamOperator(b, op.channel_map, 64, None, low_rank="off", output_rate_hz=250.0)
    new.adopt_filter_state(op)
    new.process(x, 4)
    assert new.last_out == 1 and new._kept[0] == 3


def test_loop_decimates_over_lsl():
    """A 1 kHz stream to 250 Hz through the loop: rate and metadata, the stamps, counters."""
    fs, out = 1000.0, 250.0
    names = [f"C{i:03d}" for i in range(6)]
    b = random_bundle(6, 40, 3, sfreq=fs, seed=3)
    in_name, out_name = unique("dec-eeg"), unique("dec-src")
    outlet = eeg_outlet(in_name, names, sfreq=fs, unit="V", source_id=in_name)
    loop = StreamLoop(b, LoopOptions(selector=StreamSelector(in_name), output_name=out_name, resolve_timeout=20, output_rate_hz=out, control=False))
    loop.connect()
    thread = loop.run_in_thread()
    got = Collector(out_name)
    assert outlet.wait_for_consumers(20)
    n = 1203
    x = np.random.default_rng(1).normal(size=(n, 6)).astype(np.float32)
    stamps = 50.0 + np.arange(n) / fs
    push(outlet, x, stamps, chunk=7)
    assert wait_for(lambda: got.n_samples >= len(range(0, n, 4)))
    time.sleep(0.2)
    loop.stop()
    thread.join(10)
    got.stop()
    loop.close()
    data, ts = got.data()
    assert np.array_equal(ts, stamps[::4])
    assert got.info.nominal_srate() == out
    meta = ET.fromstring(got.info.as_xml()).find("desc/rtsource")
    assert meta.find("decimation_factor").text == "4" and float(meta.find("antialias_attenuation_db").text) >= 60
    s = loop.stats
    assert (s.samples_in, s.samples_out, s.decimated, s.lost) == (n, len(ts), n - len(ts), 0)
    assert s.latency.percentiles()[0] >= loop.operator.delay_s > 0
    started = next(e for e in loop.events.recent if e["event"] == "started")
    assert started["output_rate_hz"] == "250" and started["decimation_factor"] == "4" and "kernel" in started["operator_path"]
