"""The health panel: is the loop keeping up, and what is it running?

It reads the loop's telemetry stream (rates, counters, processing time and latency
percentiles; :data:`~rtsource.stream.outputs.TELEMETRY_CHANNELS`), the events stream (bad
channels, the last event) and the source stream's metadata (method, bundle, source space).
:func:`health_rows` computes the rows without Qt; :class:`HealthPanel` shows them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pyqtgraph.Qt import QtCore, QtWidgets

from .cortex_geometry import CortexGeometry
from .readers import ReaderStatus
from .streams import telemetry_values

#: Telemetry older than this (seconds) is reported as stale (it is published at 2 Hz).
STALE_S = 3.0

_COLOURS = {"ok": "#8fd18f", "warn": "#e0a040", "bad": "#ff6060", "info": "#c8c8c8"}


@dataclass(frozen=True)
class HealthRow:
    """One line of the panel: ``level`` is "ok", "info", "warn" or "bad"."""

    label: str
    value: str
    level: str = "info"


def _fmt(v: float | None, unit: str = "", digits: int = 3) -> str:
    if v is None or not np.isfinite(v):
        return "-"
    return f"{v:.{digits}g}{(' ' + unit) if unit else ''}"


def _count(v: float | None) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{int(round(v)):,}"


def health_rows(sources: ReaderStatus, telemetry: ReaderStatus, events: ReaderStatus, *, received_hz: float | None = None,
                now: float | None = None) -> list[HealthRow]:
    """The panel's rows from the readers' statuses.

    Parameters
    ----------
    sources, telemetry, events : ReaderStatus
        Statuses of the source, telemetry and events readers.
    received_hz : float, optional
        Source samples per second arriving at the viewer (measured by the window).
    now : float, optional
        ``time.monotonic()`` (for staleness; tests pass their own).
    """
    now = time.monotonic() if now is None else now
    rows: list[HealthRow] = []
    lay = sources.layout
    if sources.state == "connected" and lay is not None:
        rate = f"{lay.sfreq:g} Hz" if lay.sfreq else "irregular"
        rows.append(HealthRow("sources", f"{lay.name}: {lay.n_channels:,} channels at {rate}", "ok"))
    else:
        rows.append(HealthRow("sources", sources.message or "waiting for stream", "warn"))
    meta = lay.meta if lay is not None else {}
    rows.append(HealthRow("method", meta.get("method", "-") + (f" ({meta['output_unit']})" if meta.get("output_unit") else "")))
    bundle = meta.get("bundle", "")
    rows.append(HealthRow("bundle", Path(bundle).name if bundle else "-"))
    geometry = sources.extra if isinstance(sources.extra, CortexGeometry) else None
    space = meta.get("source_space", "-")
    if geometry is not None:
        space += f" on {geometry.origin} ({geometry.n_vertices:,} vertices)"
    elif sources.state == "connected" and sources.message:
        rows.append(HealthRow("mesh", sources.message, "bad"))
    rows.append(HealthRow("source space", space))
    if meta.get("input_stream"):
        rows.append(HealthRow("input stream", meta["input_stream"]))

    tele = telemetry_values(telemetry) if telemetry.state == "connected" else {}
    ring = telemetry.ring
    stale = ring is not None and ring.count and now - ring.last_write > STALE_S
    if telemetry.state != "connected":
        rows.append(HealthRow("telemetry", telemetry.message or "waiting for the telemetry stream", "warn"))
    elif not tele:
        rows.append(HealthRow("telemetry", "connected, no sample yet", "info"))
    elif stale:
        rows.append(HealthRow("telemetry", f"stale: nothing for {now - ring.last_write:.0f} s", "warn"))
    if tele.get("waiting", 0) >= 0.5:
        rows.append(HealthRow("loop", "waiting for its input stream", "warn"))

    def get(key):
        return tele.get(key)

    rows.append(HealthRow("input rate", _fmt(get("input_rate_hz"), "Hz", 4)))
    out_rate = _fmt(get("output_rate_hz"), "Hz", 4)
    if received_hz is not None:
        out_rate += f"  (viewer receives {received_hz:.4g} Hz)"
    rows.append(HealthRow("output rate", out_rate))
    lost = get("lost")
    rows.append(HealthRow("samples in / out", f"{_count(get('samples_in'))} / {_count(get('samples_out'))}"))
    rows.append(HealthRow("samples lost", _count(lost), "info" if lost is None else ("ok" if lost == 0 else "bad")))
    gaps = get("gaps")
    gap_s = get("gap_seconds")
    rows.append(HealthRow("gaps", f"{_count(gaps)}" + (f" ({gap_s:.3g} s)" if gaps and gap_s else ""),
                          "info" if gaps is None else ("ok" if gaps == 0 else "warn")))
    rows.append(HealthRow("chunk processing p50 / p99", f"{_fmt(get('process_ms_p50'))} / {_fmt(get('process_ms_p99'), 'ms')}"))
    rows.append(HealthRow("latency p50 / p99", f"{_fmt(get('latency_ms_p50'))} / {_fmt(get('latency_ms_p99'), 'ms')}"))
    backlog = get("backlog")
    if backlog is not None:
        rows.append(HealthRow("backlog", f"{_count(backlog)} samples", "ok" if backlog < 1000 else "warn"))
    skipped = get("skipped")
    if skipped:
        rows.append(HealthRow("skipped (latest-only)", _count(skipped), "warn"))

    repair = artifact_row(tele)
    if repair is not None:
        rows.append(repair)
    recal = recalibration_row(events.events.recalibration() if events.events is not None else None)
    if recal is not None:
        rows.append(recal)
    bad = events.events.bad_channels() if events.events is not None else {}
    n_bad = get("bad_channels")
    if bad:
        names = ", ".join(sorted(bad))
        rows.append(HealthRow("bad channels", f"{len(bad)}: {names}", "warn"))
    elif n_bad:
        rows.append(HealthRow("bad channels", f"{_count(n_bad)} (names on the events stream)", "warn"))
    else:
        rows.append(HealthRow("bad channels", "none" if (tele or events.state == "connected") else "-", "ok" if tele or events.state == "connected" else "info"))
    ready, swaps = get("hot_swap_ready"), get("operator_swaps")
    if ready is not None:
        text = "ready" if ready >= 0.5 else "not ready (warming up, or the bundle caches no lead field)"
        if swaps:
            text += f"; {_count(swaps)} swap(s), last live {_fmt(get('last_swap_ms'), 'ms')} after the request"
        rows.append(HealthRow("hot swap", text, "ok" if ready >= 0.5 else "info"))
    head = get("head_displacement_mm")
    if head is not None and np.isfinite(head):  # cHPI head tracking runs (MEG)
        rows.append(HealthRow("head position", f"{head:.1f} mm from the reference pose", "ok" if head < 5.0 else "warn"))
    if events.events is not None:
        recent = events.events.recent(1)
        if recent:
            ev = recent[-1]
            detail = ", ".join(f"{k}={v}" for k, v in ev.items() if k not in ("event", "time"))
            rows.append(HealthRow("last event", ev.get("event", "?") + (f" ({detail})" if detail else "")))
    return rows


def artifact_row(tele: dict) -> HealthRow | None:
    """The artifact correction's line (None when the loop runs none): what ASR repaired,
    its look-ahead (part of the latency) and its cost per chunk."""
    delay, p50 = tele.get("artifact_delay_ms"), tele.get("artifact_ms_p50")
    if not delay and not p50:
        return None
    repaired, channels, episodes = tele.get("artifact_repaired", 0.0), tele.get("artifact_channels", 0.0), tele.get("artifact_episodes", 0.0)
    text = (
        f"{repaired:.1%} of samples repaired ({channels:.0%} of channels in them), {_count(episodes)} episode(s); "
        f"look-ahead {_fmt(delay, 'ms')}; {_fmt(p50)} / {_fmt(tele.get('artifact_ms_p99'), 'ms')} per chunk"
    )
    return HealthRow("artifact repair", text, "warn" if repaired > 0.3 else "ok")


def recalibration_row(event: dict | None) -> HealthRow | None:
    """The live artifact recalibration's line from its last ``artifact_calibration`` event
    (None before any): recording, ready, live (what was refitted, how long the swap took),
    failed or reverted (why; the calibration in use stays)."""
    if not event:
        return None
    state = str(event.get("state", "?"))
    methods = ", ".join(str(m) for m in event.get("methods", []) if isinstance(m, str)) or "artifact correction"
    if state == "recording":
        return HealthRow("artifact recalibration", f"recording {_fmt(event.get('seconds'), 's')} for {methods}", "info")
    if state == "ready":
        return HealthRow("artifact recalibration", f"{methods} refitted in {_fmt(event.get('fit_ms'), 'ms')}; swapping in", "info")
    if state == "live":
        return HealthRow("artifact recalibration", f"{methods} live {_fmt(event.get('swap_ms'), 'ms')} after the recording", "ok")
    return HealthRow("artifact recalibration", f"{state}: {str(event.get('error', ''))[:160]}", "warn")


class HealthPanel(QtWidgets.QFrame):
    """The rows of :func:`health_rows` as a two-column grid of labels."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setFrameShape(QtWidgets.QFrame.Shape.StyledPanel)
        self._grid = QtWidgets.QGridLayout(self)
        self._grid.setContentsMargins(8, 6, 8, 6)
        self._grid.setHorizontalSpacing(12)
        self._grid.setVerticalSpacing(2)
        self._grid.setColumnStretch(1, 1)
        title = QtWidgets.QLabel("loop health")
        title.setStyleSheet("font-weight: bold;")
        self._grid.addWidget(title, 0, 0, 1, 2)
        self._labels: list[tuple[QtWidgets.QLabel, QtWidgets.QLabel]] = []
        self.rows: list[HealthRow] = []

    def set_rows(self, rows: list[HealthRow]) -> None:
        """Show ``rows`` (label widgets are reused; only changed texts are set)."""
        self.rows = rows
        while len(self._labels) < len(rows):
            i = len(self._labels) + 1
            name, value = QtWidgets.QLabel(), QtWidgets.QLabel()
            name.setStyleSheet("color: #9a9a9a;")
            value.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
            value.setWordWrap(True)
            self._grid.addWidget(name, i, 0, QtCore.Qt.AlignmentFlag.AlignTop)
            self._grid.addWidget(value, i, 1)
            self._labels.append((name, value))
        for (name, value), row in zip(self._labels, rows):
            if name.text() != row.label:
                name.setText(row.label)
            if value.text() != row.value:
                value.setText(row.value)
            style = f"color: {_COLOURS.get(row.level, _COLOURS['info'])};"
            if value.styleSheet() != style:
                value.setStyleSheet(style)
            name.setVisible(True)
            value.setVisible(True)
        for name, value in self._labels[len(rows):]:
            name.setVisible(False)
            value.setVisible(False)

    def text(self) -> str:
        """The panel as plain text (for logs and tests)."""
        return "\n".join(f"{r.label}: {r.value}" for r in self.rows)
