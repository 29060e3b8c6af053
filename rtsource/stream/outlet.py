"""The LSL outlet of source time courses, with full channel metadata.

Consumers (the live display, a neurofeedback task, LabRecorder) learn everything from the
stream header: one channel per source (pooled over orientations for loose/free operators),
its label, unit and position, and an ``rtsource`` block with the frame, method and
parameters. Positions follow the XDF meta-data convention (``location/X,Y,Z`` in mm).
"""

from __future__ import annotations

import hashlib

import numpy as np

from .. import __version__
from ..bundle import OperatorBundle
from .channels import StreamDescription


def output_source_id(bundle: OperatorBundle, input_stream: StreamDescription) -> str:
    """A source_id that is stable for the same bundle and input (so consumers can reconnect)."""
    h = hashlib.sha1()
    for part in (bundle.created_utc, bundle.method, bundle.sources.name, ",".join(bundle.ch_names), input_stream.source_id or input_stream.name):
        h.update(part.encode() + b"|")
    return f"rtsource-{h.hexdigest()[:12]}"


def make_source_info(bundle: OperatorBundle, input_stream: StreamDescription, *, name: str, type_: str, source_id: str, bundle_path: str = ""):
    """Build the pylsl ``StreamInfo`` of the source outlet."""
    import pylsl

    labels = bundle.source_labels()
    info = pylsl.StreamInfo(name, type_, len(labels), bundle.sfreq, pylsl.cf_float32, source_id)
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
        ("timestamps", "input samples' own timestamps (producer clock)"),
    ):
        meta.append_child_value(key, value)
    params = meta.append_child("params")
    for key, value in bundle.params.items():
        params.append_child_value(str(key), str(value))
    return info
