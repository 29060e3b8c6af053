"""Names, types and channel layouts of every LSL stream rtsource publishes.

One place defines them so that the loop (producer) and the display, tests and users
(consumers) agree. For an output named ``NAME`` (``[output] name``, default
``rtsource-sources``) the loop publishes:

============================  =====================  =========================================
stream name                   type                   content
============================  =====================  =========================================
``NAME``                      ``Sources``            one channel per source, input rate
``NAME-roi``                  ``ROI``                one channel per ROI, input rate
``NAME-bandpower``            ``BandPower``          one channel per ROI x band, reduced rate
``NAME-telemetry``            ``rtsource.Telemetry`` :data:`TELEMETRY_CHANNELS`, 2 Hz
``NAME-events``               ``Markers``            string channel, one JSON object per event
``NAME-epochs``               ``Epochs``             one sample per accepted epoch (``[events]``)
``NAME-evoked``               ``Evoked``             running / EW average per accepted epoch
``NAME-connectivity``         ``Connectivity``       ROI pair x measure x band, at 1 / step_s
============================  =====================  =========================================

The layouts of the last three are in :mod:`rtsource.stream.event_layout`; the loop reads an
LSL marker stream for them (``[events]``, :mod:`rtsource.stream.eventstage`).

The loop also *reads* ``NAME-control`` (type ``rtsource.Control``) when some process
publishes it (``rtsource mark-bad``): one signed command per sample, ``rtsource-control/1
MAC {"id": ..., "command": "mark_bad" | "mark_good", "channel": "Cz", "time": unix_s}``
(see :mod:`rtsource.stream.control_auth`), executed between two chunks and answered on
the events stream (event ``command`` with the same ``id``).

Every stream's ``desc/rtsource`` block carries ``output_name`` (``NAME``) and ``bundle``
(the bundle path), so a consumer that found one stream can find the others and the bundle.
Event objects always have ``"event"`` (see :data:`EVENT_KINDS`) and ``"time"`` (LSL clock)
keys; other keys depend on the event.
"""

from __future__ import annotations

SOURCES_TYPE = "Sources"
ROI_SUFFIX, ROI_TYPE = "-roi", "ROI"
BANDPOWER_SUFFIX, BANDPOWER_TYPE = "-bandpower", "BandPower"
TELEMETRY_SUFFIX, TELEMETRY_TYPE = "-telemetry", "rtsource.Telemetry"
EVENTS_SUFFIX, EVENTS_TYPE = "-events", "Markers"
CONTROL_SUFFIX, CONTROL_TYPE = "-control", "rtsource.Control"
EPOCHS_SUFFIX, EPOCHS_TYPE = "-epochs", "Epochs"
EVOKED_SUFFIX, EVOKED_TYPE = "-evoked", "Evoked"
CONNECTIVITY_SUFFIX, CONNECTIVITY_TYPE = "-connectivity", "Connectivity"
HEADPOS_SUFFIX, HEADPOS_TYPE = "-headpos", "rtsource.HeadPosition"
#: ``NAME-headpos`` channels (label, unit): a row of an MNE-Python head-position file
HEADPOS_CHANNELS = (
    ("t", "s"), ("q1", ""), ("q2", ""), ("q3", ""), ("x", "m"), ("y", "m"), ("z", "m"),
    ("gof", ""), ("err", "m"), ("v", "m/s"),
)  # fmt: skip

#: Commands the loop accepts on its control stream.
COMMANDS = ("mark_bad", "mark_good", "recalibrate_artifacts")  # recalibrate: "channel" carries "SECONDS[:METHOD,...]"

#: Telemetry is published at this nominal rate (samples per second).
TELEMETRY_RATE_HZ = 2.0

