"""``rtsource bench capacity``: how large a configuration the loop sustains, and what limits it.

For each configuration (channels: 64/128/256 EEG and 306 MEG; 5k/20k sources; free/fixed;
input 500-5000 Hz; with and without decimation to 500 Hz for EEG / 1 kHz for MEG), three
processes over real LSL: a producer at the real pace (10 ms chunks), the loop (a
:class:`~rtsource.stream.loop.StreamLoop` with the sources, 68 ROIs and alpha/beta band
power outputs, in its own process), and this process consuming the source stream (every
sample's end-to-end latency). A configuration passes when it runs the whole time with 0
lost samples (the loop's own counters: in - out - skipped - decimated) and end-to-end p99
under :data:`P99_LIMIT_MS`.

Which part limits it, from the loop process's own measurements: the operator per second of
data (``kernel``: the decimation filter and the operator product), pushing the source
stream (``output``: LSL serialising n_sources floats per sample), and everything else in
the loop per chunk (``python``: ROIs, band power, counters, the loop's overhead); each as
seconds per second of data, so whichever nears 1 / (cores it may use) is the bottleneck.

A full run (``rtsource bench capacity``, 60 s per configuration, walking up the input rates
until one fails) takes hours and wants a quiet machine; ``--quick`` runs a few small
configurations for 8 s each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

P99_LIMIT_MS = 50.0
RATES = (500.0, 1000.0, 2000.0, 5000.0)
CHUNK_S = 0.01


@dataclass(frozen=True)
class CapacityConfig:
    """One configuration: sensors, sources, orientation, input rate and output rate (0: no decimation)."""

    modality: str
    channels: int
    sources: int
    orient: str
    input_hz: float
    output_hz: float = 0.0

    def label(self) -> str:
        dec = f" -> {self.output_hz:g} Hz" if self.output_hz else ""
        return f"{self.channels:3d} ch {self.modality} {self.sources:5d} src {self.orient:5s} {self.input_hz:5g} Hz{dec}"


def configurations(quick: bool) -> list[list[CapacityConfig]]:
    """Ladders of configurations that differ only in the input rate (walked up until one fails)."""
    if quick:
        return [[CapacityConfig("eeg", 64, 5000, "free", 1000.0, 500.0)], [CapacityConfig("eeg", 64, 5000, "fixed", 500.0)]]
    ladders = []
    for modality, n_chan, out in (("eeg", 64, 500.0), ("eeg", 128, 500.0), ("eeg", 256, 500.0), ("meg", 306, 1000.0)):
        for n_src in (5000, 20000):
            for orient in ("free", "fixed"):
                for dec in (False, True):
                    ladders.append([CapacityConfig(modality, n_chan, n_src, orient, r, out if dec and r > out else 0.0) for r in RATES if not dec or r > out])
    return ladders


def bench_capacity(quick: bool = False, seconds: float | None = None, progress=print) -> list[dict]:
    """Run the ladders; one row per configuration run (see the module docstring)."""
    seconds = seconds or (8.0 if quick else 60.0)
    rows = []
    for ladder in configurations(quick):
        for cfg in ladder:
            row = run_configuration(cfg, seconds)
            rows.append(row)
            progress(_fmt(row))
            if not row["passed"]:
                break  # higher rates of this ladder fail too
    return rows


def run_configuration(cfg: CapacityConfig, seconds: float) -> dict:
    """Producer, loop and this process's consumer for one configuration."""
    from .peers import consume_samples

    tag = f"cap-{os.getpid()}-{time.time_ns()}"
    in_name, out_name = tag + "-in", tag + "-out"
    tmp = Path(tempfile.mkdtemp(prefix="rtsource-capacity-"))
    report = tmp / "loop.json"
    chunk = max(1, int(round(cfg.input_hz * CHUNK_S)))
    spec = {**asdict(cfg), "in_name": in_name, "out_name": out_name, "seconds": seconds, "report": str(report), "chunk": chunk}
    prod = subprocess.Popen([sys.executable, "-m", "rtsource.bench", "--produce", in_name, str(cfg.channels), str(cfg.input_hz), str(seconds), str(chunk)])
    loop = subprocess.Popen([sys.executable, "-m", "rtsource.bench", "--capacity-loop", json.dumps(spec)])
    try:
        got = consume_samples(out_name, cfg.sources, seconds, loop.pid)
        loop.wait(timeout=120)
    finally:
        for p in (loop, prod):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
    lat = got["latencies"]
    inner = json.loads(report.read_text()) if report.exists() else {"error": "the loop process wrote no report"}
    p99 = float(np.percentile(lat, 99)) * 1e3 if len(lat) else float("nan")
    row = {
        **asdict(cfg), "seconds": seconds, "chunk": chunk, "e2e_p50_ms": round(float(np.percentile(lat, 50)) * 1e3, 2) if len(lat) else float("nan"),
        "e2e_p99_ms": round(p99, 2), "received": got["samples"], "cpu_s_per_s": round(float(got["cpu_per_s"]), 3), **inner,
    }  # fmt: skip
    row["passed"] = bool(inner.get("lost", 1) == 0 and p99 < P99_LIMIT_MS and "error" not in inner)
    costs = {k: row.get(f"{k}_s_per_s", 0.0) for k in ("kernel", "output", "python")}
    row["bottleneck"] = max(costs, key=costs.get) if any(costs.values()) else "unknown"
    return row


