"""``rtsource bench capacity``: how large a configuration the loop sustains, and what limits it.

For each configuration (channels: 64/128/256 EEG and 306 MEG; 5k/20k sources; free/fixed;
input 500-5000 Hz; with and without decimation to 500 Hz for EEG / 1 kHz for MEG), three
processes over real LSL: a producer at the real pace (10 ms chunks), the loop (a
:class:`~rtsource.stream.loop.StreamLoop` with the sources, 68 ROIs and alpha/beta band
power outputs, in its own process), and this process consuming the source stream (every
sample's end-to-end latency). A configuration passes when it runs the whole time with 0
lost samples (the loop's own counters: in - out - skipped - decimated) and end-to-end p99
under :data:`P99_LIMIT_MS`.

Which part limits it, from the loop's own timing of every chunk over the run (wall
seconds per second of data, :class:`~rtsource.stream.telemetry.LoopStats`): the operator
(filters, the decimation filter and the operator product), pushing the source stream
(``output``: LSL copying n_sources floats per sample), the features (68 ROIs, band
power), the rest of the chunk (Python overhead), and the loop process's CPU outside its
chunks (LSL's threads); see :func:`bottleneck`.

A full run (``rtsource bench capacity``, 60 s per configuration) does not run the whole
grid (104 configurations, hours): :func:`search` runs only the configurations that decide
others, since the work grows along every axis (channels, sources, orientation, input and
output rate), and reports the highest passing input rate per (channels, sources,
orientation, decimation); ``--quick`` runs two small configurations for 8 s each.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .processes import start_helper, stop

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
    dtype: str = "float32"  # operator storage ([performance] operator_dtype)

    def label(self) -> str:
        dec = f" -> {self.output_hz:g} Hz" if self.output_hz else ""
        i16 = " int16" if self.dtype != "float32" else ""
        return f"{self.channels:3d} ch {self.modality} {self.sources:5d} src {self.orient:5s}{i16} {self.input_hz:5g} Hz{dec}"


def configurations(quick: bool) -> list[CapacityConfig]:
    """Every configuration of the issue's grid (``quick``: two small ones)."""
    if quick:
        return [CapacityConfig("eeg", 64, 5000, "free", 1000.0, 500.0), CapacityConfig("eeg", 64, 5000, "fixed", 500.0)]
    out = []
    for modality, n_chan, rate_out in (("eeg", 64, 500.0), ("eeg", 128, 500.0), ("eeg", 256, 500.0), ("meg", 306, 1000.0)):
        for n_src in (5000, 20000):
            for orient in ("free", "fixed"):
                for r in RATES:
                    out.append(CapacityConfig(modality, n_chan, n_src, orient, r))
                    if r > rate_out:
                        out.append(CapacityConfig(modality, n_chan, n_src, orient, r, rate_out))
    return out


def _cost(c: CapacityConfig) -> tuple:
    """What grows the work, per axis: a configuration at most as large on every axis as one
    that passes passes too, and one at least as large as one that fails fails too."""
    return (c.channels, c.sources, 3 if c.orient == "free" else 1, c.input_hz, c.output_hz or c.input_hz)


def _le(a: CapacityConfig, b: CapacityConfig) -> bool:
    return a.dtype == b.dtype and all(x <= y for x, y in zip(_cost(a), _cost(b)))


def search(configs: list[CapacityConfig], run) -> tuple[list[dict], dict]:
    """Find which configurations pass with as few runs as the order between them allows.

    Each run decides every configuration it bounds (see :func:`_cost`): a pass decides all
    smaller ones, a failure all larger ones. The next run is the undecided configuration
    that splits the undecided rest most evenly (the larger of the two sides it would
    decide is smallest), the analogue of bisection on a partial order; along one axis it
    is bisection. Returns the rows of the runs and {configuration: (passed, measured)}.
    """
    status: dict = {}
    rows = []
    while True:
        open_ = [c for c in configs if c not in status]
        if not open_:
            return rows, status

        def split(c):
            below = sum(_le(o, c) for o in open_)
            above = sum(_le(c, o) for o in open_)
            return max(below, above), -min(below, above)

        pick = min(open_, key=split)
        row = run(pick)
        rows.append(row)
        ok = row["passed"]
        for c in open_:
            if (ok and _le(c, pick)) or (not ok and _le(pick, c)):
                status[c] = (ok, c == pick)


