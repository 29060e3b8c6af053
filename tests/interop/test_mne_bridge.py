"""The MNE-Python bridge, checked against MNE-Python itself (optional: needs mne).

The acceptance test streams through the real path: an MNE-built EEG forward (sphere model,
standard montage, discrete cortical-like sources) and covariance become an rtsource bundle;
a real LSL outlet sends the same data with its channels shuffled (plus an extra channel and
the channel that is bad in the Info); rtsource's StreamLoop publishes dSPM; a collector's
values equal ``mne.minimum_norm.apply_inverse_raw`` on the same data within 1e-4.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest

mne = pytest.importorskip("mne")

from rtsource.errors import ChannelError, ConfigError  # noqa: E402
from rtsource.geometry import Frame  # noqa: E402
from rtsource.interop.mne_bridge import (  # noqa: E402
    bundle_from_forward,
    bundle_from_inverse,
    labels_to_rois,
    projector_matrix,
    to_source_estimate,
)
from rtsource.stream.inlet import StreamSelector  # noqa: E402
from rtsource.stream.loop import LoopOptions, StreamLoop  # noqa: E402

from ..stream.lsl_helpers import Collector, eeg_outlet, unique  # noqa: E402

pytestmark = pytest.mark.peers
mne.set_log_level("ERROR")

SFREQ = 250.0
NAMES = [
    "Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8", "T7", "C3", "Cz", "C4", "T8", "P7", "P3", "Pz", "P4",
    "P8", "O1", "Oz", "O2", "FC1", "FC2", "CP1", "CP2", "FC5", "FC6", "CP5", "CP6", "AF3", "AF4", "PO3", "PO4",
]  # fmt: skip
BAD = "CP6"


@pytest.fixture(scope="module")
def problem():
    """An MNE sphere-model EEG forward on 60 discrete sources, a covariance and raw data."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        montage = mne.channels.make_standard_montage("standard_1005")
    info = mne.create_info(NAMES, SFREQ, "eeg")
    info.set_montage(montage)
    sphere = mne.make_sphere_model(r0=(0.0, 0.0, 0.04), head_radius=0.09)
    rng = np.random.default_rng(7)
    n_src = 60
    u = rng.normal(size=(n_src, 3))
    u[:, 2] = np.abs(u[:, 2])
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    rr = u * rng.uniform(0.03, 0.06, size=(n_src, 1)) + np.array([0.0, 0.0, 0.04])
    nn = u + 0.5 * rng.normal(size=(n_src, 3))
    nn /= np.linalg.norm(nn, axis=1, keepdims=True)
    src = mne.setup_volume_source_space(pos=dict(rr=rr, nn=nn), sphere=sphere)
    fwd = mne.make_forward_solution(info, mne.transforms.Transform("mri", "head"), src, sphere, meg=False, eeg=True)
    nc = len(NAMES)
    a = rng.normal(size=(nc, nc)) / np.sqrt(nc)
    c = (2e-6) ** 2 * (0.3 * np.eye(nc) + a @ a.T)
    # the covariance lists its channels in another order than the forward: matched by name
    perm = rng.permutation(nc)
    cov = mne.Covariance(c[np.ix_(perm, perm)], [NAMES[i] for i in perm], bads=[], projs=[], nfree=1000)
    n = 1000
    x_uv = (rng.normal(size=(n, nc)) @ np.linalg.cholesky(c).T * 1e6).astype(np.float32)
    x_uv += (fwd["sol"]["data"][:, 30:33] @ np.array([2.0, -1.0, 3.0]) * 1e-8 * 1e6).astype(np.float32)[None] * np.sin(np.arange(n) / 5.0)[:, None].astype(np.float32)
    raw = mne.io.RawArray(x_uv.T.astype(np.float64) * 1e-6, info)
    raw.info["bads"] = [BAD]
    raw.set_eeg_reference(projection=True)
    return dict(info=raw.info, fwd=fwd, cov=cov, raw=raw, x_uv=x_uv, src=src)


def offline(bundle, x_v):
    y = x_v @ bundle.kernel.T
    if bundle.n_orient == 3:
        y = np.sqrt((y.reshape(len(y), -1, 3) ** 2).sum(axis=2))
    return y / bundle.noise_norm


def by_name(p, bundle):
    """The raw data (V) in the bundle's channel order, picked by name."""
    idx = [p["raw"].ch_names.index(c) for c in bundle.ch_names]
    return p["raw"].get_data()[idx].T


def rel_err(ours, theirs):
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


# ---- (a) our inverse on their forward ------------------------------------------------------

def test_bundle_from_forward_contract(problem):
    b = bundle_from_forward(problem["info"], problem["fwd"], problem["cov"])
    assert b.ch_names == tuple(c for c in NAMES if c != BAD), "forward order, bad channel left out"
    assert b.ch_units == ("V",) * 31 and b.ch_types == ("eeg",) * 31
    assert b.reference == "average" and b.method == "dSPM" and b.n_orient == 3 and b.sfreq == SFREQ
    assert b.sources.frame == Frame.HEAD and b.channel_frame == Frame.HEAD
    np.testing.assert_allclose(b.sources.positions_m, problem["fwd"]["source_rr"])
    assert b.provenance["mne"]["kinds"] == ["discrete"]
    assert b.gain.shape == (31, 180) and b.noise_cov.shape == (31, 31)
    # channel positions recorded by name from the Info (head frame)
    cz = problem["info"]["chs"][NAMES.index("Cz")]["loc"][:3]
    np.testing.assert_allclose(b.channel_positions_m[b.ch_names.index("Cz")], cz)


