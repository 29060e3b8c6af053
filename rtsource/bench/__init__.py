"""``rtsource bench``: speed measured against baselines in the same run.

    rtsource bench kernels   per-chunk time of rtsource's kernels vs numpy matmul + pooling,
                             one plain GEMV pass over the operator (the memory floor) and
                             MNE-Python's prepared apply_inverse_raw (when installed)
    rtsource bench lowrank   306-channel rank-70 operator: low-rank path vs full rank
    rtsource bench latency   end to end over LSL (producer -> X -> consumer, 3 processes):
                             X = a bare pylsl relay, a relay that publishes as many
                             channels as there are sources, and `rtsource run`
    rtsource bench startup   launch of `rtsource run` to its first published sample, cold
                             (empty numba cache) and warm
    rtsource bench hotswap   bad-channel hot swap in a running `rtsource run` (template head,
                             64 ch x 8192 sources, dSPM, producer and consumer in their own
                             processes): command -> new operator live, against the same
                             rebuild on an idle process
    rtsource bench connectivity  per-step time of the ROI connectivity stage (68 ROIs, 2,278
                             pairs, alpha + beta, five measures, 1 s windows every 100 ms at
                             500 Hz) against NumPy recomputing one window's coherence
    rtsource bench artifacts per-chunk cost of ASR (64 ch, 500 Hz, 10-sample chunks) against
                             a no-op stage (the measurement: rtsource.artifacts.bench)
    rtsource bench all       everything; --json FILE writes the results

One module per benchmark (:mod:`.kernels`, :mod:`.lowrank`, :mod:`.latency`, :mod:`.startup`,
:mod:`.hotswap`, :mod:`.connectivity`, :mod:`.artifacts`), each with its ``bench_*`` function
(artifacts: in :mod:`rtsource.artifacts.bench`) and a ``run`` that the command line calls
through :data:`BENCHMARKS`; shared helpers in :mod:`.common`, the producer / relay / consumer
processes in :mod:`.processes` (started as ``python -m rtsource.bench``).

Times are medians and 99th percentiles over many repetitions, each method timed in its
own blocks and the blocks repeated in rounds so that machine noise hits them alike; ratios
compare numbers from the same run. Nothing here asserts a speed: it measures and prints.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import artifacts, connectivity, hotswap, kernels, latency, lowrank, startup
from .common import numba_threads
from .connectivity import bench_connectivity
from .hotswap import bench_hotswap
from .kernels import bench_kernels
from .latency import bench_latency
from .lowrank import bench_lowrank
from .startup import bench_startup


@dataclass(frozen=True)
class Benchmark:
    """One ``rtsource bench WHAT``.

    Attributes
    ----------
    name : str
        The ``WHAT`` on the command line, and the key of its results.
    run : callable
        ``run(*, quick, method, progress) -> results`` (JSON-ready dicts and lists).
    """

    name: str
    run: Callable[..., object]


#: Every benchmark, in the order ``rtsource bench all`` runs them.
BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark("kernels", kernels.run),
    Benchmark("lowrank", lowrank.run),
    Benchmark("latency", latency.run),
    Benchmark("startup", startup.run),
    Benchmark("hotswap", hotswap.run),
    Benchmark("connectivity", connectivity.run),
    Benchmark("artifacts", artifacts.run),
)


def run_bench(what: str, json_path: str | None = None, quick: bool = False, method: str = "dSPM", progress=print) -> dict:
    """Run one benchmark (or ``"all"``) and return its results, also written to ``json_path``.

    Parameters
    ----------
    what : str
        A name in :data:`BENCHMARKS`, or ``"all"``.
    json_path : str, optional
        Where to write the results as JSON.
    quick : bool
        Fewer sizes and repetitions.
    method : str
        Inverse method of the hot-swap benchmark's operator.
    progress : callable
        Called with one line of text per measurement.

    Returns
    -------
    dict
        ``machine``, ``numba_threads`` and one entry per benchmark run.
    """
    results: dict = {"machine": {"cpus": os.cpu_count()}, "numba_threads": numba_threads()}
    for bench in BENCHMARKS:
        if what in (bench.name, "all"):
            results[bench.name] = bench.run(quick=quick, method=method, progress=progress)
    if json_path:
        Path(json_path).write_text(json.dumps(results, indent=1))
    return results


__all__ = [
    "BENCHMARKS",
    "Benchmark",
    "bench_connectivity",
    "bench_hotswap",
    "bench_kernels",
    "bench_latency",
    "bench_lowrank",
    "bench_startup",
    "run_bench",
]
