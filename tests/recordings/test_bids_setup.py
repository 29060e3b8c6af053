"""A BIDS EEG session directory sets up with no other input: setup with `[recording] file`.

Needs setup's recording input (``[recording] file``, ``rtsource.recordings.read_acquisition``),
which dispatches a directory to :func:`rtsource.recordings.read_bids_acquisition`; skipped
until that is part of the package.
"""

from __future__ import annotations

import pytest

from rtsource.bundle import load_bundle
from rtsource.config import Settings
from rtsource.pipeline.setup import setup

from .bids_session import CHANNELS, write_bids_eeg_session

pytestmark = pytest.mark.skipif(not hasattr(Settings(), "recording"), reason="setup from a recording ([recording] file) is not in this tree yet")


def test_bids_eeg_session_sets_up_with_no_other_input(tmp_path):
    session = write_bids_eeg_session(tmp_path, sfreq=250.0, bads=("T8",))
    cfg = tmp_path / "bids.toml"
    cfg.write_text(
        f'[recording]\nfile = "{session.relative_to(tmp_path)}"\n'
        '[noise_cov]\nsource = "ad_hoc"\n'  # a BIDS directory without data: no rest samples to estimate from
        '[source_space]\nkind = "volume"\nvolume_spacing_mm = 20.0\n'
        '[coreg]\nqc_png = "qc.png"\n'
        '[bundle]\npath = "bids.npz"\n'
    )
    said: list[str] = []
    setup(cfg, out=tmp_path / "bids.npz", progress=said.append)
    report = "\n".join(said)
    bundle = load_bundle(tmp_path / "bids.npz")
    # every good EEG channel of channels.tsv, at the rate of eeg.json; the bad one left out
    assert bundle.ch_names == tuple(c for c in CHANNELS if c != "T8") and set(bundle.ch_types) == {"eeg"}
    assert bundle.sfreq == 250.0
    # the CapTrak positions were checked and coregistered, and setup says how well
    assert "distance to the scalp RMS" in report and "QC picture:" in report and "PASSED" in report, report
    assert (tmp_path / "qc.png").exists()
