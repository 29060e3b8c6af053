"""The offline stage: settings -> head, sensors, sources -> forward -> inverse -> bundle.

    config ─> template head ─> sensors: EEG electrodes (a standard montage, or a file
              coregistered to the template: rtsource.coreg) and/or a MEG array
           ─> source space ─> head model ─> lead field (forward.leadfield.make_leadfield, cached)
           ─> noise covariance (captured by the caller, from a file, or ad hoc per sensor type)
           ─> [LCMV: data covariance] ─> inverse operator (any method) ─> OperatorBundle

The lead field is the expensive part; the forward entry point caches each sensor kind's
part under the user's cache directory keyed by a hash of everything it depends on, so a
second setup with another covariance or method takes a fraction of a second. Nothing here touches LSL:
capturing calibration recordings from a stream is the caller's job
(``rtsource.stream.calibration``).
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from .anatomy.template import load_template, template_source_space
from .bundle import OperatorBundle
from .config import Settings, settings_to_dict
from .errors import ConfigError
from .forward.head_model import BemHead, HeadModel, SphereHead, sphere_model_for_template
from .forward.leadfield import SensorLeadField, SensorSet, make_leadfield
from .inverse.covariance import DataCovariance, NoiseCovariance, load_data_covariance, load_noise_covariance
from .inverse.make import make_operator, operator_record, weights_for_bundle
from .inverse.params import MinimumNormParams

logger = logging.getLogger(__name__)


# ---- sensors ----------------------------------------------------------------------------


def electrodes_from_settings(settings: Settings):
    """The operator's EEG electrodes in the head's frame (coregistered if read from a file)."""
    from .coreg import template_montage

    if settings.head.model == "freesurfer":
        from .pipeline import subject

        return subject.electrodes_from_settings(settings)

    c = settings.coreg
    return template_montage(
        settings.sensors.montage,
        settings.sensors.channels,
        aliases=settings.sensors.aliases,
        base_dir=settings.base_dir,
        method=c.method,
        headshape_path=str(settings.resolve_path(c.headshape)) if c.headshape else None,
        headshape_unit=c.headshape_unit or None,
        scale=c.scale,
        max_rms_mm=c.max_rms_mm,
        max_outlier_fraction=c.max_outlier_fraction,
        allow_bad_fit=c.allow_bad_fit,
        qc_png=str(settings.resolve_path(c.qc_png)) if c.qc_png else None,
        unit=c.unit or None,
        frame=c.frame or None,
        bem_order=settings.head.bem_order,
    )


def meg_array_from_settings(settings: Settings):
    """The operator's MEG sensors (``[sensors] meg_array``, ``meg_accuracy``, ``meg_channels``)."""
    from .sensors.meg import load_meg_array

    s = settings.sensors
    spec = "generic" if s.meg_array == "generic" else settings.resolve_path(s.meg_array)
    array = load_meg_array(spec, accuracy=s.meg_accuracy)
    return array.pick(list(s.meg_channels)) if s.meg_channels else array


def _electrode_provenance(settings: Settings, coreg) -> dict:
    out = {"montage": settings.sensors.montage}
    if coreg is not None:
        d = coreg.to_dict()
        out.update(transform=d["transform"], qc=d["qc"], reports=d["reports"], qc_png=d["qc_png"])
    return out


def sensor_channels(settings: Settings) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """The operator's channels without computing anything: (names, kinds, SI units).

    Same order as :func:`compute_leadfield`'s rows: EEG channels, then MEG.
    """
    names, kinds, units = [], [], []
    if "eeg" in settings.sensors.modality:
        names += list(settings.sensors.channels)
        kinds += ["eeg"] * len(settings.sensors.channels)
        units += ["V"] * len(settings.sensors.channels)
    if "meg" in settings.sensors.modality:
        array = meg_array_from_settings(settings)
        names += list(array.ch_names)
        kinds += list(array.whitening_groups)
        units += list(array.ch_units)
    return tuple(names), tuple(kinds), tuple(units)


# ---- forward ----------------------------------------------------------------------------


def head_model_from_settings(settings: Settings) -> HeadModel:
    """The head model ``[forward] method`` and ``[head] bem_order`` describe, on the template.

    "sphere": concentric spheres fitted to the template's scalp (``relative_radii``,
    ``conductivities``, ``rtol``); MEG fits its origin to the template's inner skull.
    "bem" / "openmeeg": the template's scalp, outer and inner skull with
    ``bem_conductivities``.
    """
    if settings.head.model == "freesurfer":
        from .pipeline import subject

        return subject.head_model_from_settings(settings)
    template = load_template(settings.head.bem_order)
    f = settings.forward
    if f.method == "sphere":
        return SphereHead(sphere_model_for_template(template, f.relative_radii, f.conductivities), rtol=f.rtol)
    return BemHead(template.surfaces.as_tuple(), tuple(f.bem_conductivities), method=f.method)


