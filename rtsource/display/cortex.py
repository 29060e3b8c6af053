"""The 3D cortex view: the source space as a pyqtgraph.opengl mesh coloured by the activity.

Per frame only the vertex colours change. They are computed into preallocated arrays
(values -> colour-table index -> RGBA bytes) and only the colour buffer is uploaded to the
GPU; positions, normals and triangles are uploaded once per mesh (see :class:`_ColourMeshItem`).
The threshold and the colour range act on the 256-entry colour table, not on the vertices,
so changing them costs nothing per vertex.
"""

from __future__ import annotations

import importlib
import logging
import math
import time
from collections import deque

import numpy as np
import pyqtgraph as pg
import pyqtgraph.opengl as gl
from OpenGL import GL
from pyqtgraph.opengl import shaders
from pyqtgraph.opengl.GLViewWidget import GLViewMixin
from pyqtgraph.Qt import QT_LIB, QtCore, QtGui, QtWidgets

QtOpenGL = importlib.import_module(f"{QT_LIB}.QtOpenGL")

from .cortex_geometry import CortexGeometry

logger = logging.getLogger(__name__)

#: Bare cortex (below threshold, or no source nearby), RGBA bytes.
CORTEX_GREY = np.array([178, 178, 178, 255], np.uint8)
OUTLINE_RGBA = np.array([40, 40, 40, 255], np.uint8)  # atlas region borders (--atlas)

#: Preset camera views: name -> (azimuth, elevation) in degrees, RAS frame
#: (azimuth 0 looks from the right, 90 from the front).
VIEWS = {
    "left": (180.0, 0.0),
    "right": (0.0, 0.0),
    "top": (-90.0, 90.0),
    "back": (-90.0, 0.0),
    "front": (90.0, 0.0),
    "oblique": (-135.0, 30.0),  # from the left, behind and above
}

# A headlight: the light sits at the camera, so whatever side the user turns to is lit.
# abs() because the white surface's triangles are not all wound the same way.
_HEADLIGHT = shaders.ShaderProgram(
    "rtsource_headlight",
    [
        shaders.VertexShader(
            """
            uniform mat4 u_mvp;
            uniform mat3 u_normal;
            attribute vec4 a_position;
            attribute vec3 a_normal;
            attribute vec4 a_color;
            varying vec4 v_color;
            varying vec3 v_normal;
            void main() {
                v_normal = normalize(u_normal * a_normal);
                v_color = a_color;
                gl_Position = u_mvp * a_position;
            }
            """
        ),
        shaders.FragmentShader(
            """
            #ifdef GL_ES
            precision mediump float;
            #endif
            varying vec4 v_color;
            varying vec3 v_normal;
            void main() {
                float facing = abs(normalize(v_normal).z);
                float light = 0.3 + 0.7 * facing;
                gl_FragColor = vec4(v_color.rgb * light, v_color.a);
            }
            """
        ),
    ],
)


# ---- colours ----------------------------------------------------------------------------------

def _cmap_table(name: str, start: float, stop: float, n: int) -> np.ndarray:
    """``n`` RGB bytes sampled from a pyqtgraph colour map between ``start`` and ``stop`` (0..1)."""
    cmap = pg.colormap.get(name)
    return np.asarray(cmap.map(np.linspace(start, stop, n), mode="byte"))[:, :3]


