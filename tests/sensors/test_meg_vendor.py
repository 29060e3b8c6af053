"""Vendor MEG coils, gradient compensation and arrays read from channel info (rtsource.sensors.meg)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

from rtsource.anatomy.source_space import SourceSpace
from rtsource.errors import ChannelError, FrameError
from rtsource.forward.head_model import SphereHead
from rtsource.forward.leadfield import make_leadfield
from rtsource.forward.meg_sphere import meg_sphere_leadfield
from rtsource.geometry import Frame, Transform
from rtsource.sensors.meg import (
    ACCURACIES,
    GradientCompensation,
    MegArray,
    coil_registry,
    make_meg_array,
    meg_array_from_info,
    vendor_coil,
    vendor_coil_definition,
)

ROOT = Path(__file__).resolve().parents[2]

# The systems issue #15 names, by FIFF coil type id.
SYSTEM_COILS = {
    3012: "planar_grad", 3013: "planar_grad", 3014: "planar_grad",  # Vectorview / TRIUX gradiometers
    3022: "mag", 3023: "mag", 3024: "mag",  # Vectorview / TRIUX magnetometers
    5001: "axial_grad", 5002: "mag", 5003: "axial_grad", 5004: "axial_grad",  # CTF + references
    6001: "axial_grad", 6002: "mag",  # KIT/Yokogawa/Ricoh + reference
    4001: "mag", 4002: "axial_grad",  # Magnes
    8001: "mag", 8002: "mag", 8101: "mag", 8201: "mag",  # QuSpin, FieldLine, Kernel OPMs
}  # fmt: skip


def rotation(axis, angle):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


# ---------------------------------------------------------------- the registry


@pytest.mark.parametrize("cid,kind", sorted(SYSTEM_COILS.items()))
def test_registry_has_every_system_coil_at_every_accuracy(cid, kind):
    coil = vendor_coil(cid)
    assert coil.kind == kind
    assert coil.is_reference == (cid in (5002, 5003, 5004, 6002))
    for acc in ACCURACIES:
        d = vendor_coil_definition(cid, acc)
        assert d.kind == kind and d.accuracy == acc
        assert d.points_m.shape == (len(d.weights), 3) and d.normals.shape == d.points_m.shape
        assert np.allclose(np.linalg.norm(d.normals, axis=1), 1.0)
        w = d.weights
        if kind == "mag":
            # a loop: weights integrate to one (4 printed decimals in the table)
            assert abs(w.sum() - 1.0) < 2e-3
        elif kind == "planar_grad":
            # a difference quotient along x: sum w = 0, sum w x = 1 (T/m)
            assert abs(w.sum()) < 1e-9 * np.abs(w).max()
            assert abs(w @ d.points_m[:, 0] - 1.0) < 2e-3
        else:
            # an axial gradiometer: pick-up loop minus compensation loop one baseline away
            assert abs(w.sum()) < 1e-3
            if cid in (5001, 6001, 4002):
                assert abs(-(w @ d.points_m[:, 2]) - coil.baseline_m) < 1e-3 * coil.baseline_m + 2e-6
    # accuracy grows: more (or as many) points
    n = [len(vendor_coil_definition(cid, a).weights) for a in ACCURACIES]
    assert n[0] <= n[1] <= n[2]


def test_registry_facts_against_the_published_table():
    """A few numbers read off coil_def.dat by hand (Vectorview T1 gradiometer, CTF 5001)."""
    g = vendor_coil_definition(3012, "normal")
    assert np.allclose(np.abs(g.points_m[:, :2]), [[0.0084, 0.006713]] * 4)
    assert np.allclose(g.points_m[:, 2], 0.0003)
    assert np.allclose(np.abs(g.weights), 29.7619)
    m = vendor_coil_definition(3024, "point")
    assert m.points_m.tolist() == [[0.0, 0.0, 0.0]] and m.weights.tolist() == [1.0]
    m = vendor_coil_definition(3024, "normal")  # 21 mm T3 loop: 4 points at +-5.25 mm, 0.3 mm up
    assert np.allclose(np.abs(m.points_m), [[0.00525, 0.00525, 0.0003]] * 4) and np.allclose(m.weights, 0.25)
    a = vendor_coil_definition(5001, "point")
    assert np.allclose(a.points_m[:, 2], [0.0, 0.05]) and a.weights.tolist() == [1.0, -1.0]


def test_unknown_coil_type_and_compensation_bits():
    with pytest.raises(ChannelError, match="coil type 1234 has no definition; known types: .*3012"):
        vendor_coil(1234)
    with pytest.raises(ChannelError, match="integer FIFF coil type"):
        vendor_coil("CTF")
    with pytest.raises(ChannelError, match="accuracy 'fine'"):
        vendor_coil_definition(3012, "fine")
    # the compensation grade lives in the upper 16 bits and is not part of the type
    assert vendor_coil(5001 | (3 << 16)) is vendor_coil(5001)


@pytest.mark.peers
def test_shipped_table_equals_the_generator_output():
    """The JSON table is what tools/make_coil_table.py makes of MNE-Python's coil_def.dat."""
    mne = pytest.importorskip("mne")
    spec = importlib.util.spec_from_file_location("make_coil_table", ROOT / "tools" / "make_coil_table.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    src = Path(mne.__file__).parent / "data" / "coil_def.dat"
    parsed = tool.parse(src.read_text())
    shipped = json.loads((ROOT / "rtsource" / "sensors" / "meg" / "data" / "coil_definitions.json").read_text())
    assert "BSD-3-Clause" in shipped["attribution"]
    assert parsed == shipped["coils"]
    assert len(coil_registry()) == len({c["coil_type"] for c in parsed})


# ---------------------------------------------------------------- arrays with vendor coils


def ctf_like(n=6, accuracy="normal", dev_head_t=None, compensation=True):
    """n CTF axial gradiometers on a cap, and 3 magnetometer + 2 gradiometer references above."""
    th = np.linspace(0.2, 1.0, n)
    ph = np.linspace(0, 2 * np.pi, n, endpoint=False)
    normals = np.c_[np.sin(th) * np.cos(ph), np.sin(th) * np.sin(ph), np.cos(th)]
    pos = 0.11 * normals
    names = [f"M{i:02d}" for i in range(n)]
    arr = make_meg_array(names, "axial_grad", pos, normals, frame="device", accuracy=accuracy, dev_head_t=dev_head_t, coil_types=[5001] * n)
    refs = make_meg_array(
        ["BG1", "BG2", "BG3", "G11", "G12"], ["mag", "mag", "mag", "axial_grad", "axial_grad"],
        np.array([[0.0, 0.0, 0.20], [0.01, 0, 0.21], [0, 0.01, 0.21], [0.02, 0.02, 0.19], [-0.02, 0.02, 0.19]]),
        np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0, 0, 1.0], [1.0, 0, 0]]),
        frame="device", accuracy=accuracy, dev_head_t=dev_head_t, coil_types=[5002, 5002, 5002, 5003, 5004], name="refs",
    )  # fmt: skip
    if not compensation:
        return arr, refs
    c = np.random.default_rng(3).uniform(-0.5, 0.5, (n, 5))
    return MegArray(arr.ch_names, arr.ch_types, arr.positions_m, arr.rotations, arr.frame, accuracy, dev_head_t, "ctf", arr.coil_types, GradientCompensation(3, c, refs)), refs


