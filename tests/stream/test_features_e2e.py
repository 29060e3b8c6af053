"""ROI / band-power outputs and a bad-channel hot swap, through the real loop over real LSL."""

from __future__ import annotations

import dataclasses
import json
import time
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from rtsource.anatomy.template import load_template, template_source_space
from rtsource.build import build_bundle
from rtsource.config import NoiseCovSettings, Settings, settings_from_dict
from rtsource.forward.head_model import SphereHead, sphere_model_for_template
from rtsource.forward.leadfield import make_leadfield
from rtsource.sensors.montage import CAP_64, standard_montage
from rtsource.session import feature_options, operator_rebuilder
from rtsource.stream.inlet import StreamSelector
from rtsource.stream.loop import LoopOptions, StreamLoop
from rtsource.stream.outputs import BANDPOWER_SUFFIX, EVENTS_SUFFIX, ROI_SUFFIX

from .lsl_helpers import Collector, eeg_outlet, unique
from .test_reliability import push, wait_for

SFREQ = 500.0


@pytest.fixture(scope="module")
def bundle_8k():
    """A real template operator: 64 channels, ~8k cortical sources, ad hoc noise covariance."""
    s = dataclasses.replace(Settings(), noise_cov=NoiseCovSettings(source="ad_hoc"))
    dense = template_source_space("ico5")
    sources = dense.subset(np.arange(0, dense.n_sources, 5)[: 4096].tolist() + np.arange(2, dense.n_sources, 5)[: 4096].tolist(), name="fsaverage-ico5-8k")
    t = load_template()
    head = SphereHead(sphere_model_for_template(t, s.forward.relative_radii, s.forward.conductivities))
    slf = make_leadfield(sources, standard_montage("standard_1005").pick(CAP_64), head, use_cache=False)
    return build_bundle(s, sfreq=SFREQ, leadfield=slf)


def offline(bundle, x_v):
    y = x_v @ bundle.kernel.T
    y = np.sqrt((y.reshape(len(y), -1, 3) ** 2).sum(axis=2)) if bundle.n_orient == 3 else y
    return y / bundle.noise_norm


