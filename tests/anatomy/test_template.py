"""The embedded template head (rtsource.anatomy)."""

from __future__ import annotations

import numpy as np
import pytest

from rtsource.anatomy.source_space import SourceSpace, nearest_source
from rtsource.anatomy.template import load_template, template_head_transform, template_source_space
from rtsource.errors import GeometryError
from rtsource.geometry import Frame, Mesh, check_nested, project_onto_mesh, signed_distance


def test_surfaces_closed_nested_outward():
    t = load_template()
    s = t.surfaces
    for m in s.as_tuple():
        assert m.frame == Frame.TEMPLATE and m.unit == "m"
        assert len(m.vertices) == 2562
        m.check_closed()
        assert m.signed_volume() > 0
    # nested with realistic layer thicknesses (>= 2 mm everywhere)
    check_nested(s.inner_skull, s.outer_skull, min_gap_m=0.002)
    check_nested(s.outer_skull, s.scalp, min_gap_m=0.002)
    # head-sized: scalp about 19 cm across, left-right
    extent = np.ptp(s.scalp.vertices[:, 0])
    assert 0.14 < extent < 0.20


def test_coarser_surfaces_are_the_same_heads():
    t3, t4 = load_template(3), load_template(4)
    assert len(t3.surfaces.scalp.vertices) == 642
    assert np.allclose(t3.surfaces.scalp.vertices, t4.surfaces.scalp.vertices[:642])
    with pytest.raises(GeometryError, match="bem_order"):
        load_template(5)


def test_cortex_inside_inner_skull():
    t = load_template()
    for surface in ("white", "mid", "pial"):
        src = template_source_space("ico5", surface)
        d = signed_distance(src.positions_m, t.surfaces.inner_skull)
        assert d.max() < 0, f"{surface}: {np.sum(d >= 0)} vertices outside the inner skull"


@pytest.mark.parametrize("spacing,n", [("ico4", 5124), ("ico5", 20484)])
def test_source_spaces(spacing, n):
    src = template_source_space(spacing)
    assert isinstance(src, SourceSpace) and src.n_sources == n
    assert src.frame == Frame.TEMPLATE
    assert np.allclose(np.linalg.norm(src.normals, axis=1), 1, atol=1e-6)
    assert set(np.unique(src.hemisphere)) == {0, 1}
    # left hemisphere on the left
    assert np.median(src.positions_m[src.hemisphere == 0, 0]) < 0 < np.median(src.positions_m[src.hemisphere == 1, 0])
    # total cortical area about the same at both densities (~1300 cm^2 for the white surface)
    assert 0.11 < src.areas_m2.sum() < 0.16
    # the triangulation is closed per hemisphere and its normals agree with the stored ones
    mesh = Mesh(src.positions_m, src.triangles, "template")
    agree = np.einsum("ij,ij->i", mesh.vertex_normals(), src.normals)
    assert np.median(agree) > 0.9
    labels = src.labels()
    assert labels[0] == "lh_00000" and labels[-1] == f"rh_{n // 2 - 1:05d}"


def test_ico4_is_a_subset_of_ico5():
    a, b = template_source_space("ico4"), template_source_space("ico5")
    idx, d = nearest_source(b, a.positions_m)
    assert np.all(d < 1e-9)


def test_fiducials_and_electrodes_on_scalp():
    t = load_template()
    assert t.fiducials.labels == ("NAS", "LPA", "RPA")
    nas, lpa, rpa = t.fiducials.positions_m
    assert nas[1] > 0.07 and lpa[0] < -0.07 and rpa[0] > 0.07
    d = project_onto_mesh(t.electrodes.positions_m, t.surfaces.scalp).distances_m
    assert d.max() < 1e-6
    assert len(t.electrodes) >= 330 and (t.electrode_level == 1).sum() == 21


def test_source_space_validation():
    with pytest.raises(GeometryError, match="unit"):
        SourceSpace(np.zeros((2, 3)), np.ones((2, 3)), np.ones(2), np.zeros(2), "template")
    with pytest.raises(GeometryError, match="spacing"):
        template_source_space("oct6")


def test_template_head_transform():
    t = template_head_transform()
    assert t.from_frame == Frame.TEMPLATE and t.to_frame == Frame.HEAD
    tf = load_template().fiducials
    head = tf.transformed(t).positions_m
    assert np.allclose(head[1, 1:], 0, atol=1e-12) and np.allclose(head[2, 1:], 0, atol=1e-12)
