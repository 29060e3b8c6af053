"""Recording rtsource's outputs as LabRecorder-style consumers do (issue 9, part 4).

(a) A minimal XDF recorder (an LSL inlet per stream, written in the XDF 1.0 chunk layout,
    the way LabRecorder does it) records the input EEG stream and the source outlet of the
    real streaming loop; pyxdf loads the file and finds the channel labels, count, rate, the
    ``rtsource`` metadata block, the input's own timestamps on the output, and values equal
    to the operator applied to the recorded input.
(b) mne-lsl's StreamLSL, a consumer we did not write, reads the source outlet and sees the
    right channel names, count, rate and values (optional: skipped without mne-lsl).

The XDF writer below is also used by test_replay.py to write XDF files.
"""

from __future__ import annotations

import dataclasses
import struct
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pylsl
import pytest

from rtsource.build import build_bundle
from rtsource.config import NoiseCovSettings, Settings
from rtsource.sensors.montage import CAP_64
from rtsource.stream.channels import describe_stream_xml
from rtsource.stream.inlet import StreamSelector
from rtsource.stream.loop import LoopOptions, StreamLoop
from rtsource.stream.outlets import make_source_info

from ..stream.lsl_helpers import eeg_outlet, unique

SFREQ = 500.0

# ---- a minimal XDF 1.0 writer ------------------------------------------------------------
# Layout (XDF specification 1.0): the magic "XDF:", then chunks of
#   [NumLengthBytes: 1 byte (1, 4 or 8)] [Length: that many bytes, = 2 + len(content)]
#   [Tag: uint16] [content]
# Tags: 1 FileHeader (XML), 2 StreamHeader (StreamID uint32 + XML), 3 Samples (StreamID +
# varlen sample count + per sample [TimeStampBytes 0|8][double][values]), 4 ClockOffset
# (StreamID + CollectionTime double + OffsetValue double), 5 Boundary (16-byte UUID),
# 6 StreamFooter (StreamID + XML). All little-endian.

_XDF_NUMERIC = {"float32": "<f4", "double64": "<f8", "int8": "<i1", "int16": "<i2", "int32": "<i4", "int64": "<i8"}
_BOUNDARY = uuid.UUID("43a5461e-3a34-4ee0-8c4b-3d8c4ab5a14f").bytes  # any 16 bytes; readers only skip it


def _varlen(n: int) -> bytes:
    if n < 256:
        return bytes([1]) + struct.pack("<B", n)
    if n < 2**32:
        return bytes([4]) + struct.pack("<I", n)
    return bytes([8]) + struct.pack("<Q", n)


class XdfWriter:
    """Writes an XDF file chunk by chunk (as a recorder does, while data arrive)."""

    def __init__(self, path: str | Path):
        self._f = open(path, "wb")
        self._f.write(b"XDF:")
        self._chunk(1, b'<?xml version="1.0"?><info><version>1.0</version></info>')
        self._formats: dict[int, str] = {}

    def _chunk(self, tag: int, content: bytes) -> None:
        body = struct.pack("<H", tag) + content
        self._f.write(_varlen(len(body)) + body)

    def stream_header(self, stream_id: int, header_xml: str) -> None:
        fmt = ET.fromstring(header_xml).findtext("channel_format")
        self._formats[stream_id] = fmt
        self._chunk(2, struct.pack("<I", stream_id) + header_xml.encode("utf-8"))

    def samples(self, stream_id: int, timestamps: np.ndarray, values) -> None:
        fmt = self._formats[stream_id]
        out = [struct.pack("<I", stream_id), _varlen(len(timestamps))]
        for t, row in zip(timestamps, values):
            out.append(b"\x08" + struct.pack("<d", t))  # every sample with its own timestamp
            if fmt == "string":
                for v in row:
                    raw = str(v).encode("utf-8")
                    out.append(_varlen(len(raw)) + raw)
            else:
                out.append(np.asarray(row, dtype=_XDF_NUMERIC[fmt]).tobytes())
        self._chunk(3, b"".join(out))

    def clock_offset(self, stream_id: int, collection_time: float, offset: float) -> None:
        self._chunk(4, struct.pack("<Idd", stream_id, collection_time, offset))

    def boundary(self) -> None:
        self._chunk(5, _BOUNDARY)

    def stream_footer(self, stream_id: int, first: float, last: float, count: int, offsets=()) -> None:
        offs = "".join(f"<offset><time>{t!r}</time><value>{v!r}</value></offset>" for t, v in offsets)
        xml = (
            f'<?xml version="1.0"?><info><first_timestamp>{first!r}</first_timestamp><last_timestamp>{last!r}</last_timestamp>'
            f"<sample_count>{count}</sample_count><clock_offsets>{offs}</clock_offsets></info>"
        )
        self._chunk(6, struct.pack("<I", stream_id) + xml.encode("utf-8"))

    def close(self) -> None:
        self._f.close()


