"""The operator for a new lead field of the same channels and sources (rtsource.inverse.pose, issue 20).

PoseInverse prepares what does not depend on the head pose once; its operator must be
make_operator's (hence MNE-Python's, which tests/inverse checks) for the same lead field:
exactly in float64, within float32 rounding (<= 1e-4 of the output) in float32. And the
head-motion rebuild as a whole (PoseRebuilder) must give what a from-scratch build at the new
pose gives.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from rtsource.errors import InverseError
from rtsource.inverse.covariance import NoiseCovariance
from rtsource.inverse.make import make_operator
from rtsource.inverse.operator import apply_inverse
from rtsource.inverse.params import MinimumNormParams, params_for
from rtsource.inverse.pose import prepare_pose_inverse


def _bundle(method: str, n_sources: int = 300, loose: float | None = None, array=None, dev_head=None):
    """A Vectorview-306 bundle on the template (sphere model, ad hoc noise), built from scratch."""
    from rtsource.anatomy.template import load_template, template_source_space
    from rtsource.build import build_bundle
    from rtsource.config import NoiseCovSettings, Settings
    from rtsource.forward.head_model import SphereHead
    from rtsource.forward.leadfield import make_leadfield
    from rtsource.forward.meg_sphere import meg_sphere_origin
    from rtsource.geometry import Frame, Transform
    from rtsource.pipeline.headmotion import neuromag_array

    tpl = load_template()
    origin, _ = meg_sphere_origin(tpl.surfaces.inner_skull)
    array = neuromag_array("normal") if array is None else array
    if dev_head is not None:
        array = array.with_dev_head_t(Transform.from_rotation_translation(Frame.DEVICE, Frame.TEMPLATE, dev_head[:3, :3], dev_head[:3, 3]))
    dense = template_source_space("ico4")
    sources = dense.subset(np.linspace(0, dense.n_sources - 1, n_sources).astype(int), name=f"ico4-{n_sources}")
    slf = make_leadfield(sources, array, SphereHead(meg_origin_m=origin, inner_skull=tpl.surfaces.inner_skull), use_cache=False)
    s = dataclasses.replace(Settings(), noise_cov=NoiseCovSettings(source="ad_hoc"))
    inverse = dataclasses.replace(s.inverse, method=method, **({} if loose is None else {"loose": loose}))
    return build_bundle(dataclasses.replace(s, inverse=inverse), sfreq=1000.0, leadfield=slf), array, origin


@pytest.fixture(scope="module", autouse=True)
def one_blas_thread():
    """A 306 x 306 eigh takes seconds with contended BLAS threads on a busy 2-core machine."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def dspm(one_blas_thread):
    pytest.importorskip("mne")  # the Vectorview geometry table
    return _bundle("dSPM")


@pytest.mark.parametrize("method, loose", [("dSPM", None), ("sLORETA", None), ("MNE", 0.0)])
def test_pose_inverse_is_make_operator_for_the_new_gain(dspm, method, loose):
    bundle = dspm[0]
    params = params_for(method)
    if loose is not None:
        params = dataclasses.replace(params, loose=loose)
    bundle = dataclasses.replace(bundle, method=method, n_orient=1 if loose == 0.0 else 3,
                                 kernel=np.zeros((bundle.n_sources * (1 if loose == 0.0 else 3), bundle.n_channels)),
                                 params=dataclasses.replace(bundle.params, inverse=params))  # fmt: skip
    prepared = prepare_pose_inverse(bundle)
    gain = np.asarray(bundle.gain) * (1.0 + 0.05 * np.random.default_rng(3).normal(size=bundle.gain.shape))  # "another pose"
    noise = NoiseCovariance(np.asarray(bundle.noise_cov), bundle.ch_names, 0, "empirical", 0.0)
    want = make_operator(params, gain, bundle.sources.normals, noise, reference=bundle.reference, ch_names=bundle.ch_names, ch_types=bundle.ch_types)
    got64 = prepared.operator(gain, dtype=np.float64)
    np.testing.assert_allclose(got64.kernel, want.kernel, rtol=0, atol=1e-10 * np.abs(want.kernel).max())
    np.testing.assert_allclose(got64.noise_norm, want.noise_norm, rtol=1e-10)
    assert (got64.n_orient, got64.rank, got64.method) == (want.n_orient, want.rank, want.method)
    np.testing.assert_array_equal(got64.source_rotation, want.source_rotation)
    # float32 products: the output within 1e-4 of the float64 operator's
    x = np.random.default_rng(0).normal(size=(16, bundle.n_channels)) * 1e-12
    y = apply_inverse(want, x)
    err = np.abs(apply_inverse(prepared.operator(gain), x) - y).max() / np.abs(y).max()
    assert err < 1e-4
    assert {"local_frames", "gram", "eigh", "leads", "kernel"} <= set(prepared.timings_ms)


