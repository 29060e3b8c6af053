"""The streaming kernels against their plain NumPy twins (rtsource.stream._kernels, .operator)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import butter, sosfilt

from rtsource.stream import _kernels as k
from rtsource.stream.channels import ChannelMap
from rtsource.stream.operator import FilterSpec, StreamOperator

from ..conftest import make_bundle


def numpy_pooled(x, kernel3, inv_norm):
    y = np.einsum("sok,tk->tso", kernel3.astype(np.float64), x.astype(np.float64))
    return np.sqrt((y**2).sum(axis=2)) * inv_norm


@pytest.mark.parametrize("blocks", [1, 3])
@pytest.mark.parametrize("n", [1, 3, 4, 10, 33])
@pytest.mark.parametrize("n_src", [50, 16, 7])
def test_apply_pooled3_matches_numpy(n, n_src, blocks):
    """Any source count (tiles of 16 are zero-padded), any chunk length (blocks of 4 + rest),
    on the calling thread or in parallel blocks of tiles (3 blocks of 4 tiles: uneven)."""
    rng = np.random.default_rng(n)
    kernel = rng.normal(size=(n_src, 3, 16)).astype(np.float32)
    inv = rng.uniform(0.5, 2, n_src).astype(np.float32)
    x = rng.normal(size=(40, 16)).astype(np.float32)
    out = np.full((40, n_src), -1.0, dtype=np.float32)
    k.apply_pooled3(x, n, k.pack_pooled3(kernel.reshape(-1, 16)), inv, out, None, blocks)
    assert np.allclose(out[:n], numpy_pooled(x[:n], kernel, inv), rtol=2e-5, atol=1e-5)
    assert np.all(out[n:] == -1.0)  # rows past n untouched


@pytest.mark.parametrize("blocks", [1, 2])
@pytest.mark.parametrize("n", [1, 4, 7])
@pytest.mark.parametrize("n_src", [30, 48, 100])
def test_apply_fixed_matches_numpy(n, n_src, blocks):
    rng = np.random.default_rng(1)
    kernel = rng.normal(size=(n_src, 12)).astype(np.float32)
    inv = rng.uniform(0.5, 2, n_src).astype(np.float32)
    x = rng.normal(size=(7, 12)).astype(np.float32)
    out = np.full((7, n_src), -1.0, np.float32)
    k.apply_fixed(x, n, k.pack_fixed(kernel), inv, out, None, blocks)
    assert np.allclose(out[:n], (x[:n].astype(float) @ kernel.T.astype(float)) * inv, rtol=2e-5, atol=1e-5)
    assert np.all(out[n:] == -1.0)


@pytest.mark.parametrize("n_chan", [5, 6, 7])
@pytest.mark.parametrize("n", [1, 2, 6])
def test_kernels_with_channels_not_a_multiple_of_four(n_chan, n):
    """any channel count (no assumption of a multiple of 4 or 2 in the tile loops)"""
    rng = np.random.default_rng(n_chan * 10 + n)
    x = rng.normal(size=(6, n_chan)).astype(np.float32)
    k3 = rng.normal(size=(20, 3, n_chan)).astype(np.float32)
    inv = rng.uniform(0.5, 2, 20).astype(np.float32)
    out = np.zeros((6, 20), np.float32)
    k.apply_pooled3(x, n, k.pack_pooled3(k3.reshape(-1, n_chan)), inv, out)
    assert np.allclose(out[:n], numpy_pooled(x[:n], k3, inv), rtol=2e-5, atol=1e-5)
    k1 = k3[:, 0]
    k.apply_fixed(x, n, k.pack_fixed(k1), inv, out)
    assert np.allclose(out[:n], (x[:n].astype(float) @ k1.T.astype(float)) * inv, rtol=2e-5, atol=1e-5)


def test_packing_layout():
    kernel = np.arange(20 * 3 * 2, dtype=np.float32).reshape(60, 2)  # 20 sources, 2 channels
    packed = k.pack_pooled3(kernel)
    assert packed.shape == (2, 2, 48)
    # tile 0, channel 1, orientation 2 of source 5 is kernel row 3 * 5 + 2, column 1
    assert packed[0, 1, 2 * 16 + 5] == kernel[17, 1]
    assert packed[1, 0, 0 * 16 + 3] == kernel[3 * 19, 0]  # source 19 sits in tile 1 at w = 3
    assert np.all(packed[1, :, 4:16] == 0)  # padding


def test_packing_folds_the_channel_scale_in():
    rng = np.random.default_rng(7)
    scale = rng.uniform(1e-7, 1e-5, 5)
    for n_src in (16, 37, 48, 50):  # whole tiles and a partial last tile
        pooled = rng.normal(size=(3 * n_src, 5))
        np.testing.assert_array_equal(k.pack_pooled3(pooled, scale), k.pack_pooled3(pooled * scale))
        fixed = rng.normal(size=(n_src, 5))
        np.testing.assert_array_equal(k.pack_fixed(fixed, scale), k.pack_fixed(fixed * scale))
        assert k.pack_fixed(fixed).dtype == np.float32 and np.all(k.pack_fixed(fixed)[-1, :, n_src % 48 or 48:] == 0)


def test_gather_channels_flags_non_finite_rows():
    x = np.arange(20, dtype=np.float32).reshape(4, 5)
    x[1, 0] = np.nan  # a picked channel
    x[2, 1] = np.inf  # not picked: does not make the row bad
    out = np.zeros((4, 3), np.float32)
    bad = np.zeros(4, np.uint8)
    n_bad = k.gather_channels(x, np.array([4, 0, 2]), 3, out, bad)
    assert np.array_equal(out[:3], x[:3][:, [4, 0, 2]], equal_nan=True) and np.all(out[3] == 0)
    assert n_bad == 1 and bad.tolist() == [0, 1, 0, 0]


def test_sos_filter_matches_scipy_across_chunks():
    rng = np.random.default_rng(2)
    sos = butter(4, [1.0, 40.0], "bandpass", output="sos", fs=500.0)
    x = rng.normal(size=(1000, 6))
    expected = sosfilt(sos, x, axis=0)
    state = np.zeros((len(sos), 6, 2))
    got = np.empty_like(x)
    start = 0
    no_bad = np.zeros(1000, np.uint8)
    for size in [1, 7, 100, 3, 389, 500]:
        chunk = x[start : start + size].astype(np.float32)
        k.sos_filter(chunk, size, sos, state, no_bad)
        got[start : start + size] = chunk
        start += size
    assert np.allclose(got, expected, atol=1e-5)


def test_sos_filter_skips_flagged_rows():
    """A flagged row leaves the state alone: the result equals filtering without that row."""
    rng = np.random.default_rng(3)
    sos = butter(2, 1.0, "highpass", output="sos", fs=500.0)
    x = rng.normal(size=(50, 3))
    bad = np.zeros(50, np.uint8)
    bad[[10, 11, 30]] = 1
    y = x.astype(np.float32).copy()
    y[bad == 1] = np.nan
    state = np.zeros((len(sos), 3, 2))
    k.sos_filter(y, 50, sos, state, bad)
    expected = sosfilt(sos, x[bad == 0], axis=0)
    assert np.allclose(y[bad == 0], expected, atol=1e-5)
    assert np.all(np.isfinite(state))


def test_steady_state_start():
    from scipy.signal import sosfilt_zi

    sos = butter(2, 1.0, "highpass", output="sos", fs=500.0)
    row = np.array([50.0, -20.0])
    state = np.zeros((len(sos), 2, 2))
    k.set_filter_steady_state(row, sos, state, sosfilt_zi(sos))
    x = np.tile(row, (100, 1)).astype(np.float32)
    k.sos_filter(x, 100, sos, state, np.zeros(100, np.uint8))
    assert np.abs(x).max() < 1e-4  # a constant offset gives no transient through the high-pass


def _identity_map(n_chan, scale=1.0, order=None):
    idx = np.arange(n_chan) if order is None else np.asarray(order)
    return ChannelMap(idx, np.full(n_chan, scale), ("V",) * n_chan, (), False)


@pytest.mark.parametrize("n_orient", [1, 3])
def test_stream_operator_matches_bundle_math(n_orient):
    """StreamOperator == NumPy application of the bundle, with channel order and unit scaling."""
    b = make_bundle(n_chan=8, n_src=20, n_orient=n_orient, seed=n_orient)
    rng = np.random.default_rng(5)
    order = rng.permutation(10)[:8]  # bundle channel j sits at stream column order[j]; 2 extra columns
    cmap = ChannelMap(order, np.full(8, 1e-6), ("uV",) * 8, ("X1", "X2"), False)
    op = StreamOperator(b, cmap, max_chunk=64)
    x_uv = rng.normal(size=(20, 10)).astype(np.float32) * 10
    out = op.process(x_uv, 20).copy()
    x_v = x_uv[:, order].astype(np.float64) * 1e-6
    y = x_v @ b.kernel.T
    if n_orient == 3:
        y = np.sqrt((y.reshape(20, -1, 3) ** 2).sum(axis=2))
    expected = y / b.noise_norm
    assert out.shape == (20, 20)
    assert np.allclose(out, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())


def test_stream_operator_filter_equals_offline_filter():
    b = make_bundle(n_chan=6, n_src=10, n_orient=1)
    spec = FilterSpec(highpass_hz=1.0, lowpass_hz=0.0, order=2)
    op = StreamOperator(b, _identity_map(6), max_chunk=128, filter_spec=spec)
    rng = np.random.default_rng(7)
    x = rng.normal(size=(300, 6)).astype(np.float32)
    outs = []
    for s in range(0, 300, 37):
        chunk = x[s : s + 37].copy()
        outs.append(op.process(chunk, len(chunk)).copy())
    got = np.vstack(outs)
    # policy: the filter starts at the steady state of the first sample
    from scipy.signal import sosfilt_zi

    sos = spec.design(500.0)
    zi = sosfilt_zi(sos)[:, :, None] * x[0].astype(np.float64)[None, None, :]
    xf, _ = sosfilt(sos, x.astype(np.float64), axis=0, zi=zi)
    expected = (xf @ b.kernel.T) / b.noise_norm
    assert np.allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_nan_input_gives_nan_output_and_clean_state():
    b = make_bundle(n_chan=6, n_src=10, n_orient=3)
    op = StreamOperator(b, _identity_map(6), max_chunk=64, filter_spec=FilterSpec(highpass_hz=1.0))
    rng = np.random.default_rng(8)
    x = rng.normal(size=(40, 6)).astype(np.float32)
    x[5, 2] = np.nan
    x[6, 0] = -np.inf
    out = op.process(x, 40).copy()
    assert op.last_bad == 2 and op.bad_rows(40).sum() == 2
    assert np.all(np.isnan(out[[5, 6]])) and np.all(np.isfinite(np.delete(out, [5, 6], axis=0)))
    out2 = op.process(rng.normal(size=(10, 6)).astype(np.float32), 10)
    assert op.last_bad == 0 and np.all(np.isfinite(out2))


def test_process_allocates_nothing_per_chunk():
    import tracemalloc

    b = make_bundle(n_chan=8, n_src=200, n_orient=3)
    op = StreamOperator(b, _identity_map(8), max_chunk=32, filter_spec=FilterSpec(highpass_hz=1.0))
    x = np.ones((32, 8), np.float32)
    op.process(x, 10)
    # only what this test's calls allocate (a frame of this file on the stack): in the whole
    # suite, daemon threads of earlier tests may still allocate meanwhile
    mine = [tracemalloc.Filter(True, __file__, all_frames=True)]
    tracemalloc.start(64)
    before = tracemalloc.take_snapshot().filter_traces(mine)
    for _ in range(200):
        op.process(x, 10)
    after = tracemalloc.take_snapshot().filter_traces(mine)
    tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename") if s.size_diff > 0)
    assert grown < 4096, f"{grown} bytes allocated over 200 chunks"


@pytest.mark.parametrize("n_orient", [1, 3])
def test_low_rank_path_equals_full_rank(n_orient):
    """A 306-channel operator of rank 70 (MEG after SSS): A (B x) == K x."""
    rng = np.random.default_rng(11)
    n_chan, n_src, rank = 306, 200, 70
    k = rng.normal(size=(n_src * n_orient, rank)) @ rng.normal(size=(rank, n_chan)) * 1e3
    b = make_bundle(n_chan=n_chan, n_src=n_src, n_orient=n_orient, kernel=k)
    full = StreamOperator(b, _identity_map(n_chan, 1e-13), max_chunk=32, low_rank="off")
    low = StreamOperator(b, _identity_map(n_chan, 1e-13), max_chunk=32, low_rank="auto")
    assert full.rank == n_chan and low.rank == rank
    x = rng.normal(size=(32, n_chan)).astype(np.float32) * 100
    y_full = full.process(x, 32).copy()
    y_low = low.process(x, 32).copy()
    assert np.allclose(y_low, y_full, rtol=1e-3, atol=1e-4 * np.abs(y_full).max())


def test_low_rank_not_used_for_full_rank_eeg():
    b = make_bundle(n_chan=16, n_src=50)
    assert StreamOperator(b, _identity_map(16), max_chunk=8).rank == 16
