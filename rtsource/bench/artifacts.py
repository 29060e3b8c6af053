"""``rtsource bench artifacts``: the per-chunk cost of ASR against a no-op stage, same run.

The measurement lives beside the code it measures, in :mod:`rtsource.artifacts.bench`
(:func:`~rtsource.artifacts.bench.bench_artifacts`); this module is its entry in
:data:`rtsource.bench.BENCHMARKS`.
"""

from __future__ import annotations


def run(*, quick: bool, method: str, progress) -> dict:
    """``rtsource bench artifacts`` (``--quick``: 10 s of data instead of 30)."""
    import numba

    from ..artifacts.bench import bench_artifacts
    from ..stream.dispatch import kernel_threads, limit_blas_threads

    # the threads the loop gives BLAS and numba (StreamLoop.run): all cores but one. With
    # OpenBLAS's default (every core), a 64 x 64 eigh measured p99 3.2 ms on an idle 2-vCPU
    # VM against 0.3 ms on one thread: its threads wait for a core the caller holds.
    threads = kernel_threads()
    numba.set_num_threads(threads)
    progress(f"BLAS and numba threads: {threads}, as in the loop (all cores but one)")
    with limit_blas_threads(threads):
        return bench_artifacts(seconds=10.0 if quick else 30.0, progress=progress)
