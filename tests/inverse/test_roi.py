"""ROIs: constructors, sign flip, aggregation modes, folding into the operator
(rtsource.inverse.roi builds ROIs, rtsource.roi_operator aggregates and folds them).

Checked against plain NumPy twins of MNE-Python's formulas and, where MNE-Python is
installed, against ``mne.extract_label_time_course`` on the template source space.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from rtsource.anatomy.source_space import SourceSpace
from rtsource.anatomy.template import template_source_space
from rtsource.errors import ConfigError, FrameError, InverseError
from rtsource.inverse.roi import read_roi_file, roi_from_hemisphere, roi_from_sphere, roi_from_vertices
from rtsource.anatomy.regions import Roi
from rtsource.roi_operator import RoiOperator, fold, make_roi_weights, pca_flip_weights, resolve_component, sign_flip, signed_rows

from tests.conftest import make_bundle


@pytest.fixture(scope="module")
def sources():
    return template_source_space("ico4", "white")


# ---- NumPy twins of MNE-Python's label functions (mne/label.py, mne/source_estimate.py) ----

def twin_sign_flip(ori):
    _, _, vh = np.linalg.svd(ori, full_matrices=False)
    dots = ori @ vh[0]
    if dots.mean() < 0:
        dots = -dots
    return np.sign(dots)


def twin_pca_flip(flip, data):
    """data (n_vertices, n_times), MNE's _pca_flip."""
    u, s, vt = np.linalg.svd(data, full_matrices=False)
    sign = np.sign(u[:, 0] @ flip)
    return sign * np.linalg.norm(s) / np.sqrt(len(data)) * vt[0]


# ---- constructors ----------------------------------------------------------------------------

def test_sphere_roi_holds_exactly_the_sources_within_the_radius(sources):
    centre = np.array([20.0, -92.0, 2.0])
    roi = roi_from_sphere(sources, "V1r", centre, 15.0)
    d = np.linalg.norm(sources.positions_m * 1e3 - centre, axis=1)
    assert np.array_equal(roi.vertices, np.flatnonzero(d <= 15.0))
    assert roi.n_sources > 10 and not roi.vertices.flags.writeable
    assert "15 mm" in roi.description
    lh = roi_from_sphere(sources, "mid", [0.0, -90.0, 5.0], 20.0, hemisphere="lh")
    assert np.all(sources.hemisphere[lh.vertices] == 0)


def test_sphere_roi_without_sources_names_the_nearest(sources):
    with pytest.raises(ConfigError, match=r"no source .* within 2 mm .* nearest is .* mm away"):
        roi_from_sphere(sources, "air", [0.0, 0.0, 200.0], 2.0)
    with pytest.raises(ConfigError, match="radius_mm"):
        roi_from_sphere(sources, "bad", [0.0, 0.0, 0.0], -1.0)
    with pytest.raises(ConfigError, match="ROI name"):
        roi_from_sphere(sources, "V1 left", [20.0, -92.0, 2.0], 10.0)


def test_sphere_roi_with_few_sources_warns(sources, caplog):
    p = sources.positions_m[100] * 1e3
    with caplog.at_level(logging.WARNING, logger="rtsource.inverse.roi"):
        roi = roi_from_sphere(sources, "tiny", p, 0.5)
    assert roi.n_sources == 1
    assert "only 1 source" in caplog.text


def test_template_coordinates_need_the_template_frame(sources):
    head = SourceSpace(sources.positions_m, sources.normals, sources.areas_m2, sources.hemisphere, "head", "subject")
    with pytest.raises(FrameError, match="'head' frame"):
        roi_from_sphere(head, "V1", [20.0, -92.0, 2.0], 10.0)


