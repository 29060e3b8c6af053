"""Coregistration to the template: recovery of known transforms, refusal, QC picture, MEG."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from rtsource.anatomy.template import load_template
from rtsource.coreg import (
    DEFAULT_MAX_RMS_MM,
    coregister,
    device_to_template,
    head_to_template,
    icp_to_surface,
    measure_fit,
    run_coreg,
    template_montage,
    tukey_weights,
)
from rtsource.errors import ChannelError, ConfigError, FrameError, GeometryError
from rtsource.geometry import Frame, Points, Transform
from rtsource.geometry.head_frames import head_from_fiducials
from rtsource.sensors.montage import CAP_64, standard_montage
from rtsource.sensors.readers import Digitization, read_transform, write_positions_csv

DATA = Path(__file__).resolve().parent / "data" / "montages"
TEMPLATE = load_template()
CAP = standard_montage().pick(CAP_64)
E_TRUE = CAP.electrodes.positions_m
F_TRUE = TEMPLATE.fiducials.positions_m
# the simulated head is the skin coregistration fits to (the standard electrodes lie on it)
_V = TEMPLATE.fit_scalp.vertices_m
# where a digitiser puts headshape points: the scalp above ~2 cm below the ear line
HEADSHAPE_CANDIDATES = _V[_V[:, 2] > F_TRUE[:, 2].min() - 0.02]


def simulate(seed, *, noise_m=2e-3, outlier_fraction=0.05, n_headshape=100, scale=1.0):
    """Template electrodes + headshape + fiducials moved by a random rigid transform.

    Rotation up to 30 degrees about a random axis, translation up to 30 mm; Gaussian noise of
    ``noise_m`` per axis on every point (fiducials too); ``outlier_fraction`` of electrodes
    and headshape points displaced 20-50 mm in a random direction.
    Returns the digitisation and the true template->digitiser transform.
    """
    rng = np.random.default_rng(seed)
    axis = rng.normal(size=3)
    rot = Rotation.from_rotvec(np.radians(rng.uniform(0, 30)) * axis / np.linalg.norm(axis)).as_matrix()
    direction = rng.normal(size=3)
    trans = direction / np.linalg.norm(direction) * rng.uniform(0, 0.03)
    hs = HEADSHAPE_CANDIDATES[rng.choice(len(HEADSHAPE_CANDIDATES), n_headshape, replace=False)]

    def measure(p, outliers):
        q = p + rng.normal(scale=noise_m, size=p.shape)
        k = int(round(outlier_fraction * len(p))) if outliers else 0
        if k:
            idx = rng.choice(len(p), k, replace=False)
            d = rng.normal(size=(k, 3))
            q[idx] += d / np.linalg.norm(d, axis=1, keepdims=True) * rng.uniform(0.02, 0.05, (k, 1))
        return (scale * q) @ rot.T + trans

    truth = Transform.from_rotation_translation("template", "unknown", rot, trans, scale)
    dig = Digitization(
        Points(measure(E_TRUE, True), "unknown", "m", CAP_64),
        Points(measure(F_TRUE, False), "unknown", "m", ("NAS", "LPA", "RPA")),
        Points(measure(hs, True), "unknown", "m"),
        name=f"simulated-{seed}",
    )
    return dig, truth


def registration_errors_mm(result, truth):
    """Distance at each electrode between where the fit puts it and where it is (TRE)."""
    return np.linalg.norm(result.transform.apply_m(truth.apply_m(E_TRUE)) - E_TRUE, axis=1) * 1e3


SEEDS = range(20)


@pytest.fixture(scope="module")
def recovery():
    """Per-draw electrode errors for both methods and both noise levels (computed once)."""
    out = {}
    for noise_name, noise in (("2mm_per_axis", 2e-3), ("2mm_rms", 2e-3 / np.sqrt(3))):
        for method in ("icp", "fiducials"):
            tre, final = [], []
            for seed in SEEDS:
                dig, truth = simulate(seed, noise_m=noise)
                r = coregister(dig, method=method, template=TEMPLATE)
                assert r.qc.passed and r.transform.from_frame == Frame.UNKNOWN and r.transform.to_frame == Frame.TEMPLATE
                tre.append(registration_errors_mm(r, truth))
                final.append(np.linalg.norm(r.montage.electrodes.positions_m - E_TRUE, axis=1) * 1e3)
            out[noise_name, method] = (np.array(tre), np.array(final))
    return out


def test_recovery_icp_and_fiducials_2mm_per_axis(recovery):
    """2 mm Gaussian noise per axis, 5% outliers, 20 draws: the typical error meets the bar.

    The statistic is the median electrode error of a draw. At this noise its spread over
    draws is set by the information in the points, not by the method: the Cramer-Rao bound
    for 100 headshape points + 64 electrodes + 3 fiducials on this nearly spherical head puts
    the 95th percentile of the per-draw median at about 2.5 mm for *any* unbiased estimator
    (100 draws with this ICP: median 1.4 mm, 95th percentile 2.5 mm, max 3.6 mm; fiducials
    alone: median 2.9 mm, 95th percentile 5.7 mm, max 7.0 mm). So the median over draws is
    held to the acceptance thresholds and single draws to a tail bound.
    """
    tre_icp, final_icp = recovery["2mm_per_axis", "icp"]
    tre_fid, _ = recovery["2mm_per_axis", "fiducials"]
    per_draw_icp = np.median(tre_icp, axis=1)
    per_draw_fid = np.median(tre_fid, axis=1)
    assert np.median(per_draw_icp) <= 2.0 and np.median(tre_icp) <= 2.0
    assert np.median(per_draw_fid) <= 6.0 and np.median(tre_fid) <= 6.0
    assert np.percentile(per_draw_icp, 90) <= 3.0 and per_draw_icp.max() <= 4.0
    assert per_draw_fid.max() <= 8.0
    assert np.all(per_draw_icp < per_draw_fid + 0.5) and np.median(per_draw_icp) < 0.7 * np.median(per_draw_fid)
    # final positions (projected, measurement noise included)
    assert np.median(final_icp) <= 3.5


def test_recovery_every_draw_with_2mm_rms_noise(recovery):
    """2 mm RMS displacement (1.15 mm per axis), 5% outliers: (nearly) every draw passes."""
    tre_icp, final_icp = recovery["2mm_rms", "icp"]
    tre_fid, _ = recovery["2mm_rms", "fiducials"]
    per_draw_icp = np.median(tre_icp, axis=1)
    assert np.mean(per_draw_icp <= 2.0) >= 0.95 and per_draw_icp.max() <= 2.5
    assert np.median(tre_fid, axis=1).max() <= 6.0
    assert np.median(final_icp) <= 2.0


def test_icp_flags_the_outliers():
    dig, truth = simulate(1)
    r = coregister(dig, template=TEMPLATE)
    names = r.qc.outlier_names()
    assert 3 <= len(names) <= 12 and r.qc.outlier_fraction < 0.1
    assert r.qc.rms_all_mm > r.qc.rms_mm  # outliers count in the 'all' number only
    assert r.qc.converged and r.qc.iterations < 50


def test_scale_is_recovered_for_a_bigger_head():
    dig, truth = simulate(4, scale=1.1, noise_m=1e-3, outlier_fraction=0.0)
    rigid = coregister(dig, template=TEMPLATE, allow_bad_fit=True)
    scaled = coregister(dig, template=TEMPLATE, scale=True)
    assert scaled.qc.scale == pytest.approx(1 / 1.1, rel=0.01)
    assert scaled.qc.rms_mm < rigid.qc.rms_mm
    assert np.median(registration_errors_mm(scaled, truth)) < 1.5


def test_label_start_without_fiducials():
    dig, truth = simulate(5, noise_m=1e-3, outlier_fraction=0.0)
    no_fid = Digitization(dig.electrodes, None, dig.headshape, name="no fiducials")
    r = coregister(no_fid, template=TEMPLATE)
    assert r.qc.initial.startswith("electrode labels")
    assert np.median(registration_errors_mm(r, truth)) < 2.0


def test_head_frame_start_without_fiducials_or_labels():
    dig = Digitization(None, None, Points(HEADSHAPE_CANDIDATES[::15], "template", "m")).transformed(
        head_from_fiducials(TEMPLATE.fiducials)
    )
    el = Points(E_TRUE, "template", "m", tuple(f"E{i}" for i in range(len(E_TRUE)))).transformed(head_from_fiducials(TEMPLATE.fiducials))
    r = coregister(Digitization(el, None, dig.headshape), template=TEMPLATE)
    assert "HEAD frame" in r.qc.initial
    assert np.median(np.linalg.norm(r.aligned.electrodes.positions_m - E_TRUE, axis=1)) < 1e-3


def test_cannot_align_without_anything_to_go_on():
    pts = Points(E_TRUE[:10], "unknown", "m", tuple(f"X{i}" for i in range(10)))
    with pytest.raises(GeometryError, match=r"no fiducials .* 0 electrode label\(s\) .* frame is 'unknown'"):
        coregister(Digitization(pts), template=TEMPLATE)


def test_bad_fit_is_refused_with_a_clear_message_unless_allowed(tmp_path):
    dig, _ = simulate(2, scale=1.25, noise_m=1e-3, outlier_fraction=0.0)  # a head 25% too big, no scaling
    with pytest.raises(GeometryError) as exc:
        coregister(dig, template=TEMPLATE, max_rms_mm=3.0)
    msg = str(exc.value)
    assert "RMS distance to the scalp" in msg and "max_rms_mm = 3 mm" in msg and "allow_bad_fit" in msg and "--allow-bad-fit" in msg
    r = coregister(dig, template=TEMPLATE, max_rms_mm=3.0, allow_bad_fit=True)
    assert not r.qc.passed and r.qc.rms_mm > 3.0
    assert "FAILED" in r.qc.summary()


def test_method_none_and_bad_settings():
    good = Digitization(Points(E_TRUE, "template", "m", CAP_64), name="on template")
    r = coregister(good, method="none", template=TEMPLATE)
    assert r.qc.rms_mm < 0.5 and np.allclose(r.transform.matrix, np.eye(4))
    with pytest.raises(FrameError, match="method 'none' needs positions in the 'template' frame"):
        coregister(Digitization(Points(E_TRUE, "unknown", "m", CAP_64)), method="none", template=TEMPLATE)
    with pytest.raises(ConfigError, match="'magic'"):
        coregister(good, method="magic")


def test_run_coreg_on_fixture_files_and_headshape(tmp_path):
    r = run_coreg(DATA / "egi.sfp", qc_png=None)
    assert r.qc.passed and r.qc.rms_mm < 1.0 and r.montage.frame == Frame.TEMPLATE
    assert r.reports[0].unit_source == "guessed from extent"
    r2 = run_coreg(DATA / "asa_labelled.elc", headshape_path=DATA / "isotrak.hsp")
    assert r2.qc.point_kinds.count("headshape") == 12 and len(r2.reports) == 2
    assert r2.qc.passed
    r3 = run_coreg(DATA / "sub-01_electrodes.tsv", channels=["Cz", "T7", "T8"])
    picked = r3.montage.pick(["Cz", "T3", "T4"])
    assert picked.frame == Frame.TEMPLATE
    with pytest.raises(ChannelError, match="XYZ"):
        run_coreg(DATA / "sub-01_electrodes.tsv", channels=["Cz", "XYZ"])


def test_template_montage_for_the_build(tmp_path):
    m, res = template_montage("standard_1020", ["Cz", "T3"])
    assert res is None and m.labels == ("Cz", "T3") and m.frame == Frame.TEMPLATE
    m, res = template_montage("generic.csv", ["Cz", "Fz", "T4"], base_dir=DATA, method="icp")
    assert res is not None and m.labels == ("Cz", "Fz", "T4") and m.frame == Frame.TEMPLATE
    # electrodes sit on the scalp after projection
    d = np.abs(np.linalg.norm(m.electrodes.positions_m - TEMPLATE.scalp_center_m, axis=1))
    assert np.all((d > 0.05) & (d < 0.13))


def test_result_json_is_complete(tmp_path):
    dig, _ = simulate(7)
    r = coregister(dig, template=TEMPLATE)
    doc = json.loads(r.write_json(tmp_path / "coreg.json").read_text())
    assert doc["transform"]["from"] == "unknown" and doc["transform"]["to"] == "template"
    assert len(doc["electrodes"]["labels"]) == 64 and doc["qc"]["passed"] is True
    assert len(doc["qc"]["points"]) == 164


def test_qc_png_shows_the_head_and_sensors(tmp_path):
    mpimg = pytest.importorskip("matplotlib.image")
    dig, _ = simulate(3)
    csv = write_positions_csv(tmp_path / "cap.csv", dig, unit="mm")
    png = tmp_path / "qc" / "coreg.png"
    r = run_coreg(csv, qc_png=png)
    assert r.qc_png == str(png) and png.exists()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(png)
    assert img.shape[0] >= 800 and img.shape[1] >= 1200
    rgb = img[..., :3]
    assert rgb.std() > 0.1  # not blank
    non_white = (rgb < 0.95).any(axis=-1).mean()
    assert 0.15 < non_white < 0.9
    skin = (np.abs(rgb - [0.93, 0.80, 0.69]) < 0.25).all(axis=-1) & (rgb[..., 0] > rgb[..., 2] + 0.1)
    assert skin.mean() > 0.05  # the shaded scalp is there
    assert "QC picture" in r.summary()


def test_qc_png_is_written_before_a_refusal(tmp_path):
    pytest.importorskip("matplotlib")
    dig, _ = simulate(2, scale=1.25, noise_m=1e-3, outlier_fraction=0.0)
    png = tmp_path / "bad.png"
    with pytest.raises(GeometryError, match="bad.png"):
        coregister(dig, template=TEMPLATE, max_rms_mm=3.0, qc_png=png)
    assert png.exists()


def test_measure_fit_on_the_template_scalp():
    # the standard electrodes lie on the template scalp: distances ~0, all pass; one electrode
    # lifted 30 mm off the scalp is the one outlier, and the fiducials match the template's
    identity = Transform.identity(Frame.TEMPLATE, Frame.TEMPLATE)
    lifted = E_TRUE.copy()
    k = CAP_64.index("Pz")
    radial = lifted[k] - TEMPLATE.scalp_center_m
    lifted[k] += 0.03 * radial / np.linalg.norm(radial)
    dig = Digitization(Points(lifted, Frame.TEMPLATE, "m", CAP_64), TEMPLATE.fiducials, name="lifted")
    qc = measure_fit(dig, TEMPLATE, identity, method="none", initial="test", iterations=0, converged=True)
    assert qc.point_kinds == ("electrode",) * len(CAP_64) and qc.point_labels == CAP_64
    assert qc.outlier_names() == ["Pz"] and 25 < qc.distances_mm[k] < 31
    assert qc.rms_mm < 1.0 and qc.passed and qc.scale == pytest.approx(1.0) and qc.rotation_deg == 0.0
    assert all(err < 1e-6 for _, err in qc.fiducial_errors_mm)
    # the same points refused once the threshold is below their RMS
    strict = measure_fit(dig, TEMPLATE, identity, method="none", initial="test", iterations=0, converged=True, max_rms_mm=qc.rms_mm / 2)
    assert not strict.passed and strict.max_rms_mm == qc.rms_mm / 2


def test_tukey_weights():
    d = np.r_[np.full(50, 1e-3), 0.05]
    w, c = tukey_weights(d)
    assert w[-1] == 0 and np.all(w[:-1] > 0.9) and 4e-3 < c < 0.02


def test_icp_needs_points_that_span_a_plane():
    with pytest.raises(GeometryError, match="collinear"):
        icp_to_surface(np.array([[0, 0, 0.09], [0, 0, 0.091], [0, 0, 0.092], [0, 0, 0.093]]), TEMPLATE.surfaces.scalp)


def test_meg_device_to_template_chain():
    dev_head = read_transform(DATA / "device_to_head.json")
    fid_head = Points(F_TRUE, "template", "m", ("NAS", "LPA", "RPA")).transformed(head_from_fiducials(TEMPLATE.fiducials))
    h2t = head_to_template(fid_head, template=TEMPLATE)
    assert np.allclose(h2t.apply_m(fid_head.positions_m), F_TRUE, atol=1e-9)
    chain = device_to_template(dev_head, h2t)
    assert chain.from_frame == Frame.DEVICE and chain.to_frame == Frame.TEMPLATE
    with pytest.raises(FrameError):
        device_to_template(h2t, dev_head)
    with pytest.raises(FrameError, match="'head' frame"):
        head_to_template(Points(F_TRUE, "unknown", "m", ("NAS", "LPA", "RPA")))


def test_default_threshold_is_documented():
    assert 3.0 <= DEFAULT_MAX_RMS_MM <= 10.0


def test_too_few_points_for_icp_say_so_and_suggest_fiducials(tmp_path):
    """3 electrodes + fiducials: the cause is too few points, not a bad start (the message
    used to blame the initial alignment at a median distance of 0.0 mm)."""
    three = standard_montage().pick(("Cz", "T7", "T8"))
    dig = Digitization(Points(three.electrodes.positions_m, "template", "m", ("Cz", "T7", "T8")), TEMPLATE.fiducials)
    path = write_positions_csv(tmp_path / "three.csv", dig, unit="mm")
    with pytest.raises(GeometryError) as exc:
        run_coreg(path, qc_png=None)
    msg = str(exc.value)
    assert "3 points cannot fix the 6 parameters" in msg and "--method fiducials" in msg
    assert "too far off" not in msg
    r = run_coreg(path, qc_png=None, method="fiducials")  # the suggestion works
    assert r.qc.rms_mm < 1.0
