"""Artifact correction as a whole: config, bundle round trip, projection folded into the
operator (and kept by rebuilds), the per-chunk stage (units, subsets, regression, delayed
NaN flags), on synthetic data with a known blink topography."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.signal import butter, sosfilt

from rtsource.artifacts import ArtifactCalibration, AsrProcessor, calibrate_asr, fit_eog_regression, fit_projection
from rtsource.artifacts.asr import restrict_calibration
from rtsource.bundle import load_bundle, save_bundle
from rtsource.config import settings_from_dict
from rtsource.errors import BundleError, ConfigError
from rtsource.sensors.montage import CAP_64

from ..conftest import make_bundle

FS = 250.0
NAMES = tuple(CAP_64[:24])  # Fp1, Fpz, Fp2, AF7, ... : frontal names included


def _blink_pattern(names) -> np.ndarray:
    front = np.array([3.0 if c.lower().startswith("fp") else 1.5 if c.lower().startswith("af") else 0.3 if c.startswith("F") else 0.05 for c in names])
    return front - front.mean()  # average-referenced


@pytest.fixture(scope="module")
def data():
    """60 s of correlated noise (uV) with a blink every ~3 s, its clean twin, the EOG."""
    rng = np.random.default_rng(3)
    n = int(60 * FS)
    mix = rng.normal(size=(len(NAMES), len(NAMES))) * 0.3 + np.eye(len(NAMES))
    clean = rng.normal(size=(n, len(NAMES))) @ mix.T * 5.0
    eog = np.zeros(n)
    w = int(0.3 * FS)
    for at in range(int(1.5 * FS), n - w, int(5.3 * FS)):
        eog[at : at + w] += 120.0 * np.hanning(w)
    raw = clean + np.outer(eog, _blink_pattern(NAMES) / np.abs(_blink_pattern(NAMES)).max())
    sos = butter(2, 0.5, "hp", fs=FS, output="sos")
    f = lambda x: sosfilt(sos, x, axis=0)  # noqa: E731
    return f(raw), f(clean), f(eog[:, None])


def test_config_checks_the_artifacts_section():
    ok = settings_from_dict({"artifacts": {"method": ["projection", "asr"]}, "preprocess": {"highpass_hz": 0.5}})
    assert ok.artifacts.method == ("projection", "asr") and ok.artifacts.asr_cutoff == 20.0 and ok.artifacts.asr_lookahead_s == 0.25
    for bad, word in (
        ({"artifacts": {"method": ["none", "asr"]}, "preprocess": {"highpass_hz": 0.5}}, "'none' cannot be combined"),
        ({"artifacts": {"method": ["ica"]}}, "choose among"),
        ({"artifacts": {"method": ["asr"]}}, "highpass_hz = 0.5"),
        ({"artifacts": {"method": ["regression"]}}, "eog_channels"),
        ({"artifacts": {"method": ["asr"], "asr_cutoff": 0.5}, "preprocess": {"highpass_hz": 0.5}}, "20-30"),
        ({"artifacts": {"method": ["projection"], "calibration": "file"}}, "path"),
    ):
        with pytest.raises(ConfigError, match=word):
            settings_from_dict(bad)


@pytest.fixture(scope="module")
def calibration(data):
    raw, _, eog = data
    v = raw * 1e-6
    asr = calibrate_asr(v, FS, NAMES, cutoff=20.0, source="test")
    reg = fit_eog_regression(v, eog * 1e-6, FS, NAMES, ("EOG",), source="test")
    proj = fit_projection(v - v.mean(axis=1, keepdims=True), FS, NAMES, n_ocular=1, source="test")
    return ArtifactCalibration(("projection", "asr", "regression"), asr, reg, proj, lookahead_s=0.2, update_every=16, recalibrate_s=30.0)


def test_projection_finds_the_blink_topography_without_eog(calibration):
    p = calibration.projection
    assert p.kinds == ("ocular",)
    truth = _blink_pattern(NAMES) / np.linalg.norm(_blink_pattern(NAMES))
    assert abs(p.vectors[:, 0] @ truth) > 0.98
    report = json.loads(p.provenance)["ocular"]
    assert 10 <= report["events"] <= 12 and report["reference"].startswith("mean of Fp1")  # 11 blinks
    # the projector annihilates it, restricted by name to a subset (a bad channel dropped)
    assert np.abs(p.projector(NAMES) @ truth).max() < 1e-2
    sub = NAMES[1:]
    proj_sub = p.projector(sub)
    restricted = truth[1:] - truth[1:].mean()
    assert np.linalg.norm(proj_sub @ restricted) < 0.2 * np.linalg.norm(restricted)
    assert np.allclose(proj_sub @ proj_sub, proj_sub, atol=1e-10)  # still a projector


def test_projection_is_folded_into_the_operator_consistently(calibration):
    """The operator built with the projector annihilates the blink and equals the operator of
    the projected gain and covariance (SSP); the whitener loses one rank; rebuilds keep it."""
    from rtsource.inverse.covariance import NoiseCovariance
    from rtsource.inverse.make import make_operator, operator_record
    from rtsource.inverse.params import MinimumNormParams
    from rtsource.inverse.rebuild import rebuild_without_channels
    from rtsource.inverse.reference import reference_matrix

    rng = np.random.default_rng(0)
    n, n_src = len(NAMES), 30
    gain = rng.normal(size=(n, 3 * n_src)) * 1e-7
    normals = rng.normal(size=(n_src, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    cov = NoiseCovariance(np.diag(rng.uniform(0.5, 2, n)) * 1e-12, NAMES, 1000, "empirical", 0.0)
    p = calibration.projector(NAMES)
    mne = MinimumNormParams(method="MNE", depth=None)  # depth weighting reads the raw gain: off, to compare with SSP by hand
    plain = make_operator(mne, gain, normals, cov, reference="average", ch_names=NAMES)
    op = make_operator(mne, gain, normals, cov, reference="average", ch_names=NAMES, projector=p)
    u = calibration.projection.vectors[:, 0]  # the fitted pattern: annihilated
    assert np.abs(op.kernel @ u).max() < 1e-9 * np.abs(plain.kernel @ u).max()
    blink = reference_matrix(NAMES, "average") @ _blink_pattern(NAMES)  # the true one: nearly
    assert np.abs(op.kernel @ blink).max() < 0.05 * np.abs(plain.kernel @ blink).max()
    assert op.rank == plain.rank - 1
    # SSP: the same as whitening P M C M^T P and inverting P M G, then applying K P M
    m = p @ reference_matrix(NAMES, "average")
    pm_cov = NoiseCovariance(m @ cov.data @ m.T, NAMES, 1000, "empirical", 0.0)
    by_hand = make_operator(mne, m @ gain, normals, pm_cov, reference="none", ch_names=NAMES)
    assert np.allclose(by_hand.kernel @ m, op.kernel, rtol=1e-6, atol=1e-9 * np.abs(op.kernel).max())
    params = mne
    b = make_bundle(
        n_chan=n, n_src=n_src, ch_names=NAMES, kernel=op.kernel, noise_norm=op.noise_norm, method="MNE", output_unit="A*m",
        gain=gain, noise_cov=cov.data, source_rotation=op.source_rotation, params=operator_record(op, params, reference="average"),
        artifacts=calibration,
    )  # fmt: skip
    rebuilt = rebuild_without_channels(b, ["Cz"] if "Cz" in NAMES else [NAMES[-1]])
    blink_sub = reference_matrix(rebuilt.ch_names, "average") @ _blink_pattern(rebuilt.ch_names)
    assert np.abs(rebuilt.kernel @ blink_sub).max() < 0.05 * np.abs(plain.kernel @ blink).max()
    assert rebuilt.artifacts is calibration


def test_bundle_round_trip_keeps_the_calibration(calibration, tmp_path):
    b = make_bundle(n_chan=len(NAMES), ch_names=NAMES, artifacts=calibration)
    path = save_bundle(b, tmp_path / "b.npz")
    back = load_bundle(path).artifacts
    assert back.methods == ("regression", "asr", "projection")  # the order of use
    assert back.lookahead_s == 0.2 and back.update_every == 16 and back.recalibrate_s == 30.0
    for part, names in (("asr", ("mixing", "thresholds", "filter_b", "filter_a")), ("regression", ("coefficients",)), ("projection", ("vectors", "explained"))):
        for name in names:
            assert np.array_equal(getattr(getattr(back, part), name), getattr(getattr(calibration, part), name))
        assert getattr(back, part).provenance == getattr(calibration, part).provenance
    assert json.loads(back.asr.provenance)["source"] == "test"
    # a bundle without a calibration is written exactly as before (no key, no array)
    plain = save_bundle(make_bundle(n_chan=len(NAMES), ch_names=NAMES), tmp_path / "p.npz")
    assert load_bundle(plain).artifacts is None
    import zipfile

    assert not [n for n in zipfile.ZipFile(plain).namelist() if n.startswith("artifact")]


def test_a_damaged_calibration_is_refused(calibration, tmp_path):
    import rtsource.bundle as bm

    b = make_bundle(n_chan=len(NAMES), ch_names=NAMES, artifacts=calibration)
    arrays = bm._arrays_of(b)
    header = bm._jsonable(bm._header_of(b))
    arrays["artifact_asr_thresholds"] = arrays["artifact_asr_thresholds"][:3, :3].copy()  # wrong size, checksum redone
    header["checksum"] = bm._checksum(header, arrays)
    payload = dict(arrays, header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8))
    np.savez(tmp_path / "bad.npz", **payload)
    with pytest.raises(BundleError, match="artifact calibration"):
        load_bundle(tmp_path / "bad.npz")


def test_restricted_calibration_in_stream_units_gives_the_same_repair(data, calibration):
    """ASR on uV data with the V calibration converted (restrict_calibration's scale) repairs
    exactly as ASR in V; on a subset it is the calibration of those channels."""
    raw = data[0][: int(20 * FS)]
    a = AsrProcessor(calibration.asr, 10, lookahead_s=0.2)
    b = AsrProcessor(restrict_calibration(calibration.asr, NAMES, np.full(len(NAMES), 1e-6)), 10, lookahead_s=0.2)
    oa, ob = np.zeros((10, len(NAMES))), np.zeros((10, len(NAMES)))
    worst = 0.0
    for s in range(0, len(raw), 10):
        a.process(np.ascontiguousarray(raw[s : s + 10] * 1e-6), oa)
        b.process(np.ascontiguousarray(raw[s : s + 10]), ob)
        worst = max(worst, np.abs(oa * 1e6 - ob).max())
    assert a.samples_repaired > 0 and a.samples_repaired == b.samples_repaired
    assert worst < 1e-6 * np.abs(raw).max()
    sub = restrict_calibration(calibration.asr, NAMES[::2])
    assert np.allclose(sub.covariance, calibration.asr.covariance[::2, ::2])
    q = calibration.asr.thresholds.T @ calibration.asr.thresholds
    assert np.allclose(sub.thresholds.T @ sub.thresholds, q[::2, ::2])


def test_stage_regresses_repairs_delays_and_counts(data, calibration):
    """The stage in stream units (uV, float32 as the operator holds them): EOG regression
    from the stream's EOG column, then ASR with its delay; NaN flags delayed with the data."""
    raw, clean, eog = data
    n_ch = len(NAMES)
    stage = calibration.stage(NAMES, np.full(n_ch, 1e-6), 10, eog_index=[n_ch], eog_scale=[1e-6], sos=None)
    d = stage.delay_samples
    assert d == int(0.2 * FS)
    stream = np.hstack([raw, eog]).astype(np.float32)  # operator channels, then the EOG column
    out = np.zeros_like(raw)
    bad = np.zeros(10, np.uint8)
    flagged = []
    for s in range(0, len(raw), 10):
        picked = stream[s : s + 10, :n_ch].copy()
        bad[:] = 0
        n_bad = 0
        if s == 2000:
            bad[3] = 1
            picked[3] = np.nan
            n_bad = 1
        n_bad = stage.process(stream[s : s + 10], picked, 10, bad, n_bad)
        flagged += [s + i for i in np.flatnonzero(bad)] if n_bad else []
        out[s : s + 10] = picked
    assert flagged == [2003 + d]  # the flag leaves with its sample, d later
    out = out[d:]
    ref = clean[: len(out)]
    blink = np.abs(eog[: len(out), 0]) > 20
    before = np.mean((raw[: len(out)][blink] - ref[blink]) ** 2)
    after = np.mean((out[blink] - ref[blink]) ** 2)
    assert after < 0.05 * before  # the regression took the blinks out before ASR saw them
    assert np.isfinite(out).all()
    p50, p99 = stage.cost_ms()
    assert 0 < p50 <= p99 and stage.chunks == len(raw) // 10


def test_acceptance_bench_code_aligns_the_delay_and_measures_band_power(data, calibration):
    """The pieces of `rtsource bench artifact-acceptance` on small data: the loop's operator with
    the stage, re-aligned for the look-ahead, equals the plain operator where nothing needs
    repair; band power sees a sine in its band and not outside."""
    import dataclasses

    from rtsource.bench.artifact_acceptance import _stream, band_power, _windows
    from rtsource.config import Settings

    s = Settings()
    s = dataclasses.replace(s, preprocess=dataclasses.replace(s.preprocess, highpass_hz=0.5))
    b = make_bundle(n_chan=len(NAMES), ch_names=NAMES, sfreq=FS, n_orient=1)
    clean = data[1][: int(8 * FS)]
    asr_only = dataclasses.replace(calibration, methods=("asr",))
    plain = _stream(b, clean, s, None)
    fixed = _stream(b, clean, s, asr_only)
    valid = len(clean) - asr_only.delay_samples - 10
    first = int(FS)  # after the first second (the ASR window filled)
    assert np.allclose(fixed[first:valid], plain[first:valid], rtol=1e-3, atol=1e-3 * np.abs(plain).max())
    # the acceptance's fast path: the loop's filter and stage, then the (linear) kernel at once
    from rtsource.bench.artifact_acceptance import _stage_stream

    lin = _stage_stream(asr_only, NAMES, clean, s, FS) @ (b.kernel / b.noise_norm[:, None] * 1e-6).T
    assert np.allclose(lin[:valid], fixed[:valid], rtol=1e-3, atol=1e-4 * np.abs(fixed).max())
    t = np.arange(int(4 * FS)) / FS
    src = np.sin(2 * np.pi * 10 * t)[:, None] * np.ones((1, 3))
    starts = _windows(len(t), FS)
    assert band_power(src, FS, [0, 1], (8, 12), starts).min() > 1e3 * band_power(src, FS, [0, 1], (15, 25), starts).max()


def test_loop_attaches_regression_with_the_streams_eog_channel(data, calibration):
    """The loop's glue finds the EOG channel by name in the stream (type "EOG" welcome), the
    operator runs regression then ASR on its channels, and the delay is what the loop stamps."""
    import dataclasses

    from rtsource.stream.artifacts import LoopArtifacts
    from rtsource.stream.channels import StreamDescription, map_stream_channels
    from rtsource.stream.operator import FilterSpec, StreamOperator
    from rtsource.stream.telemetry import LoopStats

    raw, clean, eog = data
    names = ("HEOG",) + NAMES  # the EOG column first: found by name, not position
    desc = StreamDescription("amp", "EEG", "amp-1", FS, len(names), "float32", names, ("EOG",) + ("EEG",) * len(NAMES), ("uV",) * len(names))
    reg_only = dataclasses.replace(calibration, methods=("regression",), regression=dataclasses.replace(calibration.regression, eog_names=("HEOG",)))
    b = make_bundle(n_chan=len(NAMES), ch_names=NAMES, sfreq=FS, n_orient=1, artifacts=reg_only)
    cmap = map_stream_channels(desc, b.ch_names, b.ch_units, ch_types=b.ch_types)
    op = StreamOperator(b, cmap, 25, FilterSpec(0.0, 0.0, 2))
    glue = LoopArtifacts(b, LoopStats(), None)
    glue.attach(op, desc)
    assert op.cleaner is glue.stage and glue.delay_s == 0.0
    stream = np.hstack([eog, raw]).astype(np.float32)
    got = np.zeros_like(raw)
    for s in range(0, len(raw), 25):
        op.process(stream[s : s + 25], 25)
        got[s : s + 25] = op.prepared(25)
    blink = np.abs(eog[:, 0]) > 20
    assert np.mean((got[blink] - clean[blink]) ** 2) < 0.05 * np.mean((raw[blink] - clean[blink]) ** 2)
    no_eog = dataclasses.replace(desc, ch_names=("X",) + NAMES)
    with pytest.raises(Exception, match="HEOG"):
        glue.attach(StreamOperator(b, cmap, 25), no_eog)


def test_setup_calibrates_on_the_rest_recording():
    """Setup's step: [artifacts] + the rest recording (SI, operator order) -> the calibration,
    filtered like the stream, the projection on the average-referenced EEG, with provenance."""
    import dataclasses

    from rtsource.pipeline.artifacts import calibrate_artifacts
    from rtsource.stream.calibration import Calibration
    from rtsource.stream.channels import StreamDescription

    rng = np.random.default_rng(5)
    n = int(60 * FS)
    names = CAP_64
    x = rng.normal(size=(n, len(names))) @ (np.eye(len(names)) + 0.2 * rng.normal(size=(len(names), len(names)))).T * 5e-6 + 2e-3  # V, with a DC offset
    w = int(0.3 * FS)
    blink = np.zeros(n)
    for at in range(int(2 * FS), n - w, int(4.7 * FS)):
        blink[at : at + w] = np.hanning(w)
    x += np.outer(blink, _blink_pattern(names)) * 40e-6
    desc = StreamDescription("amp", "EEG", "", FS, len(names), "float32", names, ("EEG",) * len(names), ("V",) * len(names))
    rest = Calibration(x, np.arange(n) / FS, names, desc, 0)
    s = settings_from_dict({"artifacts": {"method": ["asr", "projection"], "n_ocular": 1}, "preprocess": {"highpass_hz": 0.5}})
    said = []
    cal = calibrate_artifacts(s, rest=rest, progress=said.append)
    assert cal.methods == ("asr", "projection") and cal.asr.ch_names == names and cal.lookahead_s == 0.25
    assert np.sqrt(np.diag(cal.asr.covariance)).max() < 1e-4  # calibrated on the high-passed data (the 2 mV offset gone)
    assert cal.projection.kinds == ("ocular",) and abs(cal.projection.vectors[:, 0] @ _blink_pattern(names)) > 0.97 * np.linalg.norm(_blink_pattern(names))
    assert abs(cal.projection.vectors[:, 0].sum()) < 1e-9  # in the average-referenced space
    assert json.loads(cal.provenance)["source"] == "the rest recording of setup" and any("ASR calibrated" in m for m in said)
    assert calibrate_artifacts(dataclasses.replace(s, artifacts=dataclasses.replace(s.artifacts, method=("none",))), rest=rest) is None
    with pytest.raises(ConfigError, match="from_recording"):
        calibrate_artifacts(dataclasses.replace(s, artifacts=dataclasses.replace(s.artifacts, calibration="file", path="rest.edf")), rest=rest)


def test_the_estimator_runs_the_bundles_artifact_stage(data, calibration):
    """The in-process Estimator applies ASR as the loop does (same glue), with its delay."""
    import dataclasses

    from rtsource.pipeline.estimator import Estimator
    from rtsource.stream.operator import FilterSpec

    b = make_bundle(n_chan=len(NAMES), ch_names=NAMES, sfreq=FS, n_orient=1, artifacts=dataclasses.replace(calibration, methods=("asr",)))
    est = Estimator(b, NAMES, "uV", filter=FilterSpec(0.5, 0.0, 2), max_chunk=25)
    assert est.operator.cleaner is not None and est.delay_s == pytest.approx(round(0.2 * FS) / FS)
    raw = data[0][: int(20 * FS)]
    for s in range(0, len(raw), 25):
        est.process(raw[s : s + 25])
    assert est.operator.cleaner.asr.samples_repaired > 0
    assert Estimator(make_bundle(n_chan=len(NAMES), ch_names=NAMES, sfreq=FS), NAMES, "uV").delay_s == 0.0


def _run_stage(stage, x):
    d = stage.delay_samples
    return stage.run_offline(x)[d:], x[: len(x) - d]


def test_asr_after_the_projection_never_undoes_it(data, calibration):
    """ASR calibrated and run in the subspace the projection leaves (Q = P M before it) is never
    worse than the projection alone in blinks, and changes nothing on clean data; ASR on the raw
    channels before the projection (asr_space "channels") smears the blink past the projector."""
    from rtsource.artifacts.calibration import subspace_projector

    raw, clean, eog = data
    proj = calibration.projection
    q = subspace_projector(proj, "average", NAMES)
    asr_q = calibrate_asr(raw * 1e-6, FS, NAMES, cutoff=20.0, projector=q, source="test")
    w = q @ np.random.default_rng(0).normal(size=len(NAMES))
    along = lambda v: np.linalg.norm(asr_q.thresholds @ v) / np.linalg.norm(v)  # noqa: E731
    assert along(proj.vectors[:, 0]) > 100 * along(w)  # out of reach along the projected-out blink
    both = ArtifactCalibration(("projection", "asr"), asr_q, None, proj, lookahead_s=0.2, asr_space="projected", reference="average")
    old = ArtifactCalibration(("projection", "asr"), calibration.asr, None, proj, lookahead_s=0.2)
    scale = np.full(len(NAMES), 1e-6)
    assert np.allclose(both.asr_projector(NAMES, scale), q) and old.asr_projector(NAMES) is None
    blink = np.abs(eog[:, 0]) > 20
    raw, clean = raw[: int(30 * FS)], clean[: int(30 * FS)]  # calibrated on 60 s, streamed 30 s (test time)
    errs = {}
    for name, cal in (("projected", both), ("channels", old)):
        y, x = _run_stage(cal.stage(NAMES, scale, 10), raw)
        ref = clean[: len(y)]
        b = blink[: len(y)]
        errs[name] = np.sum(((y[b] - ref[b]) @ q.T) ** 2)
        errs["projection alone"] = np.sum(((x[b] - ref[b]) @ q.T) ** 2)
        if name == "projected":  # the stage's output is already in the projection's range (Q y = y)
            assert np.abs(y - y @ q.T).max() < 1e-5 * np.abs(y).max()
    assert errs["projected"] <= 1.01 * errs["projection alone"], errs
    assert errs["channels"] > 1.5 * errs["projection alone"], errs  # the failure this order fixes
    y, x = _run_stage(both.stage(NAMES, scale, 10), clean)
    first = int(FS)
    assert np.var((y[first:] - x[first:]) @ q.T) < 1e-10 * np.var(x[first:] @ q.T)
    # the header says where ASR runs; bundles from before read as "channels"
    from rtsource.artifacts.calibration import from_bundle, to_bundle

    arrays, header = to_bundle(both)
    back = from_bundle(json.loads(json.dumps(header)), arrays)
    assert back.asr_space == "projected" and back.reference == "average" and back.describe()["asr"]["space"] == "projected"
    del header["asr_space"], header["reference"]
    assert from_bundle(header, arrays).asr_space == "channels"


def test_refitting_the_projection_refits_asr_in_its_subspace(data, calibration):
    """A live refit of the projection also refits ASR when ASR runs in its subspace."""
    from rtsource.artifacts.calibration import subspace_projector

    raw = data[0] * 1e-6
    proj = calibration.projection
    q = subspace_projector(proj, "average", NAMES)
    cal = ArtifactCalibration(("projection", "asr"), calibrate_asr(raw, FS, NAMES, projector=q), None, proj, asr_space="projected", reference="average")
    new, changes = cal.refit(raw[: int(40 * FS)], FS, NAMES, methods=("projection",), reference="average")
    assert {"projection", "asr"} <= set(changes) and new.asr_space == "projected" and new.asr is not cal.asr
    u = new.projection.vectors[:, 0]
    w = subspace_projector(new.projection, "average", NAMES) @ np.random.default_rng(1).normal(size=len(NAMES))
    assert np.linalg.norm(new.asr.thresholds @ u) > 100 * np.linalg.norm(new.asr.thresholds @ w) / np.linalg.norm(w)
