"""The embedded template head: fsaverage scalp, skull and cortex, fiducials, electrodes.

Everything is in the :attr:`~rtsource.geometry.Frame.TEMPLATE` frame (fsaverage surface
RAS, close to MNI305) in metres. The data file ``data/fsaverage_template.npz`` is built by
``tools/build_template.py`` from MNE-Python's and nilearn's wheels; provenance and licences
are in ``data/README.md``. The BEM uses the radially resampled surfaces of that file;
coregistration fits and projects onto a finer scalp, ``data/fsaverage_scalp.npz``
(:attr:`Template.coreg_scalp`): fsaverage's own head, refined so that the standard electrode
positions lie on it. Loading checks the meshes (closed, outward, nested), so a damaged
package install is caught at once rather than producing a wrong forward model.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

from ..errors import GeometryError
from ..geometry import Frame, Mesh, Points, Transform, check_nested
from ..geometry.head_frames import head_from_fiducials
from ..geometry.icosphere import icosphere, n_vertices
from .source_space import SourceSpace

#: Source-space densities of the template, by name: vertices per hemisphere.
SPACINGS = {"ico4": 2562, "ico5": 10242}


@dataclass(frozen=True)
class HeadModelSurfaces:
    """The three BEM surfaces of a head, innermost last, in one frame."""

    scalp: Mesh
    outer_skull: Mesh
    inner_skull: Mesh

    def as_tuple(self) -> tuple[Mesh, Mesh, Mesh]:
        return (self.scalp, self.outer_skull, self.inner_skull)


@dataclass(frozen=True)
class Template:
    """The embedded template head (see module docstring)."""

    surfaces: HeadModelSurfaces
    fiducials: Points
    electrodes: Points
    electrode_level: np.ndarray  # 1: 10-20, 2: 10-10, 3: 10-05 (the smallest system that has it)
    scalp_center_m: np.ndarray  # centre of the sphere fitted to the upper scalp
    #: The scalp coregistration fits and projects onto (8126 vertices, not resampled); None:
    #: the BEM scalp is used.
    coreg_scalp: Mesh | None = None
    #: The standard electrodes on ``coreg_scalp`` (labels as ``electrodes``).
    coreg_electrodes: Points | None = None

    @property
    def frame(self) -> Frame:
        return Frame.TEMPLATE

    @property
    def fit_scalp(self) -> Mesh:
        """The scalp coregistration fits to: ``coreg_scalp``, else the BEM scalp."""
        return self.coreg_scalp if self.coreg_scalp is not None else self.surfaces.scalp

    @property
    def fit_electrodes(self) -> Points:
        """The standard electrodes on :attr:`fit_scalp` (label correspondences of the fit)."""
        return self.coreg_electrodes if self.coreg_electrodes is not None else self.electrodes


def _data(file: str = "fsaverage_template.npz") -> dict[str, np.ndarray]:
    ref = resources.files("rtsource.anatomy") / "data" / file
    with resources.as_file(ref) as path:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}


@lru_cache(maxsize=1)
def _cached_data() -> dict[str, np.ndarray]:
    data = _data()
    for arr in data.values():
        arr.flags.writeable = False
    return data


@lru_cache(maxsize=4)
def load_template(bem_order: int = 4) -> Template:
    """Load the template head.

    Parameters
    ----------
    bem_order : int
        Icosphere order of the head surfaces: 4 (2562 vertices each) or 3 (642).

    Returns
    -------
    Template
    """
    d = _cached_data()
    stored = int(d["bem_order"])
    if not 1 <= bem_order <= stored:
        raise GeometryError(f"bem_order must be in 1..{stored} for the template, got {bem_order}")
    n = n_vertices(bem_order)
    tris = d["bem_triangles"] if bem_order == stored else icosphere(bem_order)[1]
    meshes = [Mesh(d[f"{name}_vertices"][:n], tris, Frame.TEMPLATE, "m", name) for name in ("scalp", "outer_skull", "inner_skull")]
    for m in meshes:
        m.check_closed()
    check_nested(meshes[2], meshes[1])
    check_nested(meshes[1], meshes[0])
    fiducials = Points(d["fiducial_positions"], Frame.TEMPLATE, "m", tuple(d["fiducial_labels"].tolist()))
    electrodes = Points(d["electrode_positions"], Frame.TEMPLATE, "m", tuple(d["electrode_labels"].tolist()))
    fine_scalp, fine_electrodes = _coreg_scalp()
    return Template(HeadModelSurfaces(*meshes), fiducials, electrodes, d["electrode_level"], d["center_m"], fine_scalp, fine_electrodes)


@lru_cache(maxsize=1)
def _coreg_scalp() -> tuple[Mesh, Points]:
    """The coregistration scalp and the electrodes on it (``data/fsaverage_scalp.npz``)."""
    d = _data("fsaverage_scalp.npz")
    scalp = Mesh(d["scalp_vertices"], d["scalp_triangles"], Frame.TEMPLATE, "m", "scalp")
    scalp.check_closed()
    if scalp.signed_volume() <= 0:
        raise GeometryError("the template's coregistration scalp is not outward oriented; reinstall rtsource")
    electrodes = Points(d["electrode_positions"], Frame.TEMPLATE, "m", tuple(d["electrode_labels"].tolist()))
    return scalp, electrodes


def template_source_space(spacing: str = "ico4", surface: str = "white") -> SourceSpace:
    """A cortical source space of both hemispheres on the template.

    Parameters
    ----------
    spacing : {"ico4", "ico5"}
        "ico4": 2 x 2562 = 5124 sources (default); "ico5": 2 x 10242 = 20484 sources.
    surface : {"white", "pial", "mid"}
        Which cortical surface the dipoles sit on. The inverse uses "white" (as MNE-Python
        does); the simulator uses other depths so it does not share the inverse's grid.
        "mid" is halfway between white and pial.

    Returns
    -------
    SourceSpace
        Normals and areas come from the dense white surface in every case.
    """
    if spacing not in SPACINGS:
        raise GeometryError(f"spacing {spacing!r} is not known; use one of {sorted(SPACINGS)}")
    d = _cached_data()
    white = d["cortex_white"].astype(float)
    pial = d["cortex_pial"].astype(float)
    if surface == "white":
        pos = white
    elif surface == "pial":
        pos = pial
    elif surface == "mid":
        pos = 0.5 * (white + pial)
    else:
        raise GeometryError(f"surface {surface!r} is not known; use 'white', 'pial' or 'mid'")
    normals = d["cortex_normals"].astype(float)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    if spacing == "ico5":
        return SourceSpace(pos, normals, d["cortex_areas"].astype(float), d["cortex_hemisphere"], Frame.TEMPLATE, f"fsaverage-{spacing}-{surface}", d["cortex_triangles"])
    idx = d["ico4_index"]
    return SourceSpace(
        pos[idx],
        normals[idx],
        d["ico4_areas"].astype(float),
        d["cortex_hemisphere"][idx],
        Frame.TEMPLATE,
        f"fsaverage-{spacing}-{surface}",
        d["ico4_triangles"],
    )


def template_head_transform() -> Transform:
    """TEMPLATE -> HEAD: the Neuromag head frame of the template's own fiducials.

    A subject's HEAD frame maps onto the template through the inverse of this when nothing
    better (a fit of headshape points) is available: both frames are defined by the same
    landmarks (:func:`rtsource.geometry.head_frames.head_from_fiducials`).
    """
    return head_from_fiducials(load_template().fiducials)
