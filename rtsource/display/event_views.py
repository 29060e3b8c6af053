"""Live views of ``NAME-evoked`` and ``NAME-connectivity``: the running average and a coupling matrix.

    ┌──────────────────────────────┬───────────────────────────┐
    │ running average of one event │ ROI x ROI matrix of one   │
    │ (the channels with the       │ measure and band (all     │
    │ largest peaks), n epochs     │ pairs, or the strongest K)│
    └──────────────────────────────┴───────────────────────────┘

:class:`EventStreams` follows both streams in one background thread and keeps the newest
sample of each (per event for the averages); :class:`EventsPanel` copies them into
persistent plot items on a QTimer. ``rtsource view --events [NAME]`` opens it in its own
window (:func:`run_events_view`); layouts come from the headers' ``rtsource`` blocks
(:mod:`rtsource.stream.event_layout`), so headers without per-channel entries work too.
"""

from __future__ import annotations

import logging
import threading
import time
import xml.etree.ElementTree as ET

import numpy as np

logger = logging.getLogger(__name__)

#: Channels drawn in the average plot (the largest post-marker peaks over the baseline noise),
#: so that 68 ROIs stay readable.
MAX_CURVES = 8
#: Weight of the newest connectivity row in the matrix shown (an exponential mean over ~5 s at 10 Hz).
SMOOTHING = 0.02
#: Edges listed under the matrix (largest absolute values).
EDGES_LISTED = 3


def _meta(info) -> dict:
    root = ET.fromstring(info.as_xml())
    block = root.find("desc/rtsource")
    return {c.tag: (c.text or "") for c in block} if block is not None else {}


class EventStreams:
    """The newest evoked average per event and the newest connectivity row of one output."""

    def __init__(self, output_name: str):
        from ..stream.outputs import CONNECTIVITY_SUFFIX, EVOKED_SUFFIX

        self.names = {"evoked": output_name + EVOKED_SUFFIX, "connectivity": output_name + CONNECTIVITY_SUFFIX}
        self.meta: dict[str, dict] = {}
        self.evoked: dict[int, np.ndarray] = {}  # event code -> newest [event, count, average...]
        self.connectivity: np.ndarray | None = None  # exponential mean of the rows (SMOOTHING)
        self.received = {"evoked": 0, "connectivity": 0}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rtsource-event-views", daemon=True)

    def start(self) -> "EventStreams":
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(3.0)

    def _run(self) -> None:
        import pylsl

        inlets: dict[str, pylsl.StreamInlet] = {}
        while not self._stop.is_set():
            for key, name in self.names.items():
                if key not in inlets:
                    found = pylsl.resolve_byprop("name", name, minimum=1, timeout=0.2)
                    if found:
                        inlet = pylsl.StreamInlet(found[0], max_buflen=30)
                        try:
                            inlet.open_stream(timeout=5.0)
                            meta = _meta(inlet.info(timeout=5.0))
                        except Exception as exc:  # noqa: BLE001 - try again later
                            logger.info("event views: %s not ready (%s)", name, exc)
                            continue
                        inlets[key] = inlet
                        with self._lock:
                            self.meta[key] = meta
            for key, inlet in list(inlets.items()):
                try:
                    data, ts = inlet.pull_chunk(timeout=0.0, max_samples=64)
                except Exception:  # noqa: BLE001 - the loop went away: resolve again
                    del inlets[key]
                    continue
                if not ts:
                    continue
                rows = np.asarray(data, dtype=np.float32)
                with self._lock:
                    self.received[key] += len(ts)
                    if key == "evoked":
                        for row in rows:
                            self.evoked[int(row[0])] = row
                    else:
                        # single 1 s windows are noisy estimates: show an exponential mean of the rows
                        for row in rows:
                            if not np.isfinite(row).all():
                                continue
                            if self.connectivity is None or self.connectivity.shape != row.shape:
                                self.connectivity = row.astype(np.float64)
                            else:
                                self.connectivity += SMOOTHING * (row - self.connectivity)
            self._stop.wait(0.05)

    def snapshot(self):
        with self._lock:
            conn = None if self.connectivity is None else self.connectivity.copy()
            return dict(self.meta), dict(self.evoked), conn, dict(self.received)


