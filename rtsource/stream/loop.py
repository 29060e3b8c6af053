"""The streaming loop: input source -> channel map -> operator -> LSL outlets.

    bundle ─┐
    stream ─┴> connect(): resolve, read header, check rate, map channels by name,
               prepare the operator, open the outlets (sources, telemetry, events)
               run():     pull chunk -> gather / filter / apply (numba) -> push with the
                          input timestamps -> counters; between chunks: operator swaps,
                          telemetry, stream health

Guarantees and policies (each is counted in :class:`LoopStats`, published on the telemetry
stream, and, where it is an event, on the events stream):

- Every input sample yields exactly one output sample, published with the input sample's
  own timestamp (the producer's clock); with decimation (``output_rate_hz``) every D-th
  input sample does, with its own timestamp, and the others are counted ``decimated``. With
  ASR's look-ahead (:mod:`.artifacts`) the output sample is the input sample that much
  earlier, and carries that sample's timestamp. The default never skips; ``latest_only`` mode skips
  the backlog explicitly when processing falls behind and publishes what it skipped.
- Counters are counted where things happen: ``samples_in`` where samples are pulled,
  ``samples_out`` after the outlet accepted them, ``skipped`` where the backlog is dropped;
  ``lost = in - out - skipped`` is therefore a measurement (a failed push shows up in it).
- A sample with NaN/Inf in an operator channel gives a NaN output sample (``nan_samples``)
  and never enters the filter state; NaN samples are reported once per episode (start and
  end). A channel that stays non-finite is excluded through the hot swap and taken back
  when it is finite again (:class:`~rtsource.stream.health.NonFiniteGuard`).
- The effective sampling rate is measured from the timestamps; a rate off the declared one
  is an event, and a clearly wrong rate in the first seconds stops the loop with an error
  (:class:`~rtsource.stream.health.RateMonitor`).
- A gap (timestamps further apart than a few sample periods) is an event with its duration;
  the causal filter restarts at the steady state of the first sample after the gap.
- Timestamps that go backwards by more than the jitter of back-dated chunks (10 samples or
  50 ms), or a jump in the LSL clock offset, are clock-jump events.
- When the producer disappears the loop keeps running and reports ``waiting``; when a
  stream with the same source_id comes back, LSL reconnects the inlet and processing
  resumes without a restart (the header is checked again).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from ..bundle import OperatorBundle
from ..errors import StreamError
from .artifacts import LoopArtifacts
from .channels import ChannelMap, map_stream_channels
from .compensation import stream_compensation
from .events import EventPublisher
from .features import FeatureOptions, Features
from .health import NonFiniteGuard, RateMonitor, report_implausible_amplitudes, report_nonfinite_change, report_rate_change
from .inlet import Inlet, StreamSelector, modality_of, resolve_stream
from .operator import FilterSpec, StreamOperator
from .outlets import OutputIdentity, artifact_fields, open_source_outlet, output_source_id
from .services import LoopServices, OperatorRebuilder, PendingSwap
from .source import InputSource
from .telemetry import LoopStats, TelemetryPublisher

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopOptions:
    """How the loop finds its input, names its outputs and handles trouble."""

    selector: StreamSelector = field(default_factory=StreamSelector)
    resolve_timeout: float = 10.0
    max_chunk: int = 1024
    assume_unit: str = ""
    aliases: Mapping[str, str] = field(default_factory=dict)
    filter: FilterSpec = field(default_factory=FilterSpec)
    output_name: str = "rtsource-sources"
    output_type: str = "Sources"
    output_source_id: str = ""
    bundle_path: str = ""
    idle_timeout: float = 0.0  # stop when no data came for this long (0: wait forever)
    lost_after: float = 1.0  # no data for this long: the input counts as lost ("waiting")
    latest_only: bool = False  # skip the backlog (explicitly) instead of falling behind
    max_backlog: int = 0  # latest_only: samples allowed to wait before skipping (0: one chunk)
    clock_jump_s: float = 0.005  # change of the LSL clock offset reported as a jump
    telemetry: bool = True  # publish the telemetry and events streams
    control: bool = True  # accept commands (mark_bad, ...) on NAME-control
    control_key_file: str = ""  # the commands' shared secret (empty: control_auth.default_key_path)
    threads: int = 0  # kernel threads (0: all cores but one, which LSL's I/O and consumers need)
    low_rank: str = "auto"  # see StreamOperator
    output_rate_hz: float = 0.0  # decimate before the operator (0: off; see stream.decimation)
    operator_dtype: str = "float32"  # "int16": per-row scaled int16 operator (see stream.quantize)
    # Before the first chunk, wait up to this long for a consumer of the first output (the
    # sources, else the ROIs), so that a display or recorder started with the loop misses
    # nothing: LSL gives a late consumer only what is pushed after it connects. The input
    # is buffered meanwhile and then processed, so no sample is lost either way.
    wait_for_consumer_s: float = 1.0
    # Output outlets keep at most this much data per consumer: a consumer that stalls (alive,
    # not reading) would otherwise make LSL buffer up to 360 s of output in this process. The
    # price: output pushed faster than a consumer takes it (a backlog of more than this
    # processed at once, a replay faster than real time) loses its oldest samples there.
    max_buffered_s: float = 10.0
    exclude_nonfinite_s: float = 0.1  # a channel non-finite this long is excluded (0: never)
    rate_tolerance: float = 0.02  # effective rate off the declared one by more than this: event
    rate_window_s: float = 10.0
    rate_startup_s: float = 2.0  # clearly wrong rate (10 %) over the first seconds: refuse (0: off)
    compensation_grade: int = -1  # CTF grade of the stream's data (-1: as declared, else the bundle's; stream.compensation)


class StreamLoop:
    """Apply an operator bundle to a live stream.

    Use :meth:`connect` then :meth:`run` (or :meth:`run_in_thread`); :attr:`stats` is live
    while it runs and :attr:`events` holds the recent events.

    Parameters
    ----------
    bundle : OperatorBundle
    options : LoopOptions
    source : InputSource, optional
        Where samples come from; by default the LSL stream ``options.selector`` finds.
    features : FeatureOptions, optional
        ROIs, band power, bad-channel handling, adaptive weights (see :mod:`.features`).
    rebuilder : OperatorRebuilder, optional
        Rebuilds the operator without some channels (a bad channel, adaptive weights); the
        pipeline passes the offline side's (:func:`rtsource.session.operator_rebuilder`).
        Without it no channel can be dropped while streaming.
    headmotion : HeadMotionOptions, optional
        cHPI head tracking (lines removed before the operator, ``NAME-headpos``, the
        forward that follows the head; :mod:`.headmotion`).
    """

    def __init__(self, bundle: OperatorBundle, options: LoopOptions, source: InputSource | None = None, features: FeatureOptions | None = None,
                 rebuilder: OperatorRebuilder | None = None, headmotion=None):  # fmt: skip
        self.bundle = bundle
        self.options = options
        self.feature_options = features or FeatureOptions()
        self.rebuilder = rebuilder
        self.features: Features | None = None
        self.stats = LoopStats()
        self.inlet: InputSource | None = source
        self.outlet = None
        self.operator: StreamOperator | None = None
        self.channel_map: ChannelMap | None = None
        self.events: EventPublisher | None = None
        self.telemetry: TelemetryPublisher | None = None
        self._stop = threading.Event()
        self._time_correction = 0.0
        self._pending: PendingSwap | None = None
        self._swap_lock = threading.Lock()
        self._base_lock = threading.Lock()  # self.bundle (head motion rebases it) and self.features
        #: the error that stopped :meth:`run`, if any (a stream that came back incompatible)
        self.error: Exception | None = None
        self.control = None
        self.source_id = ""
        self.nonfinite: NonFiniteGuard | None = None
        self.rate: RateMonitor | None = None
        self._push_failing = False
        self._blas_limit = None  # OpenBLAS's thread count while running (restored by close)
        self.headmotion_options = headmotion
        self.headmotion = None  # the stage (connect makes it)
        self.artifacts: LoopArtifacts | None = None  # the bundle's artifact correction

    # ---- setup ----------------------------------------------------------------------
    def connect(self) -> None:
        """Find the stream, check it against the bundle, prepare the operator, open the outlets."""
        opts = self.options
        if self.inlet is None:
            info = resolve_stream(opts.selector.for_modality(modality_of(self.bundle.ch_types)), opts.resolve_timeout)
            self.inlet = Inlet(info, opts.max_chunk, open_timeout=opts.resolve_timeout)
        desc = self.inlet.description
        # The first clock-offset estimate takes LSL ~0.6 s of round trips: let it run while
        # the operator and the outlets are prepared.
        offset = threading.Thread(target=self._initial_time_correction, name="rtsource-time-correction", daemon=True)
        offset.start()
        self.artifacts = LoopArtifacts(self.bundle, self.stats, None, aliases=opts.aliases, assume_unit=opts.assume_unit)
        try:
            self._check_rate(desc)
            operator = self.prepare_operator(self.bundle)
        except Exception:
            self.inlet.close()
            raise
        self.operator, self.channel_map = operator, operator.channel_map
        logger.info("stream %s: %s", desc.label(), operator.channel_map.summary())
        sid = opts.output_source_id or output_source_id(self.bundle, desc)
        self.source_id = sid
        if self.feature_options.sources_output:
            self.outlet = open_source_outlet(self.bundle, desc, self._identity(), type_=opts.output_type)
        self.events = EventPublisher(opts.output_name, sid, opts.bundle_path, publish=opts.telemetry)
        self.artifacts.events = self.events
        self.artifacts.installed(operator)
        if self.feature_options.any or opts.control:
            # With the control stream a channel can be marked bad at any time: the features
            # get the hot swap ready in the background now (see Features).
            self.features = self._make_features(self.feature_options)
        if self.headmotion_options is not None:
            from .headmotion import HeadMotion

            services = LoopServices(self.stats, self.events, self.request_swap, self.prepare_operator, lambda: self.operator, self.rebuilder)
            self.headmotion = HeadMotion(self.headmotion_options, self.bundle, desc, services, self._identity(), aliases=opts.aliases,
                                         assume_unit=opts.assume_unit, rebase=self._rebase_checked)  # fmt: skip
        self.artifacts.bind(LoopServices(self.stats, self.events, self.request_swap, self.prepare_operator, lambda: self.operator, self.rebuilder),
                            self._rebase_checked, lambda: self.bundle)  # fmt: skip
        if opts.control:
            from .control import ControlListener
            from .control_auth import default_key_path, ensure_key

            key = ensure_key(opts.control_key_file or default_key_path(opts.output_name))
            self.control = ControlListener(opts.output_name, key)
        if opts.telemetry:
            self.telemetry = TelemetryPublisher(opts.output_name, sid, opts.bundle_path)
        self.nonfinite = NonFiniteGuard(self.bundle.ch_names, operator.channel_map.index, self.bundle.sfreq, exclude_after_s=opts.exclude_nonfinite_s)
        self.rate = RateMonitor(desc.sfreq, window_s=opts.rate_window_s, tolerance=opts.rate_tolerance, startup_s=opts.rate_startup_s)
        self.stats.max_buffered_s = opts.max_buffered_s
        offset.join(6.0)

    def _identity(self) -> OutputIdentity:
        opts = self.options
        return OutputIdentity(
            opts.output_name, self.source_id, opts.bundle_path, self.inlet.description.name, max_buffered_s=opts.max_buffered_s,
            sfreq=self.operator.output_rate_hz, metadata=self.operator.describe(), artifacts=artifact_fields(self.bundle),
        )  # fmt: skip

    def _make_features(self, options: FeatureOptions) -> Features:
        services = LoopServices(self.stats, self.events, self.request_swap, self.prepare_operator, lambda: self.operator, self.rebuilder,
                                time_correction=lambda: self._time_correction)  # fmt: skip
        return Features(self.bundle, self.channel_map, options, services, self._identity(), max_chunk=self.options.max_chunk)

    def _check_rate(self, desc) -> None:
        if abs(desc.sfreq - self.bundle.sfreq) > 1e-6 * self.bundle.sfreq:
            raise StreamError(
                f"stream {desc.name!r} runs at {desc.sfreq:g} Hz but the bundle was built for "
                f"{self.bundle.sfreq:g} Hz; rebuild the bundle for this rate (`rtsource setup` with "
                f"[stream] sfreq = {desc.sfreq:g}) or set the amplifier to {self.bundle.sfreq:g} Hz"
            )

    def prepare_operator(self, bundle: OperatorBundle) -> StreamOperator:
        """A warmed-up :class:`StreamOperator` of ``bundle`` for the connected stream's layout."""
        opts = self.options
        cmap = map_stream_channels(
            self.inlet.description, bundle.ch_names, bundle.ch_units, aliases=opts.aliases, assume_unit=opts.assume_unit, ch_types=bundle.ch_types
        )
        comp = stream_compensation(bundle, self.inlet.description, opts.compensation_grade, aliases=opts.aliases, assume_unit=opts.assume_unit)
        op = StreamOperator(bundle, cmap, opts.max_chunk, opts.filter, low_rank=opts.low_rank, compensation=comp, output_rate_hz=opts.output_rate_hz,
                            threads=opts.threads, operator_dtype=opts.operator_dtype)  # fmt: skip
        if comp is not None:
            logger.info("%s", comp.describe())
        op.warm_up()
        if self.artifacts is not None:
            self.artifacts.attach(op, self.inlet.description)
        return op

    # ---- operator swaps (adaptive weights, bad-channel hot swap) --------------------
    def request_swap(self, operator: StreamOperator, reason: str, requested_at: float, roi_stage=None, **details) -> None:
        """Install ``operator`` (and its ROI stage) between two chunks; thread-safe, newest wins.

        ``requested_at`` is the ``time.perf_counter()`` at which the need arose, so the
        reported swap time covers the rebuild as well as the wait for the chunk boundary.
        """
        if operator.n_outputs != self.operator.n_outputs:
            raise StreamError(f"new operator has {operator.n_outputs} outputs, the running one {self.operator.n_outputs}")
        with self._swap_lock:
            self._pending = PendingSwap(operator, reason, requested_at, roi_stage, details)

    def _rebase_checked(self, bundle: OperatorBundle):
        """Later rebuilds start from ``bundle`` (a background thread: head motion, artifact
        recalibration); returns its (operator, ROI stage) without the channels dropped so far,
        and ``hand_over(reason, requested_at, **details) -> bool``, which requests the swap
        unless a bad-channel change arrived meanwhile (its own rebuild, from ``bundle``, is
        then the newest: :meth:`.features.Features.offer`)."""
        with self._base_lock:  # features made from here on start from this bundle
            self.bundle = bundle
            features = self.features
        if features is not None:
            return features.rebase(bundle)
        op = self.prepare_operator(bundle)

        def hand_over(reason: str, requested_at: float, **details) -> bool:
            with self._base_lock:
                features = self.features
                if features is None:
                    if self.bundle is not bundle:
                        return False
                    self.request_swap(op, reason, requested_at, **details)
                    return True
            return features.offer(op, None, bundle, frozenset(), reason, requested_at, **details)

        return op, None, hand_over

    def _features(self) -> Features:
        """The features, made on first use (a channel marked bad by hand or dead)."""
        with self._base_lock:
            if self.features is None:
                self.features = self._make_features(FeatureOptions())
            return self.features

    def mark_bad(self, channel: str) -> None:
        """Mark an operator channel bad while running: the operator is rebuilt without it
        in the background and swapped in between two chunks."""
        self._features().mark_bad(channel)

    def mark_good(self, channel: str) -> None:
        """Take a channel back (the operator is rebuilt with it)."""
        self._features().mark_good(channel)

    def _execute_commands(self, now_lsl: float) -> None:
        """Run what the control listener checked; answer each item (by its id) on the events."""
        from .control_auth import Refusal, clip

        for item in self.control.pending():
            if isinstance(item, Refusal):
                self.stats.commands_refused += 1
                self.events.publish("command", now_lsl, **item.as_event())
                continue
            answer = {"id": item.id, "command": item.command, "channel": item.channel}
            try:
                if item.command == "recalibrate_artifacts":
                    self.artifacts.recalibrate(item.channel, now_lsl, self.operator)
                else:
                    (self.mark_bad if item.command == "mark_bad" else self.mark_good)(item.channel)
                self.events.publish("command", now_lsl, **answer, ok=True)
            except Exception as exc:  # a wrong channel name or the floor must not stop the loop
                self.stats.commands_refused += 1
                self.events.publish("command", now_lsl, **answer, ok=False, reason="refused", error=clip(str(exc), 300))

    def _install_pending(self, now_lsl: float) -> None:
        with self._swap_lock:
            pending, self._pending = self._pending, None
        operator = pending.operator
        operator.adopt_filter_state(self.operator)
        self.operator, self.channel_map = operator, operator.channel_map
        self.artifacts.installed(operator)
        if self.features is not None:
            self.features.install(pending.roi_stage)
        stats = self.stats
        # bad channels as the operator in use sees them (not as requested)
        stats.bad_channels = self.bundle.n_channels - operator.bundle.n_channels
        stats.operator_swaps += 1
        stats.last_swap_ms = (time.perf_counter() - pending.requested_at) * 1e3
        self.events.publish("operator_swap", now_lsl, reason=pending.reason, swap_ms=round(stats.last_swap_ms, 3), **pending.details)

    # ---- run ------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask :meth:`run` to return after the current chunk."""
        self._stop.set()

    def run(self, duration: float | None = None, on_chunk: Callable[[np.ndarray, np.ndarray], None] | None = None) -> LoopStats:
        """Process chunks until ``duration`` s have passed, :meth:`stop`, or the idle timeout.

        Parameters
        ----------
        duration : float, optional
            Wall-clock seconds to run (None: until stopped).
        on_chunk : callable, optional
            Called with (timestamps, output) after each published chunk (tests, the demo).
        """
        import pylsl

        if self.operator is None:
            self.connect()
        inlet, stats, opts = self.inlet, self.stats, self.options
        import numba

        from .dispatch import kernel_threads, limit_blas_threads

        numba.set_num_threads(kernel_threads(opts.threads))  # all cores but one: see kernel_threads
        self._blas_limit = limit_blas_threads(kernel_threads(opts.threads))  # the BLAS path alike (dispatch)
        if not inlet.is_open:
            inlet.open()
        first_outlet = self.outlet or (self.features.roi_outlet if self.features is not None else None)
        if first_outlet is not None and opts.wait_for_consumer_s > 0:
            first_outlet.wait_for_consumers(opts.wait_for_consumer_s)
        period = 1.0 / self.bundle.sfreq
        # Timestamps jitter: apps that push chunks without per-sample stamps get them
        # back-dated from the push time, so consecutive chunks may overlap or space out by a
        # few samples. A gap is more than that; a clock jump is a step back beyond it.
        gap_tolerance = max(3.0 * period, 0.02)
        jitter_back = max(10.0 * period, 0.05)
        stats.started_at = time.perf_counter()
        self.events.publish("started", pylsl.local_clock(), stream=inlet.description.name, bundle=opts.bundle_path, **dict(self.operator.describe()))
        deadline = None if duration is None else stats.started_at + duration
        last_data = stats.started_at
        last_ts = None
        next_correction = stats.started_at + 5.0
        checked_units = False
        while not self._stop.is_set():
            now = time.perf_counter()
            if deadline is not None and now >= deadline:
                break
            if self._pending is not None:
                self._install_pending(pylsl.local_clock())
            if self.control is not None and not self.control.commands.empty():
                self._execute_commands(pylsl.local_clock())
            if self.telemetry is not None and now >= self.telemetry.next_due:
                self.artifacts.refresh_stats()
                self.telemetry.publish(stats, now)
            wait = 0.05 if deadline is None else max(0.0, min(0.05, deadline - now))
            ts = inlet.pull(timeout=wait)
            n = len(ts)
            stats.samples_in += n  # counted where pulled
            now = time.perf_counter()
            if n == 0:
                idle = now - last_data
                if not stats.waiting and idle > opts.lost_after:
                    stats.waiting = True
                    stats.stream_lost += 1
                    self.events.publish("stream_lost", pylsl.local_clock(), last_sample=last_ts, idle_s=round(idle, 3))
                    logger.warning("no data from %r for %.1f s: waiting for it to come back", inlet.description.name, idle)
                if opts.idle_timeout and idle > opts.idle_timeout:
                    logger.info("no data for %.1f s; stopping", opts.idle_timeout)
                    break
                if now >= next_correction:
                    self._refresh_time_correction()
                    next_correction = now + 5.0
                continue
            if stats.waiting:
                stats.waiting = False
                self.events.publish("stream_back", pylsl.local_clock(), first_sample=float(ts[0]))
                logger.info("stream %r is back", inlet.description.name)
                self.rate.restart()
                if not self._recheck_layout():
                    break
            stats.backlog = inlet.samples_available() if hasattr(inlet, "samples_available") else 0
            stats.max_backlog = max(stats.max_backlog, stats.backlog)
            if opts.latest_only and stats.backlog > opts.max_backlog:
                ts, n, last_skipped = self._skip_backlog(ts, n)
                if last_skipped is not None:
                    # the skipped samples are reported as skipped, not as a gap before the next chunk
                    last_ts = last_skipped
                    self.rate.restart()
                if n == 0:
                    continue
            # continuity of the input: gaps restart the filter, backwards time is a clock jump
            if last_ts is not None:
                step = ts[0] - last_ts
                if step > gap_tolerance:
                    self._gap(last_ts, ts[0], period)
                    self.rate.restart()
                    self.operator.restart_filter_at(inlet.buffer, n)
                    if self.features is not None:
                        self.features.on_gap()
                    if self.headmotion is not None:
                        self.headmotion.restart()
                elif step < -jitter_back:
                    stats.clock_jumps += 1
                    self.events.publish("clock_jump", pylsl.local_clock(), jump_s=float(step), cause="timestamps went backwards")
                    self.operator.restart_filter_at(inlet.buffer, n)
                    self.rate.restart()
            t0 = time.perf_counter()
            if self.headmotion is not None:  # cHPI lines out before the operator's filters
                self.headmotion.process(inlet.buffer, n, ts)
            out = self.operator.process(inlet.buffer, n)
            t_op = time.perf_counter()
            # the output's own stamps: the input's, earlier by the artifact stage's look-ahead
            stamps = self.artifacts.stamps(ts)
            m, ts_out = self.operator.output_stamps(stamps, n)  # m < n when decimating
            stats.decimated += n - m  # counted where the decimation dropped them
            pushed = self._push(out, ts_out, m) if self.outlet is not None and m else True
            t_push = time.perf_counter()
            flags = self.artifacts.flags(m)  # output rows ASR repaired (epochs overlapping them are rejected)
            if self.features is not None:
                self.features.after_chunk(inlet.buffer, n, stamps, out, self.operator.prepared(m), flags, n_out=m, ts_out=ts_out)
            t1 = time.perf_counter()
            stats.operator_seconds += t_op - t0
            stats.output_seconds += t_push - t_op
            stats.features_seconds += t1 - t_push
            stats.process_seconds += t1 - t0
            if pushed:
                stats.samples_out += m  # counted once the outlet took them
            stats.chunks += 1
            stats.max_chunk_seen = max(stats.max_chunk_seen, n)
            stats.process_time.add(t1 - t0)
            # the decimation filter's group delay is latency too: the content lags the stamps
            stats.latency.add(pylsl.local_clock() - (stamps[-1] + self._time_correction) + self.operator.delay_s)
            if self.artifacts.active:
                self.artifacts.after_chunk(pylsl.local_clock(), stamps, inlet.buffer, n)
            if self.operator.last_bad:
                self._nan_rows(ts_out, m)
            elif self.nonfinite.episode_start is not None and self.nonfinite.episode_over(float(stamps[-1])):
                self._end_nan_episode()
            change = self.nonfinite.observe(inlet.buffer, n, self.operator.last_bad > 0)
            if change:
                self._exclude_nonfinite(change)
            rate_change = self.rate.update(float(ts[0]), float(ts[-1]), n)
            stats.effective_rate_hz = self.rate.measured
            refused = report_rate_change(self.rate, rate_change, inlet.description.name, stats, self.events) if rate_change else None
            if refused is not None:
                self.error = refused
                break
            if not stats.first_output_at:
                stats.first_output_at = t1
            last_ts = ts[-1]
            last_data = t1
            if not checked_units and (n >= 10 or stats.chunks >= 20):
                checked_units = True
                report_implausible_amplitudes(self.inlet.buffer, n, self.channel_map, self.operator.bundle.ch_types, stats, self.events)
            if on_chunk is not None and m:
                on_chunk(ts_out, out)
            if t1 >= next_correction:
                self._refresh_time_correction()
                next_correction = t1 + 5.0
        if self.nonfinite is not None and self.nonfinite.episode_start is not None:
            self._end_nan_episode()
        if self.telemetry is not None:
            self.artifacts.refresh_stats()
            self.telemetry.publish(stats, time.perf_counter())
        self.events.publish("stopped", pylsl.local_clock(), **{k: v for k, v in stats.summary().items() if isinstance(v, int)})
        return stats

    # ---- the things that can go wrong ------------------------------------------------
    def _recheck_layout(self) -> bool:
        """After the stream came back: same rate? Channels moved? Remap by name if so.

        Returns False (and publishes why) when the stream can no longer be processed.
        """
        import pylsl

        inlet = self.inlet
        if not hasattr(inlet, "refresh_description"):
            return True
        old = inlet.description
        try:
            new = inlet.refresh_description()
            if (new.ch_names, new.ch_units, new.ch_types) == (old.ch_names, old.ch_units, old.ch_types) and new.sfreq == old.sfreq:
                return True
            self._check_rate(new)
            operator = self.prepare_operator(self.operator.bundle)
        except Exception as exc:  # the new layout cannot feed this bundle: stop, loudly
            self.events.publish("stopped", pylsl.local_clock(), reason=f"stream came back incompatible: {exc}")
            logger.error("stream %r came back incompatible with the bundle: %s", old.name, exc)
            self.error = exc
            return False
        operator.adopt_filter_state(self.operator)
        self.operator, self.channel_map = operator, operator.channel_map
        self.artifacts.installed(operator)
        self._follow_layout()
        self.events.publish("operator_swap", pylsl.local_clock(), reason="stream came back with another channel layout", swap_ms=0.0)
        logger.warning("stream %r came back with another channel layout; channels re-mapped by name", new.name)
        return True

    def _follow_layout(self) -> None:
        """The dead-channel guard reads the bundle's channels by stream column: follow a new layout."""
        old = self.nonfinite
        try:
            cmap = map_stream_channels(
                self.inlet.description, self.bundle.ch_names, self.bundle.ch_units, aliases=self.options.aliases,
                assume_unit=self.options.assume_unit, ch_types=self.bundle.ch_types,
            )  # fmt: skip
        except Exception as exc:  # an excluded channel is missing from the new layout: no guard
            logger.warning("dead-channel exclusion is off: the stream's new layout lacks bundle channels (%s)", exc)
            self.nonfinite = NonFiniteGuard(self.bundle.ch_names, np.zeros(len(self.bundle.ch_names), np.int64), self.bundle.sfreq, exclude_after_s=0)
            return
        self.nonfinite = NonFiniteGuard(self.bundle.ch_names, cmap.index, self.bundle.sfreq, exclude_after_s=self.options.exclude_nonfinite_s)
        if old is not None and old.episode_start is not None:  # an open NaN episode carries on
            self.nonfinite.nan_rows(old.episode_start, old.episode_last, old.episode_samples)

    def _gap(self, last_ts: float, next_ts: float, period: float) -> None:
        import pylsl

        stats = self.stats
        duration = next_ts - last_ts - period
        stats.gaps += 1
        stats.gap_seconds += duration
        missing = int(round(duration / period))
        self.events.publish("gap", pylsl.local_clock(), start=float(last_ts), end=float(next_ts), duration_s=round(duration, 6), samples_missing=missing)
        logger.warning("gap of %.3f s (%d samples) in the input before t=%.3f", duration, missing, next_ts)

    def _nan_rows(self, ts: np.ndarray, n: int) -> None:
        """Count NaN output rows (where they happen); one ``nan`` event per episode."""
        import pylsl

        n_bad = self.operator.last_bad
        self.stats.nan_samples += n_bad
        rows = self.operator.bad_rows(n)
        first = float(ts[int(np.argmax(rows))])
        last = float(ts[n - 1 - int(np.argmax(rows[::-1]))])
        if self.nonfinite.nan_rows(first, last, int(n_bad)):
            cmap = self.channel_map
            dead = ~np.isfinite(self.inlet.buffer[:n, cmap.index]).all(axis=0)
            channels = [self.operator.bundle.ch_names[j] for j in np.flatnonzero(dead)]
            self.stats.nan_episodes += 1
            self.events.publish("nan", pylsl.local_clock(), state="start", start=first, channels=channels[:16], n_channels=len(channels))
            logger.warning("non-finite input in channel(s) %s from t=%.3f: those output samples are NaN", ", ".join(channels[:8]), first)

    def _end_nan_episode(self) -> None:
        import pylsl

        start, last, count = self.nonfinite.close_episode()
        self.events.publish("nan", pylsl.local_clock(), state="end", start=start, end=last, n_samples=count)
        logger.info("non-finite input episode over: %d NaN output samples between t=%.3f and %.3f", count, start, last)

    def _exclude_nonfinite(self, change) -> None:
        """Swap dead channels out of the operator (and back in) through the bad-channel hot swap."""
        self._features()
        try:
            self.features.exclude_nonfinite(frozenset(self.nonfinite.excluded))
        except Exception as exc:  # no rebuilder, or below the channel floor: NaN output stays
            # the guard keeps its view, so this is reported once, not retried every chunk
            report_nonfinite_change(change, self.events, error=exc)
        else:
            report_nonfinite_change(change, self.events)
        self.stats.excluded_channels = len(self.features.excluded)

    def _push(self, out: np.ndarray, ts: np.ndarray, n: int) -> bool:
        """Push a chunk on the source outlet; a failure is counted (lost) and reported per episode."""
        import pylsl

        try:
            self.outlet.push_chunk(out, ts.tolist())
        except Exception as exc:  # the samples are lost: lost = in - out - skipped shows it
            self.stats.push_failures += 1
            if not self._push_failing:
                self._push_failing = True
                self.events.publish("push_failed", pylsl.local_clock(), start=float(ts[0]), error=str(exc)[:200])
                logger.error("pushing to the source outlet failed (%s); the samples are lost until it works again", exc)
            return False
        if self._push_failing:
            self._push_failing = False
            lost = self.stats.lost - n  # this chunk is counted in but not yet out
            self.events.publish("push_ok", pylsl.local_clock(), first=float(ts[0]), lost=lost)
            logger.warning("the source outlet accepts samples again; %d samples were lost", lost)
        return True

    def _skip_backlog(self, ts: np.ndarray, n: int) -> tuple[np.ndarray, int, float | None]:
        """Latest-only mode: skip everything older than the newest queued chunk, and say so.

        Returns the chunk to process, its length and the timestamp of the last skipped
        sample (None if nothing was skipped), so that the skip is not also counted as a gap.
        """
        import pylsl

        inlet = self.inlet
        first_skipped = float(ts[0])
        last_skipped = None
        skipped = 0
        while inlet.samples_available() > 0:
            skipped += n  # the chunk in hand is older than what is queued behind it
            last_skipped = float(ts[-1])
            ts = inlet.pull(timeout=0.0)
            n = len(ts)
            self.stats.samples_in += n  # counted where pulled
        self.stats.skipped += skipped  # counted where skipped
        if not skipped:
            return ts, n, None
        end = float(ts[0]) if n else last_skipped
        self.events.publish("skipped", pylsl.local_clock(), start=first_skipped, end=end, n_samples=skipped)
        return ts, n, last_skipped

    def _read_time_correction(self, timeout: float, default: float) -> float:
        try:
            return float(self.inlet.time_correction(timeout=timeout))
        except Exception:  # no estimate yet (stream gone): keep the previous one
            return default

    def _initial_time_correction(self) -> None:
        self._time_correction = self._read_time_correction(5.0, default=0.0)

    def _refresh_time_correction(self) -> None:
        import pylsl

        new = self._read_time_correction(0.2, default=self._time_correction)
        jump = new - self._time_correction
        if abs(jump) > self.options.clock_jump_s:
            self.stats.clock_jumps += 1
            self.events.publish("clock_jump", pylsl.local_clock(), jump_s=round(jump, 6), cause="clock offset changed")
            logger.warning("LSL clock offset of the input changed by %.1f ms", jump * 1e3)
        self._time_correction = new

    # ---- threads and cleanup ---------------------------------------------------------
    def run_in_thread(self, duration: float | None = None, on_chunk=None) -> threading.Thread:
        """Start :meth:`run` in a background thread (connect first, in the caller's thread)."""
        if self.operator is None:
            self.connect()
        thread = threading.Thread(target=self.run, kwargs={"duration": duration, "on_chunk": on_chunk}, daemon=True, name="rtsource-loop")
        thread.start()
        return thread

    def close(self) -> None:
        if self.control is not None:
            self.control.close()
        if self.features is not None:
            self.features.close()
        if self.headmotion is not None:
            self.headmotion.close()
        if self.inlet is not None:
            self.inlet.close()
        self.outlet = None
        self.telemetry = None
        if self._blas_limit is not None:
            self._blas_limit.restore_original_limits()
            self._blas_limit = None
