"""What the loop computes besides source time courses: ROIs, band power, channel health,
adaptive weights, and the operator swaps they lead to.

Per chunk, after the loop has published the source time courses:

    prepared chunk (operator channels, filtered) ─┬> ROI stage ──> NAME-roi ──> band power ──> NAME-bandpower
                                                  ├> bad-channel detector ──> events; hot swap request
                                                  └> adaptive covariance ──> background LCMV rebuild
    raw chunk ──> (detector reads the stream's own columns)

Operator swaps (a bad channel removed, new adaptive weights) are built in background
threads (:class:`~rtsource.stream.swap.BackgroundRebuilder`) by the injected
:class:`~rtsource.stream.services.OperatorRebuilder` and handed to the loop's
``request_swap`` together with the matching ROI stage, so operator and ROI fold change in
the same gap between two chunks: no sample is lost or processed twice. The features see the
loop only through :class:`~rtsource.stream.services.LoopServices`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..bundle import OperatorBundle
from ..errors import StreamError
from .channels import ChannelMap
from .outlets import OutputIdentity, open_bandpower_outlet, open_roi_outlet
from .services import LoopServices

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureOptions:
    """Which features run and how (built from a config by ``rtsource.session``).

    Attributes
    ----------
    rois : sequence of rtsource.roi_operator.Roi
        Regions of interest on the bundle's source space (empty: no ROI outputs).
    roi_mode, roi_component : str
        Aggregation (mean, mean_flip, pca_flip, max) and component (see rtsource/roi_operator.py).
    roi_calibration : ndarray or None
        (n_samples, n_channels) calibration data in V, bundle order (pca_flip needs it).
    bandpower : BandPowerSpec or None
        Band-power feedback on the ROIs (None: off).
    detect_bad_channels : bool
        Watch the operator's channels for flat / saturated / noisy signals.
    bad_channel_rules : BadChannelRules or None
    auto_swap : bool
        Rebuild the operator without channels the detector marks bad.
    ignore_channels : tuple of str
        Never marked bad (e.g. a named reference channel, which is zero after re-referencing).
    adaptive : bool
        Adaptive beamformer (LCMV bundles): the data covariance is tracked with an
        exponential forgetting factor and the weights rebuilt from it every
        ``adaptive_interval_s`` (without the current bad channels).
    adaptive_half_life_s, adaptive_interval_s : float
    min_channels : int
        The operator keeps at least this many channels: marking more bad (by hand or by
        the detector) is refused with an event. 0: :func:`channel_floor`'s default.
    events : rtsource.stream.eventstage.EventOptions or None
        Marker input, epochs / evoked averages and ROI connectivity (None: off).
    """

    rois: Sequence = ()
    roi_mode: str = "mean_flip"
    roi_component: str = "auto"
    roi_calibration: np.ndarray | None = None
    bandpower: object | None = None
    detect_bad_channels: bool = False
    bad_channel_rules: object | None = None
    auto_swap: bool = False
    ignore_channels: tuple[str, ...] = ()
    adaptive: bool = False
    adaptive_half_life_s: float = 30.0
    adaptive_interval_s: float = 10.0
    sources_output: bool = True
    min_channels: int = 0
    events: object | None = None

    @property
    def any(self) -> bool:
        return bool(self.rois) or self.detect_bad_channels or self.adaptive or self.auto_swap or self.events is not None


#: Trial rebuilds when the loop starts (the third in a process is as fast as any later one).
_WARM_UP_REBUILDS = 3


def channel_floor(n_channels: int, min_channels: int = 0) -> int:
    """Fewest channels an operator may be left with after bad channels are dropped.

    ``min_channels`` if given (> 0), else half the bundle's channels and at least 16;
    never more than the bundle has. Below this a source estimate from what remains is
    not worth swapping to (and a detector that flags most channels is more likely wrong
    than the cap).
    """
    floor = min_channels if min_channels > 0 else max(16, -(-n_channels // 2))
    return min(floor, n_channels)


def _can_rebuild(bundle: OperatorBundle) -> bool:
    """The bundle caches what a rebuild without channels needs (lead field, noise covariance)."""
    return bundle.gain is not None and bundle.noise_cov is not None


def _single_blas_thread():
    try:
        from threadpoolctl import threadpool_limits

        return threadpool_limits(limits=1, user_api="blas")
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        import contextlib

        return contextlib.nullcontext()


class Features:
    """The stages of :class:`FeatureOptions` for one loop (created in ``StreamLoop.connect``).

    Parameters
    ----------
    bundle : OperatorBundle
        The bundle the loop started with (every rebuild starts from it).
    channel_map : ChannelMap
        Where the bundle's channels are in the stream's chunks, and their unit factors.
    options : FeatureOptions
    services : LoopServices
        What the features may use of the loop: counters, events, swap requests.
    identity : OutputIdentity
        Names and metadata of the output streams (the ROI and band-power outlets).
    max_chunk : int
        Largest chunk (samples) the loop hands over.
    """

    def __init__(self, bundle: OperatorBundle, channel_map: ChannelMap, options: FeatureOptions, services: LoopServices, identity: OutputIdentity, *,
                 max_chunk: int):  # fmt: skip
        self.bundle = bundle
        self.options = options
        self.services = services
        sfreq = identity.sfreq or bundle.sfreq  # the rate of the sources and of the operator's channels
        self.roi_operator = None
        self.roi_stage = None
        self.roi_outlet = None
        self.bandpower = None
        self.bandpower_outlet = None
        if options.rois:
            from ..roi_operator import RoiOperator
            from .roi import RoiStage

            self.roi_operator = RoiOperator.from_bundle(bundle, options.rois, options.roi_mode, options.roi_component, calibration=options.roi_calibration)
            self.roi_stage = RoiStage(self.roi_operator, max_chunk, channel_scale=channel_map.scale, n_sources=bundle.n_sources)
            self.roi_stage.warm_up()
            self.roi_outlet = open_roi_outlet(self.roi_operator, identity, bundle)
            if options.bandpower is not None:
                from .bandpower import BandPowerStage

                self.bandpower = BandPowerStage(options.bandpower, self.roi_operator.names, sfreq, max_chunk, unit=bundle.output_unit)
                self.bandpower.warm_up()
                if options.roi_calibration is not None and options.bandpower.zscore:
                    self.bandpower.calibrate(self.roi_operator.apply(options.roi_calibration))
                self.bandpower_outlet = open_bandpower_outlet(self.bandpower, identity, method=bundle.method, roi_mode=options.roi_mode)
        self.event_stage = None
        if options.events is not None:
            from .eventstage import EventStage

            ro = self.roi_operator
            cal = ro.apply(options.roi_calibration) if ro is not None and options.roi_calibration is not None else None
            self.event_stage = EventStage(options.events, ro.names if ro is not None else (), bundle.source_labels(), sfreq, max_chunk, identity, services.events,
                                          time_correction=services.time_correction, unit=(ro.unit if ro is not None else bundle.output_unit) or "", roi_calibration=cal)  # fmt: skip
        self.detector = None
        if options.detect_bad_channels:
            from .badchannels import BadChannelDetector, BadChannelRules

            ignore = set(options.ignore_channels)
            if bundle.reference in bundle.ch_names:  # a named reference channel is all zeros
                ignore.add(bundle.reference)
            self.detector = BadChannelDetector(
                bundle.ch_names, bundle.sfreq, index=channel_map.index, scale=channel_map.scale, rules=options.bad_channel_rules or BadChannelRules(), ignore=tuple(ignore),
                ch_types=bundle.ch_types,
            )
            self.detector.warm_up()
        self.hot_swap = None
        if services.rebuilder is not None and (options.auto_swap or _can_rebuild(bundle)):
            # Ready before the first bad channel: a channel can be marked bad at any time
            # (API, `rtsource mark-bad`), and the first rebuild in a process is the slowest.
            self._start_hot_swap()
        self.adaptive = None
        if options.adaptive:
            if bundle.method != "LCMV":
                from ..errors import ConfigError

                raise ConfigError(f"[adaptive] enabled needs an LCMV bundle ([inverse] method = 'LCMV'), this one is {bundle.method}")
            from .adaptive import AdaptiveOperator, ExpWeightedCovariance

            if services.rebuilder is None:
                raise StreamError("[adaptive] enabled needs an operator rebuilder; make the loop with rebuilder=rtsource.session.operator_rebuilder()")
            cov = ExpWeightedCovariance(bundle.n_channels, sfreq, options.adaptive_half_life_s, scale=channel_map.scale, ch_names=bundle.ch_names)
            self.adaptive = AdaptiveOperator(cov, self._build_adaptive, interval_s=options.adaptive_interval_s, on_built=self._hand_over)
        self.bad_channels: tuple[str, ...] = ()  # requested (the operator in use may lag)
        self.min_channels = channel_floor(bundle.n_channels, options.min_channels)
        self._refused: frozenset = frozenset()  # the detector's last set refused by the floor
        self._bad_lock = threading.Lock()  # bad_channels: loop thread and failed rebuilds
        #: channels the loop excluded because they deliver only NaN/Inf (see health.NonFiniteGuard)
        self.excluded: frozenset[str] = frozenset()

    # ---- per chunk --------------------------------------------------------------------
    def after_chunk(self, raw: np.ndarray, n: int, ts: np.ndarray, sources: np.ndarray | None, prepared: np.ndarray, flags: np.ndarray | None = None, *,
                    n_out: int | None = None, ts_out: np.ndarray | None = None) -> None:  # fmt: skip
        """Run the stages on a chunk the loop has just processed.

        Parameters
        ----------
        raw : ndarray, shape (>= n, n_stream_channels)
            The chunk as pulled (stream columns and units).
        n : int
            Rows of the chunk.
        ts : ndarray, shape (>= n,)
            Their timestamps (producer clock, s).
        sources : ndarray, shape (n, n_sources), or None
            The per-source output.
        prepared : ndarray, shape (n_out, n_channels)
            The operator's channels, gathered and filtered (``StreamOperator.prepared``).
        flags : ndarray of uint8, shape (>= n_out,), optional
            Per output row, the artifact stage's flags (non-zero: repaired, see
            :meth:`.artifacts.LoopArtifacts.flags`); with ``[epochs] reject_flagged`` epochs
            containing one are rejected (counted) and connectivity leaves them out.
        n_out, ts_out : int and ndarray, optional
            Rows and timestamps of ``sources`` and ``prepared`` when the operator decimates
            (default: ``n`` and ``ts``).
        """
        import pylsl

        m, t_out = (n, ts) if n_out is None else (n_out, ts_out)
        roi = None
        if self.roi_stage is not None and m:
            roi_in = prepared if self.roi_stage.input_kind == "channels" else sources
            roi = self.roi_stage.process(roi_in, m)
            stamps = t_out.tolist()
            self.roi_outlet.push_chunk(roi, stamps)
            if self.bandpower is not None:
                values, t = self.bandpower.process(roi, t_out, m)
                if len(t):
                    self.bandpower_outlet.push_chunk(values, t.tolist())
        if self.event_stage is not None and m:
            self.event_stage.process(roi, sources, t_out, m, flags)
        if self.adaptive is not None and m:
            self.adaptive.update(prepared, m, float(t_out[-1]))
            self.services.stats.covariance_age_s = self.adaptive.covariance_age_s
        if self.detector is not None and self.detector.update(raw, n, ts):
            for ev in self.detector.events():
                fields = ev.as_event()
                self.services.events.publish("bad_channel", pylsl.local_clock(), **{k: v for k, v in fields.items() if k != "time"})
            while self.detector.hints:  # e.g. every channel of a type flat: probably a unit problem
                self.services.stats.unit_warnings += 1
                self.services.events.publish("unit_warning", pylsl.local_clock(), hint=self.detector.hints.pop(0))
            bad = tuple(self.detector.bad_channels)
            if self.options.auto_swap and bad != self.bad_channels and self.hot_swap is not None:
                problem = self._below_floor(set(bad) | self.excluded)
                if problem is None:
                    self.hot_swap.request(frozenset(bad) | self.excluded, "bad_channel")
                elif frozenset(bad) != self._refused:  # one event per set, not per chunk
                    self._refused = frozenset(bad)
                    self.services.events.publish("swap_refused", pylsl.local_clock(), bad_channels=sorted(bad), error=problem)
                    logger.warning("not swapping: %s", problem)
                    return
            with self._bad_lock:
                self.bad_channels = bad

    def _below_floor(self, bad) -> str | None:
        """Why dropping ``bad`` would leave too few channels, or None if it would not."""
        n = self.bundle.n_channels
        left = n - len(set(bad))
        if left >= self.min_channels:
            return None
        return (
            f"{len(set(bad))} bad channels would leave {left} of {n}, below [badchannels] min_channels = {self.min_channels}; "
            "mark channels good first, fix the electrodes, or lower min_channels"
        )

    def mark_bad(self, channel: str) -> None:
        """Mark a channel bad by hand (API, CLI) and rebuild the operator without it."""
        if channel not in self.bundle.ch_names:
            from ..errors import ChannelError

            raise ChannelError(f"channel {channel!r} is not one of the bundle's channels ({', '.join(self.bundle.ch_names[:8])}, ...)")
        if self.services.rebuilder is None:
            raise StreamError(
                f"cannot mark {channel!r} bad: this loop has no operator rebuilder to drop channels with; "
                "make the loop with rebuilder=rtsource.session.operator_rebuilder()"
            )
        with self._bad_lock:
            bad = tuple(sorted(set(self.bad_channels) | {channel}))
            problem = self._below_floor(set(bad) | self.excluded)
            if problem is not None:
                from ..errors import ChannelError

                raise ChannelError(f"not marking {channel!r} bad: {problem}")
            self.bad_channels = bad
        if self.detector is not None:
            self.detector.mark_bad(channel)
        if self.hot_swap is None:
            self._start_hot_swap()
        self.hot_swap.request(frozenset(bad) | self.excluded, "manual")

    def mark_good(self, channel: str) -> None:
        """Take a channel back: rebuild the operator with it."""
        if channel not in self.bad_channels:
            from ..errors import ChannelError

            raise ChannelError(f"channel {channel!r} is not marked bad (bad: {', '.join(self.bad_channels) or 'none'})")
        if self.detector is not None:
            self.detector.mark_good(channel)
        with self._bad_lock:
            self.bad_channels = bad = tuple(c for c in self.bad_channels if c != channel)
        if self.hot_swap is None and self.services.rebuilder is not None:
            self._start_hot_swap()
        if self.hot_swap is not None:
            self.hot_swap.request(frozenset(bad) | self.excluded, "manual")

    def exclude_nonfinite(self, channels: frozenset) -> None:
        """Run the operator without ``channels`` (dead: NaN/Inf) on top of the bad ones.

        Raises (and changes nothing) when the operator cannot be rebuilt or when the bad and
        excluded channels together would fall below :attr:`min_channels`.
        """
        from ..errors import BundleError, ChannelError

        if self.services.rebuilder is None:
            raise StreamError(
                f"cannot exclude non-finite channel(s) {sorted(channels)}: this loop has no operator rebuilder to drop channels with; "
                "make the loop with rebuilder=rtsource.session.operator_rebuilder()"
            )
        if channels and not _can_rebuild(self.bundle):
            raise BundleError(
                f"cannot exclude non-finite channel(s) {sorted(channels)}: the bundle has no cached lead field and noise covariance, "
                "so the operator cannot be rebuilt without a channel; rebuild the bundle with a current rtsource"
            )
        with self._bad_lock:
            problem = self._below_floor(set(self.bad_channels) | set(channels))
            if problem is not None:
                raise ChannelError(f"not excluding non-finite channel(s) {sorted(channels)}: {problem}")
            self.excluded = frozenset(channels)
            bad = frozenset(self.bad_channels)
        if self.hot_swap is None:
            self._start_hot_swap()
        self.hot_swap.request(bad | self.excluded, "nonfinite")

    def on_gap(self) -> None:
        """After a gap the detector's windows and the band-power filters start over."""
        if self.detector is not None:
            self.detector.restart()
        if self.bandpower is not None:
            self.bandpower.reset()
        if self.event_stage is not None:
            self.event_stage.on_gap()

    def rebase(self, bundle: OperatorBundle):
        """The head moved (MEG, :mod:`.headmotion`): ``bundle`` (same channels, the lead field
        of the new pose) is the base of every later rebuild. Returns (operator, ROI stage) of
        it without the channels now marked bad or excluded, and the ``hand_over(reason,
        requested_at, **details)`` that requests its swap through :meth:`offer`."""
        with self._bad_lock:
            self.bundle = bundle
            bad = frozenset(self.bad_channels) | self.excluded
        op, stage = self._with_roi_stage(self._rebuild(bad, base=bundle))
        return op, stage, lambda reason, requested_at, **details: self.offer(op, stage, bundle, bad, reason, requested_at, **details)

    def offer(self, op, stage, base: OperatorBundle, bad: frozenset, reason: str, requested_at: float, **details) -> bool:
        """Request the swap to ``op`` (built from ``base`` without ``bad``) if both are still the
        newest; else drop it and return False.

        A head-motion rebase and a bad-channel rebuild run in different threads: one may
        finish with the old pose or the old bad set after the other was requested. Each
        build starts from the base and the bad set of its time, a change of either comes
        with a build of its own (the rebase, ``mark_bad``'s request) that starts after it,
        so dropping what is outdated at hand-over leaves the newest pose and the newest bad
        set live (``tests/stream/test_headmotion_e2e.py``).
        """
        with self._bad_lock:
            if base is self.bundle and frozenset(bad) == frozenset(self.bad_channels) | self.excluded:
                self.services.request_swap(op, reason, requested_at, roi_stage=stage, **details)
                return True
        logger.info("dropping a %s operator built for an older head pose or bad-channel set; a newer build follows", reason)
        return False

    def install(self, roi_stage) -> None:
        """Called by the loop when a swap it installs carries a new ROI stage."""
        if roi_stage is not None:
            self.roi_stage = roi_stage

    def close(self) -> None:
        if self.event_stage is not None:
            self.event_stage.close()
        for worker in (self.hot_swap, self.adaptive):
            if worker is not None:
                worker.close()

    # ---- background builds ------------------------------------------------------------
    def _start_hot_swap(self) -> None:
        from .swap import BackgroundRebuilder

        self.hot_swap = BackgroundRebuilder(
            self._build_without, warm_up=self._warm_up_rebuilds, on_built=self._hand_over, on_failed=self._rebuild_failed, name="rtsource-hot-swap"
        )

    def _warm_up_rebuilds(self) -> None:
        """Prepare the lead field once for every rebuild, then run a few rebuilds that are
        thrown away: the first ones in a process pay for LAPACK's set-up and for faulting in
        fresh buffers until the allocator keeps them (2-5x slower), and a channel going bad
        should not. Telemetry's ``hot_swap_ready`` turns 1 when this is over."""
        bundle = self.bundle
        if not _can_rebuild(bundle):
            return  # without a cached lead field, no rebuild
        t0 = time.perf_counter()
        with _single_blas_thread():
            self.services.rebuilder.prepare(bundle)
        t1 = time.perf_counter()
        spare = [c for c in bundle.ch_names if c != bundle.reference]
        cold_eloreta = bundle.method == "eLORETA" and bundle.source_weights is None  # a full fit: too long
        if len(spare) >= 3 and not cold_eloreta:
            max_iter = 1 if bundle.method == "eLORETA" else None
            for channel in spare[-_WARM_UP_REBUILDS:]:
                self._with_roi_stage(self._rebuild(frozenset([channel]), max_iter=max_iter))
        prepare_ms, trial_ms = (t1 - t0) * 1e3, (time.perf_counter() - t1) * 1e3
        logger.info("hot swap ready: lead field prepared in %.0f ms, trial rebuilds %.0f ms", prepare_ms, trial_ms)
        self.services.stats.hot_swap_ready = True
        import pylsl

        self.services.events.publish("hot_swap_ready", pylsl.local_clock(), prepare_ms=round(prepare_ms, 1), trial_rebuilds_ms=round(trial_ms, 1))

    def _with_roi_stage(self, bundle: OperatorBundle):
        """A prepared StreamOperator of ``bundle`` for this stream, and its ROI stage."""
        op = self.services.prepare_operator(bundle)
        stage = None
        if self.roi_operator is not None:
            refolded = self.roi_operator.refold(
                kernel=bundle.kernel, noise_norm=bundle.noise_norm, ch_names=bundle.ch_names, normals=bundle.sources.normals, source_rotation=bundle.source_rotation
            )
            stage = self.roi_stage.rebuilt(refolded, channel_scale=op.channel_map.scale)
            stage.warm_up()
        return op, stage

    def _rebuild(self, bad, data_cov=None, max_iter: int | None = None, base: OperatorBundle | None = None) -> OperatorBundle:
        # One BLAS thread: several would fight the loop for the cores and make the rebuild
        # 3-10x slower on a busy 2-core machine (tools/bench_rebuild.py).
        base = self.bundle if base is None else base
        with _single_blas_thread():
            if data_cov is None and not bad:
                return base
            return self.services.rebuilder.without_channels(base, sorted(bad), data_cov=data_cov, max_iter=max_iter)

    def _build_without(self, bad):
        started = time.perf_counter()
        cov = None
        if self.adaptive is not None:  # keep adapting: the newest covariance, without the bad channels
            snap = self.adaptive._payload()
            cov = snap.data if snap is not None else None
        bundle = self.bundle  # the base of this build (a head-motion rebase may replace it meanwhile)
        if bad and bundle.method == "eLORETA" and bundle.source_weights is not None:
            # eLORETA iterates: swap in one iteration from the current weights at once
            # (within ~1e-2 of converged), then the converged operator when it is ready.
            op, stage = self._with_roi_stage(self._rebuild(bad, cov, max_iter=1, base=bundle))
            self.offer(op, stage, bundle, bad, "bad_channel (eLORETA, first iteration)", started, bad_channels=sorted(bad))
        return (*self._with_roi_stage(self._rebuild(bad, cov, base=bundle)), bundle, bad)

    def _build_adaptive(self, snapshot):
        bundle, bad = self.bundle, frozenset(self.bad_channels) | self.excluded
        return (*self._with_roi_stage(self._rebuild(bad, snapshot.data, base=bundle)), bundle, bad)

    def _rebuild_failed(self, payload, reason: str, error: str) -> None:
        """A background build failed (worker thread): say so on events and telemetry, and
        forget the request, so the bad channels are again those of the operator in use."""
        import pylsl

        from .control_auth import clip

        self.services.stats.rebuild_failures += 1
        fields = {"request": reason or "rebuild", "error": clip(error, 300)}
        if isinstance(payload, frozenset):
            fields["bad_channels"] = sorted(payload)
            in_use = set(self.services.current_operator().bundle.ch_names)
            with self._bad_lock:
                if frozenset(self.bad_channels) | self.excluded == payload:  # no newer request since
                    # the operator in use says what is out: excluded (non-finite) as before, bad the rest
                    self.excluded = frozenset(c for c in self.excluded if c not in in_use)
                    self.bad_channels = tuple(c for c in self.bundle.ch_names if c not in in_use and c not in self.excluded)
        self.services.events.publish("rebuild_failed", pylsl.local_clock(), **fields)

    def _hand_over(self, swap) -> None:
        op, stage, base, bad = swap.value
        details = {"build_ms": round(swap.build_ms, 1)}
        if isinstance(swap.payload, frozenset):
            details["bad_channels"] = sorted(swap.payload)
        self.offer(op, stage, base, bad, swap.reason or "rebuild", swap.requested_at, **details)
