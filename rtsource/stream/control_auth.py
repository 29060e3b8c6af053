"""The control protocol: what a command on ``NAME-control`` looks like, and how a hostile
one is refused before it costs anything.

Anyone who can see an LSL stream can write to it, so every sample is untrusted:

    raw bytes ─> size <= MAX_COMMAND_BYTES? ─> UTF-8? ─> "rtsource-control/1 MAC BODY"?
        ─> BODY a flat JSON object (no nesting: checked by a scan before json.loads)?
        ─> HMAC-SHA256(key, output name + BODY) == MAC? ─> sent within the replay window?
        ─> id not seen before? ─> Command          (any "no" above: a Refusal)

The key is a random secret in a file only its owner can read (mode 0600), created by the
loop (:func:`ensure_key`) and read by ``rtsource mark-bad`` (:func:`read_key`) on the same
machine; another user, or another machine on the LAN, does not have it. The MAC covers the
output name, so a command for one loop cannot be replayed on another that shares the key,
and the body's time and random id, so a recorded command cannot be replayed on the same
loop: it is refused once its id has been seen, and after :data:`REPLAY_WINDOW_S` (when its
id may have been forgotten) for its age. Sender and loop compare wall clocks, which agree
on one machine (and under NTP across machines).

Rate limiting (:class:`TokenBucket`) and the listener thread are in
:mod:`rtsource.stream.control`; the loop only ever sees :class:`Command` and
:class:`Refusal` objects.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import re
import secrets
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import RtsourceError
from .outputs import COMMANDS

#: The first word of every command sample (the protocol and its version).
PROTOCOL = "rtsource-control/1"
#: Longest command sample accepted, in bytes (a real one is ~200 bytes).
MAX_COMMAND_BYTES = 4096
#: Longest channel name or command id.
MAX_FIELD_CHARS = 64
#: A command older (or further in the future) than this is refused, in s.
REPLAY_WINDOW_S = 30.0
#: Characters of a refused sample quoted back in its event.
PREVIEW_CHARS = 48
#: Ids remembered for replay detection; when full (a flood of *authenticated* commands),
#: new commands are refused rather than a replay let through.
MAX_REMEMBERED_IDS = 4096

_KEY_BYTES = 32
_ID = re.compile(r"[A-Za-z0-9_-]{1,%d}" % MAX_FIELD_CHARS)
_FIELDS = {"id", "command", "channel", "time"}


class ControlKeyError(RtsourceError, PermissionError):
    """The control key file is missing, unreadable, or readable by other users."""


@dataclass(frozen=True)
class Command:
    """An authenticated command, ready for the loop.

    Attributes
    ----------
    id : str
        The sender's random id; the loop's answer on the events stream carries it.
    command : str
        One of :data:`rtsource.stream.outputs.COMMANDS`.
    channel : str
        A channel name (at most :data:`MAX_FIELD_CHARS` printable characters; whether the
        bundle has it is for the loop to say).
    sent_at : float
        The sender's wall-clock time (Unix s).
    """

    id: str
    command: str
    channel: str
    sent_at: float


@dataclass(frozen=True)
class Refusal:
    """A sample that is not a command the loop may execute.

    Attributes
    ----------
    reason : str
        ``too_large``, ``malformed``, ``unauthenticated``, ``expired``, ``replayed``,
        ``rate_limited``, ``too_many_senders`` or ``internal``.
    message : str
        What was wrong and what to do, for the events stream and ``rtsource mark-bad``.
    id, command, channel : str
        From the sample when it could be read safely (else ``""``), so a sender can match
        the answer to its command.
    size : int
        Bytes of the sample (0 when not applicable).
    preview : str
        At most :data:`PREVIEW_CHARS` characters of the sample (never the whole payload).
    """

    reason: str
    message: str
    id: str = ""
    command: str = ""
    channel: str = ""
    size: int = 0
    preview: str = ""

    def as_event(self) -> dict:
        """Fields of the ``command`` event that answers it (all short, by construction)."""
        out = {"id": self.id, "command": self.command or "?", "ok": False, "reason": self.reason, "error": self.message}
        if self.channel:
            out["channel"] = self.channel
        if self.size:
            out["size"] = self.size
        if self.preview:
            out["preview"] = self.preview
        return out


def clip(text: str, n: int = PREVIEW_CHARS) -> str:
    """``text`` cut to ``n`` characters, saying how much was left out (for events and logs)."""
    return text if len(text) <= n else f"{text[:n]}... ({len(text) - n} more characters)"


def _preview(raw: bytes) -> str:
    """The first bytes of a refused sample, printable (control characters shown as '?')."""
    head = "".join(c if c.isprintable() else "?" for c in raw[:PREVIEW_CHARS].decode("utf-8", "replace"))
    return head if len(raw) <= PREVIEW_CHARS else f"{head}... ({len(raw) - PREVIEW_CHARS} more bytes)"


# ---- the key --------------------------------------------------------------------------

def default_key_path(output_name: str) -> Path:
    """Where the loop publishing ``output_name`` keeps its control key.

    ``$RTSOURCE_CONTROL_DIR`` if set, else ``$XDG_RUNTIME_DIR/rtsource`` (a per-user
    directory only its owner can enter), else ``~/.config/rtsource/control``; the file is
    ``<output name>.key`` (other characters than letters, digits, ``.-_`` replaced, with a
    hash of the full name so that two names never share a file).
    """
    base = os.environ.get("RTSOURCE_CONTROL_DIR")
    if base:
        folder = Path(base)
    elif os.environ.get("XDG_RUNTIME_DIR"):
        folder = Path(os.environ["XDG_RUNTIME_DIR"]) / "rtsource"
    else:
        folder = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "rtsource" / "control"
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", output_name)[:80]
    if safe != output_name or not safe.strip("."):
        safe = f"{safe}-{hashlib.sha256(output_name.encode()).hexdigest()[:12]}"
    return folder / f"{safe}.key"


def _check_private(path: Path, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise ControlKeyError(f"control key {str(path)!r} is not a regular file; remove it (the loop creates a new one) or set [control] key_file")
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise ControlKeyError(f"control key {str(path)!r} belongs to another user (uid {st.st_uid}); remove it or set [control] key_file to a file of yours")
    if st.st_mode & 0o077:
        raise ControlKeyError(
            f"control key {str(path)!r} is readable by others (mode {stat.S_IMODE(st.st_mode):o}): anyone who reads it can command the loop; "
            f"run `chmod 600 {path}` (or delete it and restart the loop for a new key)"
        )


def read_key(path: str | Path) -> bytes:
    """The secret in a key file written by :func:`ensure_key` (checked to be private)."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise ControlKeyError(
            f"no control key at {str(path)!r}: is `rtsource run` running on this machine with this output name "
            "(it creates the key)? Otherwise pass --key-file (or [control] key_file) naming the loop's key"
        ) from None
    except OSError as exc:
        raise ControlKeyError(f"cannot read the control key {str(path)!r}: {exc.strerror}; check the file's owner and mode (600)") from None
    with os.fdopen(fd, "rb") as f:
        _check_private(path, os.fstat(f.fileno()))
        text = f.read(4 * _KEY_BYTES + 16)
    try:
        key = bytes.fromhex(text.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        key = b""
    if len(key) < 16:
        raise ControlKeyError(f"control key {str(path)!r} does not hold a hex key of at least 16 bytes; delete it and restart the loop for a new one")
    return key


def ensure_key(path: str | Path) -> bytes:
    """The key in ``path``, created (mode 0600, folder 0700) with a new random key if missing."""
    path = Path(path)
    try:
        return read_key(path)
    except ControlKeyError:
        if path.exists() or path.is_symlink():
            raise
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError:  # another loop created it meanwhile: use theirs
        return read_key(path)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(_KEY_BYTES) + "\n")
    return read_key(path)


