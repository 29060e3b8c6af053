"""MEG coils, sensor arrays, the JSON format and the generic helmet (rtsource.sensors.meg)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from rtsource.errors import ChannelError, FrameError, GeometryError
from rtsource.geometry import Frame, Points, Transform, signed_distance
from rtsource.sensors.meg import (
    ACCURACIES,
    AXIAL_BASELINE_M,
    AXIAL_RADIUS_M,
    COIL_TYPES,
    GENERIC_GAP_M,
    MAG_SIDE_M,
    PLANAR_BASELINE_M,
    MegArray,
    coil_definition,
    generic_meg_array,
    make_meg_array,
    meg_array_to_dict,
    read_meg_array,
    write_meg_array,
)


def rotation(axis, angle):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def small_array(frame="device", accuracy="normal", dev_head_t=None):
    """Three coils of each kind at tilted orientations."""
    pos = np.array([[0.0, 0.0, 0.11], [0.05, 0.02, 0.09], [-0.04, 0.06, 0.08], [0.0, -0.1, 0.05]])
    rots = [rotation([1, 2, 3], 0.3), rotation([0, 1, 0], 0.6), rotation([1, 0, 0], -0.4), rotation([1, 1, 0], 1.1)]
    normals = np.array([r[:, 2] for r in rots])
    xs = np.array([r[:, 0] for r in rots])
    return make_meg_array(
        ["M1", "G1", "A1", "G2"],
        ["mag", "planar_grad", "axial_grad", "planar_grad"],
        pos,
        normals,
        xs,
        frame=frame,
        accuracy=accuracy,
        dev_head_t=dev_head_t,
        name="small",
    )


# ---------------------------------------------------------------- coil definitions


@pytest.mark.parametrize("accuracy", ACCURACIES)
def test_coil_moments(accuracy):
    """Weights integrate what each coil measures: mean field, gradient, difference."""
    mag = coil_definition("mag", accuracy)
    assert mag.unit == "T" and math.isclose(mag.weights.sum(), 1.0)
    grad = coil_definition("planar_grad", accuracy)
    assert grad.unit == "T/m" and abs(grad.weights.sum()) < 1e-12
    # a field linear along x gives its slope; linear along y or constant gives nothing
    assert math.isclose(grad.weights @ grad.points_m[:, 0], 1.0)
    assert abs(grad.weights @ grad.points_m[:, 1]) < 1e-12
    axial = coil_definition("axial_grad", accuracy)
    assert axial.unit == "T" and abs(axial.weights.sum()) < 1e-12
    near = axial.points_m[:, 2] == 0
    assert math.isclose(axial.weights[near].sum(), 1.0) and np.allclose(axial.points_m[~near, 2], AXIAL_BASELINE_M)
    for c in (mag, grad, axial):
        assert np.allclose(c.normals, [0, 0, 1])
        assert not c.points_m.flags.writeable


def test_coil_cubature_exactness():
    """Each level integrates the polynomials it claims to over the loop area."""
    a = MAG_SIDE_M / 2
    normal = coil_definition("mag", "normal")
    assert math.isclose(normal.weights @ normal.points_m[:, 0] ** 2, a * a / 3)  # mean x^2 over square
    acc = coil_definition("mag", "accurate")
    assert math.isclose(acc.weights @ acc.points_m[:, 0] ** 4, a**4 / 5)
    assert math.isclose(acc.weights @ (acc.points_m[:, 0] ** 2 * acc.points_m[:, 1] ** 2), a**4 / 9)
    r = AXIAL_RADIUS_M
    for level, power, mean in (("normal", 2, r**2 / 2), ("accurate", 4, r**4 / 3)):
        c = coil_definition("axial_grad", level)
        near = c.points_m[:, 2] == 0
        rr = np.linalg.norm(c.points_m[near, :2], axis=1)
        assert math.isclose(c.weights[near] @ rr**power, mean)  # mean r^p over the disk
    assert len(coil_definition("mag", "point").weights) == 1
    g = coil_definition("planar_grad", "normal")
    assert np.allclose(np.sort(g.points_m[:, 0]), [-PLANAR_BASELINE_M / 2, PLANAR_BASELINE_M / 2])
    assert np.allclose(np.abs(g.weights), 1 / PLANAR_BASELINE_M)


def test_unknown_coil_type_and_accuracy():
    with pytest.raises(ChannelError, match="'squid'.*mag, planar_grad"):
        coil_definition("squid")
    with pytest.raises(ChannelError, match="accuracy 'best'"):
        coil_definition("mag", "best")
    assert set(COIL_TYPES) == {"mag", "planar_grad", "axial_grad", "eeg"}


# ---------------------------------------------------------------- arrays


def test_points_are_placed_by_position_and_rotation():
    arr = small_array()
    assert arr.n_channels == 4 and arr.ch_units == ("T", "T/m", "T", "T/m")
    assert arr.whitening_groups == ("mag", "grad", "mag", "grad")
    assert arr.lsl_types == ("MAG", "GRAD", "MAG", "GRAD")
    for c in range(arr.n_channels):
        coil = coil_definition(arr.ch_types[c], arr.accuracy)
        sel = arr.point_channel == c
        r = arr.rotations[c]
        assert np.allclose(arr.points_m[sel], arr.positions_m[c] + coil.points_m @ r.T)
        assert np.allclose(arr.point_normals[sel], r[:, 2])
        assert np.allclose(arr.weights[sel], coil.weights)
    # the planar gradiometer's two points straddle its centre along its x axis
    g = arr.points_m[arr.point_channel == 1]
    assert np.allclose(g[0] - g[1], PLANAR_BASELINE_M * arr.rotations[1][:, 0])
    for a in ("positions_m", "rotations", "points_m", "weights", "point_channel"):
        assert not getattr(arr, a).flags.writeable


def test_channel_signals_match_a_loop():
    arr = small_array(accuracy="accurate")
    rng = np.random.default_rng(1)
    f = rng.normal(size=(arr.n_points, 5))
    expected = np.zeros((arr.n_channels, 5))
    for i in range(arr.n_points):
        expected[arr.point_channel[i]] += arr.weights[i] * f[i]
    assert np.allclose(arr.channel_signals(f), expected, rtol=1e-13, atol=0)
    assert np.allclose(arr.channel_signals(f[:, 0]), expected[:, 0])
    with pytest.raises(ChannelError, match=f"shape \\({arr.n_points},\\)"):
        arr.channel_signals(f[:-1])


def test_bad_orientations_name_the_channel():
    pos = np.zeros((2, 3)) + [0, 0, 0.1]
    with pytest.raises(GeometryError, match=r"channel 1 \('B'\).*length 2.*unit vectors"):
        make_meg_array(["A", "B"], "mag", pos, [[0, 0, 1], [0, 0, 2]], frame="device")
    with pytest.raises(GeometryError, match=r"channel 0 \('A'\) is a planar gradiometer but has no x_axis"):
        make_meg_array(["A", "B"], "planar_grad", pos, [[0, 0, 1], [0, 0, 1]], frame="device")
    with pytest.raises(GeometryError, match=r"'B'.*not perpendicular"):
        make_meg_array(["A", "B"], "planar_grad", pos, [[0, 0, 1], [0, 0, 1]], [[1, 0, 0], [0.6, 0, 0.8]], frame="device")
    with pytest.raises(ChannelError, match=r"channel 1 \('B'\) has coil type 'gradiometer'"):
        make_meg_array(["A", "B"], ["mag", "gradiometer"], pos, [[0, 0, 1], [0, 0, 1]], frame="device")
    with pytest.raises(ChannelError, match="'A' is used by channels 0 and 1"):
        make_meg_array(["A", "A"], "mag", pos, [[0, 0, 1], [0, 0, 1]], frame="device")
    with pytest.raises(FrameError, match="frame="):
        make_meg_array(["A", "B"], "mag", pos, [[0, 0, 1], [0, 0, 1]])
    rot = np.tile(np.eye(3), (2, 1, 1))
    rot[1] = np.diag([1, 1, -1])  # a reflection
    with pytest.raises(GeometryError, match=r"'B'.*not a proper rotation"):
        MegArray(("A", "B"), ("mag", "mag"), pos, rot, Frame.DEVICE)


def test_points_input_carries_frame_and_unit():
    pts = Points([[0, 0, 110.0]], Frame.HEAD, "mm", ("X",))
    arr = make_meg_array(["X"], "mag", pts, [[0, 0, 1]])
    assert arr.frame == Frame.HEAD and np.allclose(arr.positions_m, [[0, 0, 0.11]])
    with pytest.raises(FrameError, match="'head'.*'device'"):
        make_meg_array(["X"], "mag", pts, [[0, 0, 1]], frame="device")


def test_transform_frames_and_rigidity():
    rot = rotation([0.2, -1, 0.5], 0.4)
    t = Transform.from_rotation_translation(Frame.DEVICE, Frame.HEAD, rot, [0.001, -0.01, 0.04])
    arr = small_array(dev_head_t=t)
    head = arr.to_head()
    assert head.frame == Frame.HEAD and head.dev_head_t is t
    # moving the array = moving its integration points
    assert np.allclose(head.points_m, t.apply_m(arr.points_m))
    assert np.allclose(head.point_normals, arr.point_normals @ rot.T)
    back = head.in_frame("device")
    assert np.allclose(back.points_m, arr.points_m) and back.frame == Frame.DEVICE
    assert arr.in_frame("head").frame == Frame.HEAD and head.to_head() is head
    with pytest.raises(FrameError, match="'head'.*transform's input.*'device'|'device'.*'head'"):
        head.transformed(t)
    with pytest.raises(FrameError, match="'template' is needed"):
        arr.in_frame("template")
    with pytest.raises(FrameError, match="no device->head transform"):
        small_array().to_head()
    scaled = Transform.from_rotation_translation(Frame.DEVICE, Frame.HEAD, np.eye(3), np.zeros(3), scale=1.1)
    with pytest.raises(FrameError, match="cannot be scaled"):
        arr.transformed(scaled)
    with pytest.raises(FrameError, match="must map the 'device' frame"):
        small_array(dev_head_t=Transform.identity("head", "template"))
    # with_dev_head_t re-expresses the same sensors with another transform
    t2 = Transform.from_rotation_translation(Frame.DEVICE, Frame.HEAD, np.eye(3), [0, 0, 0.03])
    moved = head.with_dev_head_t(t2)
    assert moved.frame == Frame.DEVICE and np.allclose(moved.points_m, arr.points_m)


def test_pick_and_accuracy():
    arr = small_array()
    sub = arr.pick(["G2", "M1"])
    assert sub.ch_names == ("G2", "M1") and sub.ch_types == ("planar_grad", "mag")
    assert np.allclose(sub.positions_m[1], arr.positions_m[0])
    assert arr.pick_types("mag", "axial_grad").ch_names == ("M1", "A1")
    with pytest.raises(ChannelError, match="not in MEG array 'small': Q"):
        arr.pick(["Q"])
    assert arr.with_accuracy("point").n_points == 1 + 2 + 2 + 2
    assert arr.with_accuracy("accurate").n_points == 9 + 8 + 14 + 8


# ---------------------------------------------------------------- JSON


def test_json_round_trip(tmp_path):
    t = Transform.from_rotation_translation(Frame.DEVICE, Frame.HEAD, rotation([1, 0, 0], 0.1), [0, 0.01, 0.04])
    arr = small_array(dev_head_t=t, accuracy="accurate")
    for unit in ("mm", "m"):
        path = tmp_path / f"arr_{unit}.json"
        write_meg_array(arr, path, unit=unit)
        back = read_meg_array(path)
        assert back.ch_names == arr.ch_names and back.ch_types == arr.ch_types
        assert back.accuracy == "accurate" and back.frame == Frame.DEVICE
        assert np.allclose(back.positions_m, arr.positions_m, atol=1e-12)
        assert np.allclose(back.rotations, arr.rotations, atol=1e-10)
        assert np.allclose(back.dev_head_t.matrix, t.matrix, atol=1e-12)
    doc = json.loads((tmp_path / "arr_mm.json").read_text())
    assert doc["format"] == "rtsource-meg-array" and doc["unit"] == "mm"
    assert math.isclose(doc["channels"][0]["position"][2], 110.0)


def _doc(**channel_overrides):
    arr = small_array()
    doc = meg_array_to_dict(arr)
    doc["channels"][1].update(channel_overrides)
    return doc


@pytest.mark.parametrize(
    ("mutate", "error", "pattern"),
    [
        (lambda d: d["channels"][1].update(type="grad"), ChannelError, r"channels\[1\] \('G1'\): coil type 'grad'"),
        (lambda d: d["channels"][1].pop("normal"), ChannelError, r"channels\[1\] \('G1'\): 'normal' is missing"),
        (lambda d: d["channels"][1].update(normal=[0, 0, 3]), GeometryError, r"'G1'.*length 3"),
        (lambda d: d["channels"][1].update(position=[0, 1]), ChannelError, r"'G1'.*'position' must be a list of 3"),
        (lambda d: d["channels"][1].update({"x-axis": [1, 0, 0]}), ChannelError, r"'G1'.*unknown keys \['x-axis'\]"),
        (lambda d: d["channels"][1].pop("x_axis"), GeometryError, r"'G1'.*no x_axis"),
        (lambda d: d["channels"][2].update(name="G1"), ChannelError, r"\['G1'\] appear more than once"),
        (lambda d: d.update(format="other"), ChannelError, "'format' must be 'rtsource-meg-array'"),
        (lambda d: d.update(version=2), ChannelError, "'version' 2 is not supported"),
        (lambda d: d.pop("unit"), ChannelError, "'unit' is missing"),
        (lambda d: d.update(unit="inch"), ChannelError, "'inch' is not known"),
        (lambda d: d.update(frame="somewhere"), FrameError, "'somewhere' is not known"),
        (lambda d: d.update(channels=[]), ChannelError, "non-empty list"),
        (lambda d: d["channels"].append(7), ChannelError, r"channels\[4\] must be an object"),
    ],
)
def test_json_errors_name_the_entry(tmp_path, mutate, error, pattern):
    doc = meg_array_to_dict(small_array())
    mutate(doc)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(error, match=pattern):
        read_meg_array(path)


def test_json_syntax_error_has_line_number(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{\n "format": "rtsource-meg-array",\n "version": 1,,\n}')
    with pytest.raises(ChannelError, match="not valid JSON.*line 3"):
        read_meg_array(path)
    with pytest.raises(ChannelError, match="cannot read"):
        read_meg_array(tmp_path / "missing.json")


# ---------------------------------------------------------------- generic helmet


@pytest.fixture(scope="module")
def generic():
    return generic_meg_array()


def test_generic_array_layout(generic):
    assert generic.n_channels == 306 and generic.frame == Frame.DEVICE
    assert generic.ch_types.count("planar_grad") == 204 and generic.ch_types.count("mag") == 102
    assert generic.ch_names[:3] == ("MEG001G1", "MEG001G2", "MEG001M")
    assert generic.dev_head_t.from_frame == Frame.DEVICE and generic.dev_head_t.to_frame == Frame.TEMPLATE
    pos = generic.positions_m.reshape(102, 3, 3)
    rot = generic.rotations.reshape(102, 3, 3, 3)
    assert np.allclose(pos[:, 0], pos[:, 1]) and np.allclose(pos[:, 0], pos[:, 2])
    # the two gradiometers of a site measure orthogonal in-plane gradients
    assert np.allclose(np.einsum("si,si->s", rot[:, 0, :, 0], rot[:, 1, :, 0]), 0, atol=1e-12)
    assert np.allclose(rot[:, 0, :, 2], rot[:, 1, :, 2]) and np.allclose(rot[:, 0, :, 2], rot[:, 2, :, 2])
    # site spacing like a Vectorview (~30-35 mm between neighbours)
    from scipy.spatial import cKDTree

    d, _ = cKDTree(pos[:, 0]).query(pos[:, 0], k=2)
    assert 0.02 < d[:, 1].min() and np.median(d[:, 1]) < 0.04


def test_generic_helmet_sits_2_to_3_cm_from_the_template_scalp(generic):
    from rtsource.anatomy.template import load_template

    template = load_template()
    head = generic.to_head()
    sites = head.positions_m[2::3]
    gap = signed_distance(sites, template.surfaces.scalp)
    assert gap.min() > 0.02 and gap.max() < 0.03
    assert abs(np.median(gap) - GENERIC_GAP_M) < 0.002
    # every integration point is outside the scalp, normals point away from the head
    assert signed_distance(head.points_m, template.surfaces.scalp).min() > 0.015
    outward = np.einsum("ij,ij->i", head.normals, head.positions_m - template.scalp_center_m)
    assert outward.min() > 0
    # it covers the head above the ears: the scalp above the nasion is near some site, and the
    # helmet reaches lower at the back than at the front
    from scipy.spatial import cKDTree

    nas = template.fiducials.position_of("NAS")
    scalp = template.surfaces.scalp.vertices_m
    d, _ = cKDTree(sites).query(scalp[scalp[:, 2] > nas[2] + 0.01])
    assert d.max() < 0.05
    back = sites[sites[:, 1] < -0.09]
    front = sites[sites[:, 1] > 0.04]
    assert back[:, 2].min() < front[:, 2].min() - 0.03


def test_generic_accuracy_levels(generic):
    assert generic.n_points == 102 * 4 + 204 * 2
    assert generic_meg_array("point").n_points == 102 + 204 * 2
    assert generic_meg_array("accurate").n_points == 102 * 9 + 204 * 8


# ---------------------------------------------------------------- pipeline helpers


def test_pipeline_helpers(tmp_path, generic):
    from rtsource.sensors.meg import ad_hoc_noise_std, channel_metadata, load_meg_array

    assert load_meg_array("generic").n_channels == 306
    assert load_meg_array("generic", accuracy="point").accuracy == "point"
    path = tmp_path / "a.json"
    write_meg_array(small_array(), path)
    assert load_meg_array(path).ch_names == ("M1", "G1", "A1", "G2")
    assert load_meg_array(str(path), accuracy="accurate").accuracy == "accurate"
    meta = channel_metadata(generic.to_head())
    assert meta[0]["type"] == "GRAD" and meta[0]["unit"] == "T/m" and meta[2]["type"] == "MAG" and meta[2]["unit"] == "T"
    assert meta[0]["frame"] == "template" and len(meta[0]["normal"].split()) == 3
    assert math.isclose(float(meta[2]["Z"]), generic.to_head().positions_m[2, 2] * 1e3, abs_tol=1e-3)
    std = ad_hoc_noise_std(generic.whitening_groups[:3] + ("eeg",))
    assert np.allclose(std, [5e-13, 5e-13, 20e-15, 0.2e-6])
    with pytest.raises(ChannelError, match="'planar_grad'"):
        ad_hoc_noise_std(["planar_grad"])