def test_roi_and_bandpower_outputs(bundle_8k):
    settings = settings_from_dict(
        {
            "roi": [{"name": "V1r", "center_mm": [20.0, -92.0, 2.0], "radius_mm": 15.0}, {"name": "M1l", "center_mm": [-38.0, -22.0, 58.0], "radius_mm": 15.0}],
            "rois": {"mode": "mean_flip"},
            "bandpower": {"bands": {"alpha": [8, 12], "beta": [15, 25]}, "rate_hz": 25.0},
        }
    )
    feats = feature_options(settings, bundle_8k)
    in_name, out_name = unique("roi-eeg"), unique("roi-src")
    outlet = eeg_outlet(in_name, CAP_64, sfreq=SFREQ, source_id=in_name)
    loop = StreamLoop(bundle_8k, LoopOptions(selector=StreamSelector(in_name), output_name=out_name, resolve_timeout=20), features=feats)
    loop.connect()
    thread = loop.run_in_thread()
    roi = Collector(out_name + ROI_SUFFIX)
    bp = Collector(out_name + BANDPOWER_SUFFIX)
    assert outlet.wait_for_consumers(20)
    rng = np.random.default_rng(0)
    n = 2500
    x = (rng.normal(size=(n, 64)) * 10).astype(np.float32)
    stamps = 30.0 + np.arange(n) / SFREQ
    push(outlet, x, stamps)
    assert wait_for(lambda: roi.n_samples >= n)
    time.sleep(0.3)
    loop.stop()
    thread.join(10)
    roi.stop()
    bp.stop()
    loop.close()
    data, got = roi.data()
    assert np.array_equal(got, stamps)
    expected = loop.features.roi_operator.apply(x.astype(np.float64) * 1e-6)
    assert np.allclose(data, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    labels = [c.find("label").text for c in ET.fromstring(roi.info.as_xml()).findall("desc/channels/channel")]
    assert labels == ["V1r", "M1l"]
    bdata, bts = bp.data()
    blabels = [c.find("label").text for c in ET.fromstring(bp.info.as_xml()).findall("desc/channels/channel")]
    assert set(blabels) == {"V1r_alpha", "M1l_alpha", "V1r_beta", "M1l_beta"}
    assert bp.info.nominal_srate() == pytest.approx(25.0)
    assert len(bts) == pytest.approx(n / 20, abs=2)  # one output every 20 input samples
    assert np.all(np.isfinite(bdata[5:]))


def test_hot_swap_marks_channel_bad_without_losing_samples(bundle_8k):
    in_name, out_name = unique("hs-eeg"), unique("hs-src")
    outlet = eeg_outlet(in_name, CAP_64, sfreq=SFREQ, source_id=in_name)
    loop = StreamLoop(bundle_8k, LoopOptions(selector=StreamSelector(in_name), output_name=out_name, resolve_timeout=20), rebuilder=operator_rebuilder())
    loop.connect()
    thread = loop.run_in_thread()
    out = Collector(out_name)
    events = Collector(out_name + EVENTS_SUFFIX)
    assert outlet.wait_for_consumers(20)
    rng = np.random.default_rng(1)
    n = 5000
    x = (rng.normal(size=(n, 64)) * 10).astype(np.float32)
    stamps = 40.0 + np.arange(n) / SFREQ
    push(outlet, x[:2000], stamps[:2000], pace=0.02)  # real time: 10 samples per 20 ms
    loop.mark_bad("Cz")
    push(outlet, x[2000:], stamps[2000:], pace=0.02)
    assert wait_for(lambda: out.n_samples >= n, 60)
    time.sleep(0.3)
    loop.stop()
    thread.join(10)
    out.stop()
    events.stop()
    loop.close()
    data, got = out.data()
    assert np.array_equal(got, stamps), "every sample exactly once, in order"
    swaps = [json.loads(r[0]) for r in events.data()[0] if json.loads(r[0])["event"] == "operator_swap"]
    assert len(swaps) == 1 and swaps[0]["bad_channels"] == ["Cz"]
    print(f"hot swap 64 ch x {bundle_8k.n_sources} sources: live {swaps[0]['swap_ms']:.1f} ms after marking Cz bad")
    from rtsource.inverse.rebuild import rebuild_without_channels

    old = offline(bundle_8k, x.astype(np.float64) * 1e-6)
    nb = rebuild_without_channels(bundle_8k, ["Cz"])
    keep = [CAP_64.index(c) for c in nb.ch_names]
    new = offline(nb, x[:, keep].astype(np.float64) * 1e-6)
    is_old = np.all(np.isclose(data, old, rtol=1e-3, atol=1e-4 * np.abs(old).max()), axis=1)
    is_new = np.all(np.isclose(data, new, rtol=1e-3, atol=1e-4 * np.abs(new).max()), axis=1)
    assert np.all(is_old | is_new)
    switch = int(np.argmax(~is_old))
    assert switch > 0 and np.all(is_old[:switch]) and np.all(is_new[switch:]), "one clean switch from old to new"
    assert loop.stats.operator_swaps == 1 and loop.stats.lost == 0


def test_eloreta_hot_swap_takes_two_steps():
    """eLORETA: first one iteration from the current weights, then the converged operator."""
    s = settings_from_dict({"inverse": {"method": "eLORETA"}, "noise_cov": {"source": "ad_hoc"}})
    bundle = build_bundle(s, sfreq=SFREQ)
    assert bundle.source_weights is not None
    in_name, out_name = unique("el-eeg"), unique("el-src")
    outlet = eeg_outlet(in_name, CAP_64, sfreq=SFREQ, source_id=in_name)
    loop = StreamLoop(bundle, LoopOptions(selector=StreamSelector(in_name), output_name=out_name, resolve_timeout=20), rebuilder=operator_rebuilder())
    loop.connect()
    thread = loop.run_in_thread()
    out = Collector(out_name)
    assert outlet.wait_for_consumers(20)
    rng = np.random.default_rng(2)
    n = 4000
    x = (rng.normal(size=(n, 64)) * 10).astype(np.float32)
    stamps = 60.0 + np.arange(n) / SFREQ
    push(outlet, x[:500], stamps[:500], pace=0.02)
    loop.mark_bad("O1")
    push(outlet, x[500:], stamps[500:], pace=0.02)
    assert wait_for(lambda: out.n_samples >= n, 60)
    loop.stop()
    thread.join(10)
    out.stop()
    loop.close()
    swaps = [e for e in loop.events.recent if e["event"] == "operator_swap"]
    assert len(swaps) == 2 and "first iteration" in swaps[0]["reason"]
    assert np.array_equal(out.data()[1], stamps) and loop.stats.lost == 0
    print("eLORETA swaps live after", [round(e["swap_ms"], 1) for e in swaps], "ms")


def test_adaptive_lcmv_updates_weights_while_streaming():
    import dataclasses as dc

    from rtsource.inverse.covariance import estimate_data_covariance
    from rtsource.inverse.reference import reference_matrix
    from rtsource.simulator import SignalGenerator

    s = settings_from_dict({"inverse": {"method": "LCMV"}, "noise_cov": {"source": "ad_hoc"}, "adaptive": {"enabled": True, "half_life_s": 1.0, "interval_s": 1.0}})
    gen = SignalGenerator(dc.replace(s.simulate, n_noise_sources=300), CAP_64)
    calib, _ = gen.next(5000)
    dcov = estimate_data_covariance(calib, CAP_64, reference=reference_matrix(CAP_64, "average"))
    bundle = build_bundle(s, sfreq=SFREQ, data_cov=dcov)
    assert bundle.method == "LCMV" and bundle.data_cov is not None
    in_name, out_name = unique("ad-eeg"), unique("ad-src")
    outlet = eeg_outlet(in_name, CAP_64, sfreq=SFREQ, source_id=in_name)
    loop = StreamLoop(bundle, LoopOptions(selector=StreamSelector(in_name), output_name=out_name, resolve_timeout=20), features=feature_options(s, bundle),
                      rebuilder=operator_rebuilder())
    loop.connect()
    thread = loop.run_in_thread()
    out = Collector(out_name)
    assert outlet.wait_for_consumers(20)
    x, _ = gen.next(3500)
    x = (x * 1e6).astype(np.float32)
    stamps = 80.0 + np.arange(len(x)) / SFREQ
    push(outlet, x, stamps, pace=0.02)  # 7 s at the real pace
    assert wait_for(lambda: out.n_samples >= len(x), 60)
    loop.stop()
    thread.join(10)
    out.stop()
    loop.close()
    swaps = [e for e in loop.events.recent if e["event"] == "operator_swap"]
    assert len(swaps) >= 2 and all(e["reason"] == "adaptive" for e in swaps)
    assert np.array_equal(out.data()[1], stamps) and loop.stats.lost == 0
    assert np.isfinite(loop.stats.covariance_age_s) and loop.stats.covariance_age_s < 5.0
    print("adaptive swaps live after", [round(e["swap_ms"], 1) for e in swaps], "ms")


def test_mark_bad_from_another_process(bundle_8k, tmp_path):
    """`rtsource mark-bad Cz` reaches a running `rtsource run`; the swap is seamless."""
    import subprocess
    import sys

    from rtsource.bundle import save_bundle

    path = save_bundle(bundle_8k, tmp_path / "b.npz")
    in_name, out_name = unique("mb-eeg"), unique("mb-src")
    outlet = eeg_outlet(in_name, CAP_64, sfreq=SFREQ, source_id=in_name)
    run = subprocess.Popen(
        [sys.executable, "-m", "rtsource.cli", "run", str(path), "--stream-name", in_name, "--outlet-name", out_name, "--idle-timeout", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        events = Collector(out_name + EVENTS_SUFFIX, timeout=60)
        out = Collector(out_name)
        assert outlet.wait_for_consumers(30)
        rng = np.random.default_rng(3)
        n = 3000
        x = (rng.normal(size=(n, 64)) * 10).astype(np.float32)
        stamps = 90.0 + np.arange(n) / SFREQ
        push(outlet, x[:500], stamps[:500], pace=0.02)
        mark = subprocess.Popen([sys.executable, "-m", "rtsource.cli", "mark-bad", "Cz", "XX9", "--output", out_name], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        push(outlet, x[500:], stamps[500:], pace=0.02)
        # XX9 is refused, so mark-bad says so and fails; Cz is done (issue 14: it used to exit 0)
        assert mark.wait(60) == 1, mark.stderr.read()
        mark_out, mark_err = mark.communicate()
        assert "XX9: refused:" in mark_err and "not one of the bundle's channels" in mark_err
        assert "Cz: marked bad" in mark_out
        assert wait_for(lambda: out.n_samples >= n, 60)
        stdout, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    events.stop()
    out.stop()
    assert run.returncode == 0, stderr
    assert np.array_equal(out.data()[1], stamps)
    evs = [json.loads(r[0]) for r in events.data()[0]]
    commands = [e for e in evs if e["event"] == "command"]
    assert {(c["channel"], c["ok"]) for c in commands} == {("Cz", True), ("XX9", False)}
    swaps = [e for e in evs if e["event"] == "operator_swap"]
    assert len(swaps) == 1 and swaps[0]["bad_channels"] == ["Cz"]
    print(f"mark-bad across processes: new operator live {swaps[0]['swap_ms']:.1f} ms after the command (built in {swaps[0]['build_ms']:.1f} ms)")
