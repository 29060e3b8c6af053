"""End to end over real LSL on loopback: a pushed EEG stream -> `rtsource run` -> a consumer.

The loop runs as the real command in its own process. The test pushes 20 s of 64-channel
500 Hz data (faster than real time) and checks that the published source time courses equal
the operator applied offline to the same samples (float32 tolerance), that every sample
comes out exactly once with its own timestamp, and that the same holds when the stream's
channels are shuffled or it carries extra channels. Bad streams must fail with clear errors.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from rtsource.build import build_bundle
from rtsource.bundle import load_bundle, save_bundle
from rtsource.config import NoiseCovSettings, Settings
from rtsource.sensors.montage import CAP_64

from .lsl_helpers import Collector, eeg_outlet, unique

SFREQ = 500.0
N_SAMPLES = 10000  # 20 s, more than the outlets' default 10 s buffer; pushed 10x faster than real time


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory):
    s = Settings()
    s = dataclasses.replace(s, noise_cov=NoiseCovSettings(source="ad_hoc"))
    b = build_bundle(s, sfreq=SFREQ)
    return save_bundle(b, tmp_path_factory.mktemp("e2e") / "bundle.npz")


def start_run(bundle_path, in_name, out_name, *extra):
    # The input comes 10x faster than real time: the output outlets must keep more than the
    # default 10 s for a consumer that lags ([output] max_buffered_s says to raise it then).
    config = bundle_path.parent / "fast_replay.toml"
    config.write_text("[output]\nmax_buffered_s = 360.0\n")
    cmd = [sys.executable, "-m", "rtsource.cli", "run", str(bundle_path), "--config", str(config), "--stream-name", in_name, "--stream-type", "EEG",
           "--outlet-name", out_name, "--idle-timeout", "4", "--resolve-timeout", "30", *extra]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def eeg_like(rng, n, n_chan):
    """Correlated, drifting, microvolt-scale data (not just white noise)."""
    common = np.cumsum(rng.normal(size=(n, 1)), axis=0) * 0.5
    return (rng.normal(size=(n, n_chan)) * 8.0 + common + rng.normal(size=n_chan) * 20).astype(np.float32)


@pytest.mark.parametrize("layout", ["ordered", "shuffled", "shuffled+extra"])
def test_stream_through_rtsource_run_equals_offline(bundle_path, layout):
    bundle = load_bundle(bundle_path)
    rng = np.random.default_rng(abs(hash(layout)) % 2**32)
    names = list(CAP_64)
    if "shuffled" in layout:
        rng.shuffle(names)
    types = ["EEG"] * len(names)
    if "extra" in layout:
        names += ["EOG1", "TRIGGER", "ACC_X"]
        types += ["EOG", "MISC", "ACC"]
    in_name, out_name = unique("e2e-eeg"), unique("e2e-src")
    outlet = eeg_outlet(in_name, names, sfreq=SFREQ, types=types)
    proc = start_run(bundle_path, in_name, out_name)
    try:
        collector = Collector(out_name, timeout=60)
        assert outlet.wait_for_consumers(timeout=30), "rtsource run never subscribed to the input"
        data_uv = eeg_like(rng, N_SAMPLES, len(names))
        t0 = 1000.0 + rng.uniform()
        stamps = t0 + np.arange(N_SAMPLES) / SFREQ
        for start in range(0, N_SAMPLES, 10):
            outlet.push_chunk(data_uv[start : start + 10], stamps[start : start + 10].tolist())
            if start % 1000 == 0:
                time.sleep(0.01)  # 10x faster than real time, in chunks of 10 like an amplifier
        deadline = time.monotonic() + 120
        while collector.n_samples < N_SAMPLES and time.monotonic() < deadline:
            time.sleep(0.2)
        out_stdout, out_stderr = proc.communicate(timeout=60)
        collector.stop()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out_stderr

    # exactly once, in order, with the input's own timestamps
    stamps_out = np.concatenate(collector.stamps)
    assert len(stamps_out) == N_SAMPLES
    assert np.array_equal(stamps_out, stamps), "output timestamps differ from input timestamps"
    assert "lost                         0" in out_stdout
    if "extra" in layout:
        assert "3 extra channel(s) ignored: EOG1, TRIGGER, ACC_X" in out_stdout

    # equal to the operator applied offline (bundle channel order, volts)
    order = [names.index(c) for c in bundle.ch_names]
    x_v = data_uv[:, order].astype(np.float64) * 1e-6
    row = 0
    worst = 0.0
    for chunk in collector.chunks:
        expected = apply_inverse_bundle(bundle, x_v[row : row + len(chunk)])
        scale = np.abs(expected).max()
        worst = max(worst, float(np.abs(chunk - expected).max() / scale))
        row += len(chunk)
    assert worst < 1e-4, f"max deviation {worst:.2e} of the chunk's peak"

    # the output describes itself
    root = ET.fromstring(collector.info.as_xml())
    chans = root.findall("desc/channels/channel")
    assert len(chans) == bundle.n_sources == collector.info.channel_count()
    assert chans[0].find("label").text == "lh_00000" and chans[0].find("type").text == "source_pooled"
    assert root.find("desc/rtsource/method").text == "dSPM"
    assert root.find("desc/rtsource/source_frame").text == "template"
    loc = chans[10].find("location")
    assert np.allclose([float(loc.find(a).text) for a in "XYZ"], bundle.sources.positions_m[10] * 1e3, atol=1e-3)


def apply_inverse_bundle(bundle, x_v):
    """The NumPy twin: pooled magnitude over the 3 rows of each source / noise norm."""
    y = x_v @ bundle.kernel.T
    if bundle.n_orient == 3:
        y = np.sqrt((y.reshape(len(y), -1, 3) ** 2).sum(axis=2))
    return y / bundle.noise_norm


def run_expecting_error(bundle_path, names, *, sfreq=SFREQ, unit="microvolts"):
    in_name = unique("bad-eeg")
    outlet = eeg_outlet(in_name, names, sfreq=sfreq, unit=unit)
    proc = start_run(bundle_path, in_name, unique("bad-src"))
    try:
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    del outlet
    return proc.returncode, err


def test_missing_channels_fail_clearly(bundle_path):
    names = [c for c in CAP_64 if c not in ("Cz", "Oz")]
    code, err = run_expecting_error(bundle_path, names)
    assert code == 2
    assert "2 channel(s) not found" in err and "Cz" in err and "Oz" in err and "Traceback" not in err


def test_wrong_rate_fails_clearly(bundle_path):
    code, err = run_expecting_error(bundle_path, list(CAP_64), sfreq=250.0)
    assert code == 2
    assert "250 Hz" in err and "500 Hz" in err and "rebuild the bundle" in err


def test_missing_units_fail_clearly(bundle_path):
    code, err = run_expecting_error(bundle_path, list(CAP_64), unit="")
    assert code == 2 and "--assume-unit" in err


def test_no_stream_fails_clearly(bundle_path):
    proc = subprocess.run(
        [sys.executable, "-m", "rtsource.cli", "run", str(bundle_path), "--stream-name", unique("nobody"), "--resolve-timeout", "1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2 and "no LSL stream matching" in proc.stderr
