"""FieldTrip buffer input: a real TCP server (tests/interop/ftbuffer_server.py) feeds the client.

Checked: header -> description (names, rate, flags, resolutions, units), exact samples and
regular timestamps, overwritten samples reported as a timestamp jump of exactly the missing
count, acquisition restarts, reconnection, clear errors, and the streaming loop fed from the
buffer producing the same output as the LSL path on the same data.
"""

from __future__ import annotations

import inspect
import socket
import threading
import time

import numpy as np
import pytest

from rtsource.errors import ConfigError, StreamError
from rtsource.stream import loop as loop_module
from rtsource.stream.ftbuffer import FieldTripBufferSource, open_ftbuffer, parse_source_url
from rtsource.stream.inlet import StreamSelector
from rtsource.stream.loop import LoopOptions, StreamLoop
from rtsource.stream.operator import FilterSpec

from ..conftest import make_bundle
from ..stream.lsl_helpers import Collector, eeg_outlet, unique
from .ftbuffer_server import FieldTripBufferServer, FieldTripWriter, flags_chunk, names_chunk, resolutions_chunk

SFREQ = 500.0
NAMES = [f"E{i:02d}" for i in range(8)]


@pytest.fixture
def server():
    srv = FieldTripBufferServer(capacity=100_000).start()
    yield srv
    srv.stop()


def eeg_uv(n, n_chan, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, n_chan)) * 10 + np.cumsum(rng.normal(size=(n, 1)), axis=0)).astype(np.float32)


def pull_n(src, n, timeout=20.0):
    """Pull until n samples arrived; return (data, timestamps)."""
    data, stamps = [], []
    deadline = time.monotonic() + timeout
    while sum(len(s) for s in stamps) < n and time.monotonic() < deadline:
        ts = src.pull(0.2)
        if len(ts):
            data.append(src.buffer[: len(ts)].copy())
            stamps.append(ts)
    return np.vstack(data), np.concatenate(stamps)


# ---- URLs ----------------------------------------------------------------------------------

def test_parse_source_url():
    assert parse_source_url("ftbuffer://localhost:1972") == ("ftbuffer", "localhost", 1972)
    assert parse_source_url("ftbuffer://10.0.0.5") == ("ftbuffer", "10.0.0.5", 1972)
    assert parse_source_url("buffer://meg-acq:1973") == ("ftbuffer", "meg-acq", 1973)
    assert parse_source_url("ftbuffer://[::1]:2000") == ("ftbuffer", "::1", 2000)
    assert parse_source_url("lsl") == ("lsl", "", 0)
    assert parse_source_url("lsl://") == ("lsl", "", 0)
    for bad, words in [("tcp://x:1", "ftbuffer://HOST:PORT"), ("ftbuffer://:1972", "no host"), ("ftbuffer://h:99999", "port")]:
        with pytest.raises(ConfigError, match=words):
            parse_source_url(bad)


# ---- header and samples --------------------------------------------------------------------

def test_header_description_and_exact_samples(server):
    w = FieldTripWriter(server.host, server.port)
    w.put_header(len(NAMES), SFREQ, 9, [names_chunk(NAMES)])
    with open_ftbuffer(server.url, 64, assume_unit="uV") as src:
        d = src.description
        assert d.ch_names == tuple(NAMES) and d.sfreq == SFREQ and d.n_channels == 8
        assert d.ch_units == ("uV",) * 8 and d.channel_format == "float32"
        assert src.time_correction() == 0.0
        w.put_data(eeg_uv(10, 8, seed=9))  # before open(): not delivered
        src.open()
        x = eeg_uv(1000, 8)
        for start in range(0, 1000, 37):
            w.put_data(x[start : start + 37])
        got, ts = pull_n(src, 1000)
        assert np.array_equal(got, x), "samples differ from what the acquisition wrote"
        assert np.allclose(np.diff(ts), 1 / SFREQ, rtol=0, atol=1e-9)
        assert src.samples_delivered == 1000 and src.gaps == 0 and src.samples_missed == 0
        # nothing more: an empty pull after the timeout
        assert len(src.pull(0.05)) == 0
    w.close()


def test_units_are_required_unless_stated_or_resolved(server):
    server.put_header(3, 250.0, 9, [names_chunk(["Cz", "Pz", "Oz"])])
    with FieldTripBufferSource(server.host, server.port, 16) as src:
        assert src.description.ch_units == ("", "", "")
    # int16 A/D values with RDA resolutions: scaled to microvolts, types from the flags chunk
    res = [0.1, 0.5, 0.0488]
    server.put_header(3, 250.0, 6, [names_chunk(["Cz", "Pz", "EOG"]), resolutions_chunk(res), flags_chunk(["eeg", "eog"], [1, 1, 2])])
    with FieldTripBufferSource(server.host, server.port, 16) as src:
        assert src.description.ch_units == ("uV",) * 3
        assert src.description.ch_types == ("EEG", "EEG", "EOG")
        src.open()
        raw = np.array([[100, -200, 3000], [1, 2, -32768]], dtype=np.int16)
        server.put_data(raw)
        got, _ = pull_n(src, 2)
        assert src.buffer.dtype == np.float64
        np.testing.assert_array_equal(got, raw.astype(np.float64) * np.array(res))


