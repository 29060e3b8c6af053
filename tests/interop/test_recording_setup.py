"""Setup from a lab's FIF recording, against MNE-Python (issue #15, items 1 and 3).

Recordings are written here with MNE-Python from the sensor geometries its wheel ships
(Neuromag-306 and CTF-275 canonical positions, the Kernel Flux OPM helmet), plus 60 EEG
electrodes named ``EEG 001``.. digitised with fiducials and head-shape points (the 10-05
positions of MNE's standard montage), a device->head transform, a bad channel, SSP
projectors and noise samples. ``rtsource setup`` reads each file directly
(``[recording] file``), and:

(a) its MEG and EEG lead fields (sphere model, accurate coils) equal MNE-Python's
    ``make_forward_solution`` for the same sphere, sources and head->template transform
    (RDM <= 0.01, MAG within 1 %);
(b) its dSPM operator equals MNE-Python's ``make_inverse_operator`` / ``apply_inverse_raw``
    on the same forward, covariance (a ``-cov.fif`` with projectors) and projectors, to 1e-6;
(c) the float32 stream (the Estimator, which applies what ``rtsource run`` applies) equals
    the float64 offline application to 1e-5 of its maximum with the projectors present.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import rtsource
from rtsource.anatomy.template import template_source_space
from rtsource.recordings import read_acquisition

mne = pytest.importorskip("mne")
pytestmark = pytest.mark.peers

from tests.forward.test_meg_systems_mne import _ctf_info, _dev_head_t, _opm_info  # noqa: E402

RDM_MAX = 0.01
MAG_MAX = 0.01
SFREQ = 250.0
N_SAMPLES = 1500
BAD = "EEG 007"


def _eeg_positions():
    """60 electrode positions of the 10-05 system (EEG 001..), fiducials, 40 head-shape points."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pos = mne.channels.make_standard_montage("standard_1005").get_positions()
    names = [n for n in pos["ch_pos"] if not n.endswith("h") and "I" not in n]
    rng = np.random.default_rng(3)
    picked = rng.choice(len(names), 100, replace=False)
    eeg = {f"EEG {k + 1:03d}": pos["ch_pos"][names[i]] for k, i in enumerate(picked[:60])}
    hsp = np.array([pos["ch_pos"][names[i]] for i in picked[60:]])
    return eeg, hsp, pos


def _write(info_meg, path: Path, *, eeg: bool = True, projectors: bool = True, lift_m: float = 0.0) -> Path:
    """A raw FIF: the MEG channels of ``info_meg`` (+ EEG), dig, dev->head, a bad channel, SSP, noise.

    ``lift_m`` moves the helmet up (head frame) from the test pose, for helmets that sit lower.
    """
    rng = np.random.default_rng(7)
    raws = []
    if info_meg is not None:
        pose = _dev_head_t()
        pose["trans"][2, 3] += lift_m
        with info_meg._unlock():
            info_meg["dev_head_t"] = pose
            info_meg["sfreq"] = SFREQ
        raws.append(mne.io.RawArray(np.zeros((len(info_meg["ch_names"]), N_SAMPLES)), info_meg, verbose="error"))
    if eeg:
        el, hsp, pos = _eeg_positions()
        einfo = mne.create_info(list(el), SFREQ, "eeg")
        r = mne.io.RawArray(np.zeros((len(el), N_SAMPLES)), einfo, verbose="error")
        if raws:
            raws[0].add_channels([r], force_update_info=True)
        else:
            raws.append(r)
        mont = mne.channels.make_dig_montage(ch_pos=el, nasion=pos["nasion"], lpa=pos["lpa"], rpa=pos["rpa"], hsp=hsp, coord_frame="unknown")
        raws[0].set_montage(mont, verbose="error")
    else:  # MEG only: fiducials and head-shape points (the electrode sites digitised as such)
        el, hsp, pos = _eeg_positions()
        hsp = np.concatenate([hsp, np.array(list(el.values()))])
        raws[0].set_montage(mne.channels.make_dig_montage(nasion=pos["nasion"], lpa=pos["lpa"], rpa=pos["rpa"], hsp=hsp, coord_frame="unknown"), verbose="error")
    raw = raws[0]
    if eeg:
        raw.info["bads"] = [BAD]
    picks = {t: mne.pick_types(raw.info, meg=t if t != "eeg" else False, eeg=t == "eeg", ref_meg=False) for t in ("mag", "grad", "eeg")}
    scale = {"mag": 2e-13, "grad": 4e-12, "eeg": 3e-6}
    data = np.zeros((len(raw.ch_names), N_SAMPLES))
    projs = []
    for t, idx in picks.items():
        if not len(idx):
            continue
        n = len(idx)
        mix = rng.normal(size=(n, n)) / np.sqrt(n) + np.eye(n)
        data[idx] = scale[t] * (mix @ rng.normal(size=(n, N_SAMPLES)))
        if t != "eeg":  # an environmental pattern (what an empty-room PCA projector removes), 3x the noise
            u = rng.normal(size=n)
            u /= np.linalg.norm(u)
            data[idx] += 3 * scale[t] * np.sqrt(n) * np.outer(u, np.sin(2 * np.pi * 0.7 * np.arange(N_SAMPLES) / SFREQ))
            names = [raw.ch_names[i] for i in idx]
            projs.append(mne.Projection(data=dict(nrow=1, ncol=n, row_names=None, col_names=names, data=u[None]), desc=f"PCA-{t}-v1", kind=1, active=False, explained_var=None))
    raw._data[:] = data
    if projectors:
        raw.add_proj(projs, verbose="error")
        if eeg:
            raw.set_eeg_reference(projection=True, verbose="error")
    raw.save(path, overwrite=True, verbose="error")
    return path