def connectivity_matrix(row: np.ndarray, meta: dict, measure: str, band: str) -> np.ndarray:
    """The (n_roi, n_roi) matrix of one measure and band from a connectivity row (imcoh: antisymmetric).

    ``output = "strongest"`` rows fill only their K edges (NaN elsewhere).
    """
    from ..stream.event_layout import connectivity_layout_from_header

    lay = connectivity_layout_from_header(meta)
    n = len(lay.rois)
    m = lay.measures.index(measure)
    b = [x[0] for x in lay.bands].index(band)
    block = m * len(lay.bands) + b
    iu = np.triu_indices(n, 1)
    out = np.full((n, n), np.nan)
    if lay.output == "all":
        vals = row[block * lay.n_pairs : (block + 1) * lay.n_pairs]
        out[iu] = vals
    else:
        k = lay.strongest_k
        seg = row[block * 2 * k : (block + 1) * 2 * k]
        pairs = seg[0::2].astype(np.int64)
        ok = (pairs >= 0) & (pairs < lay.n_pairs)
        out[iu[0][pairs[ok]], iu[1][pairs[ok]]] = seg[1::2][ok]
    # imaginary coherence is antisymmetric (positive: the row's ROI leads); the others symmetric
    out[(iu[1], iu[0])] = -out[iu] if measure == "imcoh" else out[iu]
    return out


