"""Finding rtsource's output streams on LSL and reading them for the display (no Qt here).

    OutputStreams(NAME) ─┬─ StreamReader NAME             (Sources)            -> SampleRing + CortexGeometry
                         ├─ StreamReader NAME-roi         (ROI)                -> SampleRing
                         ├─ StreamReader NAME-bandpower   (BandPower)          -> SampleRing
                         ├─ StreamReader NAME-telemetry   (rtsource.Telemetry) -> SampleRing
                         └─ StreamReader NAME-events      (Markers)            -> EventLog

Each reader is a daemon thread that resolves its stream by name (and type), reads the layout
from the stream's metadata (and, for the sources, the mesh from the bundle named there),
then pulls chunks without blocking into a ring buffer with a write index. When the stream
goes away (``LostError``) the reader says "waiting" and resolves again, preferring the
``source_id`` it had, so a restarted loop is picked up with its possibly new layout. The
GUI thread only ever copies the newest rows out under a short lock: it is never blocked by
LSL. Names and types come from :mod:`rtsource.stream.outputs` (the contract).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from ..arrays import frozen as _readonly
from ..errors import RtsourceError, StreamError
from ..stream import outputs

logger = logging.getLogger(__name__)

#: The template meshes the viewer can fall back to, by number of vertices.
_TEMPLATE_SIZES = {"ico4": 5124, "ico5": 20484}
MESH_CHOICES = ("auto", "bundle", "ico4", "ico5")


# ---- layouts read from stream metadata ----------------------------------------------------

@dataclass(frozen=True)
class StreamLayout:
    """What a consumer needs to know about one stream, read from its LSL header.

    Attributes
    ----------
    name, type, source_id, uid, hostname : str
        The stream's identity on LSL.
    sfreq : float
        Nominal rate in Hz (0 for irregular streams such as events).
    labels, units, channel_types : tuple of str
        One per channel (generated ``ch0``... labels where the header has none).
    positions_mm : ndarray, shape (n_channels, 3), or None
        ``location/X,Y,Z`` of every channel in mm (None unless every channel has one).
    hemisphere : tuple of str
        "lh", "rh" or "" per channel (empty tuple if not given).
    meta : Mapping[str, str]
        The flat ``desc/rtsource`` block (method, bundle, output_name, source_frame, ...).
    """

    name: str
    type: str
    source_id: str
    sfreq: float
    labels: tuple[str, ...]
    units: tuple[str, ...] = ()
    channel_types: tuple[str, ...] = ()
    positions_mm: np.ndarray | None = None
    hemisphere: tuple[str, ...] = ()
    meta: Mapping[str, str] = field(default_factory=dict)
    uid: str = ""
    hostname: str = ""

    @property
    def n_channels(self) -> int:
        return len(self.labels)

    @property
    def bundle_path(self) -> str:
        return self.meta.get("bundle", "")

    @property
    def method(self) -> str:
        return self.meta.get("method", "")

    @property
    def unit(self) -> str:
        """The common unit of the channels ("" if none or mixed)."""
        units = set(self.units)
        return units.pop() if len(units) == 1 else ""


def _text(node, path: str, default: str = "") -> str:
    child = node.find(path)
    return default if child is None or child.text is None else child.text.strip()


def parse_stream_xml(xml: str) -> StreamLayout:
    """Read a :class:`StreamLayout` from a full LSL stream header (``StreamInfo.as_xml()``).

    Raises
    ------
    StreamError
        The header is not XML or its channel count is missing.
    """
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise StreamError(f"the stream header is not valid XML ({exc})") from None
    try:
        n = int(_text(root, "channel_count"))
    except ValueError:
        raise StreamError("the stream header has no channel_count") from None
    channels = root.findall("desc/channels/channel")
    labels, units, types, hemis, pos = [], [], [], [], []
    for i in range(n):
        ch = channels[i] if i < len(channels) else None
        labels.append(_text(ch, "label", f"ch{i}") if ch is not None else f"ch{i}")
        units.append(_text(ch, "unit") if ch is not None else "")
        types.append(_text(ch, "type") if ch is not None else "")
        hemis.append(_text(ch, "hemisphere") if ch is not None else "")
        loc = ch.find("location") if ch is not None else None
        if loc is not None:
            try:
                pos.append([float(_text(loc, a)) for a in "XYZ"])
            except ValueError:
                pass
    meta: dict[str, str] = {}
    block = root.find("desc/rtsource")
    if block is not None:
        for child in block:
            if len(child) == 0:
                meta[child.tag] = (child.text or "").strip()
    try:
        sfreq = float(_text(root, "nominal_srate", "0"))
    except ValueError:
        sfreq = 0.0
    return StreamLayout(
        name=_text(root, "name"),
        type=_text(root, "type"),
        source_id=_text(root, "source_id"),
        sfreq=sfreq,
        labels=tuple(labels),
        units=tuple(units),
        channel_types=tuple(types),
        positions_mm=_readonly(pos, float) if n and len(pos) == n else None,
        hemisphere=tuple(hemis) if any(hemis) else (),
        meta=meta,
        uid=_text(root, "uid"),
        hostname=_text(root, "hostname"),
    )


# ---- the cortex mesh behind a source stream -------------------------------------------------

@dataclass(frozen=True)
class CortexGeometry:
    """The surface the source values are painted on.

    Attributes
    ----------
    vertices_m : ndarray, shape (n_vertices, 3)
        Mesh vertices (or source points when ``faces`` is empty) in metres.
    faces : ndarray of int, shape (n_faces, 3)
        Triangles; empty for sources without a surface (volume grids): drawn as points.
    value_index : ndarray of int, shape (n_vertices,)
        For each vertex, the stream channel whose value it shows.
    missing : ndarray of int
        Vertices with no source nearby (painted as bare cortex).
    signed : bool or None
        True for signed outputs (fixed orientation), False for magnitudes (pooled),
        None when the metadata does not say.
    frame : str
        Coordinate frame of the vertices.
    origin : str
        Where the mesh came from, for the health panel ("bundle NAME", "template ico5", ...).
    cull_back_faces : bool
        The surface is closed and wound outward (counter-clockwise seen from outside), so the
        renderer may skip triangles facing away: half the rasterisation work.
    """

    vertices_m: np.ndarray
    faces: np.ndarray
    value_index: np.ndarray
    missing: np.ndarray
    signed: bool | None
    frame: str
    origin: str
    cull_back_faces: bool = False

    @property
    def n_vertices(self) -> int:
        return len(self.vertices_m)


def _outward(vertices_m: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, bool]:
    """``faces`` wound outward and whether that could be established.

    A surface can be culled when it is closed and consistently wound (every directed edge
    has its reverse in another triangle); its winding is outward when the enclosed signed
    volume is positive, otherwise the triangles are flipped.
    """
    faces = np.asarray(faces, dtype=np.int64)
    if not len(faces):
        return faces, False
    n = int(faces.max()) + 1
    a = faces.ravel()
    b = faces[:, [1, 2, 0]].ravel()
    directed = a * n + b
    if len(np.unique(directed)) != len(directed) or not np.all(np.isin(b * n + a, directed)):
        return faces, False
    v = np.asarray(vertices_m, dtype=float)
    volume = np.einsum("ij,ij->", v[faces[:, 0]], np.cross(v[faces[:, 1]], v[faces[:, 2]])) / 6.0
    if volume < 0:
        faces = faces[:, ::-1].copy()
    return faces, True


def _surface(vertices_m, faces, value_index, missing, signed, frame, origin) -> CortexGeometry:
    faces, closed = _outward(vertices_m, faces)
    return CortexGeometry(_readonly(vertices_m, float), _readonly(faces, np.int64), _readonly(value_index, np.int64),
                          _readonly(np.reshape(missing, -1), np.int64), signed, frame, origin, closed)


def _signed_from(layout: StreamLayout) -> bool | None:
    kinds = set(layout.channel_types)
    if kinds == {"source_pooled"}:
        return False
    if kinds == {"source"}:
        return True
    n_orient = layout.meta.get("n_orient", "")
    return {"3": False, "1": True}.get(n_orient)


def _map_nearest(mesh_vertices_m: np.ndarray, sources_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest source for every mesh vertex; vertices farther than a few source spacings are missing."""
    from scipy.spatial import cKDTree

    tree = cKDTree(sources_m)
    dist, index = tree.query(mesh_vertices_m)
    if len(sources_m) > 1:
        spacing = float(np.median(tree.query(sources_m, k=2)[0][:, 1]))
    else:
        spacing = 0.01
    # a vertex more than ~3 source spacings (at least 5 mm) from any source shows no value
    limit = max(3.0 * spacing, 5e-3)
    return index.astype(np.int64), np.flatnonzero(dist > limit)


