"""Dispatch by shape: the BLAS path equals the own kernel; the choice per chunk-size class."""

from __future__ import annotations

import time

import numpy as np
import pytest

from rtsource.bench.common import random_bundle
from rtsource.stream import dispatch as dp
from rtsource.stream.channels import ChannelMap
from rtsource.stream.operator import FilterSpec, StreamOperator


def _ops(n_orient, n_chan=20, n_src=150, max_chunk=40):
    b = random_bundle(n_chan, n_src, n_orient, seed=5)
    # unit factors that differ per channel: the BLAS path folds them into its copy of K
    scale = np.linspace(0.5, 2.0, n_chan) * 1e-6
    cmap = ChannelMap(np.arange(n_chan)[::-1].copy(), scale, ("uV",) * n_chan, (), False)
    ops = {}
    for mode in ("kernel", "blas"):
        ops[mode] = StreamOperator(b, cmap, max_chunk, FilterSpec(highpass_hz=1.0), low_rank="off", dispatch=mode)
        ops[mode].warm_up()
    return b, ops


@pytest.mark.parametrize("n_orient", [3, 1])
def test_blas_path_equals_the_kernel(n_orient):
    b, ops = _ops(n_orient)
    assert ops["blas"]._use_blas[1:].all() and ops["kernel"]._use_blas is None
    rng = np.random.default_rng(2)
    for n in (1, 3, 4, 17, 40):
        x = rng.normal(size=(n, b.n_channels)).astype(np.float32) * 10
        if n >= 3:
            x[2, 4] = np.nan  # a NaN sample gives a NaN row on both paths
        a, c = ops["kernel"].process(x, n).copy(), ops["blas"].process(x, n).copy()
        assert np.array_equal(np.isnan(a), np.isnan(c)) and np.isnan(a).any() == (n >= 3)
        ok = ~np.isnan(a)
        assert np.allclose(c[ok], a[ok], rtol=1e-5, atol=1e-5 * np.abs(a[ok]).max())
        if n_orient == 3:
            assert (c[ok] >= 0).all()
        else:
            assert (c[ok] < 0).any()


def test_table_maps_chunk_sizes_to_classes():
    d = dp.Dispatch((True, False, False, False, True, True, True, True, True, True, True))
    table = d.table(100)
    assert table[1] and not table[2:9].any() and table[9:].all()
    assert d.describe() == "kernel: 2, 3-4, 5-8; blas: 1, 9-12, 13-16, 17-24, 25-32, 33-48, 49-64, >64"
    assert [dp.chunk_class(n) for n in (1, 2, 3, 4, 5, 9, 12, 13, 64, 65, 1000)] == [0, 1, 2, 2, 3, 4, 4, 5, 9, 10, 10]


def test_choose_picks_the_faster_path_per_class_and_keeps_it():
    # a "kernel" whose time grows with the chunk and a "BLAS" of constant time: the crossing is measured
    calls = []

    def kernel(n):
        calls.append(n)
        time.sleep(n * 5e-4)

    def blas(n):
        time.sleep(7e-3)

    key = ("test", time.time_ns())
    d = dp.choose(key, kernel, blas, max_chunk=16)
    # 8: 4 ms, 12: 6 ms, 16: 8 ms against 7 ms; the classes above 16 follow the last measured
    assert d.blas == (False,) * 5 + (True,) * 6
    assert sorted(set(calls)) == [1, 2, 4, 8, 12, 16]  # every class that can occur is timed, one sample too
    calls.clear()
    assert dp.choose(key, kernel, blas, max_chunk=16) is d and not calls  # cached for the shape class
    assert dp.cached(key) is d and dp.cached(("test", "other")) is None


def test_auto_dispatch_serves_each_class_from_its_table():
    b, ops = _ops(3)
    auto = StreamOperator(b, ops["kernel"].channel_map, 40, FilterSpec(highpass_hz=1.0), low_rank="off")
    auto.warm_up()
    assert auto.dispatch is not None and dict(auto.describe())["operator_path"] == auto.dispatch.describe()
    assert len(auto.dispatch.blas) == len(dp.CLASS_BOUNDS) + 1 and all(k == k for k in auto.dispatch.kernel_ms[:4])  # measured
    x = np.random.default_rng(3).normal(size=(40, b.n_channels)).astype(np.float32)
    for n in (1, 10, 40):
        assert np.allclose(auto.process(x, n), ops["kernel"].process(x, n), rtol=1e-5, atol=1e-6)


def test_swapped_operator_reuses_the_choice_without_measuring():
    b, ops = _ops(1, n_chan=33, n_src=170)
    first = StreamOperator(b, ops["kernel"].channel_map, 40, None, low_rank="off")
    first.warm_up()
    again = StreamOperator(b, ops["kernel"].channel_map, 40, None, low_rank="off")
    again.warm_up()
    assert again.dispatch is first.dispatch  # the same shape class: no second measurement
    assert (again._blas is None) == (not first.dispatch.any_blas)
