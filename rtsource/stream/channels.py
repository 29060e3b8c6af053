"""What an LSL stream says about its channels, and how they map onto an operator's.

Channels are matched by name, never by position: a stream may list them in any order and
carry extra channels (EOG, triggers, accelerometers) that the operator ignores. Units are
read from the metadata (XDF meta-data convention ``desc/channels/channel/{label,type,unit}``)
and converted to the operator's SI units; a stream that does not say its unit is refused
unless the user states it, because a factor of 10^6 is the classic silent error.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ..errors import ChannelError, StreamError, UnitError
from ..geometry.units import parse_signal_unit
from ..channel_names import match_labels

logger = logging.getLogger(__name__)

# Stream channel types each kind of operator channel accepts (as streams spell them); any
# other type under a matching name (say an 'EOG' channel called 'Fp1') is refused.
_ACCEPTED_TYPES = {
    "eeg": {"", "eeg", "exg"},
    "mag": {"", "meg", "mag", "megmag"},
    "grad": {"", "meg", "grad", "meggrad", "meggradplanar"},
    # gradient-compensation references (CTF), read only to compensate (rtsource.stream.compensation)
    "ref_meg": {"", "meg", "ref_meg", "refmeg", "megrefmag", "megrefgradaxial", "megrefgradplanar", "misc"},
}


@dataclass(frozen=True)
class StreamDescription:
    """The parts of an LSL stream's header rtsource uses."""

    name: str
    type: str
    source_id: str
    sfreq: float
    n_channels: int
    channel_format: str
    ch_names: tuple[str, ...]
    ch_types: tuple[str, ...]
    ch_units: tuple[str, ...]
    hostname: str = ""
    uid: str = ""
    #: CTF compensation grade the stream declares (``desc/acquisition/compensation_grade``); -1: not declared
    compensation_grade: int = -1

    def label(self) -> str:
        return f"{self.name!r} (type {self.type!r}, source_id {self.source_id!r}, {self.n_channels} ch @ {self.sfreq:g} Hz)"


def _text(node: ET.Element | None, tag: str) -> str:
    if node is None:
        return ""
    child = node.find(tag)
    return (child.text or "").strip() if child is not None else ""


