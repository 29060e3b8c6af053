"""Commands to a running loop from other processes, over an LSL marker stream.

``rtsource mark-bad Cz`` publishes ``NAME-control`` and pushes signed commands
(:mod:`rtsource.stream.control_auth`); the loop's :class:`ControlListener` finds such
streams in a background thread, checks every sample and queues :class:`Command` or
:class:`Refusal` objects; the loop executes commands between two chunks (so nothing it
owns is touched from another thread) and answers each one on its events stream (event
``command`` with the command's ``id``). :func:`send_commands` is the sending side: it
waits for those answers, and for the operator swap that follows an accepted command.

The listener thread never dies: an exception in it becomes a ``command`` event with
reason ``internal`` and the thread keeps listening. Each sender (one LSL stream) has a
token bucket; a sender that floods is refused until it slows down, with one event per
episode.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Sequence

from ..errors import RtsourceError
from .control_auth import MAX_COMMAND_BYTES, Command, CommandVerifier, Refusal, TokenBucket, clip, sign_command
from .outputs import CONTROL_SUFFIX, CONTROL_TYPE, EVENTS_SUFFIX, EVENTS_TYPE

logger = logging.getLogger(__name__)

#: Commands per second one sender may send on average, and at once.
RATE_PER_S, BURST = 5.0, 20
#: Control streams read at the same time (more are ignored until one goes away).
MAX_SENDERS = 16
#: Samples read from one sender before the others get their turn.
_PULL_PER_ROUND = 64


def _find_glibc_malloc():
    """glibc's ``malloc_trim`` and ``mallopt`` (None elsewhere)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim, opt = libc.malloc_trim, libc.mallopt
    except (OSError, AttributeError):
        return None, None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    opt.argtypes, opt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return trim, opt


_malloc_trim, _mallopt = _find_glibc_malloc()
_M_MMAP_THRESHOLD = -3  # <malloc.h>
#: Once oversized samples arrive, allocations from this size on get their own mappings.
_MMAP_THRESHOLD_UNDER_ATTACK = 4 << 20


@dataclass
class _Sender:
    inlet: object
    bucket: TokenBucket
    flooding: bool = False
    dropped: int = 0


