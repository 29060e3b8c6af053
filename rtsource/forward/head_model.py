"""Head models for the lead field: the conductor the sources sit in, as small typed values.

:func:`rtsource.forward.leadfield.make_leadfield` dispatches on these:

=============  ==========================================  ==================================
head model     EEG                                         MEG
=============  ==========================================  ==================================
SphereHead     exact concentric-sphere series over         Sarvas (1987): needs only the
               ``shells`` (Zhang 1995;                     origin (default: fitted to the
               :mod:`rtsource.forward.sphere`)             inner skull)
BemHead        rtsource's BEM (``method="bem"``,           single-layer BEM of the inner
               :mod:`rtsource.forward.bem`) or OpenMEEG's  skull (Hamalainen & Sarvas
               symmetric BEM (``method="openmeeg"``)       1989); not with OpenMEEG
=============  ==========================================  ==================================

Both are frozen; a :class:`BemHead` builds (and validates) its :class:`BemModel` only when
a lead field is actually computed, so describing a head and finding its lead field in the
cache stays cheap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..arrays import frozen as _readonly
from ..errors import ForwardError
from ..geometry import Frame, Mesh
from ..geometry.sphere_fit import fit_sphere
from .bem.eeg import MAX_ELECTRODE_DISTANCE_M
from .bem.model import DEFAULT_CONDUCTIVITIES, BemModel, inner_skull_index
from .sphere import SphereModel, make_sphere_model

if TYPE_CHECKING:
    from ..anatomy.template import Template

__all__ = ["BEM_METHODS", "BemHead", "HeadModel", "SphereHead", "sphere_model_for_template"]

#: The EEG solvers a :class:`BemHead` can use.
BEM_METHODS = ("bem", "openmeeg")


def _distance(value, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if not (math.isfinite(v) and v >= 0):
        raise ForwardError(f"{name} = {value!r} must be a distance >= 0 in metres")
    return v


@dataclass(frozen=True, eq=False)
class SphereHead:
    """Concentric spheres: the EEG series over ``shells``, Sarvas' formula for MEG.

    Parameters
    ----------
    shells : SphereModel, optional
        The EEG conductor (centre, radii, conductivities, frame), e.g.
        :func:`sphere_model_for_template`. Needed for EEG only: the MEG field of a
        spherical conductor depends on its origin alone.
    rtol : float
        Relative accuracy of the EEG series per dipole, in (0, 1).
    max_inward_shift_m : float
        EEG: sources at most this far outside the innermost shell are evaluated 0.5 mm
        inside it (the "inward shift" FieldTrip also applies); sources further out are an
        error.
    meg_origin_m : ndarray, shape (3,), optional
        MEG sphere origin in the sources' frame, metres. Default: the centre of the sphere
        fitted to ``inner_skull`` (:func:`rtsource.forward.meg_sphere.meg_sphere_origin`).
    inner_skull : Mesh, optional
        MEG: the inner skull in the sources' frame, for the origin fit and the checks.
        Default: the template's when the sources are in the TEMPLATE frame.
    check_inside : bool
        MEG: refuse sources outside the inner skull and sensors inside it.

    Raises
    ------
    ForwardError
        A field of the wrong type or out of range (the message names it).
    """

    shells: SphereModel | None = None
    rtol: float = 1e-6
    max_inward_shift_m: float = 0.003
    meg_origin_m: np.ndarray | None = None
    inner_skull: Mesh | None = None
    check_inside: bool = True

    method: ClassVar[str] = "sphere"

    def __post_init__(self) -> None:
        if self.shells is not None and not isinstance(self.shells, SphereModel):
            raise ForwardError(
                f"SphereHead shells must be a SphereModel, got {type(self.shells).__name__}; build one with "
                f"make_sphere_model(center_m, radius_m, frame) or sphere_model_for_template(template, ...)"
            )
        try:
            rtol = float(self.rtol)
        except (TypeError, ValueError):
            rtol = float("nan")
        if not (0.0 < rtol < 1.0):
            raise ForwardError(f"SphereHead rtol = {self.rtol!r} must be in (0, 1); the default 1e-6 suits EEG")
        object.__setattr__(self, "rtol", rtol)
        object.__setattr__(self, "max_inward_shift_m", _distance(self.max_inward_shift_m, "SphereHead max_inward_shift_m"))
        if self.meg_origin_m is not None:
            o = np.array(self.meg_origin_m, dtype=float)
            if o.shape != (3,) or not np.all(np.isfinite(o)):
                raise ForwardError(
                    f"SphereHead meg_origin_m must be 3 finite numbers in metres, got {self.meg_origin_m!r}; "
                    f"leave it out to fit the origin to the inner skull"
                )
            object.__setattr__(self, "meg_origin_m", _readonly(o))
        if self.inner_skull is not None and not isinstance(self.inner_skull, Mesh):
            raise ForwardError(f"SphereHead inner_skull must be a rtsource.geometry.Mesh, got {type(self.inner_skull).__name__}")
        if not isinstance(self.check_inside, bool):
            raise ForwardError(f"SphereHead check_inside = {self.check_inside!r} must be True or False")


@dataclass(frozen=True, eq=False)
class BemHead:
    """Nested closed surfaces with a conductivity each: BEM for EEG, single-layer BEM for MEG.

    Parameters
    ----------
    surfaces : sequence of Mesh, or HeadModelSurfaces
        Any number of nested surfaces, outermost first (scalp, outer skull, inner skull
        [, a CSF/brain boundary]; anything with ``as_tuple()``, e.g.
        ``load_template(4).surfaces``), all in one frame. The reverse order is refused.
    conductivities : sequence of float
        S/m of the compartment just inside each surface, outermost first (default
        :data:`rtsource.forward.bem.DEFAULT_CONDUCTIVITIES`: scalp, skull, brain). MEG uses
        the innermost surface with the last value.
    method : {"bem", "openmeeg"}
        The EEG solver: rtsource's linear-collocation BEM, or OpenMEEG's symmetric BEM
        (optional extra; EEG only).
    max_electrode_distance_m : float
        EEG: electrodes farther than this from the scalp before projection are refused.

    Raises
    ------
    ForwardError
        Not meshes, a conductivity count that does not match the surfaces, an unknown
        method. The surfaces themselves (closed, nested, not crossing) are checked when a
        lead field is computed (:class:`rtsource.forward.bem.BemModel`).
    """

    surfaces: tuple[Mesh, ...]
    conductivities: tuple[float, ...] = DEFAULT_CONDUCTIVITIES
    method: str = "bem"
    max_electrode_distance_m: float = MAX_ELECTRODE_DISTANCE_M

    def __post_init__(self) -> None:
        surfaces = self.surfaces
        if hasattr(surfaces, "as_tuple"):
            surfaces = surfaces.as_tuple()
        surfaces = (surfaces,) if isinstance(surfaces, Mesh) else tuple(surfaces)
        if not surfaces:
            raise ForwardError("BemHead needs at least one surface (scalp, outer skull, inner skull for EEG; the inner skull for MEG)")
        for k, s in enumerate(surfaces):
            if not isinstance(s, Mesh):
                raise ForwardError(f"BemHead surfaces[{k}] must be a rtsource.geometry.Mesh, got {type(s).__name__}")
        try:
            sig = tuple(float(x) for x in np.atleast_1d(np.asarray(self.conductivities, dtype=float)))
        except (TypeError, ValueError):
            raise ForwardError(f"BemHead conductivities must be numbers in S/m, got {self.conductivities!r}") from None
        if len(sig) != len(surfaces):
            raise ForwardError(
                f"BemHead has {len(sig)} conductivities for {len(surfaces)} surfaces "
                f"({', '.join(s.name for s in surfaces)}); give one S/m value per compartment, outermost "
                f"first, e.g. {DEFAULT_CONDUCTIVITIES} for scalp, skull, brain"
            )
        if self.method not in BEM_METHODS:
            raise ForwardError(f"BemHead method = {self.method!r} is not known; use 'bem' (rtsource's BEM) or 'openmeeg'")
        object.__setattr__(self, "surfaces", surfaces)
        object.__setattr__(self, "conductivities", sig)
        object.__setattr__(self, "max_electrode_distance_m", _distance(self.max_electrode_distance_m, "BemHead max_electrode_distance_m"))

    @classmethod
    def from_model(cls, model: BemModel, *, method: str = "bem", max_electrode_distance_m: float = MAX_ELECTRODE_DISTANCE_M) -> BemHead:
        """The head of an already validated :class:`BemModel` (not checked again)."""
        if not isinstance(model, BemModel):
            raise ForwardError(f"model must be a BemModel, got {type(model).__name__}")
        head = cls(model.surfaces, tuple(model.conductivities), method, max_electrode_distance_m)
        head._models()["eeg"] = model
        if model.n_layers == 1:
            head._models()["meg"] = model
        return head

    @property
    def frame(self) -> Frame:
        """The surfaces' frame (all surfaces share it; :class:`BemModel` checks)."""
        return self.surfaces[0].frame

    @property
    def skull_index(self) -> int:
        """Index of the inner skull in ``surfaces``: MEG's single layer.

        The innermost surface at which the conductivity drops more than 10-fold outwards
        (where the EEG BEM applies the isolated problem approach): with a CSF layer that is
        the CSF/skull boundary, not the innermost (brain/CSF) surface, because the volume
        currents flow in the CSF too. Without such a drop, the innermost surface.
        """
        return inner_skull_index(self.conductivities)

    @property
    def inner_skull(self) -> Mesh:
        """The inner skull (:attr:`skull_index`; the innermost surface of a 3-layer head)."""
        return self.surfaces[self.skull_index]

    def _models(self) -> dict:
        return self.__dict__.setdefault("_built", {})  # not a field: frozen-safe memo

    def eeg_model(self) -> BemModel:
        """All surfaces as a validated :class:`BemModel` (built once)."""
        memo = self._models()
        if "eeg" not in memo:
            memo["eeg"] = BemModel(self.surfaces, self.conductivities)
        return memo["eeg"]

    def meg_model(self) -> BemModel:
        """The inner skull with the conductivity inside it: MEG's single-layer model (built once)."""
        memo = self._models()
        if "meg" not in memo:
            k = self.skull_index
            memo["meg"] = BemModel(self.surfaces[k : k + 1], self.conductivities[k : k + 1])
        return memo["meg"]


#: What :func:`rtsource.forward.leadfield.make_leadfield` takes as ``head_model``.
HeadModel = SphereHead | BemHead


def sphere_model_for_template(template: Template, relative_radii: Sequence[float], conductivities: Sequence[float]) -> SphereModel:
    """Concentric spheres fitted to the template's upper scalp (above the fiducial plane).

    Parameters
    ----------
    template : rtsource.anatomy.template.Template
    relative_radii : sequence of float
        Shell radii as fractions of the fitted scalp radius, ascending, last 1.0.
    conductivities : sequence of float
        S/m per shell, innermost first.
    """
    scalp = template.surfaces.scalp.vertices_m
    z_cut = template.fiducials.positions_m[:, 2].min()
    center, radius = fit_sphere(scalp[scalp[:, 2] > z_cut])
    return make_sphere_model(center, radius, template.frame, relative_radii=tuple(relative_radii), conductivities=tuple(conductivities))