# ---- signing and checking -------------------------------------------------------------

def _mac(key: bytes, output_name: str, body: bytes) -> str:
    return hmac.new(key, PROTOCOL.encode() + b"\n" + output_name.encode("utf-8", "replace") + b"\n" + body, hashlib.sha256).hexdigest()


def new_command_id() -> str:
    return secrets.token_hex(8)


def sign_command(key: bytes, output_name: str, command: str, channel: str, *, command_id: str | None = None, now: float | None = None) -> str:
    """One command sample for ``NAME-control`` (see the module docstring for the format)."""
    body = json.dumps(
        {"id": command_id or new_command_id(), "command": command, "channel": channel, "time": round(time.time() if now is None else now, 6)},
        separators=(",", ":"),
    ).encode()
    return f"{PROTOCOL} {_mac(key, output_name, body)} {body.decode()}"


def max_depth(text: str) -> int:
    """Deepest nesting of ``{}``/``[]`` outside JSON strings; a linear scan, no recursion."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "}]":
            depth -= 1
    return deepest


def parse_flat_object(text: str) -> dict | None:
    """``text`` as a JSON object whose values are strings or numbers; None if it is not one.

    The nesting is checked by :func:`max_depth` before ``json.loads`` sees the text, so
    no input can make the parser recurse.
    """
    if not text.startswith("{") or max_depth(text) != 1:
        return None
    try:
        obj = json.loads(text, parse_constant=lambda c: None)  # NaN/Infinity are not numbers here
    except ValueError:
        return None
    if not isinstance(obj, dict) or not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in obj.values()):
        return None
    return obj


class CommandVerifier:
    """Turns raw samples into :class:`Command` or :class:`Refusal` (one per sample).

    Parameters
    ----------
    key : bytes
        The shared secret.
    output_name : str
        The loop's ``[output] name`` (bound into every MAC).
    window_s : float
        Replay window: commands sent longer ago (or later) than this are refused.
    """

    def __init__(self, key: bytes, output_name: str, window_s: float = REPLAY_WINDOW_S):
        self._key = key
        self._output_name = output_name
        self._window = float(window_s)
        self._seen: dict[str, float] = {}  # id -> sender time, pruned beyond the window

    def check(self, raw: bytes, now: float | None = None) -> Command | Refusal:
        """Check one sample (``now``: wall-clock s, for tests)."""
        now = time.time() if now is None else now
        size = len(raw)
        if size > MAX_COMMAND_BYTES:
            return Refusal("too_large", f"a command is at most {MAX_COMMAND_BYTES} bytes, this one has {size}", size=size, preview=_preview(raw))
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Refusal("malformed", f"not UTF-8 text ({exc.reason} at byte {exc.start})", size=size, preview=_preview(raw))
        parts = text.split(" ", 2)
        if len(parts) != 3 or parts[0] != PROTOCOL:
            return Refusal(
                "malformed", f"not a {PROTOCOL} command (expected '{PROTOCOL} MAC {{json}}', as `rtsource mark-bad` sends)", size=size, preview=_preview(raw)
            )
        _, mac, body = parts
        obj = parse_flat_object(body)
        if obj is None or set(obj) != _FIELDS:
            return Refusal("malformed", f"the body must be a flat JSON object with keys {sorted(_FIELDS)}", size=size, preview=_preview(raw))
        cid, command, channel, sent = obj["id"], obj["command"], obj["channel"], obj["time"]
        known = dict(
            id=cid if isinstance(cid, str) and _ID.fullmatch(cid) else "",
            command=command if command in COMMANDS else "",
            channel=channel if isinstance(channel, str) and 0 < len(channel) <= MAX_FIELD_CHARS and channel.isprintable() else "",
        )
        if not hmac.compare_digest(mac.encode("ascii", "replace"), _mac(self._key, self._output_name, body.encode()).encode()):
            return Refusal(
                "unauthenticated",
                f"wrong or missing key: the command's MAC does not match this loop's key for output {clip(self._output_name)!r} "
                "(run `rtsource mark-bad` as the user who runs the loop, or pass --key-file with the loop's key)",
                size=size, **known,
            )  # fmt: skip
        missing = [k for k, v in known.items() if not v]
        if missing or not isinstance(sent, (int, float)) or not math.isfinite(sent):
            return Refusal("malformed", f"bad field(s) {missing or ['time']}: id [A-Za-z0-9_-]{{1,64}}, command one of {list(COMMANDS)}, "
                           f"channel a name of 1-{MAX_FIELD_CHARS} characters, time in Unix s", size=size, **known)  # fmt: skip
        if abs(now - sent) > self._window:
            return Refusal(
                "expired", f"sent {now - sent:+.1f} s from now, outside the {self._window:g} s window (a replay, or clocks that disagree)", size=size, **known
            )
        for old in [k for k, t in self._seen.items() if abs(now - t) > self._window]:
            del self._seen[old]
        if cid in self._seen:
            return Refusal("replayed", f"command {cid} was already received (a replay)", size=size, **known)
        if len(self._seen) >= MAX_REMEMBERED_IDS:
            return Refusal("rate_limited", f"more than {MAX_REMEMBERED_IDS} commands within {self._window:g} s; try again later", size=size, **known)
        self._seen[cid] = float(sent)
        return Command(cid, command, channel, float(sent))


class TokenBucket:
    """At most ``burst`` at once and ``rate`` per second on average (a token bucket).

    Parameters
    ----------
    rate : float
        Tokens added per second.
    burst : float
        Bucket size (also the initial fill).
    """

    def __init__(self, rate: float, burst: float):
        if not (rate > 0 and burst >= 1):
            raise ValueError(f"TokenBucket(rate={rate!r}, burst={burst!r}): need rate > 0 and burst >= 1")
        self.rate, self.burst = float(rate), float(burst)
        self._tokens = self.burst
        self._last = time.monotonic()

    def _refill(self, now: float | None) -> None:
        now = time.monotonic() if now is None else now
        self._tokens = min(self.burst, self._tokens + max(0.0, now - self._last) * self.rate)
        self._last = now

    def take(self, now: float | None = None) -> bool:
        """Take one token if there is one (``now``: ``time.monotonic()``)."""
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def full(self, now: float | None = None) -> bool:
        """True when the bucket has refilled completely (the sender slowed down)."""
        self._refill(now)
        return self._tokens >= self.burst
