"""One LSL stream followed in a background thread: :class:`StreamReader` and its :class:`ReaderStatus`.

The reader resolves its stream by name (and type), reads the layout from the stream's
metadata, then pulls chunks without blocking into a :class:`~.buffers.SampleRing` (or an
:class:`~.buffers.EventLog` for the events stream). When the stream goes away
(``LostError``) it says "waiting" and resolves again, preferring the ``source_id`` it had,
so a restarted loop is picked up with its possibly new layout.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import RtsourceError
from .buffers import EventLog, SampleRing
from .layout import StreamLayout, parse_stream_xml

logger = logging.getLogger(__name__)


def _lost_error_type():
    import pylsl

    for holder in (pylsl, getattr(pylsl, "util", None), getattr(pylsl, "pylsl", None)):
        err = getattr(holder, "LostError", None)
        if err is not None:
            return err
    return RuntimeError


def _sample_dtype(inlet) -> np.dtype:
    import pylsl

    dtype = getattr(inlet, "np_dtype", None)
    if dtype is not None:
        return np.dtype(dtype)
    formats = {pylsl.cf_float32: np.float32, pylsl.cf_double64: np.float64, pylsl.cf_int32: np.int32, pylsl.cf_int16: np.int16, pylsl.cf_int8: np.int8}
    return np.dtype(formats.get(inlet.info().channel_format(), np.float32))


@dataclass(frozen=True)
class ReaderStatus:
    """A snapshot of one reader, for the GUI.

    ``state`` is "waiting" (no stream yet, or it went away) or "connected"; ``generation``
    grows by one on every (re)connection, so a consumer rebuilds what depends on the layout.
    """

    state: str
    generation: int
    layout: StreamLayout | None = None
    ring: SampleRing | None = None
    events: EventLog | None = None
    extra: object = None  # e.g. the CortexGeometry of a source stream
    message: str = ""
    since: float = 0.0  # time.monotonic() of the last state change
    connections: int = 0
    losses: int = 0


class StreamReader:
    """Follow one LSL stream by name (and type) in a background thread.

    Parameters
    ----------
    name, type_ : str
        What to resolve (``type_`` "" accepts any type).
    buffer_seconds : float
        How much of the stream the ring buffer keeps.
    min_capacity : int
        Smallest ring buffer, in samples.
    prepare : callable, optional
        Called in the reader thread with the new :class:`StreamLayout` after each
        connection; its result becomes :attr:`ReaderStatus.extra` (an exception becomes
        the status message). Heavy work (loading a bundle) belongs here, off the GUI thread.
    resolve_timeout : float
        Seconds per resolve attempt (the thread checks for :meth:`close` in between).
    """

    def __init__(self, name: str, type_: str = "", *, buffer_seconds: float = 2.0, min_capacity: int = 64,
                 prepare: Callable[[StreamLayout], object] | None = None, resolve_timeout: float = 0.5):
        self.name = name
        self.type = type_
        self.buffer_seconds = float(buffer_seconds)
        self.min_capacity = int(min_capacity)
        self.prepare = prepare
        self.resolve_timeout = float(resolve_timeout)
        self._status = ReaderStatus("waiting", 0, message=f"waiting for stream {name!r}", since=time.monotonic())
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._source_id = ""
        self._warned_type = ""
        self._thread = threading.Thread(target=self._run, name=f"rtsource-view:{name}", daemon=True)

    # ---- control ----
    def start(self) -> "StreamReader":
        self._thread.start()
        return self

    def close(self, timeout: float = 3.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def status(self) -> ReaderStatus:
        with self._lock:
            return self._status

    def _set(self, **changes) -> None:
        import dataclasses

        with self._lock:
            if "state" in changes and changes["state"] != self._status.state:
                changes.setdefault("since", time.monotonic())
            self._status = dataclasses.replace(self._status, **changes)

    # ---- thread ----
    def _resolve(self):
        import pylsl

        found = pylsl.resolve_byprop("name", self.name, minimum=1, timeout=self.resolve_timeout)
        ok = [i for i in found if not self.type or i.type() == self.type]
        if found and not ok:
            types = ", ".join(sorted({i.type() for i in found}))
            if self._warned_type != types:
                self._warned_type = types
                logger.warning("stream %r has type %s, expected %r; ignoring it", self.name, types, self.type)
            self._set(message=f"stream {self.name!r} has type {types}, expected {self.type!r}")
        if not ok:
            return None
        # the one we had before (same source_id) first, then the newest
        ok.sort(key=lambda i: (i.source_id() != self._source_id, -i.created_at()))
        return ok[0]

    def _connect(self, info):
        import pylsl

        rate = info.nominal_srate()
        # seconds of buffering in liblsl (x100 samples for irregular streams): the display
        # wants the newest data, so a slow GUI drops old samples rather than lagging behind
        buflen = max(1, int(np.ceil(self.buffer_seconds))) if rate > 0 else 10
        inlet = pylsl.StreamInlet(info, max_buflen=buflen, recover=False)
        try:
            full = inlet.info(timeout=5.0)
            layout = parse_stream_xml(full.as_xml())
            extra, message = None, ""
            if self.prepare is not None:
                try:
                    extra = self.prepare(layout)
                except RtsourceError as exc:
                    message = str(exc)
                    logger.warning("stream %r: %s", self.name, exc)
                except Exception as exc:  # a bad header must not kill the reader
                    message = f"{type(exc).__name__}: {exc}"
                    logger.exception("stream %r: preparing the layout failed", self.name)
            inlet.open_stream(timeout=5.0)
        except Exception:
            inlet.close_stream()
            raise
        ring = events = None
        if full.channel_format() == pylsl.cf_string:
            events = EventLog()
        else:
            capacity = max(self.min_capacity, int(np.ceil(self.buffer_seconds * rate)) if rate > 0 else self.min_capacity)
            ring = SampleRing(capacity, layout.n_channels)
        self._source_id = layout.source_id
        status = self.status
        self._set(state="connected", generation=status.generation + 1, layout=layout, ring=ring, events=events,
                  extra=extra, message=message, connections=status.connections + 1)
        logger.info("connected to %r (%d channels, %g Hz, source_id %r)", layout.name, layout.n_channels, layout.sfreq, layout.source_id)
        return inlet, ring, events

    def _run(self) -> None:
        lost_error = _lost_error_type()
        inlet = ring = events = None
        scratch = None
        while not self._stop.is_set():
            if inlet is None:
                try:
                    info = self._resolve()
                    if info is None:
                        self._stop.wait(0.1)
                        continue
                    inlet, ring, events = self._connect(info)
                except Exception as exc:  # resolving/opening races with the producer going away
                    logger.info("stream %r: connection failed (%s); retrying", self.name, exc)
                    inlet = None
                    self._stop.wait(0.5)
                    continue
                # pulls land in a preallocated block in the stream's own sample type
                scratch = None if ring is None else np.zeros((min(ring.capacity, 256), ring.n_channels), _sample_dtype(inlet))
            try:
                if ring is not None:
                    # non-blocking pulls: works with every pylsl and returns at once on close()
                    data, ts = inlet.pull_chunk(timeout=0.0, max_samples=len(scratch), dest_obj=scratch, as_numpy=True)
                    n = len(ts)
                    if n:
                        ring.write(data[:n], np.asarray(ts))
                else:
                    samples, ts = inlet.pull_chunk(timeout=0.0, max_samples=64)
                    n = len(ts)
                    for sample in samples:
                        events.add(sample[0])
                if n == 0:
                    self._stop.wait(0.005)
            except lost_error:
                logger.info("stream %r went away; waiting for it to come back", self.name)
                self._drop(inlet)
                inlet = None
            except Exception:
                logger.exception("stream %r: reading failed; reconnecting", self.name)
                self._drop(inlet)
                inlet = None
                self._stop.wait(0.5)
        if inlet is not None:
            inlet.close_stream()

    def _drop(self, inlet) -> None:
        try:
            inlet.close_stream()
        except Exception:  # the connection is already gone
            pass
        status = self.status
        self._set(state="waiting", losses=status.losses + 1, message=f"waiting for stream {self.name!r} (it went away)")

