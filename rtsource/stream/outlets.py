"""Every LSL outlet the loop publishes, made in one place: their headers and the outlets.

Consumers (the live display, a neurofeedback task, LabRecorder) learn everything from the
stream headers: for the sources one channel per source (pooled over orientations for
loose/free operators), its label, unit and position, and an ``rtsource`` block with the
frame, method and parameters; for ROIs and band power the ROI and band definitions; for
telemetry the counters' names and units. Positions follow the XDF meta-data convention
(``location/X,Y,Z`` in mm). Names, types and channel layouts are the contract of
:mod:`rtsource.stream.outputs`.

=====================  ==============================  =================================
stream                 header                          outlet
=====================  ==============================  =================================
``NAME``               :func:`make_source_info`        :func:`open_source_outlet`
``NAME-roi``           :func:`make_roi_info`           :func:`open_roi_outlet`
``NAME-bandpower``     :func:`make_bandpower_info`     :func:`open_bandpower_outlet`
``NAME-telemetry``     :func:`make_telemetry_info`     :func:`open_telemetry_outlet`
``NAME-events``        :func:`make_events_info`        :func:`open_events_outlet`
``NAME-epochs``        ``event_layout.make_*_info``    :func:`open_event_outlet`
``NAME-evoked``        (same)                          (same)
``NAME-connectivity``  (same)                          (same)
``NAME-headpos``       :func:`make_headpos_info`       :func:`open_headpos_outlet`
=====================  ==============================  =================================

Every output carrying data derived from the sources (sources, ROIs, band power, epochs,
evoked, connectivity) has a ``desc/rtsource/artifacts`` block saying what artifact correction
was applied (:func:`artifact_fields`, as the loop started; live recalibrations are events).

Data outlets keep up to 360 s for a consumer that falls behind and send each chunk as
pushed (``chunk_size=0``): the consumer sees samples as soon as the loop has them.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .. import __version__
from ..bundle import OperatorBundle
from ..roi_operator import RoiOperator
from .channels import StreamDescription
from .outputs import (
    BANDPOWER_SUFFIX,
    BANDPOWER_TYPE,
    CONTROL_SUFFIX,
    CONTROL_TYPE,
    EVENTS_SUFFIX,
    EVENTS_TYPE,
    HEADPOS_CHANNELS,
    HEADPOS_SUFFIX,
    HEADPOS_TYPE,
    ROI_SUFFIX,
    ROI_TYPE,
    TELEMETRY_CHANNELS,
    TELEMETRY_RATE_HZ,
    TELEMETRY_SUFFIX,
    TELEMETRY_TYPE,
    append_artifacts,
    stream_name,
)

if TYPE_CHECKING:  # annotations only
    from .bandpower import BandPowerStage

#: Seconds of data a data outlet keeps for a consumer that falls behind, unless the loop
#: says otherwise (``[output] max_buffered_s``, :attr:`OutputIdentity.max_buffered_s`).
MAX_BUFFERED_S = 360.0


@dataclass(frozen=True)
class OutputIdentity:
    """Where a loop's outputs come from, as every output stream's header tells it.

    Attributes
    ----------
    output_name : str
        ``NAME`` of the output streams (``[output] name``).
    source_id : str
        LSL source_id of the sources stream; the other streams append their suffix.
    bundle_path : str
        The bundle file, so that a consumer can find it.
    input_stream : str
        Name of the input stream.
    max_buffered_s : float
        The most output (s) a data outlet keeps per consumer: a consumer that stalls (alive,
        not reading) cannot grow this process's memory beyond it (``[output] max_buffered_s``).
    sfreq : float
        Rate of the source and ROI outputs (Hz); 0: the bundle's (no decimation).
    metadata : tuple of (str, str)
        More ``desc/rtsource`` fields of the source stream: the decimation stage, the
        operator's storage and its error (:meth:`StreamOperator.describe`).
    artifacts : tuple of (str, str)
        The ``desc/rtsource/artifacts`` block of every output that carries data derived from
        the sources (ROIs, band power, epochs, evoked, connectivity): :func:`artifact_fields`
        of the bundle (empty: no artifact correction).
    """

    output_name: str
    source_id: str
    bundle_path: str = ""
    input_stream: str = ""
    max_buffered_s: float = MAX_BUFFERED_S
    sfreq: float = 0.0
    metadata: tuple[tuple[str, str], ...] = ()
    artifacts: tuple[tuple[str, str], ...] = ()


def artifact_fields(bundle: OperatorBundle) -> tuple[tuple[str, str], ...]:
    """What artifact correction the bundle applies (``ArtifactCalibration.describe``), as the
    ``(key, text)`` fields of a header's ``artifacts`` block (values that are not text as JSON)."""
    cal = getattr(bundle, "artifacts", None)
    if cal is None:
        return ()
    return tuple((str(k), v if isinstance(v, str) else json.dumps(v)) for k, v in cal.describe().items())


