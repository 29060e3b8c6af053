"""Recordings replayed as LSL streams: the samples arrive exactly, with names, types, units.

Files are written in the tests (XDF with the writer in test_recording.py, EDF/BDF with
edfio, BrainVision by hand, FIF with MNE), replayed on a real LSL outlet by
``run_replay`` and read back by a real inlet.
"""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET

import numpy as np
import pylsl
import pytest

from rtsource.errors import StreamError
from rtsource.recordings import read_brainvision, read_recording
from rtsource.replay import run_replay
from rtsource.stream.inlet import StreamSelector
from rtsource.stream.loop import LoopOptions, StreamLoop

from ..conftest import make_bundle
from ..stream.lsl_helpers import Collector, unique
from .test_recording import write_xdf


def replay_and_collect(path, n_expected, **kwargs):
    """Run the replay in a thread, collect everything it pushes; return (collector, stats)."""
    name = unique("replay")
    result = {}

    def target():
        try:
            result["stats"] = run_replay(path, name=name, wait_for_consumers=30, **kwargs)
        except Exception as exc:  # surfaced in the test thread
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    collector = Collector(name, timeout=30)
    deadline = time.monotonic() + 60
    while collector.n_samples < n_expected and time.monotonic() < deadline and "error" not in result:
        time.sleep(0.02)
    stop = kwargs.get("stop_event")
    if stop is not None:
        stop.set()
    thread.join(timeout=30)
    time.sleep(0.1)
    collector.stop()
    if "error" in result:
        raise result["error"]
    return collector, result["stats"]


def channels_of(info):
    root = ET.fromstring(info.as_xml())
    return [(c.findtext("label"), c.findtext("type"), c.findtext("unit")) for c in root.findall("desc/channels/channel")]


def eeg_info_xml(name, labels, sfreq, fmt="float32", unit="microvolts"):
    info = pylsl.StreamInfo(name, "EEG", len(labels), sfreq, fmt, name)
    chans = info.desc().append_child("channels")
    for label in labels:
        ch = chans.append_child("channel")
        ch.append_child_value("label", label)
        ch.append_child_value("type", "EEG")
        ch.append_child_value("unit", unit)
    return info.as_xml()


# ---- XDF ------------------------------------------------------------------------------------

@pytest.fixture
def xdf_file(tmp_path):
    pytest.importorskip("pyxdf")
    sfreq = 250.0
    labels = ["Fp1", "Cz", "Oz", "EOG"]
    x = (np.random.default_rng(1).normal(size=(500, 4)) * 20).astype(np.float32)
    ts = 100.0 + np.arange(500) / sfreq
    markers = pylsl.StreamInfo("markers", "Markers", 1, 0, "string", "m1")
    path = tmp_path / "session.xdf"
    write_xdf(path, [(eeg_info_xml("amp-EEG", labels, sfreq), ts, x), (markers.as_xml(), np.array([100.5, 101.0]), [["go"], ["stop"]])])
    return path, x, labels, sfreq


def test_xdf_replay_reproduces_samples_exactly(xdf_file):
    path, x, labels, sfreq = xdf_file
    rec = read_recording(path)
    assert rec.name == "amp-EEG" and rec.channel_format == "float32" and rec.dropped == ("stream markers",)
    collector, stats = replay_and_collect(path, len(x), rate_scale=4.0)
    data, ts = collector.data()
    assert np.array_equal(data, x), "replayed samples differ from the file's"
    assert stats.samples_pushed == len(x) and stats.loops_completed == 1
    assert np.allclose(np.diff(ts), 1 / (sfreq * 4.0), atol=1e-9)
    info = collector.info
    assert info.nominal_srate() == sfreq and info.channel_count() == 4 and info.type() == "EEG"
    assert info.channel_format() == pylsl.cf_float32
    assert channels_of(info) == [(lb, "EEG", "microvolts") for lb in labels]
    assert info.desc().child("replay").child_value("format") == "xdf"


