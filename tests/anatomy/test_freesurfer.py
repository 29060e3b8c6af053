"""FreeSurfer surface and annotation files, read natively, checked against nibabel."""

from __future__ import annotations

import numpy as np
import pytest

from rtsource.anatomy.freesurfer import Annotation, read_annot, read_surface, write_annot, write_surface
from rtsource.errors import GeometryError
from rtsource.geometry import Frame, Mesh
from rtsource.geometry.icosphere import icosphere

nib = pytest.importorskip("nibabel", reason="nibabel is the reference reader: pip install rtsource[test]")


def sphere_mesh(radius_m=0.08, order=3):
    v, t = icosphere(order)
    return Mesh(v * radius_m, t, Frame.MRI, "m", "sphere")


def test_surface_written_by_nibabel_is_read(tmp_path):
    m = sphere_mesh()
    path = tmp_path / "lh.white"
    nib.freesurfer.write_geometry(str(path), (m.vertices_m * 1e3).astype(np.float32), m.triangles.astype(np.int32), create_stamp="created by test")
    got = read_surface(path)
    assert got.frame == Frame.MRI and got.unit == "m" and got.name == "lh.white"
    assert np.allclose(got.vertices_m, m.vertices_m, atol=1e-9) and np.array_equal(got.triangles, m.triangles)
    got.check_closed()
    assert got.signed_volume() > 0


def test_surface_written_here_is_read_by_nibabel(tmp_path):
    m = sphere_mesh()
    path = write_surface(tmp_path / "inner_skull.surf", m)
    coords, faces = nib.freesurfer.read_geometry(str(path))
    assert np.allclose(coords * 1e-3, m.vertices_m, atol=1e-9) and np.array_equal(faces, m.triangles)


def test_annot_round_trips_through_nibabel(tmp_path):
    rng = np.random.default_rng(0)
    n = 642
    names = ["unknown", "bankssts", "precentral", "insula"]
    ctab = np.array([[25, 5, 25, 0], [25, 100, 40, 0], [60, 20, 220, 0], [255, 192, 32, 0]])
    labels = rng.integers(-1, len(names), n)
    path = tmp_path / "lh.aparc.annot"
    nib_ctab = np.c_[ctab, ctab[:, 0] + ctab[:, 1] * 256 + ctab[:, 2] * 65536]
    nib.freesurfer.write_annot(str(path), labels, nib_ctab, names, fill_ctab=False)
    got = read_annot(path)
    assert got.names == tuple(names) and np.array_equal(got.colors, ctab)
    assert np.array_equal(got.labels, labels)
    mine = write_annot(tmp_path / "rh.aparc.annot", Annotation(labels, tuple(names), ctab))
    theirs_labels, theirs_ctab, theirs_names = nib.freesurfer.read_annot(str(mine))
    assert [x.decode() for x in theirs_names] == names and np.array_equal(theirs_labels, labels)
    assert np.array_equal(theirs_ctab[:, :4], ctab)


def test_damaged_files_are_refused_with_the_path(tmp_path):
    path = write_surface(tmp_path / "lh.pial", sphere_mesh())
    cut = tmp_path / "cut.pial"
    cut.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(GeometryError, match="cut.pial.*needs"):
        read_surface(cut)
    with pytest.raises(GeometryError, match="not a FreeSurfer triangle surface"):
        read_surface(_junk(tmp_path))
    quad = tmp_path / "quad"
    quad.write_bytes(b"\xff\xff\xff" + bytes(20))
    with pytest.raises(GeometryError, match="quad-format"):
        read_surface(quad)
    huge = tmp_path / "huge.annot"
    huge.write_bytes((2**30).to_bytes(4, "big"))
    with pytest.raises(GeometryError, match="vertex count"):
        read_annot(huge)


def _junk(tmp_path):
    p = tmp_path / "junk"
    p.write_bytes(b"hello world, not a surface")
    return p