def test_pose_inverse_refuses_what_it_cannot_build(dspm):
    bundle = dspm[0]
    with pytest.raises(InverseError, match="gain has shape"):
        prepare_pose_inverse(bundle).operator(np.asarray(bundle.gain)[:-1])
    elo = dataclasses.replace(bundle, method="eLORETA", noise_norm=np.ones(bundle.n_sources),
                              params=dataclasses.replace(bundle.params, inverse=MinimumNormParams(method="eLORETA")))  # fmt: skip
    with pytest.raises(InverseError, match="rebuild_operator"):
        prepare_pose_inverse(elo)


def test_pose_rebuild_equals_a_fresh_build_at_the_new_pose(dspm):
    from rtsource.pipeline.headmotion import PoseRebuilder

    bundle, array, origin = dspm
    start = array.dev_head_t.matrix
    pose = start.copy()
    a = np.deg2rad(2.0)
    pose[:3, :3] = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(a), -np.sin(a)], [0.0, np.sin(a), np.cos(a)]])
    pose[:3, 3] += [0.003, -0.004, 0.002]
    rebuilt = PoseRebuilder(bundle, array, origin).for_pose(pose)  # DEVICE -> TEMPLATE here (head_to_model = I)
    fresh, _, _ = _bundle("dSPM", array=array, dev_head=pose)
    scale = np.abs(fresh.gain).max()
    np.testing.assert_allclose(rebuilt.gain, fresh.gain, rtol=0, atol=1e-10 * scale)
    x = np.random.default_rng(1).normal(size=(16, bundle.n_channels)) * 1e-12
    y_fresh = np.abs(x @ fresh.kernel.T)
    err = np.abs(np.abs(x @ rebuilt.kernel.T) - y_fresh).max() / y_fresh.max()
    assert err < 1e-4
    np.testing.assert_allclose(rebuilt.noise_norm, fresh.noise_norm, rtol=1e-4)
    # and the start pose's operator differs from it (a 5 mm, 2 degree move changes it)
    assert np.abs(np.abs(x @ bundle.kernel.T) - y_fresh).max() / y_fresh.max() > 1e-2


def test_bench_idle_rebuilds_report_stages_error_and_bound(dspm):
    """The code of `rtsource bench headmotion`'s idle part, on a small problem."""
    from rtsource.bench.headmotion import _idle_rebuilds
    from rtsource.pipeline.headmotion import PoseRebuilder

    bundle, array, origin = dspm
    lines = []
    res = _idle_rebuilds(bundle, PoseRebuilder(bundle, array, origin), lines.append, n=1)
    assert len(res["wall_ms"]) == len(res["cpu_ms"]) == 1 and res["cpu_ms"][0] > 0
    assert {"lead_field", "gram", "leads", "kernel", "stream_operator"} <= set(res["stages_ms"])
    assert 0 < res["float32_rel_error"] < 1e-4
    n3 = 3 * bundle.n_sources
    assert res["products_gflop"] == round((5 * 306 * 306 * n3) / 1e9, 2) and res["products_bound_ms"] > 0
    assert len(lines) == 2 and "bound" in lines[1]