@pytest.mark.parametrize("loose,fixed", [(0.2, False), (1.0, False), (0.0, True)])
@pytest.mark.parametrize("method", ["MNE", "dSPM", "sLORETA"])
def test_bundle_from_forward_equals_mne(problem, method, loose, fixed):
    p = problem
    b = bundle_from_forward(p["info"], p["fwd"], p["cov"], method=method, loose=loose, fixed=fixed)
    inv = mne.minimum_norm.make_inverse_operator(p["info"], p["fwd"], p["cov"], loose="auto" if fixed else loose, depth=0.8, fixed=fixed)
    stc = mne.minimum_norm.apply_inverse_raw(p["raw"], inv, 1 / 9, method)
    assert rel_err(offline(b, by_name(p, b)), stc.data.T) <= 1e-4


def test_projectors_are_matched_by_name():
    proj = mne.Projection(data=dict(nrow=1, ncol=3, row_names=None, col_names=["d", "b", "a"], data=np.ones((1, 3))), kind=1, desc="custom", active=False)
    m, k = projector_matrix([proj], ["a", "b", "c", "d"])
    assert k == 1
    x = np.array([1.0, 2.0, 5.0, 3.0])
    np.testing.assert_allclose(m @ x, [-1.0, 0.0, 5.0, 1.0], atol=1e-12)  # mean of a, b, d removed from them only


def test_missing_channels_are_named(problem):
    p = problem
    cov = mne.Covariance(p["cov"].data[:-1, :-1], p["cov"].ch_names[:-1], bads=[], projs=[], nfree=10)
    missing = p["cov"].ch_names[-1]
    if missing == BAD:
        pytest.skip("the dropped covariance channel is the bad one")
    with pytest.raises(ChannelError, match=f"not in the noise covariance.*{missing}"):
        bundle_from_forward(p["info"], p["fwd"], cov)
    with pytest.raises(ConfigError, match="ch_type"):
        bundle_from_forward(p["info"], p["fwd"], p["cov"], ch_type="ecog")


# ---- (b) their inverse, our streaming ----------------------------------------------------

@pytest.mark.parametrize("loose,fixed", [(0.2, False), (1.0, False), (0.0, True)])
@pytest.mark.parametrize("method", ["MNE", "dSPM", "sLORETA", "eLORETA"])
def test_bundle_from_inverse_equals_apply_inverse_raw(problem, method, loose, fixed):
    p = problem
    inv = mne.minimum_norm.make_inverse_operator(p["info"], p["fwd"], p["cov"], loose="auto" if fixed else loose, depth=0.8, fixed=fixed)
    picks = [None] if (fixed or loose == 1.0) else [None, "normal"]
    for pick_ori in picks:
        b = bundle_from_inverse(inv, method=method, lambda2=1 / 9, pick_ori=pick_ori, info=p["info"])
        assert b.sfreq == SFREQ and set(b.ch_names) == set(NAMES) - {BAD}
        stc = mne.minimum_norm.apply_inverse_raw(p["raw"], inv, 1 / 9, method, pick_ori=pick_ori)
        err = rel_err(offline(b, by_name(p, b)), stc.data.T)
        assert err <= 1e-6, (method, loose, fixed, pick_ori, err)
        assert b.n_orient == (3 if (pick_ori is None and not fixed) else 1)


def test_bundles_from_mne_pass_the_loaders_meaning_checks(problem, tmp_path):
    """Bundles made from MNE objects are saved and loaded back (finite, consistent, in range)."""
    from rtsource.bundle import load_bundle, save_bundle

    p = problem
    inv = mne.minimum_norm.make_inverse_operator(p["info"], p["fwd"], p["cov"], loose=0.2, depth=0.8)
    made = [bundle_from_forward(p["info"], p["fwd"], p["cov"], method=m) for m in ("MNE", "dSPM", "sLORETA", "eLORETA")]
    made += [bundle_from_inverse(inv, method=m, lambda2=1 / 9, info=p["info"]) for m in ("dSPM", "eLORETA")]
    for i, b in enumerate(made):
        back = load_bundle(save_bundle(b, tmp_path / f"b{i}.npz"))
        assert np.array_equal(back.kernel, b.kernel) and back.reference == b.reference


# ---- acceptance: the streaming path with shuffled channels ----------------------------------

