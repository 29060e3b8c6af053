"""Frames, units, points, meshes and projection (rtsource.geometry)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from rtsource.errors import FrameError, GeometryError, UnitError
from rtsource.geometry import (
    Frame,
    Mesh,
    Points,
    Transform,
    check_nested,
    convert_length,
    estimate_length_unit,
    parse_signal_unit,
    project_onto_mesh,
    signed_distance,
)
from rtsource.geometry.icosphere import icosphere, n_vertices


def sphere_mesh(radius=0.09, order=3, frame="head", name="sphere"):
    v, t = icosphere(order)
    return Mesh(v * radius, t, frame, "m", name)


# ---- units ----
def test_length_conversion_round_trip():
    x = np.array([[1.0, 2.0, 3.0]])
    assert np.allclose(convert_length(x, "mm", "m"), x * 1e-3)
    assert np.allclose(convert_length(convert_length(x, "cm", "mm"), "mm", "cm"), x)
    with pytest.raises(UnitError, match="'inch'"):
        convert_length(x, "inch", "m")


@pytest.mark.parametrize("unit,factor", [("m", 1.0), ("cm", 100.0), ("mm", 1000.0)])
def test_unit_guess_from_extent_warns(unit, factor, caplog):
    rng = np.random.default_rng(0)
    head = rng.normal(size=(64, 3))
    head = 0.09 * head / np.linalg.norm(head, axis=1, keepdims=True)
    with caplog.at_level(logging.WARNING):
        assert estimate_length_unit(head * factor) == unit
    assert "guessed" in caplog.text


def test_unit_guess_refuses_degenerate_points():
    with pytest.raises(UnitError, match="coincide"):
        estimate_length_unit(np.ones((5, 3)))


@pytest.mark.parametrize(
    "text,canonical,factor",
    [("uV", "uV", 1e-6), ("microvolts", "uV", 1e-6), ("µV", "uV", 1e-6), ("V", "V", 1.0), ("mV", "mV", 1e-3), ("fT", "fT", 1e-15), ("T/m", "T/m", 1.0)],
)
def test_signal_units(text, canonical, factor):
    c, _, f = parse_signal_unit(text)
    assert c == canonical and f == pytest.approx(factor)


def test_unknown_signal_unit_names_it():
    with pytest.raises(UnitError, match="'furlong'"):
        parse_signal_unit("furlong")


# ---- frames and transforms ----
def test_transform_compose_and_inverse():
    rot = Rotation.from_euler("xyz", [10, -20, 30], degrees=True).as_matrix()
    a = Transform.from_rotation_translation("head", "mri", rot, [0.01, -0.02, 0.03])
    b = Transform.from_rotation_translation("mri", "template", rot.T, [0.0, 0.01, 0.0], scale=1.1)
    pts = np.random.default_rng(1).normal(size=(10, 3)) * 0.05
    chained = a.then(b)
    assert chained.from_frame == Frame.HEAD and chained.to_frame == Frame.TEMPLATE
    assert np.allclose(chained.apply_m(pts), b.apply_m(a.apply_m(pts)))
    assert np.allclose(a.inverse().apply_m(a.apply_m(pts)), pts)
    with pytest.raises(FrameError, match="'mri'.*'head'|'head'.*'mri'"):
        a.then(a)


def test_points_refuse_wrong_frame_transform():
    p = Points(np.zeros((2, 3)), "head")
    t = Transform.identity("mri", "template")
    with pytest.raises(FrameError) as exc:
        p.transformed(t)
    assert "'head'" in str(exc.value) and "'mri'" in str(exc.value)


def test_points_units_and_frames():
    p = Points([[10.0, 0, 0]], "head", "mm", ("Cz",))
    assert np.allclose(p.positions_m, [[0.01, 0, 0]])
    t = Transform.from_rotation_translation("head", "mri", np.eye(3), [0.0, 0.0, 0.01])
    q = p.transformed(t)
    assert q.unit == "mm" and np.allclose(q.positions, [[10.0, 0, 10.0]])
    assert q.to_unit("m").positions[0, 2] == pytest.approx(0.01)
    with pytest.raises(GeometryError):
        Points([[np.nan, 0, 0]], "head")
    with pytest.raises(GeometryError, match="already"):
        p.with_frame("mri")
    assert Points([[1.0, 2, 3]], "unknown").with_frame("head").frame == Frame.HEAD


# ---- meshes ----
def test_icosphere_orders_nest_and_are_closed():
    for k in range(5):
        v, t = icosphere(k)
        assert len(v) == n_vertices(k)
        Mesh(v, t, "head").check_closed()
    assert np.allclose(icosphere(3)[0], icosphere(4)[0][:642])


def test_mesh_area_volume_normals():
    m = sphere_mesh(order=4)
    r = 0.09
    assert m.triangle_areas().sum() == pytest.approx(4 * np.pi * r**2, rel=2e-3)
    assert m.signed_volume() == pytest.approx(4 / 3 * np.pi * r**3, rel=3e-3)
    assert m.vertex_areas().sum() == pytest.approx(m.triangle_areas().sum())
    radial = m.vertices / np.linalg.norm(m.vertices, axis=1, keepdims=True)
    assert np.min(np.einsum("ij,ij->i", m.vertex_normals(), radial)) > 0.999


def test_open_and_inverted_meshes_are_refused():
    m = sphere_mesh()
    with pytest.raises(GeometryError, match="open"):
        Mesh(m.vertices, m.triangles[1:], "head", name="scalp").check_closed()
    with pytest.raises(GeometryError, match="inward"):
        Mesh(m.vertices, m.triangles[:, ::-1], "head", name="scalp").check_closed()
    with pytest.raises(GeometryError, match="indices"):
        Mesh(m.vertices, m.triangles + len(m.vertices), "head")


def test_contains_and_signed_distance_agree():
    m = sphere_mesh(order=3)
    rng = np.random.default_rng(3)
    p = rng.uniform(-0.12, 0.12, size=(300, 3))
    r = np.linalg.norm(p, axis=1)
    p = p[np.abs(r - 0.09) > 0.003]  # away from the faceted surface
    inside = np.linalg.norm(p, axis=1) < 0.09
    assert np.array_equal(m.contains(p), inside)
    assert np.array_equal(signed_distance(p, m) < 0, inside)


def test_nesting_check():
    inner, outer = sphere_mesh(0.08, name="inner"), sphere_mesh(0.09, name="outer")
    check_nested(inner, outer, min_gap_m=0.005)
    with pytest.raises(GeometryError, match="not nested"):
        check_nested(outer, inner)
    with pytest.raises(GeometryError, match="within"):
        check_nested(inner, outer, min_gap_m=0.02)
    with pytest.raises(FrameError):
        check_nested(sphere_mesh(0.08, frame="mri"), outer)


def test_projection_onto_mesh_matches_brute_force():
    m = sphere_mesh(order=2)
    rng = np.random.default_rng(4)
    p = rng.normal(size=(50, 3))
    p = p / np.linalg.norm(p, axis=1, keepdims=True) * rng.uniform(0.07, 0.11, size=(50, 1))
    proj = project_onto_mesh(p, m)
    # brute force over a dense sampling of every triangle
    v, t = m.vertices, m.triangles
    bary = np.array([(a, b, 1 - a - b) for a in np.linspace(0, 1, 41) for b in np.linspace(0, 1, 41) if a + b <= 1 + 1e-12])
    samples = np.einsum("sk,tkj->tsj", bary, v[t]).reshape(-1, 3)
    brute = np.min(np.linalg.norm(samples[None] - p[:, None], axis=2), axis=1)
    assert np.all(proj.distances_m <= brute + 1e-9)
    # the sampled grid is within (edge length / 40) of every true closest point
    edge = np.max(np.linalg.norm(v[t[:, 0]] - v[t[:, 1]], axis=1))
    assert np.allclose(proj.distances_m, brute, atol=edge / 40)
    assert np.allclose(np.linalg.norm(proj.points_m - p, axis=1), proj.distances_m)
    assert np.allclose(proj.weights.sum(1), 1) and proj.weights.min() >= -1e-12
