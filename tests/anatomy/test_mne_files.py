"""MNE-Python's -trans.fif and -fiducials.fif, read natively, against MNE-Python's own reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from rtsource.anatomy.mne_files import read_fiducials_fif, read_trans_fif
from rtsource.errors import GeometryError
from rtsource.geometry import Frame

mne = pytest.importorskip("mne", reason="MNE-Python is the reference reader: pip install rtsource[peers]")


@pytest.mark.parametrize("name", ["sub-trans.fif", "sub-trans.fif.gz"])
def test_trans_written_by_mne(tmp_path, name):
    m = np.eye(4)
    m[:3, :3] = Rotation.from_euler("xyz", [3, -7, 12], degrees=True).as_matrix()
    m[:3, 3] = [0.002, -0.015, 0.041]
    path = tmp_path / name
    mne.write_trans(path, mne.transforms.Transform("head", "mri", m), overwrite=True)
    t = read_trans_fif(path)
    assert t.from_frame == Frame.HEAD and t.to_frame == Frame.MRI
    assert np.allclose(t.matrix, m, atol=1e-6)


def test_fiducials_shipped_with_mne():
    path = Path(mne.__file__).parent / "data" / "fsaverage" / "fsaverage-fiducials.fif"
    got = read_fiducials_fif(path)
    pts, frame = mne.io.read_fiducials(path)
    theirs = {d["ident"]: np.asarray(d["r"]) for d in pts}
    assert got.frame == Frame.MRI and frame == 5
    assert np.allclose(got.positions_m, [theirs[2], theirs[1], theirs[3]], atol=1e-7)


def test_not_fif_or_no_transform(tmp_path):
    junk = tmp_path / "x-trans.fif"
    junk.write_bytes(b"hello")
    with pytest.raises(GeometryError, match="not a FIF file"):
        read_trans_fif(junk)
    with pytest.raises(GeometryError, match="no coordinate transform"):
        read_trans_fif(Path(mne.__file__).parent / "data" / "fsaverage" / "fsaverage-fiducials.fif")
    cut = tmp_path / "cut-trans.fif"
    full = tmp_path / "full-trans.fif"
    mne.write_trans(full, mne.transforms.Transform("head", "mri", np.eye(4)), overwrite=True)
    cut.write_bytes(full.read_bytes()[:-30])
    with pytest.raises(GeometryError, match="past the end"):
        read_trans_fif(cut)
