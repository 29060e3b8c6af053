"""Marker input, epochs / evoked averages and ROI connectivity in the loop (``[events]``,
``[epochs]``, ``[connectivity]``).

    LSL marker stream ─> MarkerInput (background resolve, reconnect, hostile values counted)
        ─> (event, time on the input stream's clock) ─┐
    ROI chunk (or per-source chunk) + timestamps ─────┴> EpochEngine ─> NAME-epochs, NAME-evoked
    ROI chunk (the configured ROIs) ─> ConnectivityStage ─> [z-score] ─> [strongest K] ─> NAME-connectivity

:class:`EventStage` is run by :class:`rtsource.stream.features.Features` after the ROI stage,
chunk by chunk in the loop's thread. An epoch is published as soon as its window has closed
(the chunk holding its last sample, or the marker if it comes later); connectivity rows as
soon as their window is complete, at the step rate.

Clocks: the data timestamps are the producer's; a marker's time gets the marker host's LSL
clock offset added (:class:`~rtsource.stream.markers.MarkerReader`) and the input stream's
subtracted (``LoopServices.time_correction``), so marker and data times compare on the
input stream's clock, and the published epochs carry that clock like every other output.

Nothing a marker stream sends can stop the loop or lose a data sample: values that are too
long, non-finite or unmapped are counted (``MarkerReader.counts``); markers whose window has
left the buffer (``too_old``), more than ``buffer_s`` ahead of the newest data (``future``),
repeated, or beyond the pending limit are counted by reason and reported on ``NAME-events``
(``marker_dropped``, at most once per reason and second); at most 256 markers are read per
chunk (a flood waits in LSL's queue). A marker stream that vanishes is reported
(``marker_stream`` lost/back) and looked for again every ``retry_s``.

Artifact flags: :meth:`EventStage.process` takes per-sample ``flags`` (uint8, non-zero =
artifact) from the artifact stage; with ``[epochs] reject_flagged`` an epoch containing a
flagged sample is rejected (counted), and connectivity leaves flagged samples out.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import ConfigError
from .connectivity import ConnectivitySpec
from .epochs import EpochSpec
from .inlet import StreamSelector
from .markers import MarkerMap

logger = logging.getLogger(__name__)

#: Most values one epoch sample may carry (n_times x channels): a per-source epoch of a dense
#: source space would be tens of MB per sample.
MAX_EPOCH_VALUES = 2_000_000
#: Most markers read per chunk; a flood waits in LSL's queue (max_buflen) instead of stalling a chunk.
MARKERS_PER_CHUNK = 256


@dataclass(frozen=True)
class MarkerOptions:
    """The marker stream to read and what its values mean."""

    selector: StreamSelector
    markers: MarkerMap
    retry_s: float = 2.0


@dataclass(frozen=True)
class EpochOptions:
    """Epochs: what to cut, on which output, which average to publish."""

    spec: EpochSpec
    space: str = "roi"  # "roi" or "sources"
    average: str = "running"  # or "ewma"
    publish_data: bool = True


@dataclass(frozen=True)
class ConnectivityOptions:
    """Connectivity: the stage's spec, the ROIs it pairs, and how rows are published."""

    spec: ConnectivitySpec
    rois: tuple[str, ...] = ()  # empty: all ROIs
    output: str = "all"  # or "strongest"
    strongest_k: int = 20
    baseline_s: float = 30.0  # z-score baseline from the stream when no calibration is given


@dataclass(frozen=True)
class EventOptions:
    """Marker input, epochs and connectivity of one loop (any may be None)."""

    markers: MarkerOptions | None = None
    epochs: EpochOptions | None = None
    connectivity: ConnectivityOptions | None = None