def _labelled_info(name: str, type_: str, channels, rate: float, fmt, source_id: str, output_name: str, bundle_path: str, extra=()):
    """A ``StreamInfo`` with a ``channels`` block of (label, unit) and an ``rtsource`` block
    (``output_name``, ``bundle`` and ``extra`` fields)."""
    import pylsl

    info = pylsl.StreamInfo(name, type_, len(channels), rate, fmt, source_id)
    chans = info.desc().append_child("channels")
    for label, unit in channels:
        ch = chans.append_child("channel")
        ch.append_child_value("label", label)
        ch.append_child_value("unit", unit)
    meta = info.desc().append_child("rtsource")
    for key, value in (("output_name", output_name), ("bundle", bundle_path), *extra):
        meta.append_child_value(key, value)
    return info


def _open(info, *, data: bool = True, max_buffered_s: float = MAX_BUFFERED_S):
    import pylsl

    if data:
        # LSL counts max_buffered in whole seconds for a regular-rate stream
        return pylsl.StreamOutlet(info, chunk_size=0, max_buffered=max(1, math.ceil(max_buffered_s)))
    return pylsl.StreamOutlet(info)


# ---- sources ----------------------------------------------------------------------------


def output_source_id(bundle: OperatorBundle, input_stream: StreamDescription) -> str:
    """A source_id that is stable for the same bundle and input (so consumers can reconnect)."""
    h = hashlib.sha1()
    for part in (bundle.created_utc, bundle.method, bundle.sources.name, ",".join(bundle.ch_names), input_stream.source_id or input_stream.name):
        h.update(part.encode() + b"|")
    return f"rtsource-{h.hexdigest()[:12]}"


def make_source_info(bundle: OperatorBundle, input_stream: StreamDescription, *, name: str, type_: str, source_id: str, bundle_path: str = "",
                     sfreq: float = 0.0, metadata: tuple[tuple[str, str], ...] = ()):  # fmt: skip
    """Build the pylsl ``StreamInfo`` of the source outlet (``sfreq``: output rate, 0: the bundle's)."""
    import pylsl

    labels = bundle.source_labels()
    decimated = bool(sfreq) and abs(sfreq - bundle.sfreq) > 1e-9 * bundle.sfreq
    info = pylsl.StreamInfo(name, type_, len(labels), sfreq or bundle.sfreq, pylsl.cf_float32, source_id)
    desc = info.desc()
    unit = bundle.output_unit or "dimensionless"
    kind = "source_pooled" if bundle.n_orient == 3 else "source"
    chans = desc.append_child("channels")
    pos_mm = np.round(bundle.sources.positions_m * 1e3, 3)
    hemi_names = {0: "lh", 1: "rh", -1: ""}
    for label, p, h in zip(labels, pos_mm.tolist(), bundle.sources.hemisphere.tolist()):
        ch = chans.append_child("channel")
        ch.append_child_value("label", label)
        ch.append_child_value("type", kind)
        ch.append_child_value("unit", unit)
        ch.append_child_value("hemisphere", hemi_names[h])
        loc = ch.append_child("location")
        loc.append_child_value("X", repr(p[0]))
        loc.append_child_value("Y", repr(p[1]))
        loc.append_child_value("Z", repr(p[2]))
    meta = desc.append_child("rtsource")
    for key, value in (
        ("version", __version__),
        ("method", bundle.method),
        ("n_orient", str(bundle.n_orient)),
        ("output_unit", unit),
        ("source_frame", bundle.sources.frame.value),
        ("location_unit", "mm"),
        ("source_space", bundle.sources.name),
        ("reference", bundle.eeg_reference),
        ("input_stream", input_stream.name),
        ("input_source_id", input_stream.source_id),
        ("bundle", bundle_path),
        ("bundle_created", bundle.created_utc),
        ("timestamps", "input samples' own timestamps (producer clock)"
         + (": each output sample carries the timestamp of the input sample it was computed at" if decimated else "")),
        *metadata,
    ):
        meta.append_child_value(key, value)
    params = meta.append_child("params")
    for key, value in bundle.params.items():
        params.append_child_value(str(key), str(value))
    append_artifacts(meta, artifact_fields(bundle))  # what artifact correction is applied (rtsource.stream.artifacts)
    return info