def test_xdf_stream_choice(tmp_path):
    pytest.importorskip("pyxdf")
    ts = np.arange(10) / 100.0
    x = np.zeros((10, 2), np.float32)
    path = tmp_path / "two.xdf"
    write_xdf(path, [(eeg_info_xml("A", ["a", "b"], 100.0), ts, x), (eeg_info_xml("B", ["c", "d"], 100.0), ts, x + 1)])
    with pytest.raises(StreamError, match="--stream"):
        read_recording(path)
    assert read_recording(path, stream="B").ch_names == ("c", "d")
    assert read_recording(path, stream=0).name == "A"
    with pytest.raises(StreamError, match="no stream 'C'"):
        read_recording(path, stream="C")


def test_xdf_replay_loops_with_continuous_timestamps(xdf_file):
    path, x, labels, sfreq = xdf_file
    stop = threading.Event()
    collector, stats = replay_and_collect(path, 1250, rate_scale=8.0, loop=True, stop_event=stop)
    data, ts = collector.data()
    assert len(ts) >= 1250 and stats.loops_completed >= 2
    np.testing.assert_array_equal(data[:500], x)
    np.testing.assert_array_equal(data[500:1000], x)
    assert np.allclose(np.diff(ts), 1 / (sfreq * 8.0), atol=1e-9), "timestamps must continue across repetitions"


# ---- EDF / BDF -------------------------------------------------------------------------------