def _panel_class():
    import pyqtgraph as pg
    from pyqtgraph.Qt import QtCore, QtWidgets

    class EventsPanel(QtWidgets.QWidget):
        """Running average (left) and connectivity matrix (right), refreshed by a timer."""

        def __init__(self, streams: EventStreams, *, interval_ms: int = 200, parent=None):
            super().__init__(parent)
            self.streams = streams
            lay = QtWidgets.QHBoxLayout(self)
            left = QtWidgets.QVBoxLayout()
            self.event_box = QtWidgets.QComboBox()
            left.addWidget(self.event_box)
            self.evoked_plot = pg.PlotWidget()
            self.evoked_plot.setLabel("bottom", "time after the marker", units="s")
            self.evoked_plot.addLegend(offset=(5, 5))
            self.evoked_plot.setTitle("waiting for the evoked stream")
            left.addWidget(self.evoked_plot)
            right = QtWidgets.QVBoxLayout()
            self.measure_box = QtWidgets.QComboBox()
            right.addWidget(self.measure_box)
            self.matrix_plot = pg.PlotWidget()
            self.matrix_plot.setAspectLocked(True)
            self.matrix_plot.invertY(True)
            self.image = pg.ImageItem()
            self.matrix_plot.addItem(self.image)
            self.colour_bar = pg.ColorBarItem(values=(0, 1), colorMap=pg.colormap.get("viridis"), interactive=False)
            self.colour_bar.setImageItem(self.image, insert_in=self.matrix_plot.getPlotItem())
            self.matrix_plot.setTitle("waiting for the connectivity stream")
            right.addWidget(self.matrix_plot)
            self.edges = QtWidgets.QLabel("")
            self.edges.setStyleSheet("font-family: monospace;")
            self.edges.setWordWrap(True)
            right.addWidget(self.edges)
            lay.addLayout(left, 1)
            lay.addLayout(right, 1)
            self.curves: list = []
            self.updates = 0
            self.timer = QtCore.QTimer(self)
            self.timer.timeout.connect(self.refresh)
            self.timer.start(interval_ms)

        def refresh(self) -> None:
            meta, evoked, conn, received = self.streams.snapshot()
            if "evoked" in meta and evoked:
                self._refresh_evoked(meta["evoked"], evoked)
            if "connectivity" in meta and conn is not None:
                self._refresh_matrix(meta["connectivity"], conn)

        def _refresh_evoked(self, meta: dict, evoked: dict) -> None:
            names = meta.get("events", "").split(",")
            channels = meta.get("channels", "").split(",")
            n_t = int(meta.get("n_times", "0") or 0)
            if self.event_box.count() != len(names):
                self.event_box.clear()
                self.event_box.addItems(names)
            code = self.event_box.currentIndex() + 1
            row = evoked.get(code)
            if row is None or n_t == 0:
                return
            avg = row[2:].reshape(n_t, len(channels))
            times = float(meta.get("tmin_s", "0")) + np.arange(n_t) / float(meta.get("sfreq", "1"))
            # the channels that respond most: post-marker peak over the baseline's noise
            pre, post = times < 0, times >= 0
            noise = np.nanstd(avg[pre], axis=0) if pre.sum() > 2 else np.ones(avg.shape[1])
            score = np.nanmax(np.abs(avg[post]), axis=0) / np.maximum(noise, 1e-30) if post.any() else np.zeros(avg.shape[1])
            order = np.argsort(-np.nan_to_num(score, nan=-1.0))[:MAX_CURVES]
            if len(self.curves) != len(order):
                self.evoked_plot.clear()
                self.evoked_plot.addLegend(offset=(5, 5))
                self.curves = [self.evoked_plot.plot(pen=pg.intColor(i, len(order))) for i in range(len(order))]
            for curve, j in zip(self.curves, order):
                curve.setData(times, avg[:, j])
                curve.opts["name"] = channels[j]
            legend = self.evoked_plot.getPlotItem().legend
            legend.clear()
            for curve, j in zip(self.curves, order):
                legend.addItem(curve, channels[j])
            unit = meta.get("unit", "")
            self.evoked_plot.setTitle(f"{names[code - 1]}: {meta.get('average', 'running')} average of {int(row[1])} epochs ({meta.get('space', 'roi')})")
            self.evoked_plot.setLabel("left", "average", units=unit if unit not in ("", "dimensionless") else None)
            self.updates += 1

        def _refresh_matrix(self, meta: dict, row: np.ndarray) -> None:
            measures = meta.get("measures", "").split(",")
            bands = [b.partition(":")[0] for b in meta.get("bands", "").split(",")]
            items = [f"{m} {b}" for m in measures for b in bands]
            if self.measure_box.count() != len(items):
                self.measure_box.clear()
                self.measure_box.addItems(items)
                if "imcoh" in measures:
                    self.measure_box.setCurrentIndex(measures.index("imcoh") * len(bands))
            measure, band = self.measure_box.currentText().split(" ")
            mat = connectivity_matrix(row, meta, measure, band)
            finite = mat[np.isfinite(mat)]
            if measure == "imcoh" or meta.get("zscore") == "true":
                top = float(np.abs(finite).max()) if finite.size else 1.0
                lo, hi = -top, top
                self.colour_bar.setColorMap(pg.colormap.get("CET-D1"))
            else:
                lo, hi = 0.0, max(float(finite.max()) if finite.size else 1.0, 1e-6)
                self.colour_bar.setColorMap(pg.colormap.get("viridis"))
            self.image.setImage(np.nan_to_num(mat, nan=0.5 * (lo + hi) if lo < 0 else lo).T, autoLevels=False)
            self.colour_bar.setLevels((lo, hi))
            rois = meta.get("rois", "").split(",")
            what = f"strongest {meta.get('strongest_k')} edges" if meta.get("output") == "strongest" else f"{len(rois)} ROIs"
            self.matrix_plot.setTitle(f"{measure} {band}: {what}, {meta.get('window_s', '?')} s windows, mean of ~{1 / SMOOTHING:.0f} rows")
            iu = np.triu_indices(len(rois), 1)
            upper = mat[iu]
            ok = np.flatnonzero(np.isfinite(upper))
            best = ok[np.argsort(-np.abs(upper[ok]))[:EDGES_LISTED]]
            self.edges.setText("strongest: " + "   ".join(f"{rois[iu[0][p]]}~{rois[iu[1][p]]} {upper[p]:+.2f}" for p in best))
            if len(rois) <= 12:
                ticks = [(i + 0.5, r) for i, r in enumerate(rois)]
                self.matrix_plot.getAxis("left").setTicks([ticks])
                self.matrix_plot.getAxis("bottom").setTicks([ticks])
            self.updates += 1

    return EventsPanel


def run_events_view(output_name: str, *, screenshot: str | None = None, seconds: float = 0.0, size: tuple[int, int] = (1200, 520)) -> int:
    """Open the events window; with ``screenshot`` save a PNG after ``seconds`` (0: once both views drew) and exit."""
    from .app import make_app

    app = make_app()
    from pyqtgraph.Qt import QtCore

    streams = EventStreams(output_name).start()
    panel = _panel_class()(streams)
    panel.setWindowTitle(f"rtsource view --events: {output_name}")
    panel.resize(*size)
    panel.show()
    started = time.monotonic()

    def check():
        done = seconds and time.monotonic() - started >= seconds
        # with a duration the screenshot is taken at its end (more epochs averaged), else once both views drew
        ready = not seconds and panel.updates >= 4 and streams.connectivity is not None and streams.evoked
        if screenshot and (done or ready):
            panel.refresh()
            panel.grab().save(screenshot)
            app.quit()
        elif done:
            app.quit()

    timer = QtCore.QTimer()
    timer.timeout.connect(check)
    timer.start(250)
    try:
        app.exec()
    finally:
        streams.close()
    return 0
