"""int16 operator storage: round trip, the kernels against float32, the error record."""

from __future__ import annotations

import numpy as np
import pytest

from rtsource.bench.common import random_bundle
from rtsource.errors import ConfigError
from rtsource.stream import quantize
from rtsource.stream._kernels import pack_fixed, pack_pooled3
from rtsource.stream.channels import ChannelMap
from rtsource.stream.operator import StreamOperator


def test_round_trip_error_is_half_a_step_per_row():
    rng = np.random.default_rng(0)
    k = rng.normal(size=(150, 20)) * np.logspace(-3, 3, 150)[:, None]  # rows of very different size
    tiles = pack_fixed(k)
    q, f = quantize.quantize_tiles(tiles)
    assert q.dtype == np.int16 and f.shape == (tiles.shape[0], 48)
    back = q.astype(np.float64) * f[:, None, :]
    step = f[:, None, :]
    assert np.all(np.abs(back - tiles) <= 0.5 * step * (1 + 1e-6) + 1e-30)
    assert np.abs(q).max() == 32767
    assert (f[-1, 150 - 3 * 48 :] == 0).all()  # padding rows
    rel = np.abs(back - tiles).max(axis=1) / np.abs(tiles).max(axis=1).astype(np.float64).clip(1e-300)
    assert rel[f > 0].max() <= 0.5 / 32767 * 1.001  # the same relative precision for every row


@pytest.mark.parametrize("n_orient", [3, 1])
def test_int16_kernels_against_float32(n_orient):
    n_chan = 24
    b = random_bundle(n_chan, 130, n_orient, seed=2)
    cmap = ChannelMap(np.arange(n_chan), np.linspace(0.5, 2, n_chan), ("V",) * n_chan, (), False)
    f32 = StreamOperator(b, cmap, 12, low_rank="off", dispatch="kernel")
    i16 = StreamOperator(b, cmap, 12, low_rank="off", operator_dtype="int16")
    f32.warm_up()
    i16.warm_up()
    assert i16._kernel.dtype == np.int16 and not i16.dispatch.any_blas
    x = np.random.default_rng(3).normal(size=(12, n_chan)).astype(np.float32)
    for n in (1, 2, 3, 4, 7, 12):
        a, c = f32.process(x, n).copy(), i16.process(x, n).copy()
        err = np.linalg.norm(c - a) / np.linalg.norm(a)
        assert 1e-7 < err < 1e-4, (n, err)
    assert 1e-7 < i16.storage_error < 1e-4
    meta = dict(i16.describe())
    assert meta["operator_dtype"] == "int16" and float(meta["operator_relative_error"]) == pytest.approx(i16.storage_error, rel=1e-2)


def test_build_time_record_is_used_and_errors_name_the_key():
    b = random_bundle(16, 60, 3, seed=4)
    rec = quantize.storage_record(b.kernel, b.noise_norm, 3, np.eye(16) * 1e-12)
    assert rec["dtype"] == "int16" and 0 < rec["relative_error"] < 1e-4 and "noise covariance" in rec["measured_on"]
    import dataclasses

    b2 = dataclasses.replace(b, provenance={"operator_storage": rec})
    cmap = ChannelMap(np.arange(16), np.ones(16), ("V",) * 16, (), False)
    op = StreamOperator(b2, cmap, 4, low_rank="off", operator_dtype="int16")
    assert op.storage_error == rec["relative_error"]
    with pytest.raises(ConfigError, match="operator_dtype = 'bf16'"):
        StreamOperator(b, cmap, 4, low_rank="off", operator_dtype="bf16")


def test_pooled_tiles_quantise_per_orientation_row():
    k = np.random.default_rng(5).normal(size=(3 * 20, 8))
    q, f = quantize.quantize_tiles(pack_pooled3(k))
    assert f.shape == (2, 48) and (f[0] > 0).all()


def test_error_record_survives_the_bundle_file(tmp_path):
    import dataclasses

    from rtsource.bundle import load_bundle, save_bundle

    b = random_bundle(16, 60, 3, seed=6)
    rec = quantize.storage_record(b.kernel, b.noise_norm, 3, None)
    back = load_bundle(save_bundle(dataclasses.replace(b, provenance={"operator_storage": rec}), tmp_path / "b.npz"))
    assert back.provenance["operator_storage"] == rec
    cmap = ChannelMap(np.arange(16), np.ones(16), ("V",) * 16, (), False)
    assert StreamOperator(back, cmap, 4, low_rank="off", operator_dtype="int16").storage_error == rec["relative_error"]


def test_int16_error_of_the_bundle_is_published_in_the_stream_header():
    """The loop publishes the bundle's build-time number (not one of its own) in the source
    stream's header over LSL (setup storing it: tests/test_build_forward.py)."""
    import dataclasses
    import xml.etree.ElementTree as ET

    from rtsource.stream.inlet import StreamSelector
    from rtsource.stream.loop import LoopOptions, StreamLoop

    from .lsl_helpers import Collector, eeg_outlet, unique
    from .test_reliability import push, wait_for

    b = random_bundle(6, 40, 3, sfreq=250.0, seed=7)
    rec = {**quantize.storage_record(b.kernel, b.noise_norm, 3, None), "relative_error": 1.234e-5}  # a number the loop cannot make up
    b = dataclasses.replace(b, provenance={"operator_storage": rec})
    in_name, out_name = unique("i16-eeg"), unique("i16-src")
    outlet = eeg_outlet(in_name, list(b.ch_names), sfreq=250.0, unit="V", source_id=in_name)
    loop = StreamLoop(b, LoopOptions(selector=StreamSelector(in_name), output_name=out_name, resolve_timeout=20, control=False, operator_dtype="int16"))
    loop.connect()
    thread = loop.run_in_thread()
    got = Collector(out_name)
    try:
        assert outlet.wait_for_consumers(20)
        push(outlet, np.random.default_rng(0).normal(size=(20, 6)).astype(np.float32), 10.0 + np.arange(20) / 250.0)
        assert wait_for(lambda: got.n_samples >= 20)
        meta = ET.fromstring(got.info.as_xml()).find("desc/rtsource")
        assert meta.find("operator_dtype").text == "int16" and meta.find("operator_relative_error").text == "1.23e-05"
    finally:
        loop.stop()
        thread.join(10)
        got.stop()
        loop.close()
