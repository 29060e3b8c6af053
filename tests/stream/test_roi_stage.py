"""The per-chunk ROI stage (rtsource.stream.roi) and its kernels, and the ROI stream header."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET

import numpy as np
import pylsl
import pytest

from rtsource.anatomy.regions import Roi
from rtsource.roi_operator import RoiOperator
from rtsource.stream import _roi_kernels as k
from rtsource.stream.outputs import ROI_TYPE
from rtsource.stream.outlets import make_roi_info
from rtsource.stream.roi import RoiStage

from ..conftest import make_bundle
from .lsl_helpers import Collector, unique


# ---- kernels vs NumPy twins ----

def test_roi_apply_matches_numpy():
    rng = np.random.default_rng(0)
    m = rng.normal(size=(4, 16))
    x = rng.normal(size=(30, 16)).astype(np.float32)
    out = np.full((30, 4), -1.0, np.float32)
    k.roi_apply(x, 25, m, out)
    assert np.allclose(out[:25], x[:25].astype(np.float64) @ m.T, rtol=1e-6, atol=1e-6)
    assert np.all(out[25:] == -1.0)


def test_roi_reductions_match_numpy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20, 50)).astype(np.float32)
    indptr = np.array([0, 3, 10, 12])
    indices = np.array([1, 5, 7, 0, 2, 3, 4, 40, 41, 49, 8, 9])
    weights = rng.uniform(0.1, 1, 12)
    out = np.zeros((20, 3), np.float32)
    k.roi_max_abs(x, 20, indptr, indices, out)
    for r in range(3):
        sl = slice(indptr[r], indptr[r + 1])
        assert np.allclose(out[:, r], np.abs(x[:, indices[sl]]).max(axis=1))
    k.roi_mean_abs(x, 20, indptr, indices, weights, out)
    for r in range(3):
        sl = slice(indptr[r], indptr[r + 1])
        assert np.allclose(out[:, r], np.abs(x[:, indices[sl]].astype(np.float64)) @ weights[sl], rtol=1e-6)
    # a NaN input row (a bad sample) gives NaN in every ROI that contains the NaN source
    x[4, 7] = np.nan
    for fn in (lambda: k.roi_max_abs(x, 20, indptr, indices, out), lambda: k.roi_mean_abs(x, 20, indptr, indices, weights, out)):
        fn()
        assert np.isnan(out[4, 0]) and np.all(np.isfinite(out[4, 1:])) and np.all(np.isfinite(np.delete(out, 4, axis=0)))


# ---- the stage ----

def _rois(b):
    h = b.sources.hemisphere
    return [Roi("A", np.flatnonzero(h == 0)[:8]), Roi("B", np.flatnonzero(h == 1)[:9]), Roi("C", np.array([1, 2, 30, 31]))]


@pytest.mark.parametrize("mode", ["mean", "mean_flip", "pca_flip"])
def test_linear_stage_on_stream_units_equals_offline(mode):
    b = make_bundle(n_chan=12, n_src=40, n_orient=3, seed=2)
    rng = np.random.default_rng(5)
    cal_v = rng.normal(size=(200, 12)) * 1e-5
    op = RoiOperator.from_bundle(b, _rois(b), mode, calibration=cal_v)
    scale = np.full(12, 1e-6)  # the stream sends microvolts
    stage = RoiStage(op, max_chunk=64, channel_scale=scale)
    stage.warm_up()
    assert stage.input_kind == "channels" and stage.names == ("A", "B", "C")
    x_uv = (rng.normal(size=(300, 12)) * 10).astype(np.float32)
    got = []
    for i in range(0, 300, 37):
        m = min(37, 300 - i)
        out = stage.process(x_uv[i : i + m], m)
        assert out.shape == (m, 3) and out.dtype == np.float32
        got.append(out.copy())
    expected = op.apply(x_uv.astype(np.float64) * 1e-6)
    assert np.allclose(np.vstack(got), expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())


@pytest.mark.parametrize("mode, component", [("max", "auto"), ("mean", "pooled")])
def test_nonlinear_stage_on_the_per_source_output(mode, component):
    from rtsource.stream import _kernels

    b = make_bundle(n_chan=12, n_src=40, n_orient=3, seed=3)
    op = RoiOperator.from_bundle(b, _rois(b), mode, component)
    stage = RoiStage(op, max_chunk=32, n_sources=40)
    assert stage.input_kind == "sources"
    rng = np.random.default_rng(6)
    x = (rng.normal(size=(32, 12)) * 1e-5).astype(np.float32)
    src = np.zeros((32, 40), np.float32)
    k3 = np.ascontiguousarray(b.kernel.reshape(40, 3, 12), dtype=np.float32)
    _kernels.apply_pooled3(x, 32, k3, (1 / b.noise_norm).astype(np.float32), src)
    out = stage.process(src, 32)
    assert np.allclose(out, op.weights.reduce(src), rtol=1e-5)


def test_stage_rebuilt_for_a_new_operator_keeps_names():
    b = make_bundle(n_chan=12, n_src=40, n_orient=1, seed=4)
    op = RoiOperator.from_bundle(b, _rois(b), "mean_flip")
    stage = RoiStage(op, 16)
    keep = list(range(11))
    op2 = op.refold(kernel=b.kernel[:, keep] * 2, noise_norm=b.noise_norm, ch_names=b.ch_names[:11], normals=b.sources.normals)
    new = stage.rebuilt(op2)
    assert new is not stage and new.n_inputs == 11
    x = np.random.default_rng(0).normal(size=(5, 11)).astype(np.float32)
    assert np.allclose(new.process(x, 5), op2.apply(x), rtol=1e-5)
    other = RoiOperator.from_bundle(b, [Roi("Z", np.array([1, 2]))], "mean")
    with pytest.raises(Exception, match="ROI channels cannot change"):
        stage.rebuilt(other)


def test_roi_stream_header_and_samples_over_lsl():
    b = make_bundle(n_chan=12, n_src=40, n_orient=3, seed=7)
    op = RoiOperator.from_bundle(b, _rois(b), "mean_flip")
    name = unique("roi-test")
    info = make_roi_info(op, output_name=name, sfreq=b.sfreq, source_id=name + "-roi", bundle_path="/tmp/b.npz", method=b.method, input_stream="EEG-x")
    root = ET.fromstring(info.as_xml())
    assert root.findtext("name") == name + "-roi" and root.findtext("type") == ROI_TYPE
    assert root.findtext("channel_count") == "3"
    chans = root.findall("desc/channels/channel")
    assert [c.findtext("label") for c in chans] == ["A", "B", "C"]
    assert chans[0].findtext("mode") == "mean_flip" and chans[0].findtext("n_sources") == "8"
    assert chans[0].findtext("unit") == "dimensionless"
    centre = np.array([float(chans[2].findtext(f"location/{a}")) for a in "XYZ"])
    assert np.allclose(centre, b.sources.positions_m[[1, 2, 30, 31]].mean(axis=0) * 1e3, atol=1e-3)
    meta = root.find("desc/rtsource")
    assert meta.findtext("output_name") == name and meta.findtext("bundle") == "/tmp/b.npz"
    assert meta.findtext("mode") == "mean_flip" and meta.findtext("rois") == "A,B,C"
    # publish the stage's output on a real outlet and read it back
    outlet = pylsl.StreamOutlet(info, chunk_size=0, max_buffered=60)
    coll = Collector(name + "-roi")
    stage = RoiStage(op, 50)
    x = (np.random.default_rng(1).normal(size=(200, 12)) * 1e-5).astype(np.float32)
    ts = 1000.0 + np.arange(200) / b.sfreq
    time.sleep(0.5)
    for i in range(0, 200, 50):
        outlet.push_chunk(stage.process(x[i : i + 50], 50), ts[i : i + 50].tolist())
    deadline = time.monotonic() + 20
    while coll.n_samples < 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    coll.stop()
    coll.inlet.close_stream()
    del outlet
    data, stamps = coll.data()
    assert len(stamps) == 200 and np.allclose(stamps, ts)
    assert np.allclose(data, op.apply(x), rtol=1e-5, atol=1e-6 * np.abs(op.apply(x)).max())
    assert coll.info.desc().child("rtsource").child_value("mode") == "mean_flip"


def test_roi_only_cost_is_a_fraction_of_the_source_kernel():
    """Measured, not asserted as time: a folded ROI operator touches n_roi x n_chan numbers."""
    from rtsource.stream import _kernels

    b = make_bundle(n_chan=64, n_src=5124, n_orient=3, seed=8)
    h = b.sources.hemisphere
    op = RoiOperator.from_bundle(b, [Roi("A", np.flatnonzero(h == 0)[:50]), Roi("B", np.flatnonzero(h == 1)[:50])], "mean_flip")
    stage = RoiStage(op, 64)
    x = np.random.default_rng(0).normal(size=(10, 64)).astype(np.float32)
    k3 = np.ascontiguousarray(b.kernel.reshape(-1, 3, 64), dtype=np.float32)
    inv = (1 / b.noise_norm).astype(np.float32)
    src = np.zeros((10, 5124), np.float32)
    stage.warm_up()
    _kernels.apply_pooled3(x, 10, k3, inv, src)

    def median_time(fn, reps=200):
        t = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            t.append(time.perf_counter() - t0)
        return float(np.median(t))

    t_roi = median_time(lambda: stage.process(x, 10))
    t_src = median_time(lambda: _kernels.apply_pooled3(x, 10, k3, inv, src))
    print(f"10-sample chunk, 64 ch: ROI stage (2 ROIs) {t_roi * 1e6:.1f} us, full source kernel (5124 x 3) {t_src * 1e6:.1f} us, ratio {t_src / t_roi:.0f}")
    assert op.matrix.size == 2 * 64  # the whole per-sample cost: 128 multiply-adds
