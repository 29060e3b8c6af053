"""Finding an LSL stream by name / type / source_id and opening an inlet on it."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import StreamError
from .channels import StreamDescription, describe_stream_xml

logger = logging.getLogger(__name__)

# LSL channel formats rtsource reads, and the NumPy dtype the pull buffer needs
_NUMERIC_FORMATS = {"float32": np.float32, "double64": np.float64, "int16": np.int16, "int32": np.int32, "int64": np.int64, "int8": np.int8}


#: LSL stream types a bundle's modality implies (``[stream] type = "auto"``).
MODALITY_STREAM_TYPES = {"eeg": ("EEG",), "meg": ("MEG",), "eeg+meg": ("EEG", "MEG")}


def modality_of(ch_types) -> str:
    """``"eeg"``, ``"meg"`` or ``"eeg+meg"`` from an operator's channel types ("" if neither)."""
    eeg = "eeg" in ch_types
    meg = any(t in ("mag", "grad") for t in ch_types)
    return "eeg+meg" if eeg and meg else "meg" if meg else "eeg" if eeg else ""


@dataclass(frozen=True)
class StreamSelector:
    """Which stream to read: every non-empty field must match.

    ``type = "auto"`` stands for the types the operator's modality implies (EEG, MEG, or
    either for EEG+MEG); :meth:`for_modality` replaces it by them (``types``) before the
    stream is looked for. An unresolved "auto" matches any type.
    """

    name: str = ""
    type: str = ""
    source_id: str = ""
    #: several acceptable types (any of them), filled in by :meth:`for_modality`
    types: tuple[str, ...] = ()
    #: why these types (for the error when nothing matches)
    why: str = field(default="", compare=False)

    def for_modality(self, modality: str) -> "StreamSelector":
        """This selector with ``type = "auto"`` replaced by the types ``modality`` implies."""
        if self.type.strip().casefold() != "auto" or modality not in MODALITY_STREAM_TYPES:
            return self
        types = MODALITY_STREAM_TYPES[modality]
        why = f"the operator is {modality.upper()}, so a stream of type {' or '.join(map(repr, types))}; set [stream] type (--stream-type) to read another"
        return replace(self, type="", types=types, why=why)

    def predicate(self) -> str:
        for v in (self.name, self.type, self.source_id, *self.types):
            if "'" in v:
                raise StreamError(f"stream selector value {v!r} must not contain a quote")
        type_ = "" if self.type.strip().casefold() == "auto" else self.type
        parts = [f"{k}='{v}'" for k, v in (("name", self.name), ("type", type_), ("source_id", self.source_id)) if v]
        if self.types and not type_:
            parts.append("(" + " or ".join(f"type='{t}'" for t in self.types) + ")" if len(self.types) > 1 else f"type='{self.types[0]}'")
        return " and ".join(parts) if parts else "channel_count > 0"

    def __str__(self) -> str:
        return self.predicate()


def _visible_streams(wait: float = 1.0) -> str:
    import pylsl

    found = pylsl.resolve_streams(wait_time=wait)
    if not found:
        return "no LSL streams are visible at all"
    return "visible streams: " + "; ".join(
        f"name={s.name()!r} type={s.type()!r} source_id={s.source_id()!r} ({s.channel_count()} ch @ {s.nominal_srate():g} Hz)"
        for s in found[:10]
    )


def resolve_stream(selector: StreamSelector, timeout: float):
    """Return the pylsl ``StreamInfo`` of the one stream matching ``selector``.

    Raises
    ------
    StreamError
        None matched within ``timeout`` seconds (listing what is visible), or several did
        (listing them, so the user can add ``source_id``).
    """
    import pylsl

    # in slices: a signal (Ctrl-C, SIGTERM) is handled only between liblsl calls
    deadline = time.monotonic() + timeout
    while True:
        found = pylsl.resolve_bypred(selector.predicate(), minimum=1, timeout=min(0.5, max(0.0, deadline - time.monotonic())))
        if found or time.monotonic() >= deadline:
            break
    if not found:
        raise StreamError(
            f"no LSL stream matching {selector}{f' ({selector.why})' if selector.why else ''} appeared within {timeout:g} s; {_visible_streams()}. "
            "Start the amplifier's LSL app (or `rtsource simulate`), or fix --stream-name/--stream-type/--source-id"
        )
    # resolve_bypred returns as soon as one appears; look once more for duplicates
    more = pylsl.resolve_bypred(selector.predicate(), minimum=2, timeout=0.3)
    uids = {s.uid(): s for s in list(found) + list(more)}
    if len(uids) > 1:
        listing = "; ".join(f"source_id={s.source_id()!r} host={s.hostname()!r}" for s in uids.values())
        raise StreamError(f"{len(uids)} LSL streams match {selector} ({listing}); select one with --source-id")
    return found[0]


