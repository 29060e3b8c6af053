"""Acceptance numbers of issue 18: evoked averages, epoch bookkeeping and connectivity on the
template head, through the same stages the loop runs (RoiOperator, EpochEngine,
ConnectivityStage), fed by the simulator's own forward model (ico5 mid-cortex, 3 shells;
the inverse is ico4 white cortex, 4 shells, dSPM, 68 aparc ROIs, mean_flip).

    python tools/events_acceptance.py [--seconds 90] [--json out.json]

1. Evoked: a 30 nAm source (latency 100 ms, width 20 ms) at 1 uV sensor noise (and again with
   the simulator's default brain background, 1000 x 5 nAm 1/f dipoles): the running average
   in the ROI holding the source after 20 epochs, its peak latency; the average's noise (std
   over the baseline, median over the 68 ROIs) against the number of epochs, and the log-log
   slope (1 / sqrt(n): -0.5).
2. Bookkeeping: the same markers delivered before their data, after it, and shuffled with
   random chunk sizes: epochs accepted, lost, duplicated.
3. Connectivity: a pair with 90 degree lag and one with 0 degree lag (coupling 0.8, 10 Hz,
   50 nAm, over the brain background): the distributions over 1 s windows (alpha 8-12 Hz) of
   coh / imcoh / wPLI for the pairs' ROIs, against the same simulation with the coupling off,
   and the medians over the other ROI pairs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import numpy as np

SFREQ = 500.0
EVOKED_POS = (-38.0, -22.0, 58.0)  # left precentral
PAIR90 = ((-40.0, -60.0, 40.0), (42.0, -58.0, 38.0))  # parietal, left leads right by 90 deg
PAIR0 = ((-30.0, 40.0, 28.0), (30.0, 40.0, 28.0))  # frontal, zero lag


def build():
    from rtsource.build import build_bundle
    from rtsource.config import settings_from_dict
    from rtsource.roi_operator import RoiOperator
    from rtsource.session import rois_from_settings

    settings = settings_from_dict({"noise_cov": {"source": "ad_hoc"}, "stream": {"sfreq": SFREQ}, "rois": {"atlas": "aparc"}})
    bundle = build_bundle(settings, sfreq=SFREQ)
    rois = rois_from_settings(settings, bundle)
    return settings, bundle, RoiOperator.from_bundle(bundle, rois, "mean_flip")


def roi_of(bundle, roi_op, position_mm) -> int:
    """The ROI holding the inverse's source nearest ``position_mm``."""
    pos = bundle.sources.positions_m * 1e3
    nearest = int(np.argmin(np.linalg.norm(pos - np.asarray(position_mm), axis=1)))
    w = roi_op.weights
    for r in range(w.n_roi):
        if nearest in w.indices[w.indptr[r] : w.indptr[r + 1]]:
            return r
    raise RuntimeError(f"no ROI holds the source nearest {position_mm}")


def simulate(settings, extra, seconds, *, background: bool):
    from rtsource.simulator import SignalGenerator

    sim = dataclasses.replace(settings.simulate, sources=(), sensor_noise_uv=1.0, n_noise_sources=1000 if background else 0)
    gen = SignalGenerator(sim, settings.sensors.channels, extra=extra)
    n = int(seconds * SFREQ)
    data, markers = [], []
    for i in range(0, n, 500):
        block = gen.next_block(min(500, n - i))
        data.append(block.data_v)
        markers += gen.markers
    return np.vstack(data), markers


