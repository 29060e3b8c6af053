"""Self-intersection and crossing checks of triangle meshes (rtsource.geometry.intersect)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from rtsource.errors import FrameError, GeometryError
from rtsource.geometry import Mesh, check_nested
from rtsource.geometry.icosphere import icosphere
from rtsource.geometry.intersect import (
    _segments_hit_triangles,
    check_no_crossing,
    check_self_intersection,
    self_intersections,
    surface_crossings,
)


def sphere(radius, order=2, name="sphere", frame="head"):
    v, t = icosphere(order)
    return Mesh(v * radius, t, frame, "m", name)


def segment_twin(p, q, a, b, c):
    """Segment-triangle intersection by solving p + s (q - p) = a + u (b - a) + w (c - a)."""
    out = []
    for pi, qi, ai, bi, ci in zip(p, q, a, b, c):
        m = np.column_stack([qi - pi, ai - bi, ai - ci])
        if abs(np.linalg.det(m)) < 1e-15:
            out.append(False)
            continue
        s, u, w = np.linalg.solve(m, ai - pi)
        out.append(bool(0 <= s <= 1 and u >= 0 and w >= 0 and u + w <= 1))
    return np.array(out)


def test_segment_triangle_test_matches_twin():
    rng = np.random.default_rng(0)
    p, q, a, b, c = (rng.normal(size=(2000, 3)) for _ in range(5))
    got = _segments_hit_triangles(p, q, a, b, c)
    np.testing.assert_array_equal(got, segment_twin(p, q, a, b, c))
    assert 50 < got.sum() < 1950  # both outcomes exercised


def test_clean_surfaces_pass():
    from rtsource.anatomy.template import load_template

    for order in (0, 2, 3):
        assert len(self_intersections(sphere(0.08, order))) == 0
    s = load_template(3).surfaces
    for mesh in s.as_tuple():
        check_self_intersection(mesh)
    check_no_crossing(s.inner_skull, s.outer_skull)
    check_no_crossing(s.outer_skull, s.scalp)


def test_spike_through_the_surface_is_found_and_located():
    v, t = icosphere(3)
    pts = np.array(v * 0.08)
    pts[0] = -1.3 * pts[0]  # pulled through the centre and out the other side
    mesh = Mesh(pts, t, "head", "m", "inner_skull")
    pairs = self_intersections(mesh)
    assert len(pairs) > 0 and np.all(pairs[:, 0] < pairs[:, 1])
    # every reported pair involves a triangle of the displaced vertex
    touched = np.flatnonzero((t == 0).any(axis=1))
    assert np.all(np.isin(pairs, touched).any(axis=1))
    with pytest.raises(GeometryError, match=r"mesh 'inner_skull' intersects itself: \d+ pairs of triangles cross, the first is triangles \d+ and \d+ near \(.*\) mm in the 'head' frame"):
        check_self_intersection(mesh)


def test_fold_and_bow_tie_between_neighbours_are_found():
    # two triangles sharing an edge, folded flat onto each other
    fold = Mesh([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0.2, 0.3, 0]], [[0, 1, 2], [1, 0, 3]], "head")
    assert fold.triangle_normals() @ [0, 0, 1] @ np.ones(2) == pytest.approx(0)  # opposite normals
    assert len(self_intersections(fold)) == 1
    # an open hinge is fine
    hinge = Mesh([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0.3, -0.5, 0.4]], [[0, 1, 2], [1, 0, 3]], "head")
    assert len(self_intersections(hinge)) == 0
    # two triangles sharing one vertex, the second piercing the first
    bow = Mesh([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0.4, 0.4, -0.5], [0.4, 0.4, 0.5]], [[0, 1, 2], [0, 3, 4]], "head")
    assert len(self_intersections(bow)) == 1
    apart = Mesh([[0, 0, 0], [1, 0, 0], [0, 1, 0], [-0.4, -0.4, -0.5], [-0.4, -0.4, 0.5]], [[0, 1, 2], [0, 3, 4]], "head")
    assert len(self_intersections(apart)) == 0


def test_crossing_surfaces_with_nested_vertices_are_found():
    vo, to = icosphere(2)
    vi, ti = icosphere(3)
    rot = Rotation.from_rotvec([0, np.deg2rad(4), 0]).as_matrix()
    inner = Mesh((vi @ rot.T) * 0.080, ti, "head", "m", "inner_skull")
    dented = np.array(vo * 0.085)
    dented[0] = vo[0] * 0.0798  # the outer surface dips through the inner one between its vertices
    outer = Mesh(dented, to, "head", "m", "outer_skull")
    check_nested(inner, outer)  # the vertex test does not see it
    pairs = surface_crossings(inner, outer)
    assert len(pairs) > 0
    assert np.all((to[pairs[:, 1]] == 0).any(axis=1))  # only triangles of the dented vertex
    with pytest.raises(GeometryError, match=r"surfaces 'inner_skull' and 'outer_skull' cross each other: \d+ pairs"):
        check_no_crossing(inner, outer)
    assert len(surface_crossings(sphere(0.08), sphere(0.085))) == 0
    assert len(surface_crossings(sphere(0.08), sphere(0.08, order=3))) > 0  # same sphere, other mesh


def test_frames_must_match():
    with pytest.raises(FrameError):
        surface_crossings(sphere(0.08), sphere(0.09, frame="template"))
