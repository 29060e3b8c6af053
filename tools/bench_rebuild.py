"""Time the bad-channel hot-swap: operator recomputed without one channel.

    python tools/bench_rebuild.py                       # 64 ch x 8196 sources, random gain
    python tools/bench_rebuild.py --source ico5         # template ico5 lead field, 8196 sources
    python tools/bench_rebuild.py --blas-threads 2          # default: one, as the loop

For each method it builds a bundle on 64 channels, then times
``rebuild_without_channels(bundle, [one channel])`` (median and p90 over --repeat runs, a
different channel each time), next to a baseline measured in the same process: one
``G_w @ G_w.T`` of the whitened gain (the least any rebuild must do). eLORETA is timed
cold and warm-started from the previous weights (what a bundle that stored them would
allow) and as a quick swap (one iteration from the previous weights, to be followed by a
converged rebuild). The target is 200 ms for 64 channels x ~8k sources.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time

import numpy as np

from rtsource.anatomy.source_space import SourceSpace
from rtsource.bundle import OperatorBundle
from rtsource.inverse.covariance import NoiseCovariance, estimate_data_covariance
from rtsource.inverse.make import make_operator, operator_record
from rtsource.inverse.params import params_for
from rtsource.inverse.rebuild import prepare_bundle_forward, rebuild_without_channels

METHODS = [
    ("dSPM", "dSPM", {}),
    ("dSPM-fixed", "dSPM", {"fixed": True}),
    ("sLORETA", "sLORETA", {}),
    ("eLORETA", "eLORETA", {}),
    ("LCMV", "LCMV", {"weight_norm": "unit-noise-gain-invariant", "orientation": "max-power"}),
    ("LCMV-free", "LCMV", {"weight_norm": "unit-noise-gain-invariant", "orientation": "free"}),
]


def problem(source: str, n_src: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    if source == "ico5":
        from rtsource.build import compute_leadfield
        from rtsource.config import Settings

        s = Settings()
        s = dataclasses.replace(s, source_space=dataclasses.replace(s.source_space, spacing="ico5"))
        lf = compute_leadfield(s).leadfield
        pick = np.sort(rng.choice(lf.sources.n_sources, size=n_src, replace=False))
        cols = (3 * pick[:, None] + np.arange(3)).ravel()
        gain, names = lf.gain[:, cols], tuple(lf.ch_names)
        pos, nrm = lf.sources.positions_m[pick], lf.sources.normals[pick]
    else:
        names = tuple(f"E{i:02d}" for i in range(64))
        gain = rng.normal(size=(64, 3 * n_src)) * 1e-7
        pos = rng.normal(size=(n_src, 3)) * 0.05
        nrm = rng.normal(size=(n_src, 3))
        nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    n = len(names)
    a = rng.normal(size=(n, n)) / np.sqrt(n)
    cov = (2e-6) ** 2 * (0.3 * np.eye(n) + a @ a.T)
    x = rng.normal(size=(5000, n)) @ np.linalg.cholesky(cov).T
    x += np.outer(np.sin(np.arange(5000) * 0.12), gain[:, :3] @ [1.0, 0.5, -1.0]) * 2e-8
    return names, gain, pos, nrm, cov, estimate_data_covariance(x, names)


def bundle(names, gain, pos, nrm, cov, dcov, method, params):
    nc = NoiseCovariance(cov, names, 1000, "empirical", 0.0)
    typed = params_for(method, **params)
    op = make_operator(typed, gain, nrm, nc, reference="average", data_cov=dcov)
    n, n_src = len(names), len(nrm)
    sources = SourceSpace(pos, nrm, np.full(n_src, 1e-5), np.zeros(n_src, np.int8), "template", "bench")
    return OperatorBundle(
        kernel=op.kernel, noise_norm=op.noise_norm, n_orient=op.n_orient, method=op.method,
        output_unit=op.output_unit, ch_names=names, ch_types=("eeg",) * n, ch_units=("V",) * n,
        reference="average", sfreq=500.0, sources=sources,
        channel_positions_m=np.zeros((n, 3)), channel_frame="template",
        params=operator_record(op, typed, reference="average", data_cov=dcov if method == "LCMV" else None), provenance={},
        gain=gain, noise_cov=cov,
    ), op


def stats(ts):
    ts = np.array(ts) * 1e3
    return {"median_ms": round(float(np.median(ts)), 1), "p90_ms": round(float(np.percentile(ts, 90)), 1),
            "min_ms": round(float(ts.min()), 1)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", choices=("random", "ico5"), default="random")
    ap.add_argument("--n-sources", type=int, default=8196)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--method", nargs="+", default=[m[0] for m in METHODS])
    ap.add_argument("--blas-threads", type=int, default=1,
                    help="BLAS threads (the streaming loop's rebuild worker uses 1)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(args.blas_threads, user_api="blas"):
        run(args)


def run(args):
    names, gain, pos, nrm, cov, dcov = problem(args.source, args.n_sources)
    n_chan = len(names)

    # baseline: one G_w G_w^T of the whitened gain (rank x 3 n_src)
    gw = np.linalg.cholesky(np.linalg.inv(cov)).T @ gain
    base = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        gw @ gw.T
        base.append(time.perf_counter() - t0)
    rows = [{"method": "baseline G_w G_w^T", **stats(base)}]

    for label, method, params in METHODS:
        if label not in args.method:
            continue
        b, op = bundle(names, gain, pos, nrm, cov, dcov, method, params)
        # what the streaming loop does once per bundle, in the background at start-up
        t0 = time.perf_counter()
        fwd = prepare_bundle_forward(b)
        prepare_ms = (time.perf_counter() - t0) * 1e3
        ts, cold = [], []
        for i in range(args.repeat):
            bad = [names[(7 * i + 3) % n_chan]]
            t0 = time.perf_counter()
            rebuild_without_channels(b, bad, data_cov=dcov.data if method == "LCMV" else None, forward=fwd)
            ts.append(time.perf_counter() - t0)
            if i < 2:  # without the prepared forward, as a one-off call would
                t0 = time.perf_counter()
                rebuild_without_channels(b, bad, data_cov=dcov.data if method == "LCMV" else None)
                cold.append(time.perf_counter() - t0)
        row = {"method": label, **stats(ts), "x_baseline": round(float(np.median(ts) / np.median(base)), 1),
               "prepare_forward_ms": round(prepare_ms, 1), "unprepared_ms": round(float(np.median(cold)) * 1e3, 1)}
        if method == "eLORETA":
            row["iterations_cold"] = op.details["iterations"]
            for key, cap in (("warm", None), ("quick_1_iter", 1)):
                tw = []
                for i in range(args.repeat):
                    bad = [names[(7 * i + 3) % n_chan]]
                    t0 = time.perf_counter()
                    w = rebuild_without_channels(b, bad, eloreta_weights=op.source_weights,
                                                 eloreta_max_iter=cap, forward=fwd)
                    tw.append(time.perf_counter() - t0)
                row[f"{key}_median_ms"] = stats(tw)["median_ms"]
                row[f"{key}_iterations"] = w.params["eloreta"]["iterations"]
        rows.append(row)
    print(f"{n_chan} channels x {len(nrm)} sources ({args.source} gain), rebuild without one channel:")
    for r in rows:
        print("  " + json.dumps(r))


if __name__ == "__main__":
    main()
