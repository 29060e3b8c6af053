"""The loop's side of artifact correction: attach the bundle's stage, report it, recalibrate it live.

The bundle's :class:`~rtsource.artifacts.ArtifactCalibration` makes the per-chunk stage
(EOG regression, ASR) that each :class:`~.operator.StreamOperator` runs between its filter
and its kernel (``operator.cleaner``); a projection is already in the bundle's kernel. This
module (no import of ``rtsource.artifacts``: everything comes from the bundle's object):

- attaches a stage to every operator the loop prepares (hot swaps adopt the old stage's
  state, see ``StreamOperator.adopt_filter_state``), mapping the EOG channels by name;
- gives the output timestamps: with ASR's look-ahead the output sample is the input sample
  ``delay`` earlier, published with that sample's own timestamp, so the delay shows in the
  measured latency (and no sample is dropped or invented: one out per one in);
- gives the per-output-sample artifact flags the event stage rejects epochs by
  (:meth:`LoopArtifacts.flags`: the samples ASR repaired);
- publishes ``artifact`` events (episodes: start, duration, kind) and
  ``artifact_calibration`` events (live recalibration), and fills the telemetry counters;
- runs the ``recalibrate_artifacts`` control command (its ``channel`` field: ``"60"`` or
  ``"60:asr,projection"``, the seconds to record and optionally the methods).

Live recalibration::

    command ─> record the next seconds (loop thread: raw stream columns of the operator's
               channels and the EOG channels, SI, non-finite rows left out)
            ─> worker thread: calibration.refit(...) (as setup fits: rtsource.artifacts.refit)
            ─> regression / ASR only: a new stage for the running operator, installed between
               two chunks (it adopts the old stage's filter, window and look-ahead state)
            ─> projection: the operator is rebuilt with the new projector folded in (offline
               rebuilder, ``force``), the ROI stage refolded, and both installed between two
               chunks through the loop's hot swap (no sample lost or repeated)
            ─> events ``artifact_calibration``: recording, ready (what changed), live (swap_ms
               from the end of the recording), or failed (why; the calibration in use stays).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
import weakref
from collections import deque

import numpy as np

from .channels import map_stream_channels

logger = logging.getLogger(__name__)

#: Seconds a live recalibration may record (ASR wants its 1 s windows, the projection blinks).
RECALIBRATION_SECONDS = (15.0, 600.0)
#: Most values (samples x channels) a live recalibration keeps in memory (float32: 256 MB).
RECALIBRATION_MAX_VALUES = 64_000_000


class _Recording:
    """The raw samples a live recalibration records, in preallocated buffers (loop thread)."""

    def __init__(self, seconds: float, sfreq: float, names, index, scale, eog_index, eog_scale, methods, sos):
        n = int(round(seconds * sfreq))
        self.seconds, self.methods, self.sos, self.names = seconds, methods, sos, tuple(names)
        self.index, self.scale = np.asarray(index, dtype=np.int64), np.asarray(scale, dtype=float)
        self.data = np.zeros((n, len(self.names)), dtype=np.float32)  # SI values: float32 keeps 7 digits, half the memory
        self.eog_index = None if eog_index is None else np.asarray(eog_index, dtype=np.int64)
        self.eog_scale = None if eog_scale is None else np.asarray(eog_scale, dtype=float)
        self.eog = np.zeros((n, len(self.eog_index)), dtype=np.float32) if self.eog_index is not None else None
        self.filled = 0
        self.dropped = 0  # non-finite rows left out
        self.done_at = 0.0

    def add(self, chunk: np.ndarray, n: int) -> bool:
        """Record up to ``n`` rows of a raw chunk; True when full."""
        k = min(n, len(self.data) - self.filled)
        rows = chunk[:k, self.index] * self.scale
        ok = np.isfinite(rows).all(axis=1)
        if self.eog_index is not None:
            eog = chunk[:k, self.eog_index] * self.eog_scale
            ok &= np.isfinite(eog).all(axis=1)
        m = int(ok.sum())
        self.data[self.filled : self.filled + m] = rows[ok]
        if self.eog is not None:
            self.eog[self.filled : self.filled + m] = eog[ok]
        self.filled += m
        self.dropped += k - m
        return self.filled == len(self.data)


class LoopArtifacts:
    """Artifact correction inside a :class:`~.loop.StreamLoop` (inactive without a calibration).

    Parameters
    ----------
    bundle : OperatorBundle
        Its ``artifacts`` (may be None: then nothing is done).
    stats : LoopStats
    events : EventPublisher
    aliases, assume_unit :
        How the EOG channels are found in the stream (as the operator's).
    """

    def __init__(self, bundle, stats, events, *, aliases=None, assume_unit: str = ""):
        cal = getattr(bundle, "artifacts", None)
        self.original = cal  # the bundle's
        self.current = cal  # the one in use (a live recalibration replaces it)
        self.stats, self.events = stats, events
        self.aliases, self.assume_unit = aliases, assume_unit
        self.stage = None
        self.operator = None  # the operator in use
        self.sfreq = float(bundle.sfreq)
        self.reference, self.ch_types = bundle.reference, dict(zip(bundle.ch_names, bundle.ch_types))
        self.delay_s = cal.delay_samples / self.sfreq if self.calibration is not None else 0.0
        stats.artifact_delay_s = self.delay_s
        self._report_failed = False
        self.messages: deque[dict] = deque(maxlen=16)  # recalibration news for the events
        self._version = 0  # calibration generation; the stage of each operator is of one
        self._stage_version: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._recording: _Recording | None = None
        self._fitting = False
        self._restage: dict | None = None  # a refit to install on the running operator
        self._awaiting: tuple | None = None  # (operator, news): live once the loop installs it
        self._flags = np.zeros(0, dtype=np.uint8)
        self._repaired_seen = 0
        self._services = self._rebase = self._base = None
        self._stream = None
        self._refolding = False

    @property
    def calibration(self):
        """The calibration in use when something runs per chunk (regression, ASR), else None."""
        return self.current if self.current is not None and self.current.per_chunk else None

    @property
    def active(self) -> bool:
        """Anything to do per chunk: a stage to report, or a calibration to recalibrate."""
        return self.current is not None

    def bind(self, services, rebase, base) -> None:
        """The loop's swap machinery for projection recalibrations (``StreamLoop.connect``).

        ``services``: :class:`~.services.LoopServices`; ``rebase(bundle) -> (operator, roi_stage,
        hand_over)`` makes ``bundle`` the base of later rebuilds (``StreamLoop._rebase_checked``); ``base()`` is the current base bundle.
        """
        self._services, self._rebase, self._base = services, rebase, base

    # ---- stages -------------------------------------------------------------------------
    def _stage_for(self, operator, stream, cal):
        eog_index = eog_scale = None
        if cal.regression is not None and "regression" in cal.methods:
            eog_index, eog_scale = self._eog_columns(stream, cal.regression.eog_names)
        asr = cal.asr
        if asr is not None and "asr" in cal.methods and not set(operator.bundle.ch_names) <= set(asr.ch_names):
            # a channel out of the live recording (bad then) is back: the bundle's ASR covers it
            missing = sorted(set(operator.bundle.ch_names) - set(asr.ch_names))
            cal = dataclasses.replace(cal, asr=self.original.asr)
            self.messages.append({"state": "reverted", "method": "asr", "error": f"the live ASR calibration lacks {missing[:8]} (bad while recording); "
                                  "the bundle's is used: recalibrate again to include them"})  # fmt: skip
        return cal.stage(operator.bundle.ch_names, operator.channel_map.scale, operator.max_chunk, eog_index=eog_index, eog_scale=eog_scale,
                         sos=getattr(operator, "_sos", None))  # fmt: skip

    def _eog_columns(self, stream, names):
        neutral = dataclasses.replace(stream, ch_types=("",) * len(stream.ch_names))  # EOG/ECG/EXG types all welcome
        cmap = map_stream_channels(neutral, names, ("V",) * len(names), aliases=self.aliases, assume_unit=self.assume_unit)
        return cmap.index, cmap.scale

    def attach(self, operator, stream) -> None:
        """Give ``operator`` a stage for its channels (``stream``: the input's description)."""
        self._stream = stream
        version = self._version  # first: a recalibration sets the calibration, then the version
        cal = self.calibration
        self._stage_version[operator] = version
        if cal is None:
            return
        operator.cleaner = self._stage_for(operator, stream, cal)
        if self.stage is None:
            self.stage = operator.cleaner

    def installed(self, operator) -> None:
        """``operator`` is now the one in use (at start and after every swap; loop thread)."""
        self.operator = operator
        if self._recording is not None and not self._same_columns(operator):
            self._recording = None
            self.messages.append({"state": "failed", "error": "the stream's channel layout changed while recording; send the recalibration again"})
        if operator.cleaner is not None and self._stage_version.get(operator) != self._version and self._stream is not None:
            # prepared before the last recalibration was decided: give it the new stage now
            self._swap_stage(operator, self._stage_for(operator, self._stream, self.calibration))
        if operator.cleaner is not None:
            self.stage = operator.cleaner
        if self._awaiting is not None and (self._awaiting[0] is operator or self._stage_version.get(operator) == self._version):
            # (a newer swap that replaced it before the loop took it was built from the new base too)
            self._live(self._awaiting[1])
            self._awaiting = None
        art, base = getattr(operator.bundle, "artifacts", None), self._base() if self._base is not None else None
        if art is not None and getattr(base, "artifacts", None) is not None and art.projection is not base.artifacts.projection:
            self._refold_stale()  # the base (every rebuild's start) has the newer projection

    def _refold_stale(self) -> None:
        """A rebuild started before a projection recalibration (a bad channel) came in after
        it, with the old projection in its kernel: rebuild from the current base, in a thread."""
        if self._refolding:
            return
        self._refolding = True

        def run():
            try:
                operator, roi_stage, hand_over = self._rebase(self._base())
                self._hand_over(operator, roi_stage, hand_over, "artifact_recalibration (stale projection)", time.perf_counter())
            except Exception as exc:  # reported; the operator in use stays
                self.messages.append({"state": "failed", "error": f"refolding the recalibrated projection failed: {str(exc)[:240]}"})
            finally:
                self._refolding = False

        threading.Thread(target=run, daemon=True, name="rtsource-artifact-refold").start()

    def _same_columns(self, operator) -> bool:
        rec = self._recording
        where = dict(zip(operator.bundle.ch_names, operator.channel_map.index.tolist()))
        return all(where.get(c, i) == i for c, i in zip(rec.names, rec.index.tolist()))

    def _swap_stage(self, operator, stage) -> None:
        if operator.cleaner is not None:
            stage.adopt(operator.cleaner)
        operator.cleaner = stage
        self._stage_version[operator] = self._version
        self.stage = stage

    def stamps(self, ts: np.ndarray) -> np.ndarray:
        """Output timestamps of a chunk: the input's, ``delay`` earlier."""
        return ts - self.delay_s if self.delay_s else ts

    def flags(self, n_out: int) -> np.ndarray | None:
        """Per output row of the chunk just processed: 1 where ASR repaired it (None: no ASR).

        ASR decides per chunk (a repaired chunk is repaired in all its rows), so the flags of
        the chunk's ``n_out`` output rows are all 1 or all 0; an epoch overlapping a repair
        episode therefore contains a flagged sample (:mod:`.eventstage` rejects it).
        """
        stage = self.stage
        if stage is None or stage.asr is None:
            return None
        if len(self._flags) < n_out:
            self._flags = np.zeros(max(n_out, 1024), dtype=np.uint8)
        done = stage.asr.samples_repaired
        self._flags[:n_out] = 1 if done > self._repaired_seen else 0
        self._repaired_seen = done
        return self._flags[:n_out]

    # ---- per chunk (loop thread) -----------------------------------------------------------
    def after_chunk(self, now_lsl: float, stamps: np.ndarray, chunk: np.ndarray | None = None, n: int = 0) -> None:
        """Record for a recalibration, install a refit, publish events (between two chunks)."""
        try:  # a recalibration that goes wrong here is reported and dropped, never retried every chunk
            if self._recording is not None and chunk is not None and n:
                self._record(chunk, n)
            if self._restage is not None:
                self._install_restage()
        except Exception as exc:
            self._recording = self._restage = None
            self.messages.append({"state": "failed", "error": f"{type(exc).__name__}: {str(exc)[:280]}"})
            logger.error("artifact recalibration failed in the loop thread: %s", exc)
        try:
            self._report(now_lsl, stamps)
        except Exception as exc:  # reporting must never stop the loop
            if not self._report_failed:
                self._report_failed = True
                logger.error("artifact events could not be published: %s", exc)

    def _report(self, now_lsl: float, stamps: np.ndarray) -> None:
        stage = self.stage
        st = self.stats
        while stage is not None and stage.episodes:
            ep = stage.episodes.popleft()
            # output sample index -> its timestamp, from this chunk's last output sample
            start = float(stamps[-1]) - (stage.asr.samples_out - 1 - ep.start) / self.sfreq
            st.artifact_episodes += 1
            self.events.publish("artifact", now_lsl, start=round(start, 6), duration_s=round(ep.n_samples / self.sfreq, 4), artifact=ep.kind, method="asr")
        while self.messages:
            self.events.publish("artifact_calibration", now_lsl, **self.messages.popleft())

    def refresh_stats(self) -> None:
        """Copy the stage's fractions and cost into the loop's stats (at the telemetry rate)."""
        stage = self.stage
        if stage is None:
            return
        st = self.stats
        st.artifact_samples_repaired, st.artifact_channels_repaired = stage.fractions()
        p50, p99 = stage.cost_ms()
        st.artifact_ms_p50, st.artifact_ms_p99 = (0.0, 0.0) if np.isnan(p50) else (p50, p99)

    # ---- live recalibration ------------------------------------------------------------------
    def recalibrate(self, text: str, now_lsl: float, operator=None) -> None:
        """Start recording for a recalibration (the ``recalibrate_artifacts`` command).

        ``text`` is ``"SECONDS"`` or ``"SECONDS:METHOD,METHOD"`` (default: every method of the
        calibration). Raises ValueError naming the value and the fix; changes nothing then.
        """
        cal = self.current
        if cal is None:
            raise ValueError("this loop's bundle has no artifact calibration to recalibrate; set [artifacts] method and run rtsource setup")
        seconds, methods = self._parse(text, cal)
        if self._recording is not None:
            rec = self._recording
            raise ValueError(f"a recalibration is already recording ({rec.filled / self.sfreq:.1f} of {rec.seconds:g} s); wait for its artifact_calibration event")
        if self._awaiting is not None and time.perf_counter() - self._awaiting[1]["_done_at"] > 120.0:
            self._awaiting = None  # its swap never came (the loop was replaced by a newer one): don't block for ever
            self.messages.append({"state": "failed", "error": "the previous recalibration's operator was never installed; its projection may not be live"})
        if self._fitting or self._restage is not None or self._awaiting is not None:
            raise ValueError("the previous recalibration is still being fitted or swapped in; wait for its artifact_calibration event (live or failed)")
        operator = operator if operator is not None else self.operator
        if "projection" in methods:
            base = self._base() if self._base is not None else None
            rebuilder = self._services.rebuilder if self._services is not None else None
            if rebuilder is None or base is None or base.gain is None or base.noise_cov is None:
                raise ValueError(
                    "recalibrating the projection rebuilds the operator: this loop has no operator rebuilder or the bundle caches no lead field "
                    "(make the loop with rebuilder=rtsource.session.operator_rebuilder(), or recalibrate only asr/regression)"
                )
        eog_index = eog_scale = None
        if cal.regression is not None and self._stream is not None:
            try:
                eog_index, eog_scale = self._eog_columns(self._stream, cal.regression.eog_names)
            except Exception as exc:  # the projection can do without; the regression cannot
                if "regression" in methods:
                    raise ValueError(f"recalibrating the EOG regression needs {list(cal.regression.eog_names)} in the stream: {exc}") from None
        cmap = operator.channel_map
        values = int(round(seconds * self.sfreq)) * (len(cmap.index) + (len(eog_index) if eog_index is not None else 0))
        if values > RECALIBRATION_MAX_VALUES:
            most = RECALIBRATION_MAX_VALUES / (values / seconds)
            raise ValueError(
                f"recalibrate_artifacts seconds = {seconds:g} would record {values:,} values ({len(cmap.index)} channels at {self.sfreq:g} Hz), "
                f"more than {RECALIBRATION_MAX_VALUES:,}; pass at most {int(most)} s"
            )
        self._recording = _Recording(seconds, self.sfreq, operator.bundle.ch_names, cmap.index, cmap.scale, eog_index, eog_scale, methods,
                                     getattr(operator, "_sos", None))  # fmt: skip
        self.events.publish("artifact_calibration", now_lsl, state="recording", seconds=seconds, methods=list(methods))

    def _parse(self, text: str, cal) -> tuple[float, tuple[str, ...]]:
        head, _, tail = str(text).partition(":")
        try:
            seconds = float(head)
        except ValueError:
            raise ValueError(f"recalibrate_artifacts needs the seconds to record in its channel field, got {str(text)[:40]!r} (e.g. '60' or '60:asr')") from None
        lo, hi = RECALIBRATION_SECONDS
        if not (math.isfinite(seconds) and lo <= seconds <= hi):
            raise ValueError(f"recalibrate_artifacts seconds = {head[:20]!r}; pass {lo:g}-{hi:g} s (e.g. rtsource recalibrate --seconds 60)")
        methods = tuple(m.strip() for m in tail.split(",") if m.strip()) if tail else cal.methods
        wrong = [m for m in methods if m not in cal.methods]
        if wrong or not methods:
            raise ValueError(f"recalibrate_artifacts methods {[m[:20] for m in wrong] or list(methods)} are not in this bundle's calibration; pick from {list(cal.methods)}")
        return seconds, tuple(m for m in cal.methods if m in methods)

    @property
    def recording(self) -> bool:
        return self._recording is not None

    def _record(self, chunk: np.ndarray, n: int) -> None:
        rec = self._recording
        if not rec.add(chunk, n):
            return
        self._recording = None
        rec.done_at = time.perf_counter()
        keep = set(self.operator.bundle.ch_names) if self.operator is not None else set(rec.names)
        self._fitting = True
        threading.Thread(target=self._fit, args=(rec, keep), daemon=True, name="rtsource-artifact-recalibration").start()

    def _fit(self, rec: _Recording, keep: set) -> None:
        """Worker thread: refit, then hand the result over for a swap between two chunks."""
        try:
            cols = [i for i, c in enumerate(rec.names) if c in keep]  # channels marked bad while recording stay out
            names = tuple(rec.names[i] for i in cols)
            source = f"live recalibration on {rec.filled / self.sfreq:g} s of the stream" + (f" ({rec.dropped} non-finite samples left out)" if rec.dropped else "")
            new, changes = self.current.refit(
                rec.data[:, cols], self.sfreq, names, methods=rec.methods, ch_types=[self.ch_types.get(c, "eeg") for c in names],
                reference=self.reference, eog=rec.eog, sos=rec.sos, source=source,
            )  # fmt: skip
            news = {"methods": list(rec.methods), **changes}
            self.messages.append({"state": "ready", **news})
            if "projection" in rec.methods:
                self._refold(new, news, rec.done_at)
            else:
                op = self.operator  # its stage is built here (a failure keeps the calibration in use); the loop installs it
                stage = self._stage_for(op, self._stream, new) if op is not None and op.cleaner is not None else None
                self.current = new
                self._version += 1
                self._restage = {**news, "_done_at": rec.done_at, "_for": (op, stage, self._version)}
        except Exception as exc:  # a bad recording must not stop the loop: report it, keep the calibration
            self.messages.append({"state": "failed", "methods": list(rec.methods), "error": str(exc)[:300]})
            logger.warning("artifact recalibration failed: %s", exc)
        finally:
            self._fitting = False

    def _refold(self, new, news: dict, done_at: float) -> None:
        """The projection changed: rebuild the operator with it folded in and request the swap."""
        from .features import _single_blas_thread

        base = dataclasses.replace(self._base(), artifacts=new)
        t0 = time.perf_counter()
        with _single_blas_thread():
            base = self._services.rebuilder.without_channels(base, [], force=True)
        old = self.current
        self.current = new  # before the operator is prepared: its stage is of the new calibration
        self._version += 1
        try:
            operator, roi_stage, hand_over = self._rebase(base)
        except Exception:
            self.current = old  # operators prepared meanwhile are re-staged when installed
            self._version += 1
            raise
        news = {**news, "rebuild_ms": round((time.perf_counter() - t0) * 1e3, 1), "_done_at": done_at}
        self._awaiting = (operator, news)
        self._hand_over(operator, roi_stage, hand_over, "artifact_recalibration", done_at, methods=news["methods"])

    def _hand_over(self, operator, roi_stage, hand_over, reason: str, requested_at: float, **details) -> None:
        """Request the swap; through the loop's ``hand_over`` when there is one, which drops it
        if a bad-channel change came in meanwhile (that change's own rebuild starts from the
        new base, so it carries the new projection and the new bad set: nothing is lost)."""
        if hand_over is None:
            self._services.request_swap(operator, reason, requested_at, roi_stage=roi_stage, **details)
        elif not hand_over(reason, requested_at, **details):
            logger.info("%s: a newer rebuild (bad channels) from the recalibrated base replaces this operator", reason)

    def _install_restage(self) -> None:
        news, self._restage = self._restage, None
        built_for, stage, version = news.pop("_for")
        op = self.operator
        if op is not None and op.cleaner is not None and self._stage_version.get(op) != self._version:
            ready = built_for is op and version == self._version and stage is not None
            self._swap_stage(op, stage if ready else self._stage_for(op, self._stream, self.calibration))
        self._live(news)

    def _live(self, news: dict) -> None:
        news = dict(news)
        done_at = news.pop("_done_at", time.perf_counter())
        self.messages.append({"state": "live", **news, "swap_ms": round((time.perf_counter() - done_at) * 1e3, 1)})
