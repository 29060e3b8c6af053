"""Input from a FieldTrip realtime buffer (TCP protocol version 1).

The FieldTrip buffer is the hub many MEG acquisition bridges (neuromag2ft, ctf2ft, rda2ft,
...) write into. A client asks for the header (``GET_HDR``), waits for new samples
(``WAIT_DAT``) and fetches index ranges (``GET_DAT``). :class:`FieldTripBufferSource`
speaks that protocol and implements :class:`rtsource.stream.source.InputSource`, so the
streaming loop reads from it exactly as it reads from an LSL inlet::

    buffer (ring of samples 0, 1, 2, ...)  --WAIT_DAT/GET_DAT-->  source.buffer[:n], timestamps

Protocol (FieldTrip "buffer protocol" documentation, version 1): every message starts with
``version`` (uint16, = 1), ``command`` (uint16) and ``bufsize`` (uint32, bytes that follow).
The server answers in the client's byte order, detected from ``version``; this client always
writes little-endian and so reads little-endian.

What the header gives, and what it does not:

- channel names from the ``FT_CHUNK_CHANNEL_NAMES`` chunk (required: rtsource matches
  channels by name), the sampling rate and the data type from the fixed part;
- channel types from ``FT_CHUNK_CHANNEL_FLAGS`` when present (else empty, which the loop
  reads as EEG);
- no units. A ``FT_CHUNK_RESOLUTIONS`` chunk (BrainVision RDA convention: physical value =
  A/D value x resolution, in microvolts) is applied and the unit becomes ``resolution_unit``
  (``"uV"``); otherwise the channels have no unit and the user must state it with
  ``assume_unit`` (here or in the loop's options), because a factor of 10^6 is the classic
  silent error.

Timestamps: the buffer has no clock, only sample indices. Sample ``k`` gets
``t0 + (k - k0) / fsample`` on this machine's LSL clock (:func:`pylsl.local_clock`), anchored
so that the newest sample of the first block delivered carries the local time it arrived.
They are regular by construction; over hours they drift from the local clock by the
acquisition clock's rate error, exactly like an LSL stream without dejitter.

Guarantees (as the LSL inlet): no silent drops. If the buffer's ring overwrote samples this
client had not read yet (it fell behind by more than the ring holds), the client skips to the
oldest sample still there and the timestamps jump by exactly the number of missing samples,
so the loop's gap detection sees it; :attr:`FieldTripBufferSource.samples_missed` and
:attr:`~FieldTripBufferSource.gaps` count them. If the acquisition restarted (the buffer was
flushed and its sample count fell), the new samples are delivered after a time jump and
:attr:`~FieldTripBufferSource.restarts` counts it; a header with other channels or another
rate is refused.
"""

from __future__ import annotations

import logging
import socket
import struct
import time
import types
import urllib.parse
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from ..errors import ConfigError, StreamError
from .channels import StreamDescription

logger = logging.getLogger(__name__)

#: Default TCP port of the FieldTrip buffer.
DEFAULT_PORT = 1972

VERSION = 1
# commands (message.h of the reference implementation)
PUT_HDR, PUT_DAT, PUT_EVT, PUT_OK, PUT_ERR = 0x101, 0x102, 0x103, 0x104, 0x105
GET_HDR, GET_DAT, GET_EVT, GET_OK, GET_ERR = 0x201, 0x202, 0x203, 0x204, 0x205
FLUSH_HDR, FLUSH_DAT, FLUSH_EVT, FLUSH_OK, FLUSH_ERR = 0x301, 0x302, 0x303, 0x304, 0x305
WAIT_DAT, WAIT_OK, WAIT_ERR = 0x402, 0x404, 0x405

#: FieldTrip data type code -> NumPy dtype (little-endian, as this client talks).
DATATYPES: Mapping[int, np.dtype] = types.MappingProxyType(
    {
        0: np.dtype("i1"),  # DATATYPE_CHAR
        1: np.dtype("u1"),
        2: np.dtype("<u2"),
        3: np.dtype("<u4"),
        4: np.dtype("<u8"),
        5: np.dtype("i1"),
        6: np.dtype("<i2"),
        7: np.dtype("<i4"),
        8: np.dtype("<i8"),
        9: np.dtype("<f4"),
        10: np.dtype("<f8"),
    }
)
DATATYPE_NAMES = {0: "char", 1: "uint8", 2: "uint16", 3: "uint32", 4: "uint64", 5: "int8", 6: "int16", 7: "int32", 8: "int64", 9: "float32", 10: "float64"}

