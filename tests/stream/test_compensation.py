"""CTF gradient compensation in the stream: a bundle built at grade 3 reads uncompensated data.

The bundle's forward is ``G - C G_ref`` (grade 3); a stream of raw (grade 0) MEG and reference
channels goes through the real loop over real LSL with ``compensation_grade = 0``, and the
published sources must equal the operator applied offline to the compensated data
``x - C r``. Without the folded compensation they differ (the same data read as if it were
compensated), so the test can fail.
"""

from __future__ import annotations

import time

import numpy as np
import pylsl
import pytest

from rtsource.anatomy.source_space import SourceSpace
from rtsource.build import build_bundle
from rtsource.forward.head_model import SphereHead
from rtsource.forward.leadfield import make_leadfield
from rtsource.geometry import Frame
from rtsource.geometry.sphere_fit import fit_sphere
from rtsource.sensors.meg import load_meg_array
from rtsource.config import settings_from_dict
from rtsource.errors import ConfigError
from rtsource.pipeline.estimator import Estimator
from rtsource.recordings import read_recording
from rtsource.replay import make_stream_info
from rtsource.stream.channels import StreamDescription, describe_stream_xml, map_stream_channels
from rtsource.stream.compensation import CompensationRecord, stream_compensation
from rtsource.stream.inlet import StreamSelector
from rtsource.stream.loop import LoopOptions, StreamLoop
from rtsource.stream.operator import StreamOperator

from .lsl_helpers import Collector, unique
from .test_end_to_end import apply_inverse_bundle
from .test_reliability import push, wait_for

mne = pytest.importorskip("mne")

SFREQ = 250.0
REFS = ["BG1", "BG2", "BG3", "G11", "G22", "G12", "G13", "G23"]


def _ctf_grade3_fif(path):
    """CTF-151 with 8 reference sensors and a random third-order matrix (as an MNE file)."""
    info = mne.channels.read_meg_canonical_info("ctf151")
    meg = mne.io.RawArray(np.zeros((len(info["ch_names"]), 10)), info, verbose="error")
    rinfo = mne.create_info(REFS, SFREQ, "ref_meg")
    eye = np.eye(3)
    for k, ch in enumerate(rinfo["chs"]):
        ch["coil_type"] = 5002 if k < 3 else 5003
        ch["unit"] = 112  # T
        ch["coord_frame"] = 1
        ch["loc"][:] = np.r_[[0.03 * np.cos(k), 0.03 * np.sin(k), 0.17], eye[k % 3], eye[(k + 1) % 3], eye[(k + 2) % 3]]
    meg.add_channels([mne.io.RawArray(np.zeros((len(REFS), 10)), rinfo, verbose="error")], force_update_info=True)
    info = meg.info
    rows = [c["ch_name"] for c in info["chs"] if c["kind"] == 1][:-5]  # the last few stay uncompensated
    c = np.random.default_rng(11).uniform(-0.3, 0.3, (len(rows), len(REFS)))
    comp = dict(
        ctfkind=0x47334252, kind=3, save_calibrated=True, rowcals=np.ones(len(rows)), colcals=np.ones(len(REFS)),
        data=dict(nrow=len(rows), ncol=len(REFS), row_names=rows, col_names=REFS, data=c),
    )  # fmt: skip
    t = np.eye(4)
    t[:3, 3] = [0.0, 0.0, 0.03]
    with info._unlock():
        info["comps"] = [comp]
        info["dev_head_t"] = mne.transforms.Transform("meg", "head", t)
        info["sfreq"] = SFREQ
    for ch in info["chs"]:
        if ch["kind"] == 1:
            ch["coil_type"] = int(ch["coil_type"]) | (3 << 16)
    mne.io.RawArray(np.zeros((len(info["ch_names"]), 10)), info, verbose="error").save(path, overwrite=True, verbose="error")
    return path, dict(zip(rows, c))


@pytest.fixture(scope="module")
def ctf_file(tmp_path_factory):
    return _ctf_grade3_fif(tmp_path_factory.mktemp("ctf") / "ctf_raw.fif")


@pytest.fixture(scope="module")
def ctf(ctf_file):
    path, rows = ctf_file
    s = settings_from_dict({"sensors": {"modality": "meg", "meg_array": str(path), "meg_accuracy": "point"}, "noise_cov": {"source": "ad_hoc"}})
    # sources in the head frame of the recording (setup's coregistration to a template is not the point here)
    arr = load_meg_array(path, accuracy="point").to_head()
    origin, radius = fit_sphere(arr.positions_m)
    rng = np.random.default_rng(3)
    d = rng.normal(size=(40, 3))
    rr = origin + 0.6 * radius * d / np.linalg.norm(d, axis=1, keepdims=True) * rng.uniform(0.3, 1.0, (40, 1))
    src = SourceSpace(rr, np.tile([0.0, 0.0, 1.0], (40, 1)), np.zeros(40), -np.ones(40, dtype=np.int8), Frame.HEAD, "discrete")
    slf = make_leadfield(src, arr, SphereHead(meg_origin_m=origin, check_inside=False), use_cache=False)
    return build_bundle(s, sfreq=SFREQ, leadfield=slf), rows


def _raw_data(bundle, rows, n, seed=0):
    """Stream columns (MEG then references, shuffled), raw data, and the compensated MEG data."""
    rng = np.random.default_rng(seed)
    names = list(bundle.ch_names) + REFS
    order = rng.permutation(len(names))
    names = [names[i] for i in order]
    raw = {c: rng.normal(size=n) * 1e-12 for c in bundle.ch_names}
    ref = {c: rng.normal(size=n) * 1e-11 + 3e-11 * np.sin(np.arange(n) / 7.0) for c in REFS}  # strong environmental field
    r = np.array([ref[c] for c in REFS])
    comp = np.array([raw[c] - (rows[c] @ r if c in rows else 0.0) for c in bundle.ch_names]).T  # (n, n_chan), grade 3
    x = np.array([{**raw, **ref}[c] for c in names]).T
    return names, x, comp


