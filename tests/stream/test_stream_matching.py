"""Stream matching by modality: `[stream] type = "auto"` looks for the type the bundle implies.

The acceptance run is real: an MEG FIF written with MNE-Python is played by `rtsource replay`
in one process and found by `rtsource run BUNDLE` (an MEG bundle) in another, with no stream
options.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from rtsource.bundle import save_bundle
from rtsource.errors import StreamError
from rtsource.stream.inlet import StreamSelector, modality_of, resolve_stream

from ..conftest import make_bundle
from .lsl_helpers import eeg_outlet, unique


def test_auto_type_follows_the_modality():
    auto = StreamSelector(type="auto")
    assert auto.for_modality("eeg").predicate() == "type='EEG'"
    assert auto.for_modality("meg").predicate() == "type='MEG'"
    assert auto.for_modality("eeg+meg").predicate() == "(type='EEG' or type='MEG')"
    assert StreamSelector("amp", "EEG").for_modality("meg").predicate() == "name='amp' and type='EEG'"  # a given type wins
    assert modality_of(("mag", "grad", "eeg")) == "eeg+meg" and modality_of(("grad",)) == "meg"


def test_nothing_matching_says_why_and_what_was_seen():
    name = unique("eeg-only")
    outlet = eeg_outlet(name, ["Cz", "Pz"])
    try:
        with pytest.raises(StreamError) as exc:
            resolve_stream(StreamSelector(type="auto").for_modality("meg"), timeout=0.5)
        msg = str(exc.value)
        assert "type='MEG'" in msg and "the operator is MEG" in msg and "[stream] type" in msg
        assert f"name={name!r} type='EEG'" in msg  # what it saw
        # an EEG+MEG operator reads either type
        info = resolve_stream(StreamSelector(name=name, type="auto").for_modality("eeg+meg"), timeout=5.0)
        assert info.name() == name
    finally:
        del outlet


def test_replay_of_an_meg_fif_is_found_by_run_without_flags(tmp_path):
    mne = pytest.importorskip("mne")
    names = [f"MEG{i:03d}1" for i in range(1, 9)]
    sfreq = 250.0
    rng = np.random.default_rng(0)
    raw = mne.io.RawArray(rng.normal(size=(8, int(20 * sfreq))) * 1e-13, mne.create_info(names, sfreq, "mag"), verbose="error")
    stem = unique("megrec")
    fif = tmp_path / f"{stem}_raw.fif"
    raw.save(fif, verbose="error")
    bundle = make_bundle(n_chan=8, ch_names=names, ch_types=("mag",) * 8, ch_units=("T",) * 8, reference="none", sfreq=sfreq)
    bundle_path = save_bundle(bundle, tmp_path / "meg.npz")
    out_name = unique("meg-out")
    eeg = eeg_outlet(unique("eeg-also-visible"), ["Cz", "Pz"])  # an EEG amplifier on the network too
    replay = subprocess.Popen([sys.executable, "-m", "rtsource.cli", "replay", str(fif), "--loop"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert replay.stdout.readline().startswith("replaying"), replay.stderr.read() if replay.poll() is not None else ""
        run = subprocess.run(
            [sys.executable, "-m", "rtsource.cli", "run", str(bundle_path), "--outlet-name", out_name, "--duration", "2"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        replay.terminate()
        replay.wait(timeout=20)
        del eeg
    assert run.returncode == 0, run.stderr
    line = next(ln for ln in run.stdout.splitlines() if ln.startswith("input:"))
    assert stem in line and "MEG" in line, run.stdout
