"""The live display: stream discovery, layouts, colours, and the window fed by real LSL streams.

The 2D parts (traces, health panel, reconnection) run offscreen (QT_QPA_PLATFORM=offscreen)
in this process. The 3D cortex needs an OpenGL context, which the offscreen platform cannot
create: its test runs ``rtsource view`` in a subprocess under ``xvfb-run`` (Mesa software GL)
and skips, saying why, where Xvfb is not installed. Every stream is a real LSL outlet
(:mod:`tests.display.producers`); nothing is mocked. No assertion is about speed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from rtsource.anatomy.template import template_source_space
from rtsource.bundle import save_bundle
from rtsource.errors import StreamError
from rtsource.stream.channels import StreamDescription
from rtsource.stream.outlets import make_source_info

from rtsource.display import gui_binding, opengl_available
from rtsource.display.buffers import EventLog, SampleRing
from rtsource.display.cortex_geometry import _outward, cortex_geometry
from rtsource.display.layout import parse_stream_xml

from ..stream.lsl_helpers import unique
from .producers import ROIS, OutputProducer, template_bundle, write_template_bundle

needs_qt = pytest.mark.skipif(gui_binding() is None, reason='no Qt binding installed (pip install "rtsource[gui]")')


def _source_layout(bundle, bundle_path=""):
    desc = StreamDescription("eeg", "EEG", "eeg-1", bundle.sfreq, len(bundle.ch_names), "float32", bundle.ch_names, ("EEG",) * len(bundle.ch_names), ("volts",) * len(bundle.ch_names))
    info = make_source_info(bundle, desc, name="rtsource-sources", type_="Sources", source_id="sid", bundle_path=str(bundle_path))
    return parse_stream_xml(info.as_xml())


# ---- layouts from metadata and bundles (no Qt) ----------------------------------------------

def test_layout_is_read_from_the_source_outlet_header(tmp_path):
    bundle, path = write_template_bundle(tmp_path, "ico4")
    lay = _source_layout(bundle, path)
    assert lay.n_channels == 5124 and lay.labels[0] == "lh_00000" and lay.labels[-1] == "rh_02561"
    assert lay.sfreq == bundle.sfreq and lay.method == "dSPM" and lay.bundle_path == str(path)
    assert lay.channel_types[0] == "source_pooled" and lay.hemisphere[0] == "lh"
    # locations are in mm, rounded to a micrometre by the outlet
    np.testing.assert_allclose(lay.positions_mm * 1e-3, bundle.sources.positions_m, atol=1e-6)


def test_mesh_comes_from_the_bundle_named_in_the_metadata(tmp_path):
    bundle, path = write_template_bundle(tmp_path, "ico4")
    geo = cortex_geometry(_source_layout(bundle, path))
    assert geo.origin == f"bundle {path.name}" and geo.n_vertices == 5124 and len(geo.faces) == 10240
    np.testing.assert_array_equal(geo.value_index, np.arange(5124))
    assert geo.signed is False and geo.cull_back_faces and len(geo.missing) == 0


def test_mesh_falls_back_to_the_template_without_a_bundle(tmp_path):
    bundle = template_bundle("ico4")
    lay = _source_layout(bundle, tmp_path / "gone.npz")  # named, but deleted since
    geo = cortex_geometry(lay)
    assert geo.origin == "template ico4" and geo.n_vertices == 5124
    np.testing.assert_array_equal(geo.value_index, np.arange(5124))  # same positions -> same order


def test_a_subset_of_sources_is_mapped_onto_the_template_surface(tmp_path):
    from rtsource.anatomy.source_space import SourceSpace

    space = template_source_space("ico4")
    keep = np.flatnonzero(space.positions_m[:, 1] < -0.02)  # posterior sources only
    sub = space.subset(keep, name="posterior")
    # its own (open) triangulation is drawn as it is, without culling
    bundle = template_bundle(sources=sub)
    path = tmp_path / "sub.npz"
    save_bundle(bundle, path)
    own = cortex_geometry(_source_layout(bundle, path))
    assert own.origin == "bundle sub.npz" and own.n_vertices == len(keep) and not own.cull_back_faces
    # asked for the template surface, or with no triangles at all: values go to the nearest vertices
    bare = SourceSpace(sub.positions_m, sub.normals, sub.areas_m2, sub.hemisphere, "template", "posterior points")
    for geo, spacing in ((cortex_geometry(_source_layout(bundle, path), mesh="ico4"), "ico4"),
                         (cortex_geometry(_source_layout(template_bundle(sources=bare))), "ico5")):
        verts = template_source_space(spacing).positions_m
        assert geo.origin == f"template {spacing}" and geo.n_vertices == len(verts) and geo.cull_back_faces
        shown = np.setdiff1d(np.arange(len(verts)), geo.missing)
        d = np.linalg.norm(verts[shown] - sub.positions_m[geo.value_index[shown]], axis=1)
        assert d.max() < 0.015  # each shown vertex takes the value of a source next to it
        assert np.all(verts[geo.missing, 1] > -0.03) and len(geo.missing) > len(verts) // 5  # frontal cortex shows none


def test_sources_in_a_subject_frame_without_triangles_are_drawn_as_points(tmp_path):
    space = template_source_space("ico4")
    from rtsource.anatomy.source_space import SourceSpace

    subj = SourceSpace(space.positions_m, space.normals, space.areas_m2, space.hemisphere, "mri", "subject")
    lay = _source_layout(template_bundle(sources=subj))
    geo = cortex_geometry(lay)
    assert geo.origin == "source positions" and len(geo.faces) == 0 and geo.frame == "mri"


def test_no_positions_and_no_bundle_is_a_clear_error():
    xml = '<?xml version="1.0"?><info><name>x</name><type>Sources</type><channel_count>7</channel_count><nominal_srate>100</nominal_srate></info>'
    with pytest.raises(StreamError, match="without locations.*--bundle"):
        cortex_geometry(parse_stream_xml(xml))


def test_mesh_winding_is_checked_before_back_faces_are_culled():
    space = template_source_space("ico4")
    faces, ok = _outward(space.positions_m, space.triangles)
    assert ok and np.array_equal(faces, space.triangles)
    flipped, ok = _outward(space.positions_m, space.triangles[:, ::-1])
    assert ok and np.array_equal(flipped, space.triangles)  # inward winding is turned outward
    _, ok = _outward(space.positions_m, space.triangles[:-5])  # a hole: cannot cull
    assert not ok


# ---- ring buffers and events ------------------------------------------------------------------

def test_ring_buffer_keeps_the_newest_samples_in_order():
    rng = np.random.default_rng(1)
    ring = SampleRing(capacity=50, n_channels=3)
    all_data, all_t = [], []
    for n in (7, 30, 1, 44, 120, 3):  # wraps several times, one chunk longer than the ring
        d = rng.normal(size=(n, 3)).astype(np.float32)
        t = np.arange(sum(len(x) for x in all_t), sum(len(x) for x in all_t) + n, dtype=float)
        ring.write(d, t)
        all_data.append(d)
        all_t.append(t)
    ref_d, ref_t = np.vstack(all_data)[-50:], np.concatenate(all_t)[-50:]
    out_d, out_t = np.zeros((50, 3), np.float32), np.zeros(50)
    assert ring.ordered(out_d, out_t) == 50
    np.testing.assert_array_equal(out_d, ref_d)
    np.testing.assert_array_equal(out_t, ref_t)
    mean = np.zeros(3, np.float32)
    assert ring.mean_latest(9, mean) == 9
    np.testing.assert_allclose(mean, ref_d[-9:].mean(axis=0), rtol=1e-5)
    latest, t_last = ring.latest()
    np.testing.assert_array_equal(latest, ref_d[-1])
    assert t_last == ref_t[-1] and ring.count == sum(len(t) for t in all_t)


def test_event_log_follows_bad_channels():
    log = EventLog()
    log.add(json.dumps({"event": "bad_channel", "channel": "T8", "reason": "flat", "time": 1.0}))
    log.add(json.dumps({"event": "bad_channel", "channel": "O1", "reason": "noisy", "time": 2.0}))
    assert log.bad_channels() == {"T8": "flat", "O1": "noisy"}
    log.add(json.dumps({"event": "operator_swap", "bad_channels": ["O1"], "time": 3.0}))
    assert log.bad_channels() == {"O1": "noisy"}
    log.add("not json")
    assert log.recent(1)[0] == {"event": "text", "text": "not json"}


# ---- Qt, offscreen --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def qapp():
    if gui_binding() is None:
        pytest.skip('no Qt binding installed (pip install "rtsource[gui]")')
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from rtsource.display.app import make_app

    return make_app()


def _pump(app, until, timeout=30.0, what="condition"):
    """Run the Qt event loop until ``until()`` is true (a deadline, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not until():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        app.processEvents()
        time.sleep(0.005)


@pytest.fixture
def slot_errors(monkeypatch):
    """Exceptions raised inside Qt slots (Qt only prints them; the tests fail on them)."""
    errors = []
    monkeypatch.setattr(sys, "excepthook", lambda *exc: errors.append(exc))
    return errors


def _image_array(image):
    from pyqtgraph.Qt import QtGui

    image = image.convertToFormat(QtGui.QImage.Format.Format_RGB32)
    ptr = image.constBits()
    arr = np.frombuffer(ptr, np.uint8, count=image.sizeInBytes()).reshape(image.height(), image.bytesPerLine() // 4, 4)
    return arr[:, : image.width(), 2::-1].copy()  # BGRA -> RGB


def _colourful(rgb: np.ndarray) -> float:
    """Fraction of pixels that are saturated colour (traces, activity), not grey or background."""
    rgb = rgb.astype(int)
    return float(np.mean(rgb.max(axis=2) - rgb.min(axis=2) > 60))


def _window(streams, **kwargs):
    from rtsource.display.app import viewer_window_class

    win = viewer_window_class()(streams, gl=False, gl_reason="offscreen test", max_fps=60, **kwargs)
    win.resize(1400, 800)
    win.show()
    return win


@needs_qt
def test_missing_binding_says_how_to_install_it(monkeypatch, capsys):
    import importlib.util

    import rtsource.display as display

    real = importlib.util.find_spec
    monkeypatch.setattr(display.importlib.util, "find_spec", lambda name, *a: None if name in display.QT_BINDINGS else real(name, *a))
    from rtsource.cli import main

    assert main(["view", "rtsource-sources", "--duration", "1"]) == 2
    err = capsys.readouterr().err
    assert 'pip install "rtsource[gui]"' in err and "Qt binding" in err


@needs_qt
def test_no_display_is_a_clear_error(monkeypatch, capsys):
    from rtsource.cli import main

    for var in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    assert main(["view", "rtsource-sources", "--duration", "1"]) == 2
    assert "xvfb-run" in capsys.readouterr().err


def test_importing_the_display_package_does_not_import_qt():
    code = "import sys, rtsource.display; bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'PyQt6', 'PyQt5', 'PySide2', 'pyqtgraph')]; print(bad); sys.exit(1 if bad else 0)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_qt
def test_viewer_process_starts_and_stops(tmp_path, monkeypatch):
    from rtsource.display import start_viewer_process, stop_viewer_process

    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")  # the child draws the 2D parts only
    report = tmp_path / "report.json"
    proc = start_viewer_process(unique("rtsource-view-proc"), ["--duration", "2", "--report", str(report)], stderr=subprocess.PIPE)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        stop_viewer_process(proc)
    assert proc.returncode == 0, err
    rep = json.loads(report.read_text())
    assert rep["seconds"] >= 2.0 and rep["frames"] == 0  # no OpenGL offscreen: no 3D frames, and no crash


@needs_qt
def test_viewer_draws_traces_and_health_from_real_streams(qapp, tmp_path, slot_errors):
    from rtsource.display.cortex_geometry import CortexGeometry
    from rtsource.display.streams import OutputStreams

    bundle, path = write_template_bundle(tmp_path, "ico4", sfreq=200.0)
    name = unique("rtsource-view")
    streams = OutputStreams(name, trace_seconds=5.0).start()
    win = _window(streams, window_s=5.0)
    try:
        _pump(qapp, lambda: win.ticks > 5, what="first ticks")
        blank = _image_array(win.grab_image())
        waiting = win.health.text()
        assert f"waiting for stream {name!r}" in waiting
        with OutputProducer(name, bundle, path, chunk=8):
            def drawn():
                # 3 s of ROI samples (200 Hz) and of band powers (10 Hz)
                return (win.traces.roi._last_count > 600 and win.traces.bandpower._last_count > 30 and "T8" in win.health.text()
                        and "samples lost: 0" in win.health.text() and streams.sources.status.state == "connected")
            _pump(qapp, drawn, what="traces and health from the producer (and the sources stream's header read)")
            image = win.grab_image()
            image.save(str(tmp_path / "viewer_2d.png"))
            text = win.health.text()  # while the producer runs: once it stops, the panel says so
            src = streams.sources.status
            assert src.state == "connected" and isinstance(src.extra, CortexGeometry)
            assert src.extra.origin == f"bundle {path.name}" and src.extra.n_vertices == 5124
        rgb = _image_array(image)
        regions = win.regions()
        for part in ("roi", "bandpower"):
            x, y, w, h = regions[part]
            before, after = _colourful(blank[y : y + h, x : x + w]), _colourful(rgb[y : y + h, x : x + w])
            assert after > before + 0.01, f"{part}: {after:.4f} colourful pixels (blank: {before:.4f})"
        assert [c.name() for c in win.traces.roi.curves] == list(ROIS)
        assert win.traces.bandpower.rows == list(ROIS)  # "roi/band" channels share a row per ROI
        for expected in ("method: dSPM", f"bundle: {path.name}", "bad channels: 1: T8", "gaps: 0", "latency p50 / p99: 4.6 / 17.9 ms",
                         "head position: 2.5 mm from the reference pose",
                         "artifact repair: 5.0% of samples repaired (20% of channels in them), 3 episode(s); look-ahead 250 ms"):
            assert expected in text, text
        assert (tmp_path / "viewer_2d.png").stat().st_size > 10000
    finally:
        win.close()
        streams.close()
    assert not slot_errors, slot_errors


@needs_qt
def test_viewer_survives_the_producer_going_away_and_coming_back(qapp, tmp_path, slot_errors):
    from rtsource.display.streams import OutputStreams

    bundle, path = write_template_bundle(tmp_path, "ico4", sfreq=200.0)
    name = unique("rtsource-view")
    streams = OutputStreams(name, trace_seconds=5.0).start()
    win = _window(streams, window_s=5.0)
    try:
        producer = OutputProducer(name, bundle, path, chunk=8).start()
        _pump(qapp, lambda: win.traces.roi._last_count > 100 and streams.sources.status.ring is not None and streams.sources.status.ring.count > 100,
              what="first connection")
        first = {r.name: r.status.generation for r in streams.readers}
        producer.stop()  # kill the producing streams
        _pump(qapp, lambda: all(r.status.state == "waiting" for r in streams.readers), what="all readers waiting")
        for _ in range(50):  # the window keeps running with no stream
            qapp.processEvents()
            time.sleep(0.01)
        assert "waiting for stream" in win.health.text()
        assert "waiting" in win.traces.roi.getPlotItem().titleLabel.text
        assert "waiting for stream" in win.status_label.text()
        # a new producer under the same name, with another ROI set (a new layout)
        rois = {k: ROIS[k] for k in ("lh-occipital", "rh-occipital", "lh-central")}
        with OutputProducer(name, bundle, path, chunk=8, rois=rois, seed=1):
            def reconnected():  # the readers are back and the window has caught up with them
                return (all(r.status.state == "connected" for r in streams.readers)
                        and win.traces._generations["roi"] == streams.roi.status.generation and win.traces.roi._last_count > 50)

            _pump(qapp, reconnected, what="reconnection")
            assert [c.name() for c in win.traces.roi.curves] == list(rois)
            assert all(r.status.generation == first[r.name] + 1 for r in streams.readers)
            assert streams.sources.status.losses == 1
            n0 = streams.sources.status.ring.count
            _pump(qapp, lambda: streams.sources.status.ring.count > n0 + 50, what="data after reconnection")
    finally:
        win.close()
        streams.close()
    assert not slot_errors, slot_errors


@needs_qt
def test_colours_follow_values_threshold_and_range(qapp):
    from rtsource.display.cortex import CORTEX_GREY, ColourScale, VertexColourer
    from rtsource.display.cortex_geometry import _surface

    space = template_source_space("ico4")
    geo = _surface(space.positions_m, space.triangles, np.arange(5124), (), False, "template", "t")
    colourer = VertexColourer(geo)
    scale = ColourScale(signed=False, threshold=0.3)
    values = np.ones(5124, np.float32)
    values[:100] = np.linspace(2, 10, 100)
    scale.track(values)
    rgba = colourer.fill(values, scale).copy()
    assert scale.limits()[0] == pytest.approx(1.0)  # the median: the noise floor
    assert np.all(rgba[200:] == CORTEX_GREY)  # below threshold: bare cortex
    hot = rgba[:100]
    assert np.all(hot[-10:, 0] > 200) and np.all(hot[-10:, 0] >= hot[-10:, 2])  # strongest: red-yellow
    assert np.all(np.diff(hot[50:, 1].astype(int)) >= 0)  # brighter (more green, towards yellow) as values grow
    scale.auto, scale.fixed_min, scale.fixed_max = False, 0.0, 100.0
    assert np.all(colourer.fill(values, scale)[:100] == CORTEX_GREY)  # a fixed wide range hides them
    signed = ColourScale(signed=True, threshold=0.2)
    v = np.zeros(5124, np.float32)
    v[:10], v[10:20] = 5.0, -5.0
    signed.track(v)
    rgba = VertexColourer(geo).fill(v, signed)
    assert rgba[0, 0] > rgba[0, 2] and rgba[10, 2] > rgba[10, 0]  # positive red, negative blue
    assert np.all(rgba[20:] == CORTEX_GREY)


# ---- the 3D cortex under Xvfb -------------------------------------------------------------

def _xvfb_reason() -> str:
    if gui_binding() is None:
        return 'no Qt binding installed (pip install "rtsource[gui]")'
    if not opengl_available():
        return 'PyOpenGL is not installed (pip install "rtsource[gui]")'
    if shutil.which("xvfb-run") is None:
        return "xvfb-run is not installed (apt-get install xvfb xauth and the xcb libraries, see .ci/run): the 3D view needs an X server with OpenGL"
    return ""


@pytest.mark.skipif(bool(_xvfb_reason()), reason=_xvfb_reason() or "-")
def test_cortex_is_rendered_under_xvfb_from_a_real_stream(tmp_path):
    bundle, path = write_template_bundle(tmp_path, "ico5", sfreq=100.0)
    name = unique("rtsource-view-gl")
    png, report = tmp_path / "viewer.png", tmp_path / "report.json"
    env = dict(os.environ, QT_QPA_PLATFORM="xcb")
    env.pop("DISPLAY", None)
    cmd = ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", sys.executable, "-m", "rtsource.display.app", name,
           "--screenshot", str(png), "--report", str(report), "--size", "1280x720", "--view", "back", "--vmin", "1", "--vmax", "5"]
    with OutputProducer(name, bundle, path, chunk=4):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rep = json.loads(report.read_text())
    assert rep["vertices"] == 20484 and rep["data_frames"] >= 10
    from pyqtgraph.Qt import QtGui

    rgb = _image_array(QtGui.QImage(str(png)))
    x, y, w, h = rep["regions"]["cortex"]
    cortex = rgb[y : y + h, x : x + w].astype(int)
    background = np.array([18, 20, 26])
    drawn = np.mean(np.abs(cortex - background).sum(axis=2) > 30)
    assert drawn > 0.15, f"only {drawn:.3f} of the 3D view differs from the background"
    # lit grey cortex in many shades, and the occipital patch in red-yellow (seen from the back)
    grey = (np.abs(cortex[..., 0] - cortex[..., 1]) < 12) & (cortex[..., 0] > 60)
    hot = (cortex[..., 0] > 150) & (cortex[..., 0] - cortex[..., 2] > 80)
    assert grey.mean() > 0.05 and len(np.unique(cortex[grey][:, 0])) > 40
    assert hot.sum() > 200, f"{hot.sum()} red-yellow pixels"
    for part in ("roi", "bandpower"):
        x, y, w, h = rep["regions"][part]
        assert _colourful(rgb[y : y + h, x : x + w]) > 0.01
    print(f"3D view: {rep['measured_fps']} frames/s with new colours ({rep['vertices']} vertices, Xvfb + Mesa)")
