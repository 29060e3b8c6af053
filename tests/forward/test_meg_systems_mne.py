"""Real MEG systems read from FIF files: the sphere lead field against MNE-Python (issue #15).

Recordings are made with MNE-Python from the sensor geometries its wheel ships
(``mne/channels/data/canonical_meg/neuromag306.csv`` and ``ctf275.csv`` through
``read_meg_canonical_info``, the Kernel Flux OPM helmet in
``mne/data/helmets/Kernel_Flux_ch_pos.txt``), given a device->head transform and written as
FIF. rtsource reads the MEG array from each file and computes the sphere lead field at
"accurate" coil integration; MNE-Python's ``make_forward_solution`` (always accurate coils)
computes it for the same sphere origin and discrete sources. Acceptance: RDM <= 0.01 and
MAG within 1 % for every column. CTF is checked without and with a synthetic third-order
gradient compensation (reference channels and matrix built here).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rtsource.anatomy.source_space import SourceSpace
from rtsource.forward.head_model import SphereHead
from rtsource.forward.leadfield import make_leadfield
from rtsource.geometry import Frame
from rtsource.geometry.sphere_fit import fit_sphere
from rtsource.sensors.meg import load_meg_array, read_meg_array_fif

mne = pytest.importorskip("mne")
pytestmark = pytest.mark.peers

RDM_MAX = 0.01
MAG_MAX = 0.01
FIFF_UNIT_T = 112
FIFF_REF_MEG_CH = 301
CTF_GRADE3_KIND = 0x47334252  # "G3BR": CTF's tag for third-order synthetic gradiometers


def _dev_head_t():
    """A modest head pose: 6 degrees about x, 4 about z, a few cm of translation."""
    a, b = np.deg2rad(6.0), np.deg2rad(4.0)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    t = np.eye(4)
    t[:3, :3] = rz @ rx
    t[:3, 3] = [0.003, -0.008, 0.03]
    return mne.transforms.Transform("meg", "head", t)


def _save(info, path: Path) -> Path:
    with info._unlock():
        info["dev_head_t"] = _dev_head_t()
    mne.io.RawArray(np.zeros((len(info["ch_names"]), 20)), info, verbose="error").save(path, overwrite=True, verbose="error")
    return path


def _opm_info(coil_type: int) -> "mne.Info":
    """The Kernel Flux helmet's 40 module positions as tri-axial OPMs (radial + 2 tangential)."""
    pos = json.loads((Path(mne.__file__).parent / "data" / "helmets" / "Kernel_Flux_ch_pos.txt").read_text())
    names, locs = [], []
    centre, _ = fit_sphere(np.array(list(pos.values())))
    for label, p in pos.items():
        p = np.asarray(p, float)
        radial = (p - centre) / np.linalg.norm(p - centre)
        t1 = np.cross([0.0, 0.0, 1.0], radial)
        t1 = t1 / np.linalg.norm(t1) if np.linalg.norm(t1) > 1e-6 else np.array([1.0, 0, 0])
        t2 = np.cross(radial, t1)
        # one channel per sensitive axis: the coil z axis is the measured field component
        for axis, (ex, ey, ez) in (("Z", (t1, t2, radial)), ("X", (t2, radial, t1)), ("Y", (radial, t1, t2))):
            names.append(f"{label}-{axis}")
            locs.append(np.r_[p, ex, ey, ez])
    info = mne.create_info(names, 1000.0, "mag")
    for ch, loc in zip(info["chs"], locs):
        ch["loc"][:] = loc
        ch["coil_type"] = coil_type
    return info


