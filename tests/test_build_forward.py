"""The forward model choices of a configuration, through build_bundle on the template."""

from __future__ import annotations

import numpy as np
import pytest

from rtsource.build import build_bundle, compute_leadfield
from rtsource.config import settings_from_dict
from rtsource.errors import ConfigError


def rdm(u, v):
    u = u - u.mean(axis=0)
    v = v - v.mean(axis=0)
    u = u / np.linalg.norm(u, axis=0)
    v = v / np.linalg.norm(v, axis=0)
    return np.linalg.norm(u - v, axis=0)


def test_bem_and_sphere_lead_fields_agree_roughly():
    base = {"head": {"bem_order": 3}, "noise_cov": {"source": "ad_hoc"}}
    sphere = compute_leadfield(settings_from_dict(base)).leadfield
    bem = compute_leadfield(settings_from_dict({**base, "forward": {"method": "bem"}})).leadfield
    assert bem.gain.shape == sphere.gain.shape
    assert bem.model["kind"] == "eeg_bem" and sphere.model["kind"] == "eeg_sphere_series"
    d = rdm(bem.normal_gain(), sphere.normal_gain())
    # a realistic head vs spheres: topographies alike, not equal (median RDM well below 1)
    assert 0.01 < np.median(d) < 0.6, np.median(d)
    b = build_bundle(settings_from_dict({**base, "forward": {"method": "bem"}}), sfreq=500.0)
    assert b.provenance["forward"] and b.method == "dSPM"


def test_eeg_plus_meg_bundle_whitens_per_type():
    s = settings_from_dict({"sensors": {"modality": "eeg+meg"}, "noise_cov": {"source": "ad_hoc"}})
    b = build_bundle(s, sfreq=500.0)
    assert b.n_channels == 64 + 306
    assert set(b.ch_types) == {"eeg", "mag", "grad"}
    assert b.ch_units[0] == "V" and set(b.ch_units[64:]) == {"T", "T/m"}
    # whitened noise is white per type: kernel applied to ad hoc noise gives dSPM ~ 1
    std = np.array([0.2e-6 if t == "eeg" else 20e-15 if t == "mag" else 5e-13 for t in b.ch_types])
    x = np.random.default_rng(0).normal(size=(4000, b.n_channels)) * std
    y = x @ b.kernel.T
    y = np.sqrt((y.reshape(len(y), -1, 3) ** 2).sum(axis=2)) / b.noise_norm
    assert 0.8 < np.sqrt(np.mean(y**2)) < 1.2


def test_openmeeg_refuses_meg():
    s = settings_from_dict({"sensors": {"modality": "meg"}, "forward": {"method": "openmeeg"}, "noise_cov": {"source": "ad_hoc"}})
    with pytest.raises(ConfigError, match="openmeeg"):
        compute_leadfield(s)


def test_bem_conductivities_validated():
    with pytest.raises(ConfigError, match="bem_conductivities"):
        settings_from_dict({"forward": {"bem_conductivities": [0.33, 0.33, 0.33]}})
    with pytest.raises(ConfigError, match=r"bem_conductivities = \[0.33, 1.0, 0.004, 0.33\]: the template head has 3 BEM surfaces"):
        settings_from_dict({"forward": {"bem_conductivities": [0.33, 1.0, 0.004, 0.33]}})
    with pytest.raises(ConfigError, match=r"value 1 \(-0.1\) must be a positive conductivity"):
        settings_from_dict({"forward": {"bem_conductivities": [0.33, -0.1, 0.33]}})
    with pytest.raises(ConfigError, match=r"relative_radii = \[1.0, 0.97, 0.92, 0.9\]: must increase \(innermost first"):
        settings_from_dict({"forward": {"relative_radii": [1.0, 0.97, 0.92, 0.9]}})


def test_volume_and_discrete_source_spaces_build_free_orientation(tmp_path):
    vol = build_bundle(settings_from_dict({"source_space": {"kind": "volume", "volume_spacing_mm": 12.0}, "noise_cov": {"source": "ad_hoc"},
                                           "performance": {"operator_dtype": "int16"}}), sfreq=500.0)  # fmt: skip
    assert vol.n_sources > 500 and vol.params["loose"] == 1.0 and set(vol.sources.hemisphere.tolist()) == {-1}
    # int16 storage: its output error measured at setup (on data drawn from the noise covariance) is in the bundle
    rec = vol.provenance["operator_storage"]
    assert rec["dtype"] == "int16" and 1e-7 < rec["relative_error"] < 1e-4 and "noise covariance" in rec["measured_on"]
    pts = tmp_path / "points.csv"
    pts.write_text("name,x,y,z\nocc,20,-90,5\nmotor,-38,-22,55\ndeep,0,-10,10\n")
    dis = build_bundle(settings_from_dict({"source_space": {"kind": "discrete", "points": str(pts)}, "noise_cov": {"source": "ad_hoc"}}), sfreq=500.0)
    assert dis.n_sources == 3 and dis.params["loose"] == 1.0 and "operator_storage" not in dis.provenance  # float32: no record
    assert np.allclose(dis.sources.positions_m[0], [0.020, -0.090, 0.005])


def test_user_surfaces_source_space(tmp_path):
    nib = pytest.importorskip("nibabel")
    from rtsource.anatomy.template import template_source_space

    src = template_source_space("ico4")
    lh_idx = np.flatnonzero(src.hemisphere == 0)
    for hemi, idx in (("lh", lh_idx), ("rh", np.flatnonzero(src.hemisphere == 1))):
        remap = np.full(src.n_sources, -1)
        remap[idx] = np.arange(len(idx))
        faces = remap[src.triangles]
        faces = faces[np.all(faces >= 0, axis=1)]
        nib.freesurfer.write_geometry(str(tmp_path / f"{hemi}.white"), src.positions_m[idx] * 1e3, faces)
    s = settings_from_dict(
        {"source_space": {"kind": "surfaces", "lh": str(tmp_path / "lh.white"), "rh": str(tmp_path / "rh.white"), "n_sources": 2000},
         "noise_cov": {"source": "ad_hoc"}}
    )  # fmt: skip
    b = build_bundle(s, sfreq=500.0)
    assert 1500 <= b.n_sources <= 2500 and set(np.unique(b.sources.hemisphere)) == {0, 1}
    assert b.params["loose"] == 0.2  # cortical: surface normals, loose orientation


def test_source_space_kind_needs_its_file():
    with pytest.raises(ConfigError, match="points"):
        settings_from_dict({"source_space": {"kind": "discrete"}})