def describe_stream_xml(xml: str) -> StreamDescription:
    """Parse an LSL stream header (``StreamInfo.as_xml()``) into a :class:`StreamDescription`."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise StreamError(f"the stream's header is not valid XML ({exc})") from None
    try:
        n = int(_text(root, "channel_count") or 0)
        sfreq = float(_text(root, "nominal_srate") or 0)
    except ValueError as exc:
        raise StreamError(f"the stream's header has a malformed channel_count or nominal_srate ({exc})") from None
    names, types, units = [], [], []
    channels = root.find("desc/channels")
    if channels is not None:
        for ch in channels.findall("channel"):
            names.append(_text(ch, "label"))
            types.append(_text(ch, "type"))
            units.append(_text(ch, "unit"))
    return StreamDescription(
        name=_text(root, "name"),
        type=_text(root, "type"),
        source_id=_text(root, "source_id"),
        sfreq=sfreq,
        n_channels=n,
        channel_format=_text(root, "channel_format"),
        ch_names=tuple(names),
        ch_types=tuple(types),
        ch_units=tuple(units),
        hostname=_text(root, "hostname"),
        uid=_text(root, "uid"),
        compensation_grade=_declared_grade(_text(root.find("desc/acquisition"), "compensation_grade")),
    )


def _declared_grade(text: str) -> int:
    """A declared CTF compensation grade (0-3); anything else is taken as not declared (-1)."""
    return int(text) if text in ("0", "1", "2", "3") else -1


@dataclass(frozen=True)
class ChannelMap:
    """Where each operator channel is found in the stream and how to scale it to SI.

    Attributes
    ----------
    index : ndarray of int64, shape (n_operator_channels,)
        Column of the stream for each operator channel, in the operator's order.
    scale : ndarray, shape (n_operator_channels,)
        Factor from the stream's unit to the operator's (1e-6 for uV -> V).
    stream_units : tuple of str
        The unit each mapped channel had in the stream (after ``assume_unit``).
    extra : tuple of str
        Stream channels the operator does not use (ignored, and reported).
    assumed_unit : bool
        True when at least one unit came from ``assume_unit`` rather than the stream.
    """

    index: np.ndarray
    scale: np.ndarray
    stream_units: tuple[str, ...]
    extra: tuple[str, ...]
    assumed_unit: bool

    def summary(self) -> str:
        units = sorted(set(self.stream_units))
        extra = f"; {len(self.extra)} extra channel(s) ignored: {', '.join(self.extra)}" if self.extra else ""
        return f"{len(self.index)} channels matched by name (stream unit {'/'.join(units)}){extra}"


def map_stream_channels(
    stream: StreamDescription,
    ch_names: tuple[str, ...],
    ch_units: tuple[str, ...],
    *,
    aliases: Mapping[str, str] | None = None,
    assume_unit: str = "",
    ch_types: tuple[str, ...] | None = None,
) -> ChannelMap:
    """Map an operator's channels onto a stream's, by name, with unit conversion.

    Parameters
    ----------
    stream : StreamDescription
        The stream's header.
    ch_names, ch_units : tuple of str
        The operator's channels (column order) and the SI unit each expects.
    aliases : mapping, optional
        Stream label -> operator label, for non-standard names.
    assume_unit : str
        Unit for stream channels whose metadata gives none; empty means refuse them.
    ch_types : tuple of str, optional
        The operator's channel kinds ('eeg', 'mag', 'grad'); default all EEG.

    Raises
    ------
    ChannelError
        No labels in the stream, operator channels missing from it, or a matched channel of
        a non-EEG type.
    UnitError
        A unit is missing (and none assumed), unknown, or of a different kind (T vs V).
    """
    if not stream.ch_names or len(stream.ch_names) != stream.n_channels:
        raise ChannelError(
            f"stream {stream.label()} lists {len(stream.ch_names)} channel labels in its metadata "
            f"for {stream.n_channels} channels; rtsource matches channels by name, so the stream "
            f"must describe them (desc/channels/channel/label)"
        )
    # the alias map is stream label -> operator label: apply it to the stream side
    index = match_labels(
        ch_names,
        [aliases.get(x, x) if aliases else x for x in stream.ch_names],
        what=f"stream {stream.name!r}",
    )
    kinds = tuple(ch_types) if ch_types is not None else ("eeg",) * len(ch_names)
    bad_type = [
        (ch_names[k], stream.ch_types[i], kinds[k])
        for k, i in enumerate(index)
        if stream.ch_types[i].casefold() not in _ACCEPTED_TYPES.get(kinds[k], {""})
    ]
    if bad_type:
        raise ChannelError(
            "stream channels matched by name have the wrong type: "
            + ", ".join(f"{n!r} has type {t!r} but the operator expects {k.upper()}" for n, t, k in bad_type)
            + "; rename them in the stream or pass an alias map"
        )
    scale = np.empty(len(index))
    units = []
    assumed = False
    missing_unit = []
    for k, i in enumerate(index):
        text = stream.ch_units[i]
        if not text:
            if not assume_unit:
                missing_unit.append(stream.ch_names[i])
                continue
            text = assume_unit
            assumed = True
        try:
            canonical, base, factor = parse_signal_unit(text)
        except UnitError as exc:
            raise UnitError(f"stream {stream.name!r} channel {stream.ch_names[i]!r}: {exc}") from None
        _, want_base, want_factor = parse_signal_unit(ch_units[k])
        if base != want_base:
            raise UnitError(
                f"stream {stream.name!r} channel {stream.ch_names[i]!r} is in {canonical!r} but the operator "
                f"expects {ch_units[k]!r} ({want_base}); this stream does not carry the data the bundle was built for"
            )
        scale[k] = factor / want_factor
        units.append(canonical)
    if missing_unit:
        shown = ", ".join(missing_unit[:8]) + (", ..." if len(missing_unit) > 8 else "")
        raise UnitError(
            f"stream {stream.name!r} gives no unit for {len(missing_unit)} channel(s) ({shown}); "
            f"state it with --assume-unit uV (or [stream] assume_unit = 'uV') after checking the amplifier's unit"
        )
    if assumed:
        logger.warning("stream %r: unit %r assumed for channels without one", stream.name, assume_unit)
    used = set(index)
    extra = tuple(stream.ch_names[i] for i in range(stream.n_channels) if i not in used)
    index_arr = np.asarray(index, dtype=np.int64)
    index_arr.flags.writeable = False
    scale.flags.writeable = False
    return ChannelMap(index_arr, scale, tuple(units), extra, assumed)