def sensors_from_settings(settings: Settings) -> SensorSet:
    """The operator's sensors: EEG electrodes (coregistered if read from a file) and/or MEG."""
    montage = provenance = array = None
    if "eeg" in settings.sensors.modality:
        montage, coreg = electrodes_from_settings(settings)
        provenance = _electrode_provenance(settings, coreg)
    if "meg" in settings.sensors.modality:
        array = meg_array_from_settings(settings)
        if settings.head.model == "freesurfer":
            from .pipeline import subject

            array = subject.meg_to_subject(settings, array)
        else:
            array = array.to_head()
    return SensorSet(montage, array, provenance)


def source_space_from_settings(settings: Settings):
    """The sources ``[source_space]`` describes, in the head's frame (template or MRI), metres."""
    ss = settings.source_space
    if settings.head.model == "freesurfer":
        from .pipeline import subject

        return subject.source_space_from_settings(settings)
    if ss.kind == "cortex":
        return template_source_space(ss.spacing, ss.surface)
    inner = load_template(settings.head.bem_order).surfaces.inner_skull
    if ss.kind == "volume":
        from .anatomy.volume import volume_source_space

        return volume_source_space(inner, spacing_m=ss.volume_spacing_mm * 1e-3, mindist_m=ss.volume_mindist_mm * 1e-3)
    if ss.kind == "discrete":
        from .anatomy.volume import read_source_points_csv

        return read_source_points_csv(settings.resolve_path(ss.points), inner_skull=inner)[0]
    from .anatomy.surfaces import cortical_source_space

    return cortical_source_space(
        settings.resolve_path(ss.lh) if ss.lh else None,
        settings.resolve_path(ss.rh) if ss.rh else None,
        frame="template",
        n_sources=ss.n_sources,
    )


def compute_leadfield(settings: Settings, *, use_cache: bool = True) -> SensorLeadField:
    """The lead field the settings describe: EEG, MEG or both, for the configured sources.

    Rows: EEG channels, then MEG (:func:`rtsource.forward.leadfield.make_leadfield`, which
    also caches each sensor kind's part on disk).
    """
    if settings.forward.method == "openmeeg" and "meg" in settings.sensors.modality:
        raise ConfigError("[forward] method = 'openmeeg' computes EEG only; use 'bem' or 'sphere' for MEG")
    sources = source_space_from_settings(settings)
    return make_leadfield(sources, sensors_from_settings(settings), head_model_from_settings(settings), use_cache=use_cache)


# ---- covariances ------------------------------------------------------------------------


def noise_covariance_from_settings(settings: Settings, captured: NoiseCovariance | None, ch_names, ch_types) -> NoiseCovariance:
    """The covariance the settings ask for; ``captured`` (given by the caller) always wins.

    It is required for source = 'stream' (captured, or computed from a recording).
    """
    nc = settings.noise_cov
    if captured is not None:
        return captured
    if nc.source == "stream":
        raise ConfigError("[noise_cov] source = 'stream' needs a calibration captured from the stream (rtsource setup does this)")
    if nc.source == "file":
        return load_noise_covariance(settings.resolve_path(nc.path))
    from .sensors.meg import AD_HOC_NOISE_STD

    std = {**AD_HOC_NOISE_STD, "eeg": nc.ad_hoc_std_uv * 1e-6}
    return NoiseCovariance(np.diag([std[t] ** 2 for t in ch_types]), tuple(ch_names), 0, "ad_hoc", 0.0)


def _reorder(cov, ch_names: tuple[str, ...]):
    """The covariance with its channels put in ``ch_names`` order (by exact name)."""
    from .channel_names import match_labels

    if tuple(cov.ch_names) == ch_names:
        return cov
    idx = match_labels(ch_names, cov.ch_names, what="the covariance")
    return dataclasses.replace(cov, data=cov.data[np.ix_(idx, idx)], ch_names=ch_names)


# ---- the bundle -------------------------------------------------------------------------


def _head_provenance(settings: Settings) -> dict:
    if settings.head.model == "freesurfer":
        from .pipeline import subject

        return subject.provenance(settings)
    return {"model": settings.head.model, "frame": "template"}


