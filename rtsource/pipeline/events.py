"""``[events]``, ``[epochs]`` and ``[connectivity]`` -> the loop's :class:`~rtsource.stream.eventstage.EventOptions`,
and ``[[simulate.evoked]]`` / ``[[simulate.coupled]]`` -> the simulator's event-locked sources.

The loop's stages check their own parameters (:class:`~rtsource.stream.epochs.EpochSpec`,
:class:`~rtsource.stream.connectivity.ConnectivitySpec`); this module turns the settings into
them and checks what only the whole configuration knows (ROIs exist, the marker stream is
named).
"""

from __future__ import annotations

from ..errors import ConfigError


def _has_rois(settings) -> bool:
    return bool(settings.roi or settings.rois.file or settings.rois.atlas)


def event_options(settings):
    """The loop's EventOptions from a configuration, or None when none of the three is on."""
    from ..stream.bandpower import Band
    from ..stream.connectivity import ConnectivitySpec
    from ..stream.epochs import EpochSpec, EpochWindow, FeatureWindow
    from ..stream.eventstage import ConnectivityOptions, EpochOptions, EventOptions, MarkerOptions
    from ..stream.inlet import StreamSelector
    from ..stream.markers import MarkerMap

    ev, ep, co = settings.events, settings.epochs, settings.connectivity
    markers = epochs = connectivity = None
    if ev.markers:
        markers = MarkerOptions(StreamSelector(ev.stream, ev.type, ev.source_id), MarkerMap.from_mapping(ev.markers), retry_s=ev.retry_s)
        spec = EpochSpec(
            events=tuple(EpochWindow(str(name), ep.tmin, ep.tmax) for name in ev.markers),
            baseline=tuple(ep.baseline) if ep.baseline else None,
            reject_flagged=ep.reject_flagged,
            ewma_alpha=ep.ewma_alpha,
            features=tuple(FeatureWindow(str(n), float(w[0]), float(w[1])) for n, w in ep.features.items()),
            buffer_s=ep.buffer_s,
        )
        epochs = EpochOptions(spec, space=ep.space, average=ep.average, publish_data=ep.data)
    if co.measures:
        spec = ConnectivitySpec(
            bands=tuple(Band(str(n), float(e[0]), float(e[1])) for n, e in co.bands.items()),
            measures=co.measures,
            window_s=co.window_s,
            step_s=co.step_s,
            segment_s=co.segment_s,
            zscore=co.zscore,
        )
        connectivity = ConnectivityOptions(spec, rois=co.rois, output=co.output, strongest_k=co.strongest_k, baseline_s=co.baseline_s)
    if markers is None and connectivity is None:
        return None
    return EventOptions(markers=markers, epochs=epochs, connectivity=connectivity)


def check_event_settings(settings) -> None:
    """Cross-checks of [events], [epochs] and [connectivity] (raises ConfigError naming the key)."""
    ev, ep, co = settings.events, settings.epochs, settings.connectivity
    if ev.markers and not (ev.stream or ev.type or ev.source_id):
        raise ConfigError("[events] markers need a marker stream: give stream = 'NAME' (or type / source_id)")
    if ev.markers and ep.space == "roi" and not _has_rois(settings):
        raise ConfigError("[epochs] space = 'roi' needs ROIs: add [[roi]] entries, [rois] file or [rois] atlas, or set space = 'sources'")
    if co.measures and not _has_rois(settings):
        raise ConfigError("[connectivity] measures need ROIs: add [[roi]] entries, [rois] file or [rois] atlas")
    if co.measures and not co.bands:
        raise ConfigError("[connectivity] bands is empty; give at least one, e.g. bands = {alpha = [8, 12]}")
    if co.measures:
        ratio = co.window_s / co.step_s
        if abs(ratio - round(ratio)) > 1e-6 * ratio:
            raise ConfigError(f"[connectivity] window_s = {co.window_s:g} s must be a multiple of step_s = {co.step_s:g} s")
        if co.segment_s > co.window_s:
            raise ConfigError(f"[connectivity] segment_s = {co.segment_s:g} s must not exceed window_s = {co.window_s:g} s")
    if ev.markers and not ep.tmin < ep.tmax:
        raise ConfigError(f"[epochs] tmin = {ep.tmin:g} s must be below tmax = {ep.tmax:g} s")
    if not (ev.markers or co.measures):
        return
    try:
        options = event_options(settings)
        if options is not None and options.connectivity is not None and settings.stream.sfreq:
            options.connectivity.spec.samples(settings.stream.sfreq)
            options.connectivity.spec.bins(settings.stream.sfreq)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:  # pragma: no cover - the key checks should catch these
        raise ConfigError(f"[events]/[epochs]/[connectivity]: {exc}") from None


def evented_sources(settings):
    """The simulator's :class:`~rtsource.sim_events.EventedSources` from ``[simulate]``, or None."""
    from ..sim_events import CoupledPair, EventedSources, EventSchedule, EvokedSource

    s = settings.simulate
    if not (s.evoked or s.coupled):
        return None
    evoked = [EvokedSource(tuple(e.position_mm), e.amplitude_nam, e.latency_s, e.width_s, e.event) for e in s.evoked]
    pairs = [CoupledPair(tuple(c.position_a_mm), tuple(c.position_b_mm), c.frequency_hz, c.bandwidth_hz, c.amplitude_nam, c.lag_deg, c.coupling) for c in s.coupled]
    names = tuple(dict.fromkeys(e.event for e in s.evoked)) or ("stim",)
    schedule = EventSchedule(events=names, interval_s=s.event_interval_s, jitter_s=s.event_jitter_s, first_s=max(1.0, s.baseline_seconds))
    return EventedSources(s.sfreq, evoked, pairs, schedule, seed=s.seed + 7)