# header chunk types
CHUNK_UNSPECIFIED = 0
CHUNK_CHANNEL_NAMES = 1
CHUNK_CHANNEL_FLAGS = 2
CHUNK_RESOLUTIONS = 3
CHUNK_ASCII_KEYVAL = 4

_PREFIX = struct.Struct("<HHI")  # messagedef_t
_HEADERDEF = struct.Struct("<IIIfII")  # nchans, nsamples, nevents, fsample, data_type, bufsize
_DATADEF = struct.Struct("<IIII")  # nchans, nsamples, data_type, bufsize
_UINT32_MAX = 0xFFFFFFFF
# Largest message this client accepts (a CTF .res4 chunk is a few MB; data requests are bounded by max_chunk).
_MAX_MESSAGE = 512 * 1024 * 1024


@dataclass(frozen=True)
class FieldTripHeader:
    """The parts of a FieldTrip buffer header rtsource uses.

    Attributes
    ----------
    n_channels, n_samples, n_events : int
        From the fixed part; ``n_samples`` / ``n_events`` are the totals written so far.
    sfreq : float
        Sampling rate in Hz.
    data_type : int
        FieldTrip data type code (see :data:`DATATYPES`).
    ch_names : tuple of str
        From ``FT_CHUNK_CHANNEL_NAMES`` (empty if the chunk is absent).
    ch_types : tuple of str
        From ``FT_CHUNK_CHANNEL_FLAGS`` (empty strings if absent).
    resolutions : ndarray of float64, shape (n_channels,), or None
        From ``FT_CHUNK_RESOLUTIONS`` (physical units per A/D unit).
    chunks : mapping of int to bytes
        Every chunk as received, by type (the last one if a type repeats).
    """

    n_channels: int
    n_samples: int
    n_events: int
    sfreq: float
    data_type: int
    ch_names: tuple[str, ...]
    ch_types: tuple[str, ...]
    resolutions: np.ndarray | None = None
    chunks: Mapping[int, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.resolutions is not None:
            r = np.array(self.resolutions, dtype=np.float64)
            r.flags.writeable = False
            object.__setattr__(self, "resolutions", r)
        object.__setattr__(self, "chunks", types.MappingProxyType(dict(self.chunks)))


def _split_zero_terminated(blob: bytes) -> list[str]:
    parts = blob.split(b"\0")
    if parts and parts[-1] == b"":
        parts = parts[:-1]
    return [p.decode("utf-8", errors="replace") for p in parts]


def parse_header(payload: bytes) -> FieldTripHeader:
    """Decode a ``GET_HDR`` answer (fixed ``headerdef_t`` then chunks) into a header.

    Raises
    ------
    StreamError
        The payload is shorter than it says, or a chunk contradicts the channel count.
    """
    if len(payload) < _HEADERDEF.size:
        raise StreamError(f"FieldTrip header is {len(payload)} bytes, shorter than the fixed {_HEADERDEF.size}-byte part")
    nchans, nsamples, nevents, fsample, data_type, bufsize = _HEADERDEF.unpack_from(payload)
    rest = payload[_HEADERDEF.size : _HEADERDEF.size + bufsize]
    if len(rest) < bufsize:
        raise StreamError(f"FieldTrip header announces {bufsize} bytes of chunks but carries {len(rest)}")
    chunks: dict[int, bytes] = {}
    pos = 0
    while pos + 8 <= len(rest):
        ctype, csize = struct.unpack_from("<II", rest, pos)
        pos += 8
        if pos + csize > len(rest):
            raise StreamError(f"FieldTrip header chunk of type {ctype} claims {csize} bytes but only {len(rest) - pos} remain")
        chunks[ctype] = bytes(rest[pos : pos + csize])
        pos += csize
    names: tuple[str, ...] = ()
    if CHUNK_CHANNEL_NAMES in chunks:
        names = tuple(_split_zero_terminated(chunks[CHUNK_CHANNEL_NAMES]))
        if len(names) != nchans:
            raise StreamError(f"FieldTrip header has {nchans} channels but its channel-names chunk lists {len(names)} names")
    ch_types = ("",) * nchans
    if CHUNK_CHANNEL_FLAGS in chunks:
        ch_types = _parse_flags(chunks[CHUNK_CHANNEL_FLAGS], nchans)
    resolutions = None
    if CHUNK_RESOLUTIONS in chunks:
        blob = chunks[CHUNK_RESOLUTIONS]
        if len(blob) != 8 * nchans:
            raise StreamError(f"FieldTrip resolutions chunk has {len(blob)} bytes; expected 8 x {nchans} channels")
        resolutions = np.frombuffer(blob, dtype="<f8").astype(np.float64)
    return FieldTripHeader(int(nchans), int(nsamples), int(nevents), float(fsample), int(data_type), names, ch_types, resolutions, chunks)


def _parse_flags(blob: bytes, nchans: int) -> tuple[str, ...]:
    """``FT_CHUNK_CHANNEL_FLAGS``: "meg_ad_eog\\0" then one byte per channel (1-based index
    into the underscore-separated names; 0 means unflagged)."""
    end = blob.find(b"\0")
    if end < 0 or len(blob) - end - 1 != nchans:
        logger.warning("ignoring a malformed FieldTrip channel-flags chunk (%d bytes for %d channels)", len(blob), nchans)
        return ("",) * nchans
    kinds = blob[:end].decode("ascii", errors="replace").split("_")
    out = []
    for code in blob[end + 1 :]:
        out.append(kinds[code - 1].upper() if 1 <= code <= len(kinds) else "")
    return tuple(out)


# ---- URLs --------------------------------------------------------------------------------

def parse_source_url(url: str) -> tuple[str, str, int]:
    """Split an input-source URL into ``(kind, host, port)``.

    ``ftbuffer://HOST[:PORT]`` (port defaults to 1972; IPv6 hosts in brackets) gives
    ``("ftbuffer", HOST, PORT)``; ``lsl`` or ``lsl://`` gives ``("lsl", "", 0)`` (the
    stream is then chosen by name / type / source_id as usual).

    Raises
    ------
    ConfigError
        An unknown scheme, a missing host or a port outside 1-65535.
    """
    text = str(url).strip()
    if text in ("lsl", "lsl://", ""):
        return ("lsl", "", 0)
    parts = urllib.parse.urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme == "lsl":
        return ("lsl", "", 0)
    if scheme not in ("ftbuffer", "buffer"):
        raise ConfigError(
            f"--source {text!r} is not a source rtsource knows; use ftbuffer://HOST:PORT for a FieldTrip "
            "buffer (e.g. ftbuffer://localhost:1972) or leave it out for LSL"
        )
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"--source {text!r} has an invalid port; use ftbuffer://HOST:PORT with PORT in 1-65535") from None
    host = parts.hostname or ""
    if not host:
        raise ConfigError(f"--source {text!r} names no host; use ftbuffer://HOST:PORT (e.g. ftbuffer://localhost:1972)")
    if port is None:
        port = DEFAULT_PORT
    if not 1 <= port <= 65535:
        raise ConfigError(f"--source {text!r}: port {port} is outside 1-65535")
    return ("ftbuffer", host, int(port))


