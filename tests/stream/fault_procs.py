"""Separate processes for the fault tests: a producer the test kills with SIGKILL, and a
consumer it stops with SIGSTOP. Run as ``python -m tests.stream.fault_procs ROLE ...``.

producer NAME SOURCE_ID N T0 SEED [--wait]
    Pushes N samples of 8 channels (``data(N, SEED)``, microvolts) with timestamps
    ``T0 + k / 500`` at the real pace in 10-sample chunks, prints ``done`` and then idles
    until killed. With ``--wait`` it waits for a consumer first; without, it starts pushing
    at once (samples pushed before the loop's inlet reconnects never reach it).
consumer NAME
    Opens an inlet on stream NAME, prints ``open`` and pulls nothing (the test stops it).
"""

from __future__ import annotations

import sys
import time

import numpy as np

SFREQ = 500.0
CH = tuple(f"E{i:02d}" for i in range(8))


def data(n: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=(n, len(CH))) * 10).astype(np.float32)


def producer(name: str, source_id: str, n: int, t0: float, seed: int, wait: bool) -> None:
    import pylsl

    from rtsource.lsl_config import configure_liblsl

    configure_liblsl()
    info = pylsl.StreamInfo(name, "EEG", len(CH), SFREQ, pylsl.cf_float32, source_id)
    chans = info.desc().append_child("channels")
    for c in CH:
        ch = chans.append_child("channel")
        ch.append_child_value("label", c)
        ch.append_child_value("type", "EEG")
        ch.append_child_value("unit", "microvolts")
    outlet = pylsl.StreamOutlet(info, chunk_size=0, max_buffered=360)
    print("ready", flush=True)
    if wait and not outlet.wait_for_consumers(60):
        print("no consumer", flush=True)
        return
    x = data(n, seed)
    stamps = t0 + np.arange(n) / SFREQ
    start = time.perf_counter()
    for s in range(0, n, 10):
        outlet.push_chunk(x[s : s + 10], stamps[s : s + 10].tolist())
        ahead = start + (s + 10) / SFREQ - time.perf_counter()
        if ahead > 0:
            time.sleep(ahead)
    print("done", flush=True)
    while True:  # alive until the test kills it
        time.sleep(1.0)


def consumer(name: str) -> None:
    import pylsl

    from rtsource.lsl_config import configure_liblsl

    configure_liblsl()
    found = pylsl.resolve_byprop("name", name, minimum=1, timeout=60)
    inlet = pylsl.StreamInlet(found[0], max_buflen=360)
    inlet.open_stream(timeout=30)
    print("open", flush=True)
    while True:
        time.sleep(1.0)


if __name__ == "__main__":
    role, args = sys.argv[1], sys.argv[2:]
    if role == "producer":
        producer(args[0], args[1], int(args[2]), float(args[3]), int(args[4]), "--wait" in args)
    else:
        consumer(args[0])
