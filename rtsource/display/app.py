"""The viewer window and ``rtsource view``'s entry point.

    ┌──────────────────────────────┬───────────────────────────┐
    │ cortex (3D, colour bar,      │ ROI traces                │
    │ range / threshold / views)   ├───────────────────────────┤
    │                              │ band-power traces         │
    │                              ├───────────────────────────┤
    │                              │ loop health               │
    └──────────────────────────────┴───────────────────────────┘
     status bar: stream state, frames per second, samples received

One QTimer drives everything: it colours the cortex from the newest source samples (when
new ones came), redraws the traces at up to 12.5 Hz and the health panel at 4 Hz, and rebuilds
a part whose stream reconnected with a new layout. The LSL readers are threads
(:mod:`.streams`); the timer only copies from their ring buffers.

Run it as ``rtsource view [NAME]`` or ``python -m rtsource.display.app [NAME]``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from collections import deque
from pathlib import Path

import numpy as np

from ..errors import RtsourceError
from . import DEFAULT_OUTPUT, INSTALL_HINT, opengl_available, require_gui

logger = logging.getLogger(__name__)

#: Seconds between redraws of the traces (2D repaints are expensive: they share the CPU with
#: the software OpenGL renderer) and of the health panel.
TRACE_INTERVAL_S = 0.08
HEALTH_INTERVAL_S = 0.25

# imported by _import_qt() so that importing this module never needs a binding
QtCore = QtGui = QtWidgets = pg = None


def _import_qt():
    global QtCore, QtGui, QtWidgets, pg
    require_gui()
    import pyqtgraph
    from pyqtgraph.Qt import QtCore as _c, QtGui as _g, QtWidgets as _w

    QtCore, QtGui, QtWidgets, pg = _c, _g, _w, pyqtgraph


def opengl_context_available() -> tuple[bool, str]:
    """Whether the running Qt platform can create an OpenGL context (and why not).

    ``QT_QPA_PLATFORM=offscreen`` cannot, so the 3D view is replaced by a note there.
    """
    if not opengl_available():
        return False, f"PyOpenGL is not installed ({INSTALL_HINT})"
    app = QtWidgets.QApplication.instance()
    ctx = QtGui.QOpenGLContext()
    if not ctx.create():
        platform = app.platformName() if app is not None else "?"
        return False, f"the Qt platform {platform!r} cannot create an OpenGL context (run under a desktop or xvfb-run with QT_QPA_PLATFORM=xcb)"
    return True, ""


def _check_binding_refcounts() -> None:
    """Refuse a binding that drops references to None (the process would abort within minutes).

    PySide6 6.12.0 on Python < 3.12 releases one reference to ``None`` on every call of a
    method that returns nothing; after some ten thousand calls CPython aborts with
    "deallocating None". Python 3.12 made ``None`` immortal, so only older ones are at risk.
    """
    if sys.version_info >= (3, 12):
        return
    label = QtWidgets.QLabel()
    before = sys.getrefcount(None)
    for _ in range(200):
        label.setText("x")
    lost = before - sys.getrefcount(None)
    label.deleteLater()
    if lost > 100:
        import importlib.metadata as md

        versions = []
        for dist in ("PySide6-Essentials", "PySide6", "shiboken6"):
            try:
                versions.append(f"{dist} {md.version(dist)}")
            except md.PackageNotFoundError:
                pass
        raise RtsourceError(
            f"the installed Qt binding ({', '.join(versions) or 'unknown'}) releases a reference to None on every "
            f"call that returns nothing (a bug of that release on Python {sys.version_info.major}.{sys.version_info.minor}); "
            "the viewer would abort within minutes. Install another release: "
            'pip install "PySide6-Essentials>=6.5,!=6.12.0"'
        )


def _window_class():
    """Define the window class (needs Qt, so it is built on first use)."""
    from .cortex import CortexView
    from .health import HealthPanel, health_rows
    from .cortex_geometry import CortexGeometry
    from .streams import OutputStreams
    from .traces import TracePanel

    class ViewerWindow(QtWidgets.QMainWindow):
        """The live display of one rtsource output (see the module docstring).

        Parameters
        ----------
        streams : OutputStreams
            The started readers.
        gl : bool
            Draw the 3D cortex (needs an OpenGL context); otherwise a note takes its place.
        average_ms : float
            The cortex shows the mean of the newest ``average_ms`` of source samples.
        max_fps : float
            Frame-rate cap of the timer (0: as fast as the machine draws).
        """

        def __init__(self, streams: OutputStreams, *, gl: bool = True, gl_reason: str = "", average_ms: float = 50.0,
                     window_s: float = 10.0, threshold: float = 0.3, view: str = "top", max_fps: float = 60.0,
                     vmin: float | None = None, vmax: float | None = None):
            super().__init__()
            self.streams = streams
            self.average_ms = float(average_ms)
            self.setWindowTitle(f"rtsource view: {streams.output_name}")
            self.cortex = CortexView(threshold=threshold, view=view) if gl else None
            if self.cortex is not None and vmax is not None:
                self.cortex.set_range(vmin, vmax)
            self.traces = TracePanel(streams.roi.name, streams.bandpower.name, window_s)
            self.health = HealthPanel()
            if self.cortex is not None:
                left = self.cortex
            else:
                left = QtWidgets.QLabel(f"3D cortex not shown: {gl_reason}")
                left.setWordWrap(True)
                left.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
                left.setStyleSheet("color: #e0a040; padding: 20px;")
            self.cortex_placeholder = None if gl else left
            right = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
            right.addWidget(self.traces)
            scroll = QtWidgets.QScrollArea()
            scroll.setWidget(self.health)
            scroll.setWidgetResizable(True)
            right.addWidget(scroll)
            right.setSizes([620, 380])
            main = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
            main.addWidget(left)
            main.addWidget(right)
            main.setStretchFactor(0, 3)
            main.setStretchFactor(1, 2)
            main.setChildrenCollapsible(False)
            self.splitter = main
            self.setCentralWidget(main)
            self.status_label = QtWidgets.QLabel()
            self.statusBar().addWidget(self.status_label, 1)

            self._generation = -1
            self._source_count = -1
            self._values = np.zeros(0, np.float32)
            self._rate_marks: deque[tuple[float, int]] = deque()
            self._last_traces = self._last_health = self._last_status = 0.0
            self.ticks = 0
            self.colour_updates = 0  # frames whose colours came from new data
            self.timer = QtCore.QTimer(self)
            self.timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
            self.timer.timeout.connect(self.tick)
            # uncapped still waits 1 ms between ticks, so that an idle viewer does not spin
            self.timer.start(1 if max_fps <= 0 else max(1, int(1000.0 / max_fps)))

        # ---- the timer ----
        def tick(self) -> None:
            """Copy what the readers received into the views (never waits on LSL)."""
            self.ticks += 1
            now = time.monotonic()
            src = self.streams.sources.status
            if src.generation != self._generation:
                self._generation = src.generation
                self._new_source_layout(src)
            if src.state == "connected" and src.ring is not None and self.cortex is not None:
                ring = src.ring
                if ring.count != self._source_count and len(self._values) == ring.n_channels:
                    self._source_count = ring.count
                    n = max(1, int(round(self.average_ms * 1e-3 * (src.layout.sfreq or 1.0))))
                    if ring.mean_latest(n, self._values):
                        self.cortex.set_values(self._values)
                        self.colour_updates += 1
            if src.ring is not None:
                self._rate_marks.append((now, src.ring.count))
                while len(self._rate_marks) > 2 and now - self._rate_marks[0][0] > 2.0:
                    self._rate_marks.popleft()
            if now - self._last_traces >= TRACE_INTERVAL_S:
                self._last_traces = now
                self.traces.sync("roi", self.streams.roi.status)
                self.traces.sync("bandpower", self.streams.bandpower.status)
            if now - self._last_health >= HEALTH_INTERVAL_S:
                self._last_health = now
                self.health.set_rows(health_rows(src, self.streams.telemetry.status, self.streams.events.status, received_hz=self.received_hz()))
            if now - self._last_status >= 0.5:
                self._last_status = now
                self._update_status(src)

        def _new_source_layout(self, src) -> None:
            lay = src.layout
            geometry = src.extra if isinstance(src.extra, CortexGeometry) else None
            self._values = np.zeros(lay.n_channels if lay is not None else 0, np.float32)
            self._source_count = -1
            if self.cortex is None:
                return
            if lay is None:
                self.cortex.set_geometry(None, title=f"waiting for stream {self.streams.sources.name!r}")
                return
            unit = lay.meta.get("output_unit", lay.unit) or ""
            unit = "" if unit == "dimensionless" else unit
            method = lay.method or "sources"
            if geometry is None:
                self.cortex.set_geometry(None, title=f"{lay.name}: {src.message or 'no mesh for these sources'}")
                return
            title = f"{lay.name}: {method}, {lay.n_channels:,} sources on {geometry.origin} ({geometry.n_vertices:,} vertices)"
            self.cortex.set_geometry(geometry, title=title, unit=unit or method)

        def received_hz(self) -> float | None:
            """Source samples per second arriving here, over the last ~2 s."""
            if len(self._rate_marks) < 2:
                return None
            (t0, c0), (t1, c1) = self._rate_marks[0], self._rate_marks[-1]
            return (c1 - c0) / (t1 - t0) if t1 > t0 else None

        def fps(self) -> float:
            """Frames the 3D view drew per second over the last second (0 without it)."""
            return self.cortex.fps() if self.cortex is not None else 0.0

        def _update_status(self, src) -> None:
            if src.state == "connected":
                state = f"connected to {src.layout.name!r}"
            else:
                state = src.message or "waiting for stream"
            if self.cortex is not None and src.state != "connected" and src.layout is not None:
                self.cortex.set_title(f"{state} (showing the last data)")
            rate = self.received_hz()
            parts = [state]
            if self.cortex is not None:
                parts.append(f"{self.fps():.1f} FPS ({self.cortex.data_fps():.1f} with new colours)")
            if rate is not None:
                parts.append(f"receiving {rate:.4g} samples/s")
            self.status_label.setText("   |   ".join(parts))

        # ---- output ----
        def grab_image(self):
            """The whole window as a QImage, 3D view included."""
            pixmap = self.grab()
            if self.cortex is not None:
                # QWidget.grab() cannot see into the native OpenGL window: paint its
                # framebuffer over its place
                frame = self.cortex.grab_frame()
                painter = QtGui.QPainter(pixmap)
                box = self.cortex.gl_container
                top_left = box.mapTo(self, QtCore.QPoint(0, 0))
                painter.drawImage(QtCore.QRect(top_left, box.size()), frame)
                painter.end()
            return pixmap.toImage()

        def resizeEvent(self, event) -> None:
            super().resizeEvent(event)
            if not getattr(self, "_sized", False):  # the first size sets the proportions; then the user's
                self._sized = True
                width = max(self.width(), 400)
                self.splitter.setSizes([int(width * 0.56), width - int(width * 0.56)])

        def regions(self) -> dict[str, list[int]]:
            """Where the parts are in the window, as [x, y, width, height] pixels (for tests and tools)."""
            parts = {"roi": self.traces.roi, "bandpower": self.traces.bandpower, "health": self.health}
            parts["cortex"] = self.cortex.gl_container if self.cortex is not None else self.cortex_placeholder
            out = {}
            for name, widget in parts.items():
                p = widget.mapTo(self, QtCore.QPoint(0, 0))
                out[name] = [p.x(), p.y(), widget.width(), widget.height()]
            return out

        def closeEvent(self, event) -> None:
            self.timer.stop()
            if self.cortex is not None:
                self.cortex.release()
            super().closeEvent(event)

    return ViewerWindow


_WINDOW_CLASS = None


def viewer_window_class():
    """The :class:`ViewerWindow` class (Qt is imported on first use)."""
    global _WINDOW_CLASS
    if _WINDOW_CLASS is None:
        _import_qt()
        _WINDOW_CLASS = _window_class()
    return _WINDOW_CLASS


def parse_size(size: str | tuple[int, int]) -> tuple[int, int]:
    """A window size from ``"WIDTHxHEIGHT"`` or ``(width, height)``, in pixels (at least 200 x 150)."""
    if isinstance(size, str):
        try:
            w, h = (int(v) for v in size.lower().split("x"))
        except ValueError:
            raise RtsourceError(f"size {size!r} is not WIDTHxHEIGHT (e.g. 1600x900)") from None
    else:
        w, h = (int(v) for v in size)
    if w < 200 or h < 150:
        raise RtsourceError(f"size {size!r} is too small (at least 200x150)")
    if w > 16384 or h > 16384:
        raise RtsourceError(f"size {size!r} is too large (at most 16384x16384)")
    return w, h


def _check_display() -> None:
    """Fail with a clear message where Qt would abort for want of a display."""
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if sys.platform.startswith("linux") and not platform and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        raise RtsourceError(
            "no display to open the viewer on (DISPLAY and WAYLAND_DISPLAY are unset); run it in a desktop session, "
            "or headless under a virtual X server: QT_QPA_PLATFORM=xcb xvfb-run -a rtsource view ..."
        )


def make_app(argv: list[str] | None = None):
    """The QApplication (created if needed, with shared OpenGL contexts)."""
    _import_qt()
    app = QtWidgets.QApplication.instance()
    if app is None:
        # the shader programs pyqtgraph caches must stay valid if a view is recreated
        QtCore.QCoreApplication.setAttribute(QtCore.Qt.ApplicationAttribute.AA_ShareOpenGLContexts)
        app = QtWidgets.QApplication(argv or [sys.argv[0]])
        app.setApplicationName("rtsource view")
        _dark_palette(app)
    _check_binding_refcounts()
    return app


def _dark_palette(app) -> None:
    app.setStyle("Fusion")
    pal = QtGui.QPalette()
    role = QtGui.QPalette.ColorRole
    for r, c in ((role.Window, "#23252b"), (role.WindowText, "#d8d8d8"), (role.Base, "#1b1d22"), (role.AlternateBase, "#2a2d33"),
                 (role.Text, "#d8d8d8"), (role.Button, "#2f3239"), (role.ButtonText, "#d8d8d8"), (role.Highlight, "#3d6fb4"),
                 (role.HighlightedText, "#ffffff"), (role.ToolTipBase, "#2f3239"), (role.ToolTipText, "#d8d8d8")):
        pal.setColor(r, QtGui.QColor(c))
    app.setPalette(pal)
    pg.setConfigOptions(background="#16181d", foreground="#c8c8c8", antialias=False)


def run_view(
    name: str = DEFAULT_OUTPUT,
    *,
    bundle: str | None = None,
    mesh: str = "auto",
    view: str = "top",
    average_ms: float = 50.0,
    threshold: float = 0.3,
    vmin: float | None = None,
    vmax: float | None = None,
    window: float = 10.0,
    max_fps: float = 60.0,
    size: str | tuple[int, int] = "1600x900",
    duration: float | None = None,
    screenshot: str | None = None,
    screenshot_after: float = 0.0,
    report: str | None = None,
    atlas: str = "",
) -> int:
    """Show a running loop's outputs until the window is closed (``rtsource view``).

    Parameters
    ----------
    name : str
        The loop's output name (the source stream's name); ``NAME-roi``, ``NAME-bandpower``,
        ``NAME-telemetry`` and ``NAME-events`` are found from it.
    bundle : str, optional
        Bundle to take the cortex mesh from (default: the one named in the stream's metadata).
    mesh : {"auto", "bundle", "ico4", "ico5"}
        Surface to draw: the bundle's, or the template's ico4 / ico5.
    atlas : str
        Outline this atlas's regions ("aparc"; a FreeSurfer subject's bundle: its own
        annotation of that name); "": no outlines.
    view : {"left", "right", "top", "back", "front", "oblique"}
        Initial camera view.
    average_ms : float
        Colour the cortex by the mean over the newest ``average_ms`` ms (0: newest sample).
    threshold : float
        Fraction of the colour range (0..0.95) below which the cortex stays grey.
    vmin, vmax : float, optional
        A fixed colour range (both, vmax > vmin; default: automatic).
    window : float
        Seconds of ROI / band-power history shown.
    max_fps : float
        Frame-rate cap (0: as fast as possible).
    size : str or (int, int)
        Window size, ``"WIDTHxHEIGHT"`` or (width, height) in pixels.
    duration : float, optional
        Close after this many seconds.
    screenshot : str, optional
        Save the window to this PNG once the cortex and traces show data, then close.
    screenshot_after : float
        Take the screenshot no earlier than this many seconds after start.
    report : str, optional
        Write frame-rate measurements (JSON) to this file when closing.

    Returns
    -------
    int
        0 when the window is closed (or after ``duration`` / ``screenshot``).

    Raises
    ------
    RtsourceError
        No Qt binding (with the install command), no display, bad arguments.
    """
    require_gui()
    width, height = parse_size(size)
    if not 0 <= threshold <= 0.95:
        raise RtsourceError(f"threshold {threshold} is outside 0..0.95 (a fraction of the colour range)")
    if vmin is not None and vmax is None:
        raise RtsourceError("vmin needs vmax (a fixed colour range has both ends)")
    if vmax is not None and vmin is not None and vmax <= vmin:
        raise RtsourceError(f"vmax {vmax} must be above vmin {vmin}")
    for key, value, low, high in (
        ("average_ms", average_ms, 0.0, 60000.0), ("window", window, 0.1, 3600.0), ("max_fps", max_fps, 0.0, 1000.0),
        ("duration", duration, 1e-3, 3.2e7), ("screenshot_after", screenshot_after, 0.0, 3.2e7),
        ("vmin", vmin, -1e30, 1e30), ("vmax", vmax, -1e30, 1e30),
    ):  # fmt: skip
        if value is not None and not low <= value <= high:  # also refuses nan
            raise RtsourceError(f"{key} = {value} (--{key.replace('_', '-')}): give a number between {low:g} and {high:g}")
    _check_display()
    app = make_app()
    from .streams import OutputStreams

    gl, reason = opengl_context_available()
    if not gl:
        logger.warning("3D cortex disabled: %s", reason)
    streams = OutputStreams(name, bundle_path=bundle, mesh=mesh, trace_seconds=window, atlas=atlas).start()
    win = viewer_window_class()(streams, gl=gl, gl_reason=reason, average_ms=average_ms, window_s=window,
                                threshold=threshold, view=view, max_fps=max_fps, vmin=vmin, vmax=vmax)
    win.resize(width, height)
    win.show()
    started = time.perf_counter()
    cpu_started = _cpu_seconds()
    # Ctrl-C in the terminal closes the window (Python signal handlers run between timer ticks)
    signal.signal(signal.SIGINT, lambda *_: win.close())
    if duration:
        QtCore.QTimer.singleShot(int(duration * 1000), win.close)
    saver = _ScreenshotWhenReady(win, screenshot, not_before_s=screenshot_after) if screenshot else None
    try:
        app.exec() if hasattr(app, "exec") else app.exec_()
    finally:
        streams.close()
    if report:
        elapsed = time.perf_counter() - started
        cpu = _cpu_seconds() - cpu_started
        frames = win.cortex.frames if win.cortex is not None else 0
        measured = {
            "output": name,
            "seconds": round(elapsed, 3),
            # CPU of this process (all threads: GUI, LSL readers, Mesa's render threads): on a
            # shared machine the frame rate depends on the CPU share; the cost per frame does not
            "cpu_seconds": round(cpu, 3),
            "cpu_share": round(cpu / elapsed, 3) if elapsed > 0 else None,
            "cpu_ms_per_frame": round(1e3 * cpu / frames, 2) if frames else None,
            "frames": frames,
            "mean_fps": round(frames / elapsed, 2) if elapsed > 0 else None,
            "data_frames": win.cortex.data_frames if win.cortex is not None else 0,
            "colour_updates": win.colour_updates,
            "ticks": win.ticks,
            "source_chunks": streams.sources.status.ring.writes if streams.sources.status.ring is not None else 0,
            "vertices": win.cortex.geometry_.n_vertices if win.cortex is not None and win.cortex.geometry_ is not None else 0,
            "screenshot": saver.saved if saver is not None else None,
            "regions": saver.regions if saver is not None else None,
            "measured_fps": saver.fps if saver is not None else None,
            "measured_fps_all_frames": saver.all_fps if saver is not None else None,
            "measured_cpu_share": saver.cpu_share if saver is not None else None,
            "measured_cpu_ms_per_frame": saver.cpu_ms_per_frame if saver is not None else None,
        }
        Path(report).write_text(json.dumps(measured, indent=2))
    if saver is not None and not saver.saved:
        raise RtsourceError(f"no screenshot saved: {saver.why_not()}")
    return 0


def _cpu_seconds() -> float:
    """User + system CPU time of this process so far (all threads)."""
    t = os.times()
    return t.user + t.system


class _ScreenshotWhenReady:
    """Save the window once the cortex has been coloured and the traces drawn, then close it.

    Before saving it measures the frame rate over :attr:`measure_s` seconds of live updates,
    so the saved number describes the frame that was shot.
    """

    measure_s = 3.0
    timeout_s = 120.0

    def __init__(self, window, path: str, not_before_s: float = 0.0):
        self.window = window
        self.path = path
        self.not_before_s = float(not_before_s or 0.0)
        self.saved = None
        self.regions = None
        self.fps = self.all_fps = self.cpu_share = self.cpu_ms_per_frame = None
        self._t0 = time.monotonic()
        self._measure_from = None
        self._timer = QtCore.QTimer(window)
        self._timer.timeout.connect(self._check)
        self._timer.start(100)

    def _ready(self) -> bool:
        w = self.window
        cortex_ok = w.cortex is None or w.colour_updates >= 10
        traces_ok = all(p.layout_ is None or p._last_count > 0 for p in (w.traces.roi, w.traces.bandpower))
        return cortex_ok and traces_ok and w.streams.sources.status.state == "connected"

    def why_not(self) -> str:
        w = self.window
        return (f"after {time.monotonic() - self._t0:.0f} s: sources {w.streams.sources.status.state}, "
                f"{w.colour_updates} colour updates")

    def _check(self) -> None:
        w = self.window
        now = time.monotonic()
        if now - self._t0 > self.timeout_s + self.not_before_s:
            logger.error("screenshot not taken: %s", self.why_not())
            self._timer.stop()
            w.close()
            return
        if now - self._t0 < self.not_before_s or not self._ready():
            return
        counts = (w.cortex.frames, w.cortex.data_frames) if w.cortex is not None else (0, 0)
        if self._measure_from is None:
            self._measure_from = (now, counts, _cpu_seconds())
            return
        t0, (f0, d0), c0 = self._measure_from
        if now - t0 < self.measure_s:
            return
        self.fps = round((counts[1] - d0) / (now - t0), 2)  # frames that showed new colours
        self.all_fps = round((counts[0] - f0) / (now - t0), 2)
        cpu = _cpu_seconds() - c0
        self.cpu_share = round(cpu / (now - t0), 3)
        self.cpu_ms_per_frame = round(1e3 * cpu / (counts[0] - f0), 2) if counts[0] > f0 else None
        self._timer.stop()
        image = w.grab_image()
        self.regions = w.regions()
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        if not image.save(str(self.path)):
            logger.error("could not write the screenshot to %s", self.path)
        else:
            self.saved = str(self.path)
            logger.info("screenshot saved to %s (%.1f FPS over %.1f s)", self.path, self.fps, now - t0)
        w.close()


if __name__ == "__main__":
    # ``python -m rtsource.display.app [NAME] [options]`` is ``rtsource view``: the command
    # line (rtsource.cli) parses the options and reports errors. Run as a program, not
    # imported, so the library module does not depend on the command line above it.
    import runpy

    sys.argv = ["rtsource", "view", *sys.argv[1:]]
    runpy.run_module("rtsource.cli", run_name="__main__", alter_sys=True)
