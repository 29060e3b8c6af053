"""The benchmark code paths run (tiny sizes; the numbers themselves are not asserted)."""

from __future__ import annotations

from rtsource.bench import bench_kernels, bench_lowrank


def test_bench_kernels_and_lowrank_run():
    rows = bench_kernels(channels=(16,), sources=(100,), chunks=(1, 5), orients=(3, 1), reps=5, mne_peer=False, progress=lambda s: None)
    assert len(rows) == 4
    assert {"rtsource_ms", "numpy_ms", "gemv_ms", "speedup_vs_numpy", "vs_gemv"} <= set(rows[0])
    low = bench_lowrank(n_chan=60, n_src=100, rank=10, chunks=(4,), reps=5, progress=lambda s: None)
    assert low[0]["rank"] == 10