def test_vertex_and_hemisphere_rois(sources):
    roi = roi_from_vertices(sources, "v", [5, 3, 9])
    assert roi.vertices.tolist() == [3, 5, 9]
    with pytest.raises(ConfigError, match="outside the source space"):
        roi_from_vertices(sources, "v", [0, sources.n_sources])
    with pytest.raises(ConfigError, match="repeat"):
        roi_from_vertices(sources, "v", [1, 1, 2])
    with pytest.raises(ConfigError, match="negative"):
        Roi("v", np.array([-1, 2]))
    lh, rh = roi_from_hemisphere(sources, "lh"), roi_from_hemisphere(sources, "rh")
    assert lh.n_sources + rh.n_sources == sources.n_sources and lh.name == "lh"
    with pytest.raises(ConfigError, match="'lh' or 'rh'"):
        roi_from_hemisphere(sources, "both")


def test_roi_file_reads_names_coordinates_and_radii(sources, tmp_path):
    f = tmp_path / "rois.csv"
    f.write_text("name,x,y,z,radius\n# occipital\nV1r, 20, -92, 2, 12\n\nM1l,-38,-22,58\n")
    rois = read_roi_file(f, sources, default_radius_mm=15.0)
    assert [r.name for r in rois] == ["V1r", "M1l"]
    assert np.array_equal(rois[0].vertices, roi_from_sphere(sources, "x", [20, -92, 2], 12).vertices)
    assert np.array_equal(rois[1].vertices, roi_from_sphere(sources, "x", [-38, -22, 58], 15).vertices)
    assert "rois.csv:5" in rois[1].description


@pytest.mark.parametrize(
    "text, match",
    [
        ("V1,20,-92\n", r"rois.csv:1: expected 'name,x,y,z\[,radius\]'"),
        ("V1,20,-92,2,10\nM1,-38,abc,58,10\n", r"rois.csv:2: x, y, z and radius must be numbers"),
        ("V1,20,-92,2,10\n\nV1,-38,-22,58,10\n", r"rois.csv:3: ROI name 'V1' repeats \(first on line 1\)"),
        ("V1,20,-92,2\n", r"rois.csv:1: ROI 'V1' has no radius"),
        ("V1,20,-92,2,0\n", r"rois.csv:1: radius 0 mm must be positive"),
        ("V 1,20,-92,2,5\n", r"rois.csv:1: ROI name 'V 1'"),
        ("V1,0,0,300,5\n", r"rois.csv:1: ROI 'V1': no source"),
        ("# nothing\n", "defines no ROI"),
    ],
)
def test_malformed_roi_files_name_the_line(sources, tmp_path, text, match):
    f = tmp_path / "rois.csv"
    f.write_text(text)
    with pytest.raises(ConfigError, match=match):
        read_roi_file(f, sources)