def bench_capacity(quick: bool = False, seconds: float | None = None, configs: list[CapacityConfig] | None = None, progress=print) -> list[dict]:
    """Search the grid (see :func:`search`); the rows of the runs, then one summary row per
    (channels, sources, orientation, decimation): the highest input rate that passes."""
    seconds = seconds or (8.0 if quick else 60.0)
    configs = configs or configurations(quick)
    def run(c):
        row = run_configuration(c, seconds)
        progress(_fmt(row))
        return row

    rows, status = search(configs, run)
    best: dict = {}
    for c, (ok, _) in status.items():
        key = (c.modality, c.channels, c.sources, c.orient, bool(c.output_hz))
        if ok and c.input_hz > best.get(key, 0.0):
            best[key] = c.input_hz
    summary = []
    for key in sorted({(c.modality, c.channels, c.sources, c.orient, bool(c.output_hz)) for c in configs}):
        mod, ch, src, orient, dec = key
        line = {"summary": True, "modality": mod, "channels": ch, "sources": src, "orient": orient, "decimated": dec, "max_input_hz": best.get(key, 0.0)}
        summary.append(line)
        progress(f"{ch:3d} ch {mod} {src:5d} src {orient:5s} {'decimated' if dec else 'full rate':9s}: highest input rate passing "
                 f"{line['max_input_hz']:g} Hz" if line["max_input_hz"] else f"{ch:3d} ch {mod} {src:5d} src {orient:5s} {'decimated' if dec else 'full rate':9s}: none passes")
    return rows + summary


def run_configuration(cfg: CapacityConfig, seconds: float, stop_early: bool = True) -> dict:
    """Producer, loop and this process's consumer for one configuration (``stop_early``:
    end the run once more than 1 % of the samples were over the p99 limit)."""
    from .peers import consume_samples

    tag = f"cap-{os.getpid()}-{time.time_ns()}"
    in_name, out_name = tag + "-in", tag + "-out"
    tmp = Path(tempfile.mkdtemp(prefix="rtsource-capacity-"))
    report = tmp / "loop.json"
    chunk = max(1, int(round(cfg.input_hz * CHUNK_S)))
    spec = {**asdict(cfg), "in_name": in_name, "out_name": out_name, "seconds": seconds, "report": str(report), "chunk": chunk}
    prod = start_helper("--produce", in_name, cfg.channels, cfg.input_hz, seconds, chunk)
    loop = start_helper("--capacity-loop", json.dumps(spec))
    load = os.getloadavg()[0]
    rate_out = cfg.output_hz or cfg.input_hz
    # more than 1 % of the samples over the limit: the p99 verdict is known, stop early
    give_up = (P99_LIMIT_MS * 1e-3, int(0.01 * rate_out * (seconds - 2.0))) if stop_early else None
    try:
        cpu0, w0 = os.times(), time.monotonic()
        got = consume_samples(out_name, cfg.sources, seconds, loop.pid, give_up=give_up)
        cpu1, wall = os.times(), time.monotonic() - w0
        if got["gave_up"]:  # the producer stops, the loop sees no data for its idle timeout and reports
            prod.terminate()
        loop.wait(timeout=120)
    finally:
        stop(loop, prod)
    lat = got["latencies"]
    inner = json.loads(report.read_text()) if report.exists() else {"error": "the loop process wrote no report"}
    p99 = float(np.percentile(lat, 99)) * 1e3 if len(lat) else float("nan")
    row = {
        **asdict(cfg), "seconds": seconds, "chunk": chunk, "e2e_p50_ms": round(float(np.percentile(lat, 50)) * 1e3, 2) if len(lat) else float("nan"),
        "e2e_p99_ms": round(p99, 2), "received": got["samples"], "cpu_s_per_s": round(float(got["cpu_per_s"]), 3),
        "consumer_cpu_s_per_s": round((cpu1.user + cpu1.system - cpu0.user - cpu0.system) / wall, 3), "load_avg": round(load, 2),
        "stopped_early": got["gave_up"], **inner,
    }  # fmt: skip
    row["passed"] = bool(inner.get("lost", 1) == 0 and p99 < P99_LIMIT_MS and "error" not in inner and not got["gave_up"])
    row["bottleneck"] = bottleneck(row)
    return row


#: the loop's chunk work per second of data above which it cannot absorb a burst (one core)
BUSY_LIMIT = 0.8