def test_big_endian_acquisition_is_read_correctly(server):
    w = FieldTripWriter(server.host, server.port, byteorder=">")
    w.put_header(2, 1000.0, 10, [names_chunk(["A", "B"])])
    with FieldTripBufferSource(server.host, server.port, 16, assume_unit="V") as src:
        src.open()
        x = np.array([[1.5, -2.25], [3e-6, 4e10]])
        w.put_data(x)
        got, _ = pull_n(src, 2)
        np.testing.assert_array_equal(got, x)
    w.close()


# ---- no silent drops -------------------------------------------------------------------------

def test_overwritten_samples_are_a_gap_of_exactly_the_missing_count():
    with FieldTripBufferServer(capacity=100) as srv:
        srv.put_header(4, SFREQ, 9, [names_chunk(["a", "b", "c", "d"])])
        x = np.arange(4 * 700, dtype=np.float32).reshape(700, 4)
        with FieldTripBufferSource(srv.host, srv.port, 32, assume_unit="uV") as src:
            src.open()
            srv.put_data(x[:50])
            first, ts1 = pull_n(src, 50)
            srv.put_data(x[50:700])  # the ring (100 samples) now holds 600..699 only
            rest, ts2 = pull_n(src, 100)
            assert src.gaps == 1 and src.samples_missed == 550
            np.testing.assert_array_equal(rest, x[600:700])
            jump = (ts2[0] - ts1[-1]) * SFREQ
            assert round(jump) == 551 and abs(jump - 551) < 1e-6, "the time jump must equal the missing samples + 1"
            assert np.allclose(np.diff(ts2), 1 / SFREQ, atol=1e-9)


def test_restart_and_changed_header(server):
    server.put_header(2, SFREQ, 9, [names_chunk(["a", "b"])])
    with FieldTripBufferSource(server.host, server.port, 32, assume_unit="uV") as src:
        src.open()
        server.put_data(np.ones((40, 2), np.float32))
        _, ts1 = pull_n(src, 40)
        # the acquisition restarts with the same layout: new samples after a forward time jump
        server.put_header(2, SFREQ, 9, [names_chunk(["a", "b"])])
        server.put_data(np.full((5, 2), 7, np.float32))
        got, ts2 = pull_n(src, 5)
        assert src.restarts == 1
        np.testing.assert_array_equal(got, 7)
        assert ts2[0] > ts1[-1]
        # a different layout is refused
        server.put_header(3, SFREQ, 9, [names_chunk(["a", "b", "c"])])
        server.put_data(np.zeros((1, 3), np.float32))
        with pytest.raises(StreamError, match="different header"):
            pull_n(src, 1, timeout=5)


def test_reconnects_without_losing_samples(server):
    server.put_header(2, SFREQ, 9, [names_chunk(["a", "b"])])
    with FieldTripBufferSource(server.host, server.port, 8, assume_unit="uV") as src:
        src.open()
        x = np.arange(2 * 60, dtype=np.float32).reshape(60, 2)
        server.put_data(x[:20])
        a, _ = pull_n(src, 20)
        server.drop_clients()
        server.put_data(x[20:])
        b, ts = pull_n(src, 40)
        np.testing.assert_array_equal(np.vstack([a, b]), x)
        assert src.gaps == 0


def test_clear_errors():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StreamError, match=rf"127.0.0.1:{port}.*start the buffer"):
        FieldTripBufferSource("127.0.0.1", port, 16, open_timeout=1)
    with FieldTripBufferServer() as srv:
        with pytest.raises(StreamError, match="no header after"):
            FieldTripBufferSource(srv.host, srv.port, 16, open_timeout=0.3)
        srv.put_header(2, SFREQ, 9)
        with pytest.raises(StreamError, match="no channel names"):
            FieldTripBufferSource(srv.host, srv.port, 16)
        srv.put_header(2, 0.0, 9, [names_chunk(["a", "b"])])
        with pytest.raises(StreamError, match="sampling rate"):
            FieldTripBufferSource(srv.host, srv.port, 16)


# ---- through the streaming loop ----------------------------------------------------------

