"""Live recalibration of the EOG regression and of the projection folded into the operator,
over real LSL with real signed control commands: the regression swapped between two chunks,
the projection through the operator hot swap (rebuilt, ROI stage refolded), no sample lost
or repeated; malformed commands refused with the value and the fix; every output's header
says what artifact correction is applied."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pylsl
import pytest
from scipy.signal import butter, sosfilt

from rtsource.anatomy.regions import Roi
from rtsource.artifacts import ArtifactCalibration, fit_eog_regression, fit_projection
from rtsource.bundle import OperatorBundle
from rtsource.inverse.covariance import NoiseCovariance
from rtsource.inverse.make import make_operator, operator_record
from rtsource.inverse.params import MinimumNormParams
from rtsource.inverse.reference import reference_matrix
from rtsource.sensors.montage import CAP_64
from rtsource.session import operator_rebuilder
from rtsource.stream import artifacts as loop_artifacts
from rtsource.stream.bandpower import BandPowerSpec
from rtsource.stream.control import send_commands
from rtsource.stream.control_auth import default_key_path, ensure_key
from rtsource.stream.features import FeatureOptions
from rtsource.stream.inlet import StreamSelector
from rtsource.stream.loop import LoopOptions, StreamLoop
from rtsource.stream.operator import FilterSpec
from rtsource.stream.outputs import BANDPOWER_SUFFIX, EVENTS_SUFFIX, ROI_SUFFIX

from ..conftest import make_bundle
from .lsl_helpers import Collector, eeg_outlet, unique

FS = 250.0
NAMES = tuple(CAP_64[:24])
SOS = butter(2, 0.5, "hp", fs=FS, output="sos")
_FRONT = np.array([1.0 if c.startswith("Fp") else 0.6 if c.startswith("AF") else 0.15 for c in NAMES])
_SIDE = np.array([1.0 if c[-1] in "13579" else -1.0 if c[-1] in "2468" else 0.0 for c in NAMES])
SETUP_PATTERN = _FRONT  # EEG per EOG (V/V): the blink's propagation at setup
LIVE_PATTERN = _FRONT * (1.0 + 0.7 * _SIDE)  # ... and while streaming (the cap moved)
AVERAGE = reference_matrix(NAMES, "average")


def _record(seconds: float, seed: int, pattern: np.ndarray) -> np.ndarray:
    """(n, 24 EEG + VEOG) in uV: correlated noise, a blink every ~0.9 s seen by VEOG and, by ``pattern``, the EEG."""
    rng = np.random.default_rng(seed)
    n = int(seconds * FS)
    mix = np.random.default_rng(1).normal(size=(len(NAMES), len(NAMES))) * 0.3 + np.eye(len(NAMES))
    eeg = rng.normal(size=(n, len(NAMES))) @ mix.T * 5.0
    eog = rng.normal(size=n) * 2.0
    w = int(0.3 * FS)
    for at in np.arange(int(0.5 * FS), n - w, int(0.9 * FS)) + rng.integers(0, int(0.2 * FS), size=len(range(int(0.5 * FS), n - w, int(0.9 * FS)))):
        eog[at : at + w] += 150.0 * np.hanning(w)
    return np.column_stack([eeg + eog[:, None] * pattern[None, :], eog])


def _cos(a, b) -> float:
    return float(abs(a @ b) / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def bundle():
    """A rebuildable operator with EOG regression and a blink projection folded in."""
    rng = np.random.default_rng(0)
    n, n_src = len(NAMES), 40
    rest = sosfilt(SOS, _record(30, 5, SETUP_PATTERN), axis=0) * 1e-6  # V, filtered as the loop filters
    x, eog = rest[:, :n], rest[:, n:]
    reg = fit_eog_regression(x, eog, FS, NAMES, ("VEOG",), source="test rest")
    proj = fit_projection(x @ AVERAGE.T, FS, NAMES, eog=eog, n_ocular=1, n_cardiac=0, source="test rest")
    assert proj.kinds == ("ocular",)
    art = ArtifactCalibration(("regression", "projection"), regression=reg, projection=proj)
    gain = rng.normal(size=(n, 3 * n_src)) * 1e-7
    base = make_bundle(n_chan=n, n_src=n_src, ch_names=NAMES, sfreq=FS)
    normals = base.sources.normals  # the rebuilds use the bundle's
    cov = NoiseCovariance(np.diag(rng.uniform(0.5, 2, n)) * 1e-12, NAMES, 1000, "empirical", 0.0)
    params = MinimumNormParams(method="dSPM")
    op = make_operator(params, gain, normals, cov, reference="average", ch_names=NAMES, projector=art.projector(NAMES))
    fields = {f: getattr(base, f) for f in OperatorBundle.__dataclass_fields__}
    fields.update(kernel=op.kernel, noise_norm=op.noise_norm, n_orient=op.n_orient, method="dSPM", gain=gain, noise_cov=cov.data,
                  source_rotation=op.source_rotation, params=operator_record(op, params, reference="average"), artifacts=art, created_utc="")  # fmt: skip
    return OperatorBundle(**fields), params, normals


def _events(col: Collector) -> list[dict]:
    data, _ = col.data()
    return [json.loads(row[0]) for row in data] if len(data) else []


def _header_artifacts(name: str) -> dict:
    info = pylsl.StreamInlet(pylsl.resolve_byprop("name", name, timeout=10)[0]).info(timeout=10)
    node = info.desc().child("rtsource").child("artifacts")
    return {"methods": json.loads(node.child_value("methods")), "delay_s": float(node.child_value("delay_s")),
            "projection": json.loads(node.child_value("projection") or "{}")}  # fmt: skip


def test_regression_and_projection_recalibrate_live_from_the_control_stream(bundle, monkeypatch):
    bundle, params, normals = bundle
    monkeypatch.setattr(loop_artifacts, "RECALIBRATION_MAX_VALUES", 1_000_000)  # 600 s of 24 channels is then too much
    in_name, out_name = unique("recal-eeg"), unique("recal-src")
    outlet = eeg_outlet(in_name, NAMES + ("VEOG",), sfreq=FS, types=["EEG"] * len(NAMES) + ["EOG"])
    rois = [Roi("L", np.arange(0, 12)), Roi("R", np.arange(25, 37))]
    features = FeatureOptions(rois=rois, bandpower=BandPowerSpec())
    opts = LoopOptions(selector=StreamSelector(in_name), output_name=out_name, resolve_timeout=20, filter=FilterSpec(0.5, 0.0, 2), wait_for_consumer_s=5.0)
    loop = StreamLoop(bundle, opts, features=features, rebuilder=operator_rebuilder())
    loop.connect()
    # every output carrying derived data says what artifact correction it went through
    for name in (out_name, out_name + ROI_SUFFIX, out_name + BANDPOWER_SUFFIX):
        head = _header_artifacts(name)
        assert head["methods"] == ["regression", "projection"] and head["delay_s"] == 0.0 and head["projection"] == {"kinds": ["ocular"]}, (name, head)
    src, ev = Collector(out_name), Collector(out_name + EVENTS_SUFFIX)
    thread = loop.run_in_thread()
    x = _record(40, 7, LIVE_PATTERN).astype(np.float32)  # played in a loop, stamps running on
    t0 = pylsl.local_clock()
    pushed = 0
    stop = threading.Event()

    def produce():  # 25x real time, the samples' own stamps, until stopped
        nonlocal pushed
        while not stop.is_set():
            s = pushed % len(x)
            outlet.push_chunk(x[s : s + 25].tolist(), (t0 + (pushed + np.arange(25)) / FS).tolist())
            pushed += 25
            time.sleep(25 / FS / 25)

    def states() -> list[str]:
        return [e["state"] for e in _events(ev) if e["event"] == "artifact_calibration"]

    def wait(pred, timeout=30.0) -> bool:
        deadline = time.monotonic() + timeout
        while not pred() and time.monotonic() < deadline:
            time.sleep(0.05)
        return pred()

    producer = threading.Thread(target=produce, daemon=True)
    stage_before, roi_before = loop.operator.cleaner, loop.features.roi_stage
    try:
        key = ensure_key(default_key_path(out_name))
        assert outlet.wait_for_consumers(10)
        producer.start()
        # malformed, out of range, unknown method, and a second one while the first records:
        # each refused with the value and the fix, nothing changes, the loop runs on; and a
        # channel goes bad while the regression records (it keeps its setup factors)
        texts = ("nan", "-5", "1e400", "inf", "15:bogus", "sixty", "600", "15:regression", "15")
        answers = send_commands(out_name, [("recalibrate_artifacts", t) for t in texts] + [("mark_bad", "Fp2")], key=key, answer_timeout_s=30, confirm_swap=False)
        refused = {a.channel: a.message for a in answers if not a.ok}
        assert [a.channel for a in answers if a.ok] == ["15:regression", "Fp2"], refused
        for text in ("nan", "-5", "1e400", "inf"):
            assert f"seconds = {text!r}" in refused[text] and "15-600 s" in refused[text], refused[text]
        assert "'bogus'" in refused["15:bogus"] and "['regression', 'projection']" in refused["15:bogus"]
        assert "'sixty'" in refused["sixty"] and "e.g. '60'" in refused["sixty"]
        assert "seconds = 600 would record 3,750,000 values" in refused["600"] and "pass at most 160 s" in refused["600"], refused["600"]
        assert "already recording" in refused["15"] and "wait for its artifact_calibration event" in refused["15"]
        assert wait(lambda: states()[-1:] in (["live"], ["failed"])), states()
        assert states() == ["recording", "ready", "live"], [e for e in _events(ev) if e["event"] == "artifact_calibration"]
        # the regression swapped between two chunks: a new stage (on the operator without Fp2)
        assert loop.operator.cleaner is not stage_before and loop.operator.cleaner.calibration is loop.artifacts.current
        (proj,) = send_commands(out_name, [("recalibrate_artifacts", "15:projection")], key=key, answer_timeout_s=30, confirm_swap=False)
        assert proj.ok, proj
        assert wait(lambda: states()[-1:] in (["live"], ["failed"]) and len(states()) == 6), states()
        # a rebuild begun before the recalibration and installed after it (a race with a bad
        # channel's) has the old projection: the loop notices and refolds from the new base
        loop.request_swap(loop.prepare_operator(bundle), "late rebuild", time.perf_counter())
        assert wait(lambda: any(e["event"] == "operator_swap" and "stale projection" in e["reason"] for e in _events(ev)))
        stop.set()
        producer.join(10)
        assert wait(lambda: loop.stats.samples_out >= pushed)
    finally:
        stop.set()
        loop.stop()
        thread.join(10)
        loop.close()
        src.stop()
        ev.stop()
    events = _events(ev)
    cal_events = [e for e in events if e["event"] == "artifact_calibration"]
    assert [e["state"] for e in cal_events] == ["recording", "ready", "live"] * 2, cal_events
    live_reg, live_proj = cal_events[2], cal_events[5]
    assert live_reg["methods"] == ["regression"] and live_reg["swap_ms"] >= 0 and live_reg["fit_ms"] > 0
    assert live_proj["methods"] == ["projection"] and live_proj["projection"]["kinds"] == ["ocular"] and live_proj["rebuild_ms"] > 0
    swaps = [e for e in events if e["event"] == "operator_swap" and e["reason"] == "artifact_recalibration"]
    assert len(swaps) == 1 and swaps[0]["methods"] == ["projection"]
    # no sample lost or repeated across both swaps: every input sample out once, with its own stamp
    st = loop.stats
    assert st.samples_in == st.samples_out == pushed and st.lost == 0
    _, got = src.data()
    assert len(got) == pushed and np.allclose(got, t0 + np.arange(pushed) / FS, atol=1e-5)
    # the regression in use is the live one (the setup's factors were the old pattern)
    cal = loop.artifacts.current
    assert loop.operator.cleaner.calibration.regression is cal.regression
    coef = dict(zip(cal.regression.eeg_names, cal.regression.coefficients[0]))
    keep = tuple(c for c in NAMES if c != "Fp2")
    rows = [NAMES.index(c) for c in keep]
    assert np.allclose([coef[c] for c in keep], LIVE_PATTERN[rows], atol=0.03), coef
    fp2 = NAMES.index("Fp2")
    if live_reg["regression"]["channels"] == len(keep):  # Fp2 was out before the recording ended: setup's factor stays
        assert coef["Fp2"] == bundle.artifacts.regression.coefficients[0, fp2]
    else:  # (the swap came after it: Fp2 was fitted too)
        assert live_reg["regression"]["channels"] == len(NAMES) and abs(coef["Fp2"] - LIVE_PATTERN[fp2]) < 0.03
    # the projection is the live blink's, folded into the operator the loop runs now (Fp2 out)
    assert loop.operator.bundle.ch_names == keep and "Fp2" not in cal.projection.ch_names
    live_topo = (AVERAGE @ LIVE_PATTERN)[rows]
    vec = cal.projection.vectors[:, 0]
    assert _cos(vec, live_topo) > 0.98 and _cos(bundle.artifacts.projection.vectors[rows, 0], live_topo) < 0.95
    cov = NoiseCovariance(np.asarray(bundle.noise_cov)[np.ix_(rows, rows)], keep, 1000, "empirical", 0.0)
    expect = make_operator(params, np.asarray(bundle.gain)[rows], normals, cov, reference="average", ch_names=keep, projector=cal.projector(keep))
    assert np.allclose(loop.operator.bundle.kernel, expect.kernel, rtol=1e-6, atol=1e-9 * np.abs(expect.kernel).max())
    assert loop.features.roi_stage is not roi_before  # the ROI fold follows the new operator
    # later rebuilds (Fp2 back) start from a base with the new projection folded in on all channels
    full = NoiseCovariance(np.asarray(bundle.noise_cov), NAMES, 1000, "empirical", 0.0)
    expect = make_operator(params, np.asarray(bundle.gain), normals, full, reference="average", ch_names=NAMES, projector=cal.projector(NAMES))
    assert loop.bundle.artifacts is cal and np.allclose(loop.bundle.kernel, expect.kernel, rtol=1e-6, atol=1e-9 * np.abs(expect.kernel).max())