def build_bundle(
    settings: Settings,
    *,
    sfreq: float,
    noise_cov: NoiseCovariance | None = None,
    data_cov: DataCovariance | None = None,
    leadfield: SensorLeadField | None = None,
    projectors: tuple = (),
    artifacts=None,
) -> OperatorBundle:
    """Build the operator bundle the settings describe.

    Parameters
    ----------
    settings : Settings
    sfreq : float
        Sampling rate (Hz) of the stream the operator is for.
    noise_cov : NoiseCovariance, optional
        Captured calibration covariance (needed when ``[noise_cov] source = 'stream'``).
    data_cov : DataCovariance, optional
        Captured data covariance for LCMV (else ``[data_cov] path`` is read).
    leadfield : SensorLeadField, optional
        Reuse a lead field computed before (else computed or read from the cache).
    projectors : tuple of SspProjector, optional
        SSP projectors of the recording and the covariance: the covariance is projected,
        the operator applies them (:mod:`rtsource.inverse.ssp`), the provenance lists them.
    artifacts : rtsource.artifacts.ArtifactCalibration, optional
        Artifact calibration (``rtsource.pipeline.artifacts``) stored in the bundle; its
        projection, if on, is folded into the operator (``make_operator(projector=)``).
    """
    if not (np.isfinite(sfreq) and sfreq > 0):
        raise ConfigError(f"sampling rate {sfreq!r} must be a positive number of Hz")
    slf = leadfield if leadfield is not None else compute_leadfield(settings)
    lf = slf.leadfield
    ch_names = tuple(lf.ch_names)
    cov = _reorder(noise_covariance_from_settings(settings, noise_cov, ch_names, slf.ch_types), ch_names)
    projectors = tuple(p for p in projectors if set(p.ch_names) & set(ch_names))  # those on the operator's channels
    if projectors:
        from .inverse.ssp import project_covariance, projector_reference_matrix

        ssp, _ = projector_reference_matrix(ch_names, "none", slf.ch_types, projectors)
        cov = dataclasses.replace(cov, data=project_covariance(cov.data, ssp))
    method = settings.inverse.method
    if method == "LCMV":
        if data_cov is None:
            if settings.data_cov.source != "file" or not settings.data_cov.path:
                raise ConfigError(
                    "[inverse] method = 'LCMV' needs a data covariance: capture one from the stream "
                    "([data_cov] source = 'stream', done by rtsource setup) or give [data_cov] path"
                )
            data_cov = load_data_covariance(settings.resolve_path(settings.data_cov.path))
        data_cov = _reorder(data_cov, ch_names)
    # MEG-only: there is no EEG to re-reference, and the bundle says so (not "average")
    reference = settings.sensors.reference if "eeg" in slf.ch_types else "none"
    from .anatomy.volume import orientation_is_free

    params = settings.inverse.params()
    if orientation_is_free(lf.sources) and isinstance(params, MinimumNormParams):
        params = dataclasses.replace(params, loose=1.0)  # volume and discrete sources have no surface normal
    projector = artifacts.projector(ch_names) if artifacts is not None else None
    op = make_operator(
        params, lf.gain, lf.sources.normals, cov, reference=reference, ch_names=ch_names, ch_types=slf.ch_types, data_cov=data_cov,
        projectors=projectors, projector=projector,
    )
    record = operator_record(op, params, reference=reference, data_cov=data_cov)
    provenance = {
        "head": _head_provenance(settings),
        "montage": settings.sensors.montage,
        "modality": settings.sensors.modality,
        "forward": dict(lf.model),
        "noise_cov": {"method": cov.method, "n_samples": cov.n_samples, "shrinkage": cov.shrinkage, "source": settings.noise_cov.source},
        "settings": settings_to_dict(settings),
    }
    if projectors:
        from .inverse.ssp import projectors_provenance

        provenance["projectors"] = projectors_provenance(projectors)
    if settings.performance.operator_dtype == "int16":  # the loop will store it so: measure what that costs
        from .stream.quantize import storage_record

        provenance["operator_storage"] = storage_record(op.kernel, op.noise_norm, op.n_orient, cov.data)
    bundle = OperatorBundle(
        kernel=op.kernel,
        noise_norm=op.noise_norm,
        n_orient=op.n_orient,
        method=op.method,
        output_unit=op.output_unit,
        ch_names=ch_names,
        ch_types=slf.ch_types,
        ch_units=slf.ch_units,
        reference=reference,
        sfreq=float(sfreq),
        sources=lf.sources,
        channel_positions_m=lf.channel_positions_m,
        channel_frame=lf.sources.frame,
        params=record,
        provenance=provenance,
        gain=lf.gain,
        noise_cov=cov.data,
        source_rotation=op.source_rotation,
        data_cov=data_cov.data if data_cov is not None else None,
        source_weights=weights_for_bundle(op),
        artifacts=artifacts,
    )
    if settings.sensors.hfc_order and "meg" in settings.sensors.modality:  # OPM interference (issue 20)
        from .pipeline.opm import hfc_bundle

        bundle = hfc_bundle(bundle, meg_array_from_settings(settings), settings.sensors.hfc_order)
    return bundle
