"""The loop's side of artifact correction: attach the bundle's stage, report what it does.

The bundle's :class:`~rtsource.artifacts.ArtifactCalibration` makes the per-chunk stage
(EOG regression, ASR) that each :class:`~.operator.StreamOperator` runs between its filter
and its kernel (``operator.cleaner``); a projection is already in the bundle's kernel. This
module (no import of ``rtsource.artifacts``: the stage comes from the bundle's object):

- attaches a stage to every operator the loop prepares (hot swaps adopt the old stage's
  state, see ``StreamOperator.adopt_filter_state``), mapping the EOG channels by name;
- gives the output timestamps: with ASR's look-ahead the output sample is the input sample
  ``delay`` earlier, published with that sample's own timestamp, so the delay shows in the
  measured latency (and no sample is dropped or invented: one out per one in);
- publishes ``artifact`` events (episodes: start, duration, kind) and
  ``artifact_calibration`` events (live recalibration), and fills the telemetry counters;
- runs the ``recalibrate_artifacts`` control command (its ``channel`` field carries the
  seconds to record, e.g. "60").
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from .channels import map_stream_channels

logger = logging.getLogger(__name__)


class LoopArtifacts:
    """Artifact correction inside a :class:`~.loop.StreamLoop` (inactive without a per-chunk method).

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
        self.calibration = cal if cal is not None and cal.per_chunk else None
        self.stats, self.events = stats, events
        self.aliases, self.assume_unit = aliases, assume_unit
        self.stage = None
        self.sfreq = float(bundle.sfreq)
        self.delay_s = cal.delay_samples / self.sfreq if self.calibration is not None else 0.0
        stats.artifact_delay_s = self.delay_s
        self._report_failed = False

    @property
    def active(self) -> bool:
        return self.calibration is not None

    def attach(self, operator, stream) -> None:
        """Give ``operator`` a stage for its channels (``stream``: the input's description)."""
        if self.calibration is None:
            return
        cal = self.stage.calibration if self.stage is not None else self.calibration  # a live recalibration carries on
        eog_index = eog_scale = None
        if cal.regression is not None and "regression" in cal.methods:
            names = cal.regression.eog_names
            neutral = dataclasses.replace(stream, ch_types=("",) * len(stream.ch_names))  # EOG/ECG/EXG types all welcome
            cmap = map_stream_channels(neutral, names, ("V",) * len(names), aliases=self.aliases, assume_unit=self.assume_unit)
            eog_index, eog_scale = cmap.index, cmap.scale
        operator.cleaner = cal.stage(
            operator.bundle.ch_names, operator.channel_map.scale, operator.max_chunk, eog_index=eog_index, eog_scale=eog_scale,
            sos=getattr(operator, "_sos", None),
        )  # fmt: skip
        if self.stage is None:
            self.stage = operator.cleaner

    def installed(self, operator) -> None:
        """``operator`` is now the one in use (after a swap)."""
        if operator.cleaner is not None:
            self.stage = operator.cleaner

    def stamps(self, ts: np.ndarray) -> np.ndarray:
        """Output timestamps of a chunk: the input's, ``delay`` earlier."""
        return ts - self.delay_s if self.delay_s else ts

    def after_chunk(self, now_lsl: float, stamps: np.ndarray) -> None:
        """Events for closed repair episodes and recalibration news; telemetry values."""
        try:
            self._report(now_lsl, stamps)
        except Exception as exc:  # reporting must never stop the loop
            if not self._report_failed:
                self._report_failed = True
                logger.error("artifact events could not be published: %s", exc)

    def _report(self, now_lsl: float, stamps: np.ndarray) -> None:
        stage = self.stage
        st = self.stats
        while stage.episodes:
            ep = stage.episodes.popleft()
            # output sample index -> its timestamp, from this chunk's last output sample
            start = float(stamps[-1]) - (stage.asr.samples_out - 1 - ep.start) / self.sfreq
            st.artifact_episodes += 1
            self.events.publish("artifact", now_lsl, start=round(start, 6), duration_s=round(ep.n_samples / self.sfreq, 4), artifact=ep.kind, method="asr")
        while stage.messages:
            self.events.publish("artifact_calibration", now_lsl, **stage.messages.popleft())

    def refresh_stats(self) -> None:
        """Copy the stage's fractions and cost into the loop's stats (at the telemetry rate)."""
        stage = self.stage
        if stage is None:
            return
        st = self.stats
        st.artifact_samples_repaired, st.artifact_channels_repaired = stage.fractions()
        p50, p99 = stage.cost_ms()
        st.artifact_ms_p50, st.artifact_ms_p99 = (0.0, 0.0) if np.isnan(p50) else (p50, p99)

    def recalibrate(self, seconds_text: str, now_lsl: float) -> None:
        """Record the next ``seconds_text`` seconds and recalibrate ASR on them (swapped in live)."""
        if self.stage is None:
            raise ValueError("the bundle has no per-chunk artifact correction to recalibrate ([artifacts] method with 'asr'; rtsource setup)")
        try:
            seconds = float(seconds_text)
        except ValueError:
            raise ValueError(f"recalibrate_artifacts needs the seconds to record in its channel field, got {seconds_text[:40]!r} (e.g. '60')") from None
        self.stage.start_recalibration(seconds)
        self.events.publish("artifact_calibration", now_lsl, state="recording", seconds=seconds)
