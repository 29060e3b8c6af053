"""The loop's head-motion stage: cHPI tracking, ``NAME-headpos``, and a forward that follows.

    chunk ─> ChpiTracker.process (lines removed in place, before the operator)
              └─ pose due ─> pose worker thread: coil fits, rigid fit ─> NAME-headpos
                               └─ moved > update_mm from the operator's pose ─> event head_moved
                                    ─> follow thread: PoseRebuilder.for_pose -> prepare_operator
                                    ─> request_swap (installed by the loop between two chunks)

The pose fit (a few tens of ms for four coils) and the rebuild run in their own threads,
never in the loop's: the loop only fits the lines (a small matrix product per hop) and
subtracts them. A pose that is due while the previous one is still being fitted is
skipped (counted in :attr:`HeadMotion.skipped_poses`). The swap goes through the loop's
own ``request_swap``, so, as every other swap, it happens between two chunks and no sample
is lost or processed twice; its ``operator_swap`` event carries ``reason = "head_motion"``,
the pose, the displacement and the build time. Through the loop's ``rebase`` the new pose's
bundle becomes the base of later rebuilds: channels marked bad stay out, and the ROI stage
is refolded with the new operator (:meth:`rtsource.stream.features.Features.rebase`).

The offline side is injected (:class:`PoseRebuilder`, implemented by
:class:`rtsource.pipeline.headmotion.PoseRebuilder`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from .chpi import ChpiSettings, ChpiTracker, ChpiWindow
from .headpose import ChpiGeometry, HeadPose, pose_displacement_m
from .outlets import OutputIdentity, open_headpos_outlet

if TYPE_CHECKING:  # annotations only
    from ..bundle import OperatorBundle
    from .channels import StreamDescription
    from .services import LoopServices

logger = logging.getLogger(__name__)

__all__ = ["HeadMotion", "HeadMotionOptions", "PoseRebuilder"]


def _single_blas_thread():
    try:
        from threadpoolctl import threadpool_limits

        return threadpool_limits(limits=1, user_api="blas")
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        import contextlib

        return contextlib.nullcontext()


class PoseRebuilder(Protocol):
    """The bundle's operator for another head pose (called from a background thread)."""

    def prepare(self, bundle: OperatorBundle | None = None) -> None:
        """Warm up (compile kernels, fill caches) once before the first rebuild."""

    def for_pose(self, matrix: np.ndarray) -> OperatorBundle:
        """The bundle with lead field and operator for the 4x4 DEVICE -> HEAD ``matrix``."""
        ...


@dataclass(frozen=True)
class HeadMotionOptions:
    """What the head-motion stage needs (built by the pipeline from ``[headpos]``).

    Attributes
    ----------
    geometry : ChpiGeometry
    settings : ChpiSettings
        ``settings.dev_head_t`` is the reference pose (the displacement shown by the viewer
        is from it) and, unless ``operator_pose`` is given, the pose of the bundle's operator.
    update_mm : float
        Rebuild the operator when the head moved more than this from the operator's pose
        (largest displacement of a cHPI coil; 0: never).
    rebuilder : PoseRebuilder or None
        None: track and publish only.
    operator_pose : ndarray, shape (4, 4), optional
    publish : bool
        Open ``NAME-headpos``.
    no_follow_reason : str
        Without a ``rebuilder`` although ``update_mm`` > 0: why the forward cannot follow
        (e.g. a BEM forward model). A head that moves beyond ``update_mm`` then gives a
        ``head_moved`` event with ``follows = False`` and this reason (once per excursion),
        so the operator is not kept for the old pose silently.
    """

    geometry: ChpiGeometry
    settings: ChpiSettings
    update_mm: float = 3.0
    rebuilder: PoseRebuilder | None = None
    operator_pose: np.ndarray | None = None
    publish: bool = True
    no_follow_reason: str = ""