def cortex_geometry(layout: StreamLayout, *, bundle_path: str | None = None, mesh: str = "auto") -> CortexGeometry:
    """Find the surface to paint a source stream on.

    Parameters
    ----------
    layout : StreamLayout
        The source stream's layout.
    bundle_path : str, optional
        Bundle to read the mesh from instead of the one named in the metadata.
    mesh : {"auto", "bundle", "ico4", "ico5"}
        "auto": the bundle's own triangulation when it has one, else the template surface
        matching the sources; "bundle": the bundle's, or an error; "ico4" / "ico5": the
        template surface of that density (values mapped to it by nearest source; ico4 is
        the cheaper one to draw).

    Returns
    -------
    CortexGeometry

    Raises
    ------
    StreamError
        Neither the bundle nor the metadata say where the sources are.
    """
    from ..geometry import Frame

    if mesh not in MESH_CHOICES:
        raise StreamError(f"mesh = {mesh!r} is not known; use one of {', '.join(MESH_CHOICES)}")
    n = layout.n_channels
    signed = _signed_from(layout)
    path = bundle_path or layout.bundle_path
    positions = None if layout.positions_mm is None else layout.positions_mm * 1e-3
    frame = layout.meta.get("source_frame", "")
    reasons = []
    if path:
        from ..bundle import load_bundle

        try:
            bundle = load_bundle(path)
        except RtsourceError as exc:
            reasons.append(str(exc))
            logger.warning("cannot use the bundle for the cortex mesh: %s", exc)
        else:
            if bundle.n_sources != n or tuple(bundle.source_labels()) != tuple(layout.labels):
                reasons.append(f"bundle {path!r} has {bundle.n_sources} sources, the stream {n} channels with other labels")
                logger.warning("bundle %r does not match stream %r (%d sources vs %d channels)", path, layout.name, bundle.n_sources, n)
            else:
                positions = np.asarray(bundle.sources.positions_m, dtype=float)
                frame = bundle.sources.frame.value
                if signed is None:
                    signed = bundle.n_orient == 1
                if mesh in ("auto", "bundle") and len(bundle.sources.triangles):
                    return _surface(positions, bundle.sources.triangles, np.arange(n), (), signed, frame, f"bundle {Path(path).name}")
                if mesh == "bundle":
                    raise StreamError(f"bundle {path!r} has no triangulation of its sources; use --mesh auto")
    elif mesh == "bundle":
        raise StreamError(f"stream {layout.name!r} names no bundle; pass --bundle PATH or use --mesh auto")
    if mesh == "bundle":
        raise StreamError(f"cannot read the mesh from the bundle: {'; '.join(reasons)}")

    on_template = frame in ("", Frame.TEMPLATE.value)
    if on_template:
        from ..anatomy.template import template_source_space

        by_count = {v: k for k, v in _TEMPLATE_SIZES.items()}
        spacing = mesh if mesh in _TEMPLATE_SIZES else by_count.get(n, "ico5")
        space = template_source_space(spacing)
        same = n == space.n_sources and tuple(layout.labels) == space.labels()
        if same and positions is None:
            # the template's own order (labels lh_00000 ... rh_10241): no positions needed
            return _surface(space.positions_m, space.triangles, np.arange(n), (), signed, Frame.TEMPLATE.value, f"template {spacing}")
        if positions is not None:
            index, missing = _map_nearest(np.asarray(space.positions_m), positions)
            return _surface(space.positions_m, space.triangles, index, missing, signed, Frame.TEMPLATE.value, f"template {spacing}")
    if positions is not None:
        # sources in a subject's frame without a triangulation: draw them as points
        return CortexGeometry(_readonly(positions, float), _readonly(np.zeros((0, 3)), np.int64), _readonly(np.arange(n), np.int64),
                              _readonly(np.zeros(0), np.int64), signed, frame or "unknown", "source positions")
    why = f" ({'; '.join(reasons)})" if reasons else ""
    raise StreamError(
        f"stream {layout.name!r} has {n} channels without locations and no usable bundle{why}; "
        "pass the bundle with --bundle PATH"
    )