def test_vendor_coils_place_the_table_points():
    arr, _ = ctf_like(accuracy="accurate", compensation=False)
    d = vendor_coil_definition(5001, "accurate")
    k = len(d.weights)
    assert arr.n_points == arr.n_channels * k
    r = arr.rotations[2]
    assert np.allclose(arr.points_m[2 * k : 3 * k], d.points_m @ r.T + arr.positions_m[2])
    assert np.allclose(arr.weights[:k], d.weights)
    assert "coil types [5001]" in repr(arr)
    # the generic axial gradiometer is a different coil
    generic = make_meg_array(arr.ch_names, "axial_grad", arr.positions_m, arr.normals, frame="device", accuracy="accurate")
    assert not np.allclose(generic.points_m, arr.points_m)  # 9 mm vs 8 mm loop radius


def test_coil_type_must_fit_the_channel_kind():
    with pytest.raises(ChannelError, match=r"channel 0 \('A'\) has ch_type 'mag' but coil type 3012 .* is a 'planar_grad'"):
        make_meg_array(["A"], "mag", [[0, 0, 0.1]], [[0, 0, 1.0]], frame="device", coil_types=[3012])
    with pytest.raises(ChannelError, match="2 coil_types for 1 channels"):
        make_meg_array(["A"], "mag", [[0, 0, 0.1]], [[0, 0, 1.0]], frame="device", coil_types=[3024, 3024])


