"""Markers, epochs, evoked averages and connectivity through the real loop over real LSL.

A data outlet and a marker outlet feed a StreamLoop; the test reads NAME-roi, NAME-epochs,
NAME-evoked, NAME-connectivity and NAME-events back and checks every epoch against the ROI
output it was cut from: markers sent before and after their data, hostile marker values, a
flood of unknown markers, markers far in the past and future, a duplicate, and the marker
stream vanishing and coming back. Nothing may crash, no epoch may be lost or cut twice, no
data sample may be lost. 68 ROIs and five measures in two bands make connectivity samples of
22,780 channels (a full aparc set: every row must still arrive once).
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET

import numpy as np
import pylsl
import pytest

from rtsource.config import settings_from_dict
from rtsource.session import feature_options
from rtsource.stream.event_layout import connectivity_labels_from_header
from rtsource.stream.inlet import StreamSelector
from rtsource.stream.loop import LoopOptions, StreamLoop
from rtsource.stream.outputs import CONNECTIVITY_SUFFIX, EPOCHS_SUFFIX, EVENTS_SUFFIX, EVOKED_SUFFIX, ROI_SUFFIX

from ..conftest import make_bundle
from .lsl_helpers import Collector, eeg_outlet, unique
from .test_reliability import wait_for

SFREQ = 500.0
CH = [f"E{i:02d}" for i in range(8)]
TMIN, TMAX = -0.1, 0.3
N_ROI = 68  # A, B, C and 65 more: 2278 pairs, x 5 measures x 2 bands = 22,780 connectivity channels


def marker_outlet(name):
    info = pylsl.StreamInfo(name, "Markers", 1, pylsl.IRREGULAR_RATE, pylsl.cf_string, name)
    return pylsl.StreamOutlet(info)


def rtsource_meta(info_xml: str) -> dict:
    root = ET.fromstring(info_xml)
    return {c.tag: (c.text or "") for c in root.find("desc/rtsource")}


def cut(roi, stamps, t):
    """The twin: nearest sample, window round(tmin*sfreq)..round(tmax*sfreq), baseline [-0.1, 0] removed."""
    i = int(np.argmin(np.abs(stamps - t)))
    a, b = int(round(TMIN * SFREQ)), int(round(TMAX * SFREQ))
    ep = roi[i + a : i + b + 1].astype(np.float64)
    return ep - ep[: -a + 1].mean(axis=0)


@pytest.fixture(scope="module")
def bundle():
    return make_bundle(n_chan=8, n_src=30, n_orient=1, ch_names=CH)


def test_epochs_evoked_and_connectivity_over_lsl(bundle):
    in_name, out_name, mk_name = unique("ev-eeg"), unique("ev-src"), unique("ev-markers")
    pick = np.random.default_rng(2)
    more = [{"name": f"r{i:02d}", "vertices": sorted(pick.choice(30, 3, replace=False).tolist())} for i in range(3, N_ROI)]
    settings = settings_from_dict(
        {
            "roi": [{"name": "A", "vertices": list(range(0, 10))}, {"name": "B", "vertices": list(range(10, 20))}, {"name": "C", "vertices": list(range(20, 30))}] + more,
            "events": {"stream": mk_name, "markers": {"target": ["T", 1], "std": "S"}, "retry_s": 0.3},
            "epochs": {"tmin": TMIN, "tmax": TMAX, "baseline": [-0.1, 0.0], "features": {"early": [0.0, 0.1]}, "buffer_s": 3.0},
            "connectivity": {"measures": ["coh", "imcoh", "plv", "wpli", "aec"], "bands": {"alpha": [8, 12], "beta": [13, 30]}, "window_s": 1.0, "step_s": 0.1},
        }
    )
    feats = feature_options(settings, bundle)
    data_out = eeg_outlet(in_name, CH, sfreq=SFREQ, source_id=in_name)
    marks = marker_outlet(mk_name)
    loop = StreamLoop(bundle, LoopOptions(selector=StreamSelector(in_name), output_name=out_name, resolve_timeout=20, control=False), features=feats)
    loop.connect()
    stage = loop.features.event_stage
    thread = loop.run_in_thread()
    roi = Collector(out_name + ROI_SUFFIX)
    epochs = Collector(out_name + EPOCHS_SUFFIX)
    evoked = Collector(out_name + EVOKED_SUFFIX)
    conn = Collector(out_name + CONNECTIVITY_SUFFIX)
    events = Collector(out_name + EVENTS_SUFFIX)
    assert data_out.wait_for_consumers(20)
    assert wait_for(lambda: stage.markers.state == "connected", 20) and marks.wait_for_consumers(10)

    rng = np.random.default_rng(1)
    n = 3000  # 6 s
    t0 = pylsl.local_clock() + 1.0
    stamps = t0 + np.arange(n) / SFREQ
    tt = np.arange(n) / SFREQ
    x = (rng.normal(size=(n, 8)) * 5 + 20 * np.sin(2 * np.pi * 10 * tt)[:, None] * rng.normal(size=8)).astype(np.float32)
    # markers at sample indices; "early" ones are sent before their data, "late" ones after
    early = [("T", 300), ("S", 420), ("1", 700)]
    late = [("S", 1200), ("T", 1500), ("1.0", 2600)]
    for value, k in early:
        marks.push_sample([value], stamps[k] + 0.0003)
    hostile = [["x" * 100_000], [""], ["nan"], ["S  99"]] + [["flood"]] * 500
    chunk = 25
    for s in range(0, n, chunk):
        data_out.push_chunk(x[s : s + chunk], stamps[s : s + chunk].tolist())
        if s == 1000:
            for h in hostile:
                marks.push_sample(h, stamps[s])
            marks.push_sample(["T"], stamps[s] + 1e6)  # far in the future
            marks.push_sample(["T"], stamps[0] - 100.0)  # long gone
        if s == 2000:
            for value, k in late:
                marks.push_sample([value], stamps[k] - 0.0004)
            marks.push_sample(["T"], stamps[1500] - 0.0004)  # the same marker twice
        time.sleep(chunk / SFREQ / 2)  # twice real time: the loop keeps up with 22,780-channel connectivity
    assert wait_for(lambda: roi.n_samples >= n and epochs.n_samples >= 6 and conn.n_samples >= n // 50, 30)
    # the marker stream vanishes: reported (between chunks), and the loop goes on
    del marks
    extra = 0
    end = time.monotonic() + 15
    while not any(e.get("event") == "marker_stream" and e.get("state") == "lost" for e in _events(events)) and time.monotonic() < end:
        k = n + extra + np.arange(chunk)
        data_out.push_chunk(x[:chunk], (t0 + k / SFREQ).tolist())
        extra += chunk
        time.sleep(chunk / SFREQ)
    assert any(e.get("event") == "marker_stream" and e.get("state") == "lost" for e in _events(events))
    assert wait_for(lambda: roi.n_samples >= n + extra)
    time.sleep(0.3)
    loop.stop()
    thread.join(10)
    for c in (roi, epochs, evoked, conn, events):
        c.stop()
    loop.close()

    assert loop.stats.lost == 0 and loop.stats.samples_out == n + extra
    r, rts = roi.data()
    assert np.array_equal(rts[:n], stamps)
    e, ets = epochs.data()
    want = sorted([("target" if v in ("T", "1", "1.0") else "std", k) for v, k in early + late], key=lambda m: m[1])
    got = sorted(zip(e[:, 0].astype(int), ets), key=lambda m: m[1])
    assert len(got) == len(want) == 6, got  # each marker once: none lost, the duplicate not cut twice
    n_t = int(round(TMAX * SFREQ)) - int(round(TMIN * SFREQ)) + 1
    names = rtsource_meta(epochs.inlet.info().as_xml())["events"].split(",")
    for (name, k), (code, ts), row in zip(want, got, e[np.argsort(ets)]):
        assert names[code - 1] == name and abs(ts - stamps[k]) < 1e-3
        twin = cut(r, rts, ts)
        assert np.allclose(row[2 : 2 + n_t * N_ROI].reshape(n_t, N_ROI), twin, atol=1e-4 * np.abs(twin).max())
        assert np.allclose(row[2 + n_t * N_ROI :], twin[-int(round(TMIN * SFREQ)) : -int(round(TMIN * SFREQ)) + 50].mean(axis=0), atol=1e-4 * np.abs(twin).max())
    # per-event indices count up; the evoked average of the last "target" is the mean of its epochs
    for code, name in ((1, "target"), (2, "std")):
        assert sorted(e[e[:, 0] == code, 1].astype(int).tolist()) == list(range(sum(w[0] == name for w in want)))
    v, vts = evoked.data()
    assert len(v) == len(got)  # one evoked update per epoch
    assert sorted(v[v[:, 0] == 1, 1].astype(int).tolist()) == [1, 2, 3, 4] and sorted(v[v[:, 0] == 2, 1].astype(int).tolist()) == [1, 2]
    last_target = v[(v[:, 0] == 1) & (v[:, 1] == 4)][0]
    mean = np.mean([cut(r, rts, t) for c, t in got if c == 1], axis=0)
    assert np.allclose(last_target[2:].reshape(n_t, N_ROI), mean, atol=1e-4 * np.abs(mean).max())
    # hostile, flooded, far, duplicate: counted, reported, never an epoch
    dropped = stage.dropped()
    assert dropped["malformed"] >= 1 and dropped["unknown"] >= 502 and dropped["future"] == 1 and dropped["too_old"] == 1 and dropped["duplicate"] == 1
    reasons = {ev["reason"] for ev in _events(events) if ev.get("event") == "marker_dropped"}
    assert {"unknown", "future", "too_old", "duplicate"} <= reasons
    # connectivity: one row per 0.1 s from the first full window, stamped with the window's last sample
    cv, cts = conn.data()
    assert len(cts) == (n + extra) // 50 and np.allclose(cts, rts[49::50])
    assert np.isnan(cv[:9]).all() and np.isfinite(cv[9:]).all()
    header = conn.inlet.info().as_xml()
    labels = connectivity_labels_from_header(rtsource_meta(header))
    assert labels[0] == "coh:alpha:A~B" and len(labels) == cv.shape[1] == conn.info.channel_count() == 22780 and labels[-1] == "aec:beta:r66~r67"
    # beyond MAX_LABELLED_CHANNELS the header describes the channels in a few lines, without a
    # <channel> entry each (tests/stream/test_eventstage.py: smaller layouts list each one, equal)
    assert ET.fromstring(header).find("desc/channels") is None and len(header) < 20_000


def _events(collector):
    data, _ = collector.data()
    return [json.loads(row[0]) for row in data] if len(data) else []
