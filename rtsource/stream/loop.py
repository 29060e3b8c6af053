"""The streaming loop: LSL inlet -> channel map -> operator -> LSL outlet.

    bundle ─┐
    stream ─┴> connect(): resolve, read header, check rate, map channels by name, open outlet
               run():     pull chunk -> gather/filter/apply (numba) -> push with the input timestamps

Every input sample yields exactly one output sample, published with the input sample's own
timestamp (the producer's clock). The loop counts what it does (:class:`LoopStats`) and
logs nothing per chunk.
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
from .channels import ChannelMap, map_stream_channels
from .inlet import Inlet, StreamSelector, resolve_stream
from .operator import FilterSpec, StreamOperator
from .outlet import make_source_info, output_source_id
from .telemetry import LoopStats

logger = logging.getLogger(__name__)

# EEG amplitudes above this (in V, after unit conversion) mean the unit metadata is wrong
# (microvolt numbers labelled as volts): 10 mV is far beyond any scalp EEG.
_IMPLAUSIBLE_EEG_V = 10e-3


@dataclass(frozen=True)
class LoopOptions:
    """How the loop finds its input and names its output."""

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


class StreamLoop:
    """Apply an operator bundle to a live LSL stream.

    Use :meth:`connect` then :meth:`run` (or :meth:`run_in_thread`); :attr:`stats` is
    live while it runs.
    """

    def __init__(self, bundle: OperatorBundle, options: LoopOptions):
        self.bundle = bundle
        self.options = options
        self.stats = LoopStats()
        self.inlet: Inlet | None = None
        self.outlet = None
        self.operator: StreamOperator | None = None
        self.channel_map: ChannelMap | None = None
        self._stop = threading.Event()
        self._time_correction = 0.0

    # ---- setup ----------------------------------------------------------------------
    def connect(self) -> None:
        """Find the stream, check it against the bundle, open the outlet, compile kernels."""
        import pylsl

        opts = self.options
        info = resolve_stream(opts.selector, opts.resolve_timeout)
        inlet = Inlet(info, opts.max_chunk, open_timeout=opts.resolve_timeout)
        desc = inlet.description
        if abs(desc.sfreq - self.bundle.sfreq) > 1e-6 * self.bundle.sfreq:
            inlet.close()
            raise StreamError(
                f"stream {desc.name!r} runs at {desc.sfreq:g} Hz but the bundle was built for "
                f"{self.bundle.sfreq:g} Hz; rebuild the bundle for this rate (`rtsource setup` with "
                f"[stream] sfreq = {desc.sfreq:g}) or set the amplifier to {self.bundle.sfreq:g} Hz"
            )
        cmap = map_stream_channels(desc, self.bundle.ch_names, self.bundle.ch_units, aliases=opts.aliases, assume_unit=opts.assume_unit)
        logger.info("stream %s: %s", desc.label(), cmap.summary())
        operator = StreamOperator(self.bundle, cmap, opts.max_chunk, opts.filter)
        operator.warm_up()
        sid = opts.output_source_id or output_source_id(self.bundle, desc)
        out_info = make_source_info(self.bundle, desc, name=opts.output_name, type_=opts.output_type, source_id=sid, bundle_path=opts.bundle_path)
        self.outlet = pylsl.StreamOutlet(out_info, chunk_size=0, max_buffered=360)
        self.inlet, self.channel_map, self.operator = inlet, cmap, operator
        self._time_correction = inlet.time_correction(timeout=5.0)

    # ---- run ------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask :meth:`run` to return after the current chunk."""
        self._stop.set()

    def run(self, duration: float | None = None, on_chunk: Callable[[np.ndarray, np.ndarray], None] | None = None) -> LoopStats:
        """Process chunks until ``duration`` seconds have passed, :meth:`stop`, or idle timeout.

        Parameters
        ----------
        duration : float, optional
            Wall-clock seconds to run (None: until stopped).
        on_chunk : callable, optional
            Called with (timestamps, output) after each published chunk (tests, the demo).
        """
        import pylsl

        if self.inlet is None:
            self.connect()
        inlet, operator, outlet, stats = self.inlet, self.operator, self.outlet, self.stats
        if not inlet.is_open:
            inlet.open()
        period = 1.0 / self.bundle.sfreq
        gap_tolerance = max(3.0 * period, 0.02)  # timestamps jitter; a gap is several samples missing
        stats.started_at = time.perf_counter()
        deadline = None if duration is None else stats.started_at + duration
        last_data = stats.started_at
        last_ts = None
        next_correction = stats.started_at + 10.0
        checked_units = False
        while not self._stop.is_set():
            now = time.perf_counter()
            if deadline is not None and now >= deadline:
                break
            wait = 0.1 if deadline is None else max(0.0, min(0.1, deadline - now))
            ts = inlet.pull(timeout=wait)
            n = len(ts)
            if n == 0:
                if self.options.idle_timeout and time.perf_counter() - last_data > self.options.idle_timeout:
                    logger.info("no data for %.1f s; stopping", self.options.idle_timeout)
                    break
                if now >= next_correction:  # keep the clock offset fresh while idle
                    self._time_correction = inlet.time_correction(timeout=0.5)
                    next_correction = now + 10.0
                continue
            t0 = time.perf_counter()
            out = operator.process(inlet.buffer, n)
            outlet.push_chunk(out, ts)
            t1 = time.perf_counter()
            stats.samples_in += n
            stats.samples_out += n
            stats.chunks += 1
            stats.max_chunk_seen = max(stats.max_chunk_seen, n)
            stats.process_time.add(t1 - t0)
            stats.latency.add(pylsl.local_clock() - (ts[-1] + self._time_correction))
            if not stats.first_output_at:
                stats.first_output_at = t1
            if last_ts is not None and ts[0] - last_ts > gap_tolerance:
                stats.gaps += 1
                stats.gap_seconds += ts[0] - last_ts - period
                logger.warning("gap of %.3f s in the input before t=%.3f", ts[0] - last_ts - period, ts[0])
            last_ts = ts[-1]
            last_data = t1
            if not checked_units:
                checked_units = True
                self._check_plausible_amplitude(n)
            if on_chunk is not None:
                on_chunk(ts, out)
        return stats

    def _check_plausible_amplitude(self, n: int) -> None:
        """Warn loudly if the first chunk's amplitudes cannot be EEG in the declared unit."""
        cmap = self.channel_map
        x = self.inlet.buffer[:n, cmap.index].astype(np.float64) * cmap.scale
        x = x - x.mean(axis=0)
        peak = float(np.max(np.abs(x))) if x.size else 0.0
        if peak > _IMPLAUSIBLE_EEG_V:
            self.stats.unit_warnings += 1
            logger.warning(
                "the first chunk swings %.3g V after unit conversion (units %s): that is not scalp EEG; "
                "the stream's unit metadata is probably wrong (microvolt numbers labelled as volts?)",
                peak,
                "/".join(sorted(set(cmap.stream_units))),
            )

    def run_in_thread(self, duration: float | None = None, on_chunk=None) -> threading.Thread:
        """Start :meth:`run` in a background thread (connect first, in the caller's thread)."""
        if self.inlet is None:
            self.connect()
        thread = threading.Thread(target=self.run, kwargs={"duration": duration, "on_chunk": on_chunk}, daemon=True, name="rtsource-loop")
        thread.start()
        return thread

    def close(self) -> None:
        if self.inlet is not None:
            self.inlet.close()
        self.outlet = None
