"""OPM arrays: the Kernel Flux helmet around the template, and the HFC projector folded into an operator.

- :func:`kernel_flux_array`: the 40 module positions of the Kernel Flux helmet that
  MNE-Python ships (``mne/data/helmets/Kernel_Flux_ch_pos.txt``) as OPMs, radial only or
  tri-axial (radial + two tangential), placed around the template head.
- :func:`with_projector`: a bundle's operator rebuilt for projected data: lead field ``P G``,
  noise covariance ``P C P`` (its whitener keeps the projected rank) and kernel ``K P``, so
  the projector is part of the operator the stream applies (HFC, Tierney et al. 2021;
  :func:`rtsource.sensors.meg.hfc.hfc_projector`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from ..bundle import OperatorBundle
from ..errors import ConfigError
from ..geometry import Frame, Transform
from ..sensors.meg import MegArray, make_meg_array

__all__ = ["hfc_bundle", "kernel_flux_array", "with_projector"]

#: FIFF coil type of a QuSpin Gen-2 OPM (MNE-Python), the coil model used for every channel.
OPM_COIL_TYPE = 8002
_GAP_M = 0.008


def kernel_flux_array(triaxial: bool = True, accuracy: str = "normal") -> MegArray:
    """The Kernel Flux helmet (40 positions) as OPMs, DEVICE frame, carrying DEVICE -> TEMPLATE.

    Parameters
    ----------
    triaxial : bool
        Three channels per position (radial ``Z``, tangential ``X`` and ``Y``); else radial only.
    accuracy : str
        Coil integration accuracy.

    Notes
    -----
    Each module keeps its direction from the centre of the sphere fitted to the helmet but
    sits 8 mm outside the template scalp along it (the Flux modules hug a smaller head), and
    at least 8 mm further from the MEG sphere origin than any inner-skull point (the
    spherical forward needs every sensor outside the sources' sphere); DEVICE is centred
    on that origin with the template's axes, and the carried DEVICE -> TEMPLATE transform
    is that translation.
    """
    try:
        import mne
    except ImportError as exc:  # pragma: no cover - a test dependency
        raise ConfigError("kernel_flux_array needs MNE-Python (pip install mne) for the helmet file") from exc
    from ..anatomy.template import load_template
    from ..geometry.sphere_fit import fit_sphere

    pos = json.loads((Path(mne.__file__).parent / "data" / "helmets" / "Kernel_Flux_ch_pos.txt").read_text())
    raw = np.array(list(pos.values()), float)
    centre, _ = fit_sphere(raw)
    # The modules sit on a head smaller than the template's: keep each module's direction
    # from the helmet centre and put it GAP outside the template scalp along that direction
    # (a cap that fits this head), in the template's axes about its upper-scalp centre.
    from ..forward.meg_sphere import meg_sphere_origin

    tpl = load_template()
    c, _ = meg_sphere_origin(tpl.surfaces.inner_skull)
    rel = tpl.surfaces.scalp.vertices_m - c
    rlen = np.linalg.norm(rel, axis=1)
    # every sensor further from the sphere origin than any brain point (Sarvas' formula needs it)
    r_min = float(np.linalg.norm(tpl.surfaces.inner_skull.vertices_m - c, axis=1).max()) + _GAP_M
    sites = np.empty_like(raw)
    for i, p in enumerate(raw):
        d = (p - centre) / np.linalg.norm(p - centre)
        near = rel @ d / rlen > np.cos(np.deg2rad(6.0))
        sites[i] = d * max(rlen[near].max() + _GAP_M, r_min)
    names, positions, normals, x_axes = [], [], [], []
    for label, p in zip(pos, sites):
        radial = p / np.linalg.norm(p)
        t1 = np.cross([0.0, 0.0, 1.0], radial)
        t1 = t1 / np.linalg.norm(t1) if np.linalg.norm(t1) > 1e-6 else np.array([1.0, 0.0, 0.0])
        t2 = np.cross(radial, t1)
        axes = (("Z", radial, t1), ("X", t1, t2), ("Y", t2, radial)) if triaxial else (("Z", radial, t1),)
        for suffix, normal, x_axis in axes:
            names.append(f"{label}-{suffix}")
            positions.append(p)
            normals.append(normal)
            x_axes.append(x_axis)
    shift = c
    array = make_meg_array(names, ["mag"] * len(names), np.array(positions), np.array(normals), x_axes=np.array(x_axes), frame=Frame.DEVICE,
                           accuracy=accuracy, name="kernel-flux" + ("-triaxial" if triaxial else ""),
                           coil_types=[OPM_COIL_TYPE] * len(names))  # fmt: skip
    return array.with_dev_head_t(Transform.from_rotation_translation(Frame.DEVICE, Frame.TEMPLATE, np.eye(3), shift))


def with_projector(bundle: OperatorBundle, projector: np.ndarray, label: str) -> OperatorBundle:
    """``bundle``'s operator for data projected by ``projector`` (the projector folded into the kernel).

    Parameters
    ----------
    bundle : OperatorBundle
        Caches ``gain`` and ``noise_cov``.
    projector : ndarray, shape (n_channels, n_channels)
        On ``bundle.ch_names``; symmetric and idempotent (e.g. an HFC projector).
    label : str
        Recorded in ``provenance["projector"]``.
    """
    from ..inverse.rebuild import rebuild_operator

    p = np.asarray(projector, float)
    n = bundle.n_channels
    if p.shape != (n, n) or not np.allclose(p @ p, p, atol=1e-8) or not np.allclose(p, p.T, atol=1e-10):
        raise ConfigError(f"projector must be a symmetric idempotent ({n}, {n}) matrix on the bundle's channels, got shape {p.shape}")
    if bundle.gain is None or bundle.noise_cov is None:
        raise ConfigError("with_projector needs a bundle that caches gain and noise_cov (bundles from build_bundle do)")
    cov = p @ np.asarray(bundle.noise_cov) @ p
    projected = dataclasses.replace(bundle, gain=p @ np.asarray(bundle.gain), noise_cov=0.5 * (cov + cov.T))
    op, _, fwd = rebuild_operator(projected, [])
    provenance = dict(bundle.provenance)
    provenance["projector"] = {"label": label, "rank": int(round(np.trace(p)))}
    return dataclasses.replace(
        projected, kernel=op.kernel @ p, noise_norm=op.noise_norm, gain=fwd.gain, source_rotation=op.source_rotation, provenance=provenance,
    )  # fmt: skip


def hfc_bundle(bundle: OperatorBundle, array: MegArray, order: int = 1) -> OperatorBundle:
    """``bundle`` with the HFC projector of ``array``'s magnetometers folded into its operator.

    The projector acts on the bundle's magnetometer channels (other channels pass unchanged);
    ``[sensors] hfc_order`` makes :func:`rtsource.build.build_bundle` call this.
    """
    from ..sensors.meg.hfc import hfc_projector

    mags = [i for i, t in enumerate(bundle.ch_types) if t == "mag"]
    if not mags:
        raise ConfigError("[sensors] hfc_order: the bundle has no magnetometer channels to correct; set hfc_order = 0")
    names = [bundle.ch_names[i] for i in mags]
    p_mag = hfc_projector(array.pick(names), order)
    p = np.eye(bundle.n_channels)
    p[np.ix_(mags, mags)] = p_mag
    return with_projector(bundle, p, f"HFC order {order} (Tierney et al. 2021)")
