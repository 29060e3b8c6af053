"""ASR inside the running loop over real LSL on loopback: every sample out with its own
(delayed) stamp, repair events and telemetry, the output's metadata, a bad channel swapped
out of the operator and of ASR, a live recalibration from the control stream, and epochs
rejected where ASR repaired (markers from a real LSL marker stream)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pylsl
import pytest
from scipy.signal import butter, sosfilt

from rtsource.artifacts import ArtifactCalibration, calibrate_asr
from rtsource.bundle import OperatorBundle
from rtsource.inverse.covariance import NoiseCovariance
from rtsource.inverse.make import make_operator, operator_record
from rtsource.inverse.params import MinimumNormParams
from rtsource.sensors.montage import CAP_64
from rtsource.session import operator_rebuilder
from rtsource.stream.control import send_commands
from rtsource.stream.control_auth import default_key_path, ensure_key
from rtsource.stream.epochs import EpochSpec, EpochWindow
from rtsource.stream.eventstage import EpochOptions, EventOptions, MarkerOptions
from rtsource.stream.features import FeatureOptions
from rtsource.stream.inlet import StreamSelector
from rtsource.stream.loop import LoopOptions, StreamLoop
from rtsource.stream.markers import MarkerMap
from rtsource.stream.operator import FilterSpec
from rtsource.stream.outputs import EPOCHS_SUFFIX, EVENTS_SUFFIX, TELEMETRY_CHANNELS, TELEMETRY_SUFFIX

from ..conftest import make_bundle
from .lsl_helpers import Collector, eeg_outlet, unique

FS = 250.0
NAMES = tuple(CAP_64[:24])
LABELS = [label for label, _ in TELEMETRY_CHANNELS]
DELAY = round(0.25 * FS) / FS  # the look-ahead in whole samples (62 at 250 Hz)


def _blinks(n: int) -> range:
    """First samples of the blinks (0.3 s long) in ``n`` samples: one every ~5 s."""
    return range(int(2 * FS), n - int(0.3 * FS), int(5.1 * FS))


def _eeg(seconds: float, seed: int) -> np.ndarray:
    """Correlated noise in uV with a frontal blink every ~5 s."""
    rng = np.random.default_rng(seed)
    n = int(seconds * FS)
    mix = np.random.default_rng(1).normal(size=(len(NAMES), len(NAMES))) * 0.3 + np.eye(len(NAMES))
    x = rng.normal(size=(n, len(NAMES))) @ mix.T * 5.0
    pattern = np.array([150.0 if c.startswith(("Fp", "AF")) else 10.0 for c in NAMES])
    w = int(0.3 * FS)
    for at in _blinks(n):
        x[at : at + w] += np.hanning(w)[:, None] * pattern
    return x


@pytest.fixture(scope="module")
def bundle():
    """A rebuildable operator (random lead field) with an ASR calibration in the bundle."""
    rng = np.random.default_rng(0)
    n, n_src = len(NAMES), 40
    gain = rng.normal(size=(n, 3 * n_src)) * 1e-7
    normals = rng.normal(size=(n_src, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    cov = NoiseCovariance(np.diag(rng.uniform(0.5, 2, n)) * 1e-12, NAMES, 1000, "empirical", 0.0)
    params = MinimumNormParams(method="dSPM")
    op = make_operator(params, gain, normals, cov, reference="average", ch_names=NAMES)
    rest = sosfilt(butter(2, 0.5, "hp", fs=FS, output="sos"), _eeg(60, 5), axis=0) * 1e-6  # V, high-passed as the loop does
    asr = calibrate_asr(rest, FS, NAMES, cutoff=20.0, source="test rest")
    art = ArtifactCalibration(("asr",), asr=asr, lookahead_s=0.25, recalibrate_s=15.0)
    base = make_bundle(n_chan=n, n_src=n_src, ch_names=NAMES, sfreq=FS)
    fields = {f: getattr(base, f) for f in OperatorBundle.__dataclass_fields__}
    fields.update(kernel=op.kernel, noise_norm=op.noise_norm, n_orient=op.n_orient, method="dSPM", gain=gain, noise_cov=cov.data,
                  source_rotation=op.source_rotation, params=operator_record(op, params, reference="average"), artifacts=art, created_utc="")  # fmt: skip
    return OperatorBundle(**fields)


def _events(col: Collector) -> list[dict]:
    return [json.loads(s[0]) for c in col.chunks for s in c.reshape(len(c), -1)] if col.chunks else []


def _artifact_block(name: str) -> dict[str, str]:
    """The fields of ``desc/rtsource/artifacts`` in stream ``name``'s full header, read over
    LSL, as Python strings. An ``XMLElement`` is only valid while its ``StreamInfo`` lives:
    kept past it (the inlet's info was a temporary), it read '' in the full CI run."""
    info = pylsl.StreamInlet(pylsl.resolve_byprop("name", name, timeout=10)[0]).info(timeout=10)
    block, out = info.desc().child("rtsource").child("artifacts"), {}
    child = block.first_child()
    while not child.empty():
        out[child.name()] = child.child_value()
        child = child.next_sibling()
    return out


def test_asr_in_the_loop_counts_delays_swaps_and_recalibrates(bundle):
    in_name, out_name = unique("art-eeg"), unique("art-src")
    outlet = eeg_outlet(in_name, NAMES, sfreq=FS)
    opts = LoopOptions(selector=StreamSelector(in_name), output_name=out_name, resolve_timeout=20, filter=FilterSpec(0.5, 0.0, 2), wait_for_consumer_s=5.0)
    # epochs at each blink and 2.5 s after it: those overlapping a repair are rejected (MNE's reject_by_annotation)
    markers = pylsl.StreamOutlet(pylsl.StreamInfo(unique("art-markers"), "Markers", 1, 0, pylsl.cf_string, unique("mk")))
    window = (EpochWindow("blink", -0.2, 0.4), EpochWindow("calm", -0.2, 0.4))
    events = EventOptions(MarkerOptions(StreamSelector(markers.get_info().name()), MarkerMap.from_mapping({"blink": "b", "calm": "c"}), retry_s=0.2),
                          EpochOptions(EpochSpec(window, baseline=None), space="sources", publish_data=False))  # fmt: skip
    loop = StreamLoop(bundle, opts, features=FeatureOptions(events=events), rebuilder=operator_rebuilder())
    loop.connect()
    src, ev, tel = Collector(out_name), Collector(out_name + EVENTS_SUFFIX), Collector(out_name + TELEMETRY_SUFFIX)
    meta = _artifact_block(out_name)
    assert json.loads(meta["methods"]) == ["asr"] and float(meta["delay_s"]) == DELAY
    # the epochs went through the same correction, and their header says so (one builder for every output)
    epochs_meta = _artifact_block(out_name + EPOCHS_SUFFIX)
    assert epochs_meta["methods"] == meta["methods"]
    assert json.loads(epochs_meta["asr"]) == json.loads(meta["asr"])
    thread = loop.run_in_thread()
    x = _eeg(60, 7).astype(np.float32)
    t0 = pylsl.local_clock()
    stamps = t0 + np.arange(len(x)) / FS
    centres = [at + int(0.15 * FS) for at in _blinks(len(x))]
    marks = sorted([(c, "b") for c in centres] + [(c + int(2.5 * FS), "c") for c in centres])
    pushed = 0
    sent = {"b": 0, "c": 0}
    stop = threading.Event()

    def produce():  # the first second in real time, then 6x, with the samples' own stamps, until stopped
        nonlocal pushed
        for s in range(0, len(x), 25):
            if stop.is_set():
                return
            outlet.push_chunk(x[s : s + 25].tolist(), stamps[s : s + 25].tolist())
            pushed += len(x[s : s + 25])
            while marks and marks[0][0] < pushed:  # each marker once its sample is out, at that sample's time
                at, code = marks.pop(0)
                markers.push_sample([code], float(stamps[at]))
                sent[code] += 1
            time.sleep(25 / FS / (1 if s < FS else 6))

    def live() -> bool:
        return any(e["event"] == "artifact_calibration" and e["state"] in ("live", "failed") for e in _events(ev))

    producer = threading.Thread(target=produce, daemon=True)
    try:
        key = ensure_key(default_key_path(out_name))
        assert outlet.wait_for_consumers(10)  # LSL gives a consumer only what is pushed after it connected
        producer.start()
        (bad,) = send_commands(out_name, [("mark_bad", "Fp2")], key=key, answer_timeout_s=30)
        assert bad.ok, bad
        recal = subprocess.run([sys.executable, "-m", "rtsource.cli", "recalibrate", "--seconds", "15", "--output", out_name],
                               capture_output=True, text=True, timeout=120)  # fmt: skip
        assert recal.returncode == 0 and "recording 15 s" in recal.stdout, recal.stderr
        deadline = time.monotonic() + 40
        while not live() and producer.is_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        stop.set()
        producer.join(10)
        deadline = time.monotonic() + 30
        while loop.stats.samples_out < pushed and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # telemetry and the last events
    finally:
        stop.set()
        loop.stop()
        thread.join(10)
        loop.close()
        for c in (src, ev, tel):
            c.stop()
    st = loop.stats
    assert st.samples_in == st.samples_out == pushed and st.lost == 0
    _, got = src.data()
    assert len(got) == pushed
    assert np.allclose(got, stamps[:pushed] - DELAY, atol=1e-4)  # each output sample carries its own stamp, the look-ahead earlier
    # the look-ahead is in the measured latency: the first chunks came in real time, each pushed
    # when its first sample was due (so its last one is 24 samples in the future)
    assert np.median(st.latency.values()[:5]) > DELAY - 25 / FS, st.latency.values()[:5]
    # the bad channel is out of the operator and of ASR
    stage = loop.operator.cleaner
    assert "Fp2" not in loop.operator.bundle.ch_names and stage.ch_names == loop.operator.bundle.ch_names
    events = _events(ev)
    kinds = [e["event"] for e in events]
    art = [e for e in events if e["event"] == "artifact"]
    assert len(art) >= 4 and all(e["artifact"] in ("ocular", "muscle", "other") and e["duration_s"] > 0 for e in art)
    assert sum(e["artifact"] == "ocular" for e in art) >= len(art) // 2  # frontal blinks
    states = [e["state"] for e in events if e["event"] == "artifact_calibration"]
    assert states == ["recording", "ready", "live"], (states, kinds)
    assert stage.calibration.asr.ch_names == stage.ch_names and "live recalibration" in stage.calibration.asr.provenance
    rows, _ = tel.data()
    last = rows[-1]
    assert last[LABELS.index("artifact_delay_ms")] == pytest.approx(DELAY * 1e3)
    assert 0 < last[LABELS.index("artifact_repaired")] < 0.5
    assert last[LABELS.index("artifact_ms_p50")] > 0 and last[LABELS.index("artifact_episodes")] == len(art)
    assert last[LABELS.index("lost")] == 0
    # epochs overlapping a repair episode are rejected and counted; the calm ones are kept
    engine = loop.features.event_stage.engine
    accepted = {name: st.count for name, st in engine._events.items()}
    assert sent["b"] >= 3 and accepted["blink"] == 0 and engine.counts["rejected_flag"] >= sent["b"] - 1, (sent, accepted, dict(engine.counts))
    assert accepted["calm"] >= sent["c"] - 2 >= 1, (sent, accepted, dict(engine.counts))
    dropped = [e for e in events if e["event"] == "marker_dropped" and e["reason"] == "rejected_flag"]
    assert 0 < sum(e["count"] for e in dropped) <= engine.counts["rejected_flag"], dropped  # reported once a second
