"""BEM head models: nested closed surfaces and the conductivity of each compartment.

Surfaces are ordered outermost first (scalp, outer skull, inner skull), as
:meth:`rtsource.anatomy.template.HeadModelSurfaces.as_tuple` returns them, and
``conductivities[k]`` is the conductivity (S/m) of the compartment just inside surface k
(scalp tissue, skull, brain). Sources must lie inside the innermost surface
(:func:`check_sources_inside`). Any number of layers is allowed (e.g. a CSF layer between
brain and skull); :func:`rtsource.forward.bem.solve_bem` chooses where the isolated problem
approach applies. Radii, wherever rtsource takes them (:func:`concentric_sphere_model`,
:class:`rtsource.forward.sphere.SphereModel`, the config's ``relative_radii``), go innermost
first and descending radii are refused; meshes and their conductivities go outermost first,
as the anatomy returns them, and a wrong mesh order fails the nesting check. A one-surface
model (the inner skull) is the homogeneous conductor MEG needs (Hamalainen & Sarvas 1989,
IEEE TBME 36:165).
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...arrays import frozen as _readonly
from ...errors import ForwardError, GeometryError
from ...geometry import Frame, Mesh, check_nested, check_same_frame, signed_distance
from ...geometry.icosphere import icosphere
from ...geometry.intersect import check_no_crossing, check_self_intersection
from ..positions import format_mm, list_distances

__all__ = ["DEFAULT_CONDUCTIVITIES", "SHARP_DROP_RATIO", "BemModel", "inner_skull_index", "bem_model_from_surfaces", "check_sources_inside", "concentric_sphere_model"]

#: Template conductivities in S/m, outermost compartment first: scalp, skull, brain.
#: 0.33 for scalp and brain and a brain:skull ratio of about 80 (0.0042), the 3-shell
#: default of FieldTrip and the classic ratio of Rush & Driscoll (1968, IEEE TBME 15:8).
DEFAULT_CONDUCTIVITIES = (0.33, 0.0042, 0.33)


#: A surface where the conductivity drops at least this much outwards (sigma_out/sigma_in <=
#: 0.1) is a skull boundary: the EEG BEM applies the isolated problem approach there
#: (Hamalainen & Sarvas 1989) and MEG's single-layer model uses it.
SHARP_DROP_RATIO = 0.1


def inner_skull_index(conductivities: Sequence[float]) -> int:
    """Index of the inner skull among surfaces ordered outermost first.

    The innermost surface at which the conductivity drops by ``SHARP_DROP_RATIO`` or more
    outwards (with a CSF layer: the CSF/skull boundary, not the brain/CSF surface inside
    it); without such a drop, the innermost surface.

    Parameters
    ----------
    conductivities : sequence of float, shape (n_surfaces,)
        S/m just inside each surface, outermost first.
    """
    sig = [float(x) for x in conductivities]
    drops = [k for k in range(1, len(sig)) if sig[k - 1] <= SHARP_DROP_RATIO * sig[k]]
    return drops[-1] if drops else len(sig) - 1


@dataclass(frozen=True, eq=False)
class BemModel:
    """Nested closed surfaces with the conductivity inside each, validated on construction.

    Parameters
    ----------
    surfaces : sequence of Mesh
        Outermost first (e.g. scalp, outer skull, inner skull; or the inner skull alone for
        MEG). Stored in metres. All in one frame.
    conductivities : sequence of float, shape (n_surfaces,)
        S/m of the compartment just inside each surface, outermost first (scalp tissue,
        skull, brain for three layers). Adjacent compartments must differ.
    check_intersections : bool
        Run the triangle-level self-intersection and crossing checks (about 0.1 s per
        2562-vertex surface). Disable only for surfaces checked before.

    Attributes
    ----------
    frame : Frame
        The surfaces' common frame.

    Raises
    ------
    GeometryError
        A surface is open, inverted, degenerate, self-intersecting, not nested inside the
        previous one, or crosses it (the message names the surface and where).
    ForwardError
        Bad conductivities.
    FrameError
        Surfaces in different frames.
    """

    surfaces: tuple[Mesh, ...]
    conductivities: np.ndarray
    check_intersections: bool = True
    frame: Frame = field(init=False)

    def __post_init__(self) -> None:
        surfaces = tuple(self.surfaces) if not isinstance(self.surfaces, Mesh) else (self.surfaces,)
        if not surfaces:
            raise GeometryError("a BEM model needs at least one surface (the inner skull for MEG; scalp, outer skull, inner skull for EEG)")
        for k, s in enumerate(surfaces):
            if not isinstance(s, Mesh):
                raise GeometryError(f"BEM surface {k} must be a rtsource.geometry.Mesh, got {type(s).__name__}")
        for s in surfaces[1:]:
            check_same_frame(surfaces[0].frame, s.frame, f"BEM surface {surfaces[0].name!r}", f"BEM surface {s.name!r}")
        surfaces = tuple(s if s.unit == "m" else s.to_unit("m") for s in surfaces)
        try:
            sig = np.atleast_1d(np.array(self.conductivities, dtype=float))
        except (TypeError, ValueError):
            raise ForwardError(f"conductivities must be numbers in S/m, got {self.conductivities!r}") from None
        if sig.shape != (len(surfaces),):
            raise ForwardError(
                f"{sig.size} conductivities for {len(surfaces)} surfaces "
                f"({', '.join(s.name for s in surfaces)}); give one S/m value per compartment, "
                f"outermost first, e.g. {DEFAULT_CONDUCTIVITIES} for scalp, skull, brain"
            )
        for k, x in enumerate(sig):
            if not (math.isfinite(x) and x > 0):
                raise ForwardError(
                    f"conductivities[{k}] = {float(x)!r} (inside {surfaces[k].name!r}) must be a positive "
                    f"number of S/m, e.g. 0.33 for scalp and brain, 0.0042 for skull"
                )
        for k in range(1, len(sig)):
            if sig[k] == sig[k - 1]:
                raise ForwardError(
                    f"conductivities[{k - 1}] = conductivities[{k}] = {float(sig[k])!r}: surface "
                    f"{surfaces[k].name!r} separates equal conductivities and adds nothing; drop it"
                )
        for s in surfaces:
            s.check_closed()
            area = s.triangle_areas()
            if np.any(area <= 1e-12 * area.max()):
                i = int(np.argmin(area))
                raise GeometryError(
                    f"mesh {s.name!r} has {int((area <= 1e-12 * area.max()).sum())} degenerate "
                    f"(zero-area) triangles, the first is triangle {i} near "
                    f"{format_mm(s.vertices_m[s.triangles[i]].mean(axis=0))}; remesh the surface"
                )
            if self.check_intersections:
                check_self_intersection(s)
        for k, (outer, inner) in enumerate(itertools.pairwise(surfaces)):
            try:
                check_nested(inner, outer)
            except GeometryError:
                _refuse_inner_first(k, outer, inner)
                raise
            if self.check_intersections:
                check_no_crossing(inner, outer)
        object.__setattr__(self, "surfaces", surfaces)
        object.__setattr__(self, "conductivities", _readonly(sig))
        object.__setattr__(self, "frame", surfaces[0].frame)

    @property
    def n_layers(self) -> int:
        return len(self.surfaces)

    @property
    def n_vertices(self) -> tuple[int, ...]:
        return tuple(len(s.vertices) for s in self.surfaces)

    @property
    def outer(self) -> Mesh:
        """The outermost surface (the scalp of an EEG model)."""
        return self.surfaces[0]

    @property
    def inner(self) -> Mesh:
        """The innermost surface (the inner skull); sources must lie inside it."""
        return self.surfaces[-1]

    def sigma_in_out(self) -> tuple[np.ndarray, np.ndarray]:
        """Conductivity just inside and just outside each surface, S/m (air outside = 0)."""
        sig_in = np.asarray(self.conductivities, float)
        sig_out = np.r_[0.0, sig_in[:-1]]
        return sig_in, sig_out

    def hash(self) -> str:
        """Hex digest of the meshes (vertices in m, triangles) and conductivities."""
        h = hashlib.sha256()
        h.update(f"rtsource-bem-model|{len(self.surfaces)}|".encode())
        for s in self.surfaces:
            h.update(np.ascontiguousarray(s.vertices_m, dtype="<f8").tobytes())
            h.update(np.ascontiguousarray(s.triangles, dtype="<i8").tobytes())
            h.update(b"|")
        h.update(np.ascontiguousarray(self.conductivities, dtype="<f8").tobytes())
        return h.hexdigest()

    def describe(self) -> dict[str, Any]:
        return {
            "surfaces": [s.name for s in self.surfaces],
            "n_vertices": list(self.n_vertices),
            "conductivities_s_per_m": [float(x) for x in self.conductivities],
            "frame": self.frame.value,
        }


def _refuse_inner_first(k: int, outer: Mesh, inner: Mesh) -> None:
    """Raise a clear error if surfaces k, k + 1 are nested the other way round."""
    try:
        check_nested(outer, inner)
    except GeometryError:
        return
    raise GeometryError(
        f"surfaces are not nested in the expected order: BEM surfaces go outermost first (scalp, "
        f"outer skull, inner skull), but surface {k} "
        f"{outer.name!r} lies inside surface {k + 1} {inner.name!r}; reverse the surfaces and the "
        f"conductivities (rtsource never reverses them silently)"
    )


def bem_model_from_surfaces(surfaces, conductivities=DEFAULT_CONDUCTIVITIES, *, layers: int | None = None) -> BemModel:
    """A BEM model from head surfaces (e.g. ``load_template(4).surfaces``).

    Parameters
    ----------
    surfaces : HeadModelSurfaces or sequence of Mesh
        Anything with ``as_tuple()`` (scalp, outer skull, inner skull) or the meshes
        themselves, outermost first.
    conductivities : sequence of float
        S/m per compartment, outermost first; with ``layers=1`` a single value (brain) or
        the full sequence (its last value is used).
    layers : {None, 1}
        1 keeps only the inner skull (:func:`inner_skull_index`; the innermost surface of
        a 3-layer head) with its conductivity: the single-layer model for MEG.
    """
    meshes = tuple(surfaces.as_tuple()) if hasattr(surfaces, "as_tuple") else tuple(surfaces)
    sig = np.atleast_1d(np.asarray(conductivities, dtype=float))
    if layers == 1:
        # with one value per surface the inner skull is known; a single value goes with the innermost
        k = inner_skull_index(sig) if len(sig) == len(meshes) else len(meshes) - 1
        meshes = meshes[k : k + 1]
        sig = sig[k : k + 1] if len(sig) > 1 else sig
    elif layers is not None:
        raise ForwardError(f"layers = {layers!r}: use None (all surfaces) or 1 (inner skull only, for MEG)")
    return BemModel(meshes, sig)


def concentric_sphere_model(
    radii_m: Sequence[float] = (0.081, 0.085, 0.090),
    conductivities: Sequence[float] = (0.3, 0.006, 0.3),
    *,
    order: int = 4,
    center_m=(0.0, 0.0, 0.0),
    frame: Frame | str = Frame.HEAD,
    names: Sequence[str] | None = None,
) -> BemModel:
    """Concentric icosphere surfaces (for validation against the analytic series).

    Radii and conductivities are given innermost first, as
    :class:`rtsource.forward.sphere.SphereModel` takes them, so one pair of tuples describes
    both the analytic model and its BEM; the returned :class:`BemModel` holds them
    outermost first, as it holds every head's surfaces.

    Parameters
    ----------
    radii_m : sequence of float, shape (n_layers,)
        Radii, innermost first (strictly ascending), metres (default 81/85/90 mm: inner
        skull, outer skull, scalp). Descending radii are refused, not reversed.
    conductivities : sequence of float, shape (n_layers,)
        S/m of each shell, innermost first: ``conductivities[k]`` fills the region between
        ``radii_m[k - 1]`` and ``radii_m[k]`` (brain, [CSF], skull, scalp).
    order : int
        Icosphere order: 3 gives 642 vertices per surface, 4 gives 2562.
    center_m : array-like, shape (3,)
    frame : Frame or str
    names : sequence of str, optional
        Surface names, innermost first (default: inner_skull, outer_skull, scalp for three
        radii; brain, inner_skull, outer_skull, scalp for four; surface0, surface1, ...
        otherwise).

    Raises
    ------
    ForwardError
        Radii not strictly ascending (the message gives them in the expected order), or
        a conductivity count that differs from the radii's.
    """
    try:
        radii = [float(r) for r in np.atleast_1d(np.asarray(radii_m, dtype=float))]
        sig = [float(x) for x in np.atleast_1d(np.asarray(conductivities, dtype=float))]
    except (TypeError, ValueError):
        raise ForwardError(f"radii_m and conductivities must be numbers (m, S/m), got {radii_m!r} and {conductivities!r}") from None
    if len(sig) != len(radii):
        raise ForwardError(
            f"concentric_sphere_model: {len(radii)} radii_m but {len(sig)} conductivities; give one S/m value per "
            f"shell, innermost first like the radii"
        )
    if any(b <= a for a, b in itertools.pairwise(radii)):
        raise ForwardError(
            f"concentric_sphere_model radii_m = {tuple(radii)} must be strictly ascending (innermost first, as "
            f"SphereModel and the [forward] relative_radii); for these shells pass radii_m = {tuple(sorted(radii))} "
            f"with the conductivities in the same innermost-first order"
        )
    if names is None:
        default = {
            1: ("inner_skull",),
            2: ("inner_skull", "outer"),
            3: ("inner_skull", "outer_skull", "scalp"),
            4: ("brain", "inner_skull", "outer_skull", "scalp"),
        }
        names = default.get(len(radii), tuple(f"surface{k}" for k in range(len(radii))))
    if len(names) != len(radii):
        raise ForwardError(f"concentric_sphere_model: {len(names)} names for {len(radii)} radii; give one name per surface, innermost first")
    v, t = icosphere(order)
    c = np.asarray(center_m, dtype=float)
    meshes = tuple(Mesh(c + r * v, t, frame, "m", str(n)) for r, n in zip(radii, names))
    return BemModel(meshes[::-1], sig[::-1])


def check_sources_inside(dipoles: np.ndarray, model: BemModel, memo: dict | None = None) -> np.ndarray:
    """Depth (m, positive inside) of each dipole in the innermost surface; refuses others.

    Parameters
    ----------
    dipoles : ndarray, shape (n_dipoles, 3)
        Dipole positions in metres, in the model's frame.
    model : BemModel
    memo : dict, optional
        A solution's private dict that remembers the last source set checked, so callers
        that evaluate one source space in several sensor groups pay for the check once.

    Returns
    -------
    ndarray, shape (n_dipoles,)
        Distance of each dipole inside the innermost surface, metres (> 0).

    Raises
    ------
    ForwardError
        Dipoles on or outside the innermost surface, listing which and how far.
    """
    if len(dipoles) == 0:
        return np.zeros(0)
    key = None
    if memo is not None:
        key = hashlib.sha1(np.ascontiguousarray(dipoles).tobytes()).hexdigest()
        if memo.get("key") == key:
            return memo["depth"]
    depth = -signed_distance(dipoles, model.inner)
    out = np.flatnonzero(depth <= 0)
    if out.size:
        raise ForwardError(
            f"{out.size} of {len(dipoles)} dipoles are on or outside the innermost BEM surface "
            f"{model.inner.name!r} (dipole and distance outside: {list_distances(out, -depth)}); the "
            f"first, dipoles_m[{int(out[0])}], is at {format_mm(dipoles[out[0]])}. Sources must lie "
            f"inside {model.inner.name!r}: use a source space inside it (e.g. the white-matter "
            f"surface), a finer BEM surface, or move those sources inwards"
        )
    if memo is not None:
        memo.clear()
        memo.update(key=key, depth=depth)
    return depth
