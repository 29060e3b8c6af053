"""``rtsource bench peers``: the same stream through rtsource and through the loops a user would write.

Every run is producer -> X -> consumer in three processes over real LSL, with X one of

- ``relay``: a bare pylsl relay (pull a chunk, push it on): the baseline;
- ``rtsource``: ``rtsource run`` on an operator of the same size;
- ``mne_lsl``: mne-lsl's ``StreamLSL`` (1 ms acquisition) polled for new samples, each new
  chunk made a ``RawArray`` and passed to MNE-Python's ``apply_inverse_raw`` with a prepared
  operator (``prepared=True``), as the two projects' documentation shows; every sample
  published on a pylsl outlet with its timestamp;
- ``window``: a 1 s window loop like mne-realtime's (collect one second with pylsl, apply
  the prepared inverse to the window, publish its samples).

The consumer takes every sample's end-to-end latency (arrival minus the sample's own
timestamp, on one LSL clock) and counts the samples, so a loop that drops samples shows it;
X's CPU time (user + system, from /proc) over the measured span gives CPU seconds per
second of data. ``added`` = X minus the bare relay. The MNE operator is a loose (0.2) dSPM
on random volume sources in a sphere, pooled to one value per source; rtsource's is a random
free-orientation operator of the same size (the cost of applying it does not depend on the
values).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from .processes import open_consumer, start_helper, start_run, stop

KINDS = ("relay", "rtsource", "mne_lsl", "window")
#: Added latency below this (ms) is not told apart from the relay's own (ratios use it as the floor).
RESOLUTION_MS = 1.0


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def consume_samples(out_name: str, n_channels: int, seconds: float, pid: int, skip: float = 2.0, expected: int = 0,
                    give_up: tuple[float, int] | None = None) -> dict:
    """Every sample's latency (s) after ``skip`` s of data, the samples received, and the
    CPU seconds process ``pid`` spent per second of data over the measured span.

    It ends when no sample came for 3 s or, once ``expected`` samples arrived, for 0.5 s
    (long enough to count any surplus a loop sends; a loop that drops samples ends by the first).
    ``give_up = (limit_s, n)``: stop once more than n samples were later than limit_s (the
    verdict of a p99 criterion is then known); ``"gave_up"`` in the result says so.
    """
    import pylsl

    inlet, offset = open_consumer(out_name, 300)
    buf = np.zeros((4096, n_channels), np.float32)
    lat, n_total, n_slow, gave_up = [], 0, 0, False
    first_ts = cpu0 = t_cpu0 = None
    last_ts = cpu1 = None
    end = time.monotonic() + seconds + 300
    while time.monotonic() < end:
        wait = 0.5 if expected and n_total >= expected else 3.0
        _, ts = inlet.pull_chunk(timeout=wait, max_samples=4096, dest_obj=buf, min_samples=1, as_numpy=True)
        if not len(ts):
            if first_ts is not None:
                break
            continue
        now = pylsl.local_clock()
        n_total += len(ts)
        first_ts = ts[0] if first_ts is None else first_ts
        if ts[-1] - first_ts > skip:
            if cpu0 is None:
                cpu0, t_cpu0 = _cpu_seconds(pid), ts[-1]
            lat.append(now - (np.asarray(ts) + offset))
            try:
                cpu1, last_ts = _cpu_seconds(pid), ts[-1]
            except OSError:  # X exited
                pass
            if give_up is not None:
                n_slow += int(np.count_nonzero(lat[-1] > give_up[0]))
                if n_slow > give_up[1]:
                    gave_up = True
                    break
    lat = np.concatenate(lat) if lat else np.zeros(0)
    span = (last_ts - t_cpu0) if last_ts is not None and t_cpu0 is not None else float("nan")
    return {"latencies": lat, "samples": n_total, "cpu_per_s": (cpu1 - cpu0) / span if span and span > 0 else float("nan"), "gave_up": gave_up}


def bench_peers(n_chan=64, n_src=8000, sfreq=500.0, chunk=10, seconds=20.0, kinds=KINDS, progress=print) -> dict:
    """Run the stream through each of ``kinds`` (see the module docstring); latencies, CPU, ratios."""
    from ..bundle import save_bundle
    from .common import random_bundle

    tag = f"peers-{os.getpid()}-{int(time.time())}"
    tmp = Path(tempfile.mkdtemp(prefix="rtsource-peers-"))
    bundle_path = save_bundle(random_bundle(n_chan, n_src, 3, sfreq=sfreq), tmp / "bundle.npz")
    expected = int(seconds * sfreq) // chunk * chunk
    results: dict = {"setup": {"channels": n_chan, "sources": n_src, "sfreq": sfreq, "chunk": chunk, "seconds": seconds}}
    for kind in kinds:
        in_name, out_name = f"{tag}-{kind}-in", f"{tag}-{kind}-out"
        prod = start_helper("--produce", in_name, n_chan, sfreq, seconds, chunk)
        if kind == "relay":
            mid, n_out = start_helper("--relay", in_name, out_name, seconds), n_chan
        elif kind == "rtsource":
            mid, n_out = start_run(bundle_path, in_name, out_name, "--idle-timeout", "3"), n_src
        else:
            mid, n_out = start_helper(f"--{kind.replace('_', '-')}", in_name, out_name, seconds, n_src), n_src
        try:
            got = consume_samples(out_name, n_out, seconds, mid.pid, expected=expected)
        finally:
            stop(mid, prod)
        lat = got["latencies"]
        row = {
            "p50_ms": round(float(np.percentile(lat, 50)) * 1e3, 3) if len(lat) else float("nan"),
            "p99_ms": round(float(np.percentile(lat, 99)) * 1e3, 3) if len(lat) else float("nan"),
            "samples": got["samples"], "samples_expected": expected, "cpu_s_per_s": round(float(got["cpu_per_s"]), 4),
        }  # fmt: skip
        results[kind] = row
        progress(
            f"{kind:9s}: per-sample latency p50 {row['p50_ms']:8.2f} ms, p99 {row['p99_ms']:8.2f} ms; "
            f"{row['samples']}/{expected} samples; CPU {row['cpu_s_per_s']:.3f} s per s of data"
        )
    if "relay" in results:
        base = results["relay"]
        for kind in kinds:
            if kind != "relay" and kind in results:
                r = results[kind]
                r["added_p50_ms"] = round(r["p50_ms"] - base["p50_ms"], 3)
                r["added_p99_ms"] = round(r["p99_ms"] - base["p99_ms"], 3)
        if "rtsource" in results:
            rt = results["rtsource"]
            for kind in ("mne_lsl", "window"):
                if kind in results:
                    r = results[kind]
                    # rtsource's added latency can be below the relay's run-to-run noise (even
                    # negative): it is floored at RESOLUTION_MS so a ratio stays meaningful
                    ratios = {
                        "added_p50": r["added_p50_ms"] / max(rt["added_p50_ms"], RESOLUTION_MS),
                        "added_p99": r["added_p99_ms"] / max(rt["added_p99_ms"], RESOLUTION_MS),
                        "cpu": r["cpu_s_per_s"] / rt["cpu_s_per_s"] if rt["cpu_s_per_s"] > 0 else float("nan"),
                    }
                    results[f"{kind}_over_rtsource"] = {k: round(v, 2) for k, v in ratios.items()}
                    progress(
                        f"{kind} / rtsource: added latency x{ratios['added_p50']:.1f} (p50), x{ratios['added_p99']:.1f} (p99); "
                        f"CPU x{ratios['cpu']:.1f}"
                    )
    return results


# ---- the peer loops (hidden modes of ``python -m rtsource.bench``) ------------------------


def _peer_operator(in_name: str, n_src: int):
    """(stream info found, MNE info with the stream's channel names, prepared inverse)."""
    import pylsl

    from .kernels import mne_inverse

    found = pylsl.resolve_byprop("name", in_name, minimum=1, timeout=120)
    inlet = pylsl.StreamInlet(found[0])
    info = inlet.info(timeout=10)
    ch = info.desc().child("channels").child("channel")
    names = []
    for _ in range(info.channel_count()):
        names.append(ch.child_value("label"))
        ch = ch.next_sibling()
    inlet.close_stream()
    mne_info, prepared = mne_inverse(len(names), n_src, loose=0.2, fixed=False, names=names)
    return info, mne_info, prepared


def _source_outlet(out_name: str, n_src: int, sfreq: float):
    import pylsl

    return pylsl.StreamOutlet(pylsl.StreamInfo(out_name, "Sources", n_src, sfreq, pylsl.cf_float32, out_name), chunk_size=0, max_buffered=360)


def mne_lsl_loop(in_name: str, out_name: str, seconds: float, n_src: int) -> None:
    """Hidden mode: mne-lsl StreamLSL + MNE's prepared apply_inverse_raw on each new chunk."""
    import mne
    from mne_lsl.stream import StreamLSL

    info, mne_info, prepared = _peer_operator(in_name, n_src)
    sfreq = info.nominal_srate()
    outlet = _source_outlet(out_name, n_src, sfreq)
    stream = StreamLSL(bufsize=2.0, name=in_name).connect(acquisition_delay=0.001)
    end = time.monotonic() + seconds + 60
    last = 0.0
    while time.monotonic() < end:
        n = stream.n_new_samples
        if not n:
            time.sleep(0.001)
            continue
        # the newest n samples, and a margin: samples that arrive between n_new_samples and
        # get_data would be missed otherwise; the timestamps tell which ones are new
        data, ts = stream.get_data(winsize=(n + 64) / sfreq)
        new = ts > last
        if not new.any():
            continue
        data, ts = data[:, new], ts[new]
        last = ts[-1]
        raw = mne.io.RawArray(data, mne_info, verbose=False)
        stc = mne.minimum_norm.apply_inverse_raw(raw, prepared, 1 / 9, "dSPM", prepared=True, verbose=False)
        outlet.push_chunk(np.ascontiguousarray(stc.data.T, dtype=np.float32), ts.tolist())
    stream.disconnect()


def window_loop(in_name: str, out_name: str, seconds: float, n_src: int) -> None:
    """Hidden mode: collect 1 s windows with pylsl, apply the prepared inverse, publish the window."""
    import mne
    import pylsl

    info, mne_info, prepared = _peer_operator(in_name, n_src)
    sfreq = info.nominal_srate()
    n_win = int(round(sfreq))
    outlet = _source_outlet(out_name, n_src, sfreq)
    inlet = pylsl.StreamInlet(pylsl.resolve_byprop("name", in_name, minimum=1, timeout=60)[0], max_buflen=360)
    inlet.open_stream(timeout=30)
    window = np.zeros((n_win, info.channel_count()), np.float32)
    stamps = np.zeros(n_win)
    buf = np.zeros((n_win, info.channel_count()), np.float32)
    filled = 0
    end = time.monotonic() + seconds + 60
    while time.monotonic() < end:
        _, ts = inlet.pull_chunk(timeout=0.5, max_samples=n_win - filled, dest_obj=buf, as_numpy=True)
        k = len(ts)
        window[filled : filled + k], stamps[filled : filled + k] = buf[:k], ts
        filled += k
        if filled == n_win:
            raw = mne.io.RawArray(window.T.astype(np.float64) * 1e-6, mne_info, verbose=False)
            stc = mne.minimum_norm.apply_inverse_raw(raw, prepared, 1 / 9, "dSPM", prepared=True, verbose=False)
            outlet.push_chunk(np.ascontiguousarray(stc.data.T, dtype=np.float32), stamps.tolist())
            filled = 0


def run(*, quick: bool, method: str, progress) -> dict:
    """``rtsource bench peers`` (``--quick``: 10 s per loop instead of 30)."""
    return bench_peers(seconds=10.0 if quick else 30.0, progress=progress)
