"""A FreeSurfer subject directory written by the test: surfaces, ico source spaces, atlas labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rtsource.anatomy.atlas import load_atlas
from rtsource.anatomy.freesurfer import Annotation, write_annot, write_surface
from rtsource.anatomy.subject import open_subject, subject_head_surfaces, subject_region_labels, subject_source_space
from rtsource.anatomy.template import _cached_data, template_source_space
from rtsource.errors import GeometryError
from rtsource.geometry import Frame, Mesh
from rtsource.geometry.icosphere import icosphere


def fsaverage5_subject(tmp_path: Path) -> Path:
    """fsaverage5 as a FreeSurfer subject: the template's white/pial, nilearn's spheres, the atlas."""
    nilearn = pytest.importorskip("nilearn", reason="nilearn (the template's cortex source) is not installed")
    nib = pytest.importorskip("nibabel")
    d = _cached_data()
    root = tmp_path / "fsaverage5"
    (root / "surf").mkdir(parents=True)
    (root / "label").mkdir()
    fs5 = Path(nilearn.__file__).parent / "datasets" / "data" / "fsaverage5"
    atlas = load_atlas()
    n = len(d["cortex_white"]) // 2
    names = ["unknown"] + sorted({r[:-3] for r in atlas.region_names})
    colors = np.array([[i, 255 - i, (7 * i) % 256, 0] for i in range(len(names))])
    for h, (hemi, side) in enumerate((("lh", "left"), ("rh", "right"))):
        sl = slice(h * n, (h + 1) * n)
        all_tris = d["cortex_triangles"]
        tris = all_tris[((all_tris >= sl.start) & (all_tris < sl.stop)).all(1)] - sl.start
        for surf in ("white", "pial"):
            write_surface(root / "surf" / f"{hemi}.{surf}", Mesh(d[f"cortex_{surf}"][sl].astype(float), tris, Frame.MRI, "m", surf))
        sphere = np.asarray(nib.load(str(fs5 / f"sphere_{side}.gii.gz")).darrays[0].data, float)
        write_surface(root / "surf" / f"{hemi}.sphere", Mesh(sphere * 1e-3, tris, Frame.MRI, "m", "sphere"))
        lab = atlas.labels[sl]
        idx = np.array([names.index(atlas.region_names[k][:-3]) if k >= 0 else 0 for k in lab])
        write_annot(root / "label" / f"{hemi}.aparc.annot", Annotation(idx, tuple(names), colors))
    return root


def test_fsaverage5_as_a_subject_gives_the_template_source_space_and_atlas(tmp_path):
    root = fsaverage5_subject(tmp_path)
    s = open_subject(root.parent, root.name)
    space, vertno = subject_source_space(s, "ico4")
    ref = template_source_space("ico4")
    assert space.frame == Frame.MRI and space.n_sources == ref.n_sources == 5124
    assert np.array_equal(vertno[0], np.arange(2562)) and np.array_equal(vertno[1], np.arange(2562))
    assert np.allclose(space.positions_m, ref.positions_m, atol=1e-6)
    assert np.allclose(space.normals, ref.normals, atol=1e-3)
    assert np.allclose(space.areas_m2, ref.areas_m2, rtol=1e-3)
    names, labels = subject_region_labels(s, vertno)
    atlas = load_atlas()
    assert sorted(names) == sorted(atlas.region_names)
    ours = [names[k] if k >= 0 else None for k in labels]
    theirs = [atlas.region_names[k] if k >= 0 else None for k in atlas.labels_for(ref)]
    assert ours == theirs


def test_bem_surfaces_are_read_checked_and_nested(tmp_path):
    root = tmp_path / "sphere"
    (root / "bem" / "watershed").mkdir(parents=True)
    v, t = icosphere(3)
    for name, r in (("inner_skull", 0.081), ("outer_skull", 0.085)):
        write_surface(root / "bem" / f"{name}.surf", Mesh(v * r, t, Frame.MRI, "m", name))
    write_surface(root / "bem" / "watershed" / "sphere_outer_skin_surface", Mesh(v * 0.09, t, Frame.MRI, "m", "skin"))
    s = open_subject(tmp_path, "sphere")
    surfaces = subject_head_surfaces(s)
    radii = [np.linalg.norm(m.vertices_m, axis=1).mean() for m in surfaces.as_tuple()]
    assert np.allclose(radii, [0.09, 0.085, 0.081]) and surfaces.scalp.frame == Frame.MRI
    write_surface(root / "bem" / "outer_skull.surf", Mesh(v * 0.095, t, Frame.MRI, "m", "outer_skull"))
    with pytest.raises(GeometryError):
        subject_head_surfaces(s)
    with pytest.raises(GeometryError, match=r"surf/lh.white does not exist; run recon-all"):
        subject_source_space(s)
    with pytest.raises(GeometryError, match="does not exist; check subjects_dir"):
        open_subject(tmp_path, "nobody")


def test_talairach_fiducials_match_mne(tmp_path):
    """Fiducials estimated from talairach.xfm and orig.mgz, as MNE-Python's get_mni_fiducials."""
    mne = pytest.importorskip("mne", reason="MNE-Python is the reference: pip install rtsource[peers]")
    nib = pytest.importorskip("nibabel")
    from rtsource.anatomy.subject import estimate_fiducials, talairach_transform

    root = tmp_path / "subj"
    (root / "mri" / "transforms").mkdir(parents=True)
    affine = np.array([[0.0, 0.0, 1.1, -80.0], [-1.0, 0.0, 0.0, 120.0], [0.0, -0.9, 0.0, 95.0], [0, 0, 0, 1]])
    img = nib.MGHImage(np.zeros((20, 24, 18), np.uint8), affine)
    nib.save(img, str(root / "mri" / "orig.mgz"))
    (root / "mri" / "transforms" / "talairach.xfm").write_text(
        "MNI Transform File\n% test\n\nTransform_Type = Linear;\nLinear_Transform =\n"
        " 1.05 0.02 -0.01 -1.5\n -0.03 0.98 0.04 12.0\n 0.01 -0.05 1.10 -20.0;\n"
    )
    s = open_subject(tmp_path, "subj")
    theirs_t = mne.read_talxfm("subj", tmp_path)
    t = talairach_transform(s)
    assert t.from_frame == Frame.MRI and t.to_frame == Frame.TEMPLATE
    assert np.allclose(t.matrix, theirs_t["trans"], atol=1e-6)
    theirs = {f["ident"]: f["r"] for f in mne.coreg.get_mni_fiducials("subj", tmp_path)}
    got = estimate_fiducials(s)
    assert got.frame == Frame.MRI and got.labels == ("NAS", "LPA", "RPA")
    assert np.allclose(got.positions_m, [theirs[2], theirs[1], theirs[3]], atol=1e-6)