class Inlet:
    """An LSL inlet with a preallocated pull buffer.

    Parameters
    ----------
    info : pylsl.StreamInfo
        From :func:`resolve_stream`.
    max_chunk : int
        Most samples returned by one :meth:`pull`.
    open_timeout : float
        Seconds to wait for the full header (with channel descriptions).
    """

    def __init__(self, info, max_chunk: int, open_timeout: float = 10.0):
        import pylsl

        self._pylsl = pylsl
        # keep 360 s in LSL's own buffer; no clock processing: timestamps stay in the producer's clock
        self._inlet = pylsl.StreamInlet(info, max_buflen=360, max_chunklen=0, recover=True)
        try:
            full = self._inlet.info(timeout=open_timeout)
        except Exception as exc:
            raise StreamError(f"could not read the header of stream {info.name()!r}: {exc}") from None
        self.description: StreamDescription = describe_stream_xml(full.as_xml())
        fmt = self.description.channel_format
        if fmt not in _NUMERIC_FORMATS:
            raise StreamError(
                f"stream {self.description.name!r} has channel format {fmt!r}; rtsource needs a numeric stream "
                f"({', '.join(_NUMERIC_FORMATS)})"
            )
        if self.description.sfreq <= 0:
            raise StreamError(
                f"stream {self.description.name!r} has an irregular rate (nominal_srate 0); source estimation "
                "with causal filters and gap detection needs a regular sampling rate"
            )
        self.max_chunk = int(max_chunk)
        self.buffer = np.zeros((self.max_chunk, self.description.n_channels), dtype=_NUMERIC_FORMATS[fmt])
        self._open_timeout = open_timeout
        self.is_open = False

    def open(self) -> None:
        """Subscribe to the data: samples pushed from now on are delivered by :meth:`pull`.

        Kept separate from construction so that slow preparations (kernel compilation,
        outlet metadata) happen before the data starts queueing up.
        """
        self._inlet.open_stream(timeout=self._open_timeout)
        self.is_open = True

    def refresh_description(self, timeout: float = 2.0) -> StreamDescription:
        """Read the header again (after the stream came back, its layout may differ).

        A recovered inlet keeps the header it first saw, so the current one is fetched
        through a short-lived second inlet on the stream that has our uid's source_id.
        """
        import pylsl

        d = self.description
        pred = f"source_id='{d.source_id}'" if d.source_id else f"name='{d.name}' and type='{d.type}'"
        try:
            found = pylsl.resolve_bypred(pred, minimum=1, timeout=timeout)
            if not found:
                raise StreamError("it is not visible any more")
            # the outlet that just died may still answer for a moment: take the newest
            newest = max(found, key=lambda info: info.created_at())
            probe = pylsl.StreamInlet(newest)
            try:
                self.description = describe_stream_xml(probe.info(timeout=timeout).as_xml())
            finally:
                probe.close_stream()
        except Exception as exc:
            raise StreamError(f"could not re-read the header of stream {d.name!r}: {exc}") from None
        return self.description

    def time_correction(self, timeout: float = 2.0) -> float:
        """Offset to add to this stream's timestamps to get the local LSL clock."""
        return float(self._inlet.time_correction(timeout=timeout))

    def pull(self, timeout: float) -> np.ndarray:
        """Wait up to ``timeout`` s for samples, then return what is there (up to max_chunk).

        The samples land in :attr:`buffer` (rows ``[:n]``); returns the timestamps (n,).
        """
        if not self.is_open:
            self.open()
        _, ts = self._inlet.pull_chunk(timeout=timeout, max_samples=self.max_chunk, dest_obj=self.buffer, min_samples=1, as_numpy=True)
        return ts

    def samples_available(self) -> int:
        return int(self._inlet.samples_available())

    def close(self) -> None:
        try:
            self._inlet.close_stream()
        except Exception:  # closing a lost stream may raise; there is nothing left to do
            pass