def test_compensation_validation():
    arr, refs = ctf_like(compensation=False)
    with pytest.raises(ChannelError, match=r"shape \(n_channels, 5\)"):
        GradientCompensation(3, np.zeros((6, 4)), refs)
    with pytest.raises(ChannelError, match="grade = 0 must be an integer >= 1"):
        GradientCompensation(0, np.zeros((6, 5)), refs)
    with pytest.raises(ChannelError, match="references must be a MegArray, got ndarray"):
        GradientCompensation(3, np.zeros((6, 5)), np.zeros((5, 3)))
    with pytest.raises(ChannelError, match="non-finite"):
        GradientCompensation(3, np.full((6, 5), np.nan), refs)
    with pytest.raises(ChannelError, match="7 rows for 6 channels"):
        make_meg_array(arr.ch_names, "axial_grad", arr.positions_m, arr.normals, frame="device", compensation=GradientCompensation(3, np.zeros((7, 5)), refs))
    moved = refs.transformed(Transform(Frame.DEVICE, Frame.HEAD, np.eye(4)))
    with pytest.raises(FrameError, match="reference sensors are in 'head'"):
        make_meg_array(arr.ch_names, "axial_grad", arr.positions_m, arr.normals, frame="device", compensation=GradientCompensation(3, np.zeros((6, 5)), moved))


def test_compensate_data():
    arr, refs = ctf_like()
    comp = arr.compensation
    rng = np.random.default_rng(0)
    s, r = rng.normal(size=(6, 50)), rng.normal(size=(5, 50))
    out = comp.compensate(s, r)
    assert np.allclose(out, s - comp.matrix @ r)
    assert np.allclose(out[:, 7], [s[i, 7] - sum(comp.matrix[i, j] * r[j, 7] for j in range(5)) for i in range(6)])
    with pytest.raises(ChannelError, match="do not fit"):
        comp.compensate(s, r[:4])


def test_array_operations_carry_coil_types_and_references():
    m = np.eye(4)
    m[:3, :3] = rotation([0, 1, 1], 0.2)
    m[:3, 3] = [0.0, 0.01, 0.04]
    t = Transform(Frame.DEVICE, Frame.HEAD, m)
    arr, refs = ctf_like(dev_head_t=t)
    picked = arr.pick(["M04", "M01"])
    assert picked.coil_types == (5001, 5001)
    assert np.array_equal(picked.compensation.matrix, arr.compensation.matrix[[4, 1]])
    head = arr.to_head()
    assert head.frame == Frame.HEAD and head.compensation.references.frame == Frame.HEAD
    assert np.allclose(head.compensation.references.points_m, refs.points_m @ m[:3, :3].T + m[:3, 3])
    back = head.in_frame(Frame.DEVICE)
    assert np.allclose(back.compensation.references.positions_m, refs.positions_m)
    acc = arr.with_accuracy("point")
    assert acc.compensation.references.accuracy == "point" and acc.compensation.references.n_points == 3 + 2 * 2
    assert arr.without_compensation().compensation is None
    t2 = Transform(Frame.DEVICE, Frame.HEAD, np.eye(4))
    re = head.with_dev_head_t(t2)
    assert re.frame == Frame.DEVICE and re.compensation.references.dev_head_t is t2
    assert np.allclose(re.compensation.references.positions_m, refs.positions_m)


# ---------------------------------------------------------------- the forward: G - C G_ref


def _sources(n=12, seed=1):
    rng = np.random.default_rng(seed)
    rr = rng.normal(size=(n, 3))
    rr = 0.06 * rr / np.linalg.norm(rr, axis=1, keepdims=True) * rng.uniform(0.3, 1.0, (n, 1))
    return SourceSpace(rr, np.tile([0, 0, 1.0], (n, 1)), np.zeros(n), -np.ones(n, dtype=np.int8), Frame.DEVICE, "test")