# ---- ROIs and band power -------------------------------------------------------------------


def make_roi_info(
    roi_operator: RoiOperator,
    *,
    output_name: str,
    sfreq: float,
    source_id: str,
    bundle_path: str = "",
    method: str = "",
    bundle_created: str = "",
    input_stream: str = "",
    artifacts: tuple[tuple[str, str], ...] = (),
):
    """The pylsl ``StreamInfo`` of the ROI stream (``NAME-roi``, type ``ROI``).

    One float32 channel per ROI at the input rate. Per channel: ``label`` (ROI name),
    ``type`` (``roi``), ``unit``, ``mode``, ``component``, ``n_sources``, ``description``
    and ``location`` (X, Y, Z: the mean position of the ROI's sources, mm, template frame).
    The ``rtsource`` block carries ``output_name`` and ``bundle`` (find the sibling
    streams and the bundle, :mod:`rtsource.stream.outputs`), the mode and the method, and
    the ``artifacts`` block (:func:`artifact_fields`) when artifact correction runs.
    """
    import pylsl

    w = roi_operator.weights
    unit = roi_operator.unit or "dimensionless"
    info = pylsl.StreamInfo(stream_name(output_name, ROI_SUFFIX), ROI_TYPE, w.n_roi, float(sfreq), pylsl.cf_float32, source_id)
    desc = info.desc()
    chans = desc.append_child("channels")
    centres = np.round(w.centres_m * 1e3, 3)
    descriptions = w.descriptions or ("",) * w.n_roi
    for name, count, c, d in zip(w.names, w.counts().tolist(), centres.tolist(), descriptions):
        ch = chans.append_child("channel")
        ch.append_child_value("label", name)
        ch.append_child_value("type", "roi")
        ch.append_child_value("unit", unit)
        ch.append_child_value("mode", w.mode)
        ch.append_child_value("component", w.component)
        ch.append_child_value("n_sources", str(count))
        ch.append_child_value("description", d)
        loc = ch.append_child("location")
        for axis, v in zip("XYZ", c):
            loc.append_child_value(axis, repr(v))
    meta = desc.append_child("rtsource")
    for key, value in (
        ("version", __version__),
        ("output_name", output_name),
        ("bundle", bundle_path),
        ("bundle_created", bundle_created),
        ("method", method),
        ("mode", w.mode),
        ("component", w.component),
        ("linear", "true" if roi_operator.linear else "false"),
        ("n_orient", str(roi_operator.n_orient)),
        ("output_unit", unit),
        ("rois", ",".join(w.names)),
        ("location_unit", "mm"),
        ("location", "mean position of the ROI's sources"),
        ("source_frame", roi_operator.source_frame),
        ("input_stream", input_stream),
        ("timestamps", "input samples' own timestamps (producer clock)"),
    ):
        meta.append_child_value(key, value)
    append_artifacts(meta, artifacts)
    return info


