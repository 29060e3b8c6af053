"""Scrolling traces of the ROI and band-power streams, one named row per channel.

Each channel is a persistent ``PlotDataItem`` that :meth:`TracePlot.refresh` feeds with
``setData`` from the reader's ring buffer (copied, oldest first, into arrays allocated once
per layout). Rows are stacked and each is scaled to its own range over the window, so
ROIs with very different amplitudes (or band powers spanning decades) are all readable;
the row names, with the newest value, are the ticks of the left axis.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pyqtgraph as pg
from pyqtgraph.Qt import QtCore, QtWidgets

from .layout import StreamLayout
from .readers import ReaderStatus

logger = logging.getLogger(__name__)

#: Fraction of a row's height a trace may use (the rest separates neighbours).
_ROW_FILL = 0.8


def _format_value(v: float) -> str:
    if not np.isfinite(v):
        return "-"
    return f"{v:.3g}"


def row_layout(labels: tuple[str, ...]) -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    """Rows and colours for a stream's channels.

    Channels named ``ROW/PART`` (band powers: ``lh-occipital/alpha``) share a row per ROW,
    coloured by PART; other streams get one row per channel.

    Returns
    -------
    rows : list of str
        Row names, top to bottom.
    row_of : ndarray of int
        Row of each channel.
    parts : list of str
        The PART names (empty when channels are not grouped).
    part_of : ndarray of int
        Colour index of each channel.
    """
    split = [lab.rsplit("/", 1) for lab in labels]
    if labels and all(len(p) == 2 and p[0] and p[1] for p in split):
        rows = list(dict.fromkeys(p[0] for p in split))
        parts = list(dict.fromkeys(p[1] for p in split))
        if len(rows) < len(labels):
            return rows, np.array([rows.index(p[0]) for p in split]), parts, np.array([parts.index(p[1]) for p in split])
    n = len(labels)
    return list(labels), np.arange(n), [], np.arange(n)


class TracePlot(pg.PlotWidget):
    """One stream's channels as stacked, individually scaled scrolling traces.

    Parameters
    ----------
    what : str
        What the stream is ("ROI", "band power"), for the title.
    stream_name : str
        The stream it shows (for "waiting for stream ...").
    window_s : float
        Seconds of history shown (the x axis runs from ``-window_s`` to 0, the newest sample).
    """

    def __init__(self, what: str, stream_name: str, window_s: float = 10.0, parent=None):
        super().__init__(parent)
        self.what = what
        self.stream_name = stream_name
        self.window_s = float(window_s)
        self.layout_: StreamLayout | None = None
        self.curves: list[pg.PlotDataItem] = []
        self.rows: list[str] = []
        self._row_of = np.zeros(0, int)
        self._data = np.zeros((0, 0), np.float32)
        self._times = np.zeros(0)
        self._last_count = -1
        self._last_ticks = 0.0
        plot = self.getPlotItem()
        plot.setMenuEnabled(False)
        plot.hideButtons()
        plot.setLabel("bottom", "time", units="s")
        plot.setMouseEnabled(x=False, y=False)
        # Ticks point outward and the axes draw no grid: an axis whose bounding rect reaches
        # into the plot is repainted (text and all) with every trace update. Faint lines
        # in the view mark the seconds instead.
        for side in ("left", "bottom"):
            plot.getAxis(side).setStyle(tickLength=4)
        plot.getAxis("left").setStyle(tickTextOffset=4)
        plot.getAxis("left").setWidth(150)
        grid_pen = pg.mkPen((255, 255, 255, 28), width=1)
        for second in range(1, int(self.window_s) + 1):
            plot.addItem(pg.InfiniteLine(pos=-second, angle=90, pen=grid_pen, movable=False))
        self.setXRange(-self.window_s, 0, padding=0.01)
        self.set_waiting()

    # ---- layout ----
    def set_waiting(self, message: str = "") -> None:
        """Say that the stream is missing (the traces keep their last data)."""
        message = message or f"waiting for stream {self.stream_name!r}"
        short = "waiting for its stream" + (" (it went away)" if "went away" in message else "")
        self.getPlotItem().setTitle(f"{self.what}: {short}", color="#e0a040", size="10pt")
        self.setToolTip(message)

    def set_layout(self, layout: StreamLayout | None) -> None:
        """Make one curve per channel of ``layout`` (after a (re)connection)."""
        plot = self.getPlotItem()
        for c in self.curves:
            plot.removeItem(c)
        self.curves = []
        self.layout_ = layout
        self._last_count = -1
        if layout is None:
            self.rows = []
            self._data = np.zeros((0, 0), np.float32)
            self._times = np.zeros(0)
            return
        self.rows, self._row_of, parts, part_of = row_layout(layout.labels)
        n_colours = max(len(parts) or len(self.rows), 1)
        colours = [pg.intColor(j, hues=n_colours, values=1, maxValue=255, minValue=150, sat=180) for j in range(n_colours)]
        for i in range(layout.n_channels):
            # width-1 cosmetic pens take Qt's fast line path (wider ones are stroked: several times slower)
            pen = pg.mkPen(colours[int(part_of[i])], width=1)
            curve = pg.PlotDataItem(pen=pen, name=layout.labels[i])
            curve.setDownsampling(auto=True, method="peak")
            curve.setClipToView(True)
            plot.addItem(curve)
            self.curves.append(curve)
        n_rows = len(self.rows)
        plot.setYRange(-0.6, n_rows - 0.4, padding=0)
        self._set_ticks(None)
        unit = layout.unit
        rate = f"{layout.sfreq:g} Hz" if layout.sfreq else "irregular"
        # the parts' colours are named in the title (a legend would cover the top row)
        key = "".join(f'&nbsp;&nbsp;<span style="color:{c.name()}">&#9644; {p}</span>' for p, c in zip(parts, colours))
        what = "" if parts else f"{layout.n_channels}, "
        # short: a long title would widen the plot beyond its pane; the stream name is in the tooltip
        plot.setTitle(f"{self.what} ({what}{rate}{', ' + unit if unit else ''}){key}", color="#c8c8c8", size="10pt")
        self.setToolTip(f"stream {layout.name!r} (type {layout.type!r}, source_id {layout.source_id!r}): {', '.join(layout.labels)}")

    def _set_ticks(self, latest: np.ndarray | None) -> None:
        n = len(self.rows)
        ticks = []
        for r, name in enumerate(self.rows):
            text = name
            if latest is not None and len(self.rows) == len(self.curves):  # one channel per row: show its value
                text = f"{name}  {_format_value(latest[r])}"
            ticks.append((n - 1 - r, text))
        self.getPlotItem().getAxis("left").setTicks([ticks, []])

    # ---- data ----
    def refresh(self, status: ReaderStatus) -> bool:
        """Redraw from the reader's ring buffer; returns whether anything changed."""
        ring = status.ring
        if ring is None or not self.curves or ring.count == self._last_count or ring.n_channels != len(self.curves):
            return False
        self._last_count = ring.count
        if self._data.shape != (ring.capacity, ring.n_channels):
            self._data = np.zeros((ring.capacity, ring.n_channels), np.float32)
            self._times = np.zeros(ring.capacity)
        n = ring.ordered(self._data, self._times)
        if n == 0:
            return False
        t = self._times[:n]
        x = t - t[-1]
        keep = x >= -self.window_s
        x = x[keep]
        y = self._data[:n][keep]
        n_rows = len(self.rows)
        with np.errstate(invalid="ignore"):
            lo_ch = np.nanmin(y, axis=0)
            hi_ch = np.nanmax(y, axis=0)
        # channels sharing a row share its scale (band powers of one ROI stay comparable)
        lo = np.full(n_rows, np.inf)
        hi = np.full(n_rows, -np.inf)
        np.minimum.at(lo, self._row_of, np.where(np.isfinite(lo_ch), lo_ch, np.inf))
        np.maximum.at(hi, self._row_of, np.where(np.isfinite(hi_ch), hi_ch, -np.inf))
        span = np.where(np.isfinite(hi - lo) & (hi - lo > 0), hi - lo, 1.0)
        mid = np.where(np.isfinite(lo) & np.isfinite(hi), 0.5 * (lo + hi), 0.0)
        for i, curve in enumerate(self.curves):
            r = self._row_of[i]
            curve.setData(x, (y[:, i] - mid[r]) * (_ROW_FILL / span[r]) + (n_rows - 1 - r))
        # tick labels carry the newest values; re-laying out the axis is slow, so once a second
        now = time.monotonic()
        if now - self._last_ticks >= 1.0:
            self._last_ticks = now
            self._set_ticks(y[-1] if len(y) else None)
        return True


class TracePanel(QtWidgets.QWidget):
    """The ROI and band-power plots, one above the other."""

    def __init__(self, roi_stream: str, bandpower_stream: str, window_s: float = 10.0, parent=None):
        super().__init__(parent)
        self.roi = TracePlot("ROI", roi_stream, window_s)
        self.bandpower = TracePlot("band power", bandpower_stream, window_s)
        splitter = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        splitter.addWidget(self.roi)
        splitter.addWidget(self.bandpower)
        splitter.setSizes([3, 2])
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)
        self._generations = {"roi": -1, "bandpower": -1}

    def sync(self, name: str, status: ReaderStatus) -> None:
        """Follow a reader's status: rebuild on (re)connection, say when it is waiting, redraw."""
        plot = getattr(self, name)
        if status.generation != self._generations[name]:
            self._generations[name] = status.generation
            plot.set_layout(status.layout)
        if status.state != "connected":
            plot.set_waiting(status.message)
            return
        plot.refresh(status)