def test_compensated_leadfield_is_g_minus_c_gref():
    arr, refs = ctf_like(accuracy="accurate")
    src = _sources()
    head = SphereHead(meg_origin_m=np.zeros(3), check_inside=False)
    got = make_leadfield(src, arr, head, use_cache=False).leadfield
    g = meg_sphere_leadfield(arr, src.positions_m, np.zeros(3))
    g_ref = meg_sphere_leadfield(refs, src.positions_m, np.zeros(3))
    want = g - arr.compensation.matrix @ g_ref
    assert np.allclose(got.gain, want, rtol=1e-12, atol=0)
    assert got.model["compensation_grade"] == 3 and got.model["n_compensation_references"] == 5
    # the references matter: without them the gain differs
    plain = make_leadfield(src, arr.without_compensation(), head, use_cache=False).leadfield.gain
    assert np.abs(plain - got.gain).max() > 1e-3 * np.abs(got.gain).max()


def test_compensated_leadfield_cache_tells_grades_apart(tmp_path, monkeypatch):
    monkeypatch.setenv("RTSOURCE_CACHE", str(tmp_path))
    arr, _ = ctf_like()
    src = _sources()
    head = SphereHead(meg_origin_m=np.zeros(3), check_inside=False)
    a = make_leadfield(src, arr, head).leadfield.gain
    b = make_leadfield(src, arr.without_compensation(), head).leadfield.gain
    assert not np.allclose(a, b)
    assert np.array_equal(make_leadfield(src, arr, head).leadfield.gain, a)


# ---------------------------------------------------------------- channel info (no MNE needed)


def _info(coil_type=3024, unit=112, kind=1, loc=None, comps=(), extra=()):
    loc = np.r_[0, 0, 0.1, 1, 0, 0, 0, 1, 0, 0, 0, 1] if loc is None else loc
    ch = dict(ch_name="MEG 0111", kind=kind, coil_type=coil_type, unit=unit, loc=np.asarray(loc, float), coord_frame=1)
    return dict(chs=[ch, *extra], dev_head_t=dict(trans=np.eye(4), **{"from": 1, "to": 4}), comps=list(comps))


def test_info_reader_errors_name_the_channel():
    assert meg_array_from_info(_info()).coil_types == (3024,)
    with pytest.raises(ChannelError, match=r"'MEG 0111': unit 201 does not fit its coil .* expected 112 \(T\)"):
        meg_array_from_info(_info(unit=201))
    with pytest.raises(ChannelError, match="'MEG 0111' has no sensor position"):
        meg_array_from_info(_info(loc=np.zeros(12)))
    with pytest.raises(ChannelError, match="not orthonormal"):
        meg_array_from_info(_info(loc=np.r_[0, 0, 0.1, 1, 0, 0, 1, 0, 0, 0, 0, 1]))
    with pytest.raises(ChannelError, match="has no MEG channels"):
        meg_array_from_info(_info(kind=2))
    with pytest.raises(ChannelError, match="grade 3 but info\\['comps'\\] holds no matrix of that grade"):
        meg_array_from_info(_info(coil_type=5001 | (3 << 16), unit=112))
    with pytest.raises(ChannelError, match="channel 'MEG 0111': MEG coil type 77 has no definition"):
        meg_array_from_info(_info(coil_type=77))


def test_info_reader_orthonormalises_float32_frames():
    rot = rotation([1, 2, 0.5], 0.7)
    loc = np.r_[0.01, 0.02, 0.1, rot.T.ravel()].astype(np.float32)
    arr = meg_array_from_info(_info(coil_type=3012, unit=201, loc=loc))
    assert np.allclose(arr.rotations[0], rot, atol=1e-6)
    assert np.abs(arr.rotations[0].T @ arr.rotations[0] - np.eye(3)).max() < 1e-12


def test_info_reader_builds_the_compensation_by_name():
    ref = dict(ch_name="BG1", kind=301, coil_type=5002, unit=112, loc=np.r_[0, 0, 0.2, 1, 0, 0, 0, 1, 0, 0, 0, 1.0], coord_frame=1)
    ref2 = dict(ref, ch_name="G11", coil_type=5003)
    other = dict(ch_name="MEG 0112", kind=1, coil_type=5001 | (3 << 16), unit=112, loc=np.r_[0.01, 0, 0.1, 1, 0, 0, 0, 1, 0, 0, 0, 1.0], coord_frame=1)
    comp = dict(kind=3, data=dict(row_names=["MEG 0112"], col_names=["G11", "BG1"], data=np.array([[0.25, -0.5]])))
    arr = meg_array_from_info(_info(coil_type=5001 | (3 << 16), comps=[comp], extra=[ref, other, ref2]))
    assert arr.ch_names == ("MEG 0111", "MEG 0112") and arr.coil_types == (5001, 5001)
    c = arr.compensation
    assert c.grade == 3 and c.references.ch_names == ("BG1", "G11") and c.references.coil_types == (5002, 5003)
    # rows by name (an unlisted channel stays uncompensated), columns by reference name
    assert c.matrix.tolist() == [[0.0, 0.0], [-0.5, 0.25]]


