"""From a configuration and a bundle to a configured streaming loop (``rtsource run``, the demo).

The loop itself (``rtsource.stream``) knows nothing about configuration files or the offline
side; this module reads the settings and hands it plain options (where the stream is, how to
name the outputs, which features to run: ROIs, band power, bad-channel handling, adaptive
weights) and the offline side's operator rebuild (:func:`operator_rebuilder`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .bundle import OperatorBundle
from .config import Settings
from .errors import ConfigError
from .stream.features import FeatureOptions
from .stream.inlet import StreamSelector
from .stream.loop import LoopOptions
from .stream.operator import FilterSpec
from .stream.services import OperatorRebuilder


def operator_rebuilder() -> OperatorRebuilder:
    """The offline side's operator rebuild for a running loop (``StreamLoop(rebuilder=...)``):
    a bad channel is dropped, adaptive weights are recomputed, by
    :class:`rtsource.inverse.rebuild.BundleRebuilder`."""
    from .inverse.rebuild import BundleRebuilder

    return BundleRebuilder()


def loop_options(settings: Settings, bundle_path: str, **overrides) -> LoopOptions:
    """LoopOptions from ``[stream]``, ``[preprocess]``, ``[performance]`` and ``[output]``.

    ``overrides`` replace single fields (command-line options).
    """
    st, pre, out, perf = settings.stream, settings.preprocess, settings.output, settings.performance
    opts = LoopOptions(
        selector=StreamSelector(st.name, st.type, st.source_id),
        resolve_timeout=st.resolve_timeout,
        max_chunk=st.max_chunk,
        assume_unit=st.assume_unit,
        aliases=settings.sensors.aliases,
        filter=FilterSpec(pre.highpass_hz, pre.lowpass_hz, pre.order),
        output_name=out.name,
        output_type=out.type,
        output_source_id=out.source_id,
        bundle_path=bundle_path,
        lost_after=st.lost_after_s,
        latest_only=st.latest_only,
        max_backlog=st.max_backlog,
        threads=perf.threads,
        low_rank=perf.low_rank,
        control=settings.control.enabled,
        control_key_file=str(settings.resolve_path(settings.control.key_file)) if settings.control.key_file else "",
        max_buffered_s=out.max_buffered_s,
        exclude_nonfinite_s=st.nonfinite_exclude_s,
        rate_tolerance=st.rate_tolerance,
        rate_window_s=st.rate_window_s,
        rate_startup_s=st.rate_startup_s,
        compensation_grade=st.compensation_grade,
        output_rate_hz=st.output_rate_hz,
        operator_dtype=perf.operator_dtype,
    )
    return dataclasses.replace(opts, **{k: v for k, v in overrides.items() if v is not None})


def _atlas(settings: Settings, name: str):
    """The atlas a ROI names: the template's by name, or the FreeSurfer subject's annotation."""
    if settings.head.model != "freesurfer":
        return name
    from .pipeline.subject import atlas_from_settings

    return atlas_from_settings(settings, name)


def rois_from_settings(settings: Settings, bundle: OperatorBundle) -> list:
    """The ``[[roi]]`` entries, the ``[rois] file`` and ``[rois] atlas`` as ROIs on the bundle's sources."""
    from .inverse.roi import read_roi_file, roi_from_hemisphere, roi_from_sphere, roi_from_vertices

    sources = bundle.sources
    mni = sources
    if settings.head.model == "freesurfer" and (settings.rois.file or any(r.center_mm for r in settings.roi)):
        from .pipeline.subject import sources_in_mni

        mni = sources_in_mni(settings, sources)  # template coordinates select the subject's sources
    rois = []
    for r in settings.roi:
        if r.center_mm:
            rois.append(roi_from_sphere(mni, r.name, r.center_mm, r.radius_mm))
        elif r.vertices:
            rois.append(roi_from_vertices(sources, r.name, r.vertices))
        elif r.atlas:
            from .inverse.atlas_roi import roi_from_atlas

            rois.append(roi_from_atlas(sources, r.name, _atlas(settings, r.atlas), r.labels or r.label))
        else:
            roi = roi_from_hemisphere(sources, r.hemisphere)
            rois.append(dataclasses.replace(roi, name=r.name) if roi.name != r.name else roi)
    if settings.rois.file:
        rois += list(read_roi_file(settings.resolve_path(settings.rois.file), mni, default_radius_mm=settings.rois.default_radius_mm))
    if settings.rois.atlas:
        from .inverse.atlas_roi import rois_from_atlas

        rois += rois_from_atlas(sources, _atlas(settings, settings.rois.atlas))
    names = [r.name for r in rois]
    if len(set(names)) != len(names):
        raise ConfigError(f"ROI names repeat between [[roi]], [rois] file and [rois] atlas: {names}")
    return rois


