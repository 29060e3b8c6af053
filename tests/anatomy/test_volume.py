"""Volume-grid and discrete source spaces (rtsource.anatomy.volume)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rtsource.anatomy.template import load_template, template_source_space
from rtsource.anatomy.volume import (
    FREE_NORMAL,
    discrete_source_space,
    orientation_is_free,
    read_source_points_csv,
    volume_source_space,
)
from rtsource.errors import FrameError, GeometryError
from rtsource.geometry import Frame, Mesh, signed_distance
from rtsource.geometry.icosphere import icosphere

CENTER = np.array([0.004, -0.012, 0.02])
RADIUS = 0.07


def sphere_mesh(frame="template", radius=RADIUS, center=CENTER, order=4):
    v, t = icosphere(order)
    return Mesh(center + radius * v, t, frame, "m", "inner_skull")


# ---------------------------------------------------------------- grid


def test_template_grid_defaults():
    space = volume_source_space()
    skull = load_template().surfaces.inner_skull
    assert space.frame == Frame.TEMPLATE and space.name == "volume-7mm"
    assert 4000 < space.n_sources < 7000
    assert signed_distance(space.positions_m, skull).max() <= -0.005 + 1e-12
    # points on the integer lattice of the spacing (MNE-Python's alignment)
    k = space.positions_m / 0.007
    assert np.allclose(k, np.round(k), atol=1e-9)
    assert np.all(space.hemisphere == -1) and np.all(space.areas_m2 == 0)
    assert np.allclose(space.normals, FREE_NORMAL) and orientation_is_free(space)
    assert not orientation_is_free(template_source_space("ico4"))


def test_grid_in_a_sphere_is_exact():
    """Kept points are exactly the lattice points at least mindist inside the sphere."""
    mesh = sphere_mesh("mri")
    spacing, mindist = 0.006, 0.004
    space = volume_source_space(mesh, spacing_m=spacing, mindist_m=mindist)
    assert space.frame == Frame.MRI
    r = np.linalg.norm(space.positions_m - CENTER, axis=1)
    # the icosphere's faces lie inside the sphere by < 0.1 mm (order 4, R = 70 mm)
    assert r.max() <= RADIUS - mindist + 1e-4
    axes = [np.arange(math.floor((c - RADIUS) / spacing), math.ceil((c + RADIUS) / spacing) + 1) * spacing for c in CENTER]
    lattice = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    rl = np.linalg.norm(lattice - CENTER, axis=1)
    must = lattice[rl < RADIUS - mindist - 1e-4]
    assert len(must) <= space.n_sources <= np.sum(rl <= RADIUS - mindist + 1e-4)
    found = {tuple(np.round(p / spacing).astype(int)) for p in space.positions_m}
    assert all(tuple(np.round(p / spacing).astype(int)) in found for p in must)
    # the count matches the volume
    expected = 4 / 3 * math.pi * (RADIUS - mindist) ** 3 / spacing**3
    assert abs(space.n_sources / expected - 1) < 0.03


def test_exclusion_around_a_centre():
    mesh = sphere_mesh()
    space = volume_source_space(mesh, spacing_m=0.005, mindist_m=0.0, exclude_m=0.02)
    assert np.linalg.norm(space.positions_m - CENTER, axis=1).min() >= 0.02 - 1e-9
    other = volume_source_space(mesh, spacing_m=0.005, exclude_m=0.01, exclude_center_m=[0.0, 0.0, 0.0])
    assert np.linalg.norm(other.positions_m, axis=1).min() >= 0.01


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"spacing_m": 0.0005}, r"spacing_m = 0.0005 is out of range \[0.002, 0.03\] m"),
        ({"spacing_m": 0.05}, "out of range"),
        ({"spacing_m": 7}, "did you mean 7 mm = 0.007 m"),
        ({"spacing_m": float("nan")}, "must be finite"),
        ({"spacing_m": "7mm"}, "must be a number"),
        ({"mindist_m": -0.001}, r"mindist_m = -0.001 must be in \[0, 0.03\]"),
        ({"exclude_m": 0.5}, "exclude_m"),
    ],
)
def test_grid_argument_errors(kwargs, pattern):
    with pytest.raises(GeometryError, match=pattern):
        volume_source_space(sphere_mesh(), **kwargs)


def test_grid_refuses_open_mesh_and_empty_result():
    v, t = icosphere(2)
    open_mesh = Mesh(CENTER + RADIUS * v, t[1:], "template", "m", "inner_skull")
    with pytest.raises(GeometryError, match="open"):
        volume_source_space(open_mesh)
    tiny = sphere_mesh(radius=0.006)
    with pytest.raises(GeometryError, match="no grid point of spacing 10 mm"):
        volume_source_space(tiny, spacing_m=0.01, mindist_m=0.005)


def test_grid_works_with_the_meg_forward():
    from rtsource.forward.head_model import SphereHead
    from rtsource.forward.leadfield import make_leadfield
    from rtsource.sensors.meg import generic_meg_array

    space = volume_source_space(spacing_m=0.02)
    lf = make_leadfield(space, generic_meg_array().pick(["MEG010M", "MEG050G1"]), SphereHead(), use_cache=False).leadfield
    assert lf.gain.shape == (2, 3 * space.n_sources) and np.all(np.isfinite(lf.gain))


# ---------------------------------------------------------------- discrete points


def test_discrete_points_with_and_without_normals():
    pos = np.array([[0.0, 0.0, 0.03], [-0.03, -0.02, 0.05]])
    free = discrete_source_space(pos)
    assert free.n_sources == 2 and orientation_is_free(free) and free.frame == Frame.TEMPLATE
    normals = np.array([[0, 0, 1.0], [0.6, 0.0, 0.8]])
    fixed = discrete_source_space(pos, normals * 1.0004, name="mine")
    assert np.allclose(np.linalg.norm(fixed.normals, axis=1), 1) and not orientation_is_free(fixed)
    with pytest.raises(GeometryError, match=r"point 1: normal .* has length 1.414"):
        discrete_source_space(pos, [[0, 0, 1.0], [1, 1, 0]])
    with pytest.raises(GeometryError, match=r"outside 'inner_skull'; the worst is point 1 at \[0.0, 0.0, 150.0\] mm.*mm outside"):
        discrete_source_space([[0.0, 0.0, 0.03], [0.0, 0.0, 0.15]])
    with pytest.raises(GeometryError, match="no inner skull for the 'mri' frame"):
        discrete_source_space(pos, frame="mri")
    assert discrete_source_space(pos, frame="mri", check_inside=False).frame == Frame.MRI
    with pytest.raises(FrameError, match="'template'.*'mri'|'mri'.*'template'"):
        discrete_source_space(pos, frame="mri", inner_skull=load_template().surfaces.inner_skull)
    with pytest.raises(GeometryError, match="shape"):
        discrete_source_space(np.zeros((2, 2)))


def test_csv_reader(tmp_path):
    path = tmp_path / "points.csv"
    path.write_text(
        "# my regions of interest\n"
        "name,x,y,z,nx,ny,nz\n"
        "\n"
        "V1_left, -10.0, -95.0, 5.0, 0, -1, 0\n"
        "M1_hand,-38,-22,58,-0.6,0,0.8\n"
    )
    space, names = read_source_points_csv(path)
    assert names == ("V1_left", "M1_hand")
    assert np.allclose(space.positions_m, [[-0.010, -0.095, 0.005], [-0.038, -0.022, 0.058]])
    assert np.allclose(space.normals, [[0, -1, 0], [-0.6, 0, 0.8]])
    plain = tmp_path / "plain.csv"
    plain.write_text("a,0,0,30\nb,10,-20,40\n")
    space, names = read_source_points_csv(plain)
    assert names == ("a", "b") and orientation_is_free(space)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("a,0,0,30\nb,1,2\n", r"bad.csv line 2: expected 4 fields .* got 3: 'b,1,2'"),
        ("a,0,0,30\nb,1,two,3\n", r"line 2: fields 2-4 must be numbers"),
        ("a,0,0,30\nb,1,2,3,0,0,1\n", r"line 2: has a normal but line 1 has none"),
        ("a,0,0,30\n# x\na,1,2,3\n", r"line 3: name 'a' already used on line 1"),
        ("a,0,0,30,0,0,2\n", r"'a, line 1'.*length 2"),
        ("a,0,0,30\nfar,0,0,160\n", r"outside 'inner_skull'.*'far, line 2'"),
        ("# nothing\n", "no source points found"),
        (",0,0,30\n", "line 1: the name"),
        ("a,0,0,nan\n", "line 1: non-finite"),
    ],
)
def test_csv_errors_give_the_line(tmp_path, text, pattern):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(GeometryError, match=pattern):
        read_source_points_csv(path)
