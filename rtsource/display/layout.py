"""The layout of one LSL stream, read from its XML header: identity, channels, units, positions.

:func:`parse_stream_xml` turns ``StreamInfo.as_xml()`` into a :class:`StreamLayout` (channel
labels / units / types, ``location`` in mm, the flat ``desc/rtsource`` block). No Qt, no LSL.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from ..arrays import frozen as _readonly
from ..errors import StreamError


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