def test_streamed_dspm_equals_mne_apply_inverse_raw(problem):
    p = problem
    bundle = bundle_from_forward(p["info"], p["fwd"], p["cov"], method="dSPM", loose=0.2, depth=0.8)
    inv = mne.minimum_norm.make_inverse_operator(p["info"], p["fwd"], p["cov"], loose=0.2, depth=0.8)
    stc = mne.minimum_norm.apply_inverse_raw(p["raw"], inv, 1 / 9, "dSPM")

    rng = np.random.default_rng(3)
    order = rng.permutation(len(NAMES))
    names = [NAMES[i] for i in order] + ["TRIG"]
    assert names[: len(NAMES)] != NAMES
    x = np.column_stack([p["x_uv"][:, order], np.zeros(len(p["x_uv"]), np.float32)])
    in_name, out_name = unique("mne-eeg"), unique("mne-src")
    outlet = eeg_outlet(in_name, names, sfreq=SFREQ, unit="microvolts", types=["EEG"] * len(NAMES) + ["STIM"])
    loop = StreamLoop(bundle, LoopOptions(selector=StreamSelector(name=in_name), output_name=out_name, max_chunk=64))
    loop.connect()
    assert loop.channel_map.extra == (BAD, "TRIG") or set(loop.channel_map.extra) == {BAD, "TRIG"}
    collector = Collector(out_name)
    loop.inlet.open()
    thread = loop.run_in_thread()
    assert outlet.wait_for_consumers(timeout=20)
    stamps = 300.0 + np.arange(len(x)) / SFREQ
    for s in range(0, len(x), 10):
        outlet.push_chunk(x[s : s + 10], stamps[s : s + 10].tolist())
    deadline = time.monotonic() + 60
    while collector.n_samples < len(x) and time.monotonic() < deadline:
        time.sleep(0.05)
    loop.stop()
    thread.join(timeout=10)
    collector.stop()
    loop.close()
    y, ts = collector.data()
    assert len(y) == len(x) and loop.stats.lost == 0 and np.array_equal(ts, stamps)
    err = rel_err(y, stc.data.T)
    print(f"streamed dSPM vs MNE-Python apply_inverse_raw: max relative difference {err:.1e}")
    assert err <= 1e-4, f"streamed dSPM differs from MNE-Python by {err:.2e}"

    # (d) the published block back as an MNE SourceEstimate, on MNE's vertices
    est = to_source_estimate(ts, y, bundle)
    assert isinstance(est, mne.VolSourceEstimate)
    assert [list(v) for v in est.vertices] == [list(v) for v in stc.vertices]
    assert est.tstep == pytest.approx(1 / SFREQ) and est.data.shape == stc.data.shape
    assert rel_err(est.data, stc.data) <= 1e-4


# ---- (c) labels and (d) SourceEstimates on the template ------------------------------------

@pytest.fixture(scope="module")
def template_bundle():
    from tests.conftest import make_bundle
    from rtsource.anatomy.template import template_source_space

    src = template_source_space("ico4")
    return make_bundle(n_chan=4, n_src=src.n_sources, n_orient=1, sources=src)


def test_labels_to_rois(template_bundle):
    b = template_bundle
    lh = mne.Label(vertices=np.array([0, 1, 2, 5000]), hemi="lh", name="precentral-lh", subject="fsaverage")
    rh = mne.Label(vertices=np.array([0, 3]), hemi="rh", name="superior temporal", subject="fsaverage")
    rois = labels_to_rois([lh, rh, lh + rh], b)
    names = [r.name if hasattr(r, "name") else r[0] for r in rois]
    idx = [np.asarray(r.vertices if hasattr(r, "vertices") else r[1]) for r in rois]
    assert names[:2] == ["precentral-lh", "superior_temporal"]  # made valid channel labels
    assert names[2] == "precentral-lh_+_superior_temporal"  # "precentral-lh + superior temporal"
    np.testing.assert_array_equal(idx[0], [0, 1, 2])  # vertex 5000 is not an ico4 source
    np.testing.assert_array_equal(idx[1], [2562, 2565])
    np.testing.assert_array_equal(idx[2], [0, 1, 2, 2562, 2565])
    with pytest.raises(ConfigError, match="contains none"):
        labels_to_rois(mne.Label(vertices=np.array([9000]), hemi="lh", name="tiny"), b)
    assert labels_to_rois(mne.Label(vertices=np.array([9000]), hemi="lh", name="tiny"), b, on_empty="warn") == ()


def test_source_estimate_on_the_template_with_a_gap(template_bundle):
    b = template_bundle
    ts = 50.0 + np.arange(10) / b.sfreq
    ts = np.delete(ts, [4, 5])  # two samples missing
    y = np.random.default_rng(0).normal(size=(8, b.n_sources))
    est = to_source_estimate(ts, y, b)
    assert isinstance(est, mne.SourceEstimate) and est.subject == "fsaverage"
    np.testing.assert_array_equal(est.vertices[0], np.arange(2562))
    assert est.data.shape == (b.n_sources, 10)
    assert np.all(np.isnan(est.data[:, 4:6]))
    np.testing.assert_array_equal(est.data[:, [0, 1, 2, 3, 6, 7, 8, 9]], y.T)
    with pytest.raises(ConfigError, match="missing"):
        to_source_estimate(ts, y, b, gaps="raise")