class MarkerInput:
    """An LSL marker stream found and (re)opened in the background; :meth:`pull` never blocks.

    ``state`` is ``searching`` until the stream is found, then ``connected``; ``lost`` when a
    background check no longer sees it (LSL reconnects to the same source_id on its own);
    :meth:`changes` returns ``(state, name, source_id)`` transitions since the last call.
    """

    def __init__(self, options: MarkerOptions):
        self.options = options
        self.state = "searching"
        self._reader = None
        self._info = None
        self._lock = threading.Lock()
        self._changes: list[tuple[str, str, str]] = []
        self.counts = collections.Counter(dict.fromkeys(("found", "lost", "back", "read_errors"), 0))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="rtsource-marker-input", daemon=True)
        self._thread.start()

    def _note(self, state: str) -> None:
        with self._lock:
            self.state = state
            self.counts[state] += 1
            info = self._info
            self._changes.append((state, info.name() if info is not None else "", info.source_id() if info is not None else ""))

    def _watch(self) -> None:
        import pylsl

        from .markers import MarkerReader

        pred = self.options.selector.predicate()
        missing = 0
        while not self._stop.is_set():
            try:
                if self._reader is None:
                    found = pylsl.resolve_bypred(pred, 1, min(1.0, self.options.retry_s))
                    if found and not self._stop.is_set():
                        reader = MarkerReader(found[0], self.options.markers, max_per_pull=MARKERS_PER_CHUNK, open_timeout=5.0)
                        self._info = found[0]
                        self._reader = reader
                        self._note("found")
                        logger.info("marker stream %r (%s) found", found[0].name(), found[0].source_id())
                else:  # is it still there? (LSL recovers a vanished inlet silently)
                    uid = self._info.uid()
                    seen = pylsl.resolve_bypred(f"uid='{uid}'" if "'" not in uid else pred, 1, min(1.0, self.options.retry_s))
                    if not seen and self._info.source_id():
                        seen = pylsl.resolve_bypred(f"source_id='{self._info.source_id()}'", 1, 0.2) if "'" not in self._info.source_id() else []
                    if seen:
                        missing = 0
                        if self.state == "lost":
                            self._note("back")
                            self.state = "connected"
                    else:
                        missing += 1
                        if missing == 2 and self.state != "lost":
                            self._note("lost")
                            logger.warning("marker stream %r is gone; looking for it every %g s", self._info.name(), self.options.retry_s)
                if self.state == "found":
                    self.state = "connected"
            except Exception as exc:  # noqa: BLE001 - the watcher must outlive any LSL trouble
                self.counts["read_errors"] += 1
                logger.warning("marker stream watcher: %s", exc)
            self._stop.wait(self.options.retry_s)

    def pull(self) -> list[tuple[str, float]]:
        """Markers received since the last call: ``(event, time on this host's LSL clock)``."""
        reader = self._reader
        if reader is None:
            return []
        try:
            return reader.pull(0.0)
        except Exception as exc:  # noqa: BLE001 - a stream without source_id cannot recover: look again
            self.counts["read_errors"] += 1
            logger.warning("marker stream %r failed (%s); looking for it again", reader.name, exc)
            self._reader = None
            self._note("lost")
            try:
                reader.close()
            except Exception:  # noqa: BLE001
                pass
            return []

    @property
    def reader_counts(self) -> dict:
        return dict(self._reader.counts) if self._reader is not None else {}

    def changes(self) -> list[tuple[str, str, str]]:
        with self._lock:
            out, self._changes = self._changes, []
        return out

    def close(self) -> None:
        self._stop.set()
        self._thread.join(3.0)
        if self._reader is not None:
            try:
                self._reader.close()
            except Exception:  # noqa: BLE001
                pass