class ColourScale:
    """Values -> RGBA bytes, with a threshold and an automatic or fixed range.

    Parameters
    ----------
    signed : bool
        Signed data (fixed-orientation currents) get a symmetric range and a two-sided
        map (blue below zero, red-yellow above); magnitudes get ``[0, max]`` and red-yellow.
    threshold : float
        Fraction of the range's maximum below which a vertex shows bare cortex (0..1).

    Notes
    -----
    The automatic range (see :meth:`track`) rises at once and decays with a time constant
    of :attr:`decay_s` seconds, so it neither flickers nor stays stuck after a burst.
    """

    n_levels = 256
    decay_s = 3.0

    def __init__(self, signed: bool = False, threshold: float = 0.3):
        self.signed = bool(signed)
        self.threshold = float(threshold)
        self.auto = True
        self.fixed_max = 1.0
        self.fixed_min = 0.0
        self.vmax = 0.0  # the automatic range's current maximum (0 until data came)
        self.vmin_auto = 0.0  # and its lower end for magnitudes (the median)
        self.lut = np.zeros((self.n_levels, 4), np.uint8)
        self._lut_key = None
        self._hot = _cmap_table("CET-L3", 0.35, 0.95, self.n_levels)  # dark red -> yellow
        self._cold = _cmap_table("CET-L6", 0.3, 0.9, self.n_levels)[::-1] if "CET-L6" in pg.colormap.listMaps() else self._hot[:, ::-1]
        self._last_auto = None

    # ---- range ----
    def limits(self) -> tuple[float, float]:
        """The value range the colour table spans (low, high)."""
        if self.auto:
            hi = self.vmax if self.vmax > 0 else 1.0
            if self.signed:
                return -hi, hi
            lo = min(self.vmin_auto, 0.9 * hi)
            return lo, hi
        if self.signed:
            m = max(abs(self.fixed_min), abs(self.fixed_max), 1e-30)
            return -m, m
        lo, hi = self.fixed_min, self.fixed_max
        return (lo, hi) if hi > lo else (lo, lo + 1e-30)

    def threshold_value(self) -> float:
        """Magnitude below which vertices show bare cortex."""
        lo, hi = self.limits()
        if self.signed:
            return self.threshold * hi
        return lo + self.threshold * (hi - lo)

    def track(self, values: np.ndarray, now: float | None = None) -> None:
        """Update the automatic range from the newest values (a 1-D float array).

        Magnitudes span from the median (the noise floor of a dSPM / sLORETA map) to the
        99.9th percentile; signed values span +-(99.9th percentile of ``|value|``), in the
        spirit of MNE-Python's percentile-based automatic limits.
        """
        now = time.monotonic() if now is None else now
        finite = values[np.isfinite(values)]
        if not finite.size:
            return
        mag = np.abs(finite) if self.signed else finite.copy()
        k_mid, k_top = (mag.size - 1) // 2, int(0.999 * (mag.size - 1))
        mag.partition((k_mid, k_top))
        top, mid = float(mag[k_top]), float(mag[k_mid])
        if top <= 0:
            top = float(mag.max())
        if top <= 0:
            return
        first = self._last_auto is None
        dt = 0.0 if first else now - self._last_auto
        self._last_auto = now
        follow = 1.0 - math.exp(-dt / self.decay_s)
        if first or top >= self.vmax:  # rise at once, decay slowly
            self.vmax = top
        else:
            self.vmax += (top - self.vmax) * follow
        self.vmin_auto = mid if first else self.vmin_auto + (mid - self.vmin_auto) * follow

    # ---- colour table ----
    def table(self) -> np.ndarray:
        """The current colour table (n_levels, 4) bytes; rebuilt only when range or threshold changed."""
        lo, hi = self.limits()
        key = (lo, hi, self.threshold, self.signed)
        if key == self._lut_key:
            return self.lut
        self._lut_key = key
        levels = lo + (np.arange(self.n_levels) + 0.5) / self.n_levels * (hi - lo)
        thr = self.threshold_value()
        span = max(hi - thr, 1e-30)
        lut = np.empty((self.n_levels, 4), np.uint8)
        lut[:] = CORTEX_GREY
        if self.signed:
            pos = levels > thr
            neg = levels < -thr
            lut[pos, :3] = self._hot[np.clip(((levels[pos] - thr) / span * (self.n_levels - 1)).astype(int), 0, self.n_levels - 1)]
            lut[neg, :3] = self._cold[np.clip(((-levels[neg] - thr) / span * (self.n_levels - 1)).astype(int), 0, self.n_levels - 1)]
        else:
            on = levels >= thr
            lut[on, :3] = self._hot[np.clip(((levels[on] - thr) / span * (self.n_levels - 1)).astype(int), 0, self.n_levels - 1)]
        self.lut = lut
        return lut

    def colour_map(self) -> pg.ColorMap:
        """The colour table as a pyqtgraph ColorMap (for the colour bar)."""
        lut = self.table()
        return pg.ColorMap(np.linspace(0, 1, len(lut)), lut)


