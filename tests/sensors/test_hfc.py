"""Homogeneous field correction for OPM arrays (issue 20, Tierney et al. 2021): the projector
removes uniform (order 1) and linear-gradient (order 2) fields, keeps brain fields, and folded
into an operator it makes the operator blind to the interference."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from rtsource.errors import ChannelError
from rtsource.geometry import Frame, Transform
from rtsource.sensors.meg import make_meg_array
from rtsource.sensors.meg.hfc import hfc_basis, hfc_projector


def _opm_cap(triaxial: bool = True, n_sites: int = 30, radius: float = 0.11):
    """OPMs on a spherical cap (golden spiral), radial or tri-axial, DEVICE centred on the head."""
    k = np.arange(n_sites) + 0.5
    z = 1 - k / n_sites * 1.3  # down to ~ -0.3: the upper head
    r = np.sqrt(np.clip(1 - z**2, 0, None))
    phi = k * np.pi * (3 - np.sqrt(5))
    dirs = np.column_stack([r * np.cos(phi), r * np.sin(phi), z])
    names, pos, nrm = [], [], []
    for i, d in enumerate(dirs):
        t1 = np.cross([0, 0, 1.0], d)
        t1 = t1 / np.linalg.norm(t1) if np.linalg.norm(t1) > 1e-6 else np.array([1.0, 0, 0])
        t2 = np.cross(d, t1)
        for suffix, n in (("Z", d), ("X", t1), ("Y", t2))[: 3 if triaxial else 1]:
            names.append(f"S{i:02d}{suffix}")
            pos.append(d * radius)
            nrm.append(n)
    return make_meg_array(names, "mag", np.array(pos), np.array(nrm), frame=Frame.DEVICE, accuracy="accurate", name="cap")


def test_order1_removes_uniform_fields_and_keeps_brain_fields():
    from rtsource.forward.meg_sphere import meg_sphere_leadfield

    arr = _opm_cap()
    p = hfc_projector(arr, 1)
    np.testing.assert_allclose(p @ p, p, atol=1e-12)
    b = np.random.default_rng(0).normal(size=(3, 50)) * 1e-9
    field = hfc_basis(arr, 1) @ b  # uniform fields of 1 nT
    assert np.linalg.norm(p @ field) < 1e-10 * np.linalg.norm(field)  # >> 40 dB
    # (the basis is the coils' response: n.B summed over the integration points)
    pts_field = arr.point_normals @ b
    np.testing.assert_allclose(hfc_basis(arr, 1) @ b, arr.channel_signals(pts_field), rtol=1e-12)
    # a cortical dipole's field is mostly kept
    g = meg_sphere_leadfield(arr, np.array([[0.03, 0.01, 0.06]]), np.zeros(3))
    assert np.linalg.norm(p @ g) > 0.8 * np.linalg.norm(g)


def test_order2_also_removes_linear_gradients():
    arr = _opm_cap()
    rng = np.random.default_rng(1)
    g = rng.normal(size=(3, 3))
    g = 0.5 * (g + g.T)
    g -= np.trace(g) / 3 * np.eye(3)  # a harmonic linear gradient (curl- and divergence-free)
    g *= 1e-9  # 1 nT/m
    centre = arr.points_m.mean(axis=0) + [0.01, -0.02, 0.005]  # any origin: a uniform part is added
    b = (arr.points_m - centre) @ g.T
    signal = arr.channel_signals(np.sum(arr.point_normals * b, axis=1))
    p1, p2 = hfc_projector(arr, 1), hfc_projector(arr, 2)
    assert np.linalg.norm(p2 @ signal) < 1e-9 * np.linalg.norm(signal)
    assert np.linalg.norm(p1 @ signal) > 1e-2 * np.linalg.norm(signal)  # order 1 alone does not


def test_hfc_refuses_gradiometers_and_arrays_that_cannot_span_the_field():
    arr = _opm_cap()
    with pytest.raises(ChannelError, match="order"):
        hfc_basis(arr, 3)
    mixed = make_meg_array(["A", "B"], ["mag", "planar_grad"], np.array([[0, 0, 0.1], [0, 0.01, 0.1]]), np.array([[0, 0, 1.0], [0, 0, 1.0]]),
                           x_axes=np.array([[1.0, 0, 0], [1.0, 0, 0]]), frame=Frame.DEVICE)  # fmt: skip
    with pytest.raises(ChannelError, match="magnetometer"):
        hfc_projector(mixed, 1)
    # radial sensors on a small flat patch all point the same way: no x / y field component
    flat = make_meg_array([f"R{i}" for i in range(6)], "mag", np.column_stack([np.arange(6) * 0.01, np.zeros(6), np.full(6, 0.1)]),
                          np.tile([0, 0, 1.0], (6, 1)), frame=Frame.DEVICE)  # fmt: skip
    with pytest.raises(ChannelError, match="span"):
        hfc_projector(flat, 1)


def test_hfc_folded_into_an_operator_makes_it_blind_to_uniform_fields(tmp_path):
    from rtsource.anatomy.template import load_template
    from rtsource.build import build_bundle
    from rtsource.config import NoiseCovSettings, Settings
    from rtsource.forward.head_model import SphereHead
    from rtsource.forward.leadfield import make_leadfield
    from rtsource.forward.meg_sphere import meg_sphere_origin
    from rtsource.pipeline.opm import hfc_bundle
    from rtsource.anatomy.source_space import SourceSpace
    from rtsource.sensors.meg import write_meg_array

    tpl = load_template()
    origin, _ = meg_sphere_origin(tpl.surfaces.inner_skull)
    arr = _opm_cap(radius=0.125).with_dev_head_t(Transform.from_rotation_translation(Frame.DEVICE, Frame.TEMPLATE, np.eye(3), origin))
    rng = np.random.default_rng(2)
    d = rng.normal(size=(60, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    d[:, 2] = np.abs(d[:, 2])
    nrm = rng.normal(size=(60, 3))
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    sources = SourceSpace(origin + d * 0.06, nrm, np.ones(60) * 1e-5, np.zeros(60, np.int64), "template", "shell-60")
    slf = make_leadfield(sources, arr, SphereHead(meg_origin_m=origin, check_inside=False), use_cache=False)
    s = dataclasses.replace(Settings(), noise_cov=NoiseCovSettings(source="ad_hoc"))
    plain = build_bundle(s, sfreq=1000.0, leadfield=slf)
    hfc = hfc_bundle(plain, arr, 1)
    # [sensors] hfc_order = 1 makes build_bundle fold the same projector in at setup
    write_meg_array(arr, tmp_path / "opm.json")
    sensors = dataclasses.replace(s.sensors, modality="meg", meg_array=str(tmp_path / "opm.json"), hfc_order=1)
    from_setup = build_bundle(dataclasses.replace(s, sensors=sensors), sfreq=1000.0, leadfield=slf)
    np.testing.assert_allclose(from_setup.kernel, hfc.kernel, rtol=1e-9, atol=1e-12 * np.abs(hfc.kernel).max())
    uniform = hfc_basis(arr, 1) @ np.array([1e-9, -2e-9, 0.5e-9])  # in the bundle's channel order (same names)
    assert tuple(hfc.ch_names) == tuple(arr.ch_names)
    out_plain, out_hfc = plain.kernel @ uniform, hfc.kernel @ uniform
    assert np.linalg.norm(out_hfc) < 1e-8 * np.linalg.norm(out_plain)
    assert hfc.provenance["projector"]["rank"] == arr.n_channels - 3
    # a brain source is still seen, with its peak where it is (sLORETA-like check on dSPM power)
    g = np.asarray(plain.gain)[:, 3 * 7 : 3 * 8] @ nrm[7]
    y = np.sum(np.abs((hfc.kernel @ g).reshape(60, 3)) ** 2, axis=1) / hfc.noise_norm**2
    assert np.linalg.norm(hfc.kernel @ g) > 0.5 * np.linalg.norm(plain.kernel @ g)
    assert np.linalg.norm(sources.positions_m[int(np.argmax(y))] - sources.positions_m[7]) < 0.03