def test_missing_roi_file(sources, tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_roi_file(tmp_path / "nope.csv", sources)


# ---- sign flip, signed rows, components --------------------------------------------------------

def test_sign_flip_matches_mne_formula(sources):
    rng = np.random.default_rng(0)
    for _ in range(20):
        idx = rng.choice(sources.n_sources, size=rng.integers(2, 40), replace=False)
        assert np.array_equal(sign_flip(sources.normals[idx]), twin_sign_flip(sources.normals[idx]))
    # opposite walls of a sulcus get opposite signs
    ori = np.array([[0, 0, 1.0], [0, 0, 1.0], [0, 0, -1.0]])
    assert sign_flip(ori).tolist() == [1, 1, -1]


def test_signed_rows_fixed_and_normal_component():
    rng = np.random.default_rng(1)
    n_src, n_chan = 12, 9
    normals = rng.normal(size=(n_src, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    nn = rng.uniform(0.5, 2, n_src)
    k1 = rng.normal(size=(n_src, n_chan))
    assert np.allclose(signed_rows(k1, nn, 1, normals), k1 / nn[:, None])
    # loose layout: rows (t1, t2, n) per source; rotation rows are those axes
    rot = np.empty((n_src, 3, 3))
    for s in range(n_src):
        q, _ = np.linalg.qr(np.column_stack([normals[s], rng.normal(size=(3, 2))]))
        rot[s] = np.array([q[:, 1], q[:, 2], normals[s]])
    k3 = rng.normal(size=(3 * n_src, n_chan))
    x = rng.normal(size=n_chan)
    direct = np.array([normals[s] @ (rot[s].T @ (k3[3 * s : 3 * s + 3] @ x)) for s in range(n_src)]) / nn
    assert np.allclose(signed_rows(k3, nn, 3, normals, source_rotation=rot) @ x, direct)
    assert np.allclose(signed_rows(k3, nn, 3, normals) @ x, direct)  # no rotation: third row is the normal
    # kernel rows in x, y, z (identity frames): the normal component is n . q
    eye = np.broadcast_to(np.eye(3), (n_src, 3, 3))
    direct_xyz = np.array([normals[s] @ (k3[3 * s : 3 * s + 3] @ x) for s in range(n_src)]) / nn
    assert np.allclose(signed_rows(k3, nn, 3, normals, source_rotation=eye) @ x, direct_xyz)


def test_component_rules():
    assert resolve_component("mean_flip", "auto", 1) == "signed"
    assert resolve_component("mean_flip", "normal", 1) == "signed"
    assert resolve_component("max", "auto", 1) == "pooled"
    assert resolve_component("mean", "auto", 3) == "normal"
    assert resolve_component("mean", "pooled", 3) == "pooled"
    assert resolve_component("max", "auto", 3) == "pooled"
    with pytest.raises(ConfigError, match="cancel"):
        resolve_component("mean_flip", "pooled", 3)
    with pytest.raises(ConfigError, match="pooled magnitudes"):
        resolve_component("max", "normal", 3)
    with pytest.raises(ConfigError, match="not one of"):
        resolve_component("median", "auto", 3)


# ---- modes against NumPy twins ---------------------------------------------------------------

@pytest.fixture(scope="module")
def loose_bundle():
    b = make_bundle(n_chan=16, n_src=60, n_orient=3, seed=3)
    return b


def _rois_for(b):
    h = b.sources.hemisphere
    return [Roi("A", np.flatnonzero(h == 0)[:12]), Roi("B", np.flatnonzero(h == 1)[3:20]), Roi("C", np.array([0, 40, 41, 59]))]


@pytest.mark.parametrize("n_orient", [1, 3])
@pytest.mark.parametrize("mode", ["mean", "mean_flip", "pca_flip"])
def test_folded_operator_equals_mode_applied_to_signed_sources(mode, n_orient):
    b = make_bundle(n_chan=16, n_src=60, n_orient=n_orient, seed=5)
    rois = _rois_for(b)
    rng = np.random.default_rng(2)
    cal = rng.normal(size=(300, 16)) * 1e-5
    data = rng.normal(size=(50, 16)) * 1e-5
    op = RoiOperator.from_bundle(b, rois, mode, calibration=cal)
    assert op.linear and op.matrix.shape == (3, 16) and not op.matrix.flags.writeable
    signed = data @ signed_rows(b.kernel, b.noise_norm, n_orient, b.sources.normals, source_rotation=b.source_rotation).T
    expected = np.empty((50, 3))
    for r, roi in enumerate(rois):
        v = signed[:, roi.vertices]
        flip = twin_sign_flip(b.sources.normals[roi.vertices])
        if mode == "mean":
            expected[:, r] = v.mean(axis=1)
        elif mode == "mean_flip":
            expected[:, r] = (flip * v).mean(axis=1)
        else:
            calv = cal @ signed_rows(b.kernel, b.noise_norm, n_orient, b.sources.normals, roi.vertices, b.source_rotation).T
            calv = calv - calv.mean(axis=0)
            u, s, _ = np.linalg.svd(calv.T, full_matrices=False)
            w = np.sign(u[:, 0] @ flip) * np.linalg.norm(s) / (s[0] * np.sqrt(len(u))) * u[:, 0]
            expected[:, r] = v @ w
    assert np.allclose(op.apply(data), expected, rtol=1e-10, atol=1e-12 * np.abs(expected).max())
    assert np.allclose(op.weights.reduce(signed), expected, rtol=1e-10, atol=1e-12 * np.abs(expected).max())
    assert np.allclose(op.weights.dense() @ signed.T, expected.T)


def test_pca_flip_weights_reproduce_mne_on_the_calibration_block():
    rng = np.random.default_rng(4)
    n_v, n_t = 15, 400
    ori = rng.normal(size=(n_v, 3))
    ori /= np.linalg.norm(ori, axis=1, keepdims=True)
    flip = twin_sign_flip(ori)
    # a dominant source pattern plus noise, with sign structure
    pattern = flip * rng.uniform(0.5, 1.5, n_v)
    data = np.outer(pattern, np.sin(np.linspace(0, 20, n_t))) + 0.3 * rng.normal(size=(n_v, n_t))
    w = pca_flip_weights(data.T, flip, demean=False)
    assert np.allclose(w @ data, twin_pca_flip(flip, data), rtol=1e-10, atol=1e-12)
    # streaming use: a later block through the frozen weights keeps pattern, sign and scale
    later = np.outer(pattern, np.cos(np.linspace(0, 20, n_t))) + 0.3 * rng.normal(size=(n_v, n_t))
    assert np.corrcoef(w @ later, np.cos(np.linspace(0, 20, n_t)))[0, 1] > 0.95
    with pytest.raises(InverseError, match="no variance"):
        pca_flip_weights(np.zeros((10, n_v)), flip)


def test_pca_flip_needs_calibration(loose_bundle):
    with pytest.raises(ConfigError, match="calibration"):
        RoiOperator.from_bundle(loose_bundle, _rois_for(loose_bundle), "pca_flip")


@pytest.mark.parametrize("n_orient", [1, 3])
def test_nonlinear_modes_reduce_the_per_source_output(n_orient):
    b = make_bundle(n_chan=16, n_src=60, n_orient=n_orient, seed=6)
    rois = _rois_for(b)
    rng = np.random.default_rng(3)
    out = rng.normal(size=(40, 60))  # the per-source output (signed for fixed, any values)
    if n_orient == 3:
        out = np.abs(out)  # pooled magnitudes
    mx = RoiOperator.from_bundle(b, rois, "max")
    assert not mx.linear and mx.matrix is None
    assert np.array_equal(mx.weights.reduce(out), np.stack([np.abs(out[:, r.vertices]).max(axis=1) for r in rois], axis=1))
    mean_pooled = RoiOperator.from_bundle(b, rois, "mean", "pooled")
    assert not mean_pooled.linear
    assert np.allclose(mean_pooled.weights.reduce(out), np.stack([np.abs(out[:, r.vertices]).mean(axis=1) for r in rois], axis=1))
    with pytest.raises(InverseError, match="non-linear"):
        mx.apply(np.zeros((2, 16)))


def test_refold_with_a_new_kernel_keeps_the_weights(loose_bundle):
    b = loose_bundle
    rois = _rois_for(b)
    cal = np.random.default_rng(8).normal(size=(300, 16)) * 1e-5
    op = RoiOperator.from_bundle(b, rois, "pca_flip", calibration=cal)
    new_kernel = b.kernel * 1.5 + np.random.default_rng(9).normal(size=b.kernel.shape) * 1e3
    re = op.refold(kernel=new_kernel, noise_norm=b.noise_norm, ch_names=b.ch_names, normals=b.sources.normals, source_rotation=b.source_rotation)
    assert re.weights is op.weights
    assert np.allclose(re.matrix, fold(op.weights, new_kernel, b.noise_norm, 3, b.sources.normals, b.source_rotation))
    # without channel 4 (a bad-channel rebuild)
    keep = [i for i in range(16) if i != 4]
    re2 = op.refold(kernel=new_kernel[:, keep], noise_norm=b.noise_norm, ch_names=[b.ch_names[i] for i in keep], normals=b.sources.normals,
                    source_rotation=b.source_rotation)  # fmt: skip
    assert re2.matrix.shape == (3, 15)
    with pytest.raises(InverseError, match="same sources"):
        op.refold(kernel=new_kernel[:30], noise_norm=b.noise_norm, ch_names=b.ch_names, normals=b.sources.normals)


def test_weights_metadata(loose_bundle):
    b = loose_bundle
    rois = _rois_for(b)
    w = make_roi_weights(rois, b.sources, "mean_flip", n_orient=3)
    assert w.names == ("A", "B", "C") and w.counts().tolist() == [12, 17, 4]
    assert np.allclose(w.centres_m[2], b.sources.positions_m[[0, 40, 41, 59]].mean(axis=0))
    with pytest.raises(ConfigError, match="used twice"):
        make_roi_weights([rois[0], rois[0]], b.sources, "mean", n_orient=3)


# ---- MNE-Python ---------------------------------------------------------------------------------

def _mne_source_space(sources):
    mne = pytest.importorskip("mne")
    from mne.io.constants import FIFF

    def hemi(h, hid):
        idx = np.flatnonzero(sources.hemisphere == h)
        n = len(idx)
        return dict(type="surf", id=hid, np=n, nuse=n, inuse=np.ones(n, int), vertno=np.arange(n), rr=sources.positions_m[idx],
                    nn=sources.normals[idx], coord_frame=FIFF.FIFFV_COORD_MRI, subject_his_id="fsaverage", tris=None, use_tris=None,
                    ntri=0, nuse_tri=0, dist=None, dist_limit=None, nearest=None, nearest_dist=None, pinfo=None, patch_inds=None)  # fmt: skip

    return mne, mne.SourceSpaces([hemi(0, FIFF.FIFFV_MNE_SURF_LEFT_HEMI), hemi(1, FIFF.FIFFV_MNE_SURF_RIGHT_HEMI)])


def _mne_label(mne, roi, sources):
    n_lh = int(np.sum(sources.hemisphere == 0))
    lh = roi.vertices[roi.vertices < n_lh]
    rh = roi.vertices[roi.vertices >= n_lh] - n_lh
    labels = []
    if len(lh):
        labels.append(mne.Label(vertices=lh, hemi="lh", subject="fsaverage", name=roi.name))
    if len(rh):
        labels.append(mne.Label(vertices=rh, hemi="rh", subject="fsaverage", name=roi.name))
    return labels[0] if len(labels) == 1 else labels[0] + labels[1]


@pytest.mark.peers
@pytest.mark.parametrize("mode", ["mean", "mean_flip", "pca_flip", "max"])
def test_matches_mne_extract_label_time_course(sources, mode):
    """Fixed-orientation (signed) source values on the template: rtsource vs MNE-Python."""
    mne, src = _mne_source_space(sources)
    rois = [
        roi_from_sphere(sources, "V1r", [20.0, -92.0, 2.0], 15.0),
        roi_from_sphere(sources, "M1l", [-38.0, -22.0, 58.0], 12.0),
        roi_from_sphere(sources, "mid", [0.0, -80.0, 10.0], 15.0),  # both hemispheres
    ]
    assert len(set(sources.hemisphere[rois[2].vertices])) == 2
    rng = np.random.default_rng(11)
    values = rng.normal(size=(sources.n_sources, 300))
    values[rois[0].vertices] += 3 * np.sin(np.linspace(0, 30, 300)) * sign_flip(sources.normals[rois[0].vertices])[:, None]
    n_lh = int(np.sum(sources.hemisphere == 0))
    stc = mne.SourceEstimate(values, [np.arange(n_lh), np.arange(sources.n_sources - n_lh)], 0.0, 0.002, subject="fsaverage")
    labels = [_mne_label(mne, r, sources) for r in rois]
    ref = mne.extract_label_time_course(stc, labels, src, mode=mode, verbose="error")
    kwargs = {}
    if mode == "pca_flip":  # MNE estimates it on this very block: give the same block as calibration
        kwargs = {"calibration_values": [values[r.vertices].T for r in rois], "demean": False}
    w = make_roi_weights(rois, sources, mode, n_orient=1, **kwargs)
    ours = w.reduce(values.T).T
    assert np.allclose(ours, ref, rtol=1e-9, atol=1e-12), np.abs(ours - ref).max()