def evoked_part(settings, bundle, roi_op, seconds, background):
    from rtsource.sim_events import EventedSources, EventSchedule, EvokedSource
    from rtsource.stream.epochs import EpochEngine, EpochSpec, EpochWindow

    ev = EvokedSource(EVOKED_POS, amplitude_nam=30.0, latency_s=0.1, width_s=0.02)
    extra = EventedSources(SFREQ, evoked=[ev], schedule=EventSchedule(interval_s=0.8, jitter_s=0.2), seed=11)
    x, markers = simulate(settings, extra, seconds, background=background)
    roi = roi_op.apply(x)  # (n, 68), the loop's ROI output
    ts = 1000.0 + np.arange(len(roi)) / SFREQ
    engine = EpochEngine(EpochSpec((EpochWindow("stim", -0.2, 0.5),), baseline=(-0.2, 0.0), buffer_s=5.0), roi_op.names, SFREQ, 64)
    epochs = []
    for name, k in markers:
        epochs += engine.push_marker(name, ts[k])
    for i in range(0, len(roi), 64):
        epochs += engine.push_data(roi[i : i + 64], ts[i : i + 64])
    r = roi_of(bundle, roi_op, EVOKED_POS)
    times = epochs[0].times
    stack = np.array([e.data for e in epochs])  # (n_epochs, n_times, 68)
    post = (times >= 0) & (times <= 0.3)
    avg20 = stack[:20].mean(axis=0)[:, r]
    latency = float(times[post][np.argmax(np.abs(avg20[post]))])
    base = times < 0
    ns = [n for n in (1, 2, 4, 8, 16, 32, 64) if n <= len(stack)]
    noise = [float(np.median(stack[:n].mean(axis=0)[base].std(axis=0))) for n in ns]
    slope = float(np.polyfit(np.log(ns), np.log(noise), 1)[0])
    return {
        "background": "1000 x 5 nAm brain dipoles + 1 uV sensor noise" if background else "1 uV sensor noise",
        "roi": roi_op.names[r],
        "epochs": len(epochs),
        "markers": len(markers),
        "latency_after_20_ms": round(latency * 1e3, 1),
        "latency_error_ms": round(abs(latency - 0.1) * 1e3, 1),
        "peak_snr_after_20": round(float(np.abs(avg20[post]).max() / (stack[:20].mean(axis=0)[base, r].std() + 1e-30)), 1),
        "noise_vs_n": dict(zip(map(str, ns), [round(v, 4) for v in noise])),
        "noise_loglog_slope": round(slope, 3),
    }


def bookkeeping_part(seed=0):
    from rtsource.stream.epochs import EpochEngine, EpochSpec, EpochWindow

    rng = np.random.default_rng(seed)
    n = int(120 * SFREQ)
    x = rng.normal(size=(n, 4))
    ts = 1000.0 + np.arange(n) / SFREQ
    ks = np.sort(rng.choice(np.arange(200, n - 500), size=100, replace=False))
    marks = [("stim", ts[k] + rng.uniform(-0.4, 0.4) / SFREQ) for k in ks]
    spec = EpochSpec((EpochWindow("stim", -0.2, 0.8),), buffer_s=130.0)
    out = {}
    for order in ("before", "after", "shuffled"):
        eng = EpochEngine(spec, ["a", "b", "c", "d"], SFREQ, 64)
        got = []
        if order == "before":
            for m in marks:
                got += eng.push_marker(*m)
        queue = list(marks)
        rng.shuffle(queue)  # shuffled: markers arrive in random order, some before, some after their data
        i = 0
        while i < n:
            m = int(rng.integers(1, 65))
            got += eng.push_data(x[i : i + m], ts[i : i + m])
            i += m
            if order == "shuffled" and queue and rng.random() < 0.05:
                for _ in range(int(rng.integers(1, 4))):
                    if queue:
                        got += eng.push_marker(*queue.pop())
        rest = marks if order == "after" else (queue if order == "shuffled" else [])
        for mk in rest:
            got += eng.push_marker(*mk)
        if order == "shuffled":  # markers delivered twice must not count twice
            for mk in marks[:10]:
                got += eng.push_marker(*mk)
        times = [g.marker_time for g in got]
        out[order] = {
            "markers": len(marks),
            "epochs": len(got),
            "lost": len(set(m[1] for m in marks) - set(times)),
            "double": len(times) - len(set(times)),
            "duplicates_refused": int(eng.counts["duplicate"]),
        }
    return out