def _sources_csv(path: Path, n: int = 30) -> Path:
    """Template cortex points pulled 45 % towards the brain's centre (inside every sphere shell)."""
    src = template_source_space("ico4")
    rng = np.random.default_rng(5)
    idx = rng.choice(src.n_sources, n, replace=False)
    centre = src.positions_m.mean(axis=0)
    rr = centre + 0.55 * (src.positions_m[idx] - centre)
    lines = ["name,x,y,z"] + [f"s{k},{x * 1e3:.4f},{y * 1e3:.4f},{z * 1e3:.4f}" for k, (x, y, z) in enumerate(rr)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _config(tmp: Path, recording: Path, *, recording_extra: str = "", noise_extra: str = "", extra: str = "", name: str = "lab") -> Path:
    cfg = tmp / f"{name}.toml"
    cfg.write_text(
        f'[recording]\nfile = "{recording.name}"\n{recording_extra}'
        '[sensors]\nmeg_accuracy = "accurate"\n'
        f'[source_space]\nkind = "discrete"\npoints = "{_sources_csv(tmp / "points.csv").name}"\n'
        f'[noise_cov]\nmethod = "empirical"\n{noise_extra}'
        f'[bundle]\npath = "{name}.npz"\n{extra}'
    )
    return cfg


def _rdm_mag(a, b):
    na, nb = np.linalg.norm(a, axis=0), np.linalg.norm(b, axis=0)
    return np.linalg.norm(a / na - b / nb, axis=0), np.abs(na / nb - 1.0)


def _head_gain(bundle, rows, t_ht):
    """The bundle's gain rows, dipole components rotated from the template into the head frame."""
    g = np.asarray(bundle.gain)[rows]
    rot = t_ht[:3, :3]
    return (g.reshape(len(rows), -1, 3) @ rot).reshape(len(rows), -1)


def _mne_forward(info, bundle, *, meg: bool, eeg: bool | None = None):
    """MNE's forward on setup's sources, sphere and electrode sites (MEG: MEG sphere; with EEG: EEG sphere)."""
    eeg = not meg if eeg is None else eeg
    prov = bundle.provenance
    t_ht = np.array(prov["recording"]["head_to_template"]["matrix"])
    inv = np.linalg.inv(t_ht)
    parts = prov["forward"]["parts"] if prov["forward"].get("kind") == "combined" else [prov["forward"]]
    model = next(p for p in parts if p["kind"].startswith("eeg" if eeg else "meg"))
    # sources in head coordinates and an identity head->MRI transform: MNE checks sources against a
    # sphere in the MRI frame with the sphere's head-frame origin, which only agrees for the identity
    rr = bundle.sources.positions_m @ inv[:3, :3].T + inv[:3, 3]
    src = mne.setup_volume_source_space(pos=dict(rr=rr, nn=np.tile([0.0, 0.0, 1.0], (len(rr), 1))), verbose="error")
    if not eeg:
        sphere = mne.make_sphere_model(r0=inv[:3, :3] @ model["origin_m"] + inv[:3, 3], head_radius=None, verbose="error")
    else:
        radii = np.array(model["radii_m"])
        sphere = mne.make_sphere_model(
            r0=inv[:3, :3] @ model["center_m"] + inv[:3, 3], head_radius=radii[-1], relative_radii=radii / radii[-1],
            sigmas=model["conductivities_s_per_m"], verbose="error",
        )  # fmt: skip
        info = info.copy()
        centre = np.array(model["center_m"])
        for i in [i for i, t in enumerate(bundle.ch_types) if t == "eeg"]:
            # where setup put the electrode (on the template scalp), radially onto the outer sphere as
            # rtsource's series evaluates it (MNE's Berg-Scherg formula takes the position as given)
            p = bundle.channel_positions_m[i] - centre
            p = centre + p * radii[-1] / np.linalg.norm(p)
            ch = info["chs"][info["ch_names"].index(bundle.ch_names[i])]
            ch["loc"][:3] = inv[:3, :3] @ p + inv[:3, 3]
    trans = mne.transforms.Transform("head", "mri", np.eye(4))
    fwd = mne.make_forward_solution(info, trans, src, sphere, meg=meg, eeg=eeg, mindist=0.0, verbose="error")
    return fwd, t_ht


def _compare_leadfield(path: Path, bundle, *, meg: bool):
    info = mne.io.read_info(path, verbose="error")
    fwd, t_ht = _mne_forward(info, bundle, meg=meg)
    names = fwd["sol"]["row_names"]
    cols = (3 * fwd["src"][0]["vertno"][:, None] + np.arange(3)).ravel()  # the sources MNE kept
    assert len(cols) >= 0.9 * 3 * bundle.n_sources
    ours = _head_gain(bundle, [bundle.ch_names.index(c) for c in names if c in bundle.ch_names], t_ht)[:, cols]
    theirs = fwd["sol"]["data"][[i for i, c in enumerate(names) if c in bundle.ch_names]]
    return _rdm_mag(ours, theirs)


@pytest.fixture(scope="module")
def neuromag(tmp_path_factory):
    """Neuromag-306 + 60 EEG: the FIF, a -cov.fif (MNE's, with the projectors), and the bundle."""
    tmp = tmp_path_factory.mktemp("neuromag")
    path = _write(mne.channels.read_meg_canonical_info("neuromag"), tmp / "sub01_raw.fif")
    raw = mne.io.read_raw_fif(path, verbose="error")  # projectors inactive: the covariance holds what they remove
    cov = mne.compute_raw_covariance(raw, method="empirical", verbose="error")
    cov.save(tmp / "sub01-cov.fif", verbose="error")
    bundle = rtsource.setup(_config(tmp, path, noise_extra='file = "sub01-cov.fif"\n'), out=tmp / "lab.npz")
    return path, tmp, bundle, cov


def test_fif_acquisition_reads_what_setup_needs(neuromag):
    path = neuromag[0]
    acq = read_acquisition(path)
    assert acq.format == "fif" and acq.modality == "eeg+meg" and acq.sfreq == SFREQ
    assert acq.ch_types.count("grad") == 204 and acq.ch_types.count("mag") == 102 and acq.ch_types.count("eeg") == 60
    assert acq.ch_units[acq.ch_names.index("MEG 0113")] == "T/m" and acq.ch_units[acq.ch_names.index("EEG 001")] == "V"
    assert acq.bads == (BAD,)
    dig = acq.digitization
    assert dig.frame.value == "head" and dig.has_fiducials and len(dig.headshape) == 40
    assert dig.electrodes.labels == tuple(f"EEG {k:03d}" for k in range(1, 61))
    # head frame: LPA and RPA on the x axis, the nasion on y
    fid = dict(zip(dig.fiducials.labels, dig.fiducials.positions_m))
    assert abs(fid["LPA"][1]) < 1e-6 and abs(fid["NAS"][0]) < 1e-6
    descs = [p.description for p in acq.projectors]
    assert descs[:2] == ["PCA-mag-v1", "PCA-grad-v1"] and "Average EEG reference" in descs
    assert not any(p.active for p in acq.projectors)
    assert {p.kind for p in acq.projectors} == {"empty_room", "average_eeg"}
    assert acq.meg.n_channels == 306 and np.allclose(acq.dev_head_t.matrix, _dev_head_t()["trans"])


def test_neuromag_setup_leadfields_match_mne(neuromag):
    path, _, bundle, _ = neuromag
    assert bundle.ch_types.count("eeg") == 59 and BAD not in bundle.ch_names
    assert bundle.ch_types.count("grad") == 204 and bundle.ch_types.count("mag") == 102
    assert bundle.sfreq == SFREQ
    rec = bundle.provenance["recording"]
    assert rec["path"].endswith("sub01_raw.fif") and rec["bads"] == [BAD]
    rdm, mag = _compare_leadfield(path, bundle, meg=True)
    assert rdm.max() <= RDM_MAX and mag.max() <= MAG_MAX, (rdm.max(), mag.max())
    rdm, mag = _compare_leadfield(path, bundle, meg=False)
    assert rdm.max() <= RDM_MAX and mag.max() <= MAG_MAX, (rdm.max(), mag.max())


@pytest.mark.parametrize("system", ["ctf275-grade3", "opm-kernel-flux"])
def test_other_meg_systems_setup_leadfields_match_mne(tmp_path, system):
    info = _ctf_info(grade=3) if system.startswith("ctf") else _opm_info(8201)
    path = _write(info, tmp_path / f"{system}_raw.fif", eeg=False, lift_m=0.012 if system.startswith("ctf") else 0.02)
    bundle = rtsource.setup(_config(tmp_path, path), out=tmp_path / "lab.npz")
    assert "eeg" not in bundle.ch_types and bundle.reference == "none"
    if system.startswith("ctf"):
        assert bundle.provenance["forward"]["compensation_grade"] == 3
    rdm, mag = _compare_leadfield(path, bundle, meg=True)
    assert rdm.max() <= RDM_MAX and mag.max() <= MAG_MAX, (system, rdm.max(), mag.max())


def _apply(bundle, x):
    y = x @ np.asarray(bundle.kernel).T
    if bundle.n_orient == 3:
        y = np.sqrt((y.reshape(len(y), -1, 3) ** 2).sum(axis=2))
    return y / np.asarray(bundle.noise_norm)


def test_dspm_operator_equals_mne_with_projectors(neuromag):
    """EEG + MEG: MNE's inverse on setup's own lead field, the -cov.fif and the recording's projectors."""
    path, _, bundle, cov = neuromag
    raw = mne.io.read_raw_fif(path, preload=True, verbose="error")
    # the SSP projectors reached the operator (the rank of each whitening block) and the provenance
    assert [p["description"] for p in bundle.provenance["projectors"]] == ["PCA-mag-v1", "PCA-grad-v1", "Average EEG reference"]
    assert bundle.params.block_ranks == {"eeg": 59 - 1, "meg": 306 - 2}
    fwd, t_ht = _mne_forward(raw.info, bundle, meg=True, eeg=True)
    fwd = mne.pick_channels_forward(fwd, list(bundle.ch_names), ordered=True, verbose="error")
    assert fwd["sol"]["row_names"] == list(bundle.ch_names) and fwd["nsource"] == bundle.n_sources
    fwd["sol"]["data"] = _head_gain(bundle, list(range(len(bundle.ch_names))), t_ht)  # the same forward
    fwd["_orig_sol"] = fwd["sol"]["data"].copy()
    inv = mne.minimum_norm.make_inverse_operator(raw.info, fwd, cov, loose=1.0, depth=0.8, verbose="error")
    stc = mne.minimum_norm.apply_inverse_raw(raw, inv, 1.0 / 9.0, "dSPM", verbose="error")
    ours = _apply(bundle, raw.get_data(picks=list(bundle.ch_names)).T).T
    err = np.abs(ours - stc.data).max() / np.abs(stc.data).max()
    assert err <= 1e-6, err


def test_float32_stream_equals_float64_offline_with_projectors(neuromag):
    """Raw (unprojected) data, the environmental patterns 3x the noise, through the float32 stream
    (the Estimator: what `rtsource run` applies) against the float64 application to the same
    samples projected by MNE-Python (``apply_proj``): the reference does not come from the
    bundle, so an operator without the projectors fails (relative error ~0.5)."""
    path, _, bundle, _ = neuromag
    raw = mne.io.read_raw_fif(path, preload=True, verbose="error")
    raw._data[:] = raw._data.astype(np.float32)  # the samples as the float32 stream carries them
    x = raw.get_data(picks=list(bundle.ch_names)).T
    projected = raw.copy().apply_proj(verbose="error").get_data(picks=list(bundle.ch_names)).T
    est = rtsource.Estimator(bundle, bundle.ch_names, list(bundle.ch_units), ch_types=list(bundle.ch_types))
    streamed = est.process(x.astype(np.float32)).sources
    offline = _apply(bundle, projected)
    err = np.abs(streamed - offline).max() / np.abs(offline).max()
    assert err <= 1e-5, err


def test_cli_setup_with_trans_and_cov_files(neuromag, tmp_path, monkeypatch, capsys):
    """``rtsource setup CONFIG --recording FILE`` (relative to the current directory), the head placed
    by an MNE -trans.fif instead of a fit and the covariance an MNE -cov.fif ([noise_cov] source =
    'file'): the MEG lead field is the fitted setup's for the same transform, the projectors the
    recording's and the covariance's."""
    from rtsource.cli import main

    path, tmp, fitted, _ = neuromag
    t_ht = np.array(fitted.provenance["recording"]["head_to_template"]["matrix"])
    mne.write_trans(tmp_path / "sub01-trans.fif", mne.transforms.Transform("head", "mri", t_ht), overwrite=True, verbose="error")
    cfg = tmp_path / "plain.toml"
    cfg.write_text(
        f'[sensors]\nmeg_accuracy = "accurate"\n[source_space]\nkind = "discrete"\npoints = "{tmp / "points.csv"}"\n'
        '[recording]\nmodality = "meg"\n[coreg]\ntrans = "sub01-trans.fif"\n'
        f'[noise_cov]\nsource = "file"\npath = "{tmp / "sub01-cov.fif"}"\n'
    )
    monkeypatch.chdir(path.parent)
    assert main(["setup", str(cfg), "--recording", path.name, "--out", str(tmp_path / "cli.npz")]) == 0
    assert "0 EEG + 306 MEG channels" in capsys.readouterr().out
    bundle = rtsource.load_bundle(tmp_path / "cli.npz")
    assert bundle.ch_types.count("grad") == 204 and "eeg" not in bundle.ch_types and bundle.sfreq == SFREQ
    assert np.allclose(bundle.provenance["recording"]["head_to_template"]["matrix"], t_ht, atol=1e-6)  # float32 in the file
    rows = [fitted.ch_names.index(c) for c in bundle.ch_names]
    assert np.allclose(bundle.gain, np.asarray(fitted.gain)[rows], rtol=1e-5, atol=1e-5 * np.abs(bundle.gain).max())
    assert [p["description"] for p in bundle.provenance["projectors"]] == ["PCA-mag-v1", "PCA-grad-v1"]
    assert bundle.params.block_ranks == {"meg": 304}


def test_read_acquisition_refuses_what_it_cannot_read(tmp_path):
    with pytest.raises(rtsource.errors.StreamError, match="does not exist"):
        read_acquisition(tmp_path / "missing.fif")


def test_brainvision_recording_with_a_positions_file(tmp_path):
    """EEG data without positions (BrainVision, read by rtsource's own reader) + a positions table."""
    from rtsource.recordings.brainvision import read_brainvision

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pos = mne.channels.make_standard_montage("standard_1005").get_positions()
    names = ["Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8", "T7", "C3", "Cz", "C4", "T8", "P7", "P3", "Pz", "P4", "P8", "O1", "Oz", "O2"]
    chans = names + ["Aux1"]  # no position: left out of the operator
    rows = [f"{lab},{x * 1e3:.2f},{y * 1e3:.2f},{z * 1e3:.2f}" for lab, (x, y, z) in
            [("NAS", pos["nasion"]), ("LPA", pos["lpa"]), ("RPA", pos["rpa"])] + [(n.upper(), pos["ch_pos"][n]) for n in names]]  # fmt: skip
    (tmp_path / "cap.csv").write_text("label,x (mm),y (mm),z (mm)\n" + "\n".join(rows) + "\n")
    n = 2000
    data = np.random.default_rng(2).integers(-2000, 2000, size=(n, len(chans))).astype("<i2")
    (tmp_path / "rec.eeg").write_bytes(data.tobytes())
    info = "".join(f"Ch{i + 1}={c},,0.1,µV\n" for i, c in enumerate(chans))
    (tmp_path / "rec.vhdr").write_text(
        "Brain Vision Data Exchange Header File Version 1.0\n\n[Common Infos]\nCodepage=UTF-8\nDataFile=rec.eeg\n"
        f"DataFormat=BINARY\nDataOrientation=MULTIPLEXED\nNumberOfChannels={len(chans)}\nSamplingInterval=4000\n\n"
        f"[Binary Infos]\nBinaryFormat=INT_16\n\n[Channel Infos]\n{info}",
        encoding="utf-8",
    )
    acq = read_acquisition(tmp_path / "rec.vhdr", tmp_path / "cap.csv")
    assert acq.sfreq == 250.0 and acq.names_of("eeg") == tuple(chans)
    assert acq.digitization.electrodes.labels == tuple(names) and acq.digitization.has_fiducials  # labels matched to the channels
    cfg = tmp_path / "bv.toml"
    cfg.write_text(
        '[recording]\nfile = "rec.vhdr"\npositions = "cap.csv"\n[source_space]\nkind = "discrete"\n'
        f'points = "{_sources_csv(tmp_path / "points.csv", n=10).name}"\n[noise_cov]\nmethod = "empirical"\n'
    )
    bundle = rtsource.setup(cfg)
    assert bundle.ch_names == tuple(names) and bundle.sfreq == 250.0 and bundle.reference == "average"
    assert any("Aux1" in note or "without a position" in note for note in bundle.provenance["recording"]["notes"])
    x = read_brainvision(tmp_path / "rec.vhdr", reader="builtin")
    assert x.n_samples == n
    # LCMV: the data covariance from the same samples (no stream)
    cfg.write_text(cfg.read_text() + '[inverse]\nmethod = "LCMV"\n[data_cov]\nmethod = "empirical"\n')
    lcmv = rtsource.setup(cfg)
    assert lcmv.method == "LCMV" and lcmv.data_cov is not None and lcmv.ch_names == tuple(names)


def test_noise_covariance_from_mne_applies_its_projectors():
    from rtsource.interop.mne_bridge import noise_covariance_from_mne

    names = [f"MEG{i}" for i in range(5)]
    rng = np.random.default_rng(4)
    a = rng.normal(size=(5, 5))
    c = a @ a.T * 1e-26
    u = rng.normal(size=5)
    u /= np.linalg.norm(u)
    proj = mne.Projection(data=dict(nrow=1, ncol=5, row_names=None, col_names=names, data=u[None]), desc="PCA-v1", kind=1, active=False, explained_var=None)
    cov = mne.Covariance(c, names, bads=[], projs=[proj], nfree=100)
    p = np.eye(5) - np.outer(u, u)
    order = names[::-1]
    got = noise_covariance_from_mne(cov, order)
    assert got.ch_names == tuple(order)
    assert np.allclose(got.data, (p @ c @ p)[::-1, ::-1], rtol=1e-10, atol=1e-40)
    assert np.allclose(noise_covariance_from_mne(cov, names, apply_projectors=False).data, c)


def test_bad_channel_rebuild_keeps_the_projectors(neuromag):
    """A run-time rebuild without some channels applies the projectors again on the channels left."""
    from rtsource.inverse.rebuild import rebuild_without_channels

    bundle = neuromag[2]
    new = rebuild_without_channels(bundle, ["MEG 0113", "EEG 001"])
    assert new.params.block_ranks == {"eeg": 58 - 1, "meg": 305 - 2}
    assert new.provenance["projectors"] == bundle.provenance["projectors"]
    acq = read_acquisition(neuromag[0])
    for p in acq.projectors[:2]:  # the MEG patterns, restricted to the remaining channels, are not seen
        u = np.zeros(len(new.ch_names))
        for name, value in zip(p.ch_names, p.vectors[0]):
            if name in new.ch_names:
                u[new.ch_names.index(name)] = value
        k = np.asarray(new.kernel)
        assert np.abs(k @ u).max() <= 1e-9 * np.abs(k).max() * np.abs(u).max() * len(u)


def test_meg_array_of_a_non_fif_acquisition_is_named_by_a_json_copy(neuromag):
    """A BIDS MEG session is a directory: [sensors] meg_array then names a JSON copy of its array."""
    import dataclasses

    from rtsource.pipeline.recording import _meg_array_spec
    from rtsource.sensors.meg import load_meg_array

    acq = read_acquisition(neuromag[0])
    spec = _meg_array_spec(dataclasses.replace(acq, format="bids", path=str(neuromag[1])))
    assert spec.endswith(".json")
    copy, original = load_meg_array(spec, accuracy="accurate"), load_meg_array(neuromag[0], accuracy="accurate")
    assert copy.ch_names == original.ch_names and copy.coil_types == original.coil_types
    assert np.allclose(copy.points_m, original.points_m, atol=1e-9) and np.allclose(copy.dev_head_t.matrix, original.dev_head_t.matrix)
