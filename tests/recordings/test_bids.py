"""BIDS session sidecars read natively into an Acquisition (rtsource.recordings.bids)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rtsource.errors import FrameError, StreamError, UnitError
from rtsource.geometry import Frame
from rtsource.recordings import read_bids_acquisition

from .bids_session import CHANNELS, write_bids_eeg_session


def test_eeg_session_channels_units_bads_rate_and_positions(tmp_path):
    session = write_bids_eeg_session(tmp_path)
    for path in (session, session.parent, session / "eeg", next((session / "eeg").glob("*_eeg.json"))):
        acq = read_bids_acquisition(path)
        assert acq.format == "bids" and acq.sfreq == 250.0 and acq.modality == "eeg"
        assert acq.ch_names == CHANNELS + ("VEOG", "STI")
        assert acq.ch_types == ("eeg",) * len(CHANNELS) + ("eog", "stim")
        assert acq.ch_units == ("V",) * (len(CHANNELS) + 1) + ("",)  # µV -> V; n/a for the trigger
        assert acq.bads == ("T8",)
    dig = acq.digitization
    assert dig.frame == Frame.HEAD and dig.has_fiducials and dig.electrodes.labels == CHANNELS
    # the head frame really is the one the landmarks define: LPA and RPA on x, NAS on y
    nas, lpa, rpa = dig.fiducials.positions_m
    assert abs(nas[0]) < 1e-4 and abs(lpa[1]) < 1e-4 and rpa[0] > 0.05
    assert any("CapTrak" in n and "checked against NAS, LPA and RPA" in n for n in acq.notes)


def test_channel_units_must_fit_their_type(tmp_path):
    session = write_bids_eeg_session(tmp_path, unit="fT")
    with pytest.raises(UnitError, match=r"channel 'Fp1' of type EEG has units 'fT'.*measured in V"):
        read_bids_acquisition(session)


def test_several_recordings_need_a_file_to_choose(tmp_path):
    session = write_bids_eeg_session(tmp_path)
    eeg = session / "eeg"
    other = eeg / "sub-01_ses-1_task-oddball_channels.tsv"
    other.write_text((eeg / "sub-01_ses-1_task-rest_channels.tsv").read_text().replace("\t250", "\t500"))
    with pytest.raises(StreamError, match="holds 2 recordings"):
        read_bids_acquisition(session)
    # the electrodes and coordsystem (no task entity) are inherited by both recordings
    acq = read_bids_acquisition(other)
    assert acq.digitization.electrodes.labels == CHANNELS
    assert acq.sfreq == 500.0  # task-rest's eeg.json is not inherited: the rate of channels.tsv
    assert read_bids_acquisition(eeg / "sub-01_ses-1_task-rest_channels.tsv").sfreq == 250.0


def test_unsupported_and_contradicted_coordinate_systems_are_refused(tmp_path):
    with pytest.raises(FrameError, match=r"'Talairach' is not one rtsource maps.*supported: CapTrak"):
        read_bids_acquisition(write_bids_eeg_session(tmp_path / "a", system="Talairach"))
    # 'Other' (a digitiser's own frame) is read when its landmarks can align it
    acq = read_bids_acquisition(write_bids_eeg_session(tmp_path / "c", system="Other"))
    assert acq.digitization.frame == Frame.UNKNOWN and any("aligned by its landmarks" in n for n in acq.notes)
    # head-frame (RAS) positions declared as CTF (ALS)
    with pytest.raises(FrameError, match="do not fit the declared coordinate system 'CTF'"):
        read_bids_acquisition(write_bids_eeg_session(tmp_path / "b", system="CTF"))


def test_meg_session_landmarks_coils_and_headshape(tmp_path):
    meg = tmp_path / "sub-02" / "meg"
    meg.mkdir(parents=True)
    rows = ["name\ttype\tunits\tstatus", "MEG0111\tMEGMAG\tfT\tgood", "MEG0112\tMEGGRADPLANAR\tfT/cm\tbad", "BG1\tMEGREFMAG\tT\tgood",
            "EEG001\tEEG\tuV\tgood", "STI101\tTRIG\tn/a\tgood"]  # fmt: skip
    (meg / "sub-02_task-rest_channels.tsv").write_text("\n".join(rows) + "\n")
    (meg / "sub-02_task-rest_meg.json").write_text(json.dumps({"SamplingFrequency": 1000}))
    # a plain 3-column head-shape file in cm, in the MEG (Neuromag head) frame
    rng = np.random.default_rng(0)
    d = rng.normal(size=(30, 3))
    d[:, 2] = np.abs(d[:, 2])
    hs = 9.0 * d / np.linalg.norm(d, axis=1, keepdims=True)
    np.savetxt(meg / "sub-02_headshape.txt", hs, fmt="%.3f")
    doc = {
        "MEGCoordinateSystem": "ElektaNeuromag", "MEGCoordinateUnits": "m",
        "HeadCoilCoordinates": {"coil1": [0.03, 0.09, 0.05], "coil2": [-0.03, 0.09, 0.05]}, "HeadCoilCoordinateSystem": "ElektaNeuromag",
        "AnatomicalLandmarkCoordinates": {"NAS": [0.0, 0.1, 0.0], "LPA": [-0.075, 0.0, 0.0], "RPA": [0.075, 0.0, 0.0]},
        "DigitizedHeadPoints": "sub-02_headshape.txt", "DigitizedHeadPointsCoordinateUnits": "cm",
    }  # fmt: skip
    (meg / "sub-02_coordsystem.json").write_text(json.dumps(doc))
    acq = read_bids_acquisition(tmp_path / "sub-02")
    assert acq.ch_types == ("mag", "grad", "ref_meg", "eeg", "stim") and acq.ch_units == ("T", "T/m", "T", "V", "")
    assert acq.modality == "eeg+meg" and acq.bads == ("MEG0112",) and acq.sfreq == 1000.0
    dig = acq.digitization
    assert dig.frame == Frame.HEAD and dig.has_fiducials and dig.hpi.labels == ("coil1", "coil2")
    assert len(dig.headshape) == 30 and np.allclose(np.linalg.norm(dig.headshape.positions_m, axis=1), 0.09, atol=1e-4)
    assert any("ElektaNeuromag" in n and "checked" in n for n in acq.notes)
    assert any("vendor data file" in n for n in acq.notes)


def test_meg_session_with_a_fif_gives_the_sensor_array(tmp_path):
    mne = pytest.importorskip("mne")
    info = mne.channels.read_meg_canonical_info("neuromag")
    meg = tmp_path / "sub-03" / "ses-01" / "meg"
    meg.mkdir(parents=True)
    mne.io.RawArray(np.zeros((len(info["ch_names"]), 10)), info, verbose="error").save(meg / "sub-03_ses-01_task-rest_meg.fif", verbose="error")
    kinds = {"mag": ("MEGMAG", "T"), "grad": ("MEGGRADPLANAR", "T/m")}
    rows = ["name\ttype\tunits"] + [f"{n}\t{kinds[t][0]}\t{kinds[t][1]}" for n, t in zip(info["ch_names"], info.get_channel_types())]
    (meg / "sub-03_ses-01_task-rest_channels.tsv").write_text("\n".join(rows) + "\n")
    (meg / "sub-03_ses-01_task-rest_meg.json").write_text(json.dumps({"SamplingFrequency": 1000.0}))
    acq = read_bids_acquisition(tmp_path / "sub-03", accuracy="point")
    assert acq.modality == "meg" and acq.meg is not None and acq.meg.n_channels == 306 and acq.meg.accuracy == "point"
    assert acq.ch_types.count("grad") == 204 and any("MEG sensors from sub-03_ses-01_task-rest_meg.fif" in n for n in acq.notes)
