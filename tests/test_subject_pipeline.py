"""A FreeSurfer subject directory written here, set up end to end (issue 17, part 3).

Nested spheres in FreeSurfer's binary triangle format (white, sphere, inner skull, outer
skull, scalp), an annotation in FreeSurfer's format and an MNE -trans.fif: the lead field of
the subject's BEM equals the exact concentric-sphere series within the accuracy the BEM
reaches on concentric spheres at 642 vertices (tests/forward/test_bem.py: median RDM <= 0.05,
|MAG - 1| <= 0.05), and an ROI by the subject's atlas label streams over LSL.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from rtsource.anatomy.freesurfer import Annotation, write_annot, write_surface
from rtsource.anatomy.subject import freesurfer_icosphere, open_subject, subject_atlas, subject_head_surfaces, subject_source_space
from rtsource.build import build_bundle, compute_leadfield
from rtsource.config import load_config
from rtsource.errors import ConfigError, GeometryError
from rtsource.forward.sphere import eeg_sphere_leadfield, make_sphere_model
from rtsource.geometry import Frame, Mesh
from rtsource.session import feature_options, rois_from_settings
from rtsource.stream.inlet import StreamSelector
from rtsource.stream.loop import LoopOptions, StreamLoop
from rtsource.stream.outputs import ROI_SUFFIX

from .stream.lsl_helpers import Collector, eeg_outlet, unique
from .stream.test_reliability import push, wait_for

RADII_MM = (90.0, 85.0, 81.0)  # scalp, outer skull, inner skull (as tests/forward/test_bem.py)
SIGMA = (0.33, 0.0042, 0.33)  # the config's default BEM conductivities, outermost first
CENTRES_MM = {"lh": (-32.0, 0.0, 10.0), "rh": (32.0, 0.0, 10.0)}
WHITE_RADIUS_MM = 25.0
N_ELEC = 32
FIDUCIALS_MM = {"NAS": (0.0, 90.0, 0.0), "LPA": (-90.0, 0.0, 0.0), "RPA": (90.0, 0.0, 0.0)}  # MRI, on the scalp
SFREQ = 250.0
# head -> MRI: a rotation about z and y and a shift, as mne coreg would save
ANGLE_Z, ANGLE_Y = np.deg2rad(8.0), np.deg2rad(-5.0)


def head_to_mri_matrix() -> np.ndarray:
    cz, sz, cy, sy = np.cos(ANGLE_Z), np.sin(ANGLE_Z), np.cos(ANGLE_Y), np.sin(ANGLE_Y)
    rot = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]]) @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = rot, (0.002, -0.015, 0.03)
    return m


def region_of(local_z_mm: np.ndarray) -> np.ndarray:
    """0 unknown (a 4 mm band round the equator), 1 precentral (top), 2 superiortemporal."""
    return np.where(np.abs(local_z_mm) < 2.0, 0, np.where(local_z_mm > 0, 1, 2))


def write_subject(root: Path) -> Path:
    """SUBJECTS_DIR/sphere: the nested spheres, ?h.white / ?h.sphere, ?h.aparc.annot."""
    subj = root / "sphere"
    for d in ("surf", "bem", "label"):
        (subj / d).mkdir(parents=True)
    v3, t3 = freesurfer_icosphere(3)
    for name, r in zip(("outer_skin", "outer_skull", "inner_skull"), RADII_MM):
        write_surface(subj / "bem" / f"{name}.surf", Mesh(v3 * r * 1e-3, t3, Frame.MRI, "m", name))
    v4, t4 = freesurfer_icosphere(4)
    names = ("unknown", "precentral", "superiortemporal")
    colors = np.array([[25, 5, 25, 0], [60, 20, 220, 0], [140, 220, 220, 0]])
    for hemi, c in CENTRES_MM.items():
        white = v4 * WHITE_RADIUS_MM + np.array(c)
        write_surface(subj / "surf" / f"{hemi}.white", Mesh(white * 1e-3, t4, Frame.MRI, "m", "white"))
        write_surface(subj / "surf" / f"{hemi}.sphere", Mesh(v4 * 0.1, t4, Frame.MRI, "m", "sphere"))
        write_annot(subj / "label" / f"{hemi}.aparc.annot", Annotation(region_of(v4[:, 2] * WHITE_RADIUS_MM), names, colors))
    write_talairach(subj)
    return subj


TALAIRACH_SCALE, TALAIRACH_SHIFT_MM = 1.05, np.array([2.0, -3.0, 4.0])  # MRI -> MNI305 of the test subject


def write_talairach(subj: Path) -> None:
    """mri/orig.mgz (header only: conformed 256^3 LIA, scanner RAS = surface RAS) and talairach.xfm."""
    import gzip
    import struct

    (subj / "mri" / "transforms").mkdir(parents=True)
    mdc = (-1.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 1.0, 0.0)  # x -> left, y -> inferior, z -> anterior
    head = struct.pack(">7i", 1, 256, 256, 256, 1, 0, 0) + struct.pack(">h", 1) + struct.pack(">15f", 1, 1, 1, *mdc, 0, 0, 0)
    (subj / "mri" / "orig.mgz").write_bytes(gzip.compress(head.ljust(284, b"\0")))
    rows = [[TALAIRACH_SCALE if i == j else 0.0 for j in range(3)] + [TALAIRACH_SHIFT_MM[i]] for i in range(3)]
    body = "\n".join(" ".join(f"{x:g}" for x in r) for r in rows)
    (subj / "mri" / "transforms" / "talairach.xfm").write_text(f"MNI Transform File\n\nTransform_Type = Linear;\nLinear_Transform =\n{body};\n")


def electrodes_mri_m() -> np.ndarray:
    """N_ELEC points on the upper scalp sphere (MRI frame, m): a golden-angle spiral."""
    k = np.arange(N_ELEC) + 0.5
    z = 1 - 0.9 * k / N_ELEC  # cos(polar) from ~1 to 0.1
    phi = k * np.pi * (3 - np.sqrt(5))
    r = np.sqrt(1 - z**2)
    return np.c_[r * np.cos(phi), r * np.sin(phi), z] * RADII_MM[0] * 1e-3


@pytest.fixture(scope="module")
def subject_setup(tmp_path_factory):
    """The subject, its -trans.fif and electrode file (HEAD frame), a config; the lead field and bundle."""
    mne = pytest.importorskip("mne", reason="the -trans.fif is written with MNE-Python: pip install rtsource[peers]")
    root = tmp_path_factory.mktemp("subjects")
    write_subject(root)
    fids = [{"kind": 1, "ident": ident, "r": np.array(r) * 1e-3, "coord_frame": 5} for ident, r in ((2, FIDUCIALS_MM["NAS"]), (1, FIDUCIALS_MM["LPA"]), (3, FIDUCIALS_MM["RPA"]))]
    mne.io.write_fiducials(root / "sphere" / "bem" / "sphere-fiducials.fif", fids, coord_frame="mri")
    folder = tmp_path_factory.mktemp("subject_cfg")
    h2m = head_to_mri_matrix()
    mne.write_trans(folder / "sphere-trans.fif", mne.transforms.Transform("head", "mri", h2m))
    elec_head = (np.c_[electrodes_mri_m(), np.ones(N_ELEC)] @ np.linalg.inv(h2m).T)[:, :3]
    labels = [f"E{i:02d}" for i in range(N_ELEC)]
    rows = "\n".join(f"{lab},{x * 1e3:.5f},{y * 1e3:.5f},{z * 1e3:.5f}" for lab, (x, y, z) in zip(labels, elec_head))
    (folder / "electrodes.csv").write_text(f"# unit: mm\n# frame: head\nlabel,x,y,z\n{rows}\n")
    (folder / "subject.toml").write_text(
        f"""
