"""The lead-field entry point (rtsource.forward.leadfield.make_leadfield) and its head models.

Every (sensor kind, method) pair goes through ``make_leadfield`` and must equal the method's
own function called on the same positions; the stacking of EEG and MEG, the disk cache,
the checks of frames and geometry, and the typed head models' refusals are exercised on a
small concentric-sphere head in the template frame and on the template itself.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import numpy as np
import pytest

import rtsource
from rtsource.anatomy.source_space import SourceSpace
from rtsource.anatomy.template import load_template, template_source_space
from rtsource.errors import ForwardError, FrameError
from rtsource.forward import bem
from rtsource.forward.bem import BemModel, concentric_sphere_model, eeg_bem_leadfield, meg_bem_field, meg_bem_leadfield, solve_bem
from rtsource.forward.head_model import BemHead, SphereHead, sphere_model_for_template
from rtsource.forward.leadfield import LeadField, SensorLeadField, SensorSet, concatenate_leadfields, make_leadfield
from rtsource.forward.meg_sphere import meg_sphere_leadfield, meg_sphere_origin
from rtsource.forward.sphere import eeg_sphere_leadfield, make_sphere_model
from rtsource.geometry import Frame, Points, Transform
from rtsource.sensors.meg import generic_meg_array
from rtsource.sensors.montage import Montage

RADII = (0.090, 0.085, 0.081)  # scalp, outer skull, inner skull
SIGMA = (0.3, 0.006, 0.3)
CENTER = np.array([0.0, -0.02, 0.01])  # inside the generic helmet, in the template frame
MEG_CHANNELS = ["MEG001G1", "MEG001M", "MEG010M", "MEG050G1", "MEG050G2"]


def unit_vectors(rng, n):
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def small_head():
    """Three concentric 162-vertex spheres, 12 electrodes on the scalp, 6 dipoles, 5 MEG channels."""
    rng = np.random.default_rng(3)
    model = concentric_sphere_model(RADII[::-1], SIGMA[::-1], order=2, center_m=CENTER, frame="template")
    up = unit_vectors(rng, 12)
    up[:, 2] = np.abs(up[:, 2]) + 0.2
    up /= np.linalg.norm(up, axis=1, keepdims=True)
    montage = Montage(Points(CENTER + RADII[0] * up, Frame.TEMPLATE, "m", tuple(f"E{i}" for i in range(12))), name="sphere-cap")
    u = unit_vectors(rng, 6)
    u[:, 2] = np.abs(u[:, 2]) + 0.3  # below the helmet
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    pos = CENTER + u * (RADII[-1] * np.linspace(0.3, 0.7, 6))[:, None]
    sources = SourceSpace(pos, unit_vectors(rng, 6), np.zeros(6), np.full(6, -1), Frame.TEMPLATE, "six")
    shells = make_sphere_model(CENTER, RADII[0], "template", relative_radii=tuple(np.array(RADII[::-1]) / RADII[0]), conductivities=SIGMA[::-1])
    array = generic_meg_array().pick(MEG_CHANNELS)  # DEVICE, carries its transform to the template
    return model, montage, sources, shells, array


# ---------------------------------------------------------------- every pair through the one entry point


def _per_method(kind, method, model, montage, sources, shells, array):
    """The method's own function on the same positions (what make_leadfield must return)."""
    elec, pos = montage.electrodes.positions_m, sources.positions_m
    arr = array.in_frame(Frame.TEMPLATE)
    if (kind, method) == ("eeg", "sphere"):
        return eeg_sphere_leadfield(elec, pos, shells)[0]
    if (kind, method) == ("eeg", "bem"):
        return eeg_bem_leadfield(solve_bem(model), elec, pos)[0]
    if (kind, method) == ("eeg", "openmeeg"):
        pytest.importorskip("openmeeg")
        from rtsource.forward.openmeeg_backend import openmeeg_eeg_leadfield

        return openmeeg_eeg_leadfield(model, elec, pos)[0]
    if (kind, method) == ("meg", "sphere"):
        return meg_sphere_leadfield(arr, pos, meg_sphere_origin(model.inner)[0])
    single = BemModel(model.surfaces[-1:], model.conductivities[-1:])
    # the channel grouping of meg_bem_leadfield equals the coil weights applied to the field
    field = meg_bem_field(single, arr.points_m, arr.point_normals, pos)
    np.testing.assert_allclose(meg_bem_leadfield(single, arr, pos), arr.channel_signals(field), rtol=1e-12, atol=0)
    return meg_bem_leadfield(single, arr, pos)