def open_ftbuffer(url: str, max_chunk: int, **kwargs) -> "FieldTripBufferSource":
    """Connect to the FieldTrip buffer at ``url`` (``ftbuffer://host:port``).

    Keyword arguments go to :class:`FieldTripBufferSource` (``assume_unit``,
    ``open_timeout``, ``name``, ...).
    """
    kind, host, port = parse_source_url(url)
    if kind != "ftbuffer":
        raise ConfigError(f"open_ftbuffer needs an ftbuffer://HOST:PORT URL, got {url!r}")
    return FieldTripBufferSource(host, port, max_chunk, **kwargs)


# ---- the connection ----------------------------------------------------------------------

class _Connection:
    """One TCP connection to a buffer server; one request at a time."""

    def __init__(self, host: str, port: int, timeout: float):
        self.address = f"{host}:{port}"
        try:
            self._sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise StreamError(
                f"cannot connect to the FieldTrip buffer at {self.address} ({exc}); start the buffer "
                "(or the acquisition bridge that hosts it) first, or fix the host:port in ftbuffer://HOST:PORT"
            ) from None
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass

    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = self._sock.recv_into(view[got:], n - got)
            if k == 0:
                raise ConnectionError(f"the FieldTrip buffer at {self.address} closed the connection")
            got += k
        return bytes(buf)

    def request(self, command: int, payload: bytes = b"", timeout: float = 10.0) -> tuple[int, bytes]:
        """Send one request and return ``(command, payload)`` of the answer."""
        self._sock.settimeout(timeout)
        self._sock.sendall(_PREFIX.pack(VERSION, command, len(payload)) + payload)
        version, answer, size = _PREFIX.unpack(self._recv_exact(_PREFIX.size))
        if version != VERSION:
            raise StreamError(f"the FieldTrip buffer at {self.address} answered with protocol version {version}; rtsource speaks version {VERSION}")
        if size > _MAX_MESSAGE:
            raise StreamError(f"the FieldTrip buffer at {self.address} announced a {size}-byte answer; refusing (limit {_MAX_MESSAGE})")
        return answer, self._recv_exact(size) if size else b""

    def get_header(self, timeout: float = 10.0) -> FieldTripHeader | None:
        """The header, or None if the buffer has none yet."""
        cmd, payload = self.request(GET_HDR, timeout=timeout)
        if cmd == GET_ERR:
            return None
        if cmd != GET_OK:
            raise StreamError(f"the FieldTrip buffer at {self.address} answered GET_HDR with command 0x{cmd:x}")
        return parse_header(payload)

    def wait_data(self, nsamples: int, nevents: int, timeout_ms: int) -> tuple[int, int] | None:
        """``WAIT_DAT``: block until more than ``nsamples`` samples (or ``nevents`` events)
        exist or ``timeout_ms`` passed; return the current ``(nsamples, nevents)``, or None
        if the buffer has no header."""
        payload = struct.pack("<III", min(nsamples, _UINT32_MAX), min(nevents, _UINT32_MAX), max(0, int(timeout_ms)))
        cmd, answer = self.request(WAIT_DAT, payload, timeout=timeout_ms / 1000.0 + 10.0)
        if cmd == WAIT_ERR:
            return None
        if cmd != WAIT_OK or len(answer) < 8:
            raise StreamError(f"the FieldTrip buffer at {self.address} answered WAIT_DAT with command 0x{cmd:x} ({len(answer)} bytes)")
        ns, ne = struct.unpack_from("<II", answer)
        return int(ns), int(ne)

    def get_data(self, begin: int, end: int, timeout: float = 10.0) -> tuple[int, int, int, bytes] | None:
        """``GET_DAT`` for samples ``begin..end`` (inclusive); ``(nchans, nsamples, data_type,
        bytes)`` or None if the server refused (samples not, or no longer, in its ring)."""
        cmd, answer = self.request(GET_DAT, struct.pack("<II", begin, end), timeout=timeout)
        if cmd == GET_ERR:
            return None
        if cmd != GET_OK or len(answer) < _DATADEF.size:
            raise StreamError(f"the FieldTrip buffer at {self.address} answered GET_DAT with command 0x{cmd:x} ({len(answer)} bytes)")
        nchans, nsamples, data_type, bufsize = _DATADEF.unpack_from(answer)
        data = answer[_DATADEF.size : _DATADEF.size + bufsize]
        if len(data) != bufsize:
            raise StreamError(f"the FieldTrip buffer at {self.address} sent {len(data)} data bytes but announced {bufsize}")
        return int(nchans), int(nsamples), int(data_type), data


