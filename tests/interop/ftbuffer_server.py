"""A FieldTrip realtime buffer server for the tests, written from the protocol documentation.

It is deliberately independent of ``rtsource.stream.ftbuffer`` (its own constants, packing and
parsing) so that the client is checked against a second reading of the protocol, not against
itself. It speaks TCP protocol version 1 on a real socket, one thread per client:

- ``PUT_HDR`` / ``PUT_DAT`` / ``PUT_EVT``, ``GET_HDR`` / ``GET_DAT`` / ``GET_EVT``,
  ``FLUSH_HDR`` / ``FLUSH_DAT`` / ``FLUSH_EVT`` and ``WAIT_DAT``;
- requests in either byte order (detected from the 16-bit ``version`` field), answers in the
  client's byte order, data kept in little-endian;
- a ring buffer of ``capacity`` samples: ``GET_DAT`` for samples that fell out of it, or that
  do not exist yet, is answered with ``GET_ERR``, as the reference buffer does.

Tests feed it either over TCP with :class:`FieldTripWriter` (what an acquisition bridge does)
or directly with :meth:`FieldTripBufferServer.put_header` / :meth:`~FieldTripBufferServer.put_data`.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

import numpy as np

# message.h command codes
C_PUT_HDR, C_PUT_DAT, C_PUT_EVT, C_PUT_OK, C_PUT_ERR = 0x101, 0x102, 0x103, 0x104, 0x105
C_GET_HDR, C_GET_DAT, C_GET_EVT, C_GET_OK, C_GET_ERR = 0x201, 0x202, 0x203, 0x204, 0x205
C_FLUSH_HDR, C_FLUSH_DAT, C_FLUSH_EVT, C_FLUSH_OK, C_FLUSH_ERR = 0x301, 0x302, 0x303, 0x304, 0x305
C_WAIT_DAT, C_WAIT_OK, C_WAIT_ERR = 0x402, 0x404, 0x405

# data type code -> (numpy kind + size without byte order)
TYPES = {0: "i1", 1: "u1", 2: "u2", 3: "u4", 4: "u8", 5: "i1", 6: "i2", 7: "i4", 8: "i8", 9: "f4", 10: "f8"}
TYPE_CODE = {np.dtype(np.float32): 9, np.dtype(np.float64): 10, np.dtype(np.int16): 6, np.dtype(np.int32): 7}

CHUNK_CHANNEL_NAMES, CHUNK_CHANNEL_FLAGS, CHUNK_RESOLUTIONS = 1, 2, 3


def names_chunk(names) -> tuple[int, bytes]:
    """``FT_CHUNK_CHANNEL_NAMES``: the names, each terminated by a zero byte."""
    return CHUNK_CHANNEL_NAMES, b"".join(n.encode() + b"\0" for n in names)


def resolutions_chunk(resolutions, order: str = "<") -> tuple[int, bytes]:
    """``FT_CHUNK_RESOLUTIONS``: one double per channel."""
    return CHUNK_RESOLUTIONS, np.asarray(resolutions, dtype=order + "f8").tobytes()


def flags_chunk(kinds: list[str], codes: list[int]) -> tuple[int, bytes]:
    """``FT_CHUNK_CHANNEL_FLAGS``: "eeg_eog\\0" then one byte per channel."""
    return CHUNK_CHANNEL_FLAGS, "_".join(kinds).encode() + b"\0" + bytes(codes)


class _State:
    """The buffer: header, ring of samples, events; guarded by one condition variable."""

    def __init__(self, capacity: int):
        self.capacity = int(capacity)
        self.cond = threading.Condition()
        self.clear()

    def clear(self):
        self.has_header = False
        self.nchans = 0
        self.fsample = 0.0
        self.data_type = 0
        self.chunks: list[tuple[int, bytes]] = []
        self.clear_data()
        self.events: list[bytes] = []

    def clear_data(self):
        self.nsamples = 0
        self.ring = None
        if self.has_header:
            self.ring = np.zeros((self.capacity, self.nchans), dtype="<" + TYPES[self.data_type])

    def oldest(self) -> int:
        return max(0, self.nsamples - self.capacity)


class FieldTripBufferServer:
    """A FieldTrip buffer listening on ``host:port`` (port 0: any free port).

    Parameters
    ----------
    capacity : int
        Samples kept in the ring.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, capacity: int = 60000):
        self._state = _State(capacity)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, port))
        self._listener.listen(8)
        self._listener.settimeout(0.2)
        self.host, self.port = self._listener.getsockname()[:2]
        self._stop = threading.Event()
        self._clients: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self.requests: dict[int, int] = {}  # command -> count (for tests)
        self._accept_thread = threading.Thread(target=self._accept, daemon=True, name="ftbuffer-accept")

    @property
    def url(self) -> str:
        return f"ftbuffer://{self.host}:{self.port}"

    def start(self) -> "FieldTripBufferServer":
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._state.cond:
            self._state.cond.notify_all()
        self._accept_thread.join(timeout=5)
        for c in list(self._clients):
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        for t in self._threads:
            t.join(timeout=5)
        self._listener.close()

    def drop_clients(self) -> None:
        """Cut every client connection (the server keeps running and keeps its data)."""
        for c in list(self._clients):
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- direct feeding (in-process acquisition) ----
    def put_header(self, nchans: int, fsample: float, data_type: int, chunks=()) -> None:
        s = self._state
        with s.cond:
            s.clear()
            s.has_header = True
            s.nchans, s.fsample, s.data_type = int(nchans), float(fsample), int(data_type)
            s.chunks = [(int(t), bytes(b)) for t, b in chunks]
            s.clear_data()
            s.cond.notify_all()

    def put_data(self, block: np.ndarray) -> None:
        s = self._state
        block = np.asarray(block)
        with s.cond:
            assert s.has_header and block.shape[1] == s.nchans
            self._append(block.astype("<" + TYPES[s.data_type]))

    def flush_data(self) -> None:
        with self._state.cond:
            self._state.clear_data()
            self._state.cond.notify_all()

    @property
    def nsamples(self) -> int:
        return self._state.nsamples

    def _append(self, block: np.ndarray) -> None:
        s = self._state
        for row in block:  # ring with a write index (slow, but plainly right)
            s.ring[s.nsamples % s.capacity] = row
            s.nsamples += 1
        s.cond.notify_all()

    # ---- network ----
    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except (socket.timeout, OSError):
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._clients.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True, name="ftbuffer-client")
            self._threads.append(t)
            t.start()

    @staticmethod
    def _recv(conn, n: int) -> bytes:
        out = b""
        while len(out) < n:
            part = conn.recv(n - len(out))
            if not part:
                raise ConnectionError("client went away")
            out += part
        return out

    def _serve(self, conn):
        try:
            while not self._stop.is_set():
                prefix = self._recv(conn, 8)
                if struct.unpack("<H", prefix[:2])[0] == 1:
                    e = "<"
                elif struct.unpack(">H", prefix[:2])[0] == 1:
                    e = ">"
                else:
                    return  # not protocol version 1: hang up
                _, command, bufsize = struct.unpack(e + "HHI", prefix)
                payload = self._recv(conn, bufsize) if bufsize else b""
                self.requests[command] = self.requests.get(command, 0) + 1
                answer, body = self._handle(command, payload, e)
                conn.sendall(struct.pack(e + "HHI", 1, answer, len(body)) + body)
        except (ConnectionError, OSError):
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def _handle(self, command: int, p: bytes, e: str) -> tuple[int, bytes]:
        s = self._state
        if command == C_PUT_HDR:
            nchans, _, _, fsample, data_type, size = struct.unpack_from(e + "IIIfII", p)
            chunks, pos = [], 24
            while pos < 24 + size:
                ctype, csize = struct.unpack_from(e + "II", p, pos)
                blob = p[pos + 8 : pos + 8 + csize]
                if ctype == CHUNK_RESOLUTIONS and e == ">":
                    blob = np.frombuffer(blob, ">f8").astype("<f8").tobytes()
                chunks.append((ctype, blob))
                pos += 8 + csize
            if data_type not in TYPES or nchans == 0:
                return C_PUT_ERR, b""
            self.put_header(nchans, fsample, data_type, chunks)
            return C_PUT_OK, b""
        if command == C_PUT_DAT:
            nchans, nsamples, data_type, size = struct.unpack_from(e + "IIII", p)
            with s.cond:
                if not s.has_header or nchans != s.nchans or data_type != s.data_type:
                    return C_PUT_ERR, b""
                block = np.frombuffer(p[16 : 16 + size], e + TYPES[data_type]).reshape(nsamples, nchans)
                self._append(block.astype("<" + TYPES[data_type]))
            return C_PUT_OK, b""
        if command == C_PUT_EVT:
            with s.cond:
                if not s.has_header:
                    return C_PUT_ERR, b""
                pos = 0
                while pos + 32 <= len(p):
                    size = struct.unpack_from(e + "I", p, pos + 28)[0]
                    s.events.append(p[pos : pos + 32 + size])
                    pos += 32 + size
                s.cond.notify_all()
            return C_PUT_OK, b""
        if command == C_GET_HDR:
            with s.cond:
                if not s.has_header:
                    return C_GET_ERR, b""
                chunk_bytes = b""
                for ctype, blob in s.chunks:
                    if ctype == CHUNK_RESOLUTIONS and e == ">":
                        blob = np.frombuffer(blob, "<f8").astype(">f8").tobytes()
                    chunk_bytes += struct.pack(e + "II", ctype, len(blob)) + blob
                fixed = struct.pack(e + "IIIfII", s.nchans, s.nsamples, len(s.events), s.fsample, s.data_type, len(chunk_bytes))
            return C_GET_OK, fixed + chunk_bytes
        if command == C_GET_DAT:
            with s.cond:
                if not s.has_header:
                    return C_GET_ERR, b""
                if len(p) >= 8:
                    begin, end = struct.unpack_from(e + "II", p)
                else:
                    begin, end = s.oldest(), s.nsamples - 1
                if s.nsamples == 0 or end < begin or begin < s.oldest() or end >= s.nsamples:
                    return C_GET_ERR, b""
                rows = np.arange(begin, end + 1) % s.capacity
                data = s.ring[rows].astype(e + TYPES[s.data_type]).tobytes()
                fixed = struct.pack(e + "IIII", s.nchans, end - begin + 1, s.data_type, len(data))
            return C_GET_OK, fixed + data
        if command == C_GET_EVT:
            with s.cond:
                if not s.has_header:
                    return C_GET_ERR, b""
                return C_GET_OK, b"".join(s.events)
        if command == C_WAIT_DAT:
            th_samples, th_events, timeout_ms = struct.unpack_from(e + "III", p)
            deadline = time.monotonic() + timeout_ms / 1000.0
            with s.cond:
                if not s.has_header:
                    return C_WAIT_ERR, b""
                while not (s.nsamples > th_samples or len(s.events) > th_events) and not self._stop.is_set():
                    left = deadline - time.monotonic()
                    if left <= 0 or not s.has_header:
                        break
                    s.cond.wait(left)
                return C_WAIT_OK, struct.pack(e + "II", s.nsamples, len(s.events))
        if command == C_FLUSH_HDR:
            with s.cond:
                s.clear()
                s.cond.notify_all()
            return C_FLUSH_OK, b""
        if command == C_FLUSH_DAT:
            self.flush_data()
            return C_FLUSH_OK, b""
        if command == C_FLUSH_EVT:
            with s.cond:
                s.events = []
            return C_FLUSH_OK, b""
        return C_GET_ERR, b""