#: (label, unit) of the telemetry channels, in order. Counters are totals since start.
TELEMETRY_CHANNELS: tuple[tuple[str, str], ...] = (
    ("samples_in", "samples"),
    ("samples_out", "samples"),
    ("lost", "samples"),  # input samples that produced no output (must stay 0)
    ("skipped", "samples"),  # deliberately skipped in latest-only mode (published as events)
    ("gaps", "count"),
    ("gap_seconds", "s"),
    ("nan_samples", "samples"),
    ("backlog", "samples"),  # samples waiting in the inlet when the last chunk was pulled
    ("input_rate_hz", "Hz"),
    ("output_rate_hz", "Hz"),
    ("process_ms_p50", "ms"),
    ("process_ms_p99", "ms"),
    ("latency_ms_p50", "ms"),
    ("latency_ms_p99", "ms"),
    ("bad_channels", "count"),
    ("operator_swaps", "count"),
    ("last_swap_ms", "ms"),  # time from request to the new operator being live
    ("covariance_age_s", "s"),  # adaptive beamformer: age of the covariance behind the weights
    ("waiting", "bool"),  # 1 while the input stream is gone
    ("clock_jumps", "count"),
    ("hot_swap_ready", "bool"),  # 1 once a bad channel can be swapped out at full speed (warm-up done)
    ("rebuild_failures", "count"),  # background operator rebuilds that failed (events: rebuild_failed)
    ("commands_refused", "count"),  # control commands refused (events: command with ok false)
    ("push_failures", "count"),  # chunks the source outlet refused (their samples count as lost)
    ("excluded_channels", "count"),  # channels excluded because they deliver only NaN/Inf
    ("effective_rate_hz", "Hz"),  # input rate measured from the timestamps (0 until measured)
    ("max_buffered_s", "s"),  # the most output an outlet keeps per consumer ([output] max_buffered_s)
    ("rss_mb", "MB"),  # resident memory of the loop process (a stalled consumer must not grow it)
    ("head_displacement_mm", "mm"),  # cHPI: head moved from the reference pose (NaN: not tracked)
    ("artifact_delay_ms", "ms"),  # artifact correction's look-ahead (ASR), part of the latency
    ("artifact_repaired", "fraction"),  # output samples repaired by ASR (since start)
    ("artifact_channels", "fraction"),  # channels changed in the repaired samples (mean)
    ("artifact_ms_p50", "ms"),  # per-chunk cost of the artifact stage
    ("artifact_ms_p99", "ms"),
    ("artifact_episodes", "count"),  # repair episodes (events: artifact)
)

#: Kinds of event on the events stream.
EVENT_KINDS = (
    "started",
    "gap",  # keys: start, end, duration_s, samples_missing
    "stream_lost",
    "stream_back",
    "nan",  # keys: state ('start': start, channels, n_channels; 'end': start, end, n_samples), once per episode
    "nonfinite_channel",  # keys: channel, action ('excluded', 'restored', 'failed')
    "rate_mismatch",  # keys: declared_hz, measured_hz, window_s (action 'refused' at start-up)
    "rate_ok",  # keys: declared_hz, measured_hz (the rate is back within tolerance)
    "push_failed",  # keys: start, error (the source outlet refused a chunk; its samples are lost)
    "push_ok",  # keys: first, lost (pushing works again)
    "bad_channel",  # keys: channel, reason
    "operator_swap",  # keys: reason, swap_ms, bad_channels
    "skipped",  # keys: start, n_samples (latest-only mode)
    "clock_jump",  # keys: jump_s, cause
    "unit_warning",
    "command",  # keys: id, command, channel, ok; when refused: reason, error (size, preview: clipped)
    "rebuild_failed",  # keys: request, error, bad_channels (the operator in use stays)
    "swap_refused",  # keys: bad_channels, error (the detector's set would go below min_channels)
    "hot_swap_ready",  # keys: prepare_ms, trial_rebuilds_ms (the bad-channel rebuild has warmed up)
    "marker_stream",  # keys: state ('found', 'lost', 'back'), name, source_id ([events] marker input)
    "marker_dropped",  # keys: reason, count (since the last such event), example; at most one per reason and second
    "head_moved",  # keys: displacement_mm (from the operator's pose), pose (t, q1-q3, x, y, z) -> a forward update; follows=False + reason: none (e.g. BEM)
    "artifact",  # keys: start, duration_s, artifact ('ocular', 'muscle', 'other'), method (a repair episode)
    "artifact_calibration",  # keys: state ('recording', 'ready', 'live', 'failed', 'reverted'), methods, per method what changed, fit_ms, swap_ms, error
    "stopped",
)


def stream_name(output_name: str, suffix: str = "") -> str:
    """The name of one of the output's streams (``suffix`` one of the ``*_SUFFIX`` constants)."""
    return output_name + suffix


def append_artifacts(meta, fields: tuple[tuple[str, str], ...]) -> None:
    """Add the ``artifacts`` block under a header's ``desc/rtsource`` node (an LSL XML element).

    ``fields`` are ``(key, text)`` pairs (:func:`rtsource.stream.outlets.artifact_fields`):
    ``methods`` (JSON list, in the order applied), ``delay_s`` and one JSON object per method.
    Every output carrying data derived from the sources has the same block.
    """
    if fields:
        art = meta.append_child("artifacts")
        for key, value in fields:
            art.append_child_value(key, value)