# ---- ring buffers -----------------------------------------------------------------------------

class SampleRing:
    """The newest samples of a stream with their timestamps, kept with a write index.

    One thread writes (:meth:`write`), others copy out (:meth:`mean_latest`, :meth:`ordered`,
    :meth:`latest`); a lock held only for the copies keeps rows whole.

    Parameters
    ----------
    capacity : int
        Samples kept.
    n_channels : int
    """

    def __init__(self, capacity: int, n_channels: int):
        self.capacity = int(max(capacity, 1))
        self.n_channels = int(n_channels)
        self._data = np.zeros((self.capacity, self.n_channels), dtype=np.float32)
        self._times = np.zeros(self.capacity, dtype=np.float64)
        self._next = 0
        self.count = 0  # samples ever written
        self.writes = 0  # chunks ever written
        self.last_write = 0.0  # time.monotonic() of the last write
        self._lock = threading.Lock()

    def write(self, data: np.ndarray, times: np.ndarray) -> None:
        """Append samples ``data`` (n, n_channels) with ``times`` (n,)."""
        received = n = len(times)
        if n == 0:
            return
        if n > self.capacity:  # only the newest fit
            data, times, n = data[-self.capacity :], times[-self.capacity :], self.capacity
        with self._lock:
            first = min(n, self.capacity - self._next)
            self._data[self._next : self._next + first] = data[:first]
            self._times[self._next : self._next + first] = times[:first]
            if first < n:
                self._data[: n - first] = data[first:]
                self._times[: n - first] = times[first:]
            self._next = (self._next + n) % self.capacity
            self.count += received
            self.writes += 1
            self.last_write = time.monotonic()

    def _spans(self, n: int) -> list[slice]:
        """Slices of the newest ``n`` rows, oldest first (call under the lock)."""
        start = self._next - n
        if start >= 0:
            return [slice(start, self._next)]
        return [slice(self.capacity + start, self.capacity), slice(0, self._next)]

    def mean_latest(self, n: int, out: np.ndarray) -> int:
        """Mean over the newest ``n`` samples into ``out`` (n_channels,); returns how many were used."""
        with self._lock:
            n = int(min(n, self.count, self.capacity))
            if n == 0:
                return 0
            spans = self._spans(n)
            np.sum(self._data[spans[0]], axis=0, out=out, dtype=out.dtype)
            if len(spans) > 1:
                out += self._data[spans[1]].sum(axis=0, dtype=out.dtype)
        if n > 1:
            out /= n
        return n

    def ordered(self, data_out: np.ndarray, times_out: np.ndarray) -> int:
        """Copy all kept samples, oldest first, into the front of the given arrays; returns how many."""
        with self._lock:
            n = min(self.count, self.capacity, len(times_out))
            k = 0
            for s in self._spans(n):
                m = s.stop - s.start
                data_out[k : k + m] = self._data[s]
                times_out[k : k + m] = self._times[s]
                k += m
        return n

    def latest(self) -> tuple[np.ndarray, float] | None:
        """A copy of the newest sample and its timestamp (None before the first)."""
        with self._lock:
            if self.count == 0:
                return None
            i = (self._next - 1) % self.capacity
            return self._data[i].copy(), float(self._times[i])


