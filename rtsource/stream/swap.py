"""Build a new operator in the background; install it between two chunks (atomic hot swap).

    any thread ── request(payload) ─┐                  ┌─> ready (one slot, newest wins)
    periodic payload_fn() ──────────┴─> worker thread ─┤   build_fn(payload)
                                                       └─> failures: counted, on_failed(), old operator kept
    loop thread, between chunks: swap = rebuilder.take() -> install swap.value (a reference)

The loop never waits for a build: :meth:`BackgroundRebuilder.take` returns ``None`` at once
when nothing is ready. A result is published as one reference under a lock and taken as
one, so the loop sees either the old operator or the complete new one. Because the loop
installs it *between* chunks, every input sample is processed by exactly one operator:
no gap and no duplicated sample in the output (tested over real LSL in
``tests/stream/test_swap.py``).

Used for the adaptive beamformer (periodic rebuilds from the live covariance,
:mod:`rtsource.stream.adaptive`) and for bad-channel hot swaps (``request(bad_channels)``).
The swap time reported in telemetry is from :meth:`~BackgroundRebuilder.request` (or the
periodic snapshot) to :meth:`~BackgroundRebuilder.take`: build time plus the wait for the
next chunk boundary.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

logger = logging.getLogger(__name__)

P = TypeVar("P")
R = TypeVar("R")


@dataclass(frozen=True)
class Swap(Generic[R]):
    """A built result, handed to the loop by :meth:`BackgroundRebuilder.take`.

    Times are ``time.perf_counter()`` seconds.

    Attributes
    ----------
    value : object
        What ``build_fn`` returned (the new operator).
    payload : object
        What it was built from (the bad-channel set, the covariance snapshot).
    reason : str
        Given with the request (``"bad_channel"``, ``"adaptive"``, ...).
    request_id : int
        1, 2, ... in request order.
    requested_at, built_at, taken_at : float
    coalesced : int
        Earlier requests this one replaced before they were built.
    """

    value: R
    payload: Any
    reason: str
    request_id: int
    requested_at: float
    built_at: float
    taken_at: float
    coalesced: int = 0

    @property
    def build_ms(self) -> float:
        return (self.built_at - self.requested_at) * 1e3

    @property
    def swap_ms(self) -> float:
        """Request -> live (taken by the loop), in ms."""
        return (self.taken_at - self.requested_at) * 1e3


@dataclass
class RebuildStats:
    """Counters of a :class:`BackgroundRebuilder` (read by telemetry; written under its lock)."""

    requests: int = 0
    builds: int = 0
    failures: int = 0
    skipped: int = 0  # periodic payload_fn returned None (nothing to build yet)
    superseded: int = 0  # results replaced by a newer one before the loop took them
    swaps: int = 0
    last_swap_ms: float = float("nan")
    last_build_ms: float = float("nan")
    last_error: str = ""


@dataclass
class _Request:
    payload: Any
    reason: str
    request_id: int
    requested_at: float
    coalesced: int = 0


class BackgroundRebuilder(Generic[P, R]):
    """Run ``build_fn(payload)`` in a worker thread and hand results to the loop atomically.

    Parameters
    ----------
    build_fn : callable
        ``build_fn(payload) -> result``. Runs in the worker thread; it must not touch
        anything the loop thread mutates (give it snapshots). An exception is counted in
        :attr:`stats`, logged once, and the loop keeps its current operator.
    name : str
        Thread name (logs, debuggers).
    interval_s : float, optional
        Also build periodically: every ``interval_s`` seconds the worker calls
        ``payload_fn()`` and builds from what it returns (``None``: skip this time).
    payload_fn : callable, optional
        Required with ``interval_s``.
    periodic_reason : str
        ``reason`` of periodic builds.
    warm_up : callable, optional
        ``warm_up()``, run once in the worker thread before the first build: preparation
        that makes every later build faster (a request that arrives meanwhile waits for
        it). An exception from it is logged and otherwise ignored.
    on_built : callable, optional
        ``on_built(swap)``, called in the worker thread with each successful result
        (``swap.taken_at`` is NaN) *instead of* keeping it for :meth:`take`: for a loop
        with a push-style install slot (``StreamLoop.request_swap(operator, reason,
        swap.requested_at)``). An exception from it counts as a failed build.
    on_failed : callable, optional
        ``on_failed(payload, reason, error)``, called in the worker thread after a build
        (or ``on_built``) raised: what it was built from, the request's reason, and the
        error as ``"Type: message"`` (for the events and telemetry streams). An exception
        from it is logged and otherwise ignored.
    start : bool
        Start the worker now (else call :meth:`start`).

    Notes
    -----
    Requests coalesce: if a request is waiting while a new one arrives, only the newest
    is built (a bad-channel set that grew from {A} to {A, B} needs one rebuild, not two).
    A request that arrives while a build runs is built next. If the loop has not taken a
    result before a newer one is ready, the newer replaces it (``stats.superseded``).
    """

    def __init__(
        self,
        build_fn: Callable[[P], R],
        *,
        name: str = "rtsource-rebuild",
        interval_s: float | None = None,
        payload_fn: Callable[[], P | None] | None = None,
        periodic_reason: str = "periodic",
        warm_up: Callable[[], None] | None = None,
        on_built: Callable[[Swap], None] | None = None,
        on_failed: Callable[[Any, str, str], None] | None = None,
        start: bool = True,
    ):
        if interval_s is not None and (payload_fn is None or not interval_s > 0):
            raise ValueError(f"interval_s = {interval_s!r} needs interval_s > 0 and a payload_fn")
        self._build = build_fn
        self._interval = interval_s
        self._payload_fn = payload_fn
        self._periodic_reason = periodic_reason
        self._on_built = on_built
        self._on_failed = on_failed
        self._warm_up = warm_up
        self._cond = threading.Condition()
        self._pending: _Request | None = None
        self._ready: Swap | None = None
        self._building = False
        self._closed = False
        self._next_id = 0
        self.stats = RebuildStats()
        self.last_swap: Swap | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False
        if start:
            self.start()

    # ---- control ----
    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the worker (a running build finishes first); idempotent."""
        with self._cond:
            self._closed = True
            self._pending = None
            self._cond.notify_all()
        if self._started and self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("rebuild thread %s did not stop within %.1f s (a build is still running)", self._thread.name, timeout)

    def __enter__(self) -> "BackgroundRebuilder[P, R]":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- producer side ----
    def request(self, payload: P, reason: str = "") -> int:
        """Ask for a build from ``payload``; returns the request id. Never blocks on a build."""
        now = time.perf_counter()
        with self._cond:
            if self._closed:
                raise RuntimeError("the rebuilder is closed")
            self._next_id += 1
            coalesced = 0
            if self._pending is not None:
                coalesced = self._pending.coalesced + 1
            self._pending = _Request(payload, reason, self._next_id, now, coalesced)
            self.stats.requests += 1
            self._cond.notify_all()
            return self._next_id

    @property
    def busy(self) -> bool:
        """True while a request waits or a build runs."""
        with self._cond:
            return self._pending is not None or self._building

    def wait_idle(self, timeout: float) -> bool:
        """Block until no request waits and no build runs (tests, shutdown); True if idle."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending is not None or self._building:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def wait_ready(self, timeout: float) -> bool:
        """Block until a result is ready to :meth:`take` (startup, tests); True if one is."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._ready is None:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    return False
                self._cond.wait(left)
        return True

    # ---- loop side ----
    def take(self) -> Swap[R] | None:
        """The newest built result, or ``None``; call it between chunks and install the value.

        The swap counts as live when this returns: ``stats.swaps``, ``stats.last_swap_ms``
        and :attr:`last_swap` are updated here. Allocation-free when nothing is ready.
        """
        if self._ready is None:  # one attribute read: no lock on the fast path
            return None
        now = time.perf_counter()
        with self._cond:
            ready, self._ready = self._ready, None
            if ready is None:
                return None
            swap = Swap(ready.value, ready.payload, ready.reason, ready.request_id, ready.requested_at, ready.built_at, now, ready.coalesced)
            self.stats.swaps += 1
            self.stats.last_swap_ms = swap.swap_ms
            self.last_swap = swap
        return swap

    # ---- worker ----
    def _run(self) -> None:
        if self._warm_up is not None:
            with self._cond:
                self._building = True  # busy/wait_idle cover the warm-up too
            try:
                self._warm_up()
            except Exception as exc:  # only a preparation: builds still work without it
                logger.warning("rebuild warm-up of %s failed (builds will be slower): %s", self._thread.name, exc)
            finally:
                with self._cond:
                    self._building = False
                    self._cond.notify_all()
        next_due = time.monotonic() + self._interval if self._interval else None
        while True:
            with self._cond:
                while not self._closed and self._pending is None:
                    if next_due is not None:
                        left = next_due - time.monotonic()
                        if left <= 0:
                            break
                        self._cond.wait(left)
                    else:
                        self._cond.wait()
                if self._closed:
                    return
                req, self._pending = self._pending, None
                self._building = True
            try:
                if req is None:  # periodic
                    next_due = time.monotonic() + self._interval
                    payload = self._payload_fn()
                    if payload is None:
                        with self._cond:
                            self.stats.skipped += 1
                        continue
                    with self._cond:
                        self._next_id += 1
                        req = _Request(payload, self._periodic_reason, self._next_id, time.perf_counter())
                        self.stats.requests += 1
                self._build_one(req)
            finally:
                with self._cond:
                    self._building = False
                    self._cond.notify_all()

    def _build_one(self, req: _Request) -> None:
        try:
            value = self._build(req.payload)
            if self._on_built is not None:
                built = time.perf_counter()
                self._on_built(Swap(value, req.payload, req.reason, req.request_id, req.requested_at, built, float("nan"), req.coalesced))
                with self._cond:
                    self.stats.builds += 1
                    self.stats.last_build_ms = (built - req.requested_at) * 1e3
                return
        except Exception as exc:  # the loop keeps its operator; the error is reported, not raised
            with self._cond:
                self.stats.failures += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
            logger.error("background rebuild %d (%s) failed; keeping the current operator: %s", req.request_id, req.reason or "request", exc, exc_info=True)
            if self._on_failed is not None:
                try:
                    self._on_failed(req.payload, req.reason, self.stats.last_error)
                except Exception as report_exc:  # reporting must not kill the worker
                    logger.error("reporting the failed rebuild %d failed too: %s", req.request_id, report_exc)
            return
        built = time.perf_counter()
        with self._cond:
            self.stats.builds += 1
            self.stats.last_build_ms = (built - req.requested_at) * 1e3
            if self._ready is not None:
                self.stats.superseded += 1
            self._ready = Swap(value, req.payload, req.reason, req.request_id, req.requested_at, built, float("nan"), req.coalesced)
            self._cond.notify_all()

