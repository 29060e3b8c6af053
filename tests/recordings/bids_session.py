"""A BIDS EEG session written from the standard 10-20 positions, for the reader and setup tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rtsource.geometry.head_frames import head_from_fiducials
from rtsource.sensors.montage import standard_montage

CHANNELS = ("Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8", "T7", "C3", "Cz", "C4", "T8", "P7", "P3", "Pz", "P4", "P8", "O1", "Oz", "O2")


def write_bids_eeg_session(root: Path, *, system: str = "CapTrak", sfreq: float = 250.0, bads=("T8",), unit: str = "µV") -> Path:
    """``root/sub-01/ses-1/eeg/`` with channels.tsv, eeg.json, electrodes.tsv, coordsystem.json.

    Positions: the standard 10-20 electrodes on the template, moved into the head frame of
    the template's fiducials (what a CapTrak digitiser gives), in mm. Returns the session dir.
    """
    m = standard_montage("standard_1020").pick(list(CHANNELS))
    to_head = head_from_fiducials(m.fiducials)
    el = to_head.apply_m(m.electrodes.positions_m) * 1e3
    fid = to_head.apply_m(m.fiducials.positions_m) * 1e3
    eeg = root / "sub-01" / "ses-1" / "eeg"
    eeg.mkdir(parents=True, exist_ok=True)
    stem = "sub-01_ses-1"
    rows = ["name\ttype\tunits\tstatus\tsampling_frequency"]
    rows += [f"{n}\tEEG\t{unit}\t{'bad' if n in bads else 'good'}\t{sfreq:g}" for n in CHANNELS]
    rows += [f"VEOG\tVEOG\t{unit}\tgood\t{sfreq:g}", f"STI\tTRIG\tn/a\tgood\t{sfreq:g}"]
    (eeg / f"{stem}_task-rest_channels.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (eeg / f"{stem}_task-rest_eeg.json").write_text(json.dumps({"TaskName": "rest", "SamplingFrequency": sfreq, "EEGReference": "Cz"}))
    lines = ["name\tx\ty\tz"] + [f"{n}\t{p[0]:.2f}\t{p[1]:.2f}\t{p[2]:.2f}" for n, p in zip(CHANNELS, el)]
    (eeg / f"{stem}_electrodes.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    doc = {
        "EEGCoordinateSystem": system,
        "EEGCoordinateUnits": "mm",
        "AnatomicalLandmarkCoordinates": {k: np.round(p, 2).tolist() for k, p in zip(("NAS", "LPA", "RPA"), fid)},
        "AnatomicalLandmarkCoordinateSystem": system,
        "AnatomicalLandmarkCoordinateUnits": "mm",
    }
    (eeg / f"{stem}_coordsystem.json").write_text(json.dumps(doc, indent=1))
    return root / "sub-01" / "ses-1"