class EventLog:
    """The events stream's JSON objects, and the bad channels they announce."""

    def __init__(self, keep: int = 50):
        self._events: deque[dict] = deque(maxlen=keep)
        self._bad: dict[str, str] = {}
        self._lock = threading.Lock()
        self.count = 0

    def add(self, text: str) -> None:
        try:
            event = json.loads(text)
        except (json.JSONDecodeError, TypeError):
            event = {"event": "text", "text": str(text)}
        if not isinstance(event, dict):
            event = {"event": "text", "text": str(text)}
        kind = event.get("event")
        with self._lock:
            self._events.append(event)
            self.count += 1
            if kind == "bad_channel" and event.get("channel"):
                self._bad[str(event["channel"])] = str(event.get("reason", ""))
            elif kind == "operator_swap" and isinstance(event.get("bad_channels"), list):
                # the new operator excludes exactly these channels
                self._bad = {str(c): self._bad.get(str(c), "") for c in event["bad_channels"]}
            elif kind == "started":
                self._bad = {}

    def bad_channels(self) -> dict[str, str]:
        """Bad channel -> reason."""
        with self._lock:
            return dict(self._bad)

    def recent(self, n: int = 5) -> list[dict]:
        with self._lock:
            return list(self._events)[-n:]


# ---- one reader per stream --------------------------------------------------------------------

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