@pytest.mark.parametrize(
    "kind,method",
    [("eeg", "sphere"), ("eeg", "bem"), ("eeg", "openmeeg"), ("meg", "sphere"), ("meg", "bem")],
)
def test_every_modality_and_method_goes_through_make_leadfield(small_head, kind, method):
    model, montage, sources, shells, array = small_head
    expected = _per_method(kind, method, *small_head)
    if method == "sphere":
        head = SphereHead(shells, inner_skull=model.inner)
    else:
        head = BemHead(model.surfaces, SIGMA, method=method)
    sensors = montage if kind == "eeg" else array
    slf = make_leadfield(sources, sensors, head, use_cache=False)
    assert isinstance(slf, SensorLeadField) and isinstance(slf.leadfield, LeadField)
    np.testing.assert_allclose(slf.leadfield.gain, expected, rtol=1e-10, atol=0)
    kinds = {("eeg", "sphere"): "eeg_sphere_series", ("eeg", "bem"): "eeg_bem", ("eeg", "openmeeg"): "eeg_bem_openmeeg",
             ("meg", "sphere"): "meg_sphere_sarvas", ("meg", "bem"): "meg_bem_single_layer"}  # fmt: skip
    assert slf.leadfield.model["kind"] == kinds[(kind, method)]
    if kind == "eeg":
        assert slf.ch_types == ("eeg",) * 12 and slf.ch_units == ("V",) * 12 and slf.leadfield.ch_names == montage.labels
    else:
        assert slf.ch_types == ("grad", "mag", "mag", "grad", "grad") and slf.ch_units == ("T/m", "T", "T", "T/m", "T/m")
        assert np.allclose(slf.leadfield.channel_positions_m, array.in_frame(Frame.TEMPLATE).positions_m)


@pytest.mark.parametrize("method", ["sphere", "bem"])
def test_eeg_and_meg_stack_eeg_rows_first(small_head, method):
    model, montage, sources, shells, array = small_head
    head = SphereHead(shells, inner_skull=model.inner) if method == "sphere" else BemHead.from_model(model)
    eeg = make_leadfield(sources, montage, head, use_cache=False)
    meg = make_leadfield(sources, array, head, use_cache=False)
    both = make_leadfield(sources, SensorSet(eeg=montage, meg=array, eeg_provenance={"montage": "sphere-cap"}), head, use_cache=False)
    np.testing.assert_allclose(both.leadfield.gain, np.vstack([eeg.leadfield.gain, meg.leadfield.gain]), rtol=1e-12, atol=0)
    assert both.leadfield.ch_names == montage.labels + tuple(MEG_CHANNELS)
    assert both.ch_types == eeg.ch_types + meg.ch_types and both.ch_units == eeg.ch_units + meg.ch_units
    parts = both.leadfield.model["parts"]
    assert both.leadfield.model["kind"] == "combined" and [p["kind"] for p in parts] == [eeg.leadfield.model["kind"], meg.leadfield.model["kind"]]
    assert parts[0]["electrodes"] == {"montage": "sphere-cap"} and "electrodes" not in parts[1]


def test_openmeeg_refuses_meg(small_head):
    model, montage, sources, shells, array = small_head
    with pytest.raises(ForwardError, match="OpenMEEG computes EEG only"):
        make_leadfield(sources, array, BemHead(model.surfaces, SIGMA, method="openmeeg"), use_cache=False)


# ---------------------------------------------------------------- the disk cache


