"""The helper processes of the latency, start-up and hot-swap benchmarks: producer, relay, consumers.

Each runs in its own process (``python -m rtsource.bench --produce | --relay | --consume``,
see :mod:`rtsource.bench.__main__`), so the process measured shares no interpreter with them;
:func:`consume` also runs in the benchmark's own process to take the latencies.
:func:`start_helper`, :func:`start_run` and :func:`stop` start and end those processes
for every benchmark.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

#: Seconds a helper has to exit after SIGTERM before it is killed.
STOP_TIMEOUT_S = 15.0


def start_helper(*args: str) -> subprocess.Popen:
    """``python -m rtsource.bench ARGS``: a hidden helper mode (``--produce``, ``--relay``, ...)."""
    return subprocess.Popen([sys.executable, "-m", "rtsource.bench", *map(str, args)])


def start_run(bundle_path: str | Path, in_name: str, out_name: str, *extra: str, env: dict | None = None) -> subprocess.Popen:
    """``rtsource run BUNDLE`` from stream ``in_name`` to outlet ``out_name`` (its output discarded)."""
    cmd = [sys.executable, "-m", "rtsource.cli", "run", str(bundle_path), "--stream-name", in_name, "--outlet-name", out_name, *extra]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def stop(*procs: subprocess.Popen) -> None:
    """Terminate each process still running, in order; kill one not gone ``STOP_TIMEOUT_S`` later."""
    for p in procs:
        if p.poll() is not None:
            continue
        p.terminate()
        try:
            p.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def produce(name: str, n_chan: int, sfreq: float, seconds: float, chunk: int, labels: str = "") -> None:
    """Hidden mode: push `seconds` of data in `chunk`-sample chunks at the real pace.

    Channels are labelled C000, C001, ... or, with ``labels="cap64"``, as the 64-channel cap.
    """
    import pylsl

    from ..lsl_config import configure_liblsl
    from ..sensors.montage import CAP_64

    configure_liblsl()
    names = list(CAP_64) if labels == "cap64" else [f"C{i:03d}" for i in range(n_chan)]
    info = pylsl.StreamInfo(name, "EEG", n_chan, sfreq, pylsl.cf_float32, name)
    chans = info.desc().append_child("channels")
    for i in range(n_chan):
        c = chans.append_child("channel")
        c.append_child_value("label", names[i])
        c.append_child_value("type", "EEG")
        c.append_child_value("unit", "microvolts")
    outlet = pylsl.StreamOutlet(info, chunk_size=0, max_buffered=360)
    outlet.wait_for_consumers(120)
    data = (np.random.default_rng(0).normal(size=(chunk, n_chan)) * 10).astype(np.float32)
    t0 = pylsl.local_clock() + 0.5
    for k in range(0, int(seconds * sfreq), chunk):
        ts = t0 + (k + np.arange(chunk)) / sfreq
        wait = ts[-1] - pylsl.local_clock()
        if wait > 0:
            time.sleep(wait)
        outlet.push_chunk(data, ts.tolist())
    time.sleep(1.0)


def relay(in_name: str, out_name: str, seconds: float, out_channels: int = 0) -> None:
    """Hidden mode: the bare relay, pull a chunk and push it on with its timestamps.

    With ``out_channels`` it pushes that many channels (the input's values, repeated) instead:
    a relay that moves as many bytes as rtsource's source stream, and computes nothing.
    """
    import pylsl

    from ..lsl_config import configure_liblsl

    configure_liblsl()
    found = pylsl.resolve_byprop("name", in_name, minimum=1, timeout=60)
    info = found[0]
    n_in = info.channel_count()
    n_out = out_channels or n_in
    out = pylsl.StreamOutlet(pylsl.StreamInfo(out_name, "Relay", n_out, info.nominal_srate(), pylsl.cf_float32, out_name), chunk_size=0, max_buffered=360)
    # subscribe to the producer (which waits for us) only once our own consumer listens:
    # a chunk pushed before then would be dropped and the relay would count as losing it
    out.wait_for_consumers(120)
    inlet = pylsl.StreamInlet(info, max_buflen=360)
    buf = np.zeros((1024, n_in), np.float32)
    wide = np.zeros((1024, n_out), np.float32)
    inlet.open_stream(timeout=30)
    end = time.monotonic() + seconds + 60
    while time.monotonic() < end:
        _, ts = inlet.pull_chunk(timeout=0.5, max_samples=1024, dest_obj=buf, min_samples=1, as_numpy=True)
        n = len(ts)
        if n and n_out == n_in:
            out.push_chunk(buf[:n], ts.tolist())
        elif n:
            for j in range(0, n_out, n_in):  # the input repeated across the wide output
                w = min(n_in, n_out - j)
                wide[:n, j : j + w] = buf[:n, :w]
            out.push_chunk(wide[:n], ts.tolist())


def open_consumer(out_name: str, timeout: float):
    """An open inlet on the outlet ``out_name`` (waiting up to ``timeout`` s for it to
    appear) and its clock offset: ``(inlet, offset)``, the start of every consumer here."""
    import pylsl

    found = pylsl.resolve_byprop("name", out_name, minimum=1, timeout=timeout)
    if not found:
        raise RuntimeError(f"{out_name!r} never appeared")
    inlet = pylsl.StreamInlet(found[0], max_buflen=360)
    inlet.open_stream(timeout=30)
    return inlet, inlet.time_correction(timeout=5)


def consume(out_name: str, n_channels: int, seconds: float, skip: float = 2.0) -> np.ndarray:
    """End-to-end latencies (s) of every received chunk, after the first `skip` seconds."""
    import pylsl

    inlet, offset = open_consumer(out_name, 120)
    buf = np.zeros((1024, n_channels), np.float32)
    lat = []
    t_first = None
    end = time.monotonic() + seconds + 60
    while time.monotonic() < end:
        _, ts = inlet.pull_chunk(timeout=2.0, max_samples=1024, dest_obj=buf, min_samples=1, as_numpy=True)
        if not len(ts):
            if t_first is not None:
                break
            continue
        now = pylsl.local_clock()
        t_first = t_first or now
        if now - t_first > skip:
            lat.append(now - (ts[-1] + offset))
    return np.array(lat)


def consume_quietly(out_name: str, seconds: float) -> None:
    """Hidden mode: a consumer that pulls everything, as a display or a recorder would."""
    import pylsl

    from ..lsl_config import configure_liblsl

    configure_liblsl()
    found = pylsl.resolve_byprop("name", out_name, minimum=1, timeout=120)
    inlet = pylsl.StreamInlet(found[0], max_buflen=360)
    buf = np.zeros((1024, found[0].channel_count()), np.float32)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        inlet.pull_chunk(timeout=0.5, max_samples=1024, dest_obj=buf)