class VertexColourer:
    """Fill a preallocated RGBA array from source values (no allocation per frame).

    Parameters
    ----------
    geometry : CortexGeometry
        Which value each vertex shows, and which vertices have none.
    """

    def __init__(self, geometry: CortexGeometry):
        n = geometry.n_vertices
        self.index = np.ascontiguousarray(geometry.value_index, dtype=np.intp)
        self.missing = np.asarray(geometry.missing, dtype=np.intp)
        self.outline = np.asarray(geometry.outline, dtype=np.intp)
        self.rgba = np.empty((n, 4), np.uint8)
        self.rgba[:] = CORTEX_GREY
        self._v = np.empty(n, np.float32)
        self._i = np.empty(n, np.uint8)

    def fill(self, values: np.ndarray, scale: ColourScale) -> np.ndarray:
        """Colour every vertex from ``values`` (one per stream channel); returns :attr:`rgba`."""
        lut = scale.table()
        lo, hi = scale.limits()
        v = self._v
        np.take(values, self.index, out=v)
        np.nan_to_num(v, copy=False, nan=lo)
        v -= lo
        v *= (len(lut) - 1e-3) / (hi - lo)
        np.clip(v, 0, len(lut) - 1, out=v)
        self._i[:] = v  # truncating cast to the table index
        np.take(lut, self._i, axis=0, out=self.rgba)
        if len(self.missing):
            self.rgba[self.missing] = CORTEX_GREY
        if len(self.outline):
            self.rgba[self.outline] = OUTLINE_RGBA
        return self.rgba


# ---- the mesh item ----------------------------------------------------------------------------

try:  # pyqtgraph >= 0.14 uploads vertex buffers selectively
    from pyqtgraph.opengl.items.GLMeshItem import DirtyFlag as _DirtyFlag
except ImportError:  # pragma: no cover - older pyqtgraph
    _DirtyFlag = None


class _ColourMeshItem(gl.GLMeshItem):
    """A GLMeshItem whose vertex colours are replaced without re-parsing the mesh.

    ``setMeshData(vertexColors=...)`` would rebuild the MeshData and recompute normals and
    re-upload positions every frame; here only the colour buffer is marked dirty.
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, rgba: np.ndarray, *, cull_back_faces: bool = False):
        md = gl.MeshData(vertexes=np.asarray(vertices, np.float32), faces=np.asarray(faces, np.int32))
        options = {GL.GL_DEPTH_TEST: True, GL.GL_BLEND: False, GL.GL_CULL_FACE: bool(cull_back_faces)}
        if cull_back_faces:
            # a closed outward surface never shows a back face: skipping them halves the
            # rasterisation (the dominant cost of a frame with Mesa's software renderer)
            options["glCullFace"] = (GL.GL_BACK,)
            options["glFrontFace"] = (GL.GL_CCW,)
        super().__init__(meshdata=md, smooth=True, shader=_HEADLIGHT, glOptions=options)
        self._rgba = rgba
        self._colours_dirty = True
        if _DirtyFlag is None:  # pragma: no cover
            md.setVertexColors(rgba.astype(np.float32) / 255.0)

    def set_colours(self, rgba: np.ndarray) -> None:
        """Show ``rgba`` (n_vertices, 4) bytes (the array is kept, not copied) at the next paint."""
        self._rgba = rgba
        self._colours_dirty = True
        if _DirtyFlag is None:  # pragma: no cover - slow path
            self.opts["meshdata"].setVertexColors(rgba.astype(np.float32) / 255.0)
            self.meshDataChanged()
        self.update()

    def parseMeshData(self):
        dirty = super().parseMeshData()
        if _DirtyFlag is not None and (self._colours_dirty or dirty):
            self.colors = self._rgba
            dirty |= _DirtyFlag.COLOR
            self._colours_dirty = False
        return dirty


class _GLWindow(GLViewMixin, QtOpenGL.QOpenGLWindow):
    """The 3D view as a native OpenGL window (embedded with ``createWindowContainer``).

    A QOpenGLWidget makes Qt compose the whole top-level window through OpenGL on every
    frame; with Mesa's software renderer that composition of a full-HD window costs more
    than drawing the cortex. A native child window swaps only its own pixels, and the 2D
    plots next to it repaint through the ordinary raster path. It also counts its frames.
    """

    def __init__(self):
        super().__init__()
        fmt = QtGui.QSurfaceFormat.defaultFormat()
        fmt.setDepthBufferSize(24)  # a window's default framebuffer may come without one
        self.setFormat(fmt)
        self.frame_times: deque[float] = deque(maxlen=600)
        self.frames = 0  # frames drawn
        self.data_frames = 0  # frames that showed new vertex colours
        self.data_times: deque[float] = deque(maxlen=600)
        self._pending_data = False

    def devicePixelRatioF(self) -> float:  # GLViewMixin expects the QWidget method
        return float(self.devicePixelRatio())

    def mark_new_data(self) -> None:
        self._pending_data = True
        self.update()

    def paintGL(self) -> None:
        super().paintGL()
        now = time.perf_counter()
        self.frames += 1
        self.frame_times.append(now)
        if self._pending_data:
            self._pending_data = False
            self.data_frames += 1
            self.data_times.append(now)

    @staticmethod
    def _rate(times, window: float) -> float:
        now = time.perf_counter()
        recent = [t for t in times if now - t <= window]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-9)

    def fps(self, window: float = 1.0) -> float:
        """Frames drawn per second over the last ``window`` seconds."""
        return self._rate(self.frame_times, window)

    def data_fps(self, window: float = 1.0) -> float:
        """Frames with new vertex colours per second over the last ``window`` seconds."""
        return self._rate(self.data_times, window)

    def release_gl(self) -> None:
        """Free the items' GPU buffers while the context still exists (avoids a crash at exit)."""
        if not self.isValid():
            return
        self.makeCurrent()
        for item in list(self.items):
            for name in ("m_vbo_position", "m_vbo_normal", "m_vbo_color", "m_ibo_faces", "m_vbo_edgeVerts", "m_ibo_edges"):
                buf = getattr(item, name, None)
                if buf is not None and buf.isCreated():
                    buf.destroy()
            self.removeItem(item)
        if self.default_vao.isCreated():
            self.default_vao.destroy()
        self.doneCurrent()