def _ctf_info(grade: int):
    """CTF-275 with 3 reference magnetometers and 5 reference gradiometers; a grade-3 matrix."""
    info = mne.channels.read_meg_canonical_info("ctf275")
    meg = mne.io.RawArray(np.zeros((len(info["ch_names"]), 20)), info, verbose="error")
    ref_names = ["BG1", "BG2", "BG3", "G11", "G22", "G12", "G13", "G23"]
    ref_types = [5002, 5002, 5002, 5003, 5003, 5004, 5004, 5004]
    ref_pos = np.array(
        [[0.0, 0.02, 0.17], [0.02, 0.0, 0.17], [-0.02, 0.0, 0.17], [0.0, -0.03, 0.16],
         [0.03, 0.03, 0.16], [-0.03, 0.03, 0.16], [0.03, -0.03, 0.18], [-0.03, -0.03, 0.18]]
    )  # fmt: skip
    eye = np.eye(3)
    ref_axes = [eye, eye[[1, 2, 0]], eye[[2, 0, 1]], eye, eye, eye[[1, 2, 0]], eye[[2, 0, 1]], eye[[1, 2, 0]]]
    rinfo = mne.create_info(ref_names, 1000.0, "ref_meg")
    for ch, t, p, ax in zip(rinfo["chs"], ref_types, ref_pos, ref_axes):
        ch["coil_type"] = t
        ch["unit"] = FIFF_UNIT_T
        ch["coord_frame"] = 1
        ch["loc"][:] = np.r_[p, ax[0], ax[1], ax[2]]
    refs = mne.io.RawArray(np.zeros((len(ref_names), 20)), rinfo, verbose="error")
    meg.add_channels([refs], force_update_info=True)
    info = meg.info
    if grade:
        meg_names = [c["ch_name"] for c in info["chs"] if c["kind"] == 1]
        rows = meg_names[:-6]  # the last few stay uncompensated, as MNE allows
        c = np.random.default_rng(11).uniform(-0.02, 0.02, (len(rows), len(ref_names)))
        c[:, 3:] = np.random.default_rng(12).uniform(-0.4, 0.4, (len(rows), 5))
        comp = dict(
            ctfkind=CTF_GRADE3_KIND, kind=3, save_calibrated=True, rowcals=np.ones(len(rows)), colcals=np.ones(len(ref_names)),
            data=dict(nrow=len(rows), ncol=len(ref_names), row_names=rows, col_names=ref_names, data=c),
        )  # fmt: skip
        with info._unlock():
            info["comps"] = [comp]
        for ch in info["chs"]:
            if ch["kind"] == 1:
                ch["coil_type"] = int(ch["coil_type"]) | (grade << 16)
    return info


def _compare(path: Path, n_sources: int = 40, seed: int = 0):
    """RDM and MAG error per column of rtsource's and MNE's lead fields of the file's MEG channels."""
    arr = read_meg_array_fif(path, accuracy="accurate")
    head_arr = arr.to_head()
    origin, radius = fit_sphere(head_arr.positions_m)
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n_sources, 3))
    rr = origin + 0.65 * radius * d / np.linalg.norm(d, axis=1, keepdims=True) * rng.uniform(0.2, 1.0, (n_sources, 1))
    nn = np.tile([0.0, 0.0, 1.0], (n_sources, 1))
    src = SourceSpace(rr, nn, np.zeros(n_sources), -np.ones(n_sources, dtype=np.int8), Frame.HEAD, "discrete")
    ours = make_leadfield(src, arr, SphereHead(meg_origin_m=origin, check_inside=False), use_cache=False)
    info = mne.io.read_info(path, verbose="error")
    msrc = mne.setup_volume_source_space(pos=dict(rr=rr, nn=nn), verbose="error")
    sphere = mne.make_sphere_model(r0=origin, head_radius=None, verbose="error")
    fwd = mne.make_forward_solution(info, mne.transforms.Transform("head", "mri", np.eye(4)), msrc, sphere, meg=True, eeg=False, verbose="error")
    assert fwd["sol"]["row_names"] == list(ours.leadfield.ch_names)
    theirs = fwd["sol"]["data"]
    a, b = ours.leadfield.gain, theirs
    na, nb = np.linalg.norm(a, axis=0), np.linalg.norm(b, axis=0)
    rdm = np.linalg.norm(a / na - b / nb, axis=0)
    mag = np.abs(na / nb - 1.0)
    return arr, ours, theirs, rdm, mag


def test_neuromag306(tmp_path):
    path = _save(mne.channels.read_meg_canonical_info("neuromag"), tmp_path / "neuromag306_raw.fif")
    arr, ours, _, rdm, mag = _compare(path)
    assert arr.n_channels == 306 and set(arr.coil_types) == {3012, 3024}
    assert ours.ch_types.count("grad") == 204 and ours.ch_units.count("T/m") == 204
    assert rdm.max() <= RDM_MAX, f"Neuromag-306 RDM max {rdm.max():.2e}"
    assert mag.max() <= MAG_MAX, f"Neuromag-306 MAG max {mag.max():.2e}"


def test_ctf275_without_compensation(tmp_path):
    path = _save(_ctf_info(grade=0), tmp_path / "ctf275_raw.fif")
    arr, ours, _, rdm, mag = _compare(path)
    assert set(arr.coil_types) == {5001} and arr.compensation is None
    assert ours.leadfield.model["compensation_grade"] == 0
    assert rdm.max() <= RDM_MAX, f"CTF-275 RDM max {rdm.max():.2e}"
    assert mag.max() <= MAG_MAX, f"CTF-275 MAG max {mag.max():.2e}"


