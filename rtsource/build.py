"""The offline stage: settings -> head, sensors, sources -> forward -> inverse -> bundle.

    config ─> template head ─> electrodes (a standard montage, or a file coregistered to the
              template: rtsource.coreg) picked in the config's channel order
           ─> source space ─> sphere model fitted to the scalp ─> lead field (cached on disk)
           ─> noise covariance (captured by the caller, from a file, or ad hoc)
           ─> minimum-norm operator ─> OperatorBundle

The lead field is the expensive part; it is cached under the user's cache directory keyed
by a hash of everything it depends on, so a second setup with another noise covariance or
SNR takes a fraction of a second. Nothing here touches LSL: capturing a calibration
recording from a stream is the caller's job (see ``rtsource.stream.calibration``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from . import __version__
from .anatomy.template import load_template, template_source_space
from .bundle import OperatorBundle
from .config import Settings, settings_to_dict
from .errors import ConfigError
from .forward.leadfield import LeadField, make_eeg_leadfield, sphere_model_for_template
from .inverse.minimum_norm import make_inverse_operator, reference_matrix
from .inverse.covariance import NoiseCovariance, ad_hoc_noise_covariance, load_noise_covariance

logger = logging.getLogger(__name__)


def cache_dir() -> Path:
    """Where rtsource caches forward solutions: $RTSOURCE_CACHE, else $XDG_CACHE_HOME/rtsource."""
    env = os.environ.get("RTSOURCE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rtsource"


def _key(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(np.ascontiguousarray(p, dtype=np.float64).tobytes())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"|")
    return h.hexdigest()[:24]


def electrodes_from_settings(settings: Settings):
    """The operator's electrodes in the template frame (coregistered if read from a file)."""
    from .coreg import template_montage

    c = settings.coreg
    return template_montage(
        settings.sensors.montage,
        settings.sensors.channels,
        aliases=settings.sensors.aliases,
        base_dir=settings.base_dir,
        method=c.method,
        headshape_path=str(settings.resolve_path(c.headshape)) if c.headshape else None,
        scale=c.scale,
        max_rms_mm=c.max_rms_mm,
        max_outlier_fraction=c.max_outlier_fraction,
        allow_bad_fit=c.allow_bad_fit,
        qc_png=str(settings.resolve_path(c.qc_png)) if c.qc_png else None,
        unit=c.unit or None,
        frame=c.frame or None,
        bem_order=settings.head.bem_order,
    )


def _electrode_provenance(settings: Settings, coreg) -> dict:
    out = {"montage": settings.sensors.montage}
    if coreg is not None:
        d = coreg.to_dict()
        out.update(transform=d["transform"], qc=d["qc"], reports=d["reports"], qc_png=d["qc_png"])
    return out


def compute_leadfield(settings: Settings, *, use_cache: bool = True) -> LeadField:
    """The lead field the settings describe (template head, montage, sources, spheres)."""
    template = load_template(settings.head.bem_order)
    montage, coreg = electrodes_from_settings(settings)
    sources = template_source_space(settings.source_space.spacing, settings.source_space.surface)
    f = settings.forward
    model = sphere_model_for_template(template, f.relative_radii, f.conductivities)
    key = _key(
        "eeg-sphere",
        __version__,
        montage.electrodes.positions_m,
        list(montage.labels),
        sources.positions_m,
        sources.name,
        np.asarray(model.center_m),
        np.asarray(model.radii_m),
        np.asarray(model.conductivities),
        f.rtol,
    )
    path = cache_dir() / "forward" / f"{key}.npz"
    if use_cache and path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                gain, terms, desc = z["gain"], z["terms"], json.loads(z["model"].tobytes().decode())
            if gain.shape == (len(montage.labels), 3 * sources.n_sources):
                logger.info("lead field from cache %s", path)
                desc["electrodes"] = _electrode_provenance(settings, coreg)
                return LeadField(gain, montage.labels, montage.electrodes.positions_m, sources, desc, terms)
        except Exception as exc:  # a damaged cache entry is recomputed, not trusted
            logger.warning("ignoring unreadable forward cache %s (%s)", path, exc)
    t0 = time.perf_counter()
    lf = make_eeg_leadfield(montage, sources, model, rtol=f.rtol)
    lf = dataclasses.replace(lf, model={**lf.model, "electrodes": _electrode_provenance(settings, coreg)})
    logger.info("lead field %s computed in %.2f s", lf.gain.shape, time.perf_counter() - t0)
    if use_cache:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp.npz")
            model = {k: v for k, v in lf.model.items() if k != "electrodes"}
            np.savez(tmp, gain=lf.gain, terms=lf.terms, model=np.frombuffer(json.dumps(model).encode(), np.uint8))
            tmp.replace(path)
        except OSError as exc:
            logger.warning("could not cache the lead field in %s (%s)", path, exc)
    return lf