def test_bundle_records_grade_and_matrix(ctf):
    bundle, rows = ctf
    rec = CompensationRecord.from_bundle(bundle)
    assert rec.grade == 3 and rec.references == tuple(REFS)
    assert np.allclose(rec.matrix[rec.channels.index(next(iter(rows)))], next(iter(rows.values())))


def test_operator_folds_compensation_for_uncompensated_data(ctf):
    bundle, rows = ctf
    names, x, comp = _raw_data(bundle, rows, 200)
    desc = StreamDescription("ctf", "MEG", "ctf", SFREQ, len(names), "float32", tuple(names), ("MEG",) * len(names), ("T",) * len(names))
    cmap = map_stream_channels(desc, bundle.ch_names, bundle.ch_units, ch_types=bundle.ch_types)
    folded = stream_compensation(bundle, desc, 0)
    assert folded.stream_grade == 0 and folded.bundle_grade == 3
    op = StreamOperator(bundle, cmap, 256, low_rank="off", compensation=folded)
    assert op.input_names == bundle.ch_names + tuple(REFS)
    got = op.process(x.astype(np.float32), len(x)).copy()
    expected = apply_inverse_bundle(bundle, comp)
    assert np.abs(got - expected).max() < 1e-5 * np.abs(expected).max()
    # what the features read (ROIs on channels, bad-channel checks) is the compensated data too
    assert np.allclose(op.prepared(len(x)) * cmap.scale, comp, rtol=1e-4, atol=1e-4 * np.abs(comp).max())
    # the same data taken as already compensated is far off: the fold matters
    plain = StreamOperator(bundle, cmap, 256, low_rank="off").process(x.astype(np.float32), len(x))
    assert np.abs(plain - expected).max() > 0.05 * np.abs(expected).max()
    # the Python API's Estimator folds it the same way
    est = Estimator(bundle, names, "T", compensation_grade=0, low_rank="off")
    assert np.abs(est.process(x).sources - expected).max() < 1e-5 * np.abs(expected).max()
    assert stream_compensation(bundle, desc, 3) is None and stream_compensation(bundle, desc, -1) is None
    with pytest.raises(ConfigError, match="grade 3"):
        stream_compensation(bundle, desc, 1)


def _ctf_outlet(name, ch_names, declared_grade):
    """A raw CTF stream; with ``declared_grade`` its header says the grade, as `rtsource replay` does."""
    info = pylsl.StreamInfo(name, "MEG", len(ch_names), SFREQ, pylsl.cf_float32, name)
    chans = info.desc().append_child("channels")
    for ch_name in ch_names:
        ch = chans.append_child("channel")
        ch.append_child_value("label", ch_name)
        ch.append_child_value("type", "MEG")
        ch.append_child_value("unit", "T")
    if declared_grade is not None:
        info.desc().append_child("acquisition").append_child_value("compensation_grade", str(declared_grade))
    return pylsl.StreamOutlet(info, chunk_size=0, max_buffered=360)


def test_replay_declares_the_grade_of_a_ctf_file(ctf_file, tmp_path):
    path, _ = ctf_file
    rec = read_recording(path)
    assert rec.compensation_grade == 3
    assert describe_stream_xml(make_stream_info(rec).as_xml()).compensation_grade == 3
    raw0 = mne.io.read_raw_fif(path, preload=True, verbose="error").apply_gradient_compensation(0, verbose="error")
    raw0.save(tmp_path / "grade0_raw.fif", verbose="error")
    rec0 = read_recording(tmp_path / "grade0_raw.fif")
    assert rec0.compensation_grade == 0 and describe_stream_xml(make_stream_info(rec0).as_xml()).compensation_grade == 0
    plain = mne.io.RawArray(np.zeros((2, 10)), mne.create_info(["a", "b"], SFREQ, "mag"), verbose="error")
    plain.save(tmp_path / "plain_raw.fif", verbose="error")
    rec_plain = read_recording(tmp_path / "plain_raw.fif")
    assert rec_plain.compensation_grade == -1 and describe_stream_xml(make_stream_info(rec_plain).as_xml()).compensation_grade == -1


def test_streamed_output_equals_offline_on_compensated_data(ctf):
    """The stream's header declares grade 0 and [stream] compensation_grade = -1 (as declared);
    the option itself (compensation_grade = 0) is the operator test's path."""
    bundle, rows = ctf
    n = 750
    names, x, comp = _raw_data(bundle, rows, n, seed=1)
    in_name, out_name = unique("ctf-raw"), unique("ctf-src")
    outlet = _ctf_outlet(in_name, names, 0)
    loop = StreamLoop(bundle, LoopOptions(selector=StreamSelector(in_name), output_name=out_name, resolve_timeout=20, compensation_grade=-1, control=False))
    loop.connect()
    thread = loop.run_in_thread()
    collector = Collector(out_name)
    assert loop.operator.compensation is not None and loop.operator.compensation.stream_grade == 0
    try:
        assert outlet.wait_for_consumers(20)
        stamps = 50.0 + np.arange(n) / SFREQ
        push(outlet, x.astype(np.float32), stamps)
        assert wait_for(lambda: collector.n_samples >= n)
    finally:
        time.sleep(0.2)
        loop.stop()
        thread.join(10)
        collector.stop()
        loop.close()
    data, got_stamps = collector.data()
    assert np.array_equal(got_stamps, stamps)
    expected = apply_inverse_bundle(bundle, comp)
    assert np.abs(data - expected).max() < 1e-5 * np.abs(expected).max()
