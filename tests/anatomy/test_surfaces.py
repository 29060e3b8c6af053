"""A user's cortical surfaces as a source space (rtsource.anatomy.surfaces).

The surfaces are written by the tests as real GIFTI and FreeSurfer files: bumpy ellipsoid
"hemispheres" made by deforming an icosphere in FreeSurfer's orientation, whose undeformed
vertices form the matching sphere (so, like ``lh.sphere.reg``, every surface vertex has a
sphere position). Vertex order is shuffled so nothing relies on icosahedral ordering.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

nib = pytest.importorskip("nibabel")

from rtsource.anatomy.surfaces import (  # noqa: E402
    _farthest_points,
    cortical_source_space,
    freesurfer_icosphere,
    read_surface,
)
from rtsource.errors import GeometryError  # noqa: E402
from rtsource.geometry import Frame, Mesh  # noqa: E402
from rtsource.geometry.icosphere import n_vertices  # noqa: E402

ORDER = 4  # 2562 vertices per hemisphere


def hemisphere(side: int, order: int = ORDER, seed: int = 0):
    """(surface vertices mm, sphere vertices mm, triangles), shuffled consistently."""
    v, t = freesurfer_icosphere(order)
    bump = 1 + 0.06 * np.sin(5 * v[:, 0] + side) * np.cos(4 * v[:, 1]) + 0.04 * np.sin(7 * v[:, 2])
    surf = v * np.array([32.0, 70.0, 55.0]) * bump[:, None] + [side * 36.0, -15.0, 12.0]
    sphere = 100.0 * v
    perm = np.random.default_rng(seed + side + 1).permutation(len(v))
    inverse = np.empty_like(perm)
    inverse[perm] = np.arange(len(v))
    return surf[perm], sphere[perm], inverse[t]


def write_gifti(path, verts, tris, *, with_triangles=True):
    arrays = [nib.gifti.GiftiDataArray(verts.astype(np.float32), intent="NIFTI_INTENT_POINTSET", datatype="NIFTI_TYPE_FLOAT32")]
    if with_triangles:
        arrays.append(nib.gifti.GiftiDataArray(tris.astype(np.int32), intent="NIFTI_INTENT_TRIANGLE", datatype="NIFTI_TYPE_INT32"))
    nib.save(nib.gifti.GiftiImage(darrays=arrays), str(path))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("surf")
    out = {}
    for side, hemi in ((-1, "lh"), (1, "rh")):
        surf, sphere, tris = hemisphere(side)
        nib.freesurfer.write_geometry(str(d / f"{hemi}.white"), surf, tris)
        nib.freesurfer.write_geometry(str(d / f"{hemi}.sphere.reg"), sphere, tris)
        write_gifti(d / f"{hemi}.white.gii", surf, tris)
        out[hemi] = (surf, sphere, tris)
    out["dir"] = d
    return out


# ---------------------------------------------------------------- reading


def test_gifti_and_freesurfer_read_the_same_mesh(files):
    d = files["dir"]
    fs = read_surface(d / "lh.white")
    gi = read_surface(d / "lh.white.gii", frame="template")
    assert fs.frame == Frame.MRI and gi.frame == Frame.TEMPLATE and fs.unit == "m"
    assert np.allclose(fs.vertices_m, files["lh"][0] * 1e-3, atol=1e-8)
    assert np.allclose(gi.vertices_m, fs.vertices_m, atol=1e-8)  # float32 in GIFTI
    assert np.array_equal(gi.triangles, fs.triangles)
    fs.check_closed()


def test_read_errors(tmp_path, files):
    with pytest.raises(GeometryError, match="does not exist"):
        read_surface(tmp_path / "lh.nothing")
    junk = tmp_path / "lh.junk"
    junk.write_bytes(b"\x00\x01 not a surface")
    with pytest.raises(GeometryError, match="cannot read surface .*lh.junk"):
        read_surface(junk)
    points_only = tmp_path / "points.gii"
    write_gifti(points_only, files["lh"][0], files["lh"][2], with_triangles=False)
    with pytest.raises(GeometryError, match="one POINTSET and one TRIANGLE .* found 1 and 0"):
        read_surface(points_only)


# ---------------------------------------------------------------- full resolution


def test_full_resolution_source_space(files):
    d = files["dir"]
    space = cortical_source_space(d / "lh.white", d / "rh.white.gii", frame="mri")
    n = n_vertices(ORDER)
    assert space.n_sources == 2 * n and space.frame == Frame.MRI
    assert np.array_equal(space.hemisphere, np.r_[np.zeros(n), np.ones(n)])
    assert space.triangles.shape == (4 * (n - 2), 3) and space.triangles[len(space.triangles) // 2 :].min() == n
    # normals of a convex-ish closed surface point away from its centre
    for h in (0, 1):
        sel = space.hemisphere == h
        p = space.positions_m[sel]
        assert np.all(np.einsum("ij,ij->i", space.normals[sel], p - p.mean(0)) > 0)
    # areas sum to the surface area
    lh = read_surface(d / "lh.white")
    rh = read_surface(d / "rh.white")
    assert math.isclose(space.areas_m2.sum(), lh.triangle_areas().sum() + rh.triangle_areas().sum(), rel_tol=1e-6)


def test_inward_winding_is_flipped(files, caplog):
    surf, _, tris = files["lh"]
    inward = Mesh(surf * 1e-3, tris[:, ::-1], "mri", "m", "lh")
    with caplog.at_level(logging.WARNING, logger="rtsource.anatomy.surfaces"):
        space = cortical_source_space(lh=inward, frame="mri")
    assert "flipping" in caplog.text
    p = space.positions_m
    assert np.all(np.einsum("ij,ij->i", space.normals, p - p.mean(0)) > 0)
    with pytest.raises(GeometryError, match="'mri' frame but frame='template'"):
        cortical_source_space(lh=inward, frame="template")


# ---------------------------------------------------------------- icosahedral subset


def test_freesurfer_icosphere_orientation():
    v, t = freesurfer_icosphere(0)
    for target in ([0, 0, 1.0], [2 / math.sqrt(5), 0, 1 / math.sqrt(5)]):
        assert np.min(np.linalg.norm(v - target, axis=1)) < 1e-12
    v4, _ = freesurfer_icosphere(4)
    assert np.allclose(v4[:12], v)  # lower orders are prefixes, as in FreeSurfer


def test_ico_subset(files):
    d = files["dir"]
    space = cortical_source_space(
        d / "lh.white", d / "rh.white", ico=3, lh_sphere=d / "lh.sphere.reg", rh_sphere=d / "rh.sphere.reg"
    )
    n3 = n_vertices(3)
    assert space.n_sources == 2 * n3 and space.name == "cortex-ico3"
    assert space.triangles.shape == (2 * 20 * 4**3, 3)
    ico3 = freesurfer_icosphere(3)[0] * 100.0
    for h, hemi in ((0, "lh"), (1, "rh")):
        surf, sphere, _ = files[hemi]
        kept = np.array([np.argmin(np.linalg.norm(surf * 1e-3 - p, axis=1)) for p in space.positions_m[space.hemisphere == h]])
        # the kept vertices are exactly those at the order-3 icosahedron's positions on the sphere
        got = np.sort(np.round(sphere[kept], 6), axis=0)
        assert np.allclose(got, np.sort(np.round(ico3, 6), axis=0), atol=1e-5)
    total = sum(read_surface(d / f"{h}.white").triangle_areas().sum() for h in ("lh", "rh"))
    assert math.isclose(space.areas_m2.sum(), total, rel_tol=1e-6)
    # each patch is about 1/642 of its hemisphere (regular cells on the sphere)
    assert np.median(space.areas_m2) == pytest.approx(total / space.n_sources, rel=0.35)


def test_ico_errors(files, tmp_path):
    d = files["dir"]
    with pytest.raises(GeometryError, match="ico=4 needs the lh sphere"):
        cortical_source_space(d / "lh.white", ico=4)
    with pytest.raises(GeometryError, match="not a sphere centred at the origin"):
        cortical_source_space(d / "lh.white", ico=3, lh_sphere=d / "lh.white")
    with pytest.raises(GeometryError, match="too coarse or distorted for ico5"):
        cortical_source_space(d / "lh.white", ico=5, lh_sphere=d / "lh.sphere.reg")
    small, small_sphere, small_tris = hemisphere(-1, order=3)
    nib.freesurfer.write_geometry(str(tmp_path / "lh.sphere"), small_sphere, small_tris)
    with pytest.raises(GeometryError, match="the sphere has 642 vertices but the surface 2562"):
        cortical_source_space(d / "lh.white", ico=3, lh_sphere=tmp_path / "lh.sphere")
    with pytest.raises(GeometryError, match="ico = 9 must be an icosahedron order"):
        cortical_source_space(d / "lh.white", ico=9, lh_sphere=d / "lh.sphere.reg")
    with pytest.raises(GeometryError, match="either ico=3 or n_sources=100"):
        cortical_source_space(d / "lh.white", ico=3, n_sources=100)
    with pytest.raises(GeometryError, match="at least one hemisphere"):
        cortical_source_space()


# ---------------------------------------------------------------- target-count decimation


def farthest_points_twin(points, n):
    """Plain farthest-point sampling over all points at every step."""
    c = points.mean(0)
    chosen = [int(np.argmax(np.linalg.norm(points - c, axis=1)))]
    dist = np.linalg.norm(points - points[chosen[0]], axis=1)
    for _ in range(1, n):
        j = int(np.argmax(dist))
        chosen.append(j)
        dist = np.minimum(dist, np.linalg.norm(points - points[j], axis=1))
    return np.sort(chosen)


def test_farthest_point_sampling_matches_twin(files):
    pts = files["lh"][0] * 1e-3
    assert np.array_equal(_farthest_points(pts, 300), farthest_points_twin(pts, 300))


def test_decimation_to_a_target_count(files):
    d = files["dir"]
    space = cortical_source_space(d / "lh.white.gii", d / "rh.white.gii", n_sources=1000)
    assert space.n_sources == 1000
    assert abs(int(np.sum(space.hemisphere == 0)) - 500) <= 25  # split by area (nearly mirror images)
    total = sum(read_surface(d / f"{h}.white").triangle_areas().sum() for h in ("lh", "rh"))
    assert math.isclose(space.areas_m2.sum(), total, rel_tol=1e-6)
    assert space.areas_m2.min() > 0
    # evenly spread: nearest-neighbour distances within a factor ~2 of each other
    from scipy.spatial import cKDTree

    nn, _ = cKDTree(space.positions_m).query(space.positions_m, k=2)
    assert nn[:, 1].min() > 0.4 * np.median(nn[:, 1])
    # the clustered triangulation covers the sources and stays within each hemisphere
    assert len(space.triangles) > 1.5 * space.n_sources
    assert np.all(space.hemisphere[space.triangles].min(1) == space.hemisphere[space.triangles].max(1))
    # kept normals are the dense surface's normals at those vertices
    full = cortical_source_space(d / "lh.white.gii", d / "rh.white.gii")
    idx = cKDTree(full.positions_m).query(space.positions_m)[1]
    assert np.allclose(space.normals, full.normals[idx])
    with pytest.raises(GeometryError, match=r"n_sources = 3 must be an integer in \[8, 5124\]"):
        cortical_source_space(d / "lh.white", d / "rh.white", n_sources=3)


# ---------------------------------------------------------------- peer: real fsaverage5


@pytest.mark.peers
def test_fsaverage5_ico4_equals_the_template():
    """nilearn's fsaverage5 with its spheres gives the embedded template's ico4 exactly."""
    nilearn = pytest.importorskip("nilearn")
    from pathlib import Path

    from rtsource.anatomy.template import template_source_space

    d = Path(nilearn.__file__).parent / "datasets" / "data" / "fsaverage5"
    space = cortical_source_space(
        d / "white_left.gii.gz", d / "white_right.gii.gz", frame="template", ico=4,
        lh_sphere=d / "sphere_left.gii.gz", rh_sphere=d / "sphere_right.gii.gz",
    )
    ref = template_source_space("ico4")
    assert np.allclose(space.positions_m, ref.positions_m, atol=1e-7)
    assert np.einsum("ij,ij->i", space.normals, ref.normals).min() > 1 - 1e-6
    assert np.allclose(space.areas_m2, ref.areas_m2, rtol=1e-5)
    key = lambda t: {tuple(sorted(x)) for x in t.tolist()}  # noqa: E731
    assert key(space.triangles) == key(ref.triangles)