def write_xdf(path, streams) -> None:
    """Write a whole XDF file: ``streams`` is a list of (header_xml, timestamps, values)."""
    w = XdfWriter(path)
    for sid, (xml, ts, values) in enumerate(streams, start=1):
        w.stream_header(sid, xml)
    for sid, (xml, ts, values) in enumerate(streams, start=1):
        for start in range(0, len(ts), 100):
            w.samples(sid, ts[start : start + 100], values[start : start + 100])
        w.clock_offset(sid, float(ts[-1]) if len(ts) else 0.0, 0.0)
    w.boundary()
    for sid, (xml, ts, values) in enumerate(streams, start=1):
        w.stream_footer(sid, float(ts[0]) if len(ts) else 0.0, float(ts[-1]) if len(ts) else 0.0, len(ts), [(0.0, 0.0)])
    w.close()


class XdfRecorder:
    """LabRecorder in miniature: one inlet per stream, everything written to one XDF file."""

    def __init__(self, path, stream_names, timeout=30.0):
        self.writer = XdfWriter(path)
        self.inlets = []
        for sid, name in enumerate(stream_names, start=1):
            found = pylsl.resolve_byprop("name", name, minimum=1, timeout=timeout)
            assert found, f"stream {name!r} did not appear"
            inlet = pylsl.StreamInlet(found[0], max_buflen=360)
            info = inlet.info(timeout=10)  # the full header, with desc
            inlet.open_stream(timeout=10)
            self.writer.stream_header(sid, info.as_xml())
            self.inlets.append((sid, inlet, info))
        self.counts = {sid: 0 for sid, _, _ in self.inlets}
        self.first_last = {sid: [None, None] for sid, _, _ in self.inlets}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            got = False
            for sid, inlet, info in self.inlets:
                data, ts = inlet.pull_chunk(timeout=0.0, max_samples=2048)
                if ts:
                    got = True
                    self.writer.samples(sid, np.asarray(ts), data)
                    self.counts[sid] += len(ts)
                    fl = self.first_last[sid]
                    fl[0] = ts[0] if fl[0] is None else fl[0]
                    fl[1] = ts[-1]
            if not got:
                time.sleep(0.01)

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=10)
        for sid, inlet, info in self.inlets:
            offset = inlet.time_correction(timeout=5)
            self.writer.clock_offset(sid, pylsl.local_clock(), offset)
        self.writer.boundary()
        for sid, inlet, info in self.inlets:
            first, last = self.first_last[sid]
            self.writer.stream_footer(sid, first or 0.0, last or 0.0, self.counts[sid], [(pylsl.local_clock(), 0.0)])
            inlet.close_stream()
        self.writer.close()


# ---- fixtures ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bundle():
    s = dataclasses.replace(Settings(), noise_cov=NoiseCovSettings(source="ad_hoc"))
    return build_bundle(s, sfreq=SFREQ)


def apply_bundle(bundle, x_v):
    y = x_v @ bundle.kernel.T
    if bundle.n_orient == 3:
        y = np.sqrt((y.reshape(len(y), -1, 3) ** 2).sum(axis=2))
    return y / bundle.noise_norm


def test_xdf_writer_round_trip(tmp_path):
    """The writer's files load in pyxdf (so the recorder below records real XDF)."""
    pyxdf = pytest.importorskip("pyxdf")
    info = pylsl.StreamInfo("wr", "EEG", 3, 100.0, "float32", "wr-1")
    chans = info.desc().append_child("channels")
    for label in ("A", "B", "C"):
        chans.append_child("channel").append_child_value("label", label)
    x = np.random.default_rng(0).normal(size=(250, 3)).astype(np.float32)
    ts = 5.0 + np.arange(250) / 100.0
    write_xdf(tmp_path / "w.xdf", [(info.as_xml(), ts, x)])
    streams, header = pyxdf.load_xdf(str(tmp_path / "w.xdf"), synchronize_clocks=False, dejitter_timestamps=False)
    assert header["info"]["version"] == ["1.0"]
    (s,) = streams
    assert np.array_equal(s["time_series"], x) and np.array_equal(s["time_stamps"], ts)
    assert [c["label"][0] for c in s["info"]["desc"][0]["channels"][0]["channel"]] == ["A", "B", "C"]