# ---------------------------------------------------------------- the JSON file keeps vendor coils


def test_json_round_trip_keeps_coil_types_and_compensation(tmp_path):
    from rtsource.sensors.meg import read_meg_array, write_meg_array

    m = np.eye(4)
    m[:3, 3] = [0.0, 0.01, 0.04]
    arr, refs = ctf_like(accuracy="accurate", dev_head_t=Transform(Frame.DEVICE, Frame.HEAD, m))
    write_meg_array(arr, tmp_path / "ctf.json")
    back = read_meg_array(tmp_path / "ctf.json")
    assert back.coil_types == arr.coil_types and back.accuracy == "accurate"
    assert np.allclose(back.points_m, arr.points_m, atol=1e-9)
    c = back.compensation
    assert c.grade == 3 and c.references.coil_types == refs.coil_types and c.references.ch_names == refs.ch_names
    assert np.array_equal(c.matrix, arr.compensation.matrix)
    assert np.allclose(c.references.points_m, refs.points_m, atol=1e-9)
    assert c.references.dev_head_t is not None


def test_json_coil_type_errors(tmp_path):
    from rtsource.sensors.meg import meg_array_from_dict, meg_array_to_dict

    arr, _ = ctf_like()
    doc = meg_array_to_dict(arr)
    del doc["channels"][2]["coil_type"]
    with pytest.raises(ChannelError, match=r"channels\[2\] \('M02'\) has no 'coil_type' but others do"):
        meg_array_from_dict(doc)
    doc = meg_array_to_dict(arr)
    doc["channels"][1]["coil_type"] = "5001"
    with pytest.raises(ChannelError, match=r"channels\[1\] \('M01'\): 'coil_type' must be an integer"):
        meg_array_from_dict(doc)
    doc = meg_array_to_dict(arr)
    doc["compensation"]["matrix"] = doc["compensation"]["matrix"][:-1]
    with pytest.raises(ChannelError, match="5 rows for 6 channels"):
        meg_array_from_dict(doc)
    doc = meg_array_to_dict(arr)
    del doc["compensation"]["grade"]
    with pytest.raises(ChannelError, match="'compensation' must be an object with exactly the keys"):
        meg_array_from_dict(doc)


def test_compensated_bem_leadfield_is_g_minus_c_gref():
    """The single-layer BEM applies the same compensation (same helper, the BEM's own G)."""
    bem = pytest.importorskip("rtsource.forward.bem")
    from rtsource.forward.bem.meg import meg_bem_leadfield
    from rtsource.forward.head_model import BemHead

    arr, refs = ctf_like()
    model = bem.concentric_sphere_model((0.081,), (0.33,), order=3, center_m=np.zeros(3), frame="device", names=("inner_skull",))
    src = _sources(n=6)
    got = make_leadfield(src, arr, BemHead.from_model(model), use_cache=False).leadfield
    g = meg_bem_leadfield(model, arr, src.positions_m, use_cache=False)
    g_ref = meg_bem_leadfield(model, refs, src.positions_m, use_cache=False)
    assert got.model["compensation_grade"] == 3
    assert np.allclose(got.gain, g - arr.compensation.matrix @ g_ref, rtol=1e-10, atol=0)
    assert not np.allclose(got.gain, g, rtol=1e-3, atol=0)


def test_stream_metadata_names_the_vendor_coil():
    from rtsource.sensors.meg import channel_metadata

    arr, _ = ctf_like()
    meta = channel_metadata(arr)
    assert meta[0]["coil_type"] == "5001" and meta[0]["type"] == "MAG" and meta[0]["unit"] == "T"
    generic = make_meg_array(["A"], "mag", [[0, 0, 0.1]], [[0, 0, 1.0]], frame="device")
    assert "coil_type" not in channel_metadata(generic)[0]
