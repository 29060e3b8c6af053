"""``rtsource bench artifacts``: the per-chunk cost of ASR against a no-op stage, same run.

The measurement lives beside the code it measures, in :mod:`rtsource.artifacts.bench`
(:func:`~rtsource.artifacts.bench.bench_artifacts`); this module is its entry in
:data:`rtsource.bench.BENCHMARKS`.
"""

from __future__ import annotations


def run(*, quick: bool, method: str, progress) -> dict:
    """``rtsource bench artifacts`` (``--quick``: 10 s of data instead of 30)."""
    from ..artifacts.bench import bench_artifacts

    return bench_artifacts(seconds=10.0 if quick else 30.0, progress=progress)