class ControlListener:
    """Listens for ``NAME-control`` streams (any number, appearing any time) in a thread.

    Parameters
    ----------
    output_name : str
        The loop's output name (``NAME``).
    key : bytes
        The shared secret (:func:`~rtsource.stream.control_auth.ensure_key`).
    rate_per_s, burst : float
        Token bucket of each sender.
    """

    def __init__(self, output_name: str, key: bytes, *, rate_per_s: float = RATE_PER_S, burst: float = BURST, max_senders: int = MAX_SENDERS):
        self.name = output_name + CONTROL_SUFFIX
        self.commands: queue.Queue = queue.Queue(maxsize=256)
        self._verifier = CommandVerifier(key, output_name)
        self._rate, self._burst, self._max_senders = rate_per_s, burst, max_senders
        # counters (written by the listener thread only)
        self.received = 0
        self.rate_limited = 0
        self.overflow = 0  # results dropped because the loop did not take them (queue full)
        self._crowded = False
        self._trim_due, self._next_trim, self._threshold_fixed = False, 0.0, False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rtsource-control")
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _put(self, item: Command | Refusal) -> None:
        try:
            self.commands.put_nowait(item)
        except queue.Full:
            self.overflow += 1

    def _run(self) -> None:
        senders: dict[str, _Sender] = {}
        resolver = None
        next_resolve = 0.0
        while not self._stop.is_set():
            try:
                if resolver is None:
                    import pylsl

                    resolver = pylsl.ContinuousResolver(pred=f"name='{self.name}' and type='{CONTROL_TYPE}'", forget_after=5.0)
                if time.monotonic() >= next_resolve:
                    self._connect(resolver, senders)
                    next_resolve = time.monotonic() + 0.5
                busy = any([self._drain(uid, s, senders) for uid, s in list(senders.items())])
                self._release_memory()
                if not busy:
                    self._stop.wait(0.05)
            except Exception as exc:  # never die: report, breathe, keep listening
                logger.warning("control listener: %s: %s (still listening)", type(exc).__name__, clip(str(exc), 200))
                self._put(Refusal("internal", f"control listener error {type(exc).__name__}: {clip(str(exc))}; still listening"))
                self._stop.wait(0.2)

    def _connect(self, resolver, senders: dict[str, _Sender]) -> None:
        import pylsl

        for info in resolver.results():
            uid = info.uid()
            if uid in senders:
                continue
            if len(senders) >= self._max_senders:
                if not self._crowded:
                    self._crowded = True
                    self._put(Refusal("too_many_senders", f"more than {self._max_senders} control streams at once; ignoring new ones until some go away"))
                return
            # A small buffer (100 samples for an irregular stream): a flood is dropped by
            # liblsl instead of queueing up in this process.
            inlet = pylsl.StreamInlet(info, max_buflen=1, max_chunklen=1, recover=False, as_numpy=True)
            try:
                inlet.open_stream(timeout=2.0)
            except Exception as exc:  # the sender went away before we connected
                logger.debug("control stream %s not opened: %s", uid, exc)
                continue
            senders[uid] = _Sender(inlet, TokenBucket(self._rate, self._burst))
        if len(senders) < self._max_senders:
            self._crowded = False

    def _drain(self, uid: str, sender: _Sender, senders: dict[str, _Sender]) -> bool:
        """Read what one sender has queued (up to a limit); True if there was anything."""
        got = False
        for _ in range(_PULL_PER_ROUND):
            try:
                sample, _ = sender.inlet.pull_sample(timeout=0.0)
            except Exception:  # lost: the sender exited
                senders.pop(uid, None)
                return got
            if sample is None:
                return got
            got = True
            self.received += 1
            raw = sample[0]
            del sample
            if sender.flooding:
                if sender.bucket.full():  # it slowed down: the episode is over
                    sender.flooding = False
                else:
                    sender.dropped += 1
                    self.rate_limited += 1
                    continue
            if not sender.bucket.take():
                sender.flooding = True
                sender.dropped += 1
                self.rate_limited += 1
                self._put(
                    Refusal(
                        "rate_limited",
                        f"more than {self._burst:g} commands at once or {self._rate:g}/s from control stream {clip(uid)}; "
                        f"refusing its commands until it pauses for {self._burst / self._rate:g} s (one event per episode)",
                    )
                )
                continue
            if len(raw) > MAX_COMMAND_BYTES:
                self._trim_due = True
                if not self._threshold_fixed:
                    self._next_trim = 0.0  # at once: the rest of the burst gets mappings
            self._put(self._verifier.check(bytes(raw) if not isinstance(raw, bytes) else raw))
        return got

    def _release_memory(self) -> None:
        """After oversized samples, give the memory they used back to the system (glibc).

        liblsl receives each sample in its own threads. glibc serves a large string from
        a fresh mapping at first, but then raises its mmap threshold to that size, so the
        next ones come from the threads' malloc arenas, which keep the memory after it is
        freed: every burst of 20 MB samples left tens of MB behind for good
        (tests/stream/test_control.py measures it). So on the first oversized sample the
        threshold is fixed at 4 MiB (large blocks are mapped and unmapped again, which
        normal operation, having seen no attack, never pays for), and what the arenas
        already hold is trimmed, at most once a second.
        """
        now = time.monotonic()
        if not self._trim_due or now < self._next_trim:
            return
        self._trim_due = False
        self._next_trim = now + 1.0
        if _mallopt is not None and not self._threshold_fixed:
            self._threshold_fixed = True
            _mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_UNDER_ATTACK)
        if _malloc_trim is not None:
            _malloc_trim(0)

    def pending(self) -> list[Command | Refusal]:
        """Commands and refusals received since the last call (non-blocking)."""
        out = []
        while True:
            try:
                out.append(self.commands.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        self._stop.set()


# ---- the sending side ---------------------------------------------------------------------

@dataclass(frozen=True)
class Answer:
    """What became of one command sent by :func:`send_commands`.

    Attributes
    ----------
    command, channel, id : str
    ok : bool
        Accepted by the loop and (unless ``confirm_swap`` was False) the operator swap
        that carries it out is live.
    reason : str
        ``""`` when ok; else the refusal's reason (``unauthenticated``, ``rate_limited``,
        ...), ``refused`` (the loop would not do it: unknown channel, below the floor),
        ``rebuild_failed``, ``no_answer`` or ``no_swap`` (timeouts).
    message : str
        The loop's explanation (or ours, for timeouts).
    swap_ms : float
        Command to new operator live, as the loop measured it (NaN if none).
    """

    command: str
    channel: str
    id: str
    ok: bool
    reason: str = ""
    message: str = ""
    swap_ms: float = float("nan")


def _confirms(command: str, channel: str, event: dict) -> bool:
    bad = event.get("bad_channels")
    if not isinstance(bad, list):
        return False
    return (channel in bad) if command == "mark_bad" else (channel not in bad)


def send_commands(
    output_name: str, commands: Sequence[tuple[str, str]], *, key: bytes, wait_s: float = 10.0, answer_timeout_s: float = 30.0, confirm_swap: bool = True
) -> list[Answer]:
    """Send ``(command, channel)`` pairs to the loop publishing ``output_name``; wait for the answers.

    Parameters
    ----------
    output_name : str
        The loop's ``[output] name``.
    commands : sequence of (str, str)
        E.g. ``[("mark_bad", "Cz")]``.
    key : bytes
        The loop's control key (:func:`~rtsource.stream.control_auth.read_key`).
    wait_s : float
        Seconds to wait for the loop's events stream and for it to listen.
    answer_timeout_s : float
        Seconds to wait for all answers (and swaps).
    confirm_swap : bool
        Also wait for the operator swap (or ``rebuild_failed``) after an accepted command.

    Returns
    -------
    list of Answer
        One per command, in order.

    Raises
    ------
    RtsourceError
        If no loop publishes ``NAME-events`` or listens on ``NAME-control`` within ``wait_s``.
    """
    import pylsl

    events_name = output_name + EVENTS_SUFFIX
    found = pylsl.resolve_bypred(f"name='{events_name}' and type='{EVENTS_TYPE}'", minimum=1, timeout=wait_s)
    if not found:
        raise RtsourceError(
            f"no rtsource loop publishes {events_name!r} (waited {wait_s:g} s); is `rtsource run` running with "
            f"[output] name = {output_name!r}? (pass --output NAME)"
        )
    inlets = []
    for info in found:
        inlet = pylsl.StreamInlet(info, max_buflen=60)
        inlet.open_stream(timeout=wait_s)  # from now on every event reaches us
        inlets.append(inlet)
    from .outlets import open_command_outlet

    outlet = open_command_outlet(output_name)
    if not outlet.wait_for_consumers(wait_s):
        raise RtsourceError(
            f"no rtsource loop listened on {output_name + CONTROL_SUFFIX!r} within {wait_s:g} s; is its control stream "
            "turned off ([control] enabled = false)?"
        )
    from .control_auth import new_command_id

    sent = []
    for i, (command, channel) in enumerate(commands):
        if i >= BURST - 1:  # stay under the loop's rate limit (many channels at once)
            time.sleep(1.5 / RATE_PER_S)
        cid = new_command_id()
        outlet.push_sample([sign_command(key, output_name, command, channel, command_id=cid)])
        sent.append((cid, command, channel))
    answers: dict[str, Answer] = {}
    accepted: dict[str, tuple[str, str]] = {}
    deadline = time.monotonic() + answer_timeout_s
    while (len(answers) < len(sent) or accepted) and time.monotonic() < deadline:
        got = False
        for inlet in inlets:
            sample, _ = inlet.pull_sample(timeout=0.05)
            if not sample:
                continue
            got = True
            try:
                ev = json.loads(sample[0])
            except ValueError:
                continue
            kind = ev.get("event") if isinstance(ev, dict) else None
            if kind == "command" and ev.get("id") in {s[0] for s in sent} and ev["id"] not in answers and ev["id"] not in accepted:
                cid = ev["id"]
                command, channel = next((c, ch) for i, c, ch in sent if i == cid)
                if ev.get("ok") and confirm_swap:
                    accepted[cid] = (command, channel)
                else:
                    answers[cid] = Answer(command, channel, cid, bool(ev.get("ok")), "" if ev.get("ok") else str(ev.get("reason", "refused")), str(ev.get("error", "")))
            elif kind in ("operator_swap", "rebuild_failed"):
                for cid, (command, channel) in list(accepted.items()):
                    if _confirms(command, channel, ev):
                        del accepted[cid]
                        if kind == "operator_swap":
                            answers[cid] = Answer(command, channel, cid, True, swap_ms=float(ev.get("swap_ms", float("nan"))))
                        else:
                            answers[cid] = Answer(command, channel, cid, False, "rebuild_failed", str(ev.get("error", "")))
        if not got:
            time.sleep(0.01)
    for inlet in inlets:
        inlet.close_stream()
    out = []
    for cid, command, channel in sent:
        if cid in answers:
            out.append(answers[cid])
        elif cid in accepted:
            out.append(Answer(command, channel, cid, False, "no_swap", f"accepted, but no operator swap within {answer_timeout_s:g} s (is the rebuild still running?)"))
        else:
            out.append(Answer(command, channel, cid, False, "no_answer", f"the loop did not answer within {answer_timeout_s:g} s"))
    return out