def make_bandpower_info(
    stage: BandPowerStage,
    *,
    output_name: str,
    source_id: str,
    bundle_path: str = "",
    method: str = "",
    roi_mode: str = "",
    input_stream: str = "",
    artifacts: tuple[tuple[str, str], ...] = (),
):
    """The pylsl ``StreamInfo`` of the band-power stream (``NAME-bandpower``, type ``BandPower``).

    One float32 channel per ROI x band, labelled ``<roi>_<band>``, at the stage's output
    rate. Per channel: ``label``, ``type`` (``bandpower``), ``unit``, ``roi``, ``band``,
    ``low_hz``, ``high_hz``. The ``rtsource`` block: ``output_name``, ``bundle``, ``rois``,
    ``bands`` (``name:low-high`` list) and a ``band`` child per band, the envelope method,
    smoothing, z-scoring and the rate; the ``artifacts`` block as the ROI stream's.
    """
    import pylsl

    spec = stage.spec
    info = pylsl.StreamInfo(stream_name(output_name, BANDPOWER_SUFFIX), BANDPOWER_TYPE, stage.n_out, stage.rate_hz, pylsl.cf_float32, source_id)
    desc = info.desc()
    chans = desc.append_child("channels")
    unit = stage.output_unit
    for r in stage.roi_names:
        for b in spec.bands:
            ch = chans.append_child("channel")
            ch.append_child_value("label", f"{r}_{b.name}")
            ch.append_child_value("type", "bandpower")
            ch.append_child_value("unit", unit)
            ch.append_child_value("roi", r)
            ch.append_child_value("band", b.name)
            ch.append_child_value("low_hz", repr(float(b.low_hz)))
            ch.append_child_value("high_hz", repr(float(b.high_hz)))
    meta = desc.append_child("rtsource")
    for key, value in (
        ("version", __version__),
        ("output_name", output_name),
        ("bundle", bundle_path),
        ("method", method),
        ("roi_mode", roi_mode),
        ("rois", ",".join(stage.roi_names)),
        ("bands", ",".join(f"{b.name}:{b.low_hz:g}-{b.high_hz:g}" for b in spec.bands)),
        ("band_unit", "Hz"),
        ("filter", (f"causal complex band-pass: Butterworth low-pass of order {spec.filter_order} shifted to the band centre" if spec.envelope == "analytic"
                    else f"causal Butterworth band-pass, order {spec.filter_order} prototype ({2 * spec.filter_order} poles), second-order sections")),  # fmt: skip
        ("envelope", spec.envelope),
        ("quantity", spec.quantity),
        ("smoothing_s", repr(float(spec.smoothing_s))),
        ("smoothing_stages", str(spec.smoothing_stages)),
        ("zscore", "true" if spec.zscore else "false"),
        ("baseline", ("first %g s of the stream (NaN until complete)" % spec.baseline_s) if spec.zscore and not stage.baseline_ready else ("calibration" if spec.zscore else "")),
        ("rate_hz", repr(float(stage.rate_hz))),
        ("decimation", str(stage.step)),
        ("output_unit", unit),
        ("input_stream", input_stream),
        ("timestamps", "timestamp of the input sample each value was taken at (producer clock)"),
    ):
        meta.append_child_value(key, value)
    bands = meta.append_child("bands")
    for b in spec.bands:
        node = bands.append_child("band")
        node.append_child_value("name", b.name)
        node.append_child_value("low_hz", repr(float(b.low_hz)))
        node.append_child_value("high_hz", repr(float(b.high_hz)))
    append_artifacts(meta, artifacts)
    return info


# ---- telemetry and events -----------------------------------------------------------------


def make_telemetry_info(output_name: str, source_id: str, bundle_path: str = ""):
    """The pylsl ``StreamInfo`` of ``NAME-telemetry``: :data:`~.outputs.TELEMETRY_CHANNELS`
    (label, unit) as float64 channels at :data:`~.outputs.TELEMETRY_RATE_HZ`."""
    import pylsl

    return _labelled_info(output_name + TELEMETRY_SUFFIX, TELEMETRY_TYPE, TELEMETRY_CHANNELS, TELEMETRY_RATE_HZ, pylsl.cf_double64,
                          source_id + TELEMETRY_SUFFIX, output_name, bundle_path)  # fmt: skip


def make_events_info(output_name: str, source_id: str, bundle_path: str = ""):
    """The pylsl ``StreamInfo`` of ``NAME-events``: one string channel, one JSON object per sample."""
    import pylsl

    info = pylsl.StreamInfo(output_name + EVENTS_SUFFIX, EVENTS_TYPE, 1, pylsl.IRREGULAR_RATE, pylsl.cf_string, source_id + EVENTS_SUFFIX)
    meta = info.desc().append_child("rtsource")
    meta.append_child_value("output_name", output_name)
    meta.append_child_value("bundle", bundle_path)
    meta.append_child_value("format", "one JSON object per sample: {'event': kind, 'time': lsl_time, ...}")
    return info


def make_headpos_info(output_name: str, source_id: str, bundle_path: str = "", *, step_s: float = 0.1):
    """The pylsl ``StreamInfo`` of ``NAME-headpos``: :data:`~.outputs.HEADPOS_CHANNELS` as
    float64 channels, one sample per fitted pose (nominal rate ``1 / step_s``), stamped with
    the window's last input sample time. Quaternion and translation are the DEVICE -> HEAD
    transform, as in MNE-Python's head-position files."""
    import pylsl

    fmt = ("format", "MNE-Python head position: t, q1, q2, q3 (device->head rotation), x, y, z (m), gof, err (m), v (m/s)")
    return _labelled_info(output_name + HEADPOS_SUFFIX, HEADPOS_TYPE, HEADPOS_CHANNELS, 1.0 / step_s, pylsl.cf_double64, source_id + HEADPOS_SUFFIX,
                          output_name, bundle_path, (fmt,))  # fmt: skip


# ---- the outlets --------------------------------------------------------------------------