def noise_covariance_from_settings(settings: Settings, captured: NoiseCovariance | None) -> NoiseCovariance:
    """The covariance the settings ask for; ``captured`` is required for source = 'stream'."""
    nc = settings.noise_cov
    if nc.source == "stream":
        if captured is None:
            raise ConfigError("[noise_cov] source = 'stream' needs a calibration captured from the stream (rtsource setup does this)")
        return captured
    if nc.source == "file":
        return load_noise_covariance(settings.resolve_path(nc.path))
    return ad_hoc_noise_covariance(settings.sensors.channels, std_v=nc.ad_hoc_std_uv * 1e-6)


def build_bundle(settings: Settings, *, sfreq: float, noise_cov: NoiseCovariance | None = None, leadfield: LeadField | None = None) -> OperatorBundle:
    """Build the operator bundle the settings describe.

    Parameters
    ----------
    settings : Settings
    sfreq : float
        Sampling rate (Hz) of the stream the operator is for.
    noise_cov : NoiseCovariance, optional
        Captured calibration covariance (needed when ``[noise_cov] source = 'stream'``).
    leadfield : LeadField, optional
        Reuse a lead field computed before (else computed or read from the cache).
    """
    if not (np.isfinite(sfreq) and sfreq > 0):
        raise ConfigError(f"sampling rate {sfreq!r} must be a positive number of Hz")
    lf = leadfield if leadfield is not None else compute_leadfield(settings)
    cov = noise_covariance_from_settings(settings, noise_cov)
    ch_names = tuple(settings.sensors.channels)
    if tuple(cov.ch_names) != ch_names:
        cov = _reorder_covariance(cov, ch_names)
    inv = settings.inverse
    m = reference_matrix(ch_names, settings.sensors.reference)
    op = make_inverse_operator(
        lf.gain,
        lf.sources.normals,
        cov,
        reference=m,
        method=inv.method,
        snr=inv.snr,
        loose=inv.loose,
        depth=inv.depth if inv.depth > 0 else None,
        fixed=inv.fixed,
        ch_names=ch_names,
    )
    params = {
        "snr": inv.snr,
        "lambda2": op.lambda2,
        "loose": op.loose,
        "depth": op.depth,
        "fixed": inv.fixed,
        "rank": op.rank,
        "reference": settings.sensors.reference,
    }
    provenance = {
        "head": {"model": settings.head.model, "frame": "template"},
        "montage": settings.sensors.montage,
        "forward": dict(lf.model),
        "noise_cov": {"method": cov.method, "n_samples": cov.n_samples, "shrinkage": cov.shrinkage, "source": settings.noise_cov.source},
        "settings": settings_to_dict(settings),
    }
    return OperatorBundle(
        kernel=op.kernel,
        noise_norm=op.noise_norm,
        n_orient=op.n_orient,
        method=op.method,
        output_unit=op.output_unit,
        ch_names=ch_names,
        ch_types=("eeg",) * len(ch_names),
        ch_units=("V",) * len(ch_names),
        reference=settings.sensors.reference,
        sfreq=float(sfreq),
        sources=lf.sources,
        channel_positions_m=lf.channel_positions_m,
        channel_frame=lf.sources.frame,
        params=params,
        provenance=provenance,
        gain=lf.gain,
        noise_cov=cov.data,
        source_rotation=op.source_rotation,
    )


def _reorder_covariance(cov: NoiseCovariance, ch_names: tuple[str, ...]) -> NoiseCovariance:
    """The covariance with its channels put in ``ch_names`` order (by exact name)."""
    from .sensors.montage import match_labels

    idx = match_labels(ch_names, cov.ch_names, what="the noise covariance")
    data = cov.data[np.ix_(idx, idx)]
    return NoiseCovariance(data, ch_names, cov.n_samples, cov.method, cov.shrinkage)
