"""The OpenMEEG backend (rtsource.forward.openmeeg_backend).

Without OpenMEEG: the error says how to install it. With it (optional, ``peers``): OpenMEEG's
symmetric BEM against the analytic sphere series, and cross-checked against rtsource's own
BEM on the template head (642 vertices per surface).
"""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest

from rtsource.errors import ForwardError
from rtsource.forward.bem import concentric_sphere_model

RADII = (0.090, 0.085, 0.081)
SIGMA = (0.3, 0.006, 0.3)


def rdm_mag(u, v):
    u = u - u.mean(axis=0)
    v = v - v.mean(axis=0)
    nu = np.linalg.norm(u, axis=0)
    nv = np.linalg.norm(v, axis=0)
    return np.linalg.norm(u / nu - v / nv, axis=0), nu / nv


def unit_vectors(rng, n):
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_missing_openmeeg_says_how_to_install(monkeypatch):
    from rtsource.anatomy.template import load_template, template_source_space
    from rtsource.forward import openmeeg_backend
    from rtsource.forward.head_model import BemHead
    from rtsource.forward.leadfield import make_leadfield
    from rtsource.sensors.montage import standard_montage

    monkeypatch.setitem(sys.modules, "openmeeg", None)  # makes "import openmeeg" fail
    assert openmeeg_backend.openmeeg_available() is False
    model = concentric_sphere_model(RADII[::-1], SIGMA[::-1], order=1)
    with pytest.raises(ForwardError, match=r'pip install "rtsource\[openmeeg\]"'):
        openmeeg_backend.solve_openmeeg(model)
    with pytest.raises(ForwardError, match=r'pip install "rtsource\[openmeeg\]"'):
        openmeeg_backend.openmeeg_eeg_leadfield(model, np.eye(3) * 0.09, [[0, 0, 0.02]])
    montage = standard_montage("standard_1020").pick(["Fz", "Cz", "Pz", "O1"])
    sources = template_source_space("ico4", "white").subset(np.arange(5))
    with pytest.raises(ForwardError, match=r'pip install "rtsource\[openmeeg\]"'):
        make_leadfield(sources, montage, BemHead(load_template(3).surfaces, method="openmeeg"))


@pytest.mark.peers
@pytest.mark.slow
def test_openmeeg_matches_spheres_and_caches():
    pytest.importorskip("openmeeg")
    from rtsource.forward.openmeeg_backend import openmeeg_eeg_leadfield, solve_openmeeg
    from rtsource.forward.sphere import eeg_sphere_leadfield, make_sphere_model

    rng = np.random.default_rng(0)
    model = concentric_sphere_model(RADII[::-1], SIGMA[::-1], order=2)
    elec = unit_vectors(rng, 40) * RADII[0]
    dip = unit_vectors(rng, 8) * RADII[-1] * 0.6
    sol = solve_openmeeg(model)
    assert sol.info["cached"] is False
    gain, _ = openmeeg_eeg_leadfield(sol, elec, dip)
    radii = np.array(RADII)
    ref, _ = eeg_sphere_leadfield(elec, dip, make_sphere_model([0, 0, 0], RADII[0], "head", relative_radii=tuple(radii[::-1] / radii[0]), conductivities=SIGMA[::-1]))
    rdm, mag = rdm_mag(gain, ref)
    assert np.median(rdm) < 0.03 and abs(np.median(mag) - 1) < 0.05  # also: the sign is right
    assert solve_openmeeg(model).info["cached"] is True
    with pytest.raises(ForwardError, match="outside the innermost"):
        openmeeg_eeg_leadfield(sol, elec, [[0, 0, 0.0815]])
    with pytest.raises(ForwardError, match="more than 10.0 mm"):
        openmeeg_eeg_leadfield(sol, elec * 1.2, dip)


@pytest.mark.peers
@pytest.mark.slow
def test_openmeeg_and_our_bem_agree_on_the_template():
    """Both BEMs on the template at 642 vertices per surface, 30 cortical dipoles, 64 channels.
    Measured here: median RDM 0.015, median MAG 0.97 (range 0.90-1.03) with refinement."""
    pytest.importorskip("openmeeg")
    from rtsource.anatomy.template import load_template, template_source_space
    from rtsource.forward.head_model import BemHead
    from rtsource.forward.leadfield import make_leadfield
    from rtsource.sensors.montage import CAP_64, standard_montage

    template = load_template(3)
    montage = standard_montage("standard_1005").pick(CAP_64)
    sources = template_source_space("ico4", "white")
    sources = sources.subset(np.random.default_rng(1).choice(sources.n_sources, 30, replace=False))
    ours = make_leadfield(sources, montage, BemHead(template.surfaces)).leadfield
    theirs = make_leadfield(sources, montage, BemHead(template.surfaces, method="openmeeg")).leadfield
    assert theirs.model["kind"] == "eeg_bem_openmeeg"
    rdm, mag = rdm_mag(ours.gain, theirs.gain)
    logging.getLogger(__name__).info("template ours vs OpenMEEG: median RDM %.4f, MAG %.3f", np.median(rdm), np.median(mag))
    assert np.median(rdm) < 0.05 and np.percentile(rdm, 90) < 0.1
    assert abs(np.median(mag) - 1) < 0.08