# ---- the input source --------------------------------------------------------------------

class FieldTripBufferSource:
    """A FieldTrip realtime buffer as an rtsource input source.

    Implements :class:`rtsource.stream.source.InputSource`: :attr:`description` (from the
    header) is available after construction, :meth:`open` starts at the buffer's current
    end, :meth:`pull` writes samples into :attr:`buffer` and returns their timestamps.

    Parameters
    ----------
    host, port : str, int
        Where the buffer listens.
    max_chunk : int
        Most samples returned by one :meth:`pull`.
    name : str, optional
        Stream name in :attr:`description` (default ``"ftbuffer://host:port"``).
    assume_unit : str
        Unit of channels the header gives none for (e.g. ``"uV"``, ``"T"``); empty leaves
        them without unit, so the loop refuses them unless it is told the unit itself.
    resolution_unit : str
        Unit of the values after applying ``FT_CHUNK_RESOLUTIONS`` (RDA convention: uV).
    use_resolutions : bool
        Apply the resolutions chunk when the header has one.
    open_timeout : float
        Seconds to wait for the connection and for a header to appear in the buffer.

    Attributes
    ----------
    header : FieldTripHeader
    samples_delivered, samples_missed, gaps, restarts : int
        Counters: samples returned by :meth:`pull`; samples the ring overwrote before they
        were read (each run of them is one gap); acquisition restarts seen.

    Raises
    ------
    StreamError
        No connection, no header within ``open_timeout``, no channel names, a zero rate or
        an unsupported data type.
    """

    def __init__(
        self,
        host: str,
        port: int = DEFAULT_PORT,
        max_chunk: int = 1024,
        *,
        name: str | None = None,
        assume_unit: str = "",
        resolution_unit: str = "uV",
        use_resolutions: bool = True,
        open_timeout: float = 10.0,
    ):
        self.host, self.port = str(host), int(port)
        self.address = f"{self.host}:{self.port}"
        self.max_chunk = int(max_chunk)
        if self.max_chunk < 1:
            raise ConfigError(f"max_chunk is {max_chunk!r}; pass a positive number of samples")
        self._open_timeout = float(open_timeout)
        self._conn: _Connection | None = _Connection(self.host, self.port, self._open_timeout)
        try:
            header = self._wait_for_header(self._open_timeout)
            self._check_usable(header)
        except Exception:
            self.close()
            raise
        self.header = header
        self._assume_unit = assume_unit
        self._resolution_unit = resolution_unit
        self._scale = header.resolutions if (use_resolutions and header.resolutions is not None) else None
        if self._scale is not None and header.data_type == 9:
            dtype = np.float32
            # rescaling float32 data in float64 and storing it back as float32 loses nothing
            # the acquisition had; keep float32 so the loop's float32 operator sees the same numbers
        elif self._scale is None and header.data_type in (9, 10):
            dtype = np.float32 if header.data_type == 9 else np.float64
        else:
            dtype = np.float64
        self._dtype = DATATYPES[header.data_type]
        units = self._units(header)
        self.description = StreamDescription(
            name=name or f"ftbuffer://{self.address}",
            type="EEG" if all(t in ("", "EEG") for t in header.ch_types) else "",
            source_id=f"ftbuffer://{self.address}",
            sfreq=header.sfreq,
            n_channels=header.n_channels,
            channel_format="float32" if dtype == np.float32 else "double64",
            ch_names=header.ch_names,
            ch_types=header.ch_types,
            ch_units=units,
            hostname=self.host,
        )
        self.buffer = np.zeros((self.max_chunk, header.n_channels), dtype=dtype)
        self._request_limit = self.max_chunk  # shrinks if the server refuses large requests
        self.is_open = False
        self._next = 0  # next sample index to deliver
        self._available = 0  # samples the buffer held at the last look
        self._nevents = 0
        self._t0 = None  # timestamp of sample self._k0
        self._k0 = 0
        self._last_ts = None
        self.samples_delivered = 0
        self.samples_missed = 0
        self.gaps = 0
        self.restarts = 0
        self._lost_connection = False

    # ---- setup ----
    def _wait_for_header(self, timeout: float) -> FieldTripHeader:
        deadline = time.monotonic() + timeout
        while True:
            try:
                header = self._conn.get_header(timeout=max(1.0, timeout))
            except (OSError, ConnectionError) as exc:
                raise StreamError(f"lost the FieldTrip buffer at {self.address} while reading its header ({exc})") from None
            if header is not None:
                return header
            if time.monotonic() >= deadline:
                raise StreamError(
                    f"the FieldTrip buffer at {self.address} has no header after {timeout:g} s; start the "
                    "acquisition (it writes the header), or wait longer (open_timeout)"
                )
            time.sleep(0.1)

    def _check_usable(self, h: FieldTripHeader) -> None:
        where = f"the FieldTrip buffer at {self.address}"
        if h.n_channels < 1:
            raise StreamError(f"{where} has a header with {h.n_channels} channels")
        if not (np.isfinite(h.sfreq) and h.sfreq > 0):
            raise StreamError(f"{where} has sampling rate {h.sfreq!r}; source estimation needs a regular, positive rate")
        if h.data_type not in DATATYPES or h.data_type == 0:
            raise StreamError(
                f"{where} holds data of type {DATATYPE_NAMES.get(h.data_type, h.data_type)!r}; rtsource reads numeric "
                f"samples ({', '.join(DATATYPE_NAMES[k] for k in range(1, 11))})"
            )
        if not h.ch_names:
            raise StreamError(
                f"{where} has no channel names in its header (no FT_CHUNK_CHANNEL_NAMES chunk); rtsource matches "
                "channels by name, so the acquisition must send them"
            )

    def _units(self, h: FieldTripHeader) -> tuple[str, ...]:
        if self._scale is not None:
            return (self._resolution_unit,) * h.n_channels
        return (self._assume_unit,) * h.n_channels

    # ---- InputSource ----
    def open(self) -> None:
        """Start at the buffer's current end: samples written before this are not delivered."""
        counts = self._call(lambda c: c.wait_data(_UINT32_MAX, _UINT32_MAX, 0))
        if counts is None:
            raise StreamError(f"the FieldTrip buffer at {self.address} lost its header")
        self._available, self._nevents = counts
        self._next = self._available
        self.is_open = True

    def time_correction(self, timeout: float = 2.0) -> float:
        """0: timestamps are made on this machine's LSL clock already."""
        return 0.0

    def pull(self, timeout: float) -> np.ndarray:
        """Wait up to ``timeout`` s for samples; return the timestamps (n,) of ``buffer[:n]``."""
        if not self.is_open:
            self.open()
        deadline = time.monotonic() + max(0.0, timeout)
        first = True
        while True:
            if not first and time.monotonic() >= deadline:
                return np.zeros(0)
            first = False
            if self._available <= self._next:
                remaining = deadline - time.monotonic()
                counts = self._call(lambda c: c.wait_data(self._next, self._nevents, int(max(0.0, remaining) * 1000)))
                if counts is None:  # connection trouble, or no header (the buffer was flushed)
                    time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
                    continue
                ns, self._nevents = counts
                if ns < self._next:
                    self._restart(ns)
                self._available = ns
                if self._available <= self._next:
                    continue  # timed out, or an event arrived rather than samples
            begin = self._next
            end = min(self._available, begin + self._request_limit) - 1
            got = self._call(lambda c: c.get_data(begin, end))
            if got is None:
                if self._conn is not None:
                    self._recover(begin, end)
                continue
            return self._deliver(begin, got)

    def close(self) -> None:
        """Close the connection; idempotent."""
        self.is_open = False
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # ---- internals ----
    def _call(self, fn):
        """Run one request; on a broken connection try to reconnect once and return None."""
        if self._conn is None:
            try:
                self._conn = _Connection(self.host, self.port, min(2.0, self._open_timeout))
                header = self._conn.get_header()
                if header is None:
                    raise StreamError("no header")
                self._check_same_layout(header)
                logger.warning("reconnected to the FieldTrip buffer at %s", self.address)
                self._lost_connection = False
            except (StreamError, OSError):
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                time.sleep(0.2)
                return None
        try:
            return fn(self._conn)
        except (OSError, ConnectionError) as exc:
            if not self._lost_connection:
                logger.warning("lost the FieldTrip buffer at %s (%s); reconnecting", self.address, exc)
            self._lost_connection = True
            self._conn.close()
            self._conn = None
            return None

    def _check_same_layout(self, h: FieldTripHeader) -> None:
        old = self.header
        if (h.n_channels, h.sfreq, h.data_type, h.ch_names) != (old.n_channels, old.sfreq, old.data_type, old.ch_names):
            raise StreamError(
                f"the FieldTrip buffer at {self.address} now has a different header ({h.n_channels} ch @ {h.sfreq:g} Hz, "
                f"type {DATATYPE_NAMES.get(h.data_type)}; was {old.n_channels} ch @ {old.sfreq:g} Hz, type "
                f"{DATATYPE_NAMES.get(old.data_type)}, or other channel names); restart rtsource for the new acquisition"
            )

    def _restart(self, ns: int) -> None:
        """The sample count fell: the acquisition restarted. Deliver the new samples after a time jump."""
        header = self._call(lambda c: c.get_header())
        if header is not None:
            self._check_same_layout(header)
        self.restarts += 1
        logger.warning(
            "the FieldTrip buffer at %s restarted (sample count fell from %d to %d); continuing with its new samples",
            self.address, self._next, ns,
        )  # fmt: skip
        self._next = 0
        self._available = ns
        if self._t0 is not None:
            # new time base: sample 0 of the new run cannot come before the last sample delivered
            now = _local_clock()
            period = 1.0 / self.header.sfreq
            self._k0 = 0
            self._t0 = max(self._last_ts + period, now - max(ns - 1, 0) * period)

    def _recover(self, begin: int, end: int) -> None:
        """``GET_DAT`` for begin..end was refused: find out why and move on without hiding anything."""
        probe = self._call(lambda c: c.get_data(begin, begin))
        if probe is not None:
            # the first sample is there: the server refused the size of the request
            if self._request_limit == 1:
                raise StreamError(f"the FieldTrip buffer at {self.address} refuses to send sample {begin} alone")
            self._request_limit = max(1, self._request_limit // 2)
            logger.warning("the FieldTrip buffer at %s refused %d samples at once; asking for %d", self.address, end - begin + 1, self._request_limit)
            return
        counts = self._call(lambda c: c.wait_data(_UINT32_MAX, _UINT32_MAX, 0))
        if counts is None:
            return
        ns, self._nevents = counts
        if ns <= begin:
            if ns < begin:
                self._restart(ns)
            self._available = ns
            return
        # the ring overwrote samples from `begin` on: binary search for the oldest one left
        lo, hi = begin, ns - 1  # lo is gone; hi (the newest) is there unless the ring is empty
        if self._call(lambda c: c.get_data(hi, hi)) is None:
            raise StreamError(f"the FieldTrip buffer at {self.address} holds {ns} samples but refuses to send the newest one")
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self._call(lambda c: c.get_data(mid, mid)) is None:
                lo = mid
            else:
                hi = mid
        missed = hi - begin
        self.samples_missed += missed
        self.gaps += 1
        self._next = hi
        self._available = ns
        logger.warning(
            "the FieldTrip buffer at %s overwrote %d samples (%.3f s) before rtsource read them; "
            "they are a gap in the output (the timestamps jump by that much)",
            self.address, missed, missed / self.header.sfreq,
        )  # fmt: skip

    def _deliver(self, begin: int, got) -> np.ndarray:
        nchans, n, data_type, data = got
        h = self.header
        if nchans != h.n_channels or data_type != h.data_type or n < 1 or len(data) != n * nchans * self._dtype.itemsize:
            raise StreamError(
                f"the FieldTrip buffer at {self.address} sent {n} samples x {nchans} channels of type "
                f"{DATATYPE_NAMES.get(data_type, data_type)} ({len(data)} bytes); the header says {h.n_channels} channels "
                f"of type {DATATYPE_NAMES.get(h.data_type)}"
            )
        n = min(n, self.max_chunk)
        block = np.frombuffer(data, dtype=self._dtype, count=n * nchans).reshape(n, nchans)
        if self._scale is not None:
            np.multiply(block, self._scale, out=self.buffer[:n], casting="unsafe")
        else:
            self.buffer[:n] = block
        if self._t0 is None:
            # anchor: the newest sample of the first block arrived now
            self._k0 = begin + n - 1
            self._t0 = _local_clock()
        ts = self._t0 + (np.arange(begin, begin + n, dtype=np.float64) - self._k0) / h.sfreq
        self._next = begin + n
        self._last_ts = float(ts[-1])
        self.samples_delivered += n
        return ts

    def samples_available(self) -> int:
        """Samples in the buffer not yet delivered (as of the last request)."""
        return max(0, self._available - self._next)

    def counters(self) -> dict:
        """Delivered / missed samples, gaps and restarts (for logs and telemetry)."""
        return {"samples_delivered": self.samples_delivered, "samples_missed": self.samples_missed, "gaps": self.gaps, "restarts": self.restarts}

    def __enter__(self) -> "FieldTripBufferSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _local_clock() -> float:
    import pylsl

    return float(pylsl.local_clock())