def _fmt(r: dict) -> str:
    dec = f" -> {r['output_hz']:g} Hz" if r["output_hz"] else ""
    verdict = "ok  " if r["passed"] else "FAIL"
    return (
        f"{verdict} {r['channels']:3d} ch {r['modality']} {r['sources']:5d} src {r['orient']:5s} {r['input_hz']:5g} Hz{dec}: "
        f"lost {r.get('lost', '?')}, e2e p50 {r['e2e_p50_ms']} ms p99 {r['e2e_p99_ms']} ms, loop CPU {r['cpu_s_per_s']} s/s "
        f"(kernel {r.get('kernel_s_per_s', float('nan')):.3f}, output {r.get('output_s_per_s', float('nan')):.3f}, "
        f"python {r.get('python_s_per_s', float('nan')):.3f} s/s) -> {r['bottleneck']}"
    )


# ---- the loop process (hidden mode ``python -m rtsource.bench --capacity-loop SPEC``) -------


def capacity_loop(spec_json: str) -> None:
    """Run the loop with sources + 68 ROIs + band power on the producer's stream; write its counters."""
    from ..inverse.roi import roi_from_vertices
    from ..stream.bandpower import BandPowerSpec
    from ..stream.features import FeatureOptions
    from ..stream.inlet import StreamSelector
    from ..stream.loop import LoopOptions, StreamLoop
    from .common import random_bundle, time_blocks

    spec = json.loads(spec_json)
    n_orient = 3 if spec["orient"] == "free" else 1
    bundle = random_bundle(spec["channels"], spec["sources"], n_orient, sfreq=spec["input_hz"])
    groups = np.array_split(np.arange(spec["sources"]), 68)
    rois = tuple(roi_from_vertices(bundle.sources, f"R{i:02d}", g) for i, g in enumerate(groups))
    features = FeatureOptions(rois=rois, roi_mode="mean", bandpower=BandPowerSpec.from_mapping({"alpha": [8, 12], "beta": [13, 30]}, rate_hz=50.0))
    opts = LoopOptions(
        selector=StreamSelector(spec["in_name"]), output_name=spec["out_name"], resolve_timeout=60, idle_timeout=3.0, control=False,
        telemetry=False, output_rate_hz=spec["output_hz"], wait_for_consumer_s=30.0,
    )  # fmt: skip
    loop = StreamLoop(bundle, opts, features=features)
    out: dict = {}
    try:
        loop.connect()
        stats = loop.run(duration=spec["seconds"] + 30)
        s = stats.summary()
        out.update({k: s[k] for k in ("samples_in", "samples_out", "lost", "decimated", "chunks", "chunk_process_ms_p50", "chunk_process_ms_p99")})
        # the parts of a chunk, timed alone in this process after the run (the loop's threads
        # are still set); the output on a probe outlet of the same width with a consumer, so
        # LSL serialises as it did for the real one and the consumer sees nothing extra
        n = spec["chunk"]
        op = loop.operator
        x = np.random.default_rng(0).normal(size=(n, loop.inlet.buffer.shape[1])).astype(np.float32)
        ts = np.arange(n) / spec["input_hz"]
        m = max(1, len(range(0, n, op._factor)))
        y = np.zeros((m, bundle.n_sources), np.float32)
        probe = _probe_outlet(spec["out_name"] + "-probe", bundle.n_sources, op.output_rate_hz)
        t = time_blocks({"kernel": lambda: op.process(x, n), "output": lambda: probe[0].push_chunk(y, ts[:m].tolist())}, reps=30, rounds=1)
        per_s = spec["input_hz"] / n  # chunks per second of data
        out["kernel_s_per_s"] = round(t["kernel"][0] * 1e-3 * per_s, 4)
        out["output_s_per_s"] = round(t["output"][0] * 1e-3 * per_s, 4)
        out["python_s_per_s"] = round(max(0.0, s["chunk_process_ms_p50"] * 1e-3 * per_s - out["kernel_s_per_s"] - out["output_s_per_s"]), 4)
        out["operator_path"] = dict(op.describe()).get("operator_path", "")
    except Exception as exc:  # reported in the table, not raised: the ladder moves on
        out["error"] = f"{type(exc).__name__}: {exc}"[:300]
    finally:
        loop.close()
        Path(spec["report"]).write_text(json.dumps(out))


def _probe_outlet(name: str, n_channels: int, sfreq: float):
    """(outlet, inlet) of a throw-away stream with a connected consumer."""
    import pylsl

    outlet = pylsl.StreamOutlet(pylsl.StreamInfo(name, "Probe", n_channels, sfreq, pylsl.cf_float32, name), chunk_size=0, max_buffered=60)
    inlet = pylsl.StreamInlet(pylsl.resolve_byprop("name", name, minimum=1, timeout=30)[0], max_buflen=60)
    inlet.open_stream(timeout=10)
    outlet.wait_for_consumers(10)
    return outlet, inlet


def run(*, quick: bool, method: str, progress) -> list[dict]:
    """``rtsource bench capacity`` (``--quick``: two small configurations, 8 s each)."""
    return bench_capacity(quick=quick, progress=progress)