[head]
model = "freesurfer"
subjects_dir = "{root}"
subject = "sphere"
trans = "sphere-trans.fif"
[sensors]
montage = "electrodes.csv"
channels = {labels!r}
[source_space]
spacing = "ico3"
[forward]
method = "bem"
[noise_cov]
source = "ad_hoc"
[stream]
sfreq = {SFREQ}

[[roi]]
name = "M1_left"
atlas = "aparc"
label = "precentral-lh"
"""
    )
    settings = load_config(folder / "subject.toml")
    slf = compute_leadfield(settings, use_cache=False)
    return settings, slf, build_bundle(settings, sfreq=SFREQ, leadfield=slf)


def test_subject_leadfield_equals_the_sphere_series(subject_setup):
    settings, slf, bundle = subject_setup
    lf = slf.leadfield
    src = lf.sources
    assert src.frame == Frame.MRI and src.n_sources == 2 * 642 and src.name == "sphere-ico3-white"
    # ico3 of the ico4 sphere: the first 642 vertices, in FreeSurfer's orientation
    v4, _ = freesurfer_icosphere(4)
    assert np.allclose(src.positions_m[:642], (v4[:642] * WHITE_RADIUS_MM + CENTRES_MM["lh"]) * 1e-3, atol=1e-6)
    assert np.allclose(src.normals[:642], v4[:642], atol=0.01)
    # the -trans.fif put the electrodes on the MRI scalp where they were digitised
    assert np.allclose(lf.channel_positions_m, electrodes_mri_m(), atol=0.6e-3)
    ref_model = make_sphere_model([0, 0, 0], RADII_MM[0] * 1e-3, "mri", relative_radii=tuple(np.array(RADII_MM[::-1]) / RADII_MM[0]), conductivities=SIGMA[::-1])
    ref, _ = eeg_sphere_leadfield(lf.channel_positions_m, src.positions_m, ref_model)
    u, v = lf.gain - lf.gain.mean(0), ref - ref.mean(0)
    rdm = np.linalg.norm(u / np.linalg.norm(u, axis=0) - v / np.linalg.norm(v, axis=0), axis=0)
    mag = np.linalg.norm(u, axis=0) / np.linalg.norm(v, axis=0)
    assert np.median(rdm) <= 0.05 and abs(np.median(mag) - 1) <= 0.05, (np.median(rdm), np.median(mag))
    assert np.percentile(rdm, 95) <= 0.1
    assert bundle.sources.frame == Frame.MRI and bundle.provenance["head"]["model"] == "freesurfer"
    assert bundle.provenance["head"]["subject"] == "sphere" and bundle.sources.triangles.shape == (2 * 1280, 3)


def test_roi_by_the_subjects_atlas_label_streams(subject_setup):
    settings, _, bundle = subject_setup
    (roi,) = rois_from_settings(settings, bundle)
    v4, _ = freesurfer_icosphere(4)
    want = np.flatnonzero(region_of(v4[:642, 2] * WHITE_RADIUS_MM) == 1)  # lh sources come first
    assert roi.name == "M1_left" and np.array_equal(roi.vertices, want)
    feats = feature_options(settings, bundle)
    in_name, out_name = unique("subj-eeg"), unique("subj-src")
    outlet = eeg_outlet(in_name, list(bundle.ch_names), sfreq=SFREQ, source_id=in_name)
    loop = StreamLoop(bundle, LoopOptions(selector=StreamSelector(in_name), output_name=out_name, resolve_timeout=20), features=feats)
    loop.connect()
    thread = loop.run_in_thread()
    collector = Collector(out_name + ROI_SUFFIX)
    assert outlet.wait_for_consumers(20)
    n = 500
    x = (np.random.default_rng(1).normal(size=(n, N_ELEC)) * 10).astype(np.float32)
    stamps = 10.0 + np.arange(n) / SFREQ
    push(outlet, x, stamps)
    assert wait_for(lambda: collector.n_samples >= n)
    time.sleep(0.2)
    loop.stop()
    thread.join(10)
    collector.stop()
    loop.close()
    data, got = collector.data()
    labels = [c.find("label").text for c in ET.fromstring(collector.info.as_xml()).findall("desc/channels/channel")]
    expected = loop.features.roi_operator.apply(x.astype(np.float64) * 1e-6)
    assert labels == ["M1_left"] and np.array_equal(got, stamps)
    assert np.allclose(data, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


def test_bem_fif_surfaces_equal_the_surf_files(subject_setup, tmp_path):
    """An MNE -bem.fif of the same subject gives the same surfaces (read natively)."""
    mne = pytest.importorskip("mne")
    from rtsource.anatomy.subject import bem_fif_surfaces

    settings, _, _ = subject_setup
    s = open_subject(settings.head.subjects_dir, "sphere")
    surfs = mne.make_bem_model("sphere", ico=None, conductivity=(0.3, 0.006, 0.3), subjects_dir=s.subjects_dir, verbose="error")
    mne.write_bem_surfaces(tmp_path / "sphere-bem.fif", surfs)
    got, want = bem_fif_surfaces(tmp_path / "sphere-bem.fif"), subject_head_surfaces(s)
    for a, b in zip(got.as_tuple(), want.as_tuple()):
        assert a.name == b.name and a.frame == Frame.MRI
        assert np.allclose(a.vertices_m, b.vertices_m, atol=1e-6) and np.array_equal(a.triangles, b.triangles)
    with pytest.raises(GeometryError, match="not a FIF file"):
        bem_fif_surfaces(s.path / "bem" / "inner_skull.surf")
    # a solution file: the surfaces are read, the solution matrix skipped; one layer is not enough for EEG
    from rtsource.anatomy.mne_files import read_bem_surfaces_fif

    one = mne.make_bem_model("sphere", ico=None, conductivity=(0.3,), subjects_dir=s.subjects_dir, verbose="error")
    mne.write_bem_solution(tmp_path / "sphere-bem-sol.fif", mne.make_bem_solution(one, verbose="error"))
    (inner,) = read_bem_surfaces_fif(tmp_path / "sphere-bem-sol.fif").values()
    assert inner.name == "inner_skull" and np.allclose(inner.vertices_m, want.inner_skull.vertices_m, atol=1e-6)
    with pytest.raises(GeometryError, match="no outer_skin, outer_skull surface"):
        bem_fif_surfaces(tmp_path / "sphere-bem-sol.fif")


def test_subject_spacings_atlas_and_refusals(subject_setup, tmp_path):
    settings, _, bundle = subject_setup
    s = open_subject(settings.head.subjects_dir, "sphere")
    oct_space, vertno = subject_source_space(s, "oct5")  # MNE-Python's oct5: 4^5 + 2 per hemisphere
    assert oct_space.n_sources == 2 * 1026 and len(np.unique(vertno[0])) == 1026
    atlas = subject_atlas(s, "aparc")
    assert atlas.region_names == ("precentral-lh", "superiortemporal-lh", "precentral-rh", "superiortemporal-rh")
    labels = atlas.labels_for(bundle.sources)
    assert np.all((labels >= 0) == (region_of(np.r_[bundle.sources.positions_m[:, 2] * 1e3 - 10.0]) > 0))
    with pytest.raises(ConfigError, match="needs subject"):
        load_config_text(tmp_path, '[head]\nmodel = "freesurfer"\n')
    with pytest.raises(ConfigError, match="used with model = 'freesurfer' only"):
        load_config_text(tmp_path, '[head]\nsubject = "x"\n')
    with pytest.raises(ConfigError, match="surface = 'mid' is the template's"):
        load_config_text(tmp_path, '[head]\nmodel = "freesurfer"\nsubject = "x"\n[source_space]\nsurface = "mid"\n')
    with pytest.raises(ConfigError, match="not an annotation name"):
        load_config_text(tmp_path, '[head]\nmodel = "freesurfer"\nsubject = "x"\n[rois]\natlas = "../aparc"\n')
    with pytest.raises(ConfigError, match="template has 'ico4' and 'ico5'"):
        load_config_text(tmp_path, '[source_space]\nspacing = "ico3"\n')


def load_config_text(folder: Path, text: str):
    (folder / "c.toml").write_text(text)
    return load_config(folder / "c.toml")


def test_standard_montage_and_coregistration_on_the_subject(subject_setup, tmp_path):
    """Without a -trans.fif: a standard cap carried onto the scalp, a file fitted by fiducials + ICP."""
    import dataclasses

    from rtsource.build import electrodes_from_settings, head_model_from_settings
    from rtsource.config import SensorSettings

    settings, _, _ = subject_setup
    std = dataclasses.replace(settings, sensors=SensorSettings(montage="standard_1005", channels=("Fz", "Cz", "Pz", "T7", "T8", "Oz")))
    montage, coreg = electrodes_from_settings(std)
    pos = dict(zip(montage.electrodes.labels, montage.electrodes.positions_m))
    assert coreg is None and montage.frame == Frame.MRI
    assert np.allclose(np.linalg.norm(montage.electrodes.positions_m, axis=1), RADII_MM[0] * 1e-3, atol=2e-3)  # on the scalp
    assert pos["Cz"][2] > 0.08 and pos["Fz"][1] > 0.02 > -0.02 > pos["Pz"][1] and pos["T7"][0] < -0.08 < 0.08 < pos["T8"][0]
    sphere = dataclasses.replace(std, forward=dataclasses.replace(std.forward, method="sphere"))
    shells = head_model_from_settings(sphere).shells  # fitted to the scalp above the fiducials
    assert np.allclose(shells.center_m, 0, atol=1e-3) and abs(shells.radii_m[-1] - RADII_MM[0] * 1e-3) < 1e-3
    # an electrode file in HEAD with the fiducials, no trans: fiducials, then ICP on the subject's scalp
    h2m = head_to_mri_matrix()
    to_head = np.linalg.inv(h2m)
    rows = [f"{lab},{x * 1e3:.4f},{y * 1e3:.4f},{z * 1e3:.4f}" for lab, (x, y, z) in zip(
        [*FIDUCIALS_MM, *(f"E{i:02d}" for i in range(N_ELEC))],
        (np.c_[np.r_[np.array(list(FIDUCIALS_MM.values())) * 1e-3, electrodes_mri_m()], np.ones(3 + N_ELEC)] @ to_head.T)[:, :3],
    )]
    (tmp_path / "dig.csv").write_text("# unit: mm\n# frame: head\nlabel,x,y,z\n" + "\n".join(rows) + "\n")
    fitted = dataclasses.replace(
        settings,
        head=dataclasses.replace(settings.head, trans=""),
        sensors=dataclasses.replace(settings.sensors, montage=str(tmp_path / "dig.csv")),
    )
    montage, coreg = electrodes_from_settings(fitted)
    assert coreg.transform.from_frame == Frame.HEAD and coreg.transform.to_frame == Frame.MRI
    # a sphere leaves rotations about its centre to the fiducials: a fraction of a degree
    assert np.allclose(coreg.transform.matrix[:3, :3], h2m[:3, :3], atol=0.01) and np.allclose(coreg.transform.matrix[:3, 3], h2m[:3, 3], atol=1e-3)
    assert np.max(np.linalg.norm(montage.electrodes.positions_m - electrodes_mri_m(), axis=1)) < 2e-3


def test_roi_picture_outlines_the_subjects_regions(subject_setup, tmp_path):
    pytest.importorskip("matplotlib", reason="the ROI picture needs matplotlib: pip install rtsource[qc]")
    from rtsource.anatomy.atlas_plot import write_roi_png
    from rtsource.pipeline.subject import atlas_from_settings

    from .anatomy.test_atlas_plot import colour_fraction

    settings, _, bundle = subject_setup
    rois = rois_from_settings(settings, bundle)
    png = write_roi_png(tmp_path / "subject_rois.png", rois, atlas=atlas_from_settings(settings, "aparc"), sources=bundle.sources)
    assert colour_fraction(png, (0.2, 0.2, 0.2)) > 0.001  # the equator between the two regions


def test_meg_on_the_subject_goes_through_the_trans(subject_setup):
    """DEVICE -> HEAD (the array's) -> MRI ([head] trans): the sensors sit where the transform puts them."""
    import dataclasses

    from rtsource.build import meg_array_from_settings
    from rtsource.geometry.head_frames import compose

    settings, _, _ = subject_setup
    meg = dataclasses.replace(
        settings, sensors=dataclasses.replace(settings.sensors, modality="meg"), forward=dataclasses.replace(settings.forward, method="sphere")
    )
    slf = compute_leadfield(meg, use_cache=False)
    array = meg_array_from_settings(meg)
    from rtsource.anatomy.template import template_head_transform

    head = array.transformed(compose(array.dev_head_t, template_head_transform()))  # the generic helmet's HEAD
    want = head.positions_m @ head_to_mri_matrix()[:3, :3].T + head_to_mri_matrix()[:3, 3]
    assert slf.leadfield.sources.frame == Frame.MRI and slf.leadfield.gain.shape == (306, 3 * 1284)
    assert np.allclose(slf.leadfield.channel_positions_m, want, atol=1e-9)


def test_saved_subject_bundle_gives_the_viewer_its_mesh_and_rois(subject_setup, tmp_path):
    """The bundle file alone (MRI frame) carries the viewer's mesh; the ROIs come out the same."""
    from rtsource.bundle import load_bundle, save_bundle
    from rtsource.display.cortex_geometry import cortex_geometry
    from rtsource.display.layout import parse_stream_xml
    from rtsource.stream.channels import StreamDescription
    from rtsource.stream.outlets import make_source_info

    settings, _, bundle = subject_setup
    path = save_bundle(bundle, tmp_path / "subject.npz")
    again = load_bundle(path)
    assert again.sources.frame == Frame.MRI and again.provenance["head"]["subject"] == "sphere"
    assert np.array_equal(rois_from_settings(settings, again)[0].vertices, rois_from_settings(settings, bundle)[0].vertices)
    n = len(bundle.ch_names)
    desc = StreamDescription("eeg", "EEG", "eeg-1", SFREQ, n, "float32", bundle.ch_names, ("EEG",) * n, ("volts",) * n)
    layout = parse_stream_xml(make_source_info(again, desc, name="src", type_="Sources", source_id="s", bundle_path=str(path)).as_xml())
    geo = cortex_geometry(layout)
    assert geo.frame == "mri" and geo.n_vertices == 2 * 642 and len(geo.faces) == 2 * 1280
    assert np.allclose(geo.vertices_m, bundle.sources.positions_m)

    # region outlines (rtsource view --atlas aparc): the subject's annot, found through the bundle
    from rtsource.display.outlines import with_outline

    outlined = with_outline(geo, "aparc", bundle_path=str(path))
    labels = subject_atlas(open_subject(settings.head.subjects_dir, "sphere"), "aparc").labels_for(bundle.sources)
    edges = np.concatenate([geo.faces[:, [0, 1]], geo.faces[:, [1, 2]], geo.faces[:, [2, 0]]])
    across = edges[labels[edges[:, 0]] != labels[edges[:, 1]]]
    on = np.zeros(geo.n_vertices, bool)
    on[outlined.outline] = True
    assert len(across) and np.all(on[across].any(axis=1))  # every border edge is drawn
    assert np.all(labels[outlined.outline] >= 0) and on.sum() < 0.4 * geo.n_vertices  # on the regions' side, thin
    try:
        from rtsource.display.cortex import OUTLINE_RGBA, ColourScale, VertexColourer
    except Exception:  # no Qt / OpenGL here: the colouring is checked where the viewer runs
        return
    values, scale = np.linspace(0.0, 1.0, outlined.n_vertices, dtype=np.float32), ColourScale()
    scale.track(values)
    rgba = VertexColourer(outlined).fill(values, scale)
    assert np.all(rgba[outlined.outline] == OUTLINE_RGBA) and not np.all(rgba[~on] == OUTLINE_RGBA, axis=1).any()


def test_template_mesh_gets_the_aparc_outlines():
    from rtsource.anatomy.atlas import load_atlas
    from rtsource.anatomy.template import template_source_space
    from rtsource.display.cortex_geometry import CortexGeometry
    from rtsource.display.outlines import outline_vertices, with_outline

    space = template_source_space("ico4")
    n = space.n_sources
    geo = CortexGeometry(space.positions_m, space.triangles, np.arange(n), np.zeros(0, np.int64), False, "template", "template ico4")
    outlined = with_outline(geo, "aparc")
    labels = load_atlas("aparc").labels_for(space)
    assert np.array_equal(outlined.outline, outline_vertices(space.triangles, labels))
    assert 0.05 * n < len(outlined.outline) < 0.4 * n and np.all(labels[outlined.outline] >= 0)
    assert np.array_equal(outline_vertices(np.array([[0, 1, 2]]), np.array([3, 3, 5])), [2])


def test_template_coordinates_select_the_subjects_sources_through_talairach(subject_setup):
    """[[roi]] center_mm (MNI305) on a subject: its sources seen through talairach.xfm."""
    import dataclasses

    from rtsource.config import RoiSettings

    settings, _, bundle = subject_setup
    pole_mri_mm = np.array(CENTRES_MM["lh"]) + (0.0, 0.0, WHITE_RADIUS_MM)
    centre = TALAIRACH_SCALE * pole_mri_mm + TALAIRACH_SHIFT_MM
    s = dataclasses.replace(settings, roi=(RoiSettings(name="pole", center_mm=tuple(centre), radius_mm=10.0),))
    (roi,) = rois_from_settings(s, bundle)
    d_mri_mm = np.linalg.norm(bundle.sources.positions_m * 1e3 - pole_mri_mm, axis=1)
    assert np.array_equal(roi.vertices, np.flatnonzero(d_mri_mm <= 10.0 / TALAIRACH_SCALE)) and roi.n_sources > 3


def test_without_talairach_the_cap_follows_the_fiducials_and_volumes_fill_the_inner_skull(subject_setup, tmp_path):
    import dataclasses
    import shutil

    from rtsource.build import electrodes_from_settings, source_space_from_settings
    from rtsource.config import SensorSettings, SourceSpaceSettings

    settings, _, _ = subject_setup
    shutil.copytree(Path(settings.head.subjects_dir) / "sphere", tmp_path / "sphere", ignore=shutil.ignore_patterns("mri"))
    s = dataclasses.replace(
        settings, head=dataclasses.replace(settings.head, subjects_dir=str(tmp_path)), sensors=SensorSettings(montage="standard_1020", channels=("Fz", "Cz", "Pz", "T7", "T8"))
    )
    montage, _ = electrodes_from_settings(s)
    pos = dict(zip(montage.electrodes.labels, montage.electrodes.positions_m))
    assert np.allclose(np.linalg.norm(montage.electrodes.positions_m, axis=1), RADII_MM[0] * 1e-3, atol=2e-3)
    assert pos["Cz"][2] > 0.08 and pos["T7"][0] < -0.08 < 0.08 < pos["T8"][0] and pos["Fz"][1] > 0.02 > -0.02 > pos["Pz"][1]
    vol = source_space_from_settings(dataclasses.replace(s, source_space=SourceSpaceSettings(kind="volume", volume_spacing_mm=10.0)))
    r = np.linalg.norm(vol.positions_m, axis=1)
    assert vol.frame == Frame.MRI and vol.n_sources > 1500 and r.max() < (RADII_MM[2] - 5.0) * 1e-3
    with pytest.raises(GeometryError, match="talairach"):
        rois_from_settings(dataclasses.replace(s, roi=(dataclasses.replace(settings.roi[0], atlas="", label="", center_mm=(0.0, 0.0, 50.0)),)), subject_setup[2])


def test_rtsource_coreg_with_a_subject_config(subject_setup, tmp_path, capsys):
    """`rtsource coreg FILE --config subject.toml`: the file moved by the config's -trans.fif onto the subject."""
    import json

    from rtsource.cli import main

    settings, _, _ = subject_setup
    cfg = Path(settings.base_dir) / "subject.toml"
    assert main(["coreg", str(Path(settings.base_dir) / "electrodes.csv"), "--config", str(cfg), "--out", str(tmp_path / "c.json")]) == 0
    out = json.loads((tmp_path / "c.json").read_text())
    assert "PASSED" in capsys.readouterr().out
    assert np.allclose(out["transform"]["matrix"], head_to_mri_matrix(), atol=1e-6) and out["transform"]["to"] == "mri"