def feature_options(settings: Settings, bundle: OperatorBundle, *, calibration: np.ndarray | None = None) -> FeatureOptions:
    """FeatureOptions from ``[[roi]]``/``[rois]``, ``[bandpower]``, ``[badchannels]``, ``[adaptive]``,
    ``[events]``/``[epochs]``/``[connectivity]``.

    ``calibration``: (n_samples, n_channels) data in V on the bundle's channels (pca_flip
    and band-power z-scoring use it).
    """
    rois = rois_from_settings(settings, bundle) if (settings.roi or settings.rois.file or settings.rois.atlas) else []
    bandpower = None
    bp = settings.bandpower
    if bp.bands:
        from .stream.bandpower import BandPowerSpec

        bandpower = BandPowerSpec.from_mapping(
            bp.bands, rate_hz=bp.rate_hz, envelope=bp.envelope, smoothing_s=bp.smoothing_s, quantity=bp.quantity, zscore=bp.zscore, baseline_s=bp.baseline_s
        )
    from .pipeline.events import event_options

    rules = None
    bc = settings.badchannels
    if bc.rules:
        from .stream.badchannels import BadChannelRules

        rules = BadChannelRules(**{k: float(v) for k, v in bc.rules.items()})
    return FeatureOptions(
        rois=tuple(rois),
        roi_mode=settings.rois.mode,
        roi_component=settings.rois.component,
        roi_calibration=calibration,
        bandpower=bandpower,
        detect_bad_channels=bc.detect,
        bad_channel_rules=rules,
        auto_swap=bc.auto_swap,
        ignore_channels=tuple(bc.ignore),
        adaptive=settings.adaptive.enabled,
        adaptive_half_life_s=settings.adaptive.half_life_s,
        adaptive_interval_s=settings.adaptive.interval_s,
        sources_output=settings.rois.sources_output,
        min_channels=bc.min_channels,
        events=event_options(settings),
    )


def capture(settings: Settings, selector, seconds: float, *, resolve_timeout: float | None = None):
    """Record ``seconds`` of the operator's channels from a stream (SI units, operator order)."""
    from .build import sensor_channels
    from .stream.calibration import capture_calibration

    st = settings.stream
    names, kinds, units = sensor_channels(settings)
    return capture_calibration(
        selector,
        names,
        seconds,
        ch_units=units,
        ch_types=kinds,
        resolve_timeout=resolve_timeout or st.resolve_timeout,
        assume_unit=st.assume_unit,
        aliases=settings.sensors.aliases,
    )


def estimate_covariance(settings: Settings, calibration, *, data: bool):
    """Noise (``data=False``) or data covariance of a calibration, re-referenced like the operator."""
    from .build import sensor_channels
    from .inverse.covariance import estimate_data_covariance, estimate_noise_covariance
    from .inverse.reference import reference_matrix

    m = reference_matrix(calibration.ch_names, settings.sensors.reference, sensor_channels(settings)[1])
    if data:
        return estimate_data_covariance(calibration.data, calibration.ch_names, method=settings.data_cov.method, reference=m)
    return estimate_noise_covariance(calibration.data, calibration.ch_names, method=settings.noise_cov.method, reference=m)
