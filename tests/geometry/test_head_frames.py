"""Named head frames from fiducials, composition with frame checks, point fits, HPI."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from rtsource.errors import FrameError, GeometryError
from rtsource.geometry import Frame, Points, Transform
from rtsource.geometry.head_frames import (
    FRAME_INFO,
    compose,
    ctf_from_fiducials,
    device_to_head_from_hpi,
    fiducial_name,
    fit_points,
    frame_for_coordinate_system,
    frame_from_fiducials,
    head_from_fiducials,
    head_to_ctf,
)

NAS, LPA, RPA = np.array([0.005, 0.10, 0.01]), np.array([-0.075, 0.0, 0.0]), np.array([0.08, 0.004, -0.002])


def fids(frame="unknown", labels=("Nasion", "left", "RPA")):
    return Points(np.array([NAS, LPA, RPA]), frame, "m", labels)


def test_head_frame_definition():
    t = head_from_fiducials(fids())
    assert t.from_frame == Frame.UNKNOWN and t.to_frame == Frame.HEAD
    nas, lpa, rpa = t.apply_m(np.array([NAS, LPA, RPA]))
    # LPA and RPA on the x axis (LPA negative), nasion on the +y axis, all in z = 0
    assert np.allclose([lpa[1], lpa[2], rpa[1], rpa[2], nas[0], nas[2]], 0, atol=1e-12)
    assert lpa[0] < 0 < rpa[0] and nas[1] > 0
    r = t.matrix[:3, :3]
    assert np.allclose(r @ r.T, np.eye(3)) and np.linalg.det(r) > 0  # rigid, right-handed (RAS)


def test_ctf_frame_definition():
    t = ctf_from_fiducials(fids())
    nas, lpa, rpa = t.apply_m(np.array([NAS, LPA, RPA]))
    assert np.allclose(lpa + rpa, 0, atol=1e-12)  # origin midway between the ears
    assert np.allclose(nas[1:], 0, atol=1e-12) and nas[0] > 0  # x through the nasion
    assert lpa[1] > 0 and abs(lpa[2]) < 1e-12  # y toward the LPA, z = 0 plane
    assert np.linalg.det(t.matrix[:3, :3]) > 0


def test_head_to_ctf_is_a_right_angle_about_z_for_symmetric_fiducials():
    f = Points(np.array([[0, 0.1, 0], [-0.08, 0, 0], [0.08, 0, 0]]), "unknown", "m", ("NAS", "LPA", "RPA"))
    t = head_to_ctf(f)
    assert t.from_frame == Frame.HEAD and t.to_frame == Frame.CTF
    assert np.allclose(t.apply_m(np.array([[1.0, 0, 0], [0, 1.0, 0]])), [[0, -1.0, 0], [1.0, 0, 0]])


def test_frame_from_fiducials_by_name():
    assert frame_from_fiducials(fids(), "ctf").to_frame == Frame.CTF
    with pytest.raises(FrameError, match="not defined by fiducials"):
        frame_from_fiducials(fids(), "template")


def test_head_frame_matches_mne_if_installed():
    mne_transforms = pytest.importorskip("mne.transforms")
    ref = mne_transforms.get_ras_to_neuromag_trans(NAS, LPA, RPA)
    assert np.allclose(head_from_fiducials(fids()).matrix, ref)


def test_fiducial_checks_catch_mistakes():
    with pytest.raises(GeometryError, match=r"\['LPA'\] are missing"):
        head_from_fiducials(Points(np.array([NAS, RPA]), "unknown", "m", ("NAS", "RPA")))
    with pytest.raises(GeometryError, match="not head-sized"):
        head_from_fiducials(Points(np.array([NAS, LPA, RPA]) * 1e3, "unknown", "m", ("NAS", "LPA", "RPA")))
    line = np.array([[0.0, 0, 0], [-0.08, 0, 0], [0.08, 0, 0]])
    with pytest.raises(GeometryError, match="collinear or mislabelled"):
        head_from_fiducials(Points(line, "unknown", "m", ("NAS", "LPA", "RPA")))


def test_fiducial_names():
    assert [fiducial_name(x) for x in ("FidNz", "FidT9", "fidt10", "nasion", "Left", "AR")] == ["NAS", "LPA", "RPA", "NAS", "LPA", "RPA"]
    assert fiducial_name("Nz") is None and fiducial_name("Cz") is None


def test_frame_info():
    assert FRAME_INFO[Frame.HEAD].axes == "RAS" and FRAME_INFO[Frame.CTF].axes == "ALS"


def test_compose_checks_every_link():
    a = Transform.identity("device", "head")
    b = Transform.identity("head", "template")
    assert compose(a, b).to_frame == Frame.TEMPLATE
    with pytest.raises(FrameError, match=r"transform 1 goes 'template' -> 'head' but the chain so far ends in 'head'"):
        compose(a, b.inverse())
    with pytest.raises(FrameError):
        compose()


@pytest.mark.parametrize(
    "name,frame",
    [("CapTrak", Frame.HEAD), ("ElektaNeuromag", Frame.HEAD), ("CTF", Frame.CTF), ("EEGLAB", Frame.CTF), ("KitYokogawa", Frame.CTF), ("MNI305", Frame.TEMPLATE), ("MNI152NLin2009cAsym", Frame.TEMPLATE), ("Talairach", Frame.UNKNOWN), ("Other", Frame.UNKNOWN)],
)
def test_coordinate_system_names(name, frame):
    got, reason = frame_for_coordinate_system(name)
    assert got == frame and name in reason


@pytest.mark.parametrize("scale", [False, True])
def test_fit_points_recovers_similarity(scale):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(10, 3)) * 0.05
    rot = Rotation.from_euler("zyx", [25, -10, 40], degrees=True).as_matrix()
    s = 1.07 if scale else 1.0
    y = s * x @ rot.T + [0.01, -0.02, 0.03]
    fit = fit_points(x, y, scale=scale)
    assert np.allclose(fit.rotation, rot) and np.isclose(fit.scale, s) and fit.residuals_m.max() < 1e-12


def test_fit_points_never_reflects():
    x = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1.0]]) * 0.05
    y = x * [-1, 1, 1]  # a mirror image: the best proper rotation, not the reflection
    fit = fit_points(x, y)
    assert np.isclose(np.linalg.det(fit.rotation), 1.0)


def test_hpi_fit_recovers_device_to_head_and_reports_residuals():
    rng = np.random.default_rng(0)
    coils_dev = np.array([[0.06, 0.05, 0.04], [-0.06, 0.05, 0.04], [0.07, -0.04, 0.02], [-0.07, -0.04, 0.02], [0.0, 0.0, 0.09]])
    rot = Rotation.from_euler("xyz", [5, -3, 8], degrees=True).as_matrix()
    t = np.array([0.002, -0.01, 0.04])
    coils_head = coils_dev @ rot.T + t + rng.normal(scale=3e-4, size=coils_dev.shape)
    labels = tuple(f"hpi{i}" for i in range(1, 6))
    fit = device_to_head_from_hpi(Points(coils_dev, "device", "m", labels), Points(coils_head[::-1], "head", "m", labels[::-1]))
    assert fit.transform.from_frame == Frame.DEVICE and fit.transform.to_frame == Frame.HEAD
    assert np.allclose(fit.transform.matrix[:3, :3], rot, atol=2e-2) and np.allclose(fit.transform.matrix[:3, 3], t, atol=1e-3)
    assert fit.residuals_m.shape == (5,) and fit.residuals_m.max() < 1e-3
    assert "hpi3" in fit.describe()
    # a coil that moved is reported, and refused with a limit
    bad = coils_head.copy()
    bad[2] += [0.01, 0, 0]
    fit = device_to_head_from_hpi(Points(coils_dev, "device"), Points(bad, "head"))
    assert np.argmax(fit.residuals_m) == 2
    with pytest.raises(GeometryError, match=r"residual .* exceeds max_residual_mm = 2"):
        device_to_head_from_hpi(Points(coils_dev, "device"), Points(bad, "head"), max_residual_mm=2)


def test_hpi_needs_three_non_collinear_coils_in_the_right_frames():
    two = np.array([[0.0, 0, 0], [0.05, 0, 0]])
    with pytest.raises(GeometryError, match="need at least 3"):
        device_to_head_from_hpi(Points(two, "device"), Points(two, "head"))
    line = np.array([[0.0, 0, 0], [0.05, 0, 0], [0.1, 0.0001, 0]])
    with pytest.raises(GeometryError, match="collinear"):
        device_to_head_from_hpi(Points(line, "device"), Points(line, "head"))
    tri = np.array([[0.0, 0, 0], [0.05, 0, 0], [0, 0.05, 0]])
    with pytest.raises(FrameError, match="'device' and 'head'"):
        device_to_head_from_hpi(Points(tri, "head"), Points(tri, "device"))
