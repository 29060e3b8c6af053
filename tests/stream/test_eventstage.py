"""[events]/[epochs]/[connectivity] settings, the connectivity outputs of EventStage (strongest
edges, z-scores from the stream's first seconds) and the compact headers of large layouts."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from rtsource.config import settings_from_dict
from rtsource.errors import ConfigError
from rtsource.pipeline.events import event_options
from rtsource.stream.bandpower import Band
from rtsource.stream.connectivity import ConnectivitySpec, ConnectivityStage, pair_labels
from rtsource.stream.event_layout import MAX_LABELLED_CHANNELS, ConnectivityLayout, connectivity_labels_from_header, make_connectivity_info
from rtsource.stream.events import EventPublisher
from rtsource.stream.eventstage import ConnectivityOptions, EventOptions, EventStage
from rtsource.stream.outlets import OutputIdentity

from .lsl_helpers import unique

SFREQ = 200.0
ROI = [{"name": "A", "vertices": [0, 1]}, {"name": "B", "vertices": [2, 3]}]


@pytest.mark.parametrize(
    "sections, match",
    [
        ({"events": {"markers": {"t": "T"}, "type": ""}}, r"\[events\] markers need a marker stream"),
        ({"events": {"stream": "m", "markers": {"t": "T"}}}, r"\[epochs\] space = 'roi' needs ROIs"),
        ({"connectivity": {"measures": ["coh"]}}, r"\[connectivity\] measures need ROIs"),
        ({"roi": ROI, "connectivity": {"measures": ["granger"]}}, r"must be among coh, imcoh"),
        ({"roi": ROI, "connectivity": {"measures": ["coh"], "window_s": 1.05, "step_s": 0.1}}, r"window_s = 1.05 s must be a multiple of step_s"),
        ({"roi": ROI, "events": {"stream": "m", "markers": {"t": [True]}}}, r"must be a marker value"),
        ({"roi": ROI, "events": {"stream": "m", "markers": {"t": "T"}}, "epochs": {"features": {"p3": [0.5, 0.2]}}}, r"start < stop"),
        ({"roi": ROI, "events": {"stream": "m", "markers": {"t": "T"}}, "epochs": {"baseline": [-0.5, 0.0]}}, r"baseline = \[-0.5, 0.0\] s must lie inside"),
    ],
)
def test_settings_are_checked_with_the_key_named(sections, match):
    with pytest.raises(ConfigError, match=match):
        settings_from_dict(sections)


def test_settings_become_the_stage_options():
    s = settings_from_dict({"roi": ROI, "events": {"stream": "m", "markers": {"target": ["S  1", 11], "std": 2.0}},
                            "epochs": {"tmin": -0.1, "tmax": 0.5, "baseline": [], "average": "ewma", "features": {"p3": [0.25, 0.45]}},
                            "connectivity": {"measures": ["imcoh", "wpli"], "output": "strongest", "strongest_k": 1, "rois": ["B", "A"]}})  # fmt: skip
    o = event_options(s)
    assert o.markers.markers.lookup() == {"S  1": "target", "11": "target", "2": "std"}
    assert [w.name for w in o.epochs.spec.events] == ["target", "std"] and o.epochs.spec.baseline is None and o.epochs.average == "ewma"
    assert o.connectivity.spec.measures == ("imcoh", "wpli") and o.connectivity.rois == ("B", "A") and o.connectivity.output == "strongest"
    assert event_options(settings_from_dict({})) is None


def _stage(options, roi_names=("a", "b", "c", "d")):
    name = unique("evstage")
    return EventStage(options, roi_names, (), SFREQ, 40, OutputIdentity(name, name), EventPublisher(name, name, publish=False))


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    t = np.arange(n) / SFREQ
    x[:, 1] += 2 * np.sin(2 * np.pi * 10 * t)
    x[:, 3] += 2 * np.cos(2 * np.pi * 10 * t)  # b and d: 90 degrees apart
    return x, 500.0 + t


def test_strongest_edges_are_the_largest_values_of_every_block():
    spec = ConnectivitySpec(bands=(Band("alpha", 8, 12), Band("beta", 15, 25)), measures=("coh", "imcoh"), window_s=1.0, step_s=0.1, segment_s=0.5)
    stage = _stage(EventOptions(connectivity=ConnectivityOptions(spec, output="strongest", strongest_k=2)))
    ref = ConnectivityStage(spec, ("a", "b", "c", "d"), SFREQ, 40)
    x, ts = _data(600)
    rows = []
    for i in range(0, 600, 40):
        v, _ = ref.process(x[i : i + 40], ts[i : i + 40], 40)
        full = v.copy()
        stage._connectivity(x[i : i + 40], ts[i : i + 40], 40, None)
        rows += [(f, stage._top[j].copy()) for j, f in enumerate(full)]
    assert stage.conn_layout.n_channels == 4 * 2 * 2 and stage.counts["connectivity_rows"] == len(rows) == 30
    for full, top in rows[10:]:
        for b in range(4):
            block = full[b * 6 : (b + 1) * 6]
            want = np.argsort(-np.abs(block), kind="stable")[:2]
            got = top[b * 4 : (b + 1) * 4]
            assert got[0::2].astype(int).tolist() == want.tolist()
            np.testing.assert_array_equal(got[1::2], block[want])
    # pair 4 is b~d: the strongest imaginary coherence in the alpha band
    assert rows[-1][1][2 * 4] == 4


def test_zscores_from_the_first_seconds_when_there_is_no_calibration():
    spec = ConnectivitySpec(bands=(Band("alpha", 8, 12),), measures=("coh", "aec"), window_s=1.0, step_s=0.1, segment_s=0.5, zscore=True)
    stage = _stage(EventOptions(connectivity=ConnectivityOptions(spec, baseline_s=2.0)))
    ref = ConnectivityStage(ConnectivitySpec(bands=spec.bands, measures=spec.measures, window_s=1.0, step_s=0.1, segment_s=0.5), ("a", "b", "c", "d"), SFREQ, 40)
    x, ts = _data(2000, seed=3)
    got, raw = [], []
    for i in range(0, 2000, 40):
        v, _ = ref.process(x[i : i + 40], ts[i : i + 40], 40)
        raw.append(v.copy())
        before = stage.connectivity.rows_out
        stage._connectivity(x[i : i + 40], ts[i : i + 40], 40, None)
        got.append(stage.connectivity._out[: stage.connectivity.rows_out - before].copy())
    raw, got = np.vstack(raw).astype(np.float64), np.vstack(got).astype(np.float64)
    base = raw[9:29]  # the first 20 complete rows (2 s at 10 Hz)
    assert np.isnan(got[:29]).all()
    z = (raw[29:] - base.mean(axis=0)) / base.std(axis=0)
    np.testing.assert_allclose(got[29:], z, rtol=1e-3, atol=1e-3)


def test_large_layouts_describe_themselves_in_a_few_lines():
    rois = tuple(f"roi{i:02d}-lh" for i in range(68))
    lay = ConnectivityLayout(rois, ("coh", "imcoh", "plv", "wpli", "aec"), (("alpha", 8.0, 12.0), ("beta", 13.0, 30.0)), 10.0, 1.0)
    assert lay.n_channels == 22780 > MAX_LABELLED_CHANNELS
    xml = make_connectivity_info(lay, output_name="x", source_id="s").as_xml()
    assert len(xml) < 10_000 and "<channel>" not in xml
    meta = {c.tag: (c.text or "") for c in ET.fromstring(xml).find("desc/rtsource")}
    spec = ConnectivitySpec(bands=(Band("alpha", 8, 12), Band("beta", 13, 30)), measures=("coh", "imcoh", "plv", "wpli", "aec"))
    assert connectivity_labels_from_header(meta) == list(pair_labels(rois, spec))
    small = ConnectivityLayout(rois[:5], ("coh",), (("alpha", 8.0, 12.0),), 10.0, 1.0)
    xml = make_connectivity_info(small, output_name="x", source_id="s").as_xml()
    assert xml.count("<channel>") == 10
    # each channel's entry and the few-line description name the same channels
    meta = {c.tag: (c.text or "") for c in ET.fromstring(xml).find("desc/rtsource")}
    assert [c.find("label").text for c in ET.fromstring(xml).find("desc/channels")] == connectivity_labels_from_header(meta) == list(pair_labels(rois[:5], ConnectivitySpec(bands=(Band("alpha", 8, 12),), measures=("coh",))))


def test_per_source_epochs_beyond_the_size_limit_are_refused():
    from rtsource.stream.epochs import EpochSpec, EpochWindow
    from rtsource.stream.eventstage import EpochOptions

    opts = EventOptions(epochs=EpochOptions(EpochSpec((EpochWindow("t", -0.2, 0.8),)), space="sources"))
    name = unique("evbig")
    with pytest.raises(ConfigError, match="use space = 'roi'"):
        EventStage(opts, (), [f"s{i}" for i in range(20000)], 500.0, 64, OutputIdentity(name, name), EventPublisher(name, name, publish=False))


def test_markers_are_moved_onto_the_data_clock_and_flagged_epochs_are_rejected():
    """Data from a host whose LSL clock runs 5 s ahead (the loop's time correction says -5 s):
    markers sent on this host's clock are cut at marker + 5 s of the data's timestamps; an
    epoch holding a sample the artifact stage flagged is rejected and counted."""
    import time

    import pylsl

    from rtsource.stream.epochs import EpochSpec, EpochWindow
    from rtsource.stream.eventstage import EpochOptions, MarkerOptions
    from rtsource.stream.inlet import StreamSelector
    from rtsource.stream.markers import MarkerMap

    mk = unique("evclock")
    marks = pylsl.StreamOutlet(pylsl.StreamInfo(mk, "Markers", 1, pylsl.IRREGULAR_RATE, pylsl.cf_string, mk))
    opts = EventOptions(
        markers=MarkerOptions(StreamSelector(mk), MarkerMap.from_mapping({"t": "T"}), retry_s=0.2),
        epochs=EpochOptions(EpochSpec((EpochWindow("t", -0.1, 0.2),), baseline=None, buffer_s=5.0)),
    )
    name = unique("evclock-out")
    stage = EventStage(opts, ("a", "b"), (), SFREQ, 40, OutputIdentity(name, name), EventPublisher(name, name, publish=False), time_correction=lambda: -5.0)
    try:
        end = time.monotonic() + 20
        while stage.markers.state != "connected" and time.monotonic() < end:
            time.sleep(0.05)
        assert marks.wait_for_consumers(10)
        now = pylsl.local_clock()
        n = 800
        ts = now + 5.0 + np.arange(n) / SFREQ  # the data host's clock
        x = np.arange(n, dtype=float)[:, None] * np.array([1.0, -1.0])
        flags = np.zeros(n, np.uint8)
        flags[500] = 1
        marks.push_sample(["T"], now + 1.0)  # this host's clock: data sample 200
        marks.push_sample(["T"], now + 2.5)  # sample 500: flagged
        time.sleep(0.3)
        for i in range(0, n, 40):
            stage.process(x[i : i + 40], None, ts[i : i + 40], 40, flags[i : i + 40])
        c = stage.engine.counts
        assert c["accepted"] == 1 and c["rejected_flag"] == 1 and stage.counts["epochs_published"] == 1
        ev = stage.engine.evoked("t")
        np.testing.assert_allclose(ev.average[:, 0], np.arange(200 - 20, 200 + 41))  # cut around data sample 200
    finally:
        stage.close()
