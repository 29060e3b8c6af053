"""``rtsource bench latency``: end to end over LSL, producer -> X -> consumer in three processes.

X is a bare pylsl relay, a relay that publishes as many channels as there are sources (and
computes nothing), and ``rtsource run``; the differences are what rtsource adds.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import random_bundle
from .processes import consume, start_helper, start_run, stop


def bench_latency(n_chan=64, n_src=8000, sfreq=500.0, chunk=10, seconds=30.0, progress=print) -> dict:
    from ..bundle import save_bundle

    tag = f"bench-{os.getpid()}-{int(time.time())}"
    tmp = Path(tempfile.mkdtemp(prefix="rtsource-bench-"))
    bundle_path = save_bundle(random_bundle(n_chan, n_src, 3, sfreq=sfreq), tmp / "bench_bundle.npz")
    results = {}
    for kind in ("relay", "wide_relay", "rtsource"):
        in_name, out_name = f"{tag}-{kind}-in", f"{tag}-{kind}-out"
        prod = start_helper("--produce", in_name, n_chan, sfreq, seconds, chunk)
        if kind == "relay":
            mid, n_out = start_helper("--relay", in_name, out_name, seconds), n_chan
        elif kind == "wide_relay":
            mid, n_out = start_helper("--relay", in_name, out_name, seconds, n_src), n_src
        else:
            mid, n_out = start_run(bundle_path, in_name, out_name, "--idle-timeout", "3"), n_src
        try:
            lat = consume(out_name, n_out, seconds)
        finally:
            stop(mid, prod)
        results[kind] = {"p50_ms": round(float(np.percentile(lat, 50)) * 1e3, 3), "p99_ms": round(float(np.percentile(lat, 99)) * 1e3, 3), "chunks": int(len(lat))}
        progress(f"{kind:9s}: end-to-end latency p50 {results[kind]['p50_ms']:.3f} ms, p99 {results[kind]['p99_ms']:.3f} ms over {len(lat)} chunks")
    results["added_p50_ms"] = round(results["rtsource"]["p50_ms"] - results["relay"]["p50_ms"], 3)
    results["added_p99_ms"] = round(results["rtsource"]["p99_ms"] - results["relay"]["p99_ms"], 3)
    results["added_over_wide_p50_ms"] = round(results["rtsource"]["p50_ms"] - results["wide_relay"]["p50_ms"], 3)
    results["added_over_wide_p99_ms"] = round(results["rtsource"]["p99_ms"] - results["wide_relay"]["p99_ms"], 3)
    results["setup"] = {"channels": n_chan, "sources": n_src, "sfreq": sfreq, "chunk": chunk, "seconds": seconds}
    progress(f"rtsource adds {results['added_p50_ms']:.3f} ms at p50, {results['added_p99_ms']:.3f} ms at p99 over the bare relay")
    progress(
        f"rtsource adds {results['added_over_wide_p50_ms']:.3f} ms at p50, {results['added_over_wide_p99_ms']:.3f} ms at p99 over a relay "
        f"that publishes as many channels ({n_src}) and computes nothing"
    )
    return results


def run(*, quick: bool, method: str, progress) -> dict:
    """``rtsource bench latency`` (``--quick``: 10 s per relay instead of 30)."""
    return bench_latency(seconds=10.0 if quick else 30.0, progress=progress)
