"""The benchmark code paths run (tiny sizes; the numbers themselves are not asserted)."""

from __future__ import annotations

import pytest

from rtsource.bench import bench_connectivity, bench_hotswap, bench_kernels, bench_lowrank


def test_bench_kernels_and_lowrank_run():
    rows = bench_kernels(channels=(16,), sources=(100,), chunks=(1, 5), orients=(3, 1), rounds=3, mne_peer=False, progress=lambda s: None, block_s=0.001)
    assert len(rows) == 4
    assert {"rtsource_ms", "kernel_ms", "blas_pool_ms", "numpy_ms", "gemv_ms", "speedup_vs_numpy", "vs_best", "vs_gemv", "path"} <= set(rows[0])
    low = bench_lowrank(n_chan=60, n_src=100, rank=10, chunks=(4,), reps=5, progress=lambda s: None)
    assert low[0]["rank"] == 10


@pytest.mark.slow
def test_bench_hotswap_runs_a_real_pipeline():
    """Producer, `rtsource run` and a consumer in their own processes; one channel marked bad
    and good again over the control stream; both swaps are timed by the loop's events."""
    res = bench_hotswap(n_swaps=1, n_sources=2048, progress=lambda s: None)
    assert [w["command"] for w in res["swaps"]] == ["mark_bad", "mark_good"]
    assert all(w["swap_ms"] > 0 and w["build_ms"] > 0 for w in res["swaps"])
    assert res["idle_rebuild_ms_median"] > 0 and res["setup"]["sources"] == 2048


def test_bench_connectivity_runs():
    res = bench_connectivity(n_roi=6, steps=5, progress=lambda s: None)
    assert res["n_pairs"] == 15 and res["n_out"] == 15 * 2 * 5
    assert 0 < res["median_ms"] <= res["p99_ms"] <= res["max_ms"]


def test_cli_offers_every_benchmark_of_the_registry():
    """`rtsource bench WHAT` accepts exactly the benchmarks run_bench dispatches to, and "all"."""
    import argparse

    from rtsource.bench import BENCHMARKS
    from rtsource.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    what = next(a for a in sub.choices["bench"]._actions if a.dest == "what")
    assert list(what.choices) == [b.name for b in BENCHMARKS] + ["all"]


def test_run_bench_dispatches_and_writes_json(tmp_path):
    import json

    from rtsource.bench import run_bench

    lines = []
    res = run_bench("connectivity", json_path=str(tmp_path / "bench.json"), quick=True, progress=lines.append)
    assert set(res) == {"machine", "numba_threads", "connectivity"} and res["connectivity"]["steps"] == 100
    assert json.loads((tmp_path / "bench.json").read_text()) == res
    assert len(lines) == 1 and lines[0].startswith("connectivity 68 ROIs")


@pytest.mark.slow
def test_bench_peers_runs_every_loop_over_lsl():
    """Producer, X and consumer in their own processes for each loop; every sample arrives."""
    pytest.importorskip("mne")
    pytest.importorskip("mne_lsl")
    from rtsource.bench import bench_peers

    res = bench_peers(n_chan=16, n_src=200, seconds=4.0, progress=lambda s: None)
    for kind in ("relay", "rtsource", "mne_lsl", "window"):
        assert res[kind]["samples"] == res[kind]["samples_expected"], kind
        assert res[kind]["cpu_s_per_s"] > 0
    assert {"added_p50", "added_p99", "cpu"} <= set(res["mne_lsl_over_rtsource"])


def test_bench_decimation_and_int16_run():
    from rtsource.bench import bench_decimation
    from rtsource.bench.kernels import bench_int16

    res = bench_decimation(n_chan=8, n_src=100, input_hz=2000.0, output_hz=500.0, reps=5, progress=lambda s: None)
    assert res["factor"] == 4 and res["attenuation_db"] >= 60 and res["cost_ratio"] > 0
    assert res["read_ms"] > 0 and res["filter_ms"] > 0 and res["bound"] > 0
    rows = bench_int16(n_chan=8, n_src=100, chunks=(1,), reps=5, progress=lambda s: None)
    assert rows[0]["relative_error"] < 1e-4 and rows[0]["speedup"] > 0


@pytest.mark.slow
def test_bench_capacity_runs_one_configuration_over_lsl():
    """Producer, the loop (sources + 68 ROIs + band power, decimating) and the consumer in three processes."""
    from rtsource.bench.capacity import CapacityConfig, configurations, run_configuration

    row = run_configuration(CapacityConfig("eeg", 16, 300, "free", 1000.0, 250.0), 4.0, stop_early=False)  # every sample, even under load
    assert row["lost"] == 0 and row["received"] == row["samples_out"] == 1000 and row["decimated"] == 3000
    assert row["bottleneck"].split()[0] in ("passes", "machine", "operator", "output", "features", "rest", "lsl")
    assert 0 < row["operator_s_per_s"] < row["process_s_per_s"] and row["output_s_per_s"] > 0 and row["features_s_per_s"] > 0
    assert len(configurations(quick=False)) == 108


def test_capacity_search_decides_every_configuration_with_few_runs():
    """The search over the grid: every configuration's verdict as if all had been run, from a fraction of the runs."""
    from rtsource.bench.capacity import _cost, configurations, search

    configs = configurations(quick=False)

    def truth(c):  # a machine on which the work (channels x rows x output rate) must stay under a budget
        ch, src, orient, _, out = _cost(c)
        return ch * src * orient * out <= 256 * 20000 * 3 * 500 and c.input_hz * ch <= 306 * 2000

    ran = []

    def run(c):
        ran.append(c)
        return {"passed": truth(c)}

    rows, status = search(configs, run)
    assert set(status) == set(configs) and all(status[c][0] == truth(c) for c in configs)
    assert len(ran) == len(set(ran)) < len(configs) // 3 and all(status[c][1] for c in ran)
