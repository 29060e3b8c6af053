"""OPM acceptance: homogeneous field correction on the Kernel Flux helmet with a moving head.

:func:`evaluate_opm` (``tools/opm_acceptance.py``): the Kernel Flux helmet (40 tri-axial
OPMs, worn: the sensors move with the head), a cortical source, white sensor noise, and a
uniform interference field fixed in the room (a static residual field, a 2.3 Hz and an
11.05 Hz component) that the head's rotation (5 degrees over the run plus a 0.4 Hz sway)
turns into changing sensor signals. Measured:

- the attenuation of the interference by the HFC projector of order 1 (and 2):
  ``20 log10 |X| / |X P|`` over the interference-only data, with the simulated sensors as
  modelled, and with 1 % gain and 1 degree orientation errors (real arrays);
- the localisation error (sLORETA, the 11 Hz Fourier coefficient of the whole run) of the
  source: noise-free without HFC, and with interference + noise through the HFC-folded
  operator (and, for comparison, through the plain operator).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np


def _rot(axis, angle):
    from ..pipeline.headmotion_sim import _rotation

    return _rotation(np.asarray(axis, float), angle)


def evaluate_opm(seconds: float = 10.0, sfreq: float = 1000.0, spacing: str = "ico4", method: str = "sLORETA", progress=print) -> dict:
    """The OPM acceptance measurement (see the module doc); returns a JSON-ready dict."""
    from ..anatomy.template import load_template, template_source_space
    from ..build import build_bundle
    from ..config import NoiseCovSettings, Settings
    from ..forward.head_model import SphereHead
    from ..forward.leadfield import make_leadfield
    from ..forward.meg_sphere import meg_sphere_field, meg_sphere_origin
    from ..pipeline.opm import kernel_flux_array, with_projector
    from ..sensors.meg.hfc import hfc_basis, hfc_projector
    from .headmotion import _peak_error_m

    tpl = load_template()
    origin, _ = meg_sphere_origin(tpl.surfaces.inner_skull)
    array = kernel_flux_array(True, "normal")
    sim_array = kernel_flux_array(True, "accurate")
    sources = template_source_space(spacing)
    slf = make_leadfield(sources, array, SphereHead(meg_origin_m=origin, inner_skull=tpl.surfaces.inner_skull), use_cache=False)
    s = dataclasses.replace(Settings(), noise_cov=NoiseCovSettings(source="ad_hoc"))
    s = dataclasses.replace(s, inverse=dataclasses.replace(s.inverse, method=method))
    bundle = build_bundle(s, sfreq=sfreq, leadfield=slf)
    hfc = {order: with_projector(bundle, hfc_projector(array, order), f"HFC order {order}") for order in (1, 2)}

    # the source: tangential, visible, as in the head-motion acceptance
    from .headmotion import _visible_source

    k = _visible_source(bundle, origin)
    true_m = bundle.sources.positions_m[k]
    head = sim_array.to_head()
    field = meg_sphere_field(head.points_m, head.point_normals, true_m[None], origin)
    src_gain = head.channel_signals(field) @ bundle.sources.normals[k]  # (n_ch,)
    n = int(round(seconds * sfreq))
    t = np.arange(n) / sfreq
    src_f, amp = 11.0, 40e-9
    brain = np.outer(np.sin(2 * np.pi * src_f * t) * amp, src_gain)

    # interference: a field fixed in the room, seen by a rotating (worn) helmet
    b_room = np.array([0.6e-9, -0.4e-9, 1.0e-9])[None] + np.outer(np.sin(2 * np.pi * 2.3 * t), [30e-12, 20e-12, -40e-12]) \
        + np.outer(np.sin(2 * np.pi * 11.05 * t), [5e-12, -8e-12, 6e-12])  # fmt: skip
    angle = np.deg2rad(5.0) * t / seconds + np.deg2rad(1.0) * np.sin(2 * np.pi * 0.4 * t)
    b_dev = np.empty_like(b_room)
    for i in range(n):  # the field in the helmet's (DEVICE) axes: R(t)^T B
        b_dev[i] = _rot((0.2, 0.3, 1.0), angle[i]).T @ b_room[i]
    basis_sim = hfc_basis(sim_array, 1)  # (n_ch, 3): exact for the simulated coils
    interference = b_dev @ basis_sim.T
    # the same with calibration errors (1 % gain, 1 degree orientation) the model does not know
    rng = np.random.default_rng(3)
    tilt = [_rot(rng.normal(size=3), np.deg2rad(1.0)) for _ in range(array.n_channels)]
    normals = np.array([r[:, 2] for r in sim_array.rotations])
    gains = 1.0 + 0.01 * rng.normal(size=array.n_channels)
    basis_err = np.array([g * (tl @ nn) for g, tl, nn in zip(gains, tilt, normals)])
    interference_err = b_dev @ basis_err.T
    noise = rng.normal(size=(n, array.n_channels)) * 15e-15 * np.sqrt(sfreq / 2)  # 15 fT/sqrt(Hz)

    def attenuation_db(x, p):
        x = x - x.mean(axis=0)  # the static field is a DC offset the filters remove: judge the changing part
        return float(20 * np.log10(np.linalg.norm(x) / np.linalg.norm(x @ p)))

    res: dict = {"setup": {"channels": array.n_channels, "sources": bundle.n_sources, "method": method, "seconds": seconds, "source_index": k}}
    for order in (1, 2):
        p = hfc_projector(array, order)
        res[f"hfc{order}_attenuation_db"] = round(attenuation_db(interference, p), 1)
        res[f"hfc{order}_attenuation_db_with_calibration_errors"] = round(attenuation_db(interference_err, p), 1)
    coef = np.exp(-2j * np.pi * src_f * t)
    res["loc_error_mm_noise_free"] = round(_peak_error_m(bundle, coef @ brain, true_m) * 1e3, 2)
    data = brain + interference + noise
    res["loc_error_mm_hfc1"] = round(_peak_error_m(hfc[1], coef @ data, true_m) * 1e3, 2)
    res["loc_error_mm_hfc2"] = round(_peak_error_m(hfc[2], coef @ data, true_m) * 1e3, 2)
    res["loc_error_mm_no_hfc"] = round(_peak_error_m(bundle, coef @ data, true_m) * 1e3, 2)
    data_err = brain + interference_err + noise
    res["loc_error_mm_hfc1_with_calibration_errors"] = round(_peak_error_m(hfc[1], coef @ data_err, true_m) * 1e3, 2)
    res["acceptance"] = {
        "hfc1_removes_40db": res["hfc1_attenuation_db"] >= 40.0,
        "opm_localisation_within_3mm": res["loc_error_mm_hfc1"] <= res["loc_error_mm_noise_free"] + 3.0,
    }
    progress(json.dumps(res))
    return res