def _connectivity_run(settings, roi_op, seconds, coupling):
    from rtsource.sim_events import CoupledPair, EventedSources
    from rtsource.stream.bandpower import Band
    from rtsource.stream.connectivity import ConnectivitySpec, ConnectivityStage

    pairs = [CoupledPair(*PAIR90, frequency_hz=10.0, lag_deg=90.0, coupling=coupling, amplitude_nam=50.0),
             CoupledPair(*PAIR0, frequency_hz=10.0, lag_deg=0.0, coupling=coupling, amplitude_nam=50.0)]  # fmt: skip
    x, _ = simulate(settings, EventedSources(SFREQ, pairs=pairs, seed=5), seconds, background=True)
    roi = roi_op.apply(x)
    spec = ConnectivitySpec(bands=(Band("alpha", 8.0, 12.0),), measures=("coh", "imcoh", "wpli"), window_s=1.0, step_s=0.1, segment_s=0.5)
    stage = ConnectivityStage(spec, roi_op.names, SFREQ, 100)
    vals, _ = stage.run_offline(roi, np.arange(len(roi)) / SFREQ)
    return stage, vals[20:].reshape(-1, 3, stage.n_pairs)  # windows x measures x pairs (first 2 s: filter settling)


def connectivity_part(settings, bundle, roi_op, seconds):
    """The coupled pairs' values over 1 s windows against the same ROI pairs with the coupling off,
    and against every other ROI pair (medians over windows)."""
    stage, on = _connectivity_run(settings, roi_op, seconds, 0.8)
    _, off = _connectivity_run(settings, roi_op, seconds, 0.0)
    pi, pj = stage.pair_i, stage.pair_j

    def pair_index(a, b):
        i, j = sorted((a, b))
        return int(np.flatnonzero((pi == i) & (pj == j))[0])

    def dist(v):
        v = np.asarray(v)
        return {"p5": round(float(np.percentile(v, 5)), 3), "median": round(float(np.median(v)), 3), "p95": round(float(np.percentile(v, 95)), 3)}

    out = {"window_s": 1.0, "windows": int(len(on)), "band": "alpha 8-12 Hz", "segments": "0.5 s Hann, every 0.1 s (6 per window)"}
    involved = set()
    for key, where in (("pair_90deg", PAIR90), ("pair_0deg", PAIR0)):
        a, b = (roi_of(bundle, roi_op, p) for p in where)
        involved |= {a, b}
        p = pair_index(a, b)
        sign = 1.0 if a < b else -1.0  # imcoh is signed: positive when the first source leads
        out[key] = {"rois": [roi_op.names[a], roi_op.names[b]]}
        for m, name in enumerate(("coh", "imcoh", "wpli")):
            f = sign if name == "imcoh" else 1.0
            out[key][name] = {"coupled": dist(f * on[:, m, p]), "uncoupled": dist(f * off[:, m, p])}
    med = np.nanmedian(on, axis=0)
    others = np.array([p for p in range(stage.n_pairs) if pi[p] not in involved and pj[p] not in involved])
    out["other_pairs_medians"] = {
        "n": int(len(others)),
        "note": "pairs without a source ROI (they still carry leakage of the coupled sources)",
        "abs_imcoh": dist(np.abs(med[1, others])),
        "wpli": dist(med[2, others]),
        "coh": dist(med[0, others]),
    }
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=90.0, help="simulated seconds per part (>= 60 for 64 epochs)")
    parser.add_argument("--json", help="write the numbers here")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    settings, bundle, roi_op = build()
    out = {"evoked": [evoked_part(settings, bundle, roi_op, args.seconds, bg) for bg in (False, True)]}
    out["bookkeeping"] = bookkeeping_part()
    out["connectivity"] = connectivity_part(settings, bundle, roi_op, min(args.seconds, 60.0))
    out["seconds"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