# ---- the widget -------------------------------------------------------------------------------

class ColourBar(pg.GraphicsLayoutWidget):
    """A vertical colour bar with a value axis and the unit."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setFixedWidth(92)
        self.plot = self.addPlot()
        self.plot.setMouseEnabled(False, False)
        self.plot.hideButtons()
        self.plot.hideAxis("bottom")
        self.plot.setMenuEnabled(False)
        self.plot.getAxis("left").setWidth(46)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.plot.addItem(self.image)
        self._key = None

    def set_scale(self, scale: ColourScale, unit: str) -> None:
        lo, hi = scale.limits()
        key = (lo, hi, scale._lut_key, unit)
        if key == self._key:
            return
        self._key = key
        lut = scale.table()
        self.image.setImage(lut[:, None, :3].copy(), levels=(0, 255))
        self.image.setRect(QtCore.QRectF(0.0, lo, 1.0, hi - lo))
        self.plot.setXRange(0, 1, padding=0)
        self.plot.setYRange(lo, hi, padding=0)
        self.plot.setLabel("left", unit or "")


class CortexView(QtWidgets.QWidget):
    """Cortex mesh coloured by the newest source values, with its controls.

    Controls: colour range auto / fixed (min, max), threshold (% of the range), preset views
    (left, right, top, back, front, oblique); the mouse rotates (drag), pans (middle drag)
    and zooms (wheel). :meth:`set_values` colours the mesh; :meth:`fps` is the measured
    frame rate.
    """

    def __init__(self, parent=None, *, threshold: float = 0.3, view: str = "top"):
        super().__init__(parent)
        self.scale = ColourScale(threshold=threshold)
        self.geometry_: CortexGeometry | None = None
        self.colourer: VertexColourer | None = None
        self.item = None
        self.unit = ""
        self._view_name = view
        self._centre = np.zeros(3)
        self._radius_mm = 100.0
        self._last_bar = 0.0

        self.gl = _GLWindow()
        self.gl.setBackgroundColor((18, 20, 26))
        self.gl.opts["fov"] = 40
        self.gl_container = QtWidgets.QWidget.createWindowContainer(self.gl, self)
        self.gl_container.setMinimumSize(200, 150)
        self.gl_container.setFocusPolicy(QtCore.Qt.FocusPolicy.ClickFocus)
        self.colour_bar = ColourBar(self)

        self.title = QtWidgets.QLabel("waiting for the source stream")
        self.title.setStyleSheet("font-weight: bold;")
        self.title.setMinimumWidth(50)
        self.title.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)
        self.mode = QtWidgets.QComboBox()
        self.mode.addItems(["auto", "fixed"])
        self.mode.setToolTip("colour range: follow the data (auto) or fixed limits")
        self.vmin = QtWidgets.QDoubleSpinBox()
        self.vmax = QtWidgets.QDoubleSpinBox()
        for box in (self.vmin, self.vmax):
            box.setDecimals(3)
            box.setRange(-1e12, 1e12)
            box.setEnabled(False)
            box.setKeyboardTracking(False)
            box.setFixedWidth(96)
        self.vmin.setToolTip("lower end of a fixed colour range (ignored for signed data: the range is symmetric)")
        self.vmax.setToolTip("upper end of a fixed colour range")
        self.thr = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.thr.setRange(0, 95)
        self.thr.setValue(int(round(threshold * 100)))
        self.thr.setFixedWidth(110)
        self.thr_label = QtWidgets.QLabel()
        self.thr.setToolTip("threshold: values below this fraction of the range show bare cortex")

        top = QtWidgets.QHBoxLayout()
        top.addWidget(self.title, 1)
        self.view_buttons = {}
        for name in ("left", "right", "top", "back"):
            b = QtWidgets.QPushButton(name)
            b.setFixedWidth(48)
            b.setToolTip(f"view from the {name}" if name != "top" else "view from above")
            b.clicked.connect(lambda _=False, n=name: self.set_view(n))
            top.addWidget(b)
            self.view_buttons[name] = b
        controls = QtWidgets.QHBoxLayout()
        controls.addWidget(QtWidgets.QLabel("range"))
        controls.addWidget(self.mode)
        controls.addWidget(self.vmin)
        controls.addWidget(self.vmax)
        controls.addSpacing(8)
        controls.addWidget(QtWidgets.QLabel("threshold"))
        controls.addWidget(self.thr)
        controls.addWidget(self.thr_label)
        controls.addStretch(1)
        controls.addWidget(QtWidgets.QLabel("drag: rotate, wheel: zoom"))

        gl_row = QtWidgets.QHBoxLayout()
        gl_row.setContentsMargins(0, 0, 0, 0)
        gl_row.addWidget(self.gl_container, 1)
        gl_row.addWidget(self.colour_bar)

        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addLayout(gl_row, 1)
        layout.addLayout(controls)

        self.mode.currentTextChanged.connect(self._mode_changed)
        self.vmin.valueChanged.connect(self._fixed_changed)
        self.vmax.valueChanged.connect(self._fixed_changed)
        self.thr.valueChanged.connect(self._threshold_changed)
        self._threshold_changed(self.thr.value())

    # ---- controls ----
    def _mode_changed(self, text: str) -> None:
        auto = text == "auto"
        if not auto:  # start from what is on screen
            lo, hi = self.scale.limits()
            self.vmin.blockSignals(True)
            self.vmax.blockSignals(True)
            self.vmin.setValue(lo)
            self.vmax.setValue(hi)
            self.vmin.blockSignals(False)
            self.vmax.blockSignals(False)
            self.scale.fixed_min, self.scale.fixed_max = lo, hi
        self.scale.auto = auto
        self.vmin.setEnabled(not auto and not self.scale.signed)
        self.vmax.setEnabled(not auto)
        self._recolour()

    def _fixed_changed(self, _=None) -> None:
        self.scale.fixed_min, self.scale.fixed_max = self.vmin.value(), self.vmax.value()
        self._recolour()

    def _threshold_changed(self, value: int) -> None:
        self.scale.threshold = value / 100.0
        self.thr_label.setText(f"{value:d} %")
        self._recolour()

    def set_range(self, vmin: float | None, vmax: float | None) -> None:
        """Fix the colour range (None, None: automatic)."""
        if vmax is None:
            self.mode.setCurrentText("auto")
            return
        self.mode.setCurrentText("fixed")
        self.vmin.setValue(0.0 if vmin is None else vmin)
        self.vmax.setValue(vmax)

    def set_view(self, name: str) -> None:
        """Turn the camera to a preset view (see :data:`VIEWS`)."""
        if name not in VIEWS:
            raise ValueError(f"view {name!r} is not known; use one of {', '.join(VIEWS)}")
        self._view_name = name
        azimuth, elevation = VIEWS[name]
        # far enough that the whole brain fits the (horizontal) field of view and the
        # height of the view, with a margin
        aspect = max(self.gl.width(), 1) / max(self.gl.height(), 1)
        distance = self._radius_mm / math.tan(math.radians(self.gl.opts["fov"] / 2)) * max(1.0, aspect) * 1.05
        self.gl.setCameraPosition(pos=QtGui.QVector3D(0, 0, 0), distance=distance, azimuth=azimuth, elevation=elevation)

    # ---- data ----
    def set_geometry(self, geometry: CortexGeometry | None, *, title: str = "", unit: str = "") -> None:
        """Show a new mesh (after a (re)connection); None clears the view."""
        if self.item is not None:
            self.gl.removeItem(self.item)
            self.item = None
        self.geometry_ = geometry
        self.colourer = None
        self.unit = unit
        if title:
            self.title.setText(title)
        if geometry is None:
            return
        self.scale.signed = bool(geometry.signed)
        self.scale.vmax = self.scale.vmin_auto = 0.0
        self.scale._last_auto = None
        self.vmin.setEnabled(not self.scale.auto and not self.scale.signed)
        verts_mm = np.asarray(geometry.vertices_m) * 1e3
        self._centre = 0.5 * (verts_mm.min(axis=0) + verts_mm.max(axis=0))
        verts_mm = verts_mm - self._centre
        self._radius_mm = float(np.linalg.norm(verts_mm, axis=1).max()) or 100.0
        self.colourer = VertexColourer(geometry)
        if len(geometry.faces):
            self.item = _ColourMeshItem(verts_mm, geometry.faces, self.colourer.rgba, cull_back_faces=geometry.cull_back_faces)
        else:
            self.item = gl.GLScatterPlotItem(pos=verts_mm, color=self.colourer.rgba / 255.0, size=6.0, pxMode=True)
            self.item.setGLOptions("opaque")
        self.gl.addItem(self.item)
        self.set_view(self._view_name)
        self.colour_bar.set_scale(self.scale, unit)

    def set_values(self, values: np.ndarray) -> None:
        """Colour the mesh from one value per stream channel (float array)."""
        if self.colourer is None:
            return
        if self.scale.auto:
            self.scale.track(values)
        self._last_values = values
        rgba = self.colourer.fill(values, self.scale)
        self._push(rgba)
        now = time.monotonic()
        if now - self._last_bar >= 0.25:  # 2D widgets repaint slowly; the range drifts slowly
            self._last_bar = now
            self.colour_bar.set_scale(self.scale, self.unit)
            if self.scale.auto:
                lo, hi = self.scale.limits()
                for box, v in ((self.vmin, lo), (self.vmax, hi)):
                    box.blockSignals(True)
                    box.setValue(v)
                    box.blockSignals(False)

    def _push(self, rgba: np.ndarray) -> None:
        if isinstance(self.item, _ColourMeshItem):
            self.item.set_colours(rgba)
        elif self.item is not None:
            self.item.setData(color=rgba / 255.0)
        self.gl.mark_new_data()

    def _recolour(self) -> None:
        values = getattr(self, "_last_values", None)
        if self.colourer is not None and values is not None:
            self._push(self.colourer.fill(values, self.scale))
        self.colour_bar.set_scale(self.scale, self.unit)

    def set_title(self, text: str) -> None:
        self.title.setText(text)

    def fps(self) -> float:
        """Frames drawn per second (over the last second)."""
        return self.gl.fps()

    def data_fps(self) -> float:
        """Frames per second that showed new vertex colours (over the last second)."""
        return self.gl.data_fps()

    @property
    def frames(self) -> int:
        return self.gl.frames

    @property
    def data_frames(self) -> int:
        return self.gl.data_frames

    def grab_frame(self) -> QtGui.QImage:
        """The current 3D frame as an image.

        It is drawn afresh first: a window's framebuffer holds the last frame only until the
        next swap, and an update that is still pending would be missed.
        """
        self.gl.makeCurrent()
        self.gl.paintGL()
        return self.gl.grabFramebuffer()

    def release(self) -> None:
        """Free the GPU resources (call before the window is destroyed)."""
        self.item = None
        self.gl.release_gl()