class HeadMotion:
    """The stage (see the module doc). Made by the loop in ``connect``; ``process`` per chunk."""

    def __init__(self, options: HeadMotionOptions, bundle: OperatorBundle, stream: StreamDescription, services: LoopServices,
                 identity: OutputIdentity, *, aliases=None, assume_unit: str = "", rebase=None):  # fmt: skip
        self.options = options
        # rebase(bundle) -> (operator, ROI stage, hand_over): the loop makes the new pose's bundle
        # the base of later rebuilds (bad channels, ROIs); hand_over requests the swap unless a
        # bad-channel change arrived meanwhile; without it only the operator is prepared
        self._rebase = rebase
        self.bundle = bundle
        self.services = services
        st = options.settings
        self.tracker = ChpiTracker(options.geometry, st, stream.sfreq)
        self.tracker.bind(stream, aliases=aliases, assume_unit=assume_unit)
        self.reference = np.asarray(st.dev_head_t, float)
        self.operator_pose = np.asarray(options.operator_pose if options.operator_pose is not None else st.dev_head_t, float)
        self.outlet = open_headpos_outlet(identity, step_s=st.step_s) if options.publish else None
        self.poses: list[HeadPose] = []  # the recent ones (bounded)
        self.skipped_poses = 0
        self.follows = 0
        self.superseded = 0  # pose operators dropped for a newer bad-channel rebuild of the same pose
        self._reported_beyond = False  # no_follow_reason: this excursion was reported
        self._windows: queue.Queue = queue.Queue(maxsize=1)
        self._closed = threading.Event()
        self._follow = None
        if options.rebuilder is not None and options.update_mm > 0:
            from .swap import BackgroundRebuilder

            rb = options.rebuilder
            def warm_up():
                with _single_blas_thread():
                    rb.prepare(bundle)

            self._follow = BackgroundRebuilder(self._build, name="rtsource-headmotion", warm_up=warm_up, on_built=self._built, on_failed=self._failed)
        self._worker = threading.Thread(target=self._run, name="rtsource-headpos", daemon=True)
        self._worker.start()

    # ---- loop thread ----
    def process(self, buf: np.ndarray, n: int, ts: np.ndarray) -> None:
        """Per chunk, before the operator: remove the lines; hand a due pose to the worker."""
        window = self.tracker.process(buf, n, ts)
        if window is not None:
            try:
                self._windows.put_nowait(window)
            except queue.Full:  # the previous pose is still being fitted
                self.skipped_poses += 1

    # ---- pose worker ----
    def _run(self) -> None:
        while not self._closed.is_set():
            try:
                window = self._windows.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._on_window(window)
            except Exception as exc:  # a failed fit must not end tracking
                logger.error("head pose fit failed: %s", exc, exc_info=True)

    def _on_window(self, window: ChpiWindow) -> None:
        pose = self.tracker.fit_pose(window)
        if pose is None:
            return
        self.poses.append(pose)
        del self.poses[:-1000]
        coils = self.options.settings.coil_head_m
        m = pose.matrix
        self.services.stats.head_displacement_mm = pose_displacement_m(m, self.reference, coils) * 1e3
        if self.outlet is not None:
            self.outlet.push_sample(pose.row(), pose.time)
        moved_mm = pose_displacement_m(m, self.operator_pose, coils) * 1e3
        if self._follow is None:
            reason = self.options.no_follow_reason
            beyond = self.options.update_mm > 0 and moved_mm > self.options.update_mm
            if reason and beyond and not self._reported_beyond:  # once per excursion beyond the threshold
                logger.warning("the head moved %.1f mm from the operator's pose; the operator stays: %s", moved_mm, reason)
                self.services.events.publish("head_moved", pose.time, displacement_mm=round(moved_mm, 3), pose=[round(x, 6) for x in pose.row()],
                                             follows=False, reason=reason)  # fmt: skip
            self._reported_beyond = beyond
            return
        if moved_mm > self.options.update_mm and not self._follow.busy:
            self.services.events.publish("head_moved", pose.time, displacement_mm=round(moved_mm, 3), pose=[round(x, 6) for x in pose.row()])
            self._follow.request((pose, moved_mm), reason="head_motion")

    # ---- follow thread ----
    def _build(self, payload):
        pose, moved_mm = payload
        t0, c0 = time.perf_counter(), time.thread_time()
        with _single_blas_thread():  # beside the loop's numba threads, one BLAS thread is faster
            bundle = self.options.rebuilder.for_pose(pose.matrix)
            if self._rebase is not None:  # bad channels stay dropped, ROIs are refolded
                operator, stage, hand_over = self._rebase(bundle)
            else:
                operator, stage, hand_over = self.services.prepare_operator(bundle), None, None
        # this thread's CPU time (the BLAS products; the lead field's numba kernel also runs on
        # the numba pool) and the rebuilder's stages: telemetry for the benchmark
        stages = {k: round(v, 1) for k, v in getattr(self.options.rebuilder, "last_stages", {}).items()}
        return operator, stage, hand_over, pose, moved_mm, (time.perf_counter() - t0) * 1e3, (time.thread_time() - c0) * 1e3, stages

    def _built(self, swap) -> None:
        operator, stage, hand_over, pose, moved_mm, build_ms, cpu_ms, stages = swap.value
        self.operator_pose = pose.matrix  # the base of every later rebuild, swapped in now or by the newer one
        self.follows += 1
        details = dict(pose=[round(x, 6) for x in pose.row()], displacement_mm=round(moved_mm, 3), build_ms=round(build_ms, 3),
                       build_thread_cpu_ms=round(cpu_ms, 1), stages_ms=stages)  # fmt: skip
        if hand_over is None:
            self.services.request_swap(operator, "head_motion", swap.requested_at, roi_stage=stage, **details)
        elif not hand_over("head_motion", swap.requested_at, **details):
            # a bad channel changed while this was built: the bad-channel rebuild (from this
            # pose's bundle) is the newest and brings this pose live with it
            self.superseded += 1

    def _failed(self, payload, reason: str, error: str) -> None:
        self.services.stats.rebuild_failures += 1
        self.services.events.publish("rebuild_failed", payload[0].time, request=reason, error=error[:300])

    def wait_warm(self, timeout: float) -> bool:
        """Block until the follow thread's warm-up (a first rebuild) is done; True if it is (or none runs)."""
        return self._follow is None or self._follow.wait_idle(timeout)

    def restart(self) -> None:
        """After a gap in the input: the window starts again."""
        self.tracker.restart()

    def close(self) -> None:
        self._closed.set()
        if self._follow is not None:
            self._follow.close()
        self._worker.join(2.0)
        self.outlet = None