class FieldTripWriter:
    """An acquisition-side client: ``PUT_HDR`` and ``PUT_DAT`` over TCP (optionally big-endian)."""

    def __init__(self, host: str, port: int, byteorder: str = "<"):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.e = byteorder

    def _request(self, command: int, payload: bytes) -> int:
        self.sock.sendall(struct.pack(self.e + "HHI", 1, command, len(payload)) + payload)
        head = FieldTripBufferServer._recv(self.sock, 8)
        _, answer, size = struct.unpack(self.e + "HHI", head)
        if size:
            FieldTripBufferServer._recv(self.sock, size)
        return answer

    def put_header(self, nchans: int, fsample: float, data_type: int, chunks=()) -> None:
        body = b"".join(struct.pack(self.e + "II", t, len(b)) + b for t, b in chunks)
        fixed = struct.pack(self.e + "IIIfII", nchans, 0, 0, fsample, data_type, len(body))
        assert self._request(C_PUT_HDR, fixed + body) == C_PUT_OK

    def put_data(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block)
        code = TYPE_CODE[block.dtype.newbyteorder("=")] if block.dtype.byteorder not in ("=", "|") else TYPE_CODE[block.dtype]
        data = block.astype(self.e + TYPES[code]).tobytes()
        fixed = struct.pack(self.e + "IIII", block.shape[1], block.shape[0], code, len(data))
        assert self._request(C_PUT_DAT, fixed + data) == C_PUT_OK

    def flush_header(self) -> None:
        assert self._request(C_FLUSH_HDR, b"") == C_FLUSH_OK

    def close(self) -> None:
        self.sock.close()
