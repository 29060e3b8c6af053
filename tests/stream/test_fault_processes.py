"""Faults made by real processes: a producer killed with SIGKILL (and its successor pushing
before the loop has reconnected), and a consumer stopped with SIGSTOP (alive, not reading).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rtsource.stream.outputs import EVENTS_SUFFIX, TELEMETRY_CHANNELS, TELEMETRY_SUFFIX

from ..conftest import make_bundle
from .fault_procs import CH, SFREQ, data
from .lsl_helpers import Collector, unique
from .test_reliability import events_of, offline, start_loop, wait_for

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")


def spawn(*args) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "tests.stream.fault_procs", *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def expect_line(proc: subprocess.Popen, text: str, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if line.strip() == text:
            return
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"process did not print {text!r}: {proc.stderr.read()[-2000:] if proc.poll() is not None else ''}")


def test_producer_sigkill_then_a_new_producer_before_the_loop_reconnects():
    """SIGKILL the producer process: the loop keeps running and reports it; a new producer
    (same source_id) starts pushing at once, before the loop's inlet has found it: those
    samples never reach the loop, which reports them inside the gap; the rest is processed."""
    bundle = make_bundle(n_chan=8, n_src=30, ch_names=CH)
    in_name, out_name = unique("kill-eeg"), unique("kill-src")
    n1, n2 = 1000, 2500
    t1 = 100.0 + np.arange(n1) / SFREQ
    t2 = t1[-1] + 2.0 + np.arange(n2) / SFREQ  # the new producer continues 2 s later in its timeline
    first = spawn("producer", in_name, in_name, n1, t1[0], 1, "--wait")
    procs = [first]
    try:
        expect_line(first, "ready")
        loop, thread = start_loop(bundle, in_name, out_name, lost_after=0.5)
        out = Collector(out_name)
        events = Collector(out_name + EVENTS_SUFFIX)
        expect_line(first, "done")
        assert wait_for(lambda: out.n_samples >= n1)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert wait_for(lambda: loop.stats.waiting, 10), "the loop did not notice the producer died"
        assert thread.is_alive()
        second = spawn("producer", in_name, in_name, n2, t2[0], 2)  # no wait for consumers
        procs.append(second)
        expect_line(second, "done", 60)
        assert wait_for(lambda: out.n_samples > n1, 10)
        assert wait_for(lambda: loop.stats.stream_lost == 2, 10), "the end of the second producer's data"
        loop.stop()
        thread.join(10)
        out.stop()
        events.stop()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
    got_data, got = out.data()
    x1, x2 = data(n1, 1), data(n2, 2)
    k = int(np.searchsorted(t2, got[n1]))  # first sample of the new producer that reached the loop
    assert k > 0, "the new producer's first samples were pushed before the loop reconnected"
    assert np.array_equal(got, np.r_[t1, t2[k:]]), "everything after the reconnection, once, in order"
    assert np.allclose(got_data, offline(bundle, np.vstack([x1, x2[k:]])), rtol=1e-4, atol=1e-5 * np.abs(got_data).max())
    s = loop.stats
    assert s.samples_in == s.samples_out == n1 + n2 - k and s.lost == 0
    assert s.stream_lost == 2 and s.gaps == 1  # lost after the SIGKILL, and again after the last sample
    evs = events_of(events)
    kinds = [e["event"] for e in evs]
    assert kinds.index("stream_lost") < kinds.index("stream_back") < kinds.index("gap")
    gap = next(e for e in evs if e["event"] == "gap")
    # the gap covers the 2 s of silence and the samples pushed before the reconnection
    assert gap["samples_missing"] == round((t2[k] - t1[-1]) * SFREQ) - 1 == int(2.0 * SFREQ) - 1 + k
    loop.close()


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_stalled_consumer_does_not_grow_the_loop(tmp_path):
    """A consumer that stays connected but stops reading (SIGSTOP): LSL keeps at most
    [output] max_buffered_s of output for it, so the loop's memory stays flat. The output
    is 2500 sources x 500 Hz float32 (5 MB/s): with LSL's default 360 s buffer the loop
    would grow by ~5 MB every second."""
    from rtsource.bundle import save_bundle

    from .lsl_helpers import eeg_outlet

    bundle = make_bundle(n_chan=8, n_src=2500, n_orient=1, ch_names=CH)
    path = save_bundle(bundle, tmp_path / "big.npz")
    in_name, out_name = unique("stall-eeg"), unique("stall-src")
    config = tmp_path / "stall.toml"
    config.write_text("[output]\nmax_buffered_s = 1.0\n[badchannels]\ndetect = false\n")
    outlet = eeg_outlet(in_name, CH, sfreq=SFREQ, source_id=in_name)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    loop = subprocess.Popen([sys.executable, "-m", "rtsource.cli", "run", str(path), "--config", str(config), "--stream-name", in_name,
                             "--outlet-name", out_name, "--resolve-timeout", "60"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    consumer = spawn("consumer", out_name)
    try:
        expect_line(consumer, "open", 120)
        tel = Collector(out_name + TELEMETRY_SUFFIX, timeout=60)
        assert outlet.wait_for_consumers(60)
        x = data(500, 3)
        start = time.perf_counter()
        k = 0

        def pump(seconds):
            nonlocal k
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                outlet.push_chunk(x[(k % 50) * 10 : (k % 50) * 10 + 10], (200.0 + (k * 10 + np.arange(10)) / SFREQ).tolist())
                k += 1
                ahead = start + k * 10 / SFREQ - time.perf_counter()
                if ahead > 0:
                    time.sleep(ahead)

        pump(2.0)
        os.kill(consumer.pid, signal.SIGSTOP)  # alive, connected, not reading
        pump(3.0)  # fills LSL's buffer for it (1 s) and the socket buffers
        before = _rss_mb(loop.pid)
        pump(12.0)  # ~60 MB of output the stalled consumer does not take
        after = _rss_mb(loop.pid)
        tel.stop()
        labels = [label for label, _ in TELEMETRY_CHANNELS]
        rows = [dict(zip(labels, r)) for r in tel.data()[0]]
    finally:
        for p in (consumer, loop):
            if p.poll() is None:
                p.kill()  # SIGKILL also ends a stopped process
                p.wait(10)
    growth = after - before
    print(f"loop RSS {before:.1f} MB -> {after:.1f} MB while a consumer was stalled for 12 s")
    assert growth < 15.0, f"the loop grew by {growth:.1f} MB while a consumer was stalled"
    assert rows and rows[-1]["max_buffered_s"] == 1.0 and rows[-1]["rss_mb"] > 10.0
    assert rows[-1]["samples_in"] == rows[-1]["samples_out"] and rows[-1]["lost"] == 0
