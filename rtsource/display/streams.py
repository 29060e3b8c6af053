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

Modules: :mod:`.layout` (a stream's XML header), :mod:`.cortex_geometry` (the mesh behind
the sources), :mod:`.buffers` (sample ring, event log), :mod:`.readers` (one stream in a
thread); this module puts them together for one output.
"""

from __future__ import annotations

from ..errors import StreamError
from ..stream import outputs
from .cortex_geometry import MESH_CHOICES, CortexGeometry, cortex_geometry
from .layout import StreamLayout
from .readers import ReaderStatus, StreamReader


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
    atlas : str
        Outline this atlas's regions on the cortex (:mod:`rtsource.display.outlines`); "": none.
    trace_seconds : float
        How much of the ROI / band-power streams is kept (the traces' time window).
    """

    def __init__(self, output_name: str = "rtsource-sources", *, bundle_path: str | None = None, mesh: str = "auto",
                 trace_seconds: float = 10.0, source_seconds: float = 1.0, atlas: str = ""):
        if mesh not in MESH_CHOICES:
            raise StreamError(f"mesh = {mesh!r} is not known; use one of {', '.join(MESH_CHOICES)}")
        self.output_name = output_name
        self.bundle_path = bundle_path
        self.mesh = mesh
        self.atlas = atlas
        name = outputs.stream_name
        self.sources = StreamReader(name(output_name), outputs.SOURCES_TYPE, buffer_seconds=source_seconds, min_capacity=128, prepare=self._geometry)
        self.roi = StreamReader(name(output_name, outputs.ROI_SUFFIX), outputs.ROI_TYPE, buffer_seconds=trace_seconds, min_capacity=256)
        self.bandpower = StreamReader(name(output_name, outputs.BANDPOWER_SUFFIX), outputs.BANDPOWER_TYPE, buffer_seconds=trace_seconds, min_capacity=64)
        self.telemetry = StreamReader(name(output_name, outputs.TELEMETRY_SUFFIX), outputs.TELEMETRY_TYPE, buffer_seconds=5.0, min_capacity=8)
        self.events = StreamReader(name(output_name, outputs.EVENTS_SUFFIX), outputs.EVENTS_TYPE)

    def _geometry(self, layout: StreamLayout) -> CortexGeometry:
        geometry = cortex_geometry(layout, bundle_path=self.bundle_path, mesh=self.mesh)
        if self.atlas:
            from .outlines import outline_or_none

            geometry = outline_or_none(geometry, self.atlas, bundle_path=self.bundle_path or layout.bundle_path)
        return geometry

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
