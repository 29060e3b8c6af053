"""The lead field: one entry point from sensors, sources and a head model to the gain matrix.

    make_leadfield(sources, sensors, head_model)            -> SensorLeadField
        sensors     Montage (EEG), MegArray (MEG), or SensorSet(eeg=..., meg=...)
        head_model  SphereHead  EEG: concentric-sphere series    MEG: Sarvas' sphere
                    BemHead     EEG: rtsource's BEM or OpenMEEG   MEG: single-layer BEM

Every lead field rtsource uses comes from :func:`make_leadfield`: it checks frames and
counts, picks the method for each sensor kind from the head model (the table ``_METHODS``
is the only place that choice is made), caches each kind's part on disk
(:mod:`rtsource.forward.leadfield_cache`) and stacks the parts, EEG rows first. The methods
themselves are plain functions of positions in their own modules
(:func:`rtsource.forward.sphere.eeg_sphere_leadfield`,
:func:`rtsource.forward.bem.eeg_bem_leadfield`,
:func:`rtsource.forward.openmeeg_backend.openmeeg_eeg_leadfield`,
:func:`rtsource.forward.meg_sphere.meg_sphere_leadfield`,
:func:`rtsource.forward.bem.meg_bem_leadfield`).

A MEG array that carries a gradient compensation (CTF synthetic gradiometers) gets the
gain ``G - C G_ref`` of its compensated channels (:func:`_compensated`), as MNE-Python.

The gain is stored against infinity (un-referenced). EEG potentials are differences, so the
inverse re-references the gain with the same matrix M as the data (average reference, or
"minus the reference channel"; ``rtsource.inverse.reference.reference_matrix``), which
keeps data and model treated exactly alike.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import __version__
from ..anatomy.source_space import SourceSpace
from ..errors import ForwardError
from ..geometry import Frame, Mesh, check_same_frame, signed_distance
from ..sensors.meg import MegArray
from ..sensors.montage import Montage
from .head_model import BemHead, HeadModel, SphereHead
from .leadfield_cache import leadfield_key, load_leadfield, store_leadfield

logger = logging.getLogger(__name__)

__all__ = ["LeadField", "SensorLeadField", "SensorSet", "concatenate_leadfields", "make_leadfield"]


# ---- what a lead field is ---------------------------------------------------------------


@dataclass(frozen=True)
class LeadField:
    """A gain matrix with what it was computed for.

    Attributes
    ----------
    gain : ndarray, shape (n_channels, 3 * n_sources)
        Against infinity (un-referenced): V (EEG), T or T/m (MEG) per A*m; columns
        dipole-major x, y, z.
    ch_names : tuple of str
    channel_positions_m : ndarray, shape (n_channels, 3)
    sources : SourceSpace
    model : Mapping
        Description of the head model and method (kind, centre, radii, conductivities,
        timings), recorded in the bundle's provenance.
    terms : ndarray of int, shape (n_sources,)
        Series terms used per source (sphere models).
    """

    gain: np.ndarray
    ch_names: tuple[str, ...]
    channel_positions_m: np.ndarray
    sources: SourceSpace
    model: Mapping[str, Any] = field(default_factory=dict)
    terms: np.ndarray | None = None

    def normal_gain(self) -> np.ndarray:
        """Gain of dipoles along the surface normals, shape (n_channels, n_sources)."""
        g = self.gain.reshape(len(self.ch_names), -1, 3)
        return np.einsum("csk,sk->cs", g, self.sources.normals)


@dataclass(frozen=True)
class SensorLeadField:
    """A lead field with the kind and SI unit of every row (what the inverse needs).

    Attributes
    ----------
    leadfield : LeadField
    ch_types : tuple of str, length n_channels
        Whitening group per row: ``"eeg"``, ``"mag"``, ``"grad"``.
    ch_units : tuple of str, length n_channels
        ``"V"``, ``"T"``, ``"T/m"``.
    """

    leadfield: LeadField
    ch_types: tuple[str, ...]
    ch_units: tuple[str, ...]

    def __post_init__(self) -> None:
        n = len(self.leadfield.ch_names)
        if len(self.ch_types) != n or len(self.ch_units) != n:
            raise ForwardError(
                f"SensorLeadField has {n} channels but {len(self.ch_types)} ch_types and {len(self.ch_units)} "
                f"ch_units; give one type and one unit per channel"
            )


@dataclass(frozen=True, eq=False)
class SensorSet:
    """The sensors of one lead field: EEG electrodes, a MEG array, or both.

    Parameters
    ----------
    eeg : Montage, optional
        Electrode positions (metres, in the sources' frame).
    meg : MegArray, optional
        MEG coils; moved into the sources' frame by their ``dev_head_t`` when they are in
        DEVICE.
    eeg_provenance : Mapping, optional
        Where the electrode positions came from (montage name, coregistration transform
        and QC); recorded as ``model["electrodes"]`` of the EEG part, not part of the cache
        key.
    """

    eeg: Montage | None = None
    meg: MegArray | None = None
    eeg_provenance: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.eeg is None and self.meg is None:
            raise ForwardError("SensorSet needs EEG electrodes (eeg=Montage), a MEG array (meg=MegArray) or both")
        if self.eeg is not None and not isinstance(self.eeg, Montage):
            raise ForwardError(f"SensorSet eeg must be a rtsource.sensors.montage.Montage, got {type(self.eeg).__name__}")
        if self.meg is not None and not isinstance(self.meg, MegArray):
            raise ForwardError(f"SensorSet meg must be a rtsource.sensors.meg.MegArray, got {type(self.meg).__name__}")

    @classmethod
    def of(cls, sensors: Montage | MegArray | SensorSet) -> SensorSet:
        """``sensors`` as a SensorSet (a Montage is EEG, a MegArray MEG)."""
        if isinstance(sensors, SensorSet):
            return sensors
        if isinstance(sensors, Montage):
            return cls(eeg=sensors)
        if isinstance(sensors, MegArray):
            return cls(meg=sensors)
        raise ForwardError(
            f"sensors must be a Montage (EEG), a MegArray (MEG) or a SensorSet(eeg=..., meg=...), got {type(sensors).__name__}"
        )


# ---- the entry point --------------------------------------------------------------------


def make_leadfield(
    sources: SourceSpace,
    sensors: Montage | MegArray | SensorSet,
    head_model: HeadModel,
    *,
    use_cache: bool = True,
) -> SensorLeadField:
    """The lead field of ``sources`` at ``sensors`` in ``head_model``: EEG, MEG or both.

    Parameters
    ----------
    sources : SourceSpace
        Dipole positions (metres) and normals.
    sensors : Montage, MegArray or SensorSet
        EEG electrodes, MEG coils, or both (rows: EEG first, then MEG).
    head_model : SphereHead or BemHead
        The conductor and the method (see :mod:`rtsource.forward.head_model`).
    use_cache : bool
        Read and write the disk caches: each sensor kind's lead field, and the BEM or
        OpenMEEG solution (``rtsource.cache.cache_dir()``).

    Returns
    -------
    SensorLeadField
        ``leadfield.gain`` of shape (n_channels, 3 * n_sources) against infinity, columns
        dipole-major; ``leadfield.model`` describes the method (with both sensor kinds:
        ``{"kind": "combined", "parts": [eeg, meg]}``); ``ch_types`` and ``ch_units`` per row.

    Raises
    ------
    FrameError
        Sensors, sources and head model in different frames (MEG arrays in DEVICE are moved
        by their carried transform first).
    ForwardError
        Fewer than 3 electrodes, sources outside the conductor (or at the MEG sphere
        origin), sensors inside it, MEG with OpenMEEG, a series that did not converge.
    """
    if not isinstance(sources, SourceSpace):
        raise ForwardError(f"sources must be a rtsource.anatomy.source_space.SourceSpace, got {type(sources).__name__}")
    sensor_set = SensorSet.of(sensors)
    if not isinstance(head_model, (SphereHead, BemHead)):
        raise ForwardError(
            f"head_model must be a SphereHead or a BemHead (rtsource.forward.head_model), got {type(head_model).__name__}"
        )
    parts = []
    if sensor_set.eeg is not None:
        parts.append(_eeg_part(sensor_set.eeg, sources, head_model, sensor_set.eeg_provenance, use_cache))
    if sensor_set.meg is not None:
        parts.append(_meg_part(sensor_set.meg, sources, head_model, use_cache))
    return parts[0] if len(parts) == 1 else concatenate_leadfields(parts)


def concatenate_leadfields(parts: Sequence[SensorLeadField]) -> SensorLeadField:
    """Stack lead fields of different sensor kinds (EEG + MEG) computed for the same sources.

    Parameters
    ----------
    parts : sequence of SensorLeadField
        Same source space (same positions and frame), different channels.

    Returns
    -------
    SensorLeadField
        Rows stacked in the given order; ``leadfield.model`` holds the parts' models under
        ``"parts"``.
    """
    if not parts:
        raise ForwardError("concatenate_leadfields needs at least one lead field")
    first = parts[0].leadfield
    names: list[str] = []
    for i, part in enumerate(parts):
        lf = part.leadfield
        if lf.sources.frame != first.sources.frame or lf.sources.positions_m.shape != first.sources.positions_m.shape or not np.array_equal(
            lf.sources.positions_m, first.sources.positions_m
        ):
            raise ForwardError(
                f"lead field {i} ({lf.model.get('kind', '?')}) was computed for other sources than lead field 0 "
                f"({lf.sources.name!r} vs {first.sources.name!r}); compute all parts on one source space"
            )
        names += list(lf.ch_names)
    dup = sorted({x for x in names if names.count(x) > 1})
    if dup:
        raise ForwardError(f"channel names {dup[:10]} occur in more than one lead field; rename one sensor set")
    gain = np.vstack([p.leadfield.gain for p in parts])
    pos = np.vstack([p.leadfield.channel_positions_m for p in parts])
    model = {"kind": "combined", "parts": [dict(p.leadfield.model) for p in parts]}
    lf = LeadField(gain, tuple(names), pos, first.sources, model, None)
    return SensorLeadField(lf, tuple(t for p in parts for t in p.ch_types), tuple(u for p in parts for u in p.ch_units))


def _cached(key: str, compute: Callable[[], LeadField], ch_names, positions_m, sources: SourceSpace, use_cache: bool) -> LeadField:
    hit = load_leadfield(key, (len(ch_names), 3 * sources.n_sources)) if use_cache else None
    if hit is not None:
        return LeadField(hit[0], tuple(ch_names), positions_m, sources, hit[1])
    t0 = time.perf_counter()
    lf = compute()
    logger.info("lead field %s computed in %.2f s", lf.gain.shape, time.perf_counter() - t0)
    if use_cache:
        store_leadfield(key, lf.gain, lf.model)
    return lf


def _surfaces_key(surfaces: Sequence[Mesh]) -> list:
    return [a for s in surfaces for a in (s.vertices_m, s.triangles)]


# ---- EEG --------------------------------------------------------------------------------


def _eeg_part(montage: Montage, sources: SourceSpace, head: HeadModel, provenance, use_cache: bool) -> SensorLeadField:
    check_same_frame(montage.frame, sources.frame, "the electrodes", "the source space")
    elec = montage.electrodes.positions_m
    if len(elec) < 3:
        raise ForwardError(f"need at least 3 electrodes for an EEG forward model, got {len(elec)}")
    common = (__version__, elec, list(montage.labels), sources.positions_m, sources.name)
    if isinstance(head, SphereHead):
        s = head.shells
        if s is None:
            raise ForwardError(
                "EEG in a SphereHead needs its shells (centre, radii, conductivities): pass "
                "SphereHead(shells=make_sphere_model(...)) or sphere_model_for_template(template, ...)"
            )
        check_same_frame(montage.frame, s.frame, "the electrodes", "the head model")
        key = leadfield_key("eeg-sphere", *common, s.center_m, s.radii_m, s.conductivities, head.rtol, head.max_inward_shift_m)
    else:
        from .bem.solve import FORMAT_VERSION

        check_same_frame(montage.frame, head.frame, "the electrodes", "the BEM model")
        key = leadfield_key(
            f"eeg-{head.method}", *common, FORMAT_VERSION, *_surfaces_key(head.surfaces), list(head.conductivities), head.max_electrode_distance_m
        )
    method = _METHODS[("eeg", head.method)]
    lf = _cached(key, lambda: method(montage, sources, head, use_cache), montage.labels, elec, sources, use_cache)
    if provenance is not None:
        lf = dataclasses.replace(lf, model={**lf.model, "electrodes": dict(provenance)})
    n = len(lf.ch_names)
    return SensorLeadField(lf, ("eeg",) * n, ("V",) * n)


def _eeg_sphere(montage: Montage, sources: SourceSpace, head: SphereHead, use_cache: bool) -> LeadField:
    """EEG in concentric spheres, with sources just outside the inner shell shifted inward.

    A sphere fitted to a real scalp does not enclose every cortical vertex inside its brain
    shell. Sources at most ``head.max_inward_shift_m`` outside that shell are evaluated
    0.5 mm inside it, along their radius; how many and by how much is logged and recorded
    in ``LeadField.model``. Sources further out are an error: the model cannot represent them.
    """
    from .sphere import eeg_sphere_leadfield

    model = head.shells
    elec = montage.electrodes.positions_m
    pos = sources.positions_m.copy()
    rel = pos - model.center_m
    r = np.linalg.norm(rel, axis=1)
    limit = model.radii_m[0] - 0.5e-3
    shift = (r > limit) & (r <= model.radii_m[0] + head.max_inward_shift_m)
    if shift.any():
        pos[shift] = model.center_m + rel[shift] * (limit / r[shift])[:, None]
        logger.warning(
            "%d of %d sources lie up to %.2f mm outside the innermost sphere (r = %.1f mm); evaluated 0.5 mm inside it",
            int(shift.sum()), len(pos), float((r[shift] - limit).max()) * 1e3, model.radii_m[0] * 1e3,
        )  # fmt: skip
    gain, report = eeg_sphere_leadfield(elec, pos, model, rtol=head.rtol)
    logger.info(
        "sphere lead field %d x %d: series terms %d..%d (eccentricity up to %.3f)",
        gain.shape[0], gain.shape[1], int(report.n_terms.min()), int(report.n_terms.max()), float(report.eccentricity.max()),
    )  # fmt: skip
    desc = {
        "kind": "eeg_sphere_series",
        "frame": model.frame.value,
        "center_m": np.asarray(model.center_m).tolist(),
        "radii_m": np.asarray(model.radii_m).tolist(),
        "conductivities_s_per_m": np.asarray(model.conductivities).tolist(),
        "rtol": head.rtol,
        "max_terms": int(report.n_terms.max()),
        "sources_shifted_inward": int(shift.sum()),
        "max_inward_shift_mm": round(float((r[shift] - limit).max()) * 1e3, 3) if shift.any() else 0.0,
    }
    return LeadField(gain, montage.labels, elec, sources, desc, report.n_terms)


def _eeg_bem(montage: Montage, sources: SourceSpace, head: BemHead, use_cache: bool) -> LeadField:
    """EEG in rtsource's BEM: the (cached) solution, applied at the projected electrodes."""
    from .bem.eeg import eeg_bem_leadfield
    from .bem.solve import solve_bem

    model = head.eeg_model()
    t0 = time.perf_counter()
    sol = solve_bem(model, use_cache=use_cache)
    gain, report = eeg_bem_leadfield(
        sol, montage.electrodes.positions_m, sources.positions_m, max_electrode_distance_m=head.max_electrode_distance_m, electrode_labels=montage.labels
    )
    desc = {
        "kind": "eeg_bem",
        "approach": sol.approach,
        "solution_key": sol.key,
        "solution_cached": bool(sol.info.get("cached")),
        "max_electrode_projection_mm": round(float(report.electrode_distances_m.max()) * 1e3, 3),
        "min_source_depth_mm": round(float(report.dipole_depths_m.min()) * 1e3, 3) if len(report.dipole_depths_m) else None,
    }
    return _bem_leadfield(gain, desc, model, t0, montage, sources)


def _eeg_openmeeg(montage: Montage, sources: SourceSpace, head: BemHead, use_cache: bool) -> LeadField:
    """EEG in OpenMEEG's symmetric BEM (optional extra), same model and checks as ``_eeg_bem``."""
    from .openmeeg_backend import openmeeg_eeg_leadfield

    model = head.eeg_model()
    t0 = time.perf_counter()
    gain, info = openmeeg_eeg_leadfield(
        model, montage.electrodes.positions_m, sources.positions_m,
        max_electrode_distance_m=head.max_electrode_distance_m, electrode_labels=montage.labels, use_cache=use_cache,
    )  # fmt: skip
    return _bem_leadfield(gain, {"kind": "eeg_bem_openmeeg", **info}, model, t0, montage, sources)


def _bem_leadfield(gain, desc: dict, model, t0: float, montage: Montage, sources: SourceSpace) -> LeadField:
    desc.update(model.describe())
    desc["seconds"] = round(time.perf_counter() - t0, 3)
    logger.info("%s lead field %s in %.2f s", desc["kind"], gain.shape, desc["seconds"])
    return LeadField(gain, montage.labels, montage.electrodes.positions_m, sources, desc, None)


# ---- MEG --------------------------------------------------------------------------------


def _meg_part(array: MegArray, sources: SourceSpace, head: HeadModel, use_cache: bool) -> SensorLeadField:
    if head.method == "openmeeg":
        raise ForwardError(
            "OpenMEEG computes EEG only; for MEG use BemHead(..., method='bem') (single-layer BEM) or a SphereHead"
        )
    arr = array.in_frame(sources.frame)
    skull = head.frame if isinstance(head, BemHead) else head.inner_skull.frame if head.inner_skull is not None else None
    if skull is not None:
        check_same_frame(skull, sources.frame, "the BEM model" if isinstance(head, BemHead) else "the inner skull", "the source space")
    comp = arr.compensation
    comp_key = (
        [] if comp is None else
        [comp.grade, comp.matrix, comp.references.points_m, comp.references.point_normals, comp.references.weights,
         comp.references.point_channel.astype(float)]
    )  # fmt: skip
    common = (
        __version__, arr.points_m, arr.point_normals, arr.weights, arr.point_channel.astype(float), list(arr.ch_names),
        sources.positions_m, sources.name, *comp_key,
    )  # fmt: skip
    if isinstance(head, SphereHead):
        origin = None if head.meg_origin_m is None else np.asarray(head.meg_origin_m).tolist()
        skull = ["template" if sources.frame == Frame.TEMPLATE else None] if head.inner_skull is None else _surfaces_key([head.inner_skull])
        key = leadfield_key("meg-sphere", *common, origin, *skull)
    else:
        from .bem.solve import FORMAT_VERSION

        key = leadfield_key("meg-bem", *common, FORMAT_VERSION, *_surfaces_key([head.inner_skull]), head.conductivities[head.skull_index])
    method = _METHODS[("meg", head.method)]
    lf = _cached(key, lambda: method(arr, sources, head, use_cache), arr.ch_names, arr.positions_m, sources, use_cache)
    return SensorLeadField(lf, tuple(arr.whitening_groups), tuple(arr.ch_units))


def _meg_sphere(arr: MegArray, sources: SourceSpace, head: SphereHead, use_cache: bool) -> LeadField:
    """MEG in a spherical conductor (Sarvas 1987): only the origin matters."""
    from .meg_sphere import MIN_ORIGIN_DISTANCE_M, meg_sphere_leadfield, meg_sphere_origin

    inner_skull = head.inner_skull if head.inner_skull is not None else _template_inner_skull(sources.frame)
    _check_meg_geometry(arr, sources, inner_skull, head.check_inside)
    pos = sources.positions_m
    t0 = time.perf_counter()
    if head.meg_origin_m is None:
        if inner_skull is None:
            raise ForwardError(
                f"no sphere origin for sources in the {sources.frame.value!r} frame: pass SphereHead(meg_origin_m=...) "
                f"(metres) or SphereHead(inner_skull=...) (a Mesh in that frame) to fit one"
            )
        origin, radius = meg_sphere_origin(inner_skull)
        origin_how = f"fitted to {inner_skull.name!r} (radius {radius * 1e3:.1f} mm)"
    else:
        origin = np.asarray(head.meg_origin_m, dtype=float)
        origin_how = "given"
    r = np.linalg.norm(pos - origin, axis=1)
    near = np.flatnonzero(r < MIN_ORIGIN_DISTANCE_M)
    if near.size:
        k = int(near[0])
        raise ForwardError(
            f"{near.size} source(s) lie within {MIN_ORIGIN_DISTANCE_M * 1e3:.1f} mm of the MEG sphere origin "
            f"{_fmt(origin * 1e3)} mm (first: source {k} at {_fmt(pos[k] * 1e3)} mm); a spherical conductor "
            f"hides them completely (zero lead field). Remove them (volume_source_space(exclude_m=...)) "
            f"or move the origin"
        )
    gain = _compensated(arr, lambda a: meg_sphere_leadfield(a, pos, origin))
    desc = {"kind": "meg_sphere_sarvas", "origin_m": origin.tolist(), "origin": origin_how, **_meg_description(arr, sources)}
    return _meg_leadfield(gain, desc, arr, sources, t0)


def _meg_bem(arr: MegArray, sources: SourceSpace, head: BemHead, use_cache: bool) -> LeadField:
    """MEG with the volume currents of a single-layer (inner skull) BEM (Geselowitz 1970)."""
    from .bem.meg import meg_bem_leadfield

    _check_meg_geometry(arr, sources, head.inner_skull, True)
    t0 = time.perf_counter()
    model = head.meg_model()
    gain = _compensated(arr, lambda a: meg_bem_leadfield(model, a, sources.positions_m, use_cache=use_cache))
    desc = {"kind": "meg_bem_single_layer", "bem_surface": model.surfaces[-1].name, **_meg_description(arr, sources)}
    return _meg_leadfield(gain, desc, arr, sources, t0)


def _compensated(arr: MegArray, gain_of: Callable[[MegArray], np.ndarray]) -> np.ndarray:
    """The gain of ``arr`` with its gradient compensation: ``G - C G_ref``.

    The data of a compensated recording are ``s - C s_ref`` (Vrba & Robinson 2001), so the
    forward model is the same combination of the channels' and the references' gains --
    what MNE-Python's ``make_forward_solution`` applies (its compensator ``I - C``).
    """
    gain = gain_of(arr)
    comp = arr.compensation
    if comp is None:
        return gain
    return gain - comp.matrix @ gain_of(comp.references)


def _meg_description(arr: MegArray, sources: SourceSpace) -> dict[str, Any]:
    comp = arr.compensation
    return {
        "coil_types": None if arr.coil_types is None else sorted(set(arr.coil_types)),
        "compensation_grade": 0 if comp is None else comp.grade,
        "n_compensation_references": 0 if comp is None else comp.n_references,
        # C by name, so the stream can convert data recorded at another grade (rtsource.stream.compensation)
        **({} if comp is None else {"compensation": {
            "channels": list(arr.ch_names), "references": list(comp.references.ch_names),
            "reference_units": list(comp.references.ch_units), "matrix": comp.matrix.tolist(),
        }}),
        "frame": sources.frame.value,
        "coil_accuracy": arr.accuracy,
        "n_integration_points": int(arr.n_points),
        "array": arr.name,
        "ch_types": list(arr.ch_types),
        "ch_units": list(arr.ch_units),
        "whitening_groups": list(arr.whitening_groups),
    }


def _meg_leadfield(gain: np.ndarray, desc: dict, arr: MegArray, sources: SourceSpace, t0: float) -> LeadField:
    logger.info(
        "%s lead field %d x %d (%d integration points, accuracy %r) in %.2f s",
        desc["kind"], gain.shape[0], gain.shape[1], arr.n_points, arr.accuracy, time.perf_counter() - t0,
    )  # fmt: skip
    return LeadField(gain, arr.ch_names, arr.positions_m, sources, desc, None)


def _template_inner_skull(frame: Frame) -> Mesh | None:
    if frame != Frame.TEMPLATE:
        return None
    from ..anatomy.template import load_template

    return load_template().surfaces.inner_skull


def _check_meg_geometry(arr: MegArray, sources: SourceSpace, inner_skull: Mesh | None, check_inside: bool) -> None:
    """Sources inside the inner skull and every integration point outside it (same frame)."""
    if not check_inside:
        return
    if inner_skull is None:
        raise ForwardError(
            "check_inside=True needs the inner skull: pass SphereHead(inner_skull=...) (a Mesh in the sources' "
            "frame) or SphereHead(check_inside=False)"
        )
    pos = sources.positions_m
    sd = signed_distance(pos, inner_skull)
    out = np.flatnonzero(sd > 0)
    if out.size:
        k = int(out[np.argmax(sd[out])])
        raise ForwardError(
            f"{out.size} source(s) lie outside {inner_skull.name!r}; the worst is source {k} at "
            f"{_fmt(pos[k] * 1e3)} mm, {sd[k] * 1e3:.1f} mm outside. Check the source space's frame and unit, "
            f"or drop those sources"
        )
    sd = signed_distance(arr.points_m, inner_skull)
    bad = np.flatnonzero(sd <= 0)
    if bad.size:
        i = int(bad[np.argmin(sd[bad])])
        ch = arr.ch_names[arr.point_channel[i]]
        raise ForwardError(
            f"{bad.size} integration point(s) of MEG array {arr.name!r} lie inside {inner_skull.name!r} "
            f"(worst: channel {ch!r}, {-sd[i] * 1e3:.1f} mm inside); the sensors are in the wrong place -- "
            f"check the device->head transform (MegArray.with_dev_head_t)"
        )


def _fmt(v) -> str:
    return "(" + ", ".join(f"{x:.4g}" for x in np.asarray(v, dtype=float)) + ")"


#: The one place the method is chosen: (sensor kind, head_model.method) -> function.
_METHODS: dict[tuple[str, str], Callable[..., LeadField]] = {
    ("eeg", "sphere"): _eeg_sphere,
    ("eeg", "bem"): _eeg_bem,
    ("eeg", "openmeeg"): _eeg_openmeeg,
    ("meg", "sphere"): _meg_sphere,
    ("meg", "bem"): _meg_bem,
}