class EventStage:
    """Epochs, evoked averages and connectivity for one loop (see the module docstring).

    Parameters
    ----------
    options : EventOptions
    roi_names : sequence of str
        Columns of the ROI chunks (empty when the loop has no ROIs).
    source_labels : sequence of str
        Columns of the per-source chunks (``[epochs] space = "sources"``).
    sfreq : float
        Input rate (Hz).
    max_chunk : int
    identity : OutputIdentity
        Names of the output streams.
    events : EventPublisher
        The loop's events stream (marker-stream changes, dropped markers).
    time_correction : callable
        The input stream's LSL clock offset (s), as the loop last measured it.
    unit : str
        Unit of the ROI / source values (for the headers).
    roi_calibration : ndarray, optional
        ROI time courses of the calibration (n_samples, n_roi) for connectivity z-scores.
    """

    def __init__(self, options: EventOptions, roi_names, source_labels, sfreq: float, max_chunk: int, identity, events,
                 time_correction: Callable[[], float] = lambda: 0.0, unit: str = "", roi_calibration: np.ndarray | None = None):  # fmt: skip
        from .outlets import open_event_outlet

        self.options = options
        self.sfreq = float(sfreq)
        self.events = events
        self.time_correction = time_correction
        self.counts = collections.Counter(dict.fromkeys(("future", "epochs_published", "evoked_published", "connectivity_rows"), 0))
        self._reported = collections.Counter()  # dropped markers already reported, per reason
        self._examples: dict[str, str] = {}
        self._next_report = 0.0
        self.newest_ts = -np.inf
        roi_names = tuple(roi_names)

        self.engine = None
        self.epoch_outlet = self.evoked_outlet = None
        eo = options.epochs
        if eo is not None:
            from .epochs import EpochEngine
            from .event_layout import EpochLayout

            if eo.space == "roi":
                if not roi_names:
                    raise ConfigError("[epochs] space = 'roi' needs ROIs: add [[roi]] entries, [rois] file or [rois] atlas, or use space = 'sources'")
                channels = roi_names
            else:
                channels = tuple(source_labels)
            self.space = eo.space
            self.engine = EpochEngine(eo.spec, channels, sfreq, max_chunk)
            st = next(iter(self.engine._events.values()))
            if len({(s.offset, s.n_times) for s in self.engine._events.values()}) != 1:
                raise ConfigError("[epochs]: every event must share one window (tmin, tmax) for the published layout")
            self.layout = EpochLayout(tuple(self.engine._events), channels, st.offset / self.sfreq, self.sfreq, st.n_times,
                                      self.engine.feature_labels(), eo.publish_data, unit, eo.space)  # fmt: skip
            for what, n in (("NAME-epochs", self.layout.n_epoch_channels if eo.publish_data else 0), ("NAME-evoked", self.layout.n_evoked_channels)):
                if n > MAX_EPOCH_VALUES:
                    raise ConfigError(
                        f"[epochs]: one {what} sample would carry {n:,} values ({self.layout.n_times} samples x {len(channels)} channels); "
                        f"the limit is {MAX_EPOCH_VALUES:,}: use space = 'roi', a shorter window, or data = false"
                    )
            self._event_code = {name: float(i + 1) for i, name in enumerate(self.layout.events)}
            self._avg = {e: [np.zeros((st.n_times, len(channels))), np.zeros((st.n_times, len(channels))), 0.0] for e in self.layout.events}
            self._epoch_vec = np.zeros(self.layout.n_epoch_channels, np.float32)
            self._evoked_vec = np.zeros(self.layout.n_evoked_channels, np.float32)
            self._epoch_row, self._evoked_row = self._epoch_vec[None, :], self._evoked_vec[None, :]  # (1, n) views
            self.epoch_outlet = open_event_outlet("epochs", self.layout, identity)
            self.evoked_outlet = open_event_outlet("evoked", self.layout, identity, average=eo.average)
        self.markers = MarkerInput(options.markers) if options.markers is not None else None

        self.connectivity = None
        self.connectivity_outlet = None
        co = options.connectivity
        if co is not None:
            from .connectivity import ConnectivityStage
            from .event_layout import ConnectivityLayout

            rois = co.rois or roi_names
            missing = [r for r in rois if r not in roi_names]
            if missing:
                raise ConfigError(f"[connectivity] rois {missing} are not among the loop's ROIs ({', '.join(roi_names[:8])}{', ...' if len(roi_names) > 8 else ''})")
            self._conn_cols = np.array([roi_names.index(r) for r in rois], dtype=np.int64)
            self._conn_all = len(rois) == len(roi_names) and np.array_equal(self._conn_cols, np.arange(len(roi_names)))
            self._conn_in = np.zeros((max_chunk, len(rois)))
            self.connectivity = ConnectivityStage(co.spec, rois, sfreq, max_chunk)
            n_blocks = len(co.spec.measures) * len(co.spec.bands)
            k = min(co.strongest_k, self.connectivity.n_pairs)
            self.conn_layout = ConnectivityLayout(tuple(rois), co.spec.measures, tuple((b.name, b.low_hz, b.high_hz) for b in co.spec.bands),
                                                  self.connectivity.rate_hz, co.spec.window_s, co.output, k if co.output == "strongest" else 0, co.spec.zscore)  # fmt: skip
            self._k = k
            self._n_blocks = n_blocks
            self._top = np.zeros((self.connectivity.max_rows, self.conn_layout.n_channels), np.float32)
            self._score = np.zeros(self.connectivity.n_pairs)
            # z-scores: against the calibration if there is one, else the stream's first baseline_s
            self._baseline_rows = 0
            if co.spec.zscore:
                if roi_calibration is not None:
                    self.connectivity.calibrate(np.asarray(roi_calibration)[:, self._conn_cols])
                else:
                    self._baseline_rows = max(10, int(np.ceil(co.baseline_s * self.connectivity.rate_hz)))
                    self._b_sum = np.zeros(self.connectivity.n_out)
                    self._b_sq = np.zeros(self.connectivity.n_out)
                    self._b_n = 0
            self.connectivity_outlet = open_event_outlet("connectivity", self.conn_layout, identity)

    # ---- per chunk ----------------------------------------------------------------------
    def process(self, roi: np.ndarray | None, sources: np.ndarray | None, ts: np.ndarray, n: int, flags: np.ndarray | None = None) -> None:
        """One chunk: read markers, cut and publish epochs, publish connectivity rows.

        Parameters
        ----------
        roi : ndarray, shape (>= n, n_roi), or None
        sources : ndarray, shape (>= n, n_sources), or None
        ts : ndarray, shape (>= n,)
            Timestamps of the chunk (input stream's clock, s).
        n : int
        flags : ndarray of uint8, shape (>= n,), optional
            The artifact stage's per-sample flags (non-zero: artifact).
        """
        self.newest_ts = float(ts[n - 1])
        if self.engine is not None:
            x = roi if self.space == "roi" else sources
            done = self.engine.push_data(x, ts, n, flags=flags)
            if self.markers is not None:
                done += self._read_markers()
            for ep in done:
                self._publish_epoch(ep)
        elif self.markers is not None:
            self._read_markers()
        if self.connectivity is not None:
            self._connectivity(roi, ts, n, flags)
        self._report()

    def _read_markers(self) -> list:
        for state, name, sid in self.markers.changes():
            self.events.publish("marker_stream", _now(), state=state, name=name, source_id=sid)
        got = self.markers.pull()
        if not got:
            return []
        data_offset = self.time_correction()  # the marker host's offset is already added
        out = []
        limit = self.newest_ts + self.options.epochs.spec.buffer_s if self.engine is not None else np.inf
        for name, t in got:
            t = t - data_offset  # on the input stream's clock
            if self.engine is None:
                continue
            if t > limit:
                self.counts["future"] += 1
                self._examples["future"] = f"{name} at {t:.3f} (newest data {self.newest_ts:.3f})"
                continue
            out += self.engine.push_marker(name, t)
        return out

    def _publish_epoch(self, ep) -> None:
        lay = self.layout
        v = self._epoch_vec
        v[0] = self._event_code[ep.event]
        v[1] = ep.index
        i = 2
        if lay.data:
            v[i : i + lay.n_data] = ep.data.reshape(-1)
            i += lay.n_data
        if ep.features.size:
            v[i:] = ep.features.reshape(-1)
        # push_chunk hands the buffer to liblsl as it is; push_sample would build 68k Python
        # floats for a 68-ROI epoch (20 ms instead of 0.13 ms per sample, and garbage)
        self.epoch_outlet.push_chunk(self._epoch_row, [ep.marker_time])
        self.counts["epochs_published"] += 1
        # the averages as of this epoch (the engine's may already hold later epochs of the same chunk)
        acc = self._avg[ep.event]
        acc_sum, acc_ew, w_ew = acc
        acc_sum += ep.data
        alpha = self.options.epochs.spec.ewma_alpha
        acc_ew *= 1.0 - alpha
        acc_ew += alpha * ep.data
        acc[2] = w_ew = (1.0 - alpha) * w_ew + alpha
        w = self._evoked_vec
        w[0] = self._event_code[ep.event]
        w[1] = ep.index + 1
        if self.options.epochs.average == "running":
            np.divide(acc_sum.reshape(-1), ep.index + 1, out=w[2:], casting="unsafe")
        else:
            np.divide(acc_ew.reshape(-1), w_ew, out=w[2:], casting="unsafe")
        self.evoked_outlet.push_chunk(self._evoked_row, [ep.marker_time])
        self.counts["evoked_published"] += 1

    def _connectivity(self, roi: np.ndarray, ts: np.ndarray, n: int, flags) -> None:
        if self._conn_all:
            x = roi
        else:
            x = self._conn_in
            np.take(roi[:n], self._conn_cols, axis=1, out=x[:n])
        vals, stamps = self.connectivity.process(x, ts, n, flags)
        if not len(stamps):
            return
        if self._baseline_rows:
            self._collect_baseline(vals)
        if self.conn_layout.output == "strongest":
            vals = self._strongest(vals)
        self.connectivity_outlet.push_chunk(vals, stamps.tolist())
        self.counts["connectivity_rows"] += len(stamps)

    def _collect_baseline(self, vals: np.ndarray) -> None:
        """z-scoring without a calibration: the first complete rows are the baseline (published NaN)."""
        for i, row in enumerate(vals):
            if np.isfinite(row).all():
                r = row.astype(np.float64)
                self._b_sum += r
                self._b_sq += r * r
                self._b_n += 1
            row[:] = np.nan
            if self._b_n >= self._baseline_rows:
                mean = self._b_sum / self._b_n
                std = np.sqrt(np.maximum(self._b_sq / self._b_n - mean * mean, 0.0))
                self.connectivity.set_baseline(mean, np.maximum(std, 1e-12 * np.maximum(np.abs(mean), 1.0)))
                self._baseline_rows = 0
                # rows of this chunk after the baseline were computed raw: z-score them here
                rest = vals[i + 1 :]
                rest -= self.connectivity._mean.astype(np.float32)
                rest *= self.connectivity._inv_std.astype(np.float32)
                logger.info("connectivity: z-score baseline from the first %d rows", self._b_n)
                break

    def _strongest(self, vals: np.ndarray) -> np.ndarray:
        k, n_pairs = self._k, self.connectivity.n_pairs
        out = self._top[: len(vals)]
        for r, row in enumerate(vals):
            for b in range(self._n_blocks):
                block = row[b * n_pairs : (b + 1) * n_pairs]
                np.abs(block, out=self._score)
                self._score[~np.isfinite(self._score)] = -1.0
                idx = np.argpartition(-self._score, k - 1)[:k] if k < n_pairs else np.arange(n_pairs)
                idx = idx[np.argsort(-self._score[idx], kind="stable")]
                dst = out[r, b * 2 * k : (b + 1) * 2 * k]
                dst[0::2] = idx
                dst[1::2] = block[idx]
        return out

    def on_gap(self) -> None:
        """After a gap in the input the connectivity windows start over (epochs check gaps themselves)."""
        if self.connectivity is not None:
            self.connectivity.reset()

    # ---- reporting ----------------------------------------------------------------------
    def dropped(self) -> dict[str, int]:
        """Markers dropped so far, per reason (marker reader and epoch engine together)."""
        out = {}
        if self.markers is not None:
            rc = self.markers.reader_counts
            out.update({k: rc.get(k, 0) for k in ("malformed", "unknown")})
        if self.engine is not None:
            c = self.engine.counts
            out.update({k: c[k] for k in ("too_old", "duplicate", "overflow", "rejected_flag", "rejected_nonfinite", "rejected_gap")})
            out["unknown_event"] = c["unknown"]
        out["future"] = self.counts["future"]
        return out

    def _report(self) -> None:
        now = time.monotonic()
        if now < self._next_report:
            return
        self._next_report = now + 1.0
        for reason, count in self.dropped().items():
            new = count - self._reported[reason]
            if new > 0:
                self._reported[reason] = count
                fields = {"reason": reason, "count": new, "total": count}
                if reason in self._examples:
                    fields["example"] = self._examples[reason][:120]
                self.events.publish("marker_dropped", _now(), **fields)

    def summary(self) -> dict:
        """Counters for logs and tools: markers in, epochs out, drops by reason, connectivity rows."""
        out = dict(self.counts)
        if self.engine is not None:
            out.update({f"epochs_{k}": v for k, v in self.engine.counts.items()})
            out["epochs_pending"] = self.engine.pending
        if self.markers is not None:
            out.update({f"marker_{k}": v for k, v in self.markers.reader_counts.items()})
            out["marker_stream_state"] = self.markers.state
        return out

    def close(self) -> None:
        if self.markers is not None:
            self.markers.close()


def _now() -> float:
    import pylsl

    return pylsl.local_clock()