def bottleneck(row: dict) -> str:
    """Which part limits a configuration, from the loop's own per-part times.

    ``rest`` is the loop's work per chunk outside the three parts (stamps, counters,
    checks: Python overhead); ``lsl`` the loop process's CPU outside its chunk work
    (LSL's threads receiving the input and serialising the outputs). When the loop's
    chunk work stays under :data:`BUSY_LIMIT` of a core and the run still fails, the loop
    had time to spare and the latency came from the machine (the producer, the consumer,
    other processes).
    """
    if "process_s_per_s" not in row:
        return "unknown"
    parts = {
        "operator": row["operator_s_per_s"], "output": row["output_s_per_s"], "features": row["features_s_per_s"],
        "rest": max(0.0, row["process_s_per_s"] - row["operator_s_per_s"] - row["output_s_per_s"] - row["features_s_per_s"]),
        "lsl": max(0.0, row["cpu_s_per_s"] - row["process_s_per_s"]) if row["cpu_s_per_s"] == row["cpu_s_per_s"] else 0.0,
    }  # fmt: skip
    largest = max(parts, key=parts.get)
    if row["passed"]:
        return f"passes ({largest} largest)"
    if row["process_s_per_s"] < BUSY_LIMIT and row.get("lost", 1) == 0:
        return f"machine (loop busy {row['process_s_per_s']:.2f} s/s, {largest} largest)"
    return largest


def _fmt(r: dict) -> str:
    dec = f" -> {r['output_hz']:g} Hz" if r["output_hz"] else ""
    i16 = " int16" if r.get("dtype", "float32") != "float32" else ""
    verdict = "ok  " if r["passed"] else "FAIL"
    nan = float("nan")
    return (
        f"{verdict} {r['channels']:3d} ch {r['modality']} {r['sources']:5d} src {r['orient']:5s}{i16} {r['input_hz']:5g} Hz{dec}: "
        f"lost {r.get('lost', '?')}, e2e p50 {r['e2e_p50_ms']} ms p99 {r['e2e_p99_ms']} ms, loop CPU {r['cpu_s_per_s']} s/s, chunk work "
        f"{r.get('process_s_per_s', nan):.3f} s/s (operator {r.get('operator_s_per_s', nan):.3f}, output {r.get('output_s_per_s', nan):.3f}, "
        f"features {r.get('features_s_per_s', nan):.3f}), consumer {r['consumer_cpu_s_per_s']} s/s, load {r['load_avg']} -> {r['bottleneck']}"
        + (f" [{r['error']}]" if "error" in r else "")
    )


# ---- the loop process (hidden mode ``python -m rtsource.bench --capacity-loop SPEC``) -------


def capacity_loop(spec_json: str) -> None:
    """Run the loop with sources + 68 ROIs + band power on the producer's stream; write its counters."""
    from ..inverse.roi import roi_from_vertices
    from ..stream.bandpower import BandPowerSpec
    from ..stream.features import FeatureOptions
    from ..stream.inlet import StreamSelector
    from ..stream.loop import LoopOptions, StreamLoop
    from .common import random_bundle

    spec = json.loads(spec_json)
    n_orient = 3 if spec["orient"] == "free" else 1
    bundle = random_bundle(spec["channels"], spec["sources"], n_orient, sfreq=spec["input_hz"])
    groups = np.array_split(np.arange(spec["sources"]), 68)
    rois = tuple(roi_from_vertices(bundle.sources, f"R{i:02d}", g) for i, g in enumerate(groups))
    features = FeatureOptions(rois=rois, roi_mode="mean", bandpower=BandPowerSpec.from_mapping({"alpha": [8, 12], "beta": [13, 30]}, rate_hz=50.0))
    opts = LoopOptions(
        selector=StreamSelector(spec["in_name"]), output_name=spec["out_name"], resolve_timeout=60, idle_timeout=3.0, control=False,
        telemetry=False, output_rate_hz=spec["output_hz"], wait_for_consumer_s=30.0, operator_dtype=spec["dtype"],
    )  # fmt: skip
    loop = StreamLoop(bundle, opts, features=features)
    out: dict = {}
    try:
        loop.connect()
        stats = loop.run(duration=spec["seconds"] + 30)
        s = stats.summary()
        out.update({k: s[k] for k in ("samples_in", "samples_out", "lost", "decimated", "chunks", "chunk_process_ms_p50", "chunk_process_ms_p99")})
        # the parts of each chunk, timed by the loop itself over the whole run (wall seconds
        # per second of data): the operator (filters, decimation, product), pushing the
        # source outlet, the features (68 ROIs, band power), and the rest of the chunk
        data_s = s["samples_in"] / spec["input_hz"]
        for part in ("operator", "output", "features", "process"):
            out[f"{part}_s_per_s"] = round(s[f"{part}_seconds"] / data_s, 4) if data_s else float("nan")
        out["operator_path"] = dict(loop.operator.describe()).get("operator_path", "")
    except Exception as exc:  # reported in the table, not raised: the ladder moves on
        out["error"] = f"{type(exc).__name__}: {exc}"[:300]
    finally:
        loop.close()
        Path(spec["report"]).write_text(json.dumps(out))


def run(*, quick: bool, method: str, progress) -> list[dict]:
    """``rtsource bench capacity`` (``--quick``: two small configurations, 8 s each)."""
    return bench_capacity(quick=quick, progress=progress)