def test_each_part_is_cached_and_damage_is_recomputed(small_head, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("RTSOURCE_CACHE", str(tmp_path))
    model, montage, sources, shells, array = small_head
    head = SphereHead(shells, inner_skull=model.inner)
    sensors = SensorSet(eeg=montage, meg=array, eeg_provenance={"montage": "cap"})
    first = make_leadfield(sources, sensors, head)
    files = sorted((tmp_path / "forward").glob("*.npz"))
    assert len(files) == 2  # one entry per sensor kind
    again = make_leadfield(sources, sensors, head)
    np.testing.assert_array_equal(again.leadfield.gain, first.leadfield.gain)
    assert again.leadfield.model == first.leadfield.model  # provenance is added after the cache
    assert again.leadfield.terms is None and first.leadfield.model["parts"][0]["electrodes"] == {"montage": "cap"}
    # another rtol is another entry, not a stale hit
    make_leadfield(sources, montage, SphereHead(shells, rtol=1e-8, inner_skull=model.inner))
    assert len(list((tmp_path / "forward").glob("*.npz"))) == 3
    for f in files:
        f.write_bytes(b"not an npz file")
    with caplog.at_level(logging.WARNING, logger="rtsource.forward.leadfield_cache"):
        fixed = make_leadfield(sources, sensors, head)
    assert "ignoring unreadable forward cache" in caplog.text
    np.testing.assert_array_equal(fixed.leadfield.gain, first.leadfield.gain)
    # use_cache=False neither reads nor writes
    for f in (tmp_path / "forward").glob("*.npz"):
        f.unlink()
    make_leadfield(sources, sensors, head, use_cache=False)
    assert not list((tmp_path / "forward").glob("*.npz"))


# ---------------------------------------------------------------- EEG on the template


def test_template_bem_leadfield_end_to_end():
    from rtsource.sensors.montage import CAP_64, standard_montage

    template = load_template(3)
    montage = standard_montage("standard_1005").pick(CAP_64)
    sources = template_source_space("ico4", "white")
    lf = make_leadfield(sources, montage, BemHead(template.surfaces)).leadfield
    assert lf.gain.shape == (64, 3 * sources.n_sources) and np.all(np.isfinite(lf.gain))
    assert lf.model["kind"] == "eeg_bem" and lf.model["conductivities_s_per_m"] == list(bem.DEFAULT_CONDUCTIVITIES)
    assert lf.model["max_electrode_projection_mm"] < 10 and lf.model["min_source_depth_mm"] > 0
    # plausible: a few microvolts at the scalp for 10 nAm
    normal = lf.normal_gain() * 10e-9
    assert 0.1e-6 < np.median(np.abs(normal - normal.mean(axis=0)).max(axis=0)) < 50e-6
    with pytest.raises(ForwardError, match="method"):
        BemHead(template.surfaces, method="fem")


def test_sphere_eeg_shifts_sources_just_outside_the_inner_shell(small_head, caplog):
    model, montage, sources, shells, array = small_head
    r1 = shells.radii_m[0]
    u = np.array([[0.0, 0.6, 0.8], [0.8, 0.0, 0.6]])
    pos = CENTER + u * np.array([[r1 + 0.002], [r1 * 0.5]])  # 2 mm outside, well inside
    near = SourceSpace(pos, u, np.zeros(2), np.full(2, -1), Frame.TEMPLATE)
    with caplog.at_level(logging.WARNING, logger="rtsource.forward.leadfield"):
        lf = make_leadfield(near, montage, SphereHead(shells), use_cache=False).leadfield
    assert "1 of 2 sources lie up to 2.50 mm outside the innermost sphere" in caplog.text
    assert lf.model["sources_shifted_inward"] == 1 and lf.model["max_inward_shift_mm"] == pytest.approx(2.5)
    shifted = CENTER + u[:1] * (r1 - 0.5e-3)
    np.testing.assert_allclose(lf.gain[:, :3], eeg_sphere_leadfield(montage.electrodes.positions_m, shifted, shells)[0], rtol=1e-12)
    far = SourceSpace(CENTER + u[:1] * (r1 + 0.004), u[:1], [0.0], [-1], Frame.TEMPLATE)
    with pytest.raises(ForwardError, match="outside the innermost sphere"):
        make_leadfield(far, montage, SphereHead(shells), use_cache=False)
    assert make_leadfield(far, montage, SphereHead(shells, max_inward_shift_m=0.005), use_cache=False).leadfield.model["sources_shifted_inward"] == 1


def test_eeg_refusals(small_head):
    model, montage, sources, shells, array = small_head
    with pytest.raises(ForwardError, match="at least 3 electrodes"):
        make_leadfield(sources, montage.pick(["E0", "E1"]), SphereHead(shells), use_cache=False)
    with pytest.raises(ForwardError, match="needs its shells"):
        make_leadfield(sources, montage, SphereHead(), use_cache=False)
    in_head = SphereHead(make_sphere_model(CENTER, RADII[0], "head"))
    with pytest.raises(FrameError, match="the electrodes.*the head model"):
        make_leadfield(sources, montage, in_head, use_cache=False)
    moved = sources.transformed(Transform.identity("template", "head"))
    with pytest.raises(FrameError, match="the electrodes.*the source space"):
        make_leadfield(moved, montage, SphereHead(shells), use_cache=False)
    with pytest.raises(ForwardError, match="more than 10.0 mm"):
        far = Montage(Points(montage.electrodes.positions_m * 1.3 - CENTER * 0.3, Frame.TEMPLATE, "m", montage.labels))
        make_leadfield(sources, far, BemHead.from_model(model), use_cache=False)


# ---------------------------------------------------------------- MEG on the template


@pytest.fixture(scope="module")
def generic_head():
    return generic_meg_array().to_head()


def test_meg_sphere_on_the_template(generic_head):
    sources = template_source_space("ico4").subset(np.arange(0, 5124, 40))
    array = generic_meg_array()  # DEVICE frame: moved by its carried transform
    slf = make_leadfield(sources, array, SphereHead(), use_cache=False)
    lf = slf.leadfield
    assert isinstance(lf, LeadField) and lf.gain.shape == (306, 3 * sources.n_sources)
    origin, _ = meg_sphere_origin(load_template().surfaces.inner_skull)
    assert np.allclose(lf.model["origin_m"], origin)
    assert lf.model["kind"] == "meg_sphere_sarvas" and lf.model["ch_units"][:3] == ["T/m", "T/m", "T"]
    assert lf.model["whitening_groups"][:3] == ["grad", "grad", "mag"] and slf.ch_types[:3] == ("grad", "grad", "mag")
    assert np.array_equal(lf.gain, meg_sphere_leadfield(generic_head, sources.positions_m, origin))
    assert np.allclose(lf.channel_positions_m, generic_head.positions_m)
    # magnitudes of a 10 nAm cortical dipole: tens to hundreds of fT, a few pT/m
    g = np.abs(lf.normal_gain()) * 10e-9
    mags = np.array([t == "mag" for t in array.ch_types])
    assert 2e-14 < g[mags].max() < 2e-12 and 1e-13 < g[~mags].max() < 1e-10


def test_meg_refuses_bad_geometry():
    sources = template_source_space("ico4").subset(np.arange(0, 5124, 200))
    array = generic_meg_array()
    sphere = SphereHead()
    with pytest.raises(FrameError, match="'device'.*'template' is needed"):
        make_leadfield(sources, array.with_dev_head_t(None), sphere, use_cache=False)
    # a wrong device->head transform (helmet 8 cm too low) puts sensors inside the skull
    wrong = generic_meg_array().with_dev_head_t(
        Transform.from_rotation_translation("device", "template", np.eye(3), [0.0, -0.02, -0.08])
    )
    with pytest.raises(ForwardError, match="inside 'inner_skull'.*device->head transform"):
        make_leadfield(sources, wrong, sphere, use_cache=False)
    outside = SourceSpace(
        np.vstack([sources.positions_m, [[0.0, 0.0, 0.12]]]),
        np.vstack([sources.normals, [[0, 0, 1.0]]]),
        np.zeros(sources.n_sources + 1),
        np.full(sources.n_sources + 1, -1),
        Frame.TEMPLATE,
    )
    with pytest.raises(ForwardError, match=rf"outside 'inner_skull'; the worst is source {sources.n_sources} at \(0, 0, 120\) mm"):
        make_leadfield(outside, array, sphere, use_cache=False)
    origin, _ = meg_sphere_origin(load_template().surfaces.inner_skull)
    at_origin = SourceSpace(origin[None], [[0, 0, 1.0]], [0.0], [-1], Frame.TEMPLATE)
    with pytest.raises(ForwardError, match="within 0.1 mm of the MEG sphere origin"):
        make_leadfield(at_origin, array, sphere, use_cache=False)
    to_head = Transform.identity("template", "head")
    in_head = sources.transformed(to_head), array.to_head().transformed(to_head)
    with pytest.raises(ForwardError, match="check_inside=True needs the inner skull"):
        make_leadfield(*in_head, sphere, use_cache=False)
    with pytest.raises(ForwardError, match="no sphere origin for sources in the 'head' frame"):
        make_leadfield(*in_head, SphereHead(check_inside=False), use_cache=False)
    assert make_leadfield(*in_head, SphereHead(check_inside=False, meg_origin_m=origin), use_cache=False).leadfield.gain.shape[0] == 306
    with pytest.raises(FrameError, match="the BEM model.*the source space"):
        make_leadfield(*in_head, BemHead(load_template(3).surfaces), use_cache=False)


# ---------------------------------------------------------------- stacking parts by hand


def test_concatenate_eeg_and_meg():
    from rtsource.sensors.montage import standard_montage

    sources = template_source_space("ico4").subset(np.arange(0, 5124, 300))
    template = load_template()
    montage = standard_montage("standard_1020")
    head = SphereHead(sphere_model_for_template(template, (0.9, 0.92, 0.97, 1.0), (0.33, 1.0, 0.004, 0.33)))
    eeg = make_leadfield(sources, montage, head, use_cache=False)
    meg = make_leadfield(sources, generic_meg_array().pick(["MEG001G1", "MEG001M"]), head, use_cache=False)
    both = concatenate_leadfields([eeg, meg])
    types = both.ch_types
    assert both.leadfield.gain.shape == (len(eeg.leadfield.ch_names) + 2, 3 * sources.n_sources)
    assert types[-2:] == ("grad", "mag") and types[0] == "eeg"
    assert np.array_equal(both.leadfield.gain[-2:], meg.leadfield.gain)
    other = make_leadfield(sources.subset([0, 1]), generic_meg_array().pick(["MEG001M"]), head, use_cache=False)
    with pytest.raises(ForwardError, match="other sources"):
        concatenate_leadfields([eeg, other])
    with pytest.raises(ForwardError, match="occur in more than one lead field"):
        concatenate_leadfields([eeg, eeg])
    with pytest.raises(ForwardError, match="2 ch_types"):
        SensorLeadField(meg.leadfield, ("mag", "mag"), ("T",))


# ---------------------------------------------------------------- typed inputs


def test_head_models_and_sensor_sets_refuse_bad_values(small_head):
    model, montage, sources, shells, array = small_head
    with pytest.raises(ForwardError, match="2 conductivities for 3 surfaces"):
        BemHead(model.surfaces, (0.3, 0.3))
    with pytest.raises(ForwardError, match=r"surfaces\[1\] must be a rtsource.geometry.Mesh"):
        BemHead((model.surfaces[0], "skull.surf"), (0.3, 0.006))
    with pytest.raises(ForwardError, match="max_electrode_distance_m = -1"):
        BemHead(model.surfaces, SIGMA, max_electrode_distance_m=-1)
    with pytest.raises(ForwardError, match="rtol = 2"):
        SphereHead(shells, rtol=2)
    with pytest.raises(ForwardError, match="meg_origin_m must be 3 finite numbers"):
        SphereHead(meg_origin_m=[0, 0])
    with pytest.raises(ForwardError, match="shells must be a SphereModel"):
        SphereHead(model)
    with pytest.raises(ForwardError, match="SensorSet needs"):
        SensorSet()
    with pytest.raises(ForwardError, match="sensors must be a Montage"):
        make_leadfield(sources, montage.electrodes, SphereHead(shells))
    with pytest.raises(ForwardError, match="head_model must be a SphereHead or a BemHead"):
        make_leadfield(sources, montage, shells)
    with pytest.raises(ForwardError, match="sources must be"):
        make_leadfield(sources.positions_m, montage, SphereHead(shells))
    head = BemHead(model.surfaces, SIGMA)
    assert head.frame == Frame.TEMPLATE and head.inner_skull is model.surfaces[-1]
    assert head.eeg_model() is head.eeg_model() and head.meg_model().n_layers == 1
    assert BemHead.from_model(model).eeg_model() is model


def test_no_module_outside_forward_calls_a_method_directly():
    """Every lead field rtsource computes comes from make_leadfield (tests and tools may
    call the per-method functions, the package may not)."""
    methods = {"eeg_sphere_leadfield", "eeg_bem_leadfield", "openmeeg_eeg_leadfield", "meg_sphere_leadfield", "meg_bem_leadfield", "meg_bem_field", "solve_bem", "solve_openmeeg"}
    root = Path(rtsource.__file__).parent
    found = []
    for path in root.rglob("*.py"):
        if path.relative_to(root).parts[0] == "forward":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                found += [f"{path.relative_to(root)}: {a.name}" for a in node.names if a.name in methods]
    assert not found, found