def write_edf(path, bdf=False):
    edfio = pytest.importorskip("edfio")
    rng = np.random.default_rng(4)
    sfreq = 256.0
    n = 512
    sig_cls = edfio.BdfSignal if bdf else edfio.EdfSignal
    file_cls = edfio.Bdf if bdf else edfio.Edf
    signals = [
        sig_cls(rng.normal(size=n) * 30, sfreq, label="EEG Fp1", physical_dimension="uV", physical_range=(-500, 500)),
        sig_cls(rng.normal(size=n) * 30, sfreq, label="EEG Cz", physical_dimension="uV", physical_range=(-500, 500)),
        sig_cls(rng.normal(size=n) * 100, sfreq, label="EOG left", physical_dimension="uV", physical_range=(-1000, 1000)),
        sig_cls(rng.normal(size=n) * 1e-3, sfreq, label="Pz", physical_dimension="mV", physical_range=(-0.01, 0.01)),
        sig_cls(rng.normal(size=n // 8), sfreq / 8, label="Resp chest", physical_dimension="", physical_range=(-5, 5)),
    ]
    file_cls(signals).write(path)
    reread = (edfio.read_bdf if bdf else edfio.read_edf)(path)
    physical = np.column_stack([s.data for s in reread.signals[:4]])
    return physical, sfreq


@pytest.mark.parametrize("bdf", [False, True], ids=["edf", "bdf"])
def test_edf_replay_reproduces_physical_values_exactly(tmp_path, bdf):
    path = tmp_path / ("rec.bdf" if bdf else "rec.edf")
    physical, sfreq = write_edf(path, bdf=bdf)
    rec = read_recording(path)
    assert rec.ch_names == ("Fp1", "Cz", "left", "Pz") and rec.ch_types == ("EEG", "EEG", "EOG", "EEG")
    assert rec.ch_units == ("uV", "uV", "uV", "mV") and rec.dropped == ("Resp chest (32 Hz)",)
    collector, stats = replay_and_collect(path, len(physical), rate_scale=4.0)
    data, ts = collector.data()
    assert collector.info.channel_format() == pylsl.cf_double64
    assert np.array_equal(data, physical), "replayed values differ from the file's physical values"
    assert channels_of(collector.info) == [("Fp1", "EEG", "uV"), ("Cz", "EEG", "uV"), ("left", "EOG", "uV"), ("Pz", "EEG", "mV")]
    assert np.allclose(np.diff(ts), 1 / (4 * sfreq), atol=1e-9)


def test_replayed_edf_feeds_the_loop(tmp_path):
    """A replayed file is an ordinary input: the loop maps it by name and converts its units."""
    path = tmp_path / "rec.edf"
    physical, sfreq = write_edf(path)
    bundle = make_bundle(n_chan=3, n_src=12, ch_names=("Cz", "Pz", "Fp1"), sfreq=sfreq)
    name, out = unique("replay-loop"), unique("replay-loop-out")
    stop = threading.Event()
    ready = threading.Event()
    t = threading.Thread(target=lambda: run_replay(path, name=name, rate_scale=4.0, wait_for_consumers=30, stop_event=stop, on_ready=lambda p: ready.set()), daemon=True)
    t.start()
    assert ready.wait(30)
    loop = StreamLoop(bundle, LoopOptions(selector=StreamSelector(name=name), output_name=out))
    loop.connect()
    collector = Collector(out)
    loop.inlet.open()
    thread = loop.run_in_thread()
    deadline = time.monotonic() + 60
    while collector.n_samples < len(physical) and time.monotonic() < deadline:
        time.sleep(0.05)
    loop.stop()
    thread.join(timeout=10)
    collector.stop()
    loop.close()
    stop.set()
    t.join(timeout=10)
    y, _ = collector.data()
    x_v = np.column_stack([physical[:, 1] * 1e-6, physical[:, 3] * 1e-3, physical[:, 0] * 1e-6])
    z = x_v @ bundle.kernel.T
    expected = np.sqrt((z.reshape(len(z), -1, 3) ** 2).sum(axis=2)) / bundle.noise_norm
    assert len(y) == len(physical)
    assert np.abs(y - expected).max() / np.abs(expected).max() < 1e-4


# ---- BrainVision -----------------------------------------------------------------------------

def write_brainvision(tmp_path, n=300, sfreq=500.0):
    names, res = ["Fp1", "Cz", "O1"], [0.1, 0.5, 0.1]
    raw = np.random.default_rng(7).integers(-3000, 3000, size=(n, 3)).astype("<i2")
    (tmp_path / "rec.eeg").write_bytes(raw.tobytes())
    (tmp_path / "rec.vmrk").write_text(
        "Brain Vision Data Exchange Marker File, Version 1.0\n\n[Common Infos]\nCodepage=UTF-8\nDataFile=rec.eeg\n\n"
        "[Marker Infos]\nMk1=New Segment,,1,1,0,0\n"
    )
    chans = "".join(f"Ch{i + 1}={nm},,{r},µV\n" for i, (nm, r) in enumerate(zip(names, res)))
    (tmp_path / "rec.vhdr").write_text(
        "Brain Vision Data Exchange Header File Version 1.0\n\n[Common Infos]\nCodepage=UTF-8\nDataFile=rec.eeg\n"
        f"MarkerFile=rec.vmrk\nDataFormat=BINARY\nDataOrientation=MULTIPLEXED\nNumberOfChannels=3\nSamplingInterval={1e6 / sfreq:g}\n\n"
        f"[Binary Infos]\nBinaryFormat=INT_16\n\n[Channel Infos]\n{chans}\n[Comment]\nwritten by the rtsource tests\n",
        encoding="utf-8",
    )
    return tmp_path / "rec.vhdr", raw.astype(np.float64) * np.array(res), names, sfreq


def test_brainvision_builtin_reader_and_replay(tmp_path):
    path, expected_uv, names, sfreq = write_brainvision(tmp_path)
    rec = read_brainvision(path, reader="builtin")
    assert rec.ch_names == tuple(names) and rec.ch_units == ("uV",) * 3 and rec.sfreq == sfreq
    np.testing.assert_array_equal(rec.data, expected_uv)
    collector, _ = replay_and_collect(path, len(expected_uv), reader="builtin", rate_scale=4.0)
    data, _ = collector.data()
    np.testing.assert_array_equal(data, expected_uv)
    assert channels_of(collector.info) == [(nm, "EEG", "uV") for nm in names]


def test_brainvision_builtin_reader_agrees_with_mne(tmp_path):
    pytest.importorskip("mne")
    path, expected_uv, names, _ = write_brainvision(tmp_path)
    mine = read_brainvision(path, reader="builtin")
    theirs = read_brainvision(path, reader="mne")
    assert theirs.ch_names == mine.ch_names and theirs.ch_units == ("V",) * 3
    np.testing.assert_allclose(theirs.data, mine.data * 1e-6, rtol=1e-12, atol=0)


# ---- FIF through MNE --------------------------------------------------------------------------

def test_fif_replay_through_mne(tmp_path):
    mne = pytest.importorskip("mne")
    info = mne.create_info(["Fz", "Cz", "EOG1", "STI"], 200.0, ["eeg", "eeg", "eog", "stim"])
    x = np.random.default_rng(3).normal(size=(4, 400)) * 1e-5
    x[3] = np.round(np.abs(x[3]) * 1e5)
    raw = mne.io.RawArray(x, info, verbose="error")
    path = tmp_path / "rec_raw.fif"
    raw.save(path, verbose="error")
    expected = mne.io.read_raw_fif(path, preload=True, verbose="error").get_data().T
    collector, _ = replay_and_collect(path, 400, rate_scale=4.0)
    data, _ = collector.data()
    np.testing.assert_array_equal(data, expected)
    assert channels_of(collector.info) == [("Fz", "EEG", "V"), ("Cz", "EEG", "V"), ("EOG1", "EOG", "V"), ("STI", "STIM", "")]


def test_clear_errors(tmp_path):
    with pytest.raises(StreamError, match="does not exist"):
        read_recording(tmp_path / "nope.edf")
    (tmp_path / "x.eeg").write_bytes(b"")
    with pytest.raises(StreamError, match=r"\.vhdr"):
        read_recording(tmp_path / "x.eeg")
    bad = tmp_path / "bad.edf"
    bad.write_bytes(b"not an edf file at all")
    with pytest.raises(StreamError, match="cannot read EDF"):
        read_recording(bad)
    path, *_ = write_brainvision(tmp_path)
    with pytest.raises(StreamError, match="rate_scale"):
        run_replay(path, rate_scale=0.0, reader="builtin")


def test_command_line_arguments(tmp_path):
    """`rtsource replay` parses its options (in rtsource.cli) and hands them to run_replay."""
    import subprocess
    import sys

    path, expected_uv, names, sfreq = write_brainvision(tmp_path, n=100)
    cmd = [sys.executable, "-m", "rtsource.cli", "replay", str(path), "--rate-scale", "10", "--reader", "builtin", "--name", unique("cli-replay"), "--chunk-ms", "40"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    table = dict(line.split(None, 1) for line in lines if line.startswith("  "))
    assert table["samples_pushed"] == "100" and table["loops_completed"] == "1"
    assert "3 channels at 500 Hz" in lines[0] and "x10" in lines[0]


# ---- damaged and truncated files: the file and the problem are named, truncation is reported --

def _good_xdf(tmp_path, n=1000):
    ts = 100.0 + np.arange(n) / 250.0
    x = (np.arange(n * 3, dtype=np.float32).reshape(n, 3)) % 97
    path = tmp_path / "full.xdf"
    write_xdf(path, [(eeg_info_xml("amp", ["a", "b", "c"], 250.0), ts, x)])
    return path, x


def _long_edf(path, n_records=10):
    edfio = pytest.importorskip("edfio")
    rng = np.random.default_rng(3)
    signals = [edfio.EdfSignal(rng.normal(size=256 * n_records) * 20, 256.0, label=f"EEG C{i}", physical_dimension="uV", physical_range=(-500, 500)) for i in range(3)]
    edfio.Edf(signals).write(path)
    return path


def _cut(path, size, name):
    out = path.with_name(name)
    out.write_bytes(path.read_bytes()[:size])
    return out


def test_damaged_files_name_the_file_and_the_problem(tmp_path):
    pytest.importorskip("pyxdf")
    xdf, _ = _good_xdf(tmp_path)
    edf = _long_edf(tmp_path / "long.edf")
    raw = bytearray(edf.read_bytes())
    zero_duration = bytearray(raw)
    zero_duration[244:252] = b"0       "  # edfio: "cannot access local variable 'sampling_frequency'"
    (tmp_path / "dur0.edf").write_bytes(bytes(zero_duration))
    no_signals = bytearray(raw)
    no_signals[252:256] = b"0   "
    (tmp_path / "ns0.edf").write_bytes(bytes(no_signals))
    (tmp_path / "empty.fif").write_bytes(b"")
    (tmp_path / "hdr.vhdr").write_text("Brain Vision Data Exchange Header File Version 1.0\n[Common Infos]\nDataFile=x.eeg\nNumberOfChannels=abc\nSamplingInterval=2000\n")
    (tmp_path / "rate0.vhdr").write_text("Brain Vision Data Exchange Header File Version 1.0\n[Common Infos]\nDataFile=x.eeg\nNumberOfChannels=2\nSamplingInterval=0\n")
    cases = [
        (_cut(xdf, 0, "empty.xdf"), ["empty.xdf", "is empty"]),
        (_cut(xdf, 2, "magic.xdf"), ["magic.xdf", "XDF magic"]),
        (_cut(xdf, 40, "head.xdf"), ["head.xdf", "damaged or cut short"]),
        (_cut(edf, 0, "empty.edf"), ["empty.edf", "is empty", "256 bytes"]),
        (_cut(edf, 300, "head.edf"), ["head.edf", "cut off inside its header (300 of 1024 bytes)"]),  # edfio: "list index out of range"
        (tmp_path / "dur0.edf", ["dur0.edf", "data record duration is 0 s"]),
        (tmp_path / "ns0.edf", ["ns0.edf", "declares 0 signals"]),
        (tmp_path / "empty.fif", ["empty.fif", "damaged, truncated or not a recording"]),
        (tmp_path / "hdr.vhdr", ["hdr.vhdr", "NumberOfChannels = 'abc'"]),
        (tmp_path / "rate0.vhdr", ["rate0.vhdr", "SamplingInterval = '0'"]),
        (tmp_path, [str(tmp_path), "is not a file"]),
    ]
    for path, fragments in cases:
        with pytest.raises(StreamError) as exc:
            read_recording(path, reader="builtin")
        msg = str(exc.value)
        for f in fragments:
            assert f in msg, f"{path.name}: {f!r} not in {msg!r}"
        assert "list index out of range" not in msg and "local variable" not in msg


def test_truncated_xdf_is_reported_with_how_much_was_played(tmp_path):
    pytest.importorskip("pyxdf")
    full, x = _good_xdf(tmp_path)
    assert read_recording(full).damage == "" and read_recording(full).declared_samples == 1000
    cut = _cut(full, full.stat().st_size // 2, "cut.xdf")  # a recorder killed mid-recording
    rec = read_recording(cut)
    assert 0 < rec.n_samples < 1000
    assert "cut.xdf" in rec.path and "without the footer" in rec.damage and f"{rec.n_samples} samples" in rec.damage
    collector, stats = replay_and_collect(cut, rec.n_samples, rate_scale=8.0)
    data, _ = collector.data()
    assert np.array_equal(data, x[: rec.n_samples])  # what is there is played exactly
    summary = stats.summary()
    assert summary["samples_pushed"] == summary["file_samples"] == rec.n_samples
    assert summary["declared_samples"] == "unknown" and "without the footer" in summary["file_damage"]


def test_truncated_edf_is_reported_with_played_and_declared(tmp_path):
    import subprocess
    import sys

    edf = _long_edf(tmp_path / "long.edf", n_records=10)
    record_bytes = 3 * 256 * 2
    cut = _cut(edf, 1024 + 6 * record_bytes + 100, "cut.edf")  # 6 records and part of the 7th
    rec = read_recording(cut)
    assert rec.n_samples == 6 * 256 and rec.declared_samples == 10 * 256
    assert "declares 10 data records (2560 samples, 10 s) but the file holds 6 complete ones (1536 samples)" in rec.damage
    cmd = [sys.executable, "-m", "rtsource.cli", "replay", str(cut), "--rate-scale", "50", "--name", unique("cut-edf")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "cut.edf: 1536 of 2560 declared samples will be played: the header declares 10 data records" in proc.stderr
    table = dict(line.split(None, 1) for line in proc.stdout.splitlines() if line.startswith("  "))
    assert table["samples_pushed"] == "1536" and table["declared_samples"] == "2560" and "cut short" in table["file_damage"]


def test_replay_numbers_are_bounded(tmp_path):
    path, *_ = write_brainvision(tmp_path)
    for kwargs, fragment in (({"rate_scale": 1e-300}, "rate_scale"), ({"chunk_ms": 1e308}, "chunk_ms"), ({"duration": float("nan")}, "duration"), ({"wait_for_consumers": -1.0}, "wait_for_consumers")):
        with pytest.raises(StreamError, match=fragment):
            run_replay(path, reader="builtin", **kwargs)