def open_source_outlet(bundle: OperatorBundle, input_stream: StreamDescription, identity: OutputIdentity, *, type_: str):
    """The ``NAME`` outlet: one float32 channel per source at the output rate (the input rate
    without decimation)."""
    info = make_source_info(
        bundle, input_stream, name=identity.output_name, type_=type_, source_id=identity.source_id, bundle_path=identity.bundle_path,
        sfreq=identity.sfreq, metadata=identity.metadata,
    )  # fmt: skip
    return _open(info, max_buffered_s=identity.max_buffered_s)


def open_roi_outlet(roi_operator: RoiOperator, identity: OutputIdentity, bundle: OperatorBundle):
    """The ``NAME-roi`` outlet of ``roi_operator`` applied to ``bundle``'s operator."""
    info = make_roi_info(
        roi_operator, output_name=identity.output_name, sfreq=identity.sfreq or bundle.sfreq, source_id=identity.source_id + ROI_SUFFIX, bundle_path=identity.bundle_path,
        method=bundle.method, bundle_created=bundle.created_utc, input_stream=identity.input_stream, artifacts=identity.artifacts,
    )  # fmt: skip
    return _open(info, max_buffered_s=identity.max_buffered_s)


def open_bandpower_outlet(stage: BandPowerStage, identity: OutputIdentity, *, method: str, roi_mode: str):
    """The ``NAME-bandpower`` outlet of a band-power stage."""
    info = make_bandpower_info(
        stage, output_name=identity.output_name, source_id=identity.source_id + BANDPOWER_SUFFIX, bundle_path=identity.bundle_path,
        method=method, roi_mode=roi_mode, input_stream=identity.input_stream, artifacts=identity.artifacts,
    )  # fmt: skip
    return _open(info, max_buffered_s=identity.max_buffered_s)


def open_telemetry_outlet(identity: OutputIdentity):
    """The ``NAME-telemetry`` outlet."""
    return _open(make_telemetry_info(identity.output_name, identity.source_id, identity.bundle_path), data=False)


def open_events_outlet(identity: OutputIdentity):
    """The ``NAME-events`` outlet."""
    return _open(make_events_info(identity.output_name, identity.source_id, identity.bundle_path), data=False)


def open_headpos_outlet(identity: OutputIdentity, *, step_s: float = 0.1):
    """The ``NAME-headpos`` outlet (one sample per fitted head pose)."""
    return _open(make_headpos_info(identity.output_name, identity.source_id, identity.bundle_path, step_s=step_s), max_buffered_s=identity.max_buffered_s)


def open_command_outlet(output_name: str):
    """The sender's side of ``NAME-control`` (``rtsource mark-bad``): one string channel.

    Each sender gets a source_id of its own, so the loop's listener can tell senders apart
    (one rate limit each).
    """
    import time

    import pylsl

    info = pylsl.StreamInfo(
        output_name + CONTROL_SUFFIX, CONTROL_TYPE, 1, pylsl.IRREGULAR_RATE, pylsl.cf_string, f"{output_name}-control-{time.time_ns()}"
    )
    return _open(info, data=False)


# ---- epochs, evoked, connectivity (headers: rtsource.stream.event_layout) -----------------


def open_event_outlet(kind: str, layout, identity: OutputIdentity, **extra):
    """Open ``NAME-epochs`` (``kind='epochs'``), ``NAME-evoked`` or ``NAME-connectivity``.

    ``layout`` is an :class:`~rtsource.stream.event_layout.EpochLayout` (epochs, evoked) or a
    :class:`~rtsource.stream.event_layout.ConnectivityLayout`; ``extra`` goes to the header
    (``average=`` for evoked).
    """
    from . import event_layout

    make = {"epochs": event_layout.make_epochs_info, "evoked": event_layout.make_evoked_info, "connectivity": event_layout.make_connectivity_info}[kind]
    info = make(layout, output_name=identity.output_name, source_id=identity.source_id, bundle_path=identity.bundle_path, input_stream=identity.input_stream,
                artifacts=identity.artifacts, **extra)  # fmt: skip
    if kind == "connectivity":
        return _open(info, data=True, max_buffered_s=identity.max_buffered_s)
    import pylsl

    # irregular rate: LSL counts max_buffered in hundreds of samples; an epoch of 68 ROIs x 1 s
    # at 1 kHz is 272 kB, so a stalled consumer may hold at most 100 of them (27 MB)
    return pylsl.StreamOutlet(info, chunk_size=0, max_buffered=1)