def test_ctf275_with_third_order_compensation(tmp_path):
    path = _save(_ctf_info(grade=3), tmp_path / "ctf275_g3_raw.fif")
    arr, ours, theirs, rdm, mag = _compare(path)
    comp = arr.compensation
    assert comp.grade == 3 and comp.n_references == 8 and set(comp.references.coil_types) == {5002, 5003, 5004}
    assert np.all(comp.matrix[-6:] == 0) and np.all(comp.matrix[:-6] != 0)
    assert ours.leadfield.model["compensation_grade"] == 3
    assert rdm.max() <= RDM_MAX, f"CTF-275 grade 3 RDM max {rdm.max():.2e}"
    assert mag.max() <= MAG_MAX, f"CTF-275 grade 3 MAG max {mag.max():.2e}"
    # the comparison can fail: without the compensation the gains disagree with MNE's
    sources = ours.leadfield.sources
    plain = make_leadfield(sources, arr.without_compensation(), SphereHead(meg_origin_m=ours.leadfield.model["origin_m"], check_inside=False), use_cache=False)
    p = plain.leadfield.gain
    rdm_plain = np.linalg.norm(p / np.linalg.norm(p, axis=0) - theirs / np.linalg.norm(theirs, axis=0), axis=0)
    assert rdm_plain.max() > 5 * RDM_MAX


@pytest.mark.parametrize("coil_type", [8201, 8002, 8101], ids=["kernel-flux", "quspin-gen2", "fieldline"])
def test_opm_helmet(tmp_path, coil_type):
    path = _save(_opm_info(coil_type), tmp_path / f"opm_{coil_type}_raw.fif")
    arr, ours, _, rdm, mag = _compare(path)
    assert arr.n_channels == 120 and set(arr.coil_types) == {coil_type}
    assert rdm.max() <= RDM_MAX, f"OPM {coil_type} RDM max {rdm.max():.2e}"
    assert mag.max() <= MAG_MAX, f"OPM {coil_type} MAG max {mag.max():.2e}"


def test_kit_axial_gradiometers(tmp_path):
    """KIT/Yokogawa/Ricoh coils (6001) on the CTF-275 positions (no KIT geometry ships with MNE)."""
    info = mne.channels.read_meg_canonical_info("ctf275")
    for ch in info["chs"]:
        ch["coil_type"] = 6001
    path = _save(info, tmp_path / "kit_raw.fif")
    arr, _, _, rdm, mag = _compare(path, n_sources=20)
    assert set(arr.coil_types) == {6001}
    assert rdm.max() <= RDM_MAX and mag.max() <= MAG_MAX, (rdm.max(), mag.max())


def test_load_meg_array_takes_a_fif_path(tmp_path):
    path = _save(mne.channels.read_meg_canonical_info("neuromag"), tmp_path / "x_raw.fif")
    arr = load_meg_array(path, accuracy="point")
    assert arr.accuracy == "point" and arr.n_points == 204 * 2 + 102
    assert arr.dev_head_t is not None and np.allclose(arr.dev_head_t.matrix, _dev_head_t()["trans"])


@pytest.mark.parametrize("accuracy", ["point", "normal", "accurate"])
def test_every_coil_type_is_placed_as_mne_places_it(accuracy):
    """Integration points, normals and weights of every registry coil at a tilted pose, against
    MNE-Python's own coil construction (a private helper: skipped if it moves)."""
    try:
        from mne.forward._make_forward import _create_meg_coils
    except ImportError:
        pytest.skip("mne.forward._make_forward._create_meg_coils is not available in this MNE version")
    from rtsource.sensors.meg import coil_registry, make_meg_array

    reg = coil_registry()
    ids = sorted(reg)
    rng = np.random.default_rng(5)
    q = np.linalg.qr(rng.normal(size=(len(ids), 3, 3)))[0]
    q[np.linalg.det(q) < 0, :, 2] *= -1  # proper rotations
    pos = rng.uniform(-0.1, 0.1, (len(ids), 3))
    names = [f"C{c}" for c in ids]
    info = mne.create_info(names, 1000.0, "mag")
    for ch, cid, p, r in zip(info["chs"], ids, pos, q):
        ch["coil_type"] = cid
        ch["loc"][:] = np.r_[p, r[:, 0], r[:, 1], r[:, 2]]
    coils = _create_meg_coils(info["chs"], accuracy)
    arr = make_meg_array(
        names, [reg[c].kind for c in ids], pos, q[:, :, 2], q[:, :, 0], frame="device", accuracy=accuracy, coil_types=ids
    )
    for k, (cid, coil) in enumerate(zip(ids, coils)):
        sel = arr.point_channel == k
        assert np.allclose(arr.points_m[sel], coil["rmag"], atol=1e-12), cid
        assert np.allclose(arr.point_normals[sel], coil["cosmag"], atol=1e-12), cid
        assert np.allclose(arr.weights[sel], coil["w"], rtol=1e-12), cid