def loop_on(bundle, options, source, monkeypatch):
    """A StreamLoop reading ``source`` (through the loop's own connect())."""
    if "source" in inspect.signature(StreamLoop).parameters:
        return StreamLoop(bundle, options, source=source)
    # until StreamLoop takes an InputSource: hand it ours where it would open an LSL inlet
    monkeypatch.setattr(loop_module, "resolve_stream", lambda selector, timeout: None)
    monkeypatch.setattr(loop_module, "Inlet", lambda info, max_chunk, open_timeout=10.0: source)
    return StreamLoop(bundle, options)


def run_collect(loop, out_name, feed, n, on_chunk=None):
    loop.connect()
    collector = Collector(out_name, timeout=30)
    if not loop.inlet.is_open:  # subscribe before the data start, so that none is missed
        loop.inlet.open()
    thread = loop.run_in_thread(on_chunk=on_chunk)
    feed()
    deadline = time.monotonic() + 60
    while collector.n_samples < n and time.monotonic() < deadline:
        time.sleep(0.05)
    loop.stop()
    thread.join(timeout=10)
    collector.stop()
    loop.close()
    return collector


def test_loop_output_equals_lsl_path(server, monkeypatch):
    bundle = make_bundle(n_chan=8, n_src=30, ch_names=NAMES, sfreq=SFREQ)
    n = 3000
    x = eeg_uv(n, 8, seed=3)
    filt = FilterSpec(highpass_hz=1.0, lowpass_hz=40.0)

    # LSL path: a real outlet -> StreamLoop -> collector
    in_name, out_lsl = unique("ft-cmp-eeg"), unique("ft-cmp-lsl")
    outlet = eeg_outlet(in_name, NAMES, sfreq=SFREQ, unit="microvolts")
    loop = StreamLoop(bundle, LoopOptions(selector=StreamSelector(name=in_name), max_chunk=64, filter=filt, output_name=out_lsl))

    stamps = 500.0 + np.arange(n) / SFREQ  # regular, as an amplifier stamps them

    def feed_lsl():
        assert outlet.wait_for_consumers(timeout=20)
        for s in range(0, n, 25):
            outlet.push_chunk(x[s : s + 25], stamps[s : s + 25].tolist())

    lsl = run_collect(loop, out_lsl, feed_lsl, n)

    # FieldTrip path: the acquisition writes the same samples into the buffer over TCP
    writer = FieldTripWriter(server.host, server.port)
    writer.put_header(8, SFREQ, 9, [names_chunk(NAMES)])
    src = open_ftbuffer(server.url, 64)
    out_ft = unique("ft-cmp-ft")
    loop = loop_on(bundle, LoopOptions(max_chunk=64, filter=filt, output_name=out_ft, assume_unit="uV"), src, monkeypatch)

    def feed_ft():
        for s in range(0, n, 25):
            writer.put_data(x[s : s + 25])

    ft = run_collect(loop, out_ft, feed_ft, n)
    writer.close()

    y_lsl, _ = lsl.data()
    y_ft, ts_ft = ft.data()
    assert len(y_lsl) == len(y_ft) == n
    # same numbers in, same operator: equal up to float32 rounding (the kernels may sum in a
    # different order for different chunk sizes, and the two transports chunk differently)
    assert np.abs(y_ft - y_lsl).max() <= 1e-5 * np.abs(y_lsl).max()
    assert np.allclose(np.diff(ts_ft), 1 / SFREQ, atol=1e-6)
    assert loop.stats.gaps == 0 and loop.stats.lost == 0
    root = ft.info.desc().child("rtsource")
    assert root.child_value("input_stream") == src.description.name


def test_loop_sees_overwritten_samples_as_one_gap(monkeypatch):
    bundle = make_bundle(n_chan=8, n_src=10, ch_names=NAMES, sfreq=SFREQ)
    with FieldTripBufferServer(capacity=200) as srv:
        srv.put_header(8, SFREQ, 9, [names_chunk(NAMES)])
        src = FieldTripBufferSource(srv.host, srv.port, 50, assume_unit="uV")
        out = unique("ft-gap")
        loop = loop_on(bundle, LoopOptions(max_chunk=50, output_name=out), src, monkeypatch)
        stalled, resume = threading.Event(), threading.Event()

        def on_chunk(ts, y):
            if not stalled.is_set():  # the loop falls behind after its first chunk
                stalled.set()
                resume.wait(timeout=30)

        x = eeg_uv(1050, 8, seed=5)

        def feed():
            srv.put_data(x[:50])
            assert stalled.wait(timeout=30)
            srv.put_data(x[50:1050])  # 1000 more; the ring keeps the newest 200
            resume.set()

        collector = run_collect(loop, out, feed, 250, on_chunk=on_chunk)
        _, ts = collector.data()
        assert len(ts) == 250
        assert src.samples_missed == 800 and src.gaps == 1
        assert loop.stats.gaps == 1
        assert abs(loop.stats.gap_seconds - 800 / SFREQ) < 1e-6
        assert round((ts[50] - ts[49]) * SFREQ) == 801