# ---- all streams of one output --------------------------------------------------------------

class OutputStreams:
    """The readers of all streams of one rtsource output (see the module docstring).

    Parameters
    ----------
    output_name : str
        The output's name (``[output] name``, default ``rtsource-sources``).
    bundle_path : str, optional
        Bundle to take the mesh from (default: the one named in the source stream's metadata).
    mesh : str
        See :func:`cortex_geometry`.
    trace_seconds : float
        How much of the ROI / band-power streams is kept (the traces' time window).
    """

    def __init__(self, output_name: str = "rtsource-sources", *, bundle_path: str | None = None, mesh: str = "auto",
                 trace_seconds: float = 10.0, source_seconds: float = 1.0):
        if mesh not in MESH_CHOICES:
            raise StreamError(f"mesh = {mesh!r} is not known; use one of {', '.join(MESH_CHOICES)}")
        self.output_name = output_name
        self.bundle_path = bundle_path
        self.mesh = mesh
        name = outputs.stream_name
        self.sources = StreamReader(name(output_name), outputs.SOURCES_TYPE, buffer_seconds=source_seconds, min_capacity=128, prepare=self._geometry)
        self.roi = StreamReader(name(output_name, outputs.ROI_SUFFIX), outputs.ROI_TYPE, buffer_seconds=trace_seconds, min_capacity=256)
        self.bandpower = StreamReader(name(output_name, outputs.BANDPOWER_SUFFIX), outputs.BANDPOWER_TYPE, buffer_seconds=trace_seconds, min_capacity=64)
        self.telemetry = StreamReader(name(output_name, outputs.TELEMETRY_SUFFIX), outputs.TELEMETRY_TYPE, buffer_seconds=5.0, min_capacity=8)
        self.events = StreamReader(name(output_name, outputs.EVENTS_SUFFIX), outputs.EVENTS_TYPE)

    def _geometry(self, layout: StreamLayout) -> CortexGeometry:
        return cortex_geometry(layout, bundle_path=self.bundle_path, mesh=self.mesh)

    @property
    def readers(self) -> tuple[StreamReader, ...]:
        return (self.sources, self.roi, self.bandpower, self.telemetry, self.events)

    def start(self) -> "OutputStreams":
        for r in self.readers:
            r.start()
        return self

    def close(self) -> None:
        for r in self.readers:
            r._stop.set()
        for r in self.readers:
            r.close()


def telemetry_values(status: ReaderStatus) -> dict[str, float]:
    """The newest telemetry sample by channel label ({} when there is none).

    Channels are found by their labels in the stream's metadata, so a loop that adds
    channels stays readable; a header without labels is read in
    :data:`~rtsource.stream.outputs.TELEMETRY_CHANNELS` order.
    """
    if status.ring is None or status.layout is None:
        return {}
    latest = status.ring.latest()
    if latest is None:
        return {}
    values, _ = latest
    labels = list(status.layout.labels)
    if all(lab.startswith("ch") and lab[2:].isdigit() for lab in labels):
        labels = [lab for lab, _ in outputs.TELEMETRY_CHANNELS][: len(labels)]
    return {lab: float(v) for lab, v in zip(labels, values.tolist())}
