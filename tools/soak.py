"""Soak run: producer process -> `rtsource run` process -> consumer, for a long time.

    python tools/soak.py --minutes 10 --channels 64 --sources 8000 --sfreq 1000
    python tools/soak.py --minutes 10 --channels 306 --sources 8000 --sfreq 1000 --json soak306.json

Each part runs in its own process, as in the lab: a producer pushes random EEG-like data in
10-sample chunks at the real pace over LSL; the loop is the real `rtsource run` command on a
bundle of the requested size (random operator, template source positions); this tool is the
consumer. Every interval (default 60 s) it reports samples pushed / received, lost (pushed
but never received), gaps and NaN counts from the loop's telemetry, the loop process's
resident memory, and end-to-end latency percentiles (consumer pull time minus the sample's
timestamp). At the end: memory growth (last interval vs first), and the p99 latency of the
last interval relative to the first.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def channel_names(n: int) -> tuple[str, ...]:
    from rtsource.sensors.montage import CAP_64, standard_montage

    if n <= 64:
        return CAP_64[:n]
    extra = [x for x in standard_montage("standard_1005").labels if x not in CAP_64]
    names = list(CAP_64) + extra
    if n > len(names):
        names += [f"X{i:03d}" for i in range(n - len(names))]
    return tuple(names[:n])


def synthetic_bundle(n_chan: int, n_src: int, sfreq: float, seed: int = 0):
    """A bundle of the requested size: random loose-orientation operator on template positions."""
    from rtsource.anatomy.template import template_source_space
    from rtsource.bundle import OperatorBundle

    rng = np.random.default_rng(seed)
    dense = template_source_space("ico5")
    sources = dense.subset(np.sort(rng.choice(dense.n_sources, n_src, replace=False)), name=f"fsaverage-ico5-random{n_src}")
    names = channel_names(n_chan)
    return OperatorBundle(
        kernel=rng.normal(size=(3 * n_src, n_chan)) * 1e5,
        noise_norm=rng.uniform(0.5, 2.0, n_src) * 1e5,
        n_orient=3,
        method="dSPM",
        output_unit="",
        ch_names=names,
        ch_types=("eeg",) * n_chan,
        ch_units=("V",) * n_chan,
        reference="average",
        sfreq=sfreq,
        sources=sources,
        channel_positions_m=rng.normal(size=(n_chan, 3)) * 0.09,
        channel_frame="template",
        params={"synthetic": True},
        provenance={"tool": "tools/soak.py"},
    )


def producer(name: str, names: tuple[str, ...], sfreq: float, seconds: float, chunk: int) -> int:
    """Push random microvolt data at the real pace; returns the number of samples pushed."""
    import pylsl

    from rtsource.lsl_config import configure_liblsl

    configure_liblsl()
    info = pylsl.StreamInfo(name, "EEG", len(names), sfreq, pylsl.cf_float32, name)
    chans = info.desc().append_child("channels")
    for n in names:
        c = chans.append_child("channel")
        c.append_child_value("label", n)
        c.append_child_value("type", "EEG")
        c.append_child_value("unit", "microvolts")
    outlet = pylsl.StreamOutlet(info, chunk_size=0, max_buffered=360)
    outlet.wait_for_consumers(120)
    rng = np.random.default_rng(1)
    block = (rng.normal(size=(int(sfreq) * 10, len(names))) * 10).astype(np.float32)  # recycled noise
    t0 = pylsl.local_clock() + 0.1
    total = int(seconds * sfreq)
    k = 0
    while k < total:
        n = min(chunk, total - k)
        ts = t0 + (k + np.arange(n)) / sfreq
        wait = ts[-1] - pylsl.local_clock()
        if wait > 0:
            time.sleep(wait)
        start = k % (len(block) - chunk)
        outlet.push_chunk(block[start : start + n], ts.tolist())
        k += n
    time.sleep(2.0)  # let the consumers drain before the outlet disappears
    return k


def _pushed(prod: subprocess.Popen, expected: int) -> int:
    """Samples the producer says it pushed (its last stdout line), once it has exited."""
    if prod.poll() is None:
        return expected
    if not hasattr(prod, "_rtsource_count"):
        out = prod.stdout.read() if prod.stdout else ""
        lines = [x for x in out.strip().splitlines() if x.startswith("pushed ")]
        prod._rtsource_count = int(lines[-1].split()[1]) if lines else -1
    return prod._rtsource_count


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def soak(minutes: float, n_chan: int, n_src: int, sfreq: float, interval: float = 60.0, chunk: int = 10, progress=print) -> dict:
    import pylsl

    from rtsource.bundle import save_bundle
    from rtsource.stream.outputs import TELEMETRY_CHANNELS, TELEMETRY_SUFFIX

    tag = f"soak-{os.getpid()}-{int(time.time())}"
    in_name, out_name = tag + "-eeg", tag + "-src"
    seconds = minutes * 60.0
    tmp = Path(tempfile.mkdtemp(prefix="rtsource-soak-"))
    bundle = synthetic_bundle(n_chan, n_src, sfreq)
    bundle_path = save_bundle(bundle, tmp / "soak_bundle.npz")
    # The producer sends white noise, not EEG: the bad-channel detector would rightly call
    # every channel uncorrelated with its neighbours. Run without it.
    config = tmp / "soak.toml"
    config.write_text("[badchannels]\ndetect = false\n")
    total = int(seconds * sfreq)
    prod = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--produce", in_name, "--channels", str(n_chan), "--sfreq", str(sfreq),
         "--minutes", str(minutes), "--chunk", str(chunk)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    loop = subprocess.Popen(
        [sys.executable, "-m", "rtsource.cli", "run", str(bundle_path), "--config", str(config), "--stream-name", in_name,
         "--outlet-name", out_name, "--resolve-timeout", "60", "--idle-timeout", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        found = pylsl.resolve_byprop("name", out_name, minimum=1, timeout=120)
        if not found:
            raise RuntimeError(f"the loop never published {out_name!r}: {loop.stderr.read() if loop.poll() is not None else ''}")
        inlet = pylsl.StreamInlet(found[0], max_buflen=360)
        inlet.open_stream(timeout=30)
        tel_found = pylsl.resolve_byprop("name", out_name + TELEMETRY_SUFFIX, minimum=1, timeout=30)
        tel = pylsl.StreamInlet(tel_found[0])
        tel.open_stream(timeout=30)
        labels = [c for c, _ in TELEMETRY_CHANNELS]
        buf = np.zeros((4096, n_src), np.float32)
        offset = inlet.time_correction(timeout=5)
        received = 0
        last_ts = None
        out_of_order = 0
        rows = []
        lat: list[float] = []
        t_start = time.monotonic()
        next_report = t_start + interval
        telemetry = None
        while True:
            _, ts = inlet.pull_chunk(timeout=0.2, max_samples=4096, dest_obj=buf, min_samples=1, as_numpy=True)
            if len(ts):
                now = pylsl.local_clock()
                lat.append(now - (ts[-1] + offset))
                received += len(ts)
                if last_ts is not None and ts[0] <= last_ts:
                    out_of_order += 1
                last_ts = ts[-1]
            tdata, _ = tel.pull_chunk(timeout=0.0, as_numpy=True)
            if len(tdata):
                telemetry = dict(zip(labels, tdata[-1]))
            t = time.monotonic()
            done = received >= total or (prod.poll() is not None and received >= _pushed(prod, total))
            if t >= next_report or done or (loop.poll() is not None):
                la = np.array(lat) if lat else np.array([np.nan])
                row = {
                    "t_s": round(t - t_start, 1),
                    "received": received,
                    "loop_lost": int(telemetry["lost"]) if telemetry else None,
                    "gaps": int(telemetry["gaps"]) if telemetry else None,
                    "nan": int(telemetry["nan_samples"]) if telemetry else None,
                    "loop_rss_mb": round(rss_mb(loop.pid), 1),
                    "latency_ms_p50": round(float(np.percentile(la, 50)) * 1e3, 3),
                    "latency_ms_p99": round(float(np.percentile(la, 99)) * 1e3, 3),
                    "loop_process_ms_p99": round(float(telemetry["process_ms_p99"]), 3) if telemetry else None,
                }
                rows.append(row)
                progress(json.dumps(row))
                lat = []
                next_report = t + interval
            if done or loop.poll() is not None:
                break
        for _ in range(100):  # whatever is still in flight
            _, ts = inlet.pull_chunk(timeout=0.1, max_samples=4096, dest_obj=buf, as_numpy=True)
            received += len(ts)
            if not len(ts):
                break
    finally:
        loop.terminate()
        try:
            out, _ = loop.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            loop.kill()
            out = ""
        try:
            prod.wait(timeout=20)
        except subprocess.TimeoutExpired:
            prod.kill()
    pushed = _pushed(prod, total)
    first, last = rows[0], rows[-1]
    return {
        "channels": n_chan,
        "sources": n_src,
        "sfreq": sfreq,
        "minutes": minutes,
        "pushed": pushed,
        "received": received,
        "lost": pushed - received,
        "out_of_order_chunks": out_of_order,
        "memory_growth_mb": round(last["loop_rss_mb"] - first["loop_rss_mb"], 1),
        "p99_last_vs_first": round(last["latency_ms_p99"] / first["latency_ms_p99"], 3) if first["latency_ms_p99"] else None,
        "intervals": rows,
        "loop_stdout_tail": out[-3000:] if out else "",
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--sources", type=int, default=8000)
    ap.add_argument("--sfreq", type=float, default=1000.0)
    ap.add_argument("--interval", type=float, default=60.0, help="seconds per report row")
    ap.add_argument("--json", help="write the report here")
    ap.add_argument("--produce", metavar="NAME", help=argparse.SUPPRESS)  # internal: run the producer
    ap.add_argument("--chunk", type=int, default=10, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.produce:
        n = producer(args.produce, channel_names(args.channels), args.sfreq, args.minutes * 60.0, args.chunk)
        print(f"pushed {n}", flush=True)
        return
    report = soak(args.minutes, args.channels, args.sources, args.sfreq, args.interval)
    summary = {k: v for k, v in report.items() if k not in ("intervals", "loop_stdout_tail")}
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