def test_xdf_recording_of_the_loop_outputs(bundle, tmp_path):
    pyxdf = pytest.importorskip("pyxdf")
    in_name, out_name = unique("rec-eeg"), unique("rec-src")
    names = list(CAP_64)
    rng = np.random.default_rng(11)
    rng.shuffle(names)
    outlet = eeg_outlet(in_name, names, sfreq=SFREQ)
    loop = StreamLoop(bundle, LoopOptions(selector=StreamSelector(name=in_name), output_name=out_name, bundle_path="/data/bundle.npz"))
    loop.connect()
    loop.inlet.open()  # subscribed before the data start (the recorder is a consumer too)
    recorder = XdfRecorder(tmp_path / "session.xdf", [in_name, out_name])
    thread = loop.run_in_thread()
    n = 1500
    x_uv = (rng.normal(size=(n, 64)) * 10).astype(np.float32)
    stamps = 2000.0 + np.arange(n) / SFREQ
    assert outlet.wait_for_consumers(timeout=20)
    for s in range(0, n, 20):
        outlet.push_chunk(x_uv[s : s + 20], stamps[s : s + 20].tolist())
    deadline = time.monotonic() + 60
    while min(recorder.counts.values()) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    loop.stop()
    thread.join(timeout=10)
    recorder.stop()
    loop.close()

    streams, _ = pyxdf.load_xdf(str(tmp_path / "session.xdf"), synchronize_clocks=False, dejitter_timestamps=False)
    by_name = {s["info"]["name"][0]: s for s in streams}
    src, eeg = by_name[out_name], by_name[in_name]
    info = src["info"]
    labels = [c["label"][0] for c in info["desc"][0]["channels"][0]["channel"]]
    assert labels == list(bundle.source_labels()) and int(info["channel_count"][0]) == bundle.n_sources
    assert float(info["nominal_srate"][0]) == SFREQ and info["type"][0] == "Sources"
    meta = info["desc"][0]["rtsource"][0]
    assert meta["method"] == ["dSPM"] and meta["source_frame"] == ["template"] and meta["bundle"] == ["/data/bundle.npz"]
    assert meta["input_stream"] == [in_name] and meta["n_orient"] == ["3"]
    first_loc = info["desc"][0]["channels"][0]["channel"][0]["location"][0]
    assert np.allclose([float(first_loc[a][0]) for a in "XYZ"], bundle.sources.positions_m[0] * 1e3, atol=1e-3)
    # every sample once, the input's own timestamps, values = the operator on the recorded input
    assert len(src["time_stamps"]) == len(eeg["time_stamps"]) == n
    assert np.array_equal(src["time_stamps"], stamps) and np.array_equal(eeg["time_stamps"], stamps)
    assert np.array_equal(eeg["time_series"], x_uv)
    order = [names.index(c) for c in bundle.ch_names]
    expected = apply_bundle(bundle, eeg["time_series"][:, order].astype(np.float64) * 1e-6)
    err = np.abs(src["time_series"] - expected).max() / np.abs(expected).max()
    assert err < 1e-4, err


def test_mne_lsl_stream_reads_the_source_outlet(bundle):
    pytest.importorskip("mne_lsl")
    from mne_lsl.stream import StreamLSL

    out_name = unique("mnelsl-src")
    input_desc = describe_stream_xml(eeg_info_xml("upstream-eeg"))
    info = make_source_info(bundle, input_desc, name=out_name, type_="Sources", source_id=out_name)
    outlet = pylsl.StreamOutlet(info, chunk_size=0, max_buffered=360)
    n = 400
    y = np.random.default_rng(2).uniform(0, 5, size=(n, bundle.n_sources)).astype(np.float32)
    stream = StreamLSL(bufsize=n / SFREQ, name=out_name, source_id=out_name)
    stream.connect(acquisition_delay=0.01, timeout=20)
    try:
        assert stream.ch_names == list(bundle.source_labels())
        assert len(stream.ch_names) == bundle.n_sources
        assert stream.info["sfreq"] == SFREQ
        assert outlet.wait_for_consumers(timeout=20)
        t0 = pylsl.local_clock()
        for s in range(0, n, 25):
            outlet.push_chunk(y[s : s + 25], (t0 + np.arange(s, s + 25) / SFREQ).tolist())
        deadline = time.monotonic() + 30
        while stream.n_new_samples < n and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stream.n_new_samples >= n
        data, ts = stream.get_data()
        assert data.shape == (bundle.n_sources, n)
        np.testing.assert_array_equal(data.T, y)
        assert np.allclose(np.diff(ts), 1 / SFREQ, atol=1e-6)
    finally:
        stream.disconnect()


def eeg_info_xml(name: str) -> str:
    info = pylsl.StreamInfo(name, "EEG", 2, SFREQ, "float32", name)
    chans = info.desc().append_child("channels")
    for label in ("Cz", "Pz"):
        ch = chans.append_child("channel")
        ch.append_child_value("label", label)
        ch.append_child_value("unit", "microvolts")
    return info.as_xml()
